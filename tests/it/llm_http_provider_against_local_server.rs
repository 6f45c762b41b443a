//! The OpenAI-compatible provider against a real HTTP server on 127.0.0.1
//! started by the test: successes with rate-limit headers and the API key,
//! 429s, 5xx, slow, malformed and refused replies all become typed results,
//! never panics; and the gateway retries a 429 over HTTP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use nexus_swarm::actors::llm::openai::{HttpPool, OpenAiCompatible, OpenAiConfig};
use nexus_swarm::actors::llm::{
    DeploymentSpec, LlmProvider, LlmRequest, Message, ModelCatalogue, ModelSpec, ProviderError, ProviderRequest,
};
use nexus_swarm::actors::llm_gateway::{LlmGateway, LlmGatewayArgs, ProviderEntry};
use nexus_swarm::runtime::config::LlmConfig;
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(10);
/// A variable cargo sets for every test process: it stands for an API key.
const KEY_VAR: &str = "CARGO_PKG_NAME";

#[derive(Default)]
struct Server {
    flaky_calls: AtomicU64,
}

async fn chat(State(s): State<Arc<Server>>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let model = body["model"].as_str().unwrap_or_default().to_string();
    let ok = || {
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-remaining-requests", "41".parse().unwrap());
        h.insert("x-ratelimit-limit-requests", "60".parse().unwrap());
        h.insert("x-ratelimit-reset-tokens", "1m30s".parse().unwrap());
        let reply = json!({
            "choices": [{"message": {"role": "assistant", "content": format!("echo {}", body["messages"][0]["content"].as_str().unwrap_or(""))}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
        });
        (StatusCode::OK, h, Json(reply)).into_response()
    };
    match model.as_str() {
        "ok" => {
            let expected = format!("Bearer {}", std::env::var(KEY_VAR).unwrap());
            if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
                return StatusCode::UNAUTHORIZED.into_response();
            }
            ok()
        }
        "nokey" => ok(),
        "limited" => (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "2"), ("x-ratelimit-remaining-requests", "0")], "slow down").into_response(),
        "broken" => (StatusCode::SERVICE_UNAVAILABLE, "<html>upstream down</html>").into_response(),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            ok()
        }
        "garbage" => (StatusCode::OK, "{\"choices\": [ {\"mess").into_response(),
        "empty" => (StatusCode::OK, Json(json!({"choices": []}))).into_response(),
        "context" => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"message": "This model's maximum context length is 4096 tokens", "code": "context_length_exceeded"}})),
        )
            .into_response(),
        "flaky" => {
            if s.flaky_calls.fetch_add(1, Ordering::SeqCst) == 0 {
                (StatusCode::TOO_MANY_REQUESTS, [("retry-after-ms", "150")], "").into_response()
            } else {
                ok()
            }
        }
        _ => (StatusCode::NOT_FOUND, Json(json!({"error": {"message": "no such model"}}))).into_response(),
    }
}

async fn serve() -> (SocketAddr, Arc<Server>, tokio::task::JoinHandle<()>) {
    let state = Arc::new(Server::default());
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .with_state(Arc::clone(&state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, state, task)
}

fn req(model: &str) -> ProviderRequest {
    ProviderRequest {
        model: model.into(),
        messages: vec![Message::user("ping")],
        max_tokens: 16,
        temperature_milli: 0,
        ..ProviderRequest::default()
    }
}

fn provider(addr: SocketAddr, timeout: Duration) -> OpenAiCompatible {
    let pool = HttpPool::new(&LlmConfig::default()).unwrap();
    let cfg = OpenAiConfig::new(format!("http://{addr}/v1"))
        .api_key_env(KEY_VAR)
        .timeout(timeout);
    OpenAiCompatible::new("local", &cfg, &pool).unwrap()
}

#[tokio::test]
async fn every_kind_of_reply_becomes_a_typed_result() {
    let (addr, _state, server) = serve().await;
    let p = provider(addr, Duration::from_millis(300));
    let r = tokio::time::timeout(TIMEOUT, p.complete(req("ok")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.content, "echo ping");
    assert_eq!((r.input_tokens, r.output_tokens), (11, 7));
    assert_eq!(r.rate_limit.remaining_requests, Some(41));
    assert_eq!(r.rate_limit.limit_requests, Some(60));
    assert_eq!(r.rate_limit.reset_tokens, Some(Duration::from_secs(90)));

    let call = |m: &'static str| {
        let p = p.clone();
        async move { tokio::time::timeout(TIMEOUT, p.complete(req(m))).await.unwrap() }
    };
    match call("limited").await {
        Err(ProviderError::RateLimited { retry_after, snapshot }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(2)));
            assert_eq!(snapshot.remaining_requests, Some(0));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        call("broken").await,
        Err(ProviderError::Server { status: 503, .. })
    ));
    assert!(matches!(call("slow").await, Err(ProviderError::Timeout(_))));
    assert!(matches!(call("garbage").await, Err(ProviderError::Malformed(_))));
    assert!(matches!(call("empty").await, Err(ProviderError::Malformed(_))));
    assert!(matches!(
        call("context").await,
        Err(ProviderError::ContextWindowExceeded { .. })
    ));
    assert!(matches!(
        call("unknown").await,
        Err(ProviderError::Rejected { status: 404, .. })
    ));

    // Without the key the server refuses: a typed auth error.
    let pool = HttpPool::new(&LlmConfig::default()).unwrap();
    let keyless = OpenAiCompatible::new("nokey", &OpenAiConfig::new(format!("http://{addr}/v1")), &pool).unwrap();
    assert!(matches!(
        tokio::time::timeout(TIMEOUT, keyless.complete(req("ok")))
            .await
            .unwrap(),
        Err(ProviderError::Auth { status: 401 })
    ));
    assert!(
        tokio::time::timeout(TIMEOUT, keyless.complete(req("nokey")))
            .await
            .unwrap()
            .is_ok()
    );
    server.abort();

    // Nobody listening: a connection error.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = closed.local_addr().unwrap();
    drop(closed);
    assert!(matches!(
        tokio::time::timeout(TIMEOUT, provider(dead, Duration::from_secs(2)).complete(req("ok")))
            .await
            .unwrap(),
        Err(ProviderError::Connect(_))
    ));
}

#[tokio::test]
async fn the_gateway_retries_a_429_over_http_and_settles_the_reported_usage() {
    let (addr, state, server) = serve().await;
    let p = provider(addr, Duration::from_secs(5));
    let catalogue = ModelCatalogue::new(vec![
        ModelSpec::new("flaky", 8_000, 1_000_000, 2_000_000).deployment(DeploymentSpec::new("flaky@local", "local")),
    ])
    .unwrap();
    let mut args = LlmGatewayArgs::new(catalogue, vec![ProviderEntry::new("local", Arc::new(p))]);
    args.cache.enabled = false;
    args.llm.retry.base_backoff = Duration::from_millis(10);
    args.llm.retry.max_backoff = Duration::from_millis(20);
    let (gw, _actor, _join) = LlmGateway::spawn_unsupervised(args).await.unwrap();
    let start = std::time::Instant::now();
    let r = tokio::time::timeout(TIMEOUT, gw.complete(LlmRequest::user("hello").timeout(TIMEOUT)))
        .await
        .unwrap()
        .unwrap();
    assert!(start.elapsed() >= Duration::from_millis(150), "retry-after-ms honoured");
    assert_eq!(r.attempts, 2);
    assert_eq!(state.flaky_calls.load(Ordering::SeqCst), 2);
    // 11 prompt tokens at $1/M and 7 completion tokens at $2/M, rounded up.
    assert_eq!((r.input_tokens, r.output_tokens, r.cost_micro_usd), (11, 7, 25));
    assert_eq!(gw.stats().provider_429s, 1);
    server.abort();
}
