use super::*;

fn args(v: Value) -> Option<JsonObject> {
    match v {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

fn invalid_reason(r: Result<ToolCall, BridgeError>) -> (&'static str, String) {
    match r {
        Err(BridgeError::InvalidArguments { tool, reason }) => (tool, reason),
        other => panic!("expected invalid arguments, got {other:?}"),
    }
}

#[test]
fn status_takes_no_arguments() {
    assert_eq!(ToolCall::parse("status", None).unwrap(), ToolCall::Status);
    assert_eq!(ToolCall::parse("status", args(json!({}))).unwrap(), ToolCall::Status);
    let (tool, reason) = invalid_reason(ToolCall::parse("status", args(json!({"verbose": true}))));
    assert_eq!(tool, "status");
    assert!(reason.contains("verbose"), "{reason}");
}

#[test]
fn an_unknown_tool_is_named() {
    match ToolCall::parse("shutdown", None) {
        Err(e @ BridgeError::UnknownTool(_)) => assert!(e.to_string().contains("`shutdown`"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn adjust_quota_needs_an_id_and_a_non_negative_integer_limit() {
    assert_eq!(
        ToolCall::parse("adjust_quota", args(json!({"quota": "team-a", "limit": 250}))).unwrap(),
        ToolCall::AdjustQuota(AdjustQuotaArgs {
            quota: "team-a".into(),
            limit: 250
        })
    );
    let (_, reason) = invalid_reason(ToolCall::parse("adjust_quota", args(json!({"quota": "team-a"}))));
    assert!(reason.contains("limit"), "{reason}");
    for bad in [json!(-3), json!(2.5), json!("250")] {
        let (_, reason) = invalid_reason(ToolCall::parse(
            "adjust_quota",
            args(json!({"quota": "team-a", "limit": bad})),
        ));
        assert!(reason.contains("invalid"), "{bad}: {reason}");
    }
    let (_, reason) = invalid_reason(ToolCall::parse("adjust_quota", args(json!({"quota": " ", "limit": 1}))));
    assert!(reason.contains("`quota` must not be empty"), "{reason}");
}

#[test]
fn set_budget_parses_periods_actions_and_scope_at_the_edge() {
    let call = ToolCall::parse(
        "set_budget",
        args(json!({
            "budget": "acme",
            "limit_micro_usd": 7_000_000,
            "period": "monthly",
            "action": {"throttle": {"permille": 500}},
            "scope": {"tenant": "acme"}
        })),
    )
    .unwrap();
    assert_eq!(
        call,
        ToolCall::SetBudget(SetBudgetArgs {
            budget: "acme".into(),
            limit_micro_usd: 7_000_000,
            period: BudgetPeriod::Monthly,
            action: BudgetAction::Throttle { permille: 500 },
            scope: Scope::all().tenant("acme"),
        })
    );
    let (tool, reason) = invalid_reason(ToolCall::parse(
        "set_budget",
        args(json!({"budget": "b", "limit_micro_usd": 1, "period": "weekly", "action": "halt"})),
    ));
    assert_eq!(tool, "set_budget");
    assert!(reason.contains("weekly"), "{reason}");
    let ToolCall::SetBudget(a) = ToolCall::parse(
        "set_budget",
        args(json!({"budget": "b", "limit_micro_usd": 1, "period": "daily", "action": "alert"})),
    )
    .unwrap() else {
        panic!("a budget call")
    };
    assert_eq!(a.scope, Scope::all(), "no scope covers everything");
}

#[test]
fn cost_report_checks_its_fields_and_forwards_only_what_was_given() {
    let ToolCall::CostReport(a) = ToolCall::parse(
        "cost_report",
        args(json!({"group_by": ["tenant", "label:team"], "model": "gpt 4", "last": "24h"})),
    )
    .unwrap() else {
        panic!("a report call")
    };
    assert_eq!(
        a.query_pairs(),
        [
            ("group_by", "tenant,label:team".to_string()),
            ("model", "gpt 4".to_string()),
            ("last", "24h".to_string()),
        ]
    );
    assert!(CostReportArgs::default().query_pairs().is_empty());
    let (_, reason) = invalid_reason(ToolCall::parse("cost_report", args(json!({"group_by": ["colour"]}))));
    assert!(reason.contains("colour"), "{reason}");
    let (_, reason) = invalid_reason(ToolCall::parse(
        "cost_report",
        args(json!({"from": "2025-01-01T00:00:00Z", "last": "1h"})),
    ));
    assert!(reason.contains("not both"), "{reason}");
}

#[test]
fn a_refusal_carries_the_apis_code_and_reason() {
    let e = refusal(
        403,
        br#"{"error": "forbidden", "message": "role viewer may not do this; it needs operator"}"#,
    );
    assert_eq!(
        e.to_string(),
        "refused by the node (403 forbidden): role viewer may not do this; it needs operator"
    );
    let result = e.to_tool_result();
    assert_eq!(result.is_error, Some(true));
    let details = result.structured_content.unwrap();
    assert_eq!(details["status"], 403);
    assert_eq!(details["code"], "forbidden");
    assert_eq!(details["error"], "refused");

    match refusal(502, b"  bad gateway from the proxy \n") {
        BridgeError::Refused { code, message, .. } => {
            assert_eq!(code, None);
            assert_eq!(message, "bad gateway from the proxy");
        }
        other => panic!("{other:?}"),
    }
    match refusal(404, b"") {
        BridgeError::Refused { message, .. } => assert_eq!(message, "Not Found"),
        other => panic!("{other:?}"),
    }
    match refusal(500, "x".repeat(10_000).as_bytes()) {
        BridgeError::Refused { message, .. } => assert_eq!(message.len(), MAX_QUOTED_CHARS),
        other => panic!("{other:?}"),
    }
}

#[test]
fn ids_are_one_encoded_path_segment_below_the_base() {
    let node = NodeClient::new("http://127.0.0.1:9464", None).unwrap();
    assert_eq!(
        node.endpoint(&["admin", "quotas", "team/a b?"]).unwrap().as_str(),
        "http://127.0.0.1:9464/admin/quotas/team%2Fa%20b%3F"
    );
    let proxied = NodeClient::new("https://ops.example/nexus/", None).unwrap();
    assert_eq!(
        proxied.endpoint(&["status"]).unwrap().as_str(),
        "https://ops.example/nexus/status"
    );
}

#[test]
fn bad_urls_and_tokens_are_refused_at_start() {
    for (url, words) in [
        ("127.0.0.1:9464", "scheme"),
        ("localhost:9464", "scheme"),
        ("ftp://host/", "scheme"),
        ("http://", "invalid node URL"),
        ("http://host/?a=1", "query"),
    ] {
        let e = NodeClient::new(url, None).unwrap_err();
        assert!(
            matches!(e, BridgeError::BadUrl { .. }) && e.to_string().contains(words),
            "{url}: {e}"
        );
    }
    for token in ["", "two words", "line\nbreak"] {
        let e = NodeClient::new("http://127.0.0.1:1", Some(token.into())).unwrap_err();
        assert!(matches!(e, BridgeError::BadToken(_)), "{token:?}: {e}");
    }
    let debug = format!("{:?}", NodeClient::new("http://h", Some("s3cret".into())).unwrap());
    assert!(!debug.contains("s3cret") && debug.contains("<set>"), "{debug}");
}

#[test]
fn a_token_file_is_trimmed_and_must_hold_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, "  op-secret\n").unwrap();
    assert_eq!(read_token_file(&path).unwrap(), "op-secret");
    std::fs::write(&path, "\n").unwrap();
    assert!(matches!(read_token_file(&path), Err(BridgeError::BadToken(_))));
    std::fs::write(&path, "a".repeat(MAX_TOKEN_FILE_BYTES as usize + 1)).unwrap();
    assert!(matches!(read_token_file(&path), Err(BridgeError::BadToken(_))));
    let missing = dir.path().join("missing");
    let e = read_token_file(&missing).unwrap_err();
    assert!(matches!(e, BridgeError::TokenFile { .. }), "{e}");
    assert!(e.to_string().contains("missing"), "{e}");
}

#[test]
fn tools_are_listed_with_object_schemas_and_their_required_fields() {
    let tools = tools();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names, ["status", "cost_report", "adjust_quota", "set_budget"]);
    for t in &tools {
        assert_eq!(t.input_schema.get("type"), Some(&json!("object")), "{}", t.name);
    }
    assert_eq!(tools[2].input_schema["required"], json!(["quota", "limit"]));
    assert_eq!(
        tools[3].input_schema["required"],
        json!(["budget", "limit_micro_usd", "period", "action"])
    );
}

#[tokio::test]
async fn an_unreachable_node_is_a_tool_error_and_an_unknown_tool_a_protocol_error() {
    // A port that was free a moment ago: nothing listens there now.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mcp = NexusMcp::new(NodeClient::new(&format!("http://127.0.0.1:{port}"), None).unwrap());
    let result = mcp.call("status", None).await.unwrap();
    assert_eq!(result.is_error, Some(true));
    let details = result.structured_content.unwrap();
    assert_eq!(details["error"], "unreachable", "{details}");
    assert!(
        details["message"]
            .as_str()
            .unwrap()
            .contains(&format!("127.0.0.1:{port}")),
        "{details}"
    );

    let result = mcp
        .call("adjust_quota", args(json!({"quota": "q", "limit": -1})))
        .await
        .unwrap();
    assert_eq!(result.is_error, Some(true));
    assert_eq!(result.structured_content.unwrap()["error"], "invalid_arguments");

    assert!(matches!(mcp.call("nope", None).await, Err(BridgeError::UnknownTool(_))));
}
