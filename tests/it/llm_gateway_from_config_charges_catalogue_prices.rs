//! The LLM gateway built from a configuration file: its providers and
//! models come from `[[llm.providers]]` and `[[llm.models]]`, the ledger is
//! priced from the same catalogue (one price book), and a completion's
//! usage is committed at exactly the catalogue's prices. An
//! OpenAI-compatible provider's key comes from the environment variable
//! the configuration names; a variable that is not set is a typed error
//! naming it.

use crate::support::agents as support;

use std::net::SocketAddr;

use axum::Json;
use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use nexus_swarm::actors::cost_ledger::{LedgerHandle, ModelRates, TimeRange};
use nexus_swarm::actors::llm::{GatewayBuildError, LlmRequest};
use nexus_swarm::actors::llm_gateway::{GatewayHandle, LlmGatewayArgs};
use nexus_swarm::actors::swarm::Swarm;
use nexus_swarm::runtime::config::NexusConfig;
use nexus_swarm::runtime::resources::ResourceKind;
use serde_json::{Value, json};
use support::TIMEOUT;

/// Micro-dollars per million tokens, as the configuration below writes
/// them: fractions of a micro-dollar per token, so rounding shows.
const SMALL: (u64, u64) = (1_250_000, 3_750_000);
const LARGE: (u64, u64) = (2_500_000, 10_000_000);

/// A variable cargo sets for every test process: it stands for an API key.
const KEY_VAR: &str = "CARGO_PKG_NAME";
/// A variable no test environment sets.
const UNSET_VAR: &str = "NEXUS_SWARM_TEST_UNSET_API_KEY_7F3A";

fn simulated_config(dir: &std::path::Path) -> String {
    format!(
        r#"
[node]
data_dir = {dir:?}

[[llm.providers]]
id = "sim"
kind = "simulated"
seed = 11
latency_median = "0s"
simulated_requests_per_minute = 1000
requests_per_minute = 500

[[llm.models]]
name = "small"
context_window = 16000
input_price = {}
output_price = {}
fallbacks = ["large"]
deployments = [{{ provider = "sim" }}]

[[llm.models]]
name = "large"
context_window = 128000
input_price = {}
output_price = {}
capabilities = ["reasoning"]
deployments = [{{ provider = "sim", upstream_model = "sim-large" }}]
"#,
        SMALL.0, SMALL.1, LARGE.0, LARGE.1
    )
}

/// What `input` and `output` tokens cost at `prices`, each part rounded up
/// to the micro-dollar (the ledger's rule), worked out here by hand.
fn expected_cost(prices: (u64, u64), input: u64, output: u64) -> (u64, u64) {
    (
        (input * prices.0).div_ceil(1_000_000),
        (output * prices.1).div_ceil(1_000_000),
    )
}

/// A swarm started from `config` alone: its gateway built from the
/// configured providers and models, its ledger priced from the same
/// catalogue.
async fn start(config: &NexusConfig) -> (GatewayHandle, LedgerHandle, Swarm) {
    let swarm = Swarm::start(config.clone())
        .await
        .expect("the swarm starts from the config");
    let gateway = swarm.gateway().cloned().expect("the config declares a gateway");
    (gateway, swarm.ledger().clone(), swarm)
}

#[tokio::test]
async fn a_completion_is_charged_at_the_configured_catalogue_prices() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nexus.toml");
    std::fs::write(&path, simulated_config(dir.path())).unwrap();
    let config = NexusConfig::from_file(&path).unwrap();
    let (gateway, ledger, _swarm) = start(&config).await;

    // The ledger's price book is the catalogue's, with nothing typed twice.
    let prices = ledger.prices();
    assert_eq!(
        prices.model("small"),
        Some(&ModelRates::new(SMALL.0, SMALL.1, 0).unwrap())
    );
    assert_eq!(
        prices.model("large"),
        Some(&ModelRates::new(LARGE.0, LARGE.1, 0).unwrap())
    );

    let mut total = 0;
    for (model, price) in [("small", SMALL), ("large", LARGE)] {
        let answer = tokio::time::timeout(
            TIMEOUT,
            gateway.complete(
                LlmRequest::user(format!("Summarise the survey for the {model} model."))
                    .model(model)
                    .max_tokens(301)
                    .timeout(TIMEOUT),
            ),
        )
        .await
        .expect("answered in time")
        .expect("answered");
        assert_eq!(answer.model, model);
        assert_eq!(answer.deployment, format!("{model}@sim"));
        assert!(answer.input_tokens > 0 && answer.output_tokens > 0, "{answer:?}");
        let (input_cost, output_cost) = expected_cost(price, answer.input_tokens, answer.output_tokens);
        assert_eq!(answer.cost_micro_usd, input_cost + output_cost, "{answer:?}");

        let records = ledger.records(TimeRange::all()).await.unwrap();
        let of_model: Vec<_> = records
            .iter()
            .filter(|r| r.meta.scope.model.as_deref() == Some(model))
            .collect();
        assert_eq!(of_model.len(), 2, "one record per kind of token: {records:?}");
        for r in of_model {
            let want = match r.kind {
                ResourceKind::InputTokens => (answer.input_tokens, input_cost),
                ResourceKind::OutputTokens => (answer.output_tokens, output_cost),
                ref other => panic!("unexpected record of {other}"),
            };
            assert_eq!((r.amount, r.cost_micro_usd), want, "{r:?}");
        }
        total += answer.cost_micro_usd;
    }
    let committed: u64 = ledger
        .records(TimeRange::all())
        .await
        .unwrap()
        .iter()
        .map(|r| r.cost_micro_usd)
        .sum();
    assert_eq!(committed, total);
    assert_eq!(gateway.stats().sink_errors, 0);
}

fn openai_config(base_url: &str, var: &str) -> NexusConfig {
    NexusConfig::from_toml_str(&format!(
        r#"
[[llm.providers]]
id = "hosted"
kind = "openai_compatible"
base_url = "{base_url}"
api_key_env = "{var}"

[[llm.models]]
name = "m"
context_window = 8000
input_price = {}
output_price = {}
deployments = [{{ provider = "hosted", upstream_model = "served-model" }}]
"#,
        SMALL.0, SMALL.1
    ))
    .unwrap()
}

#[test]
fn a_key_variable_that_is_not_set_is_a_typed_error_naming_it() {
    assert!(std::env::var_os(UNSET_VAR).is_none(), "{UNSET_VAR} must not be set");
    let config = openai_config("http://127.0.0.1:9/v1", UNSET_VAR);
    let err = LlmGatewayArgs::from_config(&config).expect_err("no key, no gateway");
    match &err {
        GatewayBuildError::MissingApiKey { provider, var } => {
            assert_eq!(provider, "hosted");
            assert_eq!(var, UNSET_VAR);
        }
        other => panic!("expected MissingApiKey, got {other:?}"),
    }
    assert!(err.to_string().contains(UNSET_VAR), "{err}");

    // A variable set to nothing is no key either.
    let err = LlmGatewayArgs::from_config_with_env(&config, |_| Some("  ".into())).unwrap_err();
    assert!(matches!(err, GatewayBuildError::MissingApiKey { .. }), "{err:?}");
}

/// Answers only a request that carries the key of [`KEY_VAR`] as its bearer
/// token and names the upstream model.
async fn chat(headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let expected = format!("Bearer {}", std::env::var(KEY_VAR).unwrap());
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if body["model"] != "served-model" {
        return StatusCode::NOT_FOUND.into_response();
    }
    let reply = json!({
        "choices": [{"message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 13, "completion_tokens": 5, "total_tokens": 18}
    });
    (StatusCode::OK, Json(reply)).into_response()
}

async fn serve() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let app = Router::new().route("/v1/chat/completions", post(chat));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, task)
}

#[tokio::test]
async fn an_openai_compatible_provider_sends_the_key_of_the_named_variable() {
    let (addr, server) = serve().await;
    let mut config = openai_config(&format!("http://{addr}/v1"), KEY_VAR);
    let dir = tempfile::tempdir().unwrap();
    config.node.data_dir = dir.path().to_path_buf();
    let (gateway, ledger, _swarm) = start(&config).await;
    let answer = tokio::time::timeout(
        TIMEOUT,
        gateway.complete(LlmRequest::user("ping").model("m").max_tokens(16).timeout(TIMEOUT)),
    )
    .await
    .expect("answered in time")
    .expect("the server accepted the key");
    assert_eq!((answer.input_tokens, answer.output_tokens), (13, 5));
    // 13 x 1.25 = 16.25 -> 17; 5 x 3.75 = 18.75 -> 19.
    assert_eq!(answer.cost_micro_usd, 17 + 19);
    let committed: u64 = ledger
        .records(TimeRange::all())
        .await
        .unwrap()
        .iter()
        .map(|r| r.cost_micro_usd)
        .sum();
    assert_eq!(committed, 36);
    server.abort();
}
