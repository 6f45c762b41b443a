//! The seams between spenders (the LLM gateway) and keepers of limits and
//! records (quotas, budgets, the cost ledger).
//!
//! A request that costs something first *reserves* its worst-case estimate
//! with every [`SpendGate`] in its path; a gate refuses if the estimate would
//! cross a hard limit. After the call the hold is *settled* with the actual
//! amounts (the unused part of the estimate is returned), or *released* if
//! nothing was spent. So a hard limit is overshot by at most the difference
//! between estimates and actuals of the requests in flight (none when
//! actuals never exceed estimates), never by the whole burst. The actual
//! usage is then written to a [`UsageSink`] (the ledger), which
//! acknowledges only once the records are durable.
//!
//! # Waiting for holds in flight
//!
//! Holds are worst cases, so near a limit a request may not fit only
//! because other requests' holds are still in flight, although what they
//! will really spend leaves room for it. [`SpendGate::reserve_until`] lets
//! such a request wait, up to its deadline, for those holds to settle or
//! be released; a gate refuses at once only a request that cannot fit
//! whatever the holds in flight turn out to cost. [`SpendGate::reserve`]
//! never waits: it is `reserve_until` with a deadline already passed, and
//! refuses such a request with [`SpendRefused::HoldsInFlight`].

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::resources::{ResourceKind, ResourceVector};
use crate::scope::Scope;

/// Who and what a usage belongs to: its [`Scope`] (tenant, workflow,
/// agent, model; budgets and quotas select by it, reports group by it) and
/// free labels.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UsageMeta {
    /// Who spent it.
    pub scope: Scope,
    /// Free labels.
    pub labels: BTreeMap<String, String>,
}

impl UsageMeta {
    /// Builder-style: sets the tenant.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.scope.tenant = Some(tenant.into());
        self
    }

    /// Builder-style: sets the workflow.
    pub fn workflow(mut self, workflow: impl Into<String>) -> Self {
        self.scope.workflow = Some(workflow.into());
        self
    }

    /// Builder-style: sets the agent.
    pub fn agent(mut self, agent: impl Into<String>) -> Self {
        self.scope.agent = Some(agent.into());
        self
    }

    /// Builder-style: sets the model.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.scope.model = Some(model.into());
        self
    }

    /// Builder-style: adds a label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }
}

/// A reservation made by a [`SpendGate`]: settle or release it exactly once.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a hold must be settled or released, or its reservation leaks"]
pub struct SpendHold {
    id: u64,
    estimate: ResourceVector,
}

impl SpendHold {
    /// A hold with the gate's own id for it.
    pub fn new(id: u64, estimate: ResourceVector) -> Self {
        Self { id, estimate }
    }

    /// The gate's id for this hold.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// What was reserved.
    pub fn estimate(&self) -> &ResourceVector {
        &self.estimate
    }
}

/// A gate refused a reservation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpendRefused {
    /// A hard budget would be crossed.
    #[error(
        "budget {budget} exceeded: limit {limit}, spent {spent}, reserved {reserved}, requested {requested} micro-dollars"
    )]
    BudgetExceeded {
        /// The budget's id.
        budget: String,
        /// Its limit for the current period.
        limit: u64,
        /// Committed spend in the period.
        spent: u64,
        /// Held by requests in flight.
        reserved: u64,
        /// This request's estimate.
        requested: u64,
    },
    /// The request does not fit a hard budget now only because of other
    /// requests' holds in flight (settled spend plus the request fits the
    /// limit), and they did not settle before its deadline. Transient: a
    /// later attempt may fit.
    #[error(
        "budget {budget} is held by requests in flight until past the deadline: limit {limit}, spent {spent}, reserved {reserved}, requested {requested} micro-dollars"
    )]
    HoldsInFlight {
        /// The budget's id.
        budget: String,
        /// Its limit for the current period.
        limit: u64,
        /// Committed and settled spend in the period.
        spent: u64,
        /// Held by requests in flight.
        reserved: u64,
        /// This request's estimate.
        requested: u64,
    },
    /// A quota would be crossed.
    #[error("quota {quota} exhausted for {kind}: limit {limit}, used {used}, requested {requested}")]
    QuotaExceeded {
        /// The quota's id.
        quota: String,
        /// The resource kind.
        kind: ResourceKind,
        /// Its limit.
        limit: u64,
        /// Used so far (with holds).
        used: u64,
        /// This request's amount.
        requested: u64,
    },
    /// The gate cannot decide (its owner is down); refused to stay safe.
    #[error("spend gate unavailable: {0}")]
    Unavailable(String),
}

/// Admission of spend against hard limits, by reserve-then-settle.
///
/// Implementations are data-plane handles: neither `reserve` nor
/// `reserve_until` may wait on an actor round trip; `reserve_until` may
/// wait only for other holds of the same gate to settle or be released.
pub trait SpendGate: Send + Sync + 'static {
    /// Reserves `estimate` for a request described by `meta`, or refuses.
    /// Never waits: a request that does not fit only because of holds in
    /// flight is refused ([`SpendRefused::HoldsInFlight`] for a budget).
    fn reserve(&self, meta: &UsageMeta, estimate: &ResourceVector) -> Result<SpendHold, SpendRefused>;

    /// Reserves `estimate`, waiting up to `deadline` if it does not fit
    /// only because of other requests' holds in flight; refuses at once if
    /// it cannot fit whatever they settle at. Dropping the future gives up
    /// the wait and leaves nothing reserved.
    ///
    /// The default never waits: it is [`SpendGate::reserve`].
    fn reserve_until<'a>(
        &'a self,
        meta: &'a UsageMeta,
        estimate: &'a ResourceVector,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<SpendHold, SpendRefused>> {
        let _ = deadline; // the default decides at once
        Box::pin(std::future::ready(self.reserve(meta, estimate)))
    }

    /// Replaces the hold by the `actual` amounts (which may be lower or, by
    /// a bounded error of the estimate, higher).
    fn settle(&self, hold: SpendHold, actual: &ResourceVector);

    /// Drops the hold: nothing was spent.
    fn release(&self, hold: SpendHold);
}

/// One usage to record: an amount of a resource kind, with its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// What was used.
    pub kind: ResourceKind,
    /// How much, in the kind's unit.
    pub amount: u64,
    /// Who used it.
    pub meta: UsageMeta,
}

/// The sink refused or failed to make records durable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsageSinkError {
    /// The record is malformed (unknown kind without a price, bad label...).
    #[error("invalid usage record: {0}")]
    Invalid(String),
    /// The store failed; nothing was acknowledged.
    #[error("usage store failed: {0}")]
    Store(String),
    /// The sink is not running.
    #[error("usage sink unavailable")]
    Unavailable,
}

/// Where actual usage is written (the cost ledger). The returned future
/// resolves once the records are committed, with the cost charged for each
/// in micro-dollars.
pub trait UsageSink: Send + Sync + 'static {
    /// Records usage; resolves to the cost of each record once committed.
    fn record(&self, records: Vec<UsageRecord>) -> BoxFuture<'static, Result<Vec<u64>, UsageSinkError>>;
}

/// Something whose admission rate can be scaled while a budget is over (the
/// budgets' throttle action). Routers' admission controllers implement it.
pub trait RateControl: Send + Sync + 'static {
    /// Admit at `permille`/1000 of the configured rate (1000 restores it).
    fn set_rate_factor(&self, permille: u32);
}

impl From<Scope> for UsageMeta {
    /// Usage spent in `scope`, without labels.
    fn from(scope: Scope) -> Self {
        Self {
            scope,
            labels: BTreeMap::new(),
        }
    }
}

impl Scope {
    /// Whether a usage described by `meta` is selected by this scope (see
    /// [`Scope::covers`]).
    pub fn matches(&self, meta: &UsageMeta) -> bool {
        self.covers(&meta.scope)
    }
}
