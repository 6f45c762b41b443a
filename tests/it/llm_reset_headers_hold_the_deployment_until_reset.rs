//! A reply's `x-ratelimit-remaining-{tokens,requests}: 0` with its
//! `x-ratelimit-reset-*` (`6m0s`, `1m30.5s`, `1s`, `20ms`) holds the
//! deployment and every other model of its provider until the reset, and
//! not longer: with limits configured on the provider entry, on the
//! deployment, or nowhere at all. A deployment of the same model at
//! another provider keeps serving. Replies are read through the HTTP
//! provider's own header parsing, on paused time, and end to end against a
//! local HTTP server on real time.

use crate::support::scripted_headers as scripted;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use nexus_swarm::actors::llm::openai::{HttpPool, OpenAiCompatible, OpenAiConfig};
use nexus_swarm::actors::llm::{DeploymentSpec, GatewayError, LlmRequest, ModelCatalogue, ModelSpec, RateLimits};
use nexus_swarm::actors::llm_gateway::{LlmGateway, LlmGatewayArgs, ProviderEntry};
use nexus_swarm::runtime::config::LlmConfig;
use parking_lot::Mutex;
use scripted::{LimitsAt, Reply, Scripted, gateway};
use serde_json::{Value, json};
use tokio::time::Instant;

const TIMEOUT: Duration = Duration::from_secs(900);
const LEVELS: [LimitsAt; 3] = [LimitsAt::Provider, LimitsAt::Deployment, LimitsAt::Nowhere];

fn req(model: &str) -> LlmRequest {
    LlmRequest::user("hello").model(model).max_tokens(5).timeout(TIMEOUT)
}

/// After a reply with `headers`, calls of the same model and of the other
/// model of the provider reach it exactly `hold` later (within a
/// millisecond), at every level limits may be configured at.
async fn holds_both_models_for(headers: &[(&'static str, &'static str)], hold: Duration) {
    for at in LEVELS {
        let p = Scripted::new();
        p.script("a", [Reply::ok(headers)]);
        let gw = gateway(&p, at, None, 0).await;
        gw.complete(req("a")).await.unwrap();
        let t0 = p.calls_of("a")[0];
        let (same, other) = tokio::join!(gw.complete(req("a")), gw.complete(req("b")));
        same.unwrap();
        other.unwrap();
        for (model, arrived) in [("a", p.calls_of("a")[1]), ("b", p.calls_of("b")[0])] {
            let waited = arrived - t0;
            assert!(
                waited >= hold && waited <= hold + Duration::from_millis(1),
                "{at:?}, {headers:?}: model {model} reached the provider after {waited:?}, not {hold:?}"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn no_tokens_left_for_six_minutes_holds_the_provider_six_minutes() {
    holds_both_models_for(
        &[
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-reset-tokens", "6m0s"),
        ],
        Duration::from_secs(360),
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn no_requests_left_holds_until_the_requests_reset() {
    holds_both_models_for(
        &[
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "1m30.5s"),
        ],
        Duration::from_millis(90_500),
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn second_and_millisecond_resets_hold_exactly_that_long() {
    holds_both_models_for(
        &[
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-reset-tokens", "1s"),
        ],
        Duration::from_secs(1),
    )
    .await;
    holds_both_models_for(
        &[
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "20ms"),
        ],
        Duration::from_millis(20),
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn capacity_left_holds_nothing() {
    for at in LEVELS {
        let p = Scripted::new();
        p.script(
            "a",
            [Reply::ok(&[
                ("x-ratelimit-remaining-requests", "41"),
                ("x-ratelimit-reset-requests", "1m30s"),
                ("x-ratelimit-remaining-tokens", "90000"),
                ("x-ratelimit-reset-tokens", "6m0s"),
            ])],
        );
        let gw = gateway(&p, at, None, 0).await;
        gw.complete(req("a")).await.unwrap();
        let start = Instant::now();
        gw.complete(req("a")).await.unwrap();
        gw.complete(req("b")).await.unwrap();
        assert_eq!(start.elapsed(), Duration::ZERO, "{at:?}");
        assert_eq!(p.calls().len(), 3);
    }
}

#[tokio::test(start_paused = true)]
async fn the_allowance_a_reply_reports_is_counted_down_until_its_reset() {
    // Two requests left for 30 s: two more go at once, the third waits.
    for at in LEVELS {
        let p = Scripted::new();
        p.script(
            "a",
            [Reply::ok(&[
                ("x-ratelimit-remaining-requests", "2"),
                ("x-ratelimit-reset-requests", "30s"),
            ])],
        );
        let gw = gateway(&p, at, None, 0).await;
        gw.complete(req("a")).await.unwrap();
        let t0 = p.calls_of("a")[0];
        let (x, y, z) = tokio::join!(gw.complete(req("b")), gw.complete(req("b")), gw.complete(req("b")));
        for r in [x, y, z] {
            r.unwrap();
        }
        let waited: Vec<Duration> = p.calls_of("b").into_iter().map(|t| t - t0).collect();
        assert_eq!(
            waited,
            vec![Duration::ZERO, Duration::ZERO, Duration::from_secs(30)],
            "{at:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn another_provider_serves_the_model_while_its_provider_is_held() {
    for at in LEVELS {
        let p = Scripted::new();
        let q = Scripted::new();
        p.script(
            "a",
            [Reply::ok(&[
                ("x-ratelimit-remaining-tokens", "0"),
                ("x-ratelimit-reset-tokens", "6m0s"),
            ])],
        );
        let gw = gateway(&p, at, Some(&q), 0).await;
        // Route until a call has reached p (routing shuffles).
        while p.calls().is_empty() {
            gw.complete(req("a")).await.unwrap();
        }
        let start = Instant::now();
        for _ in 0..5 {
            let r = gw.complete(req("a")).await.unwrap();
            assert_eq!(r.deployment, "a@q", "{at:?}");
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "{at:?}");
        assert_eq!(p.calls().len(), 1, "{at:?}");
    }
}

/// Calls per upstream model seen by the local server.
type Seen = Arc<Mutex<HashMap<String, u64>>>;

/// Model `six` answers with no tokens left for `6m0s`, model `one` with no
/// requests left for `1s`, anything else with plenty left.
async fn chat(State(seen): State<Seen>, Json(body): Json<Value>) -> Response {
    let model = body["model"].as_str().unwrap_or_default().to_string();
    *seen.lock().entry(model.clone()).or_default() += 1;
    let headers: &[(&str, &str)] = match model.as_str() {
        "six" => &[
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-reset-tokens", "6m0s"),
        ],
        "one" => &[
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "1s"),
        ],
        _ => &[
            ("x-ratelimit-remaining-requests", "99"),
            ("x-ratelimit-reset-requests", "1s"),
        ],
    };
    let mut h = axum::http::HeaderMap::new();
    for (k, v) in headers {
        h.insert(*k, v.parse().unwrap());
    }
    let reply = json!({
        "choices": [{"message": {"role": "assistant", "content": "done"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}
    });
    (StatusCode::OK, h, Json(reply)).into_response()
}

async fn serve() -> (SocketAddr, Seen, tokio::task::JoinHandle<()>) {
    let seen = Seen::default();
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .with_state(Arc::clone(&seen));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, seen, task)
}

/// A gateway whose models `six`, `one` and `other` all go to the local
/// server through one provider, limits at `at`.
async fn http_gateway(addr: SocketAddr, at: LimitsAt) -> nexus_swarm::actors::llm_gateway::GatewayHandle {
    let pool = HttpPool::new(&LlmConfig::default()).unwrap();
    let http = OpenAiCompatible::new("local", &OpenAiConfig::new(format!("http://{addr}/v1")), &pool).unwrap();
    let own = |d: DeploymentSpec| match at {
        LimitsAt::Deployment => d.limits(scripted::generous()),
        _ => d,
    };
    let models = ["six", "one", "other"]
        .into_iter()
        .map(|m| ModelSpec::new(m, 8_000, 1, 1).deployment(own(DeploymentSpec::new(format!("{m}@local"), "local"))))
        .collect();
    let entry = ProviderEntry::new("local", Arc::new(http)).limits(match at {
        LimitsAt::Provider => scripted::generous(),
        _ => RateLimits::unlimited(),
    });
    let mut args = LlmGatewayArgs::new(ModelCatalogue::new(models).unwrap(), vec![entry]);
    args.cache.enabled = false;
    let (gw, _actor, _join) = LlmGateway::spawn_unsupervised(args).await.unwrap();
    gw
}

#[tokio::test]
async fn over_http_a_six_minute_reset_holds_every_model_of_the_provider() {
    let (addr, seen, server) = serve().await;
    for at in LEVELS {
        seen.lock().clear();
        let gw = http_gateway(addr, at).await;
        let short = |m: &str| {
            LlmRequest::user("hi")
                .model(m)
                .max_tokens(5)
                .timeout(Duration::from_millis(300))
        };
        gw.complete(short("six")).await.unwrap();
        for m in ["six", "other"] {
            assert!(
                matches!(gw.complete(short(m)).await, Err(GatewayError::DeadlineExceeded(_))),
                "{at:?}: {m} was not held"
            );
        }
        assert_eq!(seen.lock().values().sum::<u64>(), 1, "{at:?}: {:?}", seen.lock());
    }
    server.abort();
}

#[tokio::test]
async fn over_http_a_one_second_reset_releases_the_next_call_after_a_second() {
    let (addr, seen, server) = serve().await;
    let gw = http_gateway(addr, LimitsAt::Provider).await;
    let req = |m: &str| {
        LlmRequest::user("hi")
            .model(m)
            .max_tokens(5)
            .timeout(Duration::from_secs(10))
    };
    gw.complete(req("one")).await.unwrap();
    let start = std::time::Instant::now();
    gw.complete(req("other")).await.unwrap();
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(950) && waited < Duration::from_secs(3),
        "waited {waited:?}"
    );
    assert_eq!(seen.lock().get("other"), Some(&1));
    server.abort();
}
