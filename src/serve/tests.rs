//! Unit tests of the front door's synchronous decisions: keys, limits and
//! the wire format.

use std::time::Duration;

use nexus_swarm_actors::cost_ledger::{BudgetAction, BudgetPeriod};
use nexus_swarm_actors::llm::types::{LlmChunk, ResponseFormat, ToolChoice};
use nexus_swarm_actors::llm::{
    CatalogueError, DeploymentSpec, GatewayError, LlmResponse, ModelCatalogue, ModelChoice, ModelSpec, ProviderError,
    ResponseSource, Role,
};
use nexus_swarm_runtime::usage::{SpendRefused, UsageMeta};

use super::keys::{KeyEntry, KeyTable, KeysError, KeysFile, bearer, hash_token, new_token};
use super::limits::{KeyLimits, LimitRefusal};
use super::wire::{
    StreamOptions, completion_body, format_reset, gateway_error, models_body, parse_request, stream_events,
};

fn entry(name: &str, token: &str) -> KeyEntry {
    KeyEntry {
        name: name.into(),
        sha256: hash_token(token),
        tenant: "acme".into(),
        workflow: Some(name.into()),
        agent: None,
        budget_micro_usd: None,
        budget_period: None,
        requests_per_minute: None,
        tokens_per_minute: None,
    }
}

#[test]
fn hash_is_sha256_hex() {
    // The SHA-256 of "test", as `sha256sum` prints it.
    assert_eq!(
        hash_token("test"),
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    );
    let a = new_token();
    assert!(a.starts_with("sk-nexus-") && a.len() == 9 + 48);
    assert_ne!(a, new_token());
}

#[test]
fn keys_file_parses_and_finds_a_token_by_its_hash() {
    let text = format!(
        r#"
[[keys]]
name = "bot"
sha256 = "{}"
tenant = "acme"
agent = "triage"
budget_micro_usd = 5000
budget_period = "hourly"
requests_per_minute = 2
"#,
        hash_token("secret-1")
    );
    let file = KeysFile::parse(&text).unwrap();
    let key = &file.keys[0];
    assert_eq!(key.meta(), UsageMeta::default().tenant("acme").agent("triage"));
    let budget = key.budget().unwrap();
    assert_eq!(budget.id, "key/bot");
    assert_eq!(budget.limit_micro_usd, 5000);
    assert_eq!(budget.period, BudgetPeriod::Hourly);
    assert_eq!(budget.action, BudgetAction::Halt);
    assert!(budget.scope.matches(&key.meta().model("any")));
    assert!(
        !budget
            .scope
            .matches(&UsageMeta::default().tenant("acme").agent("other"))
    );
    let table = KeyTable::new(file);
    assert_eq!(table.find("secret-1"), Some(0));
    assert_eq!(table.find("secret-2"), None);
    assert_eq!(table.find(&hash_token("secret-1")), None, "the hash is not a token");
}

#[test]
fn keys_file_refuses_what_it_cannot_serve() {
    assert!(matches!(KeysFile::parse(""), Err(KeysError::Empty)));
    assert!(matches!(
        KeysFile::parse("[[keys]]\nname = \"a\"\nsha256 = \"x\"\ntenant = \"t\"\nplain = \"secret\"\n"),
        Err(KeysError::Parse(_))
    ));
    let cases: Vec<(KeyEntry, &str)> = vec![
        (
            KeyEntry {
                sha256: "ABC".into(),
                ..entry("a", "t")
            },
            "sha256",
        ),
        (
            KeyEntry {
                name: "has space".into(),
                ..entry("a", "t")
            },
            "name",
        ),
        (
            KeyEntry {
                tenant: " ".into(),
                ..entry("a", "t")
            },
            "tenant",
        ),
        (
            KeyEntry {
                budget_micro_usd: Some(0),
                ..entry("a", "t")
            },
            "budget_micro_usd",
        ),
        (
            KeyEntry {
                requests_per_minute: Some(0),
                ..entry("a", "t")
            },
            "requests_per_minute",
        ),
    ];
    for (key, field) in cases {
        match (KeysFile { keys: vec![key] }).validate() {
            Err(KeysError::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    // Two keys with the same token, name or identity.
    let same_token = KeysFile {
        keys: vec![entry("a", "t"), KeyEntry { ..entry("b", "t") }],
    };
    assert!(matches!(
        same_token.validate(),
        Err(KeysError::Invalid { field: "sha256", .. })
    ));
    let same_scope = KeysFile {
        keys: vec![
            entry("a", "t1"),
            KeyEntry {
                name: "b".into(),
                ..entry("a", "t2")
            },
        ],
    };
    assert!(matches!(
        same_scope.validate(),
        Err(KeysError::Invalid { field: "tenant", .. })
    ));
}

#[test]
fn bearer_takes_the_token_of_a_bearer_header_only() {
    assert_eq!(bearer("Bearer abc"), Some("abc"));
    assert_eq!(bearer("bearer  abc "), Some("abc"));
    assert_eq!(bearer("Basic abc"), None);
    assert_eq!(bearer("Bearer "), None);
    assert_eq!(bearer("abc"), None);
}

const S: Duration = Duration::from_secs(1);

#[test]
fn requests_per_minute_refuse_the_next_with_the_wait() {
    let mut l = KeyLimits::new(Some(2), None);
    let t0 = Duration::from_secs(100);
    let a = l.admit(t0, 10).unwrap();
    let _b = l.admit(t0, 10).unwrap();
    let figures = l.figures(t0);
    assert_eq!(figures.requests.map(|r| (r.0, r.1)), Some((2, 0)));
    assert!(figures.tokens.is_none());
    match l.admit(t0 + S, 10) {
        Err(LimitRefusal::Later { retry_after, limit }) => {
            assert_eq!(limit, "requests");
            assert!(retry_after > Duration::ZERO && retry_after <= 59 * S, "{retry_after:?}");
            // It fits once that time has passed.
            let later = t0 + S + retry_after;
            l.settle(&a, 0); // settling tokens gives back no request
            assert!(l.admit(later, 10).is_ok());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn tokens_per_minute_reserve_the_estimate_and_refund_the_rest() {
    let mut l = KeyLimits::new(None, Some(1000));
    let t0 = Duration::from_secs(10);
    let a = l.admit(t0, 900).unwrap();
    assert_eq!(l.figures(t0).tokens.map(|t| t.1), Some(100));
    assert!(matches!(
        l.admit(t0, 200),
        Err(LimitRefusal::Later { limit: "tokens", .. })
    ));
    // The call used 150 tokens: 750 are given back.
    l.settle(&a, 150);
    assert_eq!(l.figures(t0).tokens.map(|t| t.1), Some(850));
    assert!(l.admit(t0, 200).is_ok());
    assert_eq!(
        l.admit(t0, 1001).unwrap_err(),
        LimitRefusal::TooLarge {
            requested: 1001,
            limit: 1000
        }
    );
    // Reset: the whole limit is free again a minute after the last use.
    let reset = l.figures(t0).tokens.unwrap().2;
    assert!(reset > Duration::ZERO && reset <= 60 * S, "{reset:?}");
    assert_eq!(l.figures(t0 + 61 * S).tokens, Some((1000, 1000, Duration::ZERO)));
}

#[test]
fn no_limits_admit_everything() {
    let mut l = KeyLimits::new(None, None);
    for _ in 0..1000 {
        assert!(l.admit(Duration::ZERO, 1_000_000).is_ok());
    }
    assert_eq!(l.figures(Duration::ZERO), Default::default());
}

fn catalogue() -> ModelCatalogue {
    ModelCatalogue::new(vec![
        ModelSpec::new("small", 8_000, 150_000, 600_000)
            .max_output(500)
            .deployment(DeploymentSpec::new("small@sim", "sim")),
    ])
    .unwrap()
}

#[test]
fn a_request_maps_to_the_gateway_request() {
    let body = br#"{"model":"small","messages":[
        {"role":"developer","content":"Be brief."},
        {"role":"user","content":[{"type":"text","text":"Plan "},{"type":"text","text":"it."}]},
        {"role":"assistant","content":null}],
        "max_tokens":64,"temperature":0,"user":"ada","top_p":1}"#;
    let parsed = parse_request(body, &catalogue(), UsageMeta::default().tenant("acme")).unwrap();
    assert_eq!(parsed.stream, None);
    let req = parsed.request;
    assert_eq!(req.model, ModelChoice::Named("small".into()));
    assert_eq!(req.max_tokens, 64);
    assert_eq!(req.temperature_milli, 0);
    assert!(req.cacheable);
    let roles: Vec<Role> = req.messages.iter().map(|m| m.role).collect();
    assert_eq!(roles, [Role::System, Role::User, Role::Assistant]);
    assert_eq!(req.messages[1].content, "Plan it.");
    assert_eq!(
        req.meta,
        UsageMeta::default().tenant("acme").model("small").label("user", "ada")
    );
    // Defaults: the model's max output, temperature 1 (not cached).
    let req = parse_request(
        br#"{"model":"small","messages":[{"role":"user","content":"hi"}],"temperature":0.7}"#,
        &catalogue(),
        UsageMeta::default(),
    )
    .unwrap()
    .request;
    assert_eq!(
        (req.max_tokens, req.temperature_milli, req.cacheable),
        (500, 700, false)
    );
}

#[test]
fn tools_tool_turns_formats_and_streams_are_read() {
    let body = br#"{"model":"small","stream":true,"stream_options":{"include_usage":true},
        "messages":[
          {"role":"user","content":"weather?"},
          {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"weather","arguments":"{\"city\":\"Oslo\"}"}}]},
          {"role":"tool","tool_call_id":"c1","content":"sunny"}],
        "tools":[{"type":"function","function":{"name":"weather","description":"d","parameters":{"type":"object"}}}],
        "tool_choice":"required",
        "response_format":{"type":"json_schema","json_schema":{"name":"w","schema":{"type":"object"},"strict":true}}}"#;
    let parsed = parse_request(body, &catalogue(), UsageMeta::default()).unwrap();
    assert_eq!(parsed.stream, Some(StreamOptions { include_usage: true }));
    let req = parsed.request;
    assert_eq!(req.messages[1].tool_calls[0].name, "weather");
    assert_eq!(req.messages[1].tool_calls[0].arguments, r#"{"city":"Oslo"}"#);
    assert_eq!(req.messages[2].role, Role::Tool);
    assert_eq!(req.messages[2].tool_call_id.as_deref(), Some("c1"));
    assert_eq!(req.tools[0].name, "weather");
    assert_eq!(req.tool_choice, ToolChoice::Required);
    assert!(matches!(
        req.response_format,
        ResponseFormat::JsonSchema { strict: true, .. }
    ));
    // A tool turn without the id it answers is refused.
    let err = parse_request(
        br#"{"model":"small","messages":[{"role":"tool","content":"x"}]}"#,
        &catalogue(),
        UsageMeta::default(),
    )
    .unwrap_err();
    assert!(err.message.contains("tool_call_id"), "{}", err.message);
}

#[test]
fn a_stream_is_written_as_openai_chunks_ending_in_done() {
    let answer = LlmResponse {
        content: "Hi".into(),
        model: "small".into(),
        deployment: "small@sim".into(),
        input_tokens: 5,
        output_tokens: 1,
        cost_micro_usd: 1,
        source: ResponseSource::Provider,
        attempts: 1,
        tool_calls: Vec::new(),
        finish_reason: "stop".into(),
    };
    let with_usage = StreamOptions { include_usage: true };
    let first = stream_events("id", 1, "small", &LlmChunk::Text("Hi".into()), true, 8, with_usage);
    let json: serde_json::Value = serde_json::from_str(first.strip_prefix("data: ").unwrap().trim()).unwrap();
    assert_eq!(json["object"], "chat.completion.chunk");
    assert_eq!(json["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(json["choices"][0]["delta"]["content"], "Hi");
    assert!(json["usage"].is_null());
    let call = LlmChunk::ToolCall {
        index: 0,
        id: Some("c1".into()),
        name: Some("f".into()),
        arguments: "{".into(),
    };
    let ev = stream_events("id", 1, "small", &call, false, 8, StreamOptions::default());
    let json: serde_json::Value = serde_json::from_str(ev.strip_prefix("data: ").unwrap().trim()).unwrap();
    let c = &json["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(
        (c["id"].as_str(), c["function"]["name"].as_str()),
        (Some("c1"), Some("f"))
    );
    assert!(json.get("usage").is_none());
    let end = stream_events("id", 1, "small", &LlmChunk::Done(answer), false, 8, with_usage);
    let events: Vec<&str> = end.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.len(), 3, "{end}");
    assert!(events[0].contains(r#""finish_reason":"stop""#));
    assert!(events[1].contains(r#""total_tokens":6"#));
    assert_eq!(events[2], "data: [DONE]");
}

#[test]
fn bad_requests_are_400_naming_the_field() {
    let cases: [(&[u8], Option<&str>); 12] = [
        (b"not json", None),
        (br#"{"messages":[{"role":"user","content":"hi"}]}"#, Some("model")),
        (br#"{"model":"small"}"#, Some("messages")),
        (br#"{"model":"small","messages":[]}"#, Some("messages")),
        (
            br#"{"model":"small","messages":[{"role":"tool","content":"x"}]}"#,
            Some("messages"),
        ),
        (
            br#"{"model":"small","messages":[{"role":"user","content":"x"}],"max_tokens":501}"#,
            Some("max_tokens"),
        ),
        (
            br#"{"model":"small","messages":[{"role":"user","content":"x"}],"temperature":3}"#,
            Some("temperature"),
        ),
        (
            br#"{"model":"small","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f","parameters":"no"}}]}"#,
            Some("tools"),
        ),
        (
            br#"{"model":"small","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"g"}}}"#,
            Some("tool_choice"),
        ),
        (
            br#"{"model":"small","messages":[{"role":"user","content":"x"}],"tool_choice":"maybe"}"#,
            Some("tool_choice"),
        ),
        (
            br#"{"model":"small","messages":[{"role":"user","content":"x"}],"response_format":{"type":"yaml"}}"#,
            Some("response_format"),
        ),
        (
            br#"{"model":"small","messages":[{"role":"user","content":"x"}],"user":"a=b"}"#,
            Some("user"),
        ),
    ];
    for (body, param) in cases {
        let err = parse_request(body, &catalogue(), UsageMeta::default()).unwrap_err();
        assert_eq!(
            (err.status, err.param),
            (400, param),
            "{}",
            String::from_utf8_lossy(body)
        );
        assert_eq!(err.body()["error"]["type"], "invalid_request_error");
    }
    let err = parse_request(
        br#"{"model":"gpt-9","messages":[{"role":"user","content":"x"}]}"#,
        &catalogue(),
        UsageMeta::default(),
    )
    .unwrap_err();
    assert_eq!((err.status, err.code), (404, Some("model_not_found")));
}

#[test]
fn a_response_maps_to_openai_shape() {
    let answer = LlmResponse {
        content: "Done.".into(),
        model: "small".into(),
        deployment: "small@sim".into(),
        input_tokens: 12,
        output_tokens: 3,
        cost_micro_usd: 4,
        source: ResponseSource::Provider,
        attempts: 1,
        tool_calls: Vec::new(),
        finish_reason: String::new(),
    };
    let body = completion_body("chatcmpl-1", 1700, 64, &answer);
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["content"], "Done.");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["total_tokens"], 15);
    assert_eq!(
        completion_body("x", 0, 3, &answer)["choices"][0]["finish_reason"],
        "length"
    );
    let models = models_body(&catalogue());
    assert_eq!(models["data"][0]["id"], "small");
}

#[test]
fn gateway_errors_map_to_openai_statuses() {
    let budget = GatewayError::SpendRefused(SpendRefused::BudgetExceeded {
        budget: "key/a".into(),
        limit: 10,
        spent: 9,
        reserved: 0,
        requested: 5,
    });
    let e = gateway_error(&budget);
    assert_eq!(
        (e.status, e.kind, e.code),
        (429, "insufficient_quota", Some("insufficient_quota"))
    );
    assert!(e.message.contains("key/a"));
    let e = gateway_error(&GatewayError::Catalogue(CatalogueError::UnknownModel("m".into())));
    assert_eq!(e.status, 404);
    let e = gateway_error(&GatewayError::InvalidRequest("x".into()));
    assert_eq!(e.status, 400);
    let e = gateway_error(&GatewayError::Overloaded { queued: 3 });
    assert_eq!((e.status, e.retry_after), (503, Some(S)));
    assert_eq!(gateway_error(&GatewayError::Stopped).status, 503);
    let unwritable = GatewayError::Exhausted {
        tried: vec!["m".into()],
        last: ProviderError::InvalidRequest("arguments are not an object".into()),
    };
    assert_eq!(gateway_error(&unwritable).status, 400);
    let broken = GatewayError::StreamBroken {
        model: "m".into(),
        error: ProviderError::Malformed("x".into()),
    };
    assert_eq!(gateway_error(&broken).status, 502);
}

#[test]
fn resets_are_written_as_openai_writes_them() {
    assert_eq!(format_reset(Duration::ZERO), "0s");
    assert_eq!(format_reset(Duration::from_millis(250)), "250ms");
    assert_eq!(format_reset(Duration::from_millis(1500)), "1.5s");
    assert_eq!(format_reset(Duration::from_secs(2)), "2s");
    assert_eq!(format_reset(Duration::from_secs(360)), "6m0s");
}
