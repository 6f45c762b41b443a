//! The model catalogue: what each model can do, how large its window is,
//! what it costs, where it is deployed and what it falls back to; and the
//! choice of a model for a request.
//!
//! Prices are integers: micro-dollars per million tokens (so $0.15 per
//! million input tokens is `150_000`). A request's cost is priced exactly as
//! the cost ledger prices its usage records: the prompt tokens and the
//! completion tokens are each rounded *up* to the micro-dollar, then added,
//! for estimates and actuals alike (one function, [`tokens_cost_micro_usd`]),
//! so the cost a response reports is the cost its records commit. The
//! ledger takes its model prices from the catalogue
//! ([`PriceTable::from_catalogue`](crate::cost_ledger::PriceTable::from_catalogue),
//! [`LedgerHandle::use_catalogue_prices`](crate::cost_ledger::LedgerHandle::use_catalogue_prices)),
//! so each price is written once; a catalogue can be declared in
//! configuration ([`ModelCatalogue::from_config`]).

use std::collections::{BTreeSet, HashSet};

use serde::{Deserialize, Serialize};

use super::error::CatalogueError;
use super::limiter::RateLimits;
use super::types::{Capability, ModelChoice};
use crate::cost_ledger::tokens_cost_micro_usd;

/// One place a model is served: a model name at a provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentSpec {
    /// Unique id of the deployment (e.g. `"gpt-4o-mini@openai"`).
    pub id: String,
    /// The provider id it is called through.
    pub provider: String,
    /// The provider's own model name. Default: the catalogue model's name.
    #[serde(default)]
    pub upstream_model: Option<String>,
    /// Weight in weighted-shuffle routing. Default: 1.
    #[serde(default = "one")]
    pub weight: u32,
    /// Limits of this model at this provider. Default: none.
    #[serde(default)]
    pub limits: RateLimits,
    /// Price override, micro-dollars per million prompt tokens.
    #[serde(default)]
    pub input_price: Option<u64>,
    /// Price override, micro-dollars per million completion tokens.
    #[serde(default)]
    pub output_price: Option<u64>,
}

fn one() -> u32 {
    1
}

impl DeploymentSpec {
    /// A deployment of weight 1 with no limits and the model's prices.
    pub fn new(id: impl Into<String>, provider: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            provider: provider.into(),
            upstream_model: None,
            weight: 1,
            limits: RateLimits::default(),
            input_price: None,
            output_price: None,
        }
    }

    /// Builder-style: limits.
    pub fn limits(mut self, limits: RateLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Builder-style: weight.
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// Builder-style: the provider's model name.
    pub fn upstream(mut self, model: impl Into<String>) -> Self {
        self.upstream_model = Some(model.into());
        self
    }

    /// Builder-style: price override (micro-dollars per million tokens).
    pub fn prices(mut self, input: u64, output: u64) -> Self {
        self.input_price = Some(input);
        self.output_price = Some(output);
        self
    }
}

/// A model group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// The catalogue name requests use.
    pub name: String,
    /// What it can do (chat is implied).
    #[serde(default)]
    pub capabilities: BTreeSet<Capability>,
    /// Prompt plus completion tokens at most.
    pub context_window: u64,
    /// Completion tokens at most.
    pub max_output_tokens: u64,
    /// Micro-dollars per million prompt tokens.
    pub input_price: u64,
    /// Micro-dollars per million completion tokens.
    pub output_price: u64,
    /// Models tried in order when this one fails.
    #[serde(default)]
    pub fallbacks: Vec<String>,
    /// Larger models tried in order when a request does not fit the window.
    #[serde(default)]
    pub context_window_fallbacks: Vec<String>,
    /// Where it is served.
    pub deployments: Vec<DeploymentSpec>,
}

impl ModelSpec {
    /// A model with no capabilities beyond chat, no fallbacks and no deployments.
    pub fn new(name: impl Into<String>, context_window: u64, input_price: u64, output_price: u64) -> Self {
        Self {
            name: name.into(),
            capabilities: BTreeSet::new(),
            context_window,
            max_output_tokens: context_window,
            input_price,
            output_price,
            fallbacks: Vec::new(),
            context_window_fallbacks: Vec::new(),
            deployments: Vec::new(),
        }
    }

    /// Builder-style: capabilities.
    pub fn capabilities(mut self, caps: impl IntoIterator<Item = Capability>) -> Self {
        self.capabilities = caps.into_iter().collect();
        self
    }

    /// Builder-style: most output tokens.
    pub fn max_output(mut self, n: u64) -> Self {
        self.max_output_tokens = n;
        self
    }

    /// Builder-style: general fallbacks.
    pub fn fallbacks(mut self, names: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.fallbacks = names.into_iter().map(Into::into).collect();
        self
    }

    /// Builder-style: context-window fallbacks.
    pub fn context_fallbacks(mut self, names: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.context_window_fallbacks = names.into_iter().map(Into::into).collect();
        self
    }

    /// Builder-style: adds a deployment.
    pub fn deployment(mut self, d: DeploymentSpec) -> Self {
        self.deployments.push(d);
        self
    }

    /// Whether it has every capability in `needs` (chat is implied).
    pub fn has(&self, needs: &BTreeSet<Capability>) -> bool {
        needs
            .iter()
            .all(|c| *c == Capability::Chat || self.capabilities.contains(c))
    }

    /// Whether `input + max_output` tokens fit its window and output limit.
    pub fn fits(&self, input: u64, max_output: u64) -> bool {
        max_output <= self.max_output_tokens && input.saturating_add(max_output) <= self.context_window
    }

    /// The cost of a call at this model's list prices.
    pub fn cost(&self, input: u64, output: u64) -> u64 {
        cost_micro_usd(input, output, self.input_price, self.output_price)
    }

    /// The prices of a deployment (its override or the model's).
    pub fn prices_of(&self, d: &DeploymentSpec) -> (u64, u64) {
        (
            d.input_price.unwrap_or(self.input_price),
            d.output_price.unwrap_or(self.output_price),
        )
    }

    /// The most any deployment charges for a call (the estimate reserved).
    pub fn worst_cost(&self, input: u64, output: u64) -> u64 {
        self.deployments
            .iter()
            .map(|d| {
                let (i, o) = self.prices_of(d);
                cost_micro_usd(input, output, i, o)
            })
            .max()
            .unwrap_or_else(|| self.cost(input, output))
    }
}

/// Cost of `input` and `output` tokens at prices in micro-dollars per
/// million tokens: each part rounded up to the micro-dollar, as the cost
/// ledger charges the input- and output-token records of a call.
pub fn cost_micro_usd(input: u64, output: u64, input_price: u64, output_price: u64) -> u64 {
    tokens_cost_micro_usd(input, output, input_price, output_price)
}

/// Every model the gateway knows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCatalogue {
    /// The models.
    pub models: Vec<ModelSpec>,
}

impl ModelCatalogue {
    /// A catalogue of these models, validated.
    pub fn new(models: Vec<ModelSpec>) -> Result<Self, CatalogueError> {
        let c = Self { models };
        c.validate()?;
        Ok(c)
    }

    /// Checks names, ranges and references.
    pub fn validate(&self) -> Result<(), CatalogueError> {
        let mut names = HashSet::new();
        let mut deployments = HashSet::new();
        for m in &self.models {
            if m.name.trim().is_empty() {
                return Err(CatalogueError::Invalid {
                    field: "models[].name".into(),
                    reason: "must not be empty".into(),
                });
            }
            if !names.insert(m.name.as_str()) {
                return Err(CatalogueError::Duplicate(m.name.clone()));
            }
            if m.context_window == 0 || m.max_output_tokens == 0 {
                return Err(CatalogueError::Invalid {
                    field: format!("{}.context_window", m.name),
                    reason: "window and max output must be at least 1 token".into(),
                });
            }
            if m.deployments.is_empty() {
                return Err(CatalogueError::NoDeployment(m.name.clone()));
            }
            for d in &m.deployments {
                if !deployments.insert(d.id.as_str()) {
                    return Err(CatalogueError::Duplicate(d.id.clone()));
                }
                if d.weight == 0 {
                    return Err(CatalogueError::Invalid {
                        field: format!("{}.weight", d.id),
                        reason: "must be at least 1".into(),
                    });
                }
            }
        }
        for m in &self.models {
            for f in m.fallbacks.iter().chain(&m.context_window_fallbacks) {
                if !names.contains(f.as_str()) {
                    return Err(CatalogueError::UnknownFallback {
                        model: m.name.clone(),
                        fallback: f.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The model of that name.
    pub fn get(&self, name: &str) -> Result<&ModelSpec, CatalogueError> {
        self.models
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| CatalogueError::UnknownModel(name.to_string()))
    }

    /// Index of the model of that name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.models.iter().position(|m| m.name == name)
    }

    /// The model for a request of `input` prompt tokens and `max_output`
    /// completion tokens: the named one, or the cheapest (by estimated cost
    /// at list prices, then by name) that has the capabilities and fits.
    pub fn choose(&self, choice: &ModelChoice, input: u64, max_output: u64) -> Result<usize, CatalogueError> {
        match choice {
            ModelChoice::Named(name) => self
                .index_of(name)
                .ok_or_else(|| CatalogueError::UnknownModel(name.clone())),
            ModelChoice::Cheapest(needs) => self
                .models
                .iter()
                .enumerate()
                .filter(|(_, m)| m.has(needs) && m.fits(input, max_output))
                .min_by(|(_, a), (_, b)| {
                    a.cost(input, max_output)
                        .cmp(&b.cost(input, max_output))
                        .then_with(|| a.name.cmp(&b.name))
                })
                .map(|(i, _)| i)
                .ok_or_else(|| CatalogueError::NoModelFits {
                    capabilities: needs.iter().map(|c| format!("{c:?}")).collect::<Vec<_>>().join(","),
                    tokens: input.saturating_add(max_output),
                }),
        }
    }
}

#[cfg(test)]
mod tests;
