//! The Anthropic Messages provider against a local mock of the API on
//! 127.0.0.1: the key and version headers go up; a plain answer, a
//! `tool_use` answer and a streamed answer (text and `tool_use`, its
//! events cut into 7-byte pieces) come back in the gateway's shape; a 429
//! with `retry-after` and `anthropic-ratelimit-*` headers is retried by the
//! gateway after the wait it asked for; `remaining: 0` with an RFC 3339
//! reset holds the deployment until then; an overloaded 529, a refused
//! key, a prompt too long and a garbled or cut event stream are typed
//! errors; and a call through the gateway, whole or streamed, is charged in
//! the ledger like any other.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt;
use nexus_swarm::actors::cost_ledger::{
    Budget, BudgetAction, BudgetPeriod, CostLedger, CostLedgerArgs, LedgerHandle, LedgerOptions, TimeRange,
};
use nexus_swarm::actors::llm::anthropic::{AnthropicConfig, AnthropicMessages};
use nexus_swarm::actors::llm::types::{LlmChunk, ProviderChunk, ToolCall, ToolChoice, ToolDef};
use nexus_swarm::actors::llm::{
    DeploymentSpec, GatewayError, HttpPool, LlmProvider, LlmRequest, Message, ModelCatalogue, ModelSpec, ProviderError,
    ProviderRequest,
};
use nexus_swarm::actors::llm_gateway::{GatewayHandle, LlmGateway, LlmGatewayArgs, ProviderEntry};
use nexus_swarm::runtime::config::LlmConfig;
use nexus_swarm::runtime::resources::ResourceKind;
use parking_lot::Mutex;
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(10);
/// A variable cargo sets for every test process: it stands for an API key.
const KEY_VAR: &str = "CARGO_PKG_NAME";
/// Micro-dollars per million prompt and completion tokens.
const PRICES: (u64, u64) = (3_000_000, 15_000_000);

#[derive(Default)]
struct Mock {
    /// The last body received.
    last: Mutex<Value>,
    /// When each call of each model arrived.
    calls: Mutex<HashMap<String, Vec<Instant>>>,
}

impl Mock {
    fn calls_of(&self, model: &str) -> Vec<Instant> {
        self.calls.lock().get(model).cloned().unwrap_or_default()
    }
}

fn error(status: u16, kind: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        axum::Json(json!({"type": "error", "error": {"type": kind, "message": message}})),
    )
        .into_response()
}

fn message(content: Value, stop: &str, headers: &[(&'static str, String)]) -> Response {
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.insert(*k, v.parse().unwrap());
    }
    let body = json!({
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-test",
        "content": content, "stop_reason": stop, "stop_sequence": null,
        "usage": {"input_tokens": 25, "output_tokens": 9}
    });
    (StatusCode::OK, h, axum::Json(body)).into_response()
}

/// A stream of `(event, data)` pairs sent in pieces of `cut` bytes.
fn sse(events: &[(&str, Value)], tail: &str, cut: usize) -> Response {
    let mut text = String::new();
    for (name, data) in events {
        text.push_str(&format!("event: {name}\r\ndata: {data}\r\n\r\n"));
    }
    text.push_str(tail);
    let pieces: Vec<Result<Bytes, std::io::Error>> = text
        .as_bytes()
        .chunks(cut)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    (
        [
            ("content-type", "text/event-stream"),
            ("anthropic-ratelimit-requests-remaining", "49"),
            ("anthropic-ratelimit-requests-limit", "50"),
        ],
        Body::from_stream(futures::stream::iter(pieces)),
    )
        .into_response()
}

/// Text "Hé" + "llo", then a call of `weather` whose arguments come in two
/// pieces; 25 prompt and 17 completion tokens.
fn streamed_answer() -> Vec<(&'static str, Value)> {
    vec![
        (
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_02", "type": "message", "role": "assistant", "content": [], "model": "claude-test", "stop_reason": null, "usage": {"input_tokens": 25, "output_tokens": 1}}}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        ("ping", json!({"type": "ping"})),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hé"}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "llo"}}),
        ),
        ("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"city\": \"Ro"}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "me\"}"}}),
        ),
        ("content_block_stop", json!({"type": "content_block_stop", "index": 1})),
        (
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 17}}),
        ),
        ("message_stop", json!({"type": "message_stop"})),
    ]
}

/// An RFC 3339 instant `after` from now, as Anthropic writes resets.
fn reset_after(after: Duration) -> String {
    humantime::format_rfc3339_millis(SystemTime::now() + after).to_string()
}

async fn messages(State(s): State<Arc<Mock>>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(400, "invalid_request_error", "body is not JSON");
    };
    *s.last.lock() = body.clone();
    let model = body["model"].as_str().unwrap_or_default().to_string();
    let n = {
        let mut calls = s.calls.lock();
        let seen = calls.entry(model.clone()).or_default();
        seen.push(Instant::now());
        seen.len()
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    if header("x-api-key") != std::env::var(KEY_VAR).unwrap()
        || header("anthropic-version") != "2023-06-01"
        || header("content-type") != "application/json"
    {
        return error(401, "authentication_error", "invalid x-api-key");
    }
    let text = |t: &str| json!([{"type": "text", "text": t}]);
    match model.as_str() {
        "plain" => message(
            text("Hello there."),
            "end_turn",
            &[
                ("anthropic-ratelimit-requests-remaining", "49".into()),
                ("anthropic-ratelimit-requests-reset", reset_after(Duration::from_secs(1))),
            ],
        ),
        "tools" => message(
            json!([{"type": "text", "text": "Checking."},
                   {"type": "tool_use", "id": "toolu_9", "name": "weather", "input": {"city": "Oslo"}}]),
            "tool_use",
            &[],
        ),
        "stream" => sse(&streamed_answer(), "", 7),
        // Refused once with a one-second retry-after, then served.
        "limited" if n == 1 => (
            StatusCode::TOO_MANY_REQUESTS,
            [
                ("retry-after", "1".to_string()),
                ("anthropic-ratelimit-requests-limit", "50".into()),
                ("anthropic-ratelimit-requests-remaining", "0".into()),
                ("anthropic-ratelimit-requests-reset", reset_after(Duration::from_secs(1))),
            ],
            axum::Json(json!({"type": "error", "error": {"type": "rate_limit_error", "message": "Number of requests has exceeded your rate limit"}})),
        )
            .into_response(),
        "limited" => message(text("Served."), "end_turn", &[]),
        // Served, with nothing left for the next 1.5 s.
        "drained" => message(
            text("Last one."),
            "max_tokens",
            &[
                ("anthropic-ratelimit-input-tokens-remaining", "0".into()),
                ("anthropic-ratelimit-input-tokens-reset", reset_after(Duration::from_millis(1500))),
                ("anthropic-ratelimit-output-tokens-remaining", "9000".into()),
            ],
        ),
        "overloaded" => error(529, "overloaded_error", "Overloaded"),
        "long" => error(400, "invalid_request_error", "prompt is too long: 208310 tokens > 200000 maximum"),
        "garbled" => {
            let events = streamed_answer();
            sse(&events[..4], "event: content_block_delta\ndata: {\"type\": \"content_block_del\n\n", 5)
        }
        "cut" => sse(&streamed_answer()[..5], "", 9),
        "error-event" => {
            let mut events = streamed_answer()[..4].to_vec();
            events.push((
                "error",
                json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            ));
            sse(&events, "", 11)
        }
        _ => error(404, "not_found_error", "model not found"),
    }
}

async fn serve() -> (SocketAddr, Arc<Mock>, tokio::task::JoinHandle<()>) {
    let state = Arc::new(Mock::default());
    let app = Router::new()
        .route("/v1/messages", post(messages))
        .with_state(Arc::clone(&state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, state, task)
}

fn provider(addr: SocketAddr) -> AnthropicMessages {
    let pool = HttpPool::new(&LlmConfig::default()).unwrap();
    let config = AnthropicConfig::new(format!("http://{addr}/v1")).api_key_env(KEY_VAR);
    AnthropicMessages::new("claude", &config, &pool).unwrap()
}

fn weather() -> ToolDef {
    ToolDef {
        name: "weather".into(),
        description: Some("Today's weather in a city".into()),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    }
}

fn req(model: &str) -> ProviderRequest {
    ProviderRequest {
        model: model.into(),
        messages: vec![
            Message::system("Be brief."),
            Message::user("Weather in Oslo?"),
            Message::tool_calls(vec![ToolCall {
                id: "toolu_0".into(),
                name: "weather".into(),
                arguments: r#"{"city":"Oslo"}"#.into(),
            }]),
            Message::tool_result("toolu_0", "rain"),
        ],
        max_tokens: 64,
        temperature_milli: 1500,
        tools: vec![weather()],
        tool_choice: ToolChoice::Required,
        ..ProviderRequest::default()
    }
}

#[tokio::test]
async fn a_plain_answer_and_a_tool_use_answer_come_back_in_the_gateways_shape() {
    let (addr, mock, server) = serve().await;
    let p = provider(addr);
    let plain = p.complete(req("plain")).await.unwrap();
    assert_eq!(plain.content, "Hello there.");
    assert_eq!(plain.finish_reason, "stop");
    assert_eq!((plain.input_tokens, plain.output_tokens), (25, 9));
    assert!(plain.tool_calls.is_empty());
    assert_eq!(plain.rate_limit.remaining_requests, Some(49));
    let reset = plain.rate_limit.reset_requests.expect("the reset parses");
    assert!(
        reset <= Duration::from_secs(1) && reset >= Duration::from_millis(500),
        "{reset:?}"
    );

    // What went up: Anthropic's shape.
    let sent = mock.last.lock().clone();
    assert_eq!(sent["system"], "Be brief.");
    assert_eq!(sent["max_tokens"], 64);
    assert_eq!(sent["temperature"], 1.0, "clamped to Anthropic's range");
    assert_eq!(sent["tool_choice"], json!({"type": "any"}));
    assert_eq!(sent["tools"][0]["input_schema"]["required"][0], "city");
    assert_eq!(
        sent["messages"][1]["content"][0],
        json!({"type": "tool_use", "id": "toolu_0", "name": "weather", "input": {"city": "Oslo"}})
    );
    assert_eq!(sent["messages"][2]["role"], "user");
    assert_eq!(
        sent["messages"][2]["content"][0],
        json!({"type": "tool_result", "tool_use_id": "toolu_0", "content": "rain"})
    );
    assert!(sent.get("stream").is_none());

    let tools = p.complete(req("tools")).await.unwrap();
    assert_eq!(tools.content, "Checking.");
    assert_eq!(tools.finish_reason, "tool_calls");
    assert_eq!(
        tools.tool_calls,
        vec![ToolCall {
            id: "toolu_9".into(),
            name: "weather".into(),
            arguments: r#"{"city":"Oslo"}"#.into(),
        }]
    );
    server.abort();
}

#[tokio::test]
async fn a_stream_cut_into_pieces_is_read_event_by_event() {
    let (addr, mock, server) = serve().await;
    let stream = provider(addr).stream(req("stream")).await.unwrap();
    assert_eq!(stream.rate_limit.remaining_requests, Some(49));
    assert_eq!(stream.rate_limit.limit_requests, Some(50));
    let chunks: Vec<ProviderChunk> = stream.chunks.map(Result::unwrap).collect().await;
    let piece = |id: Option<&str>, name: Option<&str>, arguments: &str| ProviderChunk::ToolCall {
        index: 0,
        id: id.map(str::to_string),
        name: name.map(str::to_string),
        arguments: arguments.into(),
    };
    assert_eq!(
        chunks,
        vec![
            ProviderChunk::Text("Hé".into()),
            ProviderChunk::Text("llo".into()),
            piece(Some("toolu_1"), Some("weather"), ""),
            piece(None, None, "{\"city\": \"Ro"),
            piece(None, None, "me\"}"),
            ProviderChunk::Finish("tool_calls".into()),
            ProviderChunk::Usage {
                input_tokens: 25,
                output_tokens: 17
            },
        ]
    );
    assert_eq!(mock.last.lock()["stream"], true);
    server.abort();
}

#[tokio::test]
async fn refusals_and_broken_streams_are_typed_errors() {
    let (addr, _mock, server) = serve().await;
    let p = provider(addr);
    assert_eq!(
        p.complete(req("overloaded")).await.unwrap_err(),
        ProviderError::Server {
            status: 529,
            message: "Overloaded".into()
        }
    );
    assert!(matches!(
        p.stream(req("overloaded")).await,
        Err(ProviderError::Server { status: 529, .. })
    ));
    assert_eq!(
        p.complete(req("long")).await.unwrap_err(),
        ProviderError::ContextWindowExceeded {
            limit: 200_000,
            requested: 208_310
        }
    );
    let pool = HttpPool::new(&LlmConfig::default()).unwrap();
    let keyless = AnthropicMessages::new("k", &AnthropicConfig::new(format!("http://{addr}/v1")), &pool).unwrap();
    assert_eq!(
        keyless.complete(req("plain")).await.unwrap_err(),
        ProviderError::Auth { status: 401 }
    );
    // Invalid arguments are refused here, before anything is sent.
    let mut bad = req("plain");
    bad.messages[2].tool_calls[0].arguments = "{\"city\":".into();
    assert!(matches!(p.complete(bad).await, Err(ProviderError::InvalidRequest(_))));

    for model in ["garbled", "cut", "error-event"] {
        let stream = p.stream(req(model)).await.unwrap();
        let items: Vec<Result<ProviderChunk, ProviderError>> = stream.chunks.collect().await;
        assert_eq!(
            items.first().cloned().map(Result::unwrap),
            Some(ProviderChunk::Text("Hé".into())),
            "{model}: what came before the fault is delivered"
        );
        let last = items.last().unwrap().clone();
        match model {
            "error-event" => assert!(
                matches!(last, Err(ProviderError::Server { status: 529, .. })),
                "{model}: {last:?}"
            ),
            _ => assert!(matches!(last, Err(ProviderError::Malformed(_))), "{model}: {last:?}"),
        }
        assert_eq!(
            items.iter().filter(|i| i.is_err()).count(),
            1,
            "{model}: one error, last"
        );
    }
    server.abort();
}

/// A gateway over one Anthropic deployment per model of `models` (each
/// sent upstream under its own name), with fast backoff and no cache.
async fn gateway(addr: SocketAddr, models: &[&str]) -> GatewayHandle {
    let specs = models
        .iter()
        .map(|m| {
            ModelSpec::new(*m, 200_000, PRICES.0, PRICES.1)
                .deployment(DeploymentSpec::new(format!("{m}@claude"), "claude"))
        })
        .collect();
    let mut args = LlmGatewayArgs::new(
        ModelCatalogue::new(specs).unwrap(),
        vec![ProviderEntry::new("claude", Arc::new(provider(addr)))],
    );
    args.cache.enabled = false;
    args.llm.retry.base_backoff = Duration::from_millis(10);
    args.llm.retry.max_backoff = Duration::from_millis(20);
    let (gw, _actor, _join) = LlmGateway::spawn_unsupervised(args).await.unwrap();
    gw
}

#[tokio::test]
async fn the_gateway_retries_a_429_after_the_wait_anthropic_asked_for() {
    let (addr, mock, server) = serve().await;
    let gw = gateway(addr, &["limited"]).await;
    let r = tokio::time::timeout(
        TIMEOUT,
        gw.complete(
            LlmRequest::user("hello")
                .model("limited")
                .max_tokens(16)
                .timeout(TIMEOUT),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(r.content, "Served.");
    assert_eq!(r.attempts, 2);
    assert_eq!(gw.stats().provider_429s, 1);
    let calls = mock.calls_of("limited");
    assert_eq!(calls.len(), 2);
    let waited = calls[1] - calls[0];
    assert!(waited >= Duration::from_millis(990), "retry-after honoured: {waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    server.abort();
}

#[tokio::test]
async fn no_tokens_left_until_an_rfc3339_reset_holds_every_model_of_the_provider() {
    let (addr, mock, server) = serve().await;
    let gw = gateway(addr, &["drained", "plain"]).await;
    let ask = |m: &str, timeout: Duration| LlmRequest::user("hi").model(m).max_tokens(16).timeout(timeout);
    gw.complete(ask("drained", TIMEOUT)).await.unwrap();
    let first = mock.calls_of("drained")[0];
    // Held: neither model reaches the provider before the reset.
    for m in ["drained", "plain"] {
        assert!(
            matches!(
                gw.complete(ask(m, Duration::from_millis(300))).await,
                Err(GatewayError::DeadlineExceeded(_))
            ),
            "{m} was not held"
        );
    }
    assert!(mock.calls_of("plain").is_empty());
    // After the reset it is served.
    let r = tokio::time::timeout(TIMEOUT, gw.complete(ask("plain", TIMEOUT)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.content, "Hello there.");
    let waited = mock.calls_of("plain")[0] - first;
    assert!(
        waited >= Duration::from_millis(1300) && waited < Duration::from_secs(5),
        "held until the reset: {waited:?}"
    );
    assert_eq!(mock.calls_of("drained").len(), 1);
    server.abort();
}

async fn ledger(dir: &std::path::Path) -> LedgerHandle {
    let (_actor, ledger) = CostLedger::spawn_unsupervised(CostLedgerArgs::open(LedgerOptions::new(dir)).await.unwrap())
        .await
        .unwrap();
    ledger
        .put_budget(Budget::new("daily", 1_000_000, BudgetPeriod::Daily, BudgetAction::Halt))
        .await
        .unwrap();
    ledger
}

#[tokio::test]
async fn calls_through_the_gateway_are_charged_in_the_ledger_like_any_other() {
    let (addr, _mock, server) = serve().await;
    let dir = tempfile::tempdir().unwrap();
    let ledger = ledger(dir.path()).await;
    let catalogue = ModelCatalogue::new(
        ["plain", "stream"]
            .into_iter()
            .map(|m| {
                ModelSpec::new(m, 200_000, PRICES.0, PRICES.1)
                    .deployment(DeploymentSpec::new(format!("{m}@claude"), "claude"))
            })
            .collect(),
    )
    .unwrap();
    ledger.use_catalogue_prices(&catalogue).await.unwrap();
    let mut args = LlmGatewayArgs::new(catalogue, vec![ProviderEntry::new("claude", Arc::new(provider(addr)))])
        .gate(Arc::new(ledger.budgets()))
        .sink(Arc::new(ledger.clone()));
    args.cache.enabled = false;
    let (gw, _actor, _join) = LlmGateway::spawn_unsupervised(args).await.unwrap();

    // Whole: 25 prompt tokens at $3/M (75) and 9 completion tokens at $15/M (135).
    let whole = gw
        .complete(LlmRequest::user("hello").model("plain").max_tokens(64).timeout(TIMEOUT))
        .await
        .unwrap();
    assert_eq!(whole.deployment, "plain@claude");
    assert_eq!(
        (whole.input_tokens, whole.output_tokens, whole.cost_micro_usd),
        (25, 9, 210)
    );

    // Streamed: the same prompt and 17 completion tokens (255).
    let mut s = gw
        .stream(
            LlmRequest::user("hello")
                .model("stream")
                .max_tokens(64)
                .timeout(TIMEOUT),
        )
        .await
        .unwrap();
    let mut done = None;
    while let Some(chunk) = s.next().await {
        if let LlmChunk::Done(resp) = chunk.unwrap() {
            done = Some(resp);
        }
    }
    let streamed = done.expect("the stream ends with its settled answer");
    assert_eq!(streamed.content, "Héllo");
    assert_eq!(streamed.tool_calls[0].arguments, "{\"city\": \"Rome\"}");
    assert_eq!(streamed.finish_reason, "tool_calls");
    assert_eq!(
        (streamed.input_tokens, streamed.output_tokens, streamed.cost_micro_usd),
        (25, 17, 330)
    );

    let records = ledger.records(TimeRange::all()).await.unwrap();
    let of = |model: &str, kind: ResourceKind| {
        records
            .iter()
            .filter(|r| r.meta.scope.model.as_deref() == Some(model) && r.kind == kind)
            .map(|r| (r.amount, r.cost_micro_usd))
            .collect::<Vec<_>>()
    };
    assert_eq!(of("plain", ResourceKind::InputTokens), vec![(25, 75)]);
    assert_eq!(of("plain", ResourceKind::OutputTokens), vec![(9, 135)]);
    assert_eq!(of("stream", ResourceKind::InputTokens), vec![(25, 75)]);
    assert_eq!(of("stream", ResourceKind::OutputTokens), vec![(17, 255)]);
    let status = ledger.budget_status("daily").unwrap();
    assert_eq!(status.spent_micro_usd, 210 + 330);
    assert_eq!(status.inflight_micro_usd, 0);
    assert_eq!(gw.stats().sink_errors, 0);
    server.abort();
}
