use std::time::Duration;

use nexus_swarm_runtime::config::{ConfigError, DeploymentConfig, ModelConfig, ProviderConfig};

use super::*;
use crate::llm::types::Capability;

const TOML: &str = r#"
[llm]
requests_per_minute = 700
input_tokens_per_minute = 20000

[[llm.providers]]
id = "sim"
kind = "simulated"
seed = 5
latency_median = "25ms"
simulated_requests_per_minute = 90
simulated_tokens_per_minute = 9000
tokens_per_minute = 40000

[[llm.providers]]
id = "local"
kind = "openai_compatible"
base_url = "http://127.0.0.1:8000/v1"
api_key_env = "LOCAL_KEY"
requests_per_minute = 30
input_tokens_per_minute = 0

[[llm.models]]
name = "small"
context_window = 8000
input_price = 150000
output_price = 600000
fallbacks = ["large"]
deployments = [{ provider = "sim" }]

[[llm.models]]
name = "large"
context_window = 64000
max_output_tokens = 4000
input_price = 1000000
output_price = 2000000
capabilities = ["code"]

[[llm.models.deployments]]
provider = "local"
upstream_model = "qwen"
weight = 2
tokens_per_minute = 5000

[[llm.models.deployments]]
provider = "sim"
id = "large-sim"
"#;

fn config() -> NexusConfig {
    NexusConfig::from_toml_str(TOML).unwrap()
}

fn key(var: &str) -> Option<String> {
    (var == "LOCAL_KEY").then(|| "secret".to_string())
}

#[test]
fn the_catalogue_is_the_declared_models() {
    let c = ModelCatalogue::from_config(&config().llm).unwrap();
    let small = c.get("small").unwrap();
    assert_eq!(
        (
            small.context_window,
            small.max_output_tokens,
            small.input_price,
            small.output_price
        ),
        (8000, 8000, 150_000, 600_000)
    );
    assert_eq!(small.fallbacks, ["large"]);
    assert_eq!(small.deployments, [DeploymentSpec::new("small@sim", "sim")]);
    let large = c.get("large").unwrap();
    assert_eq!(large.max_output_tokens, 4000);
    assert!(large.capabilities.contains(&Capability::Code));
    let on_local = &large.deployments[0];
    assert_eq!(on_local.id, "large@local");
    assert_eq!(on_local.upstream_model.as_deref(), Some("qwen"));
    assert_eq!(on_local.weight, 2);
    assert_eq!(
        on_local.limits,
        RateLimits {
            tokens_per_minute: Some(5000),
            ..RateLimits::unlimited()
        }
    );
    assert_eq!(large.deployments[1].id, "large-sim");
    assert_eq!(large.deployments[1].limits, RateLimits::unlimited());
}

#[test]
fn providers_get_their_own_limits_or_the_llm_sections() {
    let args = LlmGatewayArgs::from_config_with_env(&config(), key).unwrap();
    let ids: Vec<&str> = args.providers.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["sim", "local"]);
    assert_eq!(
        args.providers[0].limits,
        Some(RateLimits {
            requests_per_minute: Some(700),
            input_tokens_per_minute: Some(20_000),
            output_tokens_per_minute: None,
            tokens_per_minute: Some(40_000),
        })
    );
    assert_eq!(
        args.providers[1].limits,
        Some(RateLimits {
            requests_per_minute: Some(30),
            input_tokens_per_minute: None,
            output_tokens_per_minute: None,
            tokens_per_minute: Some(90_000),
        })
    );
    assert_eq!(args.providers[0].provider.name(), "sim");
    assert_eq!(args.providers[1].provider.name(), "local");
    assert_eq!(args.cache_dir, Some(config().node.data_dir.join("llm-cache")));
    assert_eq!(args.llm, config().llm);
}

#[test]
fn a_simulated_provider_takes_the_declared_settings() {
    let cfg = config();
    let sim = simulated_config(&cfg.llm.providers[0]);
    assert_eq!(sim.seed, 5);
    assert_eq!(sim.latency_median, Duration::from_millis(25));
    assert_eq!(sim.requests_per_minute, Some(90));
    assert_eq!(sim.tokens_per_minute, Some(9000));
    let bare = simulated_config(&ProviderConfig::simulated("s"));
    assert_eq!(bare, SimulatedConfig::default());
}

#[test]
fn a_missing_key_is_a_typed_error_naming_the_variable() {
    let err = LlmGatewayArgs::from_config_with_env(&config(), |_| None).unwrap_err();
    let GatewayBuildError::MissingApiKey { provider, var } = &err else {
        panic!("{err:?}")
    };
    assert_eq!((provider.as_str(), var.as_str()), ("local", "LOCAL_KEY"));
    assert!(err.to_string().contains("`LOCAL_KEY`"), "{err}");
    let err = LlmGatewayArgs::from_config_with_env(&config(), |_| Some(String::new())).unwrap_err();
    assert!(matches!(err, GatewayBuildError::MissingApiKey { .. }), "{err:?}");
}

#[test]
fn no_models_or_an_inconsistent_section_are_typed_errors() {
    let err = LlmGatewayArgs::from_config_with_env(&NexusConfig::default(), key).unwrap_err();
    assert!(matches!(err, GatewayBuildError::NoModels), "{err:?}");

    // Built in code, so never parsed: the same validation runs.
    let mut models_only = NexusConfig::default();
    models_only
        .llm
        .models
        .push(ModelConfig::new("m", 1000, 1, 1).deployment(DeploymentConfig::on("p")));
    let err = LlmGatewayArgs::from_config_with_env(&models_only, key).unwrap_err();
    let GatewayBuildError::Config(e @ ConfigError::Conflict { .. }) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(e.field(), "llm.models");

    let mut providers_only = NexusConfig::default();
    providers_only.llm.providers.push(ProviderConfig::simulated("p"));
    let err = LlmGatewayArgs::from_config_with_env(&providers_only, key).unwrap_err();
    assert!(
        matches!(&err, GatewayBuildError::Config(e) if e.field() == "llm.providers"),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_built_arguments_start_a_gateway_that_answers() {
    let mut cfg = NexusConfig::default();
    cfg.llm.providers.push(ProviderConfig {
        latency_median: Some(Duration::ZERO),
        ..ProviderConfig::simulated("sim")
    });
    cfg.llm
        .models
        .push(ModelConfig::new("m", 8000, 150_000, 600_000).deployment(DeploymentConfig::on("sim")));
    let mut args = LlmGatewayArgs::from_config(&cfg).unwrap();
    args.cache_dir = None;
    let (gateway, actor, _join) = crate::llm_gateway::LlmGateway::spawn_unsupervised(args).await.unwrap();
    let answer = gateway
        .complete(crate::llm::types::LlmRequest::user("hello").max_tokens(8))
        .await
        .unwrap();
    assert_eq!((answer.model.as_str(), answer.deployment.as_str()), ("m", "m@sim"));
    assert!(answer.cost_micro_usd > 0);
    actor.stop_and_wait(None, None).await.unwrap();
}

#[test]
fn an_anthropic_provider_is_built_with_its_key_from_the_environment() {
    let text = r#"
[[llm.providers]]
id = "claude"
kind = "anthropic"
base_url = "https://api.anthropic.com/v1/"
api_key_env = "ANTHROPIC_KEY_FOR_TEST"

[[llm.models]]
name = "sonnet"
context_window = 200000
input_price = 3000000
output_price = 15000000
deployments = [{ provider = "claude", upstream_model = "claude-sonnet-4-5" }]
"#;
    let cfg = NexusConfig::from_toml_str(text).unwrap();
    let err = LlmGatewayArgs::from_config_with_env(&cfg, |_| None).unwrap_err();
    let GatewayBuildError::MissingApiKey { provider, var } = &err else {
        panic!("{err:?}")
    };
    assert_eq!((provider.as_str(), var.as_str()), ("claude", "ANTHROPIC_KEY_FOR_TEST"));
    let args = LlmGatewayArgs::from_config_with_env(&cfg, |var| {
        (var == "ANTHROPIC_KEY_FOR_TEST").then(|| "sk-ant-test".to_string())
    })
    .unwrap();
    let shown = format!("{:?}", args.providers);
    assert!(shown.contains("AnthropicMessages"), "{shown}");
    assert!(shown.contains("https://api.anthropic.com/v1/messages"), "{shown}");
    assert!(!shown.contains("sk-ant-test"), "the key is not shown: {shown}");
}
