//! `nexus serve` in front of a real OpenAI-compatible HTTP upstream on
//! 127.0.0.1 (HTTP on both sides): the upstream's answer and usage come
//! back in OpenAI's shape, the upstream's model name is the deployment's,
//! and `x-nexus-added-us` leaves out the time the upstream took.

#![allow(missing_docs)]

use crate::support::agents as support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use nexus_swarm::runtime::config::NexusConfig;
use nexus_swarm::serve::{ADDED_HEADER, FrontDoorServer, KeysFile, ServeOptions, hash_token, start_swarm};
use serde_json::{Value, json};
use support::TIMEOUT;

/// How long the upstream takes to answer.
const UPSTREAM_LATENCY: Duration = Duration::from_millis(400);
const KEY: &str = "sk-test-upstream";

#[derive(Default)]
struct Upstream {
    calls: AtomicU64,
    last_model: parking_lot::Mutex<String>,
}

async fn chat(State(up): State<Arc<Upstream>>, Json(body): Json<Value>) -> Json<Value> {
    up.calls.fetch_add(1, Ordering::SeqCst);
    *up.last_model.lock() = body["model"].as_str().unwrap_or_default().to_string();
    // The upstream's own latency, which the front door must not count as its own.
    tokio::time::sleep(UPSTREAM_LATENCY).await;
    Json(json!({
        "id": "up-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "from upstream"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 21, "completion_tokens": 3, "total_tokens": 24}
    }))
}

#[tokio::test]
async fn the_upstreams_answer_is_relayed_and_its_latency_is_not_counted_as_added() {
    let upstream = Arc::new(Upstream::default());
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .with_state(upstream.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = listener.local_addr().unwrap();
    let up_task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nexus.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[node]
data_dir = {:?}

[[llm.providers]]
id = "local"
kind = "openai_compatible"
base_url = "http://{up_addr}/v1"

[[llm.models]]
name = "small"
context_window = 16000
max_output_tokens = 256
input_price = 150000
output_price = 600000
deployments = [{{ provider = "local", upstream_model = "upstream-small" }}]
"#,
            dir.path()
        ),
    )
    .unwrap();
    let swarm = start_swarm(NexusConfig::from_file(&path).unwrap()).await.unwrap();
    let keys = KeysFile::parse(&format!(
        "[[keys]]\nname = \"k\"\nsha256 = \"{}\"\ntenant = \"acme\"\nrequests_per_minute = 100\n",
        hash_token(KEY)
    ))
    .unwrap();
    let options = ServeOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ServeOptions::default()
    };
    let server = FrontDoorServer::bind(&swarm, keys, options).await.unwrap();
    let http = reqwest::Client::builder().timeout(TIMEOUT).build().unwrap();

    let send = || {
        http.post(format!("http://{}/v1/chat/completions", server.local_addr()))
            .bearer_auth(KEY)
            .json(&json!({"model": "small", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}))
            .send()
    };
    // The first request also pays one-off costs that are the server's own
    // (the tokenizer's tables, the connection pool): measured on the second.
    let first = send().await.unwrap();
    assert_eq!(first.status(), 200);
    let started = Instant::now();
    let resp = send().await.unwrap();
    let total = started.elapsed();
    assert_eq!(resp.status(), 200);
    let added = Duration::from_micros(resp.headers()[ADDED_HEADER].to_str().unwrap().parse().unwrap());
    assert_eq!(resp.headers()["x-ratelimit-remaining-requests"], "98");
    let body: Value = resp.json().await.unwrap();

    // Sampled answers are not cached: both went upstream.
    assert_eq!(upstream.calls.load(Ordering::SeqCst), 2);
    assert_eq!(*upstream.last_model.lock(), "upstream-small");
    assert_eq!(body["model"], "small");
    assert_eq!(body["choices"][0]["message"]["content"], "from upstream");
    assert_eq!(body["usage"]["prompt_tokens"], 21);
    assert_eq!(body["usage"]["completion_tokens"], 3);
    // The whole exchange took at least the upstream's latency; the front
    // door's own share leaves it out.
    assert!(total >= UPSTREAM_LATENCY, "{total:?}");
    assert!(added < UPSTREAM_LATENCY, "added {added:?} of {total:?}");
    assert!(
        added <= total - UPSTREAM_LATENCY + Duration::from_millis(1),
        "added {added:?} of {total:?}"
    );

    server.stop().await.unwrap();
    swarm.shutdown(TIMEOUT).await;
    up_task.abort();
}
