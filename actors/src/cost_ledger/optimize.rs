//! Cost optimization: opportunities found in the records, each with its
//! estimated savings in micro-dollars over the analysed range.
//!
//! - **Underused pools** (from pool capacity and utilization given as
//!   input): a pool busy less than 40 % of the time can shrink to the size
//!   that would run at 70 % (the seeds' scale-down and target levels).
//! - **Cheaper models** (from a model catalogue given as input, which the
//!   LLM gateway owns): the observed tokens and requests of each model,
//!   priced at every catalogued model with at least its capabilities and
//!   context window; the cheapest such alternative is proposed.
//! - **Repeated prompts** (records labelled `prompt_hash`): every request
//!   after the first with the same model and prompt hash could have been a
//!   cache hit.

use std::collections::{BTreeMap, BTreeSet};

use nexus_swarm_runtime::resources::ResourceKind;
use serde::{Deserialize, Serialize};

use super::error::LedgerError;
use super::pricing::{ModelRates, cost_of_units, tokens_cost_micro_usd};
use super::record::PROMPT_HASH_LABEL;
use super::report::TimeRange;
use super::store::UsageRow;

/// Utilization (permille) under which a pool is underused (seed: 0.4).
pub const UNDERUSED_BELOW_PERMILLE: u32 = 400;
/// Utilization (permille) a resized pool aims for (seed: 0.7).
pub const TARGET_PERMILLE: u32 = 700;

/// A model the gateway can call, with what it can do and what it costs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelPrice {
    /// The model's name, as in usage metadata.
    pub model: String,
    /// What it can do (`chat`, `code`, `vision`, `tools`...).
    pub capabilities: BTreeSet<String>,
    /// Its context window in tokens.
    pub context_window: u64,
    /// Its prices.
    pub rates: ModelRates,
}

/// A pool's capacity and how much of it was used over the range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolUsage {
    /// The pool's name.
    pub pool: String,
    /// Workers it has.
    pub workers: u32,
    /// Average share of workers busy, in permille.
    pub busy_permille: u32,
    /// Cost of one worker over the range, in micro-dollars.
    pub worker_cost_micro_usd: u64,
}

/// What `optimize` analyses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptimizeInput {
    /// The records' time range.
    pub range: TimeRange,
    /// The model catalogue.
    pub catalogue: Vec<ModelPrice>,
    /// Pool capacity and usage.
    pub pools: Vec<PoolUsage>,
}

/// The kind of an opportunity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum OpportunityKind {
    /// Shrink an underused pool.
    UnderusedPool {
        /// The pool.
        pool: String,
        /// Workers now.
        workers: u32,
        /// Workers that would run at the target utilization.
        recommended_workers: u32,
    },
    /// Use a cheaper model of the same capability.
    CheaperModel {
        /// The model used.
        from: String,
        /// The cheaper model.
        to: String,
        /// Input tokens observed.
        input_tokens: u64,
        /// Output tokens observed.
        output_tokens: u64,
        /// Requests observed.
        requests: u64,
    },
    /// Cache a prompt that was sent repeatedly.
    CacheRepeatedPrompt {
        /// The model it was sent to.
        model: Option<String>,
        /// The prompt's hash label.
        prompt_hash: String,
        /// Times it was sent.
        requests: u64,
    },
}

/// One cost-saving opportunity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Opportunity {
    /// What to do.
    pub kind: OpportunityKind,
    /// Estimated savings over the analysed range, in micro-dollars.
    pub estimated_savings_micro_usd: u64,
}

#[derive(Debug, Default)]
struct ModelUse {
    input: u64,
    output: u64,
    requests: u64,
    cost: u64,
}

#[derive(Debug, Default)]
struct PromptUse {
    requests: u64,
    input_records: u64,
    cost: u64,
}

/// Collects usage rows and finds opportunities.
#[derive(Debug)]
pub struct Optimizer {
    input: OptimizeInput,
    models: BTreeMap<String, ModelUse>,
    prompts: BTreeMap<(Option<String>, String), PromptUse>,
}

impl Optimizer {
    /// An optimizer for `input`.
    pub fn new(input: OptimizeInput) -> Result<Self, LedgerError> {
        for p in &input.pools {
            if p.busy_permille > 1000 {
                return Err(LedgerError::InvalidQuery(format!(
                    "pool {} busy {} permille is above 1000",
                    p.pool, p.busy_permille
                )));
            }
        }
        Ok(Self {
            input,
            models: BTreeMap::new(),
            prompts: BTreeMap::new(),
        })
    }

    /// Adds a usage row (ignored outside the range).
    pub fn add(&mut self, row: &UsageRow) {
        if !self.input.range.contains(row.at_us) {
            return;
        }
        let llm = matches!(
            row.kind,
            ResourceKind::InputTokens | ResourceKind::OutputTokens | ResourceKind::LlmRequests
        );
        if let (Some(model), true) = (&row.meta.scope.model, llm) {
            let m = self.models.entry(model.clone()).or_default();
            match row.kind {
                ResourceKind::InputTokens => m.input = m.input.saturating_add(row.amount),
                ResourceKind::OutputTokens => m.output = m.output.saturating_add(row.amount),
                _ => m.requests = m.requests.saturating_add(row.amount),
            }
            m.cost = m.cost.saturating_add(row.cost_micro_usd);
        }
        if let Some(hash) = row.meta.labels.get(PROMPT_HASH_LABEL) {
            let p = self
                .prompts
                .entry((row.meta.scope.model.clone(), hash.clone()))
                .or_default();
            match row.kind {
                ResourceKind::LlmRequests => p.requests = p.requests.saturating_add(row.amount),
                ResourceKind::InputTokens => p.input_records += row.records,
                _ => {}
            }
            p.cost = p.cost.saturating_add(row.cost_micro_usd);
        }
    }

    fn price(rates: &ModelRates, input: u64, output: u64, requests: u64) -> u64 {
        tokens_cost_micro_usd(input, output, rates.input_per_million, rates.output_per_million)
            .saturating_add(cost_of_units(requests, rates.per_request, 1).unwrap_or(u64::MAX))
    }

    /// The opportunities, largest savings first.
    pub fn finish(self) -> Vec<Opportunity> {
        let mut out = Vec::new();
        for p in &self.input.pools {
            if p.workers == 0 || p.busy_permille >= UNDERUSED_BELOW_PERMILLE {
                continue;
            }
            let busy = u64::from(p.workers) * u64::from(p.busy_permille);
            let recommended = busy.div_ceil(u64::from(TARGET_PERMILLE)).max(1) as u32;
            if recommended < p.workers {
                out.push(Opportunity {
                    kind: OpportunityKind::UnderusedPool {
                        pool: p.pool.clone(),
                        workers: p.workers,
                        recommended_workers: recommended,
                    },
                    estimated_savings_micro_usd: u64::from(p.workers - recommended)
                        .saturating_mul(p.worker_cost_micro_usd),
                });
            }
        }
        for (model, u) in &self.models {
            let (input, output, requests, cost) = (&u.input, &u.output, &u.requests, &u.cost);
            let Some(current) = self.input.catalogue.iter().find(|m| &m.model == model) else {
                continue;
            };
            let best = self
                .input
                .catalogue
                .iter()
                .filter(|m| &m.model != model)
                .filter(|m| m.capabilities.is_superset(&current.capabilities))
                .filter(|m| m.context_window >= current.context_window)
                .map(|m| (Self::price(&m.rates, *input, *output, *requests), m))
                .min_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.model.cmp(&b.1.model)));
            if let Some((alt_cost, alt)) = best
                && alt_cost < *cost
            {
                out.push(Opportunity {
                    kind: OpportunityKind::CheaperModel {
                        from: model.clone(),
                        to: alt.model.clone(),
                        input_tokens: *input,
                        output_tokens: *output,
                        requests: *requests,
                    },
                    estimated_savings_micro_usd: cost - alt_cost,
                });
            }
        }
        for ((model, hash), p) in self.prompts {
            let (requests, input_records, cost) = (p.requests, p.input_records, p.cost);
            let n = if requests > 0 { requests } else { input_records };
            if n >= 2 {
                out.push(Opportunity {
                    kind: OpportunityKind::CacheRepeatedPrompt {
                        model,
                        prompt_hash: hash,
                        requests: n,
                    },
                    estimated_savings_micro_usd: cost - cost / n,
                });
            }
        }
        out.sort_by_key(|o| std::cmp::Reverse(o.estimated_savings_micro_usd));
        out
    }
}
