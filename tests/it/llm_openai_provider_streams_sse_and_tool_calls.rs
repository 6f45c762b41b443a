//! The OpenAI-compatible provider's streams and tools against a real HTTP
//! server on 127.0.0.1: tools, tool choice and response format go upstream
//! in OpenAI's shape; tool calls come back whole and streamed; server-sent
//! events split anywhere are read as they come; a 429 refuses the stream
//! before it begins; a garbled event breaks the stream with a typed error.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt;
use nexus_swarm::actors::llm::openai::{HttpPool, OpenAiCompatible, OpenAiConfig};
use nexus_swarm::actors::llm::types::{LlmChunk, ProviderChunk, ResponseFormat, ToolChoice, ToolDef};
use nexus_swarm::actors::llm::{
    DeploymentSpec, GatewayError, LlmProvider, LlmRequest, Message, ModelCatalogue, ModelSpec, ProviderError,
    ProviderRequest,
};
use nexus_swarm::actors::llm_gateway::{LlmGateway, LlmGatewayArgs, ProviderEntry};
use nexus_swarm::runtime::config::LlmConfig;
use parking_lot::Mutex;
use serde_json::{Value, json};

#[derive(Default)]
struct Upstream {
    last: Mutex<Value>,
}

/// A stream's events, sent in pieces cut every `cut` bytes.
fn sse(events: &[Value], tail: &str, cut: usize) -> Response {
    let mut text = String::new();
    for e in events {
        text.push_str(&format!("data: {e}\r\n\r\n"));
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
            ("x-ratelimit-remaining-requests", "9"),
        ],
        Body::from_stream(futures::stream::iter(pieces)),
    )
        .into_response()
}

fn delta(d: Value, finish: Option<&str>) -> Value {
    json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": d, "finish_reason": finish}], "usage": null})
}

async fn chat(State(s): State<Arc<Upstream>>, Json(body): Json<Value>) -> Response {
    *s.last.lock() = body.clone();
    let model = body["model"].as_str().unwrap_or_default();
    match model {
        "tools" => Json(json!({
            "choices": [{"message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_9", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}
            ]}, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29}
        }))
        .into_response(),
        "stream" => sse(
            &[
                delta(json!({"role": "assistant", "content": ""}), None),
                delta(json!({"content": "Hé"}), None),
                delta(json!({"content": "llo"}), None),
                delta(
                    json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"ci"}}]}),
                    None,
                ),
                delta(json!({"tool_calls": [{"index": 0, "function": {"arguments": "ty\":\"Rome\"}"}}]}), None),
                delta(json!({}), Some("tool_calls")),
                json!({"object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}}),
            ],
            "data: [DONE]\n\n",
            7,
        ),
        "garbled" => sse(&[delta(json!({"content": "ok"}), None)], "data: {\"choices\": [ {\"del\n\n", 5),
        "limited" => (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "3")], "slow down").into_response(),
        _ => (StatusCode::NOT_FOUND, "no such model").into_response(),
    }
}

async fn serve() -> (SocketAddr, Arc<Upstream>) {
    let state = Arc::new(Upstream::default());
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .with_state(Arc::clone(&state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, state)
}

fn provider(addr: SocketAddr) -> OpenAiCompatible {
    let pool = HttpPool::new(&LlmConfig::default()).unwrap();
    OpenAiCompatible::new("up", &OpenAiConfig::new(format!("http://{addr}/v1")), &pool).unwrap()
}

fn weather() -> ToolDef {
    ToolDef {
        name: "weather".into(),
        description: None,
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
    }
}

fn req(model: &str) -> ProviderRequest {
    ProviderRequest {
        model: model.into(),
        messages: vec![
            Message::user("Weather?"),
            Message::tool_calls(vec![nexus_swarm::actors::llm::types::ToolCall {
                id: "call_0".into(),
                name: "weather".into(),
                arguments: "{}".into(),
            }]),
            Message::tool_result("call_0", "rain"),
        ],
        max_tokens: 32,
        tools: vec![weather()],
        tool_choice: ToolChoice::Named("weather".into()),
        response_format: ResponseFormat::JsonObject,
        ..ProviderRequest::default()
    }
}

#[tokio::test]
async fn tools_go_up_in_openai_shape_and_tool_calls_come_back() {
    let (addr, up) = serve().await;
    let resp = provider(addr).complete(req("tools")).await.unwrap();
    assert_eq!(resp.content, "");
    assert_eq!(resp.finish_reason, "tool_calls");
    assert_eq!(resp.tool_calls[0].id, "call_9");
    assert_eq!(resp.tool_calls[0].arguments, r#"{"city":"Oslo"}"#);
    let sent = up.last.lock().clone();
    assert_eq!(sent["tools"][0]["type"], "function");
    assert_eq!(sent["tools"][0]["function"]["name"], "weather");
    assert_eq!(sent["tool_choice"]["function"]["name"], "weather");
    assert_eq!(sent["response_format"]["type"], "json_object");
    assert_eq!(sent["messages"][1]["content"], Value::Null);
    assert_eq!(sent["messages"][1]["tool_calls"][0]["id"], "call_0");
    assert_eq!(sent["messages"][2]["role"], "tool");
    assert_eq!(sent["messages"][2]["tool_call_id"], "call_0");
    assert!(sent.get("stream").is_none());
}

#[tokio::test]
async fn a_stream_split_anywhere_is_read_chunk_by_chunk() {
    let (addr, up) = serve().await;
    let stream = provider(addr).stream(req("stream")).await.unwrap();
    assert_eq!(stream.rate_limit.remaining_requests, Some(9));
    let chunks: Vec<ProviderChunk> = stream.chunks.map(Result::unwrap).collect().await;
    assert_eq!(
        chunks,
        vec![
            ProviderChunk::Text("Hé".into()),
            ProviderChunk::Text("llo".into()),
            ProviderChunk::ToolCall {
                index: 0,
                id: Some("call_1".into()),
                name: Some("weather".into()),
                arguments: "{\"ci".into()
            },
            ProviderChunk::ToolCall {
                index: 0,
                id: None,
                name: None,
                arguments: "ty\":\"Rome\"}".into()
            },
            ProviderChunk::Finish("tool_calls".into()),
            ProviderChunk::Usage {
                input_tokens: 12,
                output_tokens: 5
            },
        ]
    );
    let sent = up.last.lock().clone();
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn a_refused_stream_fails_before_it_begins_and_a_garbled_one_breaks_typed() {
    let (addr, _up) = serve().await;
    let p = provider(addr);
    match p.stream(req("limited")).await {
        Err(ProviderError::RateLimited { retry_after, .. }) => assert_eq!(retry_after, Some(Duration::from_secs(3))),
        other => panic!("expected a 429, got {:?}", other.map(|s| s.rate_limit)),
    }
    // Through the gateway: the part that came is delivered, then a typed
    // error; the gateway lives on.
    let catalogue = ModelCatalogue::new(vec![
        ModelSpec::new("m", 8_000, 1_000_000, 1_000_000)
            .deployment(DeploymentSpec::new("m@up", "up").upstream("garbled")),
    ])
    .unwrap();
    let mut args = LlmGatewayArgs::new(catalogue, vec![ProviderEntry::new("up", Arc::new(p))]);
    args.cache.enabled = false;
    let (gw, _actor, _join) = LlmGateway::spawn_unsupervised(args).await.unwrap();
    let mut s = gw.stream(LlmRequest::user("hi").max_tokens(16)).await.unwrap();
    assert_eq!(s.next().await, Some(Ok(LlmChunk::Text("ok".into()))));
    match s.next().await {
        Some(Err(GatewayError::StreamBroken {
            error: ProviderError::Malformed(_),
            ..
        })) => {}
        other => panic!("expected a broken stream, got {other:?}"),
    }
    assert!(s.next().await.is_none());
    assert!(gw.is_running());
    assert_eq!(gw.stats().failed, 1);
}
