//! `nexus serve`'s front door over real HTTP: an OpenAI-shaped completion
//! through the gateway charged to the key's identity, the models list, an
//! unknown key refused with 401, the key's own rpm answered with 429 and
//! `retry-after`, its budget with `insufficient_quota`, bad requests with
//! 400 in OpenAI's error shape, oversized bodies with 413, and the
//! rate-limit and added-time headers.

#![allow(missing_docs)]

use crate::support::agents as support;

use nexus_swarm::actors::Swarm;
use nexus_swarm::actors::cost_ledger::{Field, ReportQuery, TimeRange};
use nexus_swarm::runtime::config::NexusConfig;
use nexus_swarm::serve::{ADDED_HEADER, FrontDoorServer, KeysFile, ServeOptions, hash_token, start_swarm};
use serde_json::{Value, json};
use support::TIMEOUT;

const OPEN: &str = "sk-test-open";
const LIMITED: &str = "sk-test-limited";
const POOR: &str = "sk-test-poor";

fn config(dir: &std::path::Path) -> NexusConfig {
    let text = format!(
        r#"
[node]
data_dir = {dir:?}

[[llm.providers]]
id = "sim"
kind = "simulated"
seed = 5
latency_median = "0s"

[[llm.models]]
name = "small"
context_window = 16000
max_output_tokens = 256
input_price = 150000
output_price = 600000
deployments = [{{ provider = "sim" }}]
"#
    );
    let path = dir.join("nexus.toml");
    std::fs::write(&path, text).unwrap();
    NexusConfig::from_file(&path).unwrap()
}

fn keys() -> KeysFile {
    KeysFile::parse(&format!(
        r#"
[[keys]]
name = "open"
sha256 = "{}"
tenant = "acme"
workflow = "support"
agent = "triage"
tokens_per_minute = 100000

[[keys]]
name = "limited"
sha256 = "{}"
tenant = "acme"
workflow = "limited"
requests_per_minute = 1

[[keys]]
name = "poor"
sha256 = "{}"
tenant = "poor"
budget_micro_usd = 1
"#,
        hash_token(OPEN),
        hash_token(LIMITED),
        hash_token(POOR)
    ))
    .unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    swarm: Swarm,
    server: FrontDoorServer,
    base: String,
    http: reqwest::Client,
}

async fn start() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let swarm = start_swarm(config(dir.path())).await.unwrap();
    let options = ServeOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        max_body_bytes: 4096,
    };
    let server = FrontDoorServer::bind(&swarm, keys(), options).await.unwrap();
    let base = format!("http://{}", server.local_addr());
    let http = reqwest::Client::builder().timeout(TIMEOUT).build().unwrap();
    Fixture {
        _dir: dir,
        swarm,
        server,
        base,
        http,
    }
}

impl Fixture {
    async fn chat(&self, key: Option<&str>, body: &Value) -> reqwest::Response {
        let mut req = self.http.post(format!("{}/v1/chat/completions", self.base)).json(body);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        req.send().await.unwrap()
    }

    async fn stop(self) {
        self.server.stop().await.unwrap();
        self.swarm.shutdown(TIMEOUT).await;
    }
}

fn ask(text: &str) -> Value {
    json!({"model": "small", "messages": [{"role": "user", "content": text}], "max_tokens": 64, "temperature": 0})
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers().get(name).map(|v| v.to_str().unwrap().to_string())
}

async fn error_of(resp: reqwest::Response) -> Value {
    let body: Value = resp.json().await.unwrap();
    let err = body["error"].clone();
    for field in ["message", "type", "param", "code"] {
        assert!(err.get(field).is_some(), "error.{field} missing in {body}");
    }
    err
}

#[tokio::test]
async fn a_completion_is_answered_in_openai_shape_and_charged_to_the_key() {
    let f = start().await;
    let resp = f.chat(Some(OPEN), &ask("Plan the survey.")).await;
    assert_eq!(resp.status(), 200);
    let added: u64 = header(&resp, ADDED_HEADER).expect("added-time header").parse().unwrap();
    assert!(added < TIMEOUT.as_micros() as u64);
    assert_eq!(header(&resp, "x-ratelimit-limit-tokens").as_deref(), Some("100000"));
    let remaining: u64 = header(&resp, "x-ratelimit-remaining-tokens").unwrap().parse().unwrap();
    assert!(header(&resp, "x-ratelimit-reset-tokens").is_some());
    assert!(
        header(&resp, "x-ratelimit-limit-requests").is_none(),
        "the key has no rpm"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["model"], "small");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert!(!body["choices"][0]["message"]["content"].as_str().unwrap().is_empty());
    let usage = &body["usage"];
    let (prompt, completion) = (
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["completion_tokens"].as_u64().unwrap(),
    );
    assert!(prompt > 0 && completion > 0 && completion <= 64);
    assert_eq!(usage["total_tokens"].as_u64().unwrap(), prompt + completion);
    // The key's tokens count the actual usage, the estimate refunded.
    assert_eq!(remaining, 100_000 - prompt - completion);

    // The ledger has the usage under the key's identity.
    // (The gateway answers once the usage is committed.)
    let report = f
        .swarm
        .ledger()
        .report(ReportQuery::new(TimeRange::all()).group_by([
            Field::Tenant,
            Field::Workflow,
            Field::Agent,
            Field::Model,
        ]))
        .await
        .unwrap();
    assert_eq!(report.rows.len(), 1, "{report:?}");
    assert_eq!(report.rows[0].key, ["acme", "support", "triage", "small"]);
    assert!(report.rows[0].cost_micro_usd > 0);
    f.stop().await;
}

#[tokio::test]
async fn models_are_listed_for_a_known_key_only() {
    let f = start().await;
    let resp = f
        .http
        .get(format!("{}/v1/models", f.base))
        .bearer_auth(OPEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, ADDED_HEADER).is_some());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"][0]["id"], "small");
    let resp = f.http.get(format!("{}/v1/models", f.base)).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    f.stop().await;
}

#[tokio::test]
async fn a_missing_or_unknown_key_is_refused_with_401() {
    let f = start().await;
    for key in [None, Some("sk-not-a-key"), Some(hash_token(OPEN).as_str())] {
        let resp = f.chat(key, &ask("hello")).await;
        assert_eq!(resp.status(), 401, "{key:?}");
        assert!(header(&resp, ADDED_HEADER).is_some());
        let err = error_of(resp).await;
        assert_eq!(err["code"], "invalid_api_key");
    }
    f.stop().await;
}

#[tokio::test]
async fn the_keys_own_rpm_is_answered_with_429_and_retry_after() {
    let f = start().await;
    let first = f.chat(Some(LIMITED), &ask("one")).await;
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "x-ratelimit-limit-requests").as_deref(), Some("1"));
    assert_eq!(header(&first, "x-ratelimit-remaining-requests").as_deref(), Some("0"));
    let second = f.chat(Some(LIMITED), &ask("two")).await;
    assert_eq!(second.status(), 429);
    let retry: u64 = header(&second, "retry-after").expect("retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let retry_ms: u64 = header(&second, "retry-after-ms").unwrap().parse().unwrap();
    assert!(retry_ms <= retry * 1000 && retry_ms > (retry - 1) * 1000);
    assert_eq!(header(&second, "x-ratelimit-remaining-requests").as_deref(), Some("0"));
    assert!(header(&second, ADDED_HEADER).is_some());
    let err = error_of(second).await;
    assert_eq!(err["code"], "rate_limit_exceeded");
    // Another key is not held back by it.
    assert_eq!(f.chat(Some(OPEN), &ask("three")).await.status(), 200);
    f.stop().await;
}

#[tokio::test]
async fn an_exhausted_budget_is_answered_as_insufficient_quota() {
    let f = start().await;
    let resp = f.chat(Some(POOR), &ask("Spend more than a micro-dollar.")).await;
    assert_eq!(resp.status(), 429);
    assert!(
        header(&resp, "retry-after").is_none(),
        "waiting does not refill a budget"
    );
    let err = error_of(resp).await;
    assert_eq!(err["type"], "insufficient_quota");
    assert!(err["message"].as_str().unwrap().contains("key/poor"), "{err}");
    assert_eq!(
        f.swarm
            .ledger()
            .budget_status("key/poor")
            .unwrap()
            .budget
            .limit_micro_usd,
        1
    );
    f.stop().await;
}

#[tokio::test]
async fn bad_requests_are_400_and_oversized_bodies_413_in_openai_shape() {
    let f = start().await;
    let bad = [
        json!({"messages": [{"role": "user", "content": "no model"}]}),
        json!({"model": "small", "messages": []}),
        json!({"model": "small", "messages": [{"role": "user", "content": "x"}], "max_tokens": 100000}),
        json!({"model": "small", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}),
    ];
    for body in &bad {
        let resp = f.chat(Some(OPEN), body).await;
        assert_eq!(resp.status(), 400, "{body}");
        let err = error_of(resp).await;
        assert_eq!(err["type"], "invalid_request_error");
    }
    let resp = f
        .chat(
            Some(OPEN),
            &json!({"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(resp.status(), 404);
    assert_eq!(error_of(resp).await["code"], "model_not_found");
    let huge = ask(&"x".repeat(8192));
    let resp = f.chat(Some(OPEN), &huge).await;
    assert_eq!(resp.status(), 413);
    error_of(resp).await;
    f.stop().await;
}
