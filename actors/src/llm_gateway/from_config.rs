//! The gateway built from configuration: `[[llm.providers]]` become
//! providers ([`SimulatedProvider`], [`OpenAiCompatible`] or
//! [`AnthropicMessages`], with the API key read from the environment
//! variable the provider names) and
//! `[[llm.models]]` the [`ModelCatalogue`], whose prices the cost ledger
//! takes too ([`LedgerHandle::use_catalogue_prices`]), so that no price is
//! written twice.
//!
//! ```
//! use nexus_swarm_actors::llm::LlmRequest;
//! use nexus_swarm_actors::llm_gateway::{LlmGateway, LlmGatewayArgs};
//! use nexus_swarm_runtime::config::NexusConfig;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = NexusConfig::from_toml_str(
//!     r#"
//! [[llm.providers]]
//! id = "sim"
//! kind = "simulated"
//! latency_median = "0s"
//!
//! [[llm.models]]
//! name = "small"
//! context_window = 8000
//! input_price = 150000
//! output_price = 600000
//! deployments = [{ provider = "sim" }]
//! "#,
//! )?;
//! let mut args = LlmGatewayArgs::from_config(&config)?;
//! args.cache_dir = None; // keep this example's cache in memory
//! let (gateway, _actor, _join) = LlmGateway::spawn_unsupervised(args).await?;
//! let answer = gateway.complete(LlmRequest::user("Plan the survey.").max_tokens(64)).await?;
//! assert_eq!(answer.model, "small");
//! assert_eq!(answer.deployment, "small@sim");
//! # Ok(()) }
//! ```
//!
//! [`LedgerHandle::use_catalogue_prices`]: crate::cost_ledger::LedgerHandle::use_catalogue_prices

use std::sync::Arc;

use nexus_swarm_runtime::config::{
    DeploymentConfig, LlmConfig, ModelConfig, NexusConfig, ProviderConfig, ProviderKind,
};

use super::{LlmGatewayArgs, ProviderEntry};
use crate::llm::anthropic::{AnthropicConfig, AnthropicMessages};
use crate::llm::catalogue::{DeploymentSpec, ModelCatalogue, ModelSpec};
use crate::llm::error::{CatalogueError, GatewayBuildError};
use crate::llm::limiter::RateLimits;
use crate::llm::openai::{HttpPool, OpenAiCompatible, OpenAiConfig};
use crate::llm::provider::LlmProvider;
use crate::llm::simulated::{SimulatedConfig, SimulatedProvider};

impl LlmGatewayArgs {
    /// The gateway the configuration declares: its `llm.providers` and
    /// `llm.models`, the `llm` and `cache` sections, and the disk cache
    /// under `<node.data_dir>/llm-cache`; no gates and no sink yet (add the
    /// ledger's budgets and the ledger with [`Self::gate`] and
    /// [`Self::sink`]). An `api_key_env` is read from the process
    /// environment now.
    ///
    /// Errors: [`GatewayBuildError::Config`] if the `llm` section is
    /// invalid (models declared without providers or the reverse
    /// included), [`GatewayBuildError::NoModels`] if it declares none,
    /// [`GatewayBuildError::MissingApiKey`] naming a key's variable that is
    /// not set, [`GatewayBuildError::Provider`] if a provider cannot be
    /// built.
    pub fn from_config(config: &NexusConfig) -> Result<Self, GatewayBuildError> {
        Self::from_config_with_env(config, |var| std::env::var(var).ok())
    }

    /// As [`Self::from_config`], reading each `api_key_env` variable
    /// through `env` instead of the process environment.
    pub fn from_config_with_env(
        config: &NexusConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, GatewayBuildError> {
        config.llm.validate()?;
        if config.llm.models.is_empty() {
            return Err(GatewayBuildError::NoModels);
        }
        let catalogue = ModelCatalogue::from_config(&config.llm)?;
        let providers = providers_from_config(&config.llm, env)?;
        Ok(Self::from_config_with_catalogue(config, catalogue, providers))
    }
}

impl ModelCatalogue {
    /// The catalogue `llm.models` declares, validated (the section itself
    /// should have passed [`LlmConfig::validate`], which checks more: that
    /// each deployment's provider is declared, and the ranges).
    pub fn from_config(llm: &LlmConfig) -> Result<Self, CatalogueError> {
        ModelCatalogue::new(llm.models.iter().map(model_spec).collect())
    }
}

fn model_spec(m: &ModelConfig) -> ModelSpec {
    ModelSpec {
        name: m.name.clone(),
        capabilities: m.capabilities.clone(),
        context_window: m.context_window,
        max_output_tokens: m.max_output(),
        input_price: m.input_price,
        output_price: m.output_price,
        fallbacks: m.fallbacks.clone(),
        context_window_fallbacks: m.context_window_fallbacks.clone(),
        deployments: m.deployments.iter().map(|d| deployment_spec(&m.name, d)).collect(),
    }
}

fn deployment_spec(model: &str, d: &DeploymentConfig) -> DeploymentSpec {
    DeploymentSpec {
        id: d.id_for(model),
        provider: d.provider.clone(),
        upstream_model: d.upstream_model.clone(),
        weight: d.weight,
        limits: RateLimits {
            requests_per_minute: d.requests_per_minute,
            input_tokens_per_minute: d.input_tokens_per_minute,
            output_tokens_per_minute: d.output_tokens_per_minute,
            tokens_per_minute: d.tokens_per_minute,
        },
        input_price: d.input_price,
        output_price: d.output_price,
    }
}

/// The gateway's limits for a provider: its own, else the `llm` section's.
fn provider_limits(p: &ProviderConfig, llm: &LlmConfig) -> RateLimits {
    let limits = p.limits(llm);
    let opt = |v: u32| (v > 0).then_some(u64::from(v));
    RateLimits {
        requests_per_minute: opt(limits.requests_per_minute),
        input_tokens_per_minute: opt(limits.input_tokens_per_minute),
        output_tokens_per_minute: opt(limits.output_tokens_per_minute),
        tokens_per_minute: opt(limits.tokens_per_minute),
    }
}

fn simulated_config(p: &ProviderConfig) -> SimulatedConfig {
    let defaults = SimulatedConfig::default();
    SimulatedConfig {
        seed: p.seed.unwrap_or(defaults.seed),
        latency_median: p.latency_median.unwrap_or(defaults.latency_median),
        requests_per_minute: p.simulated_requests_per_minute,
        tokens_per_minute: p.simulated_tokens_per_minute,
        ..defaults
    }
}

fn providers_from_config(
    llm: &LlmConfig,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Vec<ProviderEntry>, GatewayBuildError> {
    // One HTTP pool for every HTTP provider (OpenAI-compatible and
    // Anthropic), so that `llm.max_connections` bounds them together; built
    // only if one is declared.
    let mut pool: Option<HttpPool> = None;
    let mut entries = Vec::with_capacity(llm.providers.len());
    for p in &llm.providers {
        let failed = |source| GatewayBuildError::Provider {
            provider: p.id.clone(),
            source: Box::new(source),
        };
        let mut shared_pool = || -> Result<HttpPool, GatewayBuildError> {
            let shared = match &pool {
                Some(shared) => shared.clone(),
                None => HttpPool::new(llm).map_err(failed)?,
            };
            pool = Some(shared.clone());
            Ok(shared)
        };
        // The key is read here (so that its absence is a typed error
        // naming the variable) and the same value handed on.
        let key = match (&p.api_key_env, p.kind) {
            (_, ProviderKind::Simulated) | (None, _) => None,
            (Some(var), _) => {
                Some(
                    env(var)
                        .filter(|k| !k.trim().is_empty())
                        .ok_or_else(|| GatewayBuildError::MissingApiKey {
                            provider: p.id.clone(),
                            var: var.clone(),
                        })?,
                )
            }
        };
        let base_url = p.base_url.clone().unwrap_or_default();
        let provider: Arc<dyn LlmProvider> = match p.kind {
            ProviderKind::Simulated => Arc::new(SimulatedProvider::new(p.id.clone(), simulated_config(p))),
            ProviderKind::OpenAiCompatible => {
                let mut endpoint = OpenAiConfig::new(base_url).timeout(llm.timeout);
                if let Some(var) = &p.api_key_env {
                    endpoint = endpoint.api_key_env(var.clone());
                }
                let shared = shared_pool()?;
                Arc::new(OpenAiCompatible::with_env(p.id.clone(), &endpoint, &shared, |_| key.clone()).map_err(failed)?)
            }
            ProviderKind::Anthropic => {
                let mut endpoint = AnthropicConfig::new(base_url).timeout(llm.timeout);
                if let Some(var) = &p.api_key_env {
                    endpoint = endpoint.api_key_env(var.clone());
                }
                let shared = shared_pool()?;
                Arc::new(
                    AnthropicMessages::with_env(p.id.clone(), &endpoint, &shared, |_| key.clone()).map_err(failed)?,
                )
            }
        };
        entries.push(ProviderEntry::new(p.id.clone(), provider).limits(provider_limits(p, llm)));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests;
