//! `nexus serve`'s streams over real HTTP: `stream: true` is answered with
//! server-sent `chat.completion.chunk` events ending in a usage chunk and
//! `[DONE]`, with the rate-limit and added-time headers; a caller that
//! hangs up mid-stream stops the provider's stream, and is charged for
//! what was produced until then, its hold released.

use nexus_swarm::actors::Swarm;
use nexus_swarm::actors::cost_ledger::{ReportQuery, TimeRange};
use nexus_swarm::runtime::config::NexusConfig;
use nexus_swarm::serve::{ADDED_HEADER, FrontDoorServer, KeysFile, ServeOptions, hash_token, start_swarm};
use serde_json::{Value, json};

use crate::support::agents as support;
use support::TIMEOUT;

const KEY: &str = "sk-test-stream";
/// The model's largest answer: far more than the socket buffers hold.
const BIG: u64 = 200_000;

async fn start(dir: &std::path::Path) -> (Swarm, FrontDoorServer) {
    let text = format!(
        r#"
[node]
data_dir = {dir:?}

[[llm.providers]]
id = "sim"
kind = "simulated"
seed = 9
latency_median = "0s"
tokens_per_minute = 10000000

[[llm.models]]
name = "big"
context_window = 400000
max_output_tokens = {BIG}
input_price = 1000
output_price = 1000
deployments = [{{ provider = "sim" }}]
"#
    );
    let path = dir.join("nexus.toml");
    std::fs::write(&path, text).unwrap();
    let swarm = start_swarm(NexusConfig::from_file(&path).unwrap()).await.unwrap();
    let keys = KeysFile::parse(&format!(
        "[[keys]]\nname = \"s\"\nsha256 = \"{}\"\ntenant = \"acme\"\ntokens_per_minute = 10000000\nbudget_micro_usd = 100000000\n",
        hash_token(KEY)
    ))
    .unwrap();
    let options = ServeOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        max_body_bytes: 4096,
    };
    let server = FrontDoorServer::bind(&swarm, keys, options).await.unwrap();
    (swarm, server)
}

fn events(body: &str) -> Vec<&str> {
    body.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix("data: ").expect("every event is a data line"))
        .collect()
}

async fn output_tokens(swarm: &Swarm) -> u64 {
    let report = swarm.ledger().report(ReportQuery::new(TimeRange::all())).await.unwrap();
    report.rows.iter().filter_map(|r| r.amounts.get("output_tokens")).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_is_served_as_events_and_an_abandoned_one_is_charged_for_what_was_produced() {
    let dir = tempfile::tempdir().unwrap();
    let (swarm, server) = start(dir.path()).await;
    let url = format!("http://{}/v1/chat/completions", server.local_addr());
    let http = reqwest::Client::builder().timeout(TIMEOUT).build().unwrap();

    let resp = http
        .post(&url)
        .bearer_auth(KEY)
        .json(&json!({"model": "big", "max_tokens": 20, "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "Stream."}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let header = |name: &str| resp.headers().get(name).map(|v| v.to_str().unwrap().to_string());
    assert_eq!(header("content-type").as_deref(), Some("text/event-stream"));
    assert!(header(ADDED_HEADER).is_some());
    assert_eq!(header("x-ratelimit-limit-tokens").as_deref(), Some("10000000"));
    let body = resp.text().await.unwrap();
    let events = events(&body);
    assert_eq!(events.last(), Some(&"[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    let usage = &chunks.last().unwrap()["usage"];
    let first = usage["completion_tokens"].as_u64().unwrap();
    assert_eq!(text.split_whitespace().count() as u64, first, "one word per token");
    let finish = &chunks[chunks.len() - 2]["choices"][0]["finish_reason"];
    assert_eq!(finish, if first == 20 { "length" } else { "stop" });
    assert_eq!(output_tokens(&swarm).await, first);

    // The whole answer to a request for a lot (the simulated provider
    // answers the same request the same way)...
    let lot = json!({"model": "big", "max_tokens": BIG,
        "messages": [{"role": "user", "content": "Stream a lot."}]});
    let whole: Value = http
        .post(&url)
        .bearer_auth(KEY)
        .json(&lot)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let full = whole["usage"]["completion_tokens"]
        .as_u64()
        .unwrap_or_else(|| panic!("{whole}"));
    assert!(full >= BIG / 4);
    let before = output_tokens(&swarm).await;

    // ...streamed to a caller that reads a little and hangs up.
    let mut streamed = lot.clone();
    streamed["stream"] = json!(true);
    let mut resp = http.post(&url).bearer_auth(KEY).json(&streamed).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.chunk().await.unwrap().is_some());
    drop(resp);
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let charged = loop {
        let total = output_tokens(&swarm).await;
        if total > before {
            break total - before;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the abandoned stream was never charged"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(
        charged < full,
        "the provider stream stopped when the caller left ({charged} of {full} tokens)"
    );
    // The hold for BIG tokens is released (the ledger matches the settled
    // hold with its records as they commit).
    while swarm.ledger().budget_status("key/s").unwrap().inflight_micro_usd != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the abandoned stream's hold was never released: {:?}",
            swarm.ledger().budget_status("key/s")
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // The server goes on serving.
    let again = http
        .post(&url)
        .bearer_auth(KEY)
        .json(&json!({"model": "big", "max_tokens": 5, "messages": [{"role": "user", "content": "Still there?"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    server.stop().await.unwrap();
    swarm.shutdown(TIMEOUT).await;
}
