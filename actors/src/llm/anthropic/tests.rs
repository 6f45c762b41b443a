use std::time::{Duration, SystemTime};

use nexus_swarm_runtime::config::LlmConfig;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

use super::stream::parse_all;
use super::wire::{parse_message, request_body};
use super::*;
use crate::llm::types::{Message, ProviderChunk, ResponseFormat, ToolCall, ToolChoice, ToolDef};

/// 2026-01-01T00:00:00Z.
fn new_year() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, HeaderValue::from_static(v));
    }
    h
}

fn call(id: &str, arguments: &str) -> ToolCall {
    ToolCall {
        id: id.into(),
        name: "weather".into(),
        arguments: arguments.into(),
    }
}

fn weather() -> ToolDef {
    ToolDef {
        name: "weather".into(),
        description: Some("Today's weather".into()),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
    }
}

fn body(request: &ProviderRequest, stream: bool) -> Value {
    serde_json::to_value(request_body(request, stream).unwrap()).unwrap()
}

#[test]
fn a_conversation_with_tools_is_written_in_anthropics_shape() {
    let request = ProviderRequest {
        model: "claude-x".into(),
        messages: vec![
            Message::system("Be brief."),
            Message::user("Weather in Oslo and Rome?"),
            Message {
                tool_calls: vec![call("tu_1", r#"{"city":"Oslo"}"#), call("tu_2", "")],
                ..Message::assistant("Looking.")
            },
            Message::tool_result("tu_1", "rain"),
            Message::tool_result("tu_2", "sun"),
            Message::user("Thanks; and tomorrow?"),
            Message::system("Use metric units."),
        ],
        max_tokens: 300,
        temperature_milli: 700,
        tools: vec![weather()],
        tool_choice: ToolChoice::Named("weather".into()),
        response_format: ResponseFormat::Text,
    };
    let sent = body(&request, false);
    assert_eq!(
        sent,
        json!({
            "model": "claude-x",
            "max_tokens": 300,
            "system": "Be brief.\n\nUse metric units.",
            "temperature": 0.7,
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Weather in Oslo and Rome?"}]},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Looking."},
                    {"type": "tool_use", "id": "tu_1", "name": "weather", "input": {"city": "Oslo"}},
                    {"type": "tool_use", "id": "tu_2", "name": "weather", "input": {}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "tu_1", "content": "rain"},
                    {"type": "tool_result", "tool_use_id": "tu_2", "content": "sun"},
                    {"type": "text", "text": "Thanks; and tomorrow?"},
                ]},
            ],
            "tools": [{"name": "weather", "description": "Today's weather",
                       "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
            "tool_choice": {"type": "tool", "name": "weather"},
        })
    );
    assert_eq!(body(&request, true)["stream"], true);
}

#[test]
fn a_turn_that_only_calls_tools_has_no_empty_text_block() {
    let request = ProviderRequest {
        messages: vec![Message::user("Go"), Message::tool_calls(vec![call("a", "{}")])],
        max_tokens: 5,
        ..ProviderRequest::default()
    };
    let sent = body(&request, false);
    assert_eq!(
        sent["messages"][1]["content"],
        json!([{"type": "tool_use", "id": "a", "name": "weather", "input": {}}])
    );
    assert!(sent.get("system").is_none());
    assert!(sent.get("tools").is_none() && sent.get("tool_choice").is_none());
    assert!(sent.get("stream").is_none());
}

#[test]
fn tool_choices_map_and_are_sent_only_with_tools() {
    for (choice, wire) in [
        (ToolChoice::Auto, json!({"type": "auto"})),
        (ToolChoice::Required, json!({"type": "any"})),
        (ToolChoice::None, json!({"type": "none"})),
        (
            ToolChoice::Named("weather".into()),
            json!({"type": "tool", "name": "weather"}),
        ),
    ] {
        let request = ProviderRequest {
            messages: vec![Message::user("x")],
            tools: vec![weather()],
            tool_choice: choice.clone(),
            ..ProviderRequest::default()
        };
        assert_eq!(body(&request, false)["tool_choice"], wire, "{choice:?}");
    }
}

#[test]
fn temperature_is_clamped_to_anthropics_range() {
    for (milli, sent) in [(0u16, 0.0), (250, 0.25), (1000, 1.0), (1500, 1.0), (u16::MAX, 1.0)] {
        let request = ProviderRequest {
            messages: vec![Message::user("x")],
            temperature_milli: milli,
            ..ProviderRequest::default()
        };
        assert_eq!(body(&request, false)["temperature"], json!(sent), "{milli}");
    }
}

#[test]
fn response_formats_are_asked_for_in_the_system_prompt() {
    let schema = json!({"type": "object", "required": ["city"]});
    let request = ProviderRequest {
        messages: vec![Message::system("Be brief."), Message::user("x")],
        response_format: ResponseFormat::JsonSchema {
            name: "place".into(),
            schema: schema.clone(),
            strict: true,
        },
        ..ProviderRequest::default()
    };
    let system = body(&request, false)["system"].as_str().unwrap().to_string();
    assert!(
        system.starts_with("Be brief.\n\nAnswer with a single JSON value"),
        "{system}"
    );
    assert!(
        system.contains("`place`") && system.contains(&schema.to_string()),
        "{system}"
    );
    let request = ProviderRequest {
        messages: vec![Message::user("x")],
        response_format: ResponseFormat::JsonObject,
        ..ProviderRequest::default()
    };
    let system = body(&request, false)["system"].as_str().unwrap().to_string();
    assert!(system.starts_with("Answer with a single JSON object"), "{system}");
}

#[test]
fn requests_that_cannot_be_written_are_refused_before_sending() {
    for arguments in ["{\"city\":", "[1,2]", "\"Oslo\"", "null"] {
        let request = ProviderRequest {
            messages: vec![Message::tool_calls(vec![call("bad", arguments)])],
            ..ProviderRequest::default()
        };
        match request_body(&request, false) {
            Err(ProviderError::InvalidRequest(why)) => assert!(why.contains("`bad`"), "{why}"),
            other => panic!("{arguments}: {other:?}"),
        }
    }
    let orphan = ProviderRequest {
        messages: vec![Message {
            tool_call_id: None,
            ..Message::tool_result("x", "y")
        }],
        ..ProviderRequest::default()
    };
    assert!(matches!(
        request_body(&orphan, false),
        Err(ProviderError::InvalidRequest(_))
    ));
    let e = ProviderError::InvalidRequest("x".into());
    assert!(!e.is_retryable() && !e.counts_against_deployment());
}

#[test]
fn replies_map_to_text_tool_calls_reasons_and_usage() {
    let reply = parse_message(
        br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x",
             "content":[{"type":"thinking","thinking":"hmm","signature":"s"},
                        {"type":"text","text":"Let me "},{"type":"text","text":"check."},
                        {"type":"tool_use","id":"tu_9","name":"weather","input":{"city":"Oslo"}}],
             "stop_reason":"tool_use","stop_sequence":null,
             "usage":{"input_tokens":20,"output_tokens":9,"cache_creation_input_tokens":null,"cache_read_input_tokens":5}}"#,
    )
    .unwrap();
    assert_eq!(reply.content, "Let me check.");
    assert_eq!(reply.tool_calls, vec![call("tu_9", r#"{"city":"Oslo"}"#)]);
    assert_eq!(reply.finish_reason, "tool_calls");
    assert_eq!((reply.input_tokens, reply.output_tokens), (25, 9));
    for (stop, reason) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "pause_turn"),
    ] {
        let body = json!({"content": [], "stop_reason": stop, "usage": {"input_tokens": 1, "output_tokens": 0}});
        assert_eq!(
            parse_message(body.to_string().as_bytes()).unwrap().finish_reason,
            reason
        );
    }
}

#[test]
fn malformed_replies_are_typed_errors() {
    for bad in [
        &b"not json"[..],
        b"",
        b"[1]",
        br#"{"content":[{"type":"text","text":"x"}]}"#,
        br#"{"usage":{"input_tokens":1,"output_tokens":1}}"#,
        br#"{"content":[{"type":"text"}],"usage":{"input_tokens":1,"output_tokens":1}}"#,
        br#"{"content":[{"type":"tool_use","id":"a"}],"usage":{"input_tokens":1,"output_tokens":1}}"#,
        br#"{"content":[],"usage":{"input_tokens":-1,"output_tokens":1}}"#,
        br#"{"content":[],"usage":{"output_tokens":1}}"#,
    ] {
        assert!(
            matches!(parse_message(bad), Err(ProviderError::Malformed(_))),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

const STREAM: [&str; 12] = [
    r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-x","stop_reason":null,"usage":{"input_tokens":25,"output_tokens":1}}}"#,
    r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
    r#"{"type":"ping"}"#,
    r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hé"}}"#,
    r#"{"type":"content_block_stop","index":0}"#,
    r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"tu_1","name":"weather","input":{}}}"#,
    r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\": \"Ro"}}"#,
    r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"me\"}"}}"#,
    r#"{"type":"content_block_stop","index":1}"#,
    r#"{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"tu_2","name":"clock","input":{}}}"#,
    r#"{"type":"content_block_stop","index":2}"#,
    r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":17}}"#,
];

#[test]
fn a_stream_becomes_text_tool_calls_by_call_index_finish_and_usage() {
    let mut events = STREAM.to_vec();
    events.push(r#"{"type":"some_future_event","x":1}"#);
    events.push(r#"{"type":"message_stop"}"#);
    let chunks = parse_all(&events).unwrap();
    let piece = |index, id: Option<&str>, name: Option<&str>, arguments: &str| ProviderChunk::ToolCall {
        index,
        id: id.map(str::to_string),
        name: name.map(str::to_string),
        arguments: arguments.into(),
    };
    assert_eq!(
        chunks,
        vec![
            ProviderChunk::Text("Hé".into()),
            piece(0, Some("tu_1"), Some("weather"), ""),
            piece(0, None, None, "{\"city\": \"Ro"),
            piece(0, None, None, "me\"}"),
            piece(1, Some("tu_2"), Some("clock"), ""),
            // A call with no argument text gets its start's input.
            piece(1, None, None, "{}"),
            ProviderChunk::Finish("tool_calls".into()),
            ProviderChunk::Usage {
                input_tokens: 25,
                output_tokens: 17
            },
        ]
    );
}

#[test]
fn stream_errors_are_typed_and_end_it() {
    let with = |last: &str| {
        let mut events = STREAM[..2].to_vec();
        events.push(last);
        parse_all(&events)
    };
    assert!(matches!(
        with(r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#),
        Err(ProviderError::Server { status: 529, .. })
    ));
    assert!(matches!(
        with(r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow"}}"#),
        Err(ProviderError::RateLimited { .. })
    ));
    assert!(matches!(
        with(
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 9 tokens > 8 maximum"}}"#
        ),
        Err(ProviderError::ContextWindowExceeded { limit: 8, requested: 9 })
    ));
    assert!(matches!(
        with(r#"{"type":"error","error":{}}"#),
        Err(ProviderError::Server { status: 500, .. })
    ));
    for garbled in [
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_del"#,
        r#"{"type":"content_block_delta","index":7,"delta":{"type":"text_delta","text":"x"}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{"}}"#,
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        r#"{"type":"content_block_stop","index":3}"#,
        r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{}}"#,
        r#"{"type":"message_start"}"#,
        "[DONE]",
        "\u{0}",
    ] {
        assert!(matches!(with(garbled), Err(ProviderError::Malformed(_))), "{garbled}");
    }
    // A body that stops before `message_stop` is cut short, not whole.
    assert!(matches!(parse_all(&STREAM), Err(ProviderError::Malformed(_))));
}

#[test]
fn rate_limit_headers_parse_with_resets_from_now() {
    let h = headers(&[
        ("anthropic-ratelimit-requests-limit", "50"),
        ("anthropic-ratelimit-requests-remaining", "0"),
        ("anthropic-ratelimit-requests-reset", "2026-01-01T00:00:30Z"),
        ("anthropic-ratelimit-tokens-limit", "80000"),
        ("anthropic-ratelimit-tokens-remaining", "79000"),
        ("anthropic-ratelimit-tokens-reset", "2026-01-01T00:00:01.5Z"),
        ("anthropic-ratelimit-input-tokens-remaining", "1"),
    ]);
    let s = parse_rate_limit_headers(&h, new_year());
    assert_eq!(
        s,
        RateLimitSnapshot {
            remaining_requests: Some(0),
            remaining_tokens: Some(79_000),
            reset_requests: Some(Duration::from_secs(30)),
            reset_tokens: Some(Duration::from_millis(1500)),
            limit_requests: Some(50),
            limit_tokens: Some(80_000),
        }
    );
    assert!(parse_rate_limit_headers(&HeaderMap::new(), new_year()).is_empty());
}

#[test]
fn without_a_tokens_family_the_tighter_of_input_and_output_counts() {
    let h = headers(&[
        ("anthropic-ratelimit-input-tokens-limit", "40000"),
        ("anthropic-ratelimit-input-tokens-remaining", "39000"),
        ("anthropic-ratelimit-input-tokens-reset", "2026-01-01T00:00:02Z"),
        ("anthropic-ratelimit-output-tokens-limit", "8000"),
        ("anthropic-ratelimit-output-tokens-remaining", "0"),
        ("anthropic-ratelimit-output-tokens-reset", "2026-01-01T00:00:45Z"),
    ]);
    let s = parse_rate_limit_headers(&h, new_year());
    assert_eq!(
        (s.remaining_tokens, s.reset_tokens, s.limit_tokens),
        (Some(0), Some(Duration::from_secs(45)), Some(8000))
    );
    let only_input = headers(&[
        ("anthropic-ratelimit-input-tokens-remaining", "7"),
        ("anthropic-ratelimit-input-tokens-reset", "2026-01-01T00:00:02Z"),
    ]);
    let s = parse_rate_limit_headers(&only_input, new_year());
    assert_eq!(
        (s.remaining_tokens, s.reset_tokens),
        (Some(7), Some(Duration::from_secs(2)))
    );
    let only_output = headers(&[("anthropic-ratelimit-output-tokens-reset", "2026-01-01T00:00:03Z")]);
    let s = parse_rate_limit_headers(&only_output, new_year());
    assert_eq!(s.reset_tokens, Some(Duration::from_secs(3)));
}

#[test]
fn resets_are_rfc3339_instants_clamped_at_zero() {
    let now = new_year();
    assert_eq!(reset_in("2026-01-01T00:01:00Z", now), Some(Duration::from_secs(60)));
    assert_eq!(
        reset_in("2026-01-01T01:01:00+01:00", now),
        Some(Duration::from_secs(60))
    );
    assert_eq!(
        reset_in("2025-12-31T23:01:00-01:00", now),
        Some(Duration::from_secs(60))
    );
    assert_eq!(
        reset_in(" 2026-01-01T00:00:00.25z ", now),
        Some(Duration::from_millis(250))
    );
    // Past instants: no wait.
    assert_eq!(reset_in("2025-12-31T23:59:00Z", now), Some(Duration::ZERO));
    for bad in [
        "",
        "soon",
        "30",
        "2026-01-01",
        "2026-13-01T00:00:00Z",
        "2026-01-01T00:00:00+25:00",
        "2026-01-01T00:00:00+0100",
        "2026-01-01T00:00:00é0:00",
        "2026-01-03T00:00:00Z", // more than a day ahead
    ] {
        assert_eq!(reset_in(bad, now), None, "{bad}");
    }
}

#[test]
fn statuses_map_to_typed_errors() {
    let none = RateLimitSnapshot::default();
    let h = HeaderMap::new();
    assert!(matches!(
        status_error(429, &headers(&[("retry-after", "7")]), b"", none),
        ProviderError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(7)
    ));
    let exhausted = RateLimitSnapshot {
        remaining_requests: Some(0),
        reset_requests: Some(Duration::from_secs(12)),
        reset_tokens: Some(Duration::from_secs(2)),
        ..none
    };
    assert!(matches!(
        status_error(429, &h, b"", exhausted),
        ProviderError::RateLimited { retry_after: Some(d), snapshot } if d == Duration::from_secs(12) && snapshot == exhausted
    ));
    let overloaded = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    assert_eq!(
        status_error(529, &h, overloaded, none),
        ProviderError::Server {
            status: 529,
            message: "Overloaded".into()
        }
    );
    assert_eq!(status_error(401, &h, b"", none), ProviderError::Auth { status: 401 });
    assert_eq!(status_error(403, &h, b"", none), ProviderError::Auth { status: 403 });
    let too_long = br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 208310 tokens > 200000 maximum"}}"#;
    assert_eq!(
        status_error(400, &h, too_long, none),
        ProviderError::ContextWindowExceeded {
            limit: 200_000,
            requested: 208_310
        }
    );
    let invalid =
        br#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: field required"}}"#;
    assert_eq!(
        status_error(400, &h, invalid, none),
        ProviderError::Rejected {
            status: 400,
            message: "max_tokens: field required".into()
        }
    );
    assert!(matches!(
        status_error(404, &h, &[0xff, 0xfe], none),
        ProviderError::Rejected { status: 404, .. }
    ));
    match status_error(500, &h, &vec![b'x'; 10_000], none) {
        ProviderError::Server { message, .. } => assert!(message.len() < 300),
        other => panic!("{other:?}"),
    }
}

#[test]
fn misconfiguration_is_a_typed_error() {
    let pool = HttpPool::new(&LlmConfig::default()).unwrap();
    let missing = AnthropicConfig::new("http://127.0.0.1:1/v1").api_key_env("NEXUS_TEST_SURELY_UNSET_KEY");
    assert!(matches!(
        AnthropicMessages::with_env("a", &missing, &pool, |_| Some("  ".into())),
        Err(ProviderError::MissingKey { var }) if var == "NEXUS_TEST_SURELY_UNSET_KEY"
    ));
    assert!(matches!(
        AnthropicMessages::new("a", &AnthropicConfig::new("ftp://x"), &pool),
        Err(ProviderError::BadBaseUrl { reason: None, .. })
    ));
    let p = AnthropicMessages::with_env("a", &missing, &pool, |_| Some("sk-ant-secret".into())).unwrap();
    assert_eq!(p.name(), "a");
    assert_eq!(p.endpoint.url.as_str(), "http://127.0.0.1:1/v1/messages");
    assert!(
        !format!("{p:?}").contains("sk-ant-secret"),
        "the key stays out of Debug"
    );
}
