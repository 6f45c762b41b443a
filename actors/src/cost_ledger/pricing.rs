//! Cost models: integer micro-dollar prices per resource kind and per model.
//!
//! A [`Rate`] prices `per` units of a kind at `micro_usd`; the cost of an
//! amount is rounded *up* to a whole micro-dollar, so a ledger never
//! under-charges. Token, request and CPU prices have named constructors:
//! [`Rate::per_million`] (tokens), [`Rate::per_unit`] (requests),
//! [`Rate::per_cpu_second`] (CPU usage is recorded in CPU-milliseconds, i.e.
//! millicore-seconds). A model's [`ModelRates`] override the kind rates of
//! input tokens, output tokens and requests for usage naming that model.
//! Money itself ([`ResourceKind::Cost`]) is never priced: its amount *is*
//! its cost.
//!
//! A call's tokens are recorded as one record per kind, each priced and
//! rounded on its own; [`tokens_cost_micro_usd`] computes that same sum, and
//! the LLM model catalogue prices its estimates and actuals with it, so what
//! the gateway reserves and reports and what the ledger commits agree to the
//! micro-dollar.

use std::collections::BTreeMap;

use nexus_swarm_runtime::resources::{ResourceKind, ResourceVector};
use serde::{Deserialize, Serialize};

use super::error::LedgerError;

/// Highest accepted price of one unit of any kind: $1,000.
pub const MAX_MICRO_USD_PER_UNIT: u64 = 1_000_000_000;
/// Highest accepted price of a million tokens: $10,000 (the limit the
/// configuration's model catalogue is checked against too).
pub const MAX_MICRO_USD_PER_MILLION_TOKENS: u64 = nexus_swarm_runtime::config::MAX_MICRO_USD_PER_MILLION_TOKENS;

/// The cost of `amount` units at `micro_usd` per `per` units, rounded up to
/// a whole micro-dollar; `None` if `per` is 0 or the cost does not fit a
/// `u64`. Every price in the ledger is computed by this function.
pub fn cost_of_units(amount: u64, micro_usd: u64, per: u64) -> Option<u64> {
    if per == 0 {
        return None;
    }
    let num = u128::from(amount) * u128::from(micro_usd);
    u64::try_from(num.div_ceil(u128::from(per))).ok()
}

/// What `input` prompt and `output` completion tokens cost at prices in
/// micro-dollars per million tokens, exactly as the ledger charges their
/// records: each part rounded up to the micro-dollar on its own, then added
/// (saturating at `u64::MAX`). No tokens of a kind cost nothing.
pub fn tokens_cost_micro_usd(input: u64, output: u64, input_per_million: u64, output_per_million: u64) -> u64 {
    let part = |tokens: u64, price: u64| cost_of_units(tokens, price, 1_000_000).unwrap_or(u64::MAX);
    part(input, input_per_million).saturating_add(part(output, output_per_million))
}

/// A price: `micro_usd` for every `per` units, rounded up per usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate {
    micro_usd: u64,
    per: u64,
}

impl Rate {
    /// `micro_usd` per `per` units. `per == 0` and prices above
    /// [`MAX_MICRO_USD_PER_UNIT`] per unit are rejected.
    pub fn new(micro_usd: u64, per: u64) -> Result<Rate, LedgerError> {
        let invalid = |reason: String| LedgerError::InvalidPrice {
            what: "rate".into(),
            reason,
        };
        if per == 0 {
            return Err(invalid("priced per 0 units".into()));
        }
        if u128::from(micro_usd) > u128::from(MAX_MICRO_USD_PER_UNIT) * u128::from(per) {
            return Err(invalid(format!(
                "{micro_usd} micro-dollars per {per} units is above $1,000 per unit"
            )));
        }
        Ok(Rate { micro_usd, per })
    }

    /// A price per million units (tokens). At most $10,000 per million.
    pub fn per_million(micro_usd: u64) -> Result<Rate, LedgerError> {
        let rate = Rate::new(micro_usd, 1_000_000)?;
        if rate.micro_usd > MAX_MICRO_USD_PER_MILLION_TOKENS {
            return Err(LedgerError::InvalidPrice {
                what: "rate".into(),
                reason: format!("{micro_usd} micro-dollars per million tokens is above $10,000"),
            });
        }
        Ok(rate)
    }

    /// A price per unit (per request, per GPU...).
    pub fn per_unit(micro_usd: u64) -> Result<Rate, LedgerError> {
        Rate::new(micro_usd, 1)
    }

    /// A price per CPU-second, for CPU usage recorded in CPU-milliseconds.
    pub fn per_cpu_second(micro_usd: u64) -> Result<Rate, LedgerError> {
        Rate::new(micro_usd, 1000)
    }

    /// Micro-dollars per [`Rate::per`] units.
    pub fn micro_usd(&self) -> u64 {
        self.micro_usd
    }

    /// The number of units the price is for.
    pub fn per(&self) -> u64 {
        self.per
    }

    /// The cost of `amount` units, rounded up to a whole micro-dollar.
    pub fn cost(&self, amount: u64) -> Result<u64, LedgerError> {
        cost_of_units(amount, self.micro_usd, self.per).ok_or(LedgerError::Overflow)
    }
}

/// One model's prices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRates {
    /// Micro-dollars per million input tokens.
    pub input_per_million: u64,
    /// Micro-dollars per million output tokens.
    pub output_per_million: u64,
    /// Micro-dollars per request.
    pub per_request: u64,
}

impl ModelRates {
    /// Checked constructor: no absurd price (above
    /// [`MAX_MICRO_USD_PER_MILLION_TOKENS`] per million tokens or
    /// [`MAX_MICRO_USD_PER_UNIT`] per request).
    pub fn new(input_per_million: u64, output_per_million: u64, per_request: u64) -> Result<Self, LedgerError> {
        Ok(Self {
            input_per_million: Rate::per_million(input_per_million)?.micro_usd,
            output_per_million: Rate::per_million(output_per_million)?.micro_usd,
            per_request: Rate::per_unit(per_request)?.micro_usd,
        })
    }

    fn validate(&self, model: &str) -> Result<(), LedgerError> {
        Self::new(self.input_per_million, self.output_per_million, self.per_request)
            .map(|_| ())
            .map_err(|e| match e {
                LedgerError::InvalidPrice { reason, .. } => LedgerError::InvalidPrice {
                    what: format!("model `{model}`"),
                    reason,
                },
                e => e,
            })
    }

    /// The rate this model charges for a kind, if it prices that kind.
    pub fn rate(&self, kind: &ResourceKind) -> Option<Rate> {
        let (micro_usd, per) = match kind {
            ResourceKind::InputTokens => (self.input_per_million, 1_000_000),
            ResourceKind::OutputTokens => (self.output_per_million, 1_000_000),
            ResourceKind::LlmRequests => (self.per_request, 1),
            _ => return None,
        };
        Some(Rate { micro_usd, per })
    }
}

/// Every cost model: a rate per kind, and rates per model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceTable {
    kinds: BTreeMap<ResourceKind, Rate>,
    models: BTreeMap<String, ModelRates>,
}

impl PriceTable {
    /// An empty table: every kind but money is unpriced.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the rate of a kind (used when no model rate applies).
    pub fn set_kind(&mut self, kind: ResourceKind, rate: Rate) -> Result<(), LedgerError> {
        if kind == ResourceKind::Cost {
            return Err(LedgerError::InvalidPrice {
                what: kind.to_string(),
                reason: "money is not priced: its amount is its cost".into(),
            });
        }
        if let ResourceKind::Custom(name) = &kind
            && name.trim().is_empty()
        {
            return Err(LedgerError::InvalidPrice {
                what: "custom kind".into(),
                reason: "the kind's name is empty".into(),
            });
        }
        self.kinds.insert(kind, rate);
        Ok(())
    }

    /// Sets a model's rates.
    pub fn set_model(&mut self, model: impl Into<String>, rates: ModelRates) -> Result<(), LedgerError> {
        let model = model.into();
        if model.trim().is_empty() {
            return Err(LedgerError::InvalidPrice {
                what: "model".into(),
                reason: "the model's name is empty".into(),
            });
        }
        rates.validate(&model)?;
        self.models.insert(model, rates);
        Ok(())
    }

    /// The rates of a model, if priced.
    pub fn model(&self, model: &str) -> Option<&ModelRates> {
        self.models.get(model)
    }

    /// The rate of a kind, if priced.
    pub fn kind(&self, kind: &ResourceKind) -> Option<&Rate> {
        self.kinds.get(kind)
    }

    /// The cost of `amount` of `kind` used by `model`: the model's rate if
    /// it prices the kind, else the kind's rate, else [`LedgerError::NoPrice`].
    pub fn cost(&self, kind: &ResourceKind, amount: u64, model: Option<&str>) -> Result<u64, LedgerError> {
        if *kind == ResourceKind::Cost {
            return Ok(amount);
        }
        let model_rate = model.and_then(|m| self.models.get(m)).and_then(|r| r.rate(kind));
        let rate = model_rate
            .or_else(|| self.kinds.get(kind).copied())
            .ok_or_else(|| LedgerError::NoPrice {
                kind: kind.clone(),
                model: model.map(str::to_string),
            })?;
        rate.cost(amount)
    }

    /// The cost of a whole resource vector. If it carries money
    /// ([`ResourceKind::Cost`]) that amount is the cost and the other kinds
    /// are not priced again; otherwise every kind is priced and summed.
    pub fn cost_of_vector(&self, model: Option<&str>, v: &ResourceVector) -> Result<u64, LedgerError> {
        let money = v.get(&ResourceKind::Cost);
        if money > 0 {
            return Ok(money);
        }
        v.iter().try_fold(0u64, |sum, (kind, amount)| {
            sum.checked_add(self.cost(kind, amount, model)?)
                .ok_or(LedgerError::Overflow)
        })
    }
}
