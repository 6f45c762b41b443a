//! The LLM gateway's providers and models, declared in configuration:
//! `[[llm.providers]]` and `[[llm.models]]` (both empty by default, so
//! `nexus config defaults` prints neither). The actors crate builds the
//! gateway from them (`LlmGatewayArgs::from_config`) and prices the cost
//! ledger from the same models, so a price is written once.
//!
//! A provider is `kind = "simulated"` (the embedded, seeded provider),
//! `kind = "openai_compatible"` (OpenAI, vLLM, Ollama, LiteLLM... at a
//! `base_url`) or `kind = "anthropic"` (Anthropic's Messages API at a
//! `base_url` such as `https://api.anthropic.com/v1`). Its API key is never written here: `api_key_env` names the
//! environment variable that holds it, read when the gateway is built. A
//! value that looks like a key itself (`sk-...`) is refused.
//!
//! A model has a context window, prices in micro-dollars per million tokens
//! (`150_000` is $0.15 per million), capabilities, fallbacks and one or more
//! deployments, each naming a provider by its id.
//!
//! ```
//! use nexus_swarm_runtime::config::{Capability, NexusConfig, ProviderKind};
//!
//! let cfg = NexusConfig::from_toml_str(
//!     r#"
//! [[llm.providers]]
//! id = "sim"
//! kind = "simulated"
//! seed = 7
//! latency_median = "200ms"
//! simulated_requests_per_minute = 600     # the simulated service answers 429 past these
//! simulated_tokens_per_minute = 200000
//! requests_per_minute = 500               # the gateway holds itself to these (default: llm.*)
//! tokens_per_minute = 150000
//!
//! [[llm.providers]]
//! id = "openai"
//! kind = "openai_compatible"
//! base_url = "https://api.openai.com/v1"
//! api_key_env = "OPENAI_API_KEY"          # the variable's name, never the key
//!
//! [[llm.providers]]
//! id = "anthropic"
//! kind = "anthropic"
//! base_url = "https://api.anthropic.com/v1"
//! api_key_env = "ANTHROPIC_API_KEY"
//!
//! [[llm.models]]
//! name = "small"
//! context_window = 16000
//! input_price = 150000                    # micro-dollars per million prompt tokens
//! output_price = 600000                   # micro-dollars per million completion tokens
//! fallbacks = ["large"]
//! context_window_fallbacks = ["large"]
//! deployments = [{ provider = "sim" }]
//!
//! [[llm.models]]
//! name = "large"
//! context_window = 128000
//! max_output_tokens = 16000
//! input_price = 2500000
//! output_price = 10000000
//! capabilities = ["reasoning", "tools"]
//!
//! [[llm.models.deployments]]
//! provider = "openai"
//! upstream_model = "gpt-4o"
//! requests_per_minute = 100
//!
//! [[llm.models.deployments]]
//! provider = "sim"
//! weight = 3
//!
//! [[llm.models.deployments]]
//! provider = "anthropic"
//! upstream_model = "claude-sonnet-4-5"
//! "#,
//! )
//! .unwrap();
//! assert_eq!(cfg.llm.providers[1].kind, ProviderKind::OpenAiCompatible);
//! assert_eq!(cfg.llm.providers[2].kind, ProviderKind::Anthropic);
//! assert_eq!(cfg.llm.models[1].deployments[0].id_for("large"), "large@openai");
//! assert!(cfg.llm.models[1].capabilities.contains(&Capability::Reasoning));
//!
//! let err = NexusConfig::from_toml_str(
//!     "[[llm.providers]]\nid = \"o\"\nkind = \"openai_compatible\"\nbase_url = \"http://127.0.0.1:8000/v1\"\napi_key_env = \"sk-abc123\"\n",
//! )
//! .unwrap_err();
//! assert_eq!(err.field(), "llm.providers[0].api_key_env");
//! assert!(err.to_string().contains("name the environment variable"), "{err}");
//! assert!(!err.to_string().contains("sk-abc123"), "the key is not echoed");
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, LlmConfig, at_least, check_name, in_range, not_above, toml_integer};

/// Largest context window accepted, in tokens (100 million).
pub const MAX_CONTEXT_WINDOW: u64 = 100_000_000;

/// Highest price accepted for a million tokens, in micro-dollars: $10,000.
/// The cost ledger refuses any higher price, so the catalogue does too.
pub const MAX_MICRO_USD_PER_MILLION_TOKENS: u64 = 10_000_000_000;

/// Longest median latency of a simulated provider: 1 hour.
pub const MAX_SIMULATED_LATENCY: Duration = Duration::from_secs(3600);

/// Something a model can do, which a request may need.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// Plain chat completion (every model has it).
    Chat,
    /// Tool / function calling.
    Tools,
    /// Strict JSON output.
    Json,
    /// Image input.
    Vision,
    /// Long multi-step reasoning.
    Reasoning,
    /// Program code.
    Code,
}

/// How a provider is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProviderKind {
    /// The embedded simulated provider: seeded, with realistic latency and
    /// token counts and its own rpm/tpm limits (429 past them). Written
    /// `"simulated"`.
    #[serde(rename = "simulated")]
    Simulated,
    /// An OpenAI-compatible chat-completions API over HTTP. Written
    /// `"openai_compatible"`.
    #[serde(rename = "openai_compatible")]
    OpenAiCompatible,
    /// Anthropic's Messages API over HTTP (`POST {base_url}/messages`).
    /// Written `"anthropic"`.
    #[serde(rename = "anthropic")]
    Anthropic,
}

impl ProviderKind {
    /// The kind as configuration writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Simulated => "simulated",
            ProviderKind::OpenAiCompatible => "openai_compatible",
            ProviderKind::Anthropic => "anthropic",
        }
    }
}

/// One `[[llm.providers]]` entry: a provider the gateway may call. Its
/// `id` and `kind` have no default; the fields of the other kind are
/// refused (a `base_url` on a simulated provider does nothing).
///
/// ```toml
/// [[llm.providers]]
/// id = "local"
/// kind = "openai_compatible"
/// base_url = "http://127.0.0.1:8000/v1"   # a vLLM server; no api_key_env: no key sent
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// The id deployments name it by, unique.
    pub id: String,
    /// `"simulated"`, `"openai_compatible"` or `"anthropic"`.
    pub kind: ProviderKind,
    /// Simulated only: the seed of its latency and completion lengths.
    /// Default: 42.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Simulated only: median latency of a reply (log-normal); `"0s"`
    /// answers at once. At most 1 hour. Default: 400 ms.
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub latency_median: Option<Duration>,
    /// Simulated only: requests per sliding minute the simulated service
    /// accepts before it answers 429. Default: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulated_requests_per_minute: Option<u64>,
    /// Simulated only: prompt plus completion tokens per sliding minute the
    /// simulated service accepts before it answers 429. Default: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulated_tokens_per_minute: Option<u64>,
    /// OpenAI-compatible and Anthropic only, required: the API root,
    /// `http://` or `https://` (e.g. `https://api.openai.com/v1`,
    /// `https://api.anthropic.com/v1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// OpenAI-compatible and Anthropic only: the *name* of the environment
    /// variable that holds the API key (e.g. `OPENAI_API_KEY`,
    /// `ANTHROPIC_API_KEY`), never the key itself. The variable must be set
    /// when the gateway is built. Default: none (no key is sent, as local
    /// servers expect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// Requests per minute the gateway sends this provider at most.
    /// Default: `llm.requests_per_minute`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
    /// Tokens per minute the gateway sends this provider at most.
    /// Default: `llm.tokens_per_minute`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u32>,
    /// Prompt tokens per minute, at most the provider's tokens per minute;
    /// 0 = no separate limit. Default: `llm.input_tokens_per_minute`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens_per_minute: Option<u32>,
    /// Completion tokens per minute, at most the provider's tokens per
    /// minute; 0 = no separate limit. Default: `llm.output_tokens_per_minute`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens_per_minute: Option<u32>,
}

impl ProviderConfig {
    /// A simulated provider with the defaults of every optional field.
    pub fn simulated(id: impl Into<String>) -> Self {
        Self::bare(id, ProviderKind::Simulated)
    }

    /// An OpenAI-compatible provider at `base_url`, sending no key.
    pub fn openai_compatible(id: impl Into<String>, base_url: impl Into<String>) -> Self {
        Self {
            base_url: Some(base_url.into()),
            ..Self::bare(id, ProviderKind::OpenAiCompatible)
        }
    }

    /// An Anthropic Messages provider at `base_url`, sending no key.
    pub fn anthropic(id: impl Into<String>, base_url: impl Into<String>) -> Self {
        Self {
            base_url: Some(base_url.into()),
            ..Self::bare(id, ProviderKind::Anthropic)
        }
    }

    fn bare(id: impl Into<String>, kind: ProviderKind) -> Self {
        Self {
            id: id.into(),
            kind,
            seed: None,
            latency_median: None,
            simulated_requests_per_minute: None,
            simulated_tokens_per_minute: None,
            base_url: None,
            api_key_env: None,
            requests_per_minute: None,
            tokens_per_minute: None,
            input_tokens_per_minute: None,
            output_tokens_per_minute: None,
        }
    }

    /// The gateway's limits for this provider: its own where given, else
    /// the `llm` section's.
    pub fn limits(&self, llm: &LlmConfig) -> ProviderLimits {
        ProviderLimits {
            requests_per_minute: self.requests_per_minute.unwrap_or(llm.requests_per_minute),
            tokens_per_minute: self.tokens_per_minute.unwrap_or(llm.tokens_per_minute),
            input_tokens_per_minute: self.input_tokens_per_minute.unwrap_or(llm.input_tokens_per_minute),
            output_tokens_per_minute: self.output_tokens_per_minute.unwrap_or(llm.output_tokens_per_minute),
        }
    }
}

/// The limits the gateway holds one provider to, per minute
/// ([`ProviderConfig::limits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderLimits {
    /// Requests.
    pub requests_per_minute: u32,
    /// Prompt plus completion tokens.
    pub tokens_per_minute: u32,
    /// Prompt tokens; 0 = no separate limit.
    pub input_tokens_per_minute: u32,
    /// Completion tokens; 0 = no separate limit.
    pub output_tokens_per_minute: u32,
}

fn one() -> u32 {
    1
}

/// One deployment of a model: the model served by a provider. Only
/// `provider` has no default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    /// The id of the `[[llm.providers]]` entry that serves it.
    pub provider: String,
    /// The deployment's id, unique among all deployments (it names the
    /// deployment in responses, logs and stats). Default:
    /// `"<model>@<provider>"`; give one when a model has two deployments on
    /// the same provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The provider's own name of the model. Default: the model's `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_model: Option<String>,
    /// Weight in weighted-shuffle routing (`llm.routing`), at least 1.
    /// Default: 1.
    #[serde(default = "one")]
    pub weight: u32,
    /// Requests per minute of this model at this provider. Default: no
    /// limit of its own (the provider's still holds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u64>,
    /// Prompt plus completion tokens per minute. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
    /// Prompt tokens per minute. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens_per_minute: Option<u64>,
    /// Completion tokens per minute. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens_per_minute: Option<u64>,
    /// Price of this deployment, micro-dollars per million prompt tokens.
    /// Default: the model's `input_price`. (The cost ledger prices usage
    /// per model: a ledger priced from the catalogue refuses a deployment
    /// whose price differs from its model's.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_price: Option<u64>,
    /// Price of this deployment, micro-dollars per million completion
    /// tokens. Default: the model's `output_price`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_price: Option<u64>,
}

impl DeploymentConfig {
    /// A deployment on `provider` with every default.
    pub fn on(provider: impl Into<String>) -> Self {
        Self {
            provider: provider.into(),
            id: None,
            upstream_model: None,
            weight: 1,
            requests_per_minute: None,
            tokens_per_minute: None,
            input_tokens_per_minute: None,
            output_tokens_per_minute: None,
            input_price: None,
            output_price: None,
        }
    }

    /// Its id: the one given, else `"<model>@<provider>"`.
    pub fn id_for(&self, model: &str) -> String {
        self.id.clone().unwrap_or_else(|| format!("{model}@{}", self.provider))
    }
}

/// One `[[llm.models]]` entry: a model requests may name (or that the
/// gateway picks as the cheapest that fits). `name`, `context_window`,
/// both prices and `deployments` have no default.
///
/// ```toml
/// [[llm.models]]
/// name = "small"
/// context_window = 16000
/// input_price = 150000      # $0.15 per million prompt tokens, in micro-dollars
/// output_price = 600000     # $0.60 per million completion tokens
/// capabilities = ["tools"]
/// fallbacks = ["large"]
/// deployments = [{ provider = "sim" }, { provider = "openai", upstream_model = "gpt-4o-mini", weight = 2 }]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The name requests use, unique.
    pub name: String,
    /// Prompt plus completion tokens at most (1 to 100 million).
    pub context_window: u64,
    /// Completion tokens at most, at most `context_window`. Default: the
    /// context window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
    /// Micro-dollars per million prompt tokens (`150000` = $0.15), at most
    /// $10,000 per million.
    pub input_price: u64,
    /// Micro-dollars per million completion tokens, at most $10,000 per
    /// million.
    pub output_price: u64,
    /// What it can do beyond chat: `tools`, `json`, `vision`, `reasoning`,
    /// `code`. Default: none.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub capabilities: BTreeSet<Capability>,
    /// Models tried in order when this one fails for good. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<String>,
    /// Models with a larger context window, tried in order when a request
    /// does not fit this one's. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub context_window_fallbacks: Vec<String>,
    /// Where it is served: at least one.
    pub deployments: Vec<DeploymentConfig>,
}

impl ModelConfig {
    /// A model with no capabilities beyond chat, no fallbacks and no
    /// deployments yet.
    pub fn new(name: impl Into<String>, context_window: u64, input_price: u64, output_price: u64) -> Self {
        Self {
            name: name.into(),
            context_window,
            max_output_tokens: None,
            input_price,
            output_price,
            capabilities: BTreeSet::new(),
            fallbacks: Vec::new(),
            context_window_fallbacks: Vec::new(),
            deployments: Vec::new(),
        }
    }

    /// Builder-style: adds a deployment.
    pub fn deployment(mut self, d: DeploymentConfig) -> Self {
        self.deployments.push(d);
        self
    }

    /// Completion tokens at most: `max_output_tokens`, else the window.
    pub fn max_output(&self) -> u64 {
        self.max_output_tokens.unwrap_or(self.context_window)
    }
}

/// Whether `name` can name an environment variable: ASCII letters, digits
/// and `_`, not starting with a digit.
fn is_env_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `value` looks like an API key rather than a variable's name:
/// a known key prefix (`sk-`, `sk_`, `Bearer `), or a long mix of lower-
/// and upper-case letters and digits (variable names are upper case).
fn looks_like_key(value: &str) -> bool {
    let lower = value.trim_start().to_ascii_lowercase();
    if ["sk-", "sk_", "bearer "].iter().any(|p| lower.starts_with(p)) {
        return true;
    }
    value.len() >= 24
        && value.chars().any(|c| c.is_ascii_lowercase())
        && value.chars().any(|c| c.is_ascii_uppercase())
        && value.chars().any(|c| c.is_ascii_digit())
}

/// What an error may show of a value that looks like a secret: its first
/// three characters.
fn redacted(value: &str) -> String {
    let head: String = value.chars().take(3).collect();
    format!("\"{head}...\" (rest withheld)")
}

fn price(field: &str, value: u64) -> Result<(), ConfigError> {
    in_range(field, value, 0, MAX_MICRO_USD_PER_MILLION_TOKENS)
}

fn per_minute(field: &str, value: Option<u64>) -> Result<(), ConfigError> {
    if let Some(v) = value {
        toml_integer(field, v)?;
        at_least(field, v, 1)?;
    }
    Ok(())
}

/// `"1 model"`, `"2 models"`.
fn entries(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Checks `llm.providers` and `llm.models` together: ids, ranges and every
/// reference between them.
pub(super) fn validate(llm: &LlmConfig) -> Result<(), ConfigError> {
    let (providers, models) = (&llm.providers, &llm.models);
    let mut provider_index = BTreeMap::new();
    for (i, p) in providers.iter().enumerate() {
        validate_provider(llm, i, p)?;
        if let Some(first) = provider_index.insert(p.id.as_str(), i) {
            return Err(ConfigError::conflict(
                (format!("llm.providers[{i}].id"), format!("{:?}", p.id)),
                (format!("llm.providers[{first}].id"), format!("{:?}", p.id)),
                "provider ids must be unique",
            ));
        }
    }
    if providers.is_empty() && !models.is_empty() {
        return Err(ConfigError::conflict(
            ("llm.models", entries(models.len(), "model")),
            ("llm.providers", "none"),
            "models are served by providers: declare the providers their deployments name as [[llm.providers]]",
        ));
    }
    if models.is_empty() && !providers.is_empty() {
        return Err(ConfigError::conflict(
            ("llm.providers", entries(providers.len(), "provider")),
            ("llm.models", "none"),
            "a provider is only called for the models deployed on it: declare them as [[llm.models]]",
        ));
    }
    let mut model_index = BTreeMap::new();
    for (i, m) in models.iter().enumerate() {
        check_name(&format!("llm.models[{i}].name"), &m.name)?;
        if let Some(first) = model_index.insert(m.name.as_str(), i) {
            return Err(ConfigError::conflict(
                (format!("llm.models[{i}].name"), format!("{:?}", m.name)),
                (format!("llm.models[{first}].name"), format!("{:?}", m.name)),
                "model names must be unique",
            ));
        }
    }
    let mut deployment_ids: BTreeMap<String, String> = BTreeMap::new();
    let mut used = BTreeSet::new();
    for (i, m) in models.iter().enumerate() {
        let at = |f: &str| format!("llm.models[{i}].{f}");
        in_range(&at("context_window"), m.context_window, 1, MAX_CONTEXT_WINDOW)?;
        if let Some(max) = m.max_output_tokens {
            at_least(&at("max_output_tokens"), max, 1)?;
            not_above(
                (&at("max_output_tokens"), max),
                (&at("context_window"), m.context_window),
                "a completion must fit the context window",
            )?;
        }
        price(&at("input_price"), m.input_price)?;
        price(&at("output_price"), m.output_price)?;
        for (list, names) in [
            ("fallbacks", &m.fallbacks),
            ("context_window_fallbacks", &m.context_window_fallbacks),
        ] {
            for (k, name) in names.iter().enumerate() {
                let field = at(&format!("{list}[{k}]"));
                let Some(&j) = model_index.get(name.as_str()) else {
                    return Err(ConfigError::invalid(
                        field,
                        format!("{name:?}"),
                        "names no model in [[llm.models]]",
                    ));
                };
                if j == i {
                    return Err(ConfigError::invalid(
                        field,
                        format!("{name:?}"),
                        "a model cannot fall back to itself",
                    ));
                }
                let other = &models[j];
                if list == "context_window_fallbacks" && other.context_window <= m.context_window {
                    return Err(ConfigError::conflict(
                        (format!("llm.models[{j}].context_window"), other.context_window),
                        (at("context_window"), m.context_window),
                        format!(
                            "`{name}` is a context-window fallback of `{}`, so its window must be larger",
                            m.name
                        ),
                    ));
                }
            }
        }
        if m.deployments.is_empty() {
            return Err(ConfigError::invalid(
                at("deployments"),
                "[]",
                "a model needs at least one deployment (e.g. deployments = [{ provider = \"<id>\" }])",
            ));
        }
        for (k, d) in m.deployments.iter().enumerate() {
            let at = |f: &str| format!("llm.models[{i}].deployments[{k}].{f}");
            if !provider_index.contains_key(d.provider.as_str()) {
                let declared: Vec<&str> = provider_index.keys().copied().collect();
                return Err(ConfigError::invalid(
                    at("provider"),
                    format!("{:?}", d.provider),
                    format!(
                        "names no provider in [[llm.providers]] (declared: {})",
                        declared.join(", ")
                    ),
                ));
            }
            used.insert(d.provider.as_str());
            let id = d.id_for(&m.name);
            check_name(&at("id"), &id)?;
            if let Some(first) = deployment_ids.insert(id.clone(), at("id")) {
                return Err(ConfigError::conflict(
                    (at("id"), format!("{id:?}")),
                    (first, format!("{id:?}")),
                    "deployment ids must be unique (give each deployment on the same provider its own `id`)",
                ));
            }
            if let Some(upstream) = &d.upstream_model {
                check_name(&at("upstream_model"), upstream)?;
            }
            at_least(&at("weight"), d.weight.into(), 1)?;
            per_minute(&at("requests_per_minute"), d.requests_per_minute)?;
            per_minute(&at("tokens_per_minute"), d.tokens_per_minute)?;
            per_minute(&at("input_tokens_per_minute"), d.input_tokens_per_minute)?;
            per_minute(&at("output_tokens_per_minute"), d.output_tokens_per_minute)?;
            if let Some(p) = d.input_price {
                price(&at("input_price"), p)?;
            }
            if let Some(p) = d.output_price {
                price(&at("output_price"), p)?;
            }
        }
    }
    if let Some((i, p)) = providers
        .iter()
        .enumerate()
        .find(|(_, p)| !used.contains(p.id.as_str()))
    {
        return Err(ConfigError::invalid(
            format!("llm.providers[{i}].id"),
            format!("{:?}", p.id),
            "no deployment in [[llm.models]] names this provider: deploy a model on it or remove it",
        ));
    }
    Ok(())
}

fn validate_provider(llm: &LlmConfig, i: usize, p: &ProviderConfig) -> Result<(), ConfigError> {
    let at = |f: &str| format!("llm.providers[{i}].{f}");
    check_name(&at("id"), &p.id)?;
    let other_kind = |field: &str, value: String, owners: &str| {
        ConfigError::invalid(
            at(field),
            value,
            format!(
                "only {owners} provider has it, and this one's kind is `{}`",
                p.kind.as_str()
            ),
        )
    };
    let http_kinds = "an `openai_compatible` or `anthropic`";
    match p.kind {
        ProviderKind::Simulated => {
            if let Some(url) = &p.base_url {
                return Err(other_kind("base_url", format!("{url:?}"), http_kinds));
            }
            if p.api_key_env.is_some() {
                return Err(other_kind("api_key_env", "(withheld)".into(), http_kinds));
            }
            if let Some(seed) = p.seed {
                toml_integer(&at("seed"), seed)?;
            }
            if let Some(latency) = p.latency_median
                && latency > MAX_SIMULATED_LATENCY
            {
                return Err(ConfigError::invalid(
                    at("latency_median"),
                    format!("\"{}\"", humantime::format_duration(latency)),
                    "must be at most 1h",
                ));
            }
            per_minute(&at("simulated_requests_per_minute"), p.simulated_requests_per_minute)?;
            per_minute(&at("simulated_tokens_per_minute"), p.simulated_tokens_per_minute)?;
        }
        ProviderKind::OpenAiCompatible | ProviderKind::Anthropic => {
            let simulated_only = [
                ("seed", p.seed.map(|s| s.to_string())),
                (
                    "latency_median",
                    p.latency_median
                        .map(|d| format!("\"{}\"", humantime::format_duration(d))),
                ),
                (
                    "simulated_requests_per_minute",
                    p.simulated_requests_per_minute.map(|v| v.to_string()),
                ),
                (
                    "simulated_tokens_per_minute",
                    p.simulated_tokens_per_minute.map(|v| v.to_string()),
                ),
            ];
            if let Some((field, Some(value))) = simulated_only.into_iter().find(|(_, v)| v.is_some()) {
                return Err(other_kind(field, value, "a `simulated`"));
            }
            let Some(url) = &p.base_url else {
                let example = match p.kind {
                    ProviderKind::Anthropic => "https://api.anthropic.com/v1",
                    _ => "https://api.openai.com/v1",
                };
                return Err(ConfigError::invalid(
                    at("base_url"),
                    "none",
                    format!(
                        "an `{}` provider needs the API root, e.g. base_url = \"{example}\"",
                        p.kind.as_str()
                    ),
                ));
            };
            check_base_url(&at("base_url"), url)?;
            if let Some(var) = &p.api_key_env {
                check_api_key_env(&at("api_key_env"), var)?;
            }
        }
    }
    let limits = p.limits(llm);
    let src = |own: bool, f: &str| if own { at(f) } else { format!("llm.{f}") };
    at_least(
        &src(p.requests_per_minute.is_some(), "requests_per_minute"),
        limits.requests_per_minute.into(),
        1,
    )?;
    at_least(
        &src(p.tokens_per_minute.is_some(), "tokens_per_minute"),
        limits.tokens_per_minute.into(),
        1,
    )?;
    let total = (
        src(p.tokens_per_minute.is_some(), "tokens_per_minute"),
        u64::from(limits.tokens_per_minute),
    );
    for (f, own, v) in [
        (
            "input_tokens_per_minute",
            p.input_tokens_per_minute.is_some(),
            limits.input_tokens_per_minute,
        ),
        (
            "output_tokens_per_minute",
            p.output_tokens_per_minute.is_some(),
            limits.output_tokens_per_minute,
        ),
    ] {
        not_above(
            (&src(own, f), v.into()),
            (&total.0, total.1),
            "a part of the tokens cannot have a higher limit than all of them",
        )?;
    }
    Ok(())
}

/// An `http://` or `https://` URL with a host, no spaces or control
/// characters.
fn check_base_url(field: &str, url: &str) -> Result<(), ConfigError> {
    check_name(field, url)?;
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
    if host.is_none_or(str::is_empty) || url.chars().any(char::is_whitespace) {
        return Err(ConfigError::invalid(
            field,
            format!("{url:?}"),
            "must be an http:// or https:// URL with a host, e.g. \"https://api.openai.com/v1\"",
        ));
    }
    Ok(())
}

/// The name of an environment variable, not a key.
fn check_api_key_env(field: &str, var: &str) -> Result<(), ConfigError> {
    if looks_like_key(var) {
        return Err(ConfigError::invalid(
            field,
            redacted(var),
            "looks like an API key itself: never write the key in the configuration; put it in an environment \
             variable and name the environment variable here (e.g. api_key_env = \"OPENAI_API_KEY\")",
        ));
    }
    if !is_env_var_name(var) {
        return Err(ConfigError::invalid(
            field,
            format!("{var:?}"),
            "must name an environment variable (letters, digits and `_`, not starting with a digit), \
             e.g. \"OPENAI_API_KEY\"",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
