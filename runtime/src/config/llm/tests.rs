use super::*;
use crate::config::NexusConfig;

/// One simulated provider `sim` and two models deployed on it.
const GOOD: &str = r#"
[[llm.providers]]
id = "sim"
kind = "simulated"
seed = 7
latency_median = "0s"
simulated_requests_per_minute = 600
simulated_tokens_per_minute = 200000
requests_per_minute = 500

[[llm.models]]
name = "small"
context_window = 16000
input_price = 150000
output_price = 600000
fallbacks = ["large"]
context_window_fallbacks = ["large"]
deployments = [{ provider = "sim" }]

[[llm.models]]
name = "large"
context_window = 128000
max_output_tokens = 4000
input_price = 2500000
output_price = 10000000
capabilities = ["reasoning"]
deployments = [{ provider = "sim", id = "large-a", upstream_model = "big", weight = 3, requests_per_minute = 60 }]
"#;

fn err(text: &str) -> ConfigError {
    NexusConfig::from_toml_str(text).expect_err("config should be rejected")
}

/// `GOOD` with `from` replaced by `to` (which must occur once).
fn good_with(from: &str, to: &str) -> String {
    assert_eq!(GOOD.matches(from).count(), 1, "{from:?} occurs once in GOOD");
    GOOD.replace(from, to)
}

fn openai(extra: &str) -> String {
    format!(
        "[[llm.providers]]\nid = \"o\"\nkind = \"openai_compatible\"\n{extra}\n\
         [[llm.models]]\nname = \"m\"\ncontext_window = 1000\ninput_price = 1\noutput_price = 1\n\
         deployments = [{{ provider = \"o\" }}]\n"
    )
}

#[test]
fn a_catalogue_parses_with_its_defaults_filled() {
    let cfg = NexusConfig::from_toml_str(GOOD).unwrap();
    let p = &cfg.llm.providers[0];
    assert_eq!(p.kind, ProviderKind::Simulated);
    assert_eq!(p.seed, Some(7));
    assert_eq!(p.latency_median, Some(Duration::ZERO));
    assert_eq!(p.simulated_requests_per_minute, Some(600));
    let limits = p.limits(&cfg.llm);
    assert_eq!(limits.requests_per_minute, 500, "its own");
    assert_eq!(limits.tokens_per_minute, 90_000, "llm.tokens_per_minute");
    let small = &cfg.llm.models[0];
    assert_eq!(small.max_output(), 16_000, "defaults to the window");
    assert_eq!(small.deployments[0].id_for(&small.name), "small@sim");
    assert_eq!(small.deployments[0].weight, 1);
    let large = &cfg.llm.models[1];
    assert_eq!(large.max_output(), 4000);
    assert_eq!(large.deployments[0].id_for(&large.name), "large-a");
    assert_eq!(large.deployments[0].requests_per_minute, Some(60));
    assert!(large.capabilities.contains(&Capability::Reasoning));
}

#[test]
fn a_catalogue_round_trips_through_toml() {
    let cfg = NexusConfig::from_toml_str(GOOD).unwrap();
    let text = cfg.to_toml_string();
    assert_eq!(NexusConfig::from_toml_str(&text).unwrap(), cfg, "{text}");
    let open = NexusConfig::from_toml_str(&openai(
        "base_url = \"http://127.0.0.1:8000/v1\"\napi_key_env = \"LOCAL_KEY\"\n",
    ))
    .unwrap();
    assert_eq!(NexusConfig::from_toml_str(&open.to_toml_string()).unwrap(), open);
}

#[test]
fn the_defaults_declare_no_provider_and_print_none() {
    let cfg = NexusConfig::default();
    assert!(cfg.llm.providers.is_empty() && cfg.llm.models.is_empty());
    let text = cfg.to_toml_string();
    assert!(!text.contains("providers") && !text.contains("models"), "{text}");
}

#[test]
fn an_openai_compatible_provider_needs_a_base_url_and_takes_a_variable_name() {
    let cfg = NexusConfig::from_toml_str(&openai(
        "base_url = \"https://api.openai.com/v1\"\napi_key_env = \"OPENAI_API_KEY\"\n",
    ))
    .unwrap();
    assert_eq!(cfg.llm.providers[0].api_key_env.as_deref(), Some("OPENAI_API_KEY"));
    let e = err(&openai(""));
    assert_eq!(e.field(), "llm.providers[0].base_url", "{e}");
    for bad in ["ftp://host/v1", "https://", "api.openai.com/v1", "http://a b/"] {
        let e = err(&openai(&format!("base_url = {bad:?}\n")));
        assert_eq!(e.field(), "llm.providers[0].base_url", "{bad}: {e}");
    }
}

#[test]
fn an_anthropic_provider_takes_the_same_fields_and_checks() {
    let anthropic = |extra: &str| openai(extra).replace("openai_compatible", "anthropic");
    let cfg = NexusConfig::from_toml_str(&anthropic(
        "base_url = \"https://api.anthropic.com/v1\"\napi_key_env = \"ANTHROPIC_API_KEY\"\nrequests_per_minute = 50\n",
    ))
    .unwrap();
    let p = &cfg.llm.providers[0];
    assert_eq!(p.kind, ProviderKind::Anthropic);
    assert_eq!(p.base_url.as_deref(), Some("https://api.anthropic.com/v1"));
    assert_eq!(p.api_key_env.as_deref(), Some("ANTHROPIC_API_KEY"));
    assert_eq!(NexusConfig::from_toml_str(&cfg.to_toml_string()).unwrap(), cfg);
    let e = err(&anthropic(""));
    assert_eq!(e.field(), "llm.providers[0].base_url", "{e}");
    assert!(e.to_string().contains("https://api.anthropic.com/v1"), "{e}");
    let e = err(&anthropic("base_url = \"ftp://host/v1\"\n"));
    assert_eq!(e.field(), "llm.providers[0].base_url", "{e}");
    let e = err(&anthropic(
        "base_url = \"https://api.anthropic.com/v1\"\napi_key_env = \"sk-ant-api03-abcdef\"\n",
    ));
    assert_eq!(e.field(), "llm.providers[0].api_key_env", "{e}");
    assert!(!e.to_string().contains("sk-ant-api03"), "the key is echoed: {e}");
    let e = err(&anthropic("base_url = \"http://x/v1\"\nlatency_median = \"1s\"\n"));
    assert_eq!(e.field(), "llm.providers[0].latency_median", "{e}");
    assert!(e.to_string().contains("`anthropic`"), "{e}");
}

#[test]
fn a_key_written_instead_of_a_variable_name_is_refused_without_echoing_it() {
    for key in [
        "sk-proj-abcdefghijklmnop",
        "sk_live_abc123",
        "Bearer abc",
        "aB3dE5fG7hJ9kL1mN3pQ5rS7",
    ] {
        let e = err(&openai(&format!(
            "base_url = \"http://127.0.0.1:1/v1\"\napi_key_env = {key:?}\n"
        )));
        assert_eq!(e.field(), "llm.providers[0].api_key_env", "{key}: {e}");
        let text = e.to_string();
        assert!(text.contains("name the environment variable"), "{text}");
        assert!(!text.contains(key), "the key is echoed: {text}");
    }
    let e = err(&openai(
        "base_url = \"http://127.0.0.1:1/v1\"\napi_key_env = \"MY KEY\"\n",
    ));
    assert_eq!(e.field(), "llm.providers[0].api_key_env");
    assert!(e.to_string().contains("must name an environment variable"), "{e}");
}

#[test]
fn fields_of_the_other_kind_are_refused() {
    let e = err(&good_with("seed = 7\n", "seed = 7\nbase_url = \"http://x/v1\"\n"));
    assert_eq!(e.field(), "llm.providers[0].base_url");
    assert!(e.to_string().contains("openai_compatible"), "{e}");
    assert!(e.to_string().contains("anthropic"), "{e}");
    let e = err(&openai("base_url = \"http://x/v1\"\nseed = 3\n"));
    assert_eq!(e.field(), "llm.providers[0].seed");
    let e = err(&openai("base_url = \"http://x/v1\"\nsimulated_tokens_per_minute = 3\n"));
    assert_eq!(e.field(), "llm.providers[0].simulated_tokens_per_minute");
}

#[test]
fn duplicate_ids_are_refused_naming_both() {
    let twice = GOOD.replace(
        "\n[[llm.models]]\nname = \"small\"",
        "\n[[llm.providers]]\nid = \"sim\"\nkind = \"simulated\"\n\n[[llm.models]]\nname = \"small\"",
    );
    let e = err(&twice);
    assert!(matches!(e, ConfigError::Conflict { .. }), "{e:?}");
    assert_eq!(e.field(), "llm.providers[1].id");
    assert!(e.to_string().contains("llm.providers[0].id"), "{e}");

    let e = err(&good_with("name = \"large\"", "name = \"small\""));
    assert_eq!(e.field(), "llm.models[1].name", "{e}");

    let e = err(&good_with("id = \"large-a\", ", "id = \"small@sim\", "));
    assert_eq!(e.field(), "llm.models[1].deployments[0].id", "{e}");
    assert!(e.to_string().contains("llm.models[0].deployments[0].id"), "{e}");
}

#[test]
fn references_to_unknown_providers_and_models_are_refused() {
    let e = err(&good_with(
        "{ provider = \"sim\" }",
        "{ provider = \"sim\" }, { provider = \"simm\" }",
    ));
    assert_eq!(e.field(), "llm.models[0].deployments[1].provider");
    assert!(
        e.to_string().contains("\"simm\"") && e.to_string().contains("declared: sim"),
        "{e}"
    );

    let e = err(&good_with(
        "fallbacks = [\"large\"]\ncontext",
        "fallbacks = [\"large\", \"huge\"]\ncontext",
    ));
    assert_eq!(e.field(), "llm.models[0].fallbacks[1]");
    assert!(e.to_string().contains("\"huge\""), "{e}");

    let e = err(&good_with(
        "fallbacks = [\"large\"]\ncontext",
        "fallbacks = [\"small\"]\ncontext",
    ));
    assert_eq!(e.field(), "llm.models[0].fallbacks[0]");
    assert!(e.to_string().contains("itself"), "{e}");
}

#[test]
fn a_context_window_fallback_must_have_a_larger_window() {
    let e = err(&good_with("context_window = 128000", "context_window = 16000"));
    assert!(matches!(e, ConfigError::Conflict { .. }), "{e:?}");
    assert_eq!(e.field(), "llm.models[1].context_window");
}

#[test]
fn zero_and_absurd_values_are_refused() {
    for (from, to, field) in [
        (
            "context_window = 16000",
            "context_window = 0",
            "llm.models[0].context_window",
        ),
        (
            "context_window = 128000",
            "context_window = 100000001",
            "llm.models[1].context_window",
        ),
        (
            "max_output_tokens = 4000",
            "max_output_tokens = 200000",
            "llm.models[1].max_output_tokens",
        ),
        (
            "max_output_tokens = 4000",
            "max_output_tokens = 0",
            "llm.models[1].max_output_tokens",
        ),
        (
            "input_price = 150000",
            "input_price = 10000000001",
            "llm.models[0].input_price",
        ),
        ("weight = 3", "weight = 0", "llm.models[1].deployments[0].weight"),
        (
            ", requests_per_minute = 60 }",
            ", requests_per_minute = 0 }",
            "llm.models[1].deployments[0].requests_per_minute",
        ),
        (
            "simulated_requests_per_minute = 600",
            "simulated_requests_per_minute = 0",
            "llm.providers[0].simulated_requests_per_minute",
        ),
        (
            "latency_median = \"0s\"",
            "latency_median = \"2h\"",
            "llm.providers[0].latency_median",
        ),
        (
            "requests_per_minute = 500",
            "requests_per_minute = 0",
            "llm.providers[0].requests_per_minute",
        ),
        (
            "requests_per_minute = 500",
            "tokens_per_minute = 1000\ninput_tokens_per_minute = 2000",
            "llm.providers[0].input_tokens_per_minute",
        ),
    ] {
        let e = err(&good_with(from, to));
        assert_eq!(e.field(), field, "{to}: {e}");
    }
    let e = err(&good_with(", requests_per_minute = 60", ", input_price = 10000000001"));
    assert_eq!(e.field(), "llm.models[1].deployments[0].input_price", "{e}");
}

#[test]
fn models_without_providers_and_providers_without_models_are_refused() {
    let models_only = GOOD
        .split("[[llm.models]]")
        .skip(1)
        .fold(String::new(), |acc, m| acc + "[[llm.models]]" + m);
    let e = err(&models_only);
    assert!(matches!(e, ConfigError::Conflict { .. }), "{e:?}");
    assert_eq!(e.field(), "llm.models");
    assert!(e.to_string().contains("llm.providers"), "{e}");

    let providers_only = GOOD.split("[[llm.models]]").next().unwrap();
    let e = err(providers_only);
    assert_eq!(e.field(), "llm.providers");
    assert!(e.to_string().contains("llm.models"), "{e}");
}

#[test]
fn a_provider_no_model_uses_and_a_model_without_deployments_are_refused() {
    let unused = good_with(
        "\n[[llm.models]]\nname = \"small\"",
        "\n[[llm.providers]]\nid = \"idle\"\nkind = \"simulated\"\n\n[[llm.models]]\nname = \"small\"",
    );
    let e = err(&unused);
    assert_eq!(e.field(), "llm.providers[1].id");
    assert!(e.to_string().contains("no deployment"), "{e}");

    let e = err(&good_with("deployments = [{ provider = \"sim\" }]", "deployments = []"));
    assert_eq!(e.field(), "llm.models[0].deployments");
}

#[test]
fn unknown_keys_kinds_and_capabilities_are_refused_naming_where() {
    let e = err(&good_with("seed = 7\n", "seed = 7\napi_key = \"x\"\n"));
    assert!(matches!(e, ConfigError::Parse { .. }), "{e:?}");
    assert!(e.field().starts_with("llm.providers[0]"), "{e}");
    assert!(e.to_string().contains("api_key"), "{e}");

    let e = err(&good_with("kind = \"simulated\"", "kind = \"carrier_pigeon\""));
    assert_eq!(e.field(), "llm.providers[0].kind", "{e}");

    let e = err(&good_with(
        "capabilities = [\"reasoning\"]",
        "capabilities = [\"telepathy\"]",
    ));
    assert!(e.field().starts_with("llm.models[1].capabilities"), "{e}");

    let e = err(&good_with("output_price = 600000\n", ""));
    assert_eq!(e.field(), "llm.models[0].output_price", "{e}");
}

#[test]
fn key_detection_tells_names_from_keys() {
    for name in [
        "OPENAI_API_KEY",
        "_K",
        "VLLM_KEY_2",
        "A_VERY_LONG_ENVIRONMENT_VARIABLE_NAME_1",
    ] {
        assert!(!looks_like_key(name) && is_env_var_name(name), "{name}");
    }
    for key in ["sk-x", "SK-abc", "sk_test_1", "bearer x", "Zx81kLmQ0pWr5tYu2iOaS3dF"] {
        assert!(looks_like_key(key), "{key}");
    }
    for bad in ["", "1ABC", "A-B", "A B", "ÄBC"] {
        assert!(!is_env_var_name(bad), "{bad}");
    }
}
