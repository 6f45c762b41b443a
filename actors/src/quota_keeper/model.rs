//! The quota keeper's vocabulary: ids, specs, selectors, reports, errors.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use nexus_swarm_runtime::config::QuotaConfig;
use nexus_swarm_runtime::resources::ResourceKind;
use nexus_swarm_runtime::scope::Scope;
use serde::{Deserialize, Serialize};

pub use nexus_swarm_runtime::config::{MAX_QUOTA_AMOUNT, MAX_QUOTA_DEPTH, MIN_QUOTA_PERIOD};

/// The name of a quota, unique within a keeper. Cheap to clone.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub struct QuotaId(Arc<str>);

impl QuotaId {
    /// A quota id from any string.
    pub fn new(id: impl AsRef<str>) -> Self {
        Self(Arc::from(id.as_ref()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for QuotaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for QuotaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Deref for QuotaId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for QuotaId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for QuotaId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for QuotaId {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<QuotaId> for String {
    fn from(id: QuotaId) -> Self {
        id.0.to_string()
    }
}

impl From<String> for QuotaId {
    fn from(s: String) -> Self {
        Self(Arc::from(s))
    }
}

/// The definition of one quota.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaSpec {
    /// Its id.
    pub id: QuotaId,
    /// Its parent: every charge to this quota is charged to the parent too,
    /// up to the root.
    pub parent: Option<QuotaId>,
    /// What it counts; a child counts its parent's kind.
    pub kind: ResourceKind,
    /// The limit (1 to [`MAX_QUOTA_AMOUNT`]).
    pub limit: u64,
    /// Usage resets to zero after each period (at least [`MIN_QUOTA_PERIOD`]),
    /// counted from the definition.
    pub period: Option<Duration>,
    /// How far above `limit` this quota may go by borrowing its parent's
    /// idle capacity. A root has no parent and so no ceiling.
    pub borrow_ceiling: u64,
    /// Which requests' usage it applies to through the [`SpendGate`]; `None`
    /// means only charges by id.
    ///
    /// [`SpendGate`]: nexus_swarm_runtime::usage::SpendGate
    pub selector: Option<Scope>,
}

impl QuotaSpec {
    /// A root quota of `kind` with `limit`, no period, no selector.
    pub fn root(id: impl Into<QuotaId>, kind: ResourceKind, limit: u64) -> Self {
        Self {
            id: id.into(),
            parent: None,
            kind,
            limit,
            period: None,
            borrow_ceiling: 0,
            selector: None,
        }
    }

    /// A child quota of `parent` with `limit` (the kind must be the parent's).
    pub fn child(id: impl Into<QuotaId>, parent: impl Into<QuotaId>, kind: ResourceKind, limit: u64) -> Self {
        Self {
            parent: Some(parent.into()),
            ..Self::root(id, kind, limit)
        }
    }

    /// Builder-style: usage resets after every `period`.
    pub fn period(mut self, period: Duration) -> Self {
        self.period = Some(period);
        self
    }

    /// Builder-style: may borrow up to `ceiling` above its limit.
    pub fn borrow_ceiling(mut self, ceiling: u64) -> Self {
        self.borrow_ceiling = ceiling;
        self
    }

    /// Builder-style: applies to the requests `selector` matches.
    pub fn selector(mut self, selector: Scope) -> Self {
        self.selector = Some(selector);
        self
    }
}

impl From<QuotaConfig> for QuotaSpec {
    fn from(c: QuotaConfig) -> Self {
        Self {
            id: QuotaId::from(c.id),
            parent: c.parent.map(QuotaId::from),
            kind: c.kind.parse().unwrap_or_else(|never| match never {}),
            limit: c.limit,
            period: c.period,
            borrow_ceiling: c.borrow_ceiling,
            selector: c.selector,
        }
    }
}

/// Usage of one quota at the moment it was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaReport {
    /// The quota.
    pub id: QuotaId,
    /// Its parent.
    pub parent: Option<QuotaId>,
    /// What it counts.
    pub kind: ResourceKind,
    /// Its current limit.
    pub limit: u64,
    /// How far above the limit it may borrow.
    pub borrow_ceiling: u64,
    /// Its period, if usage resets.
    pub period: Option<Duration>,
    /// Usage in the current period (all of it when there is no period).
    pub current: u64,
    /// The part of `current` above `limit`: borrowed from the parent.
    pub borrowed: u64,
    /// The highest usage seen since the quota was defined.
    pub peak: u64,
    /// `current` per thousand of `limit` (may exceed 1000 while borrowing).
    pub utilization_permille: u64,
    /// Whether this quota is recalling what its children borrowed (a child
    /// within its own limit was refused for want of capacity).
    pub recalling: bool,
    /// Time left in the current period.
    pub resets_in: Option<Duration>,
}

/// A quota's report with its children's, recursively.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaTreeReport {
    /// This quota.
    pub quota: QuotaReport,
    /// Its children, by id.
    pub children: Vec<QuotaTreeReport>,
}

impl QuotaTreeReport {
    /// This node and every descendant, depth first.
    pub fn iter(&self) -> impl Iterator<Item = &QuotaReport> + '_ {
        let mut stack = vec![self];
        std::iter::from_fn(move || {
            let node = stack.pop()?;
            stack.extend(node.children.iter().rev());
            Some(&node.quota)
        })
    }
}

/// A quota operation was refused or its input was invalid. Invalid input
/// changes no state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuotaError {
    /// No quota has this id.
    #[error("unknown quota {0}")]
    UnknownQuota(QuotaId),
    /// A quota names a parent that does not exist.
    #[error("quota {quota} names unknown parent {parent}")]
    UnknownParent {
        /// The quota being defined.
        quota: QuotaId,
        /// The missing parent.
        parent: QuotaId,
    },
    /// The id is already defined (or given twice in one batch).
    #[error("quota {0} is already defined")]
    AlreadyDefined(QuotaId),
    /// An id is empty.
    #[error("a quota id must not be empty")]
    EmptyId,
    /// Parents form a cycle (the path goes back to its first id).
    #[error("quota parents form a cycle: {}", fmt_path(.0))]
    Cycle(Vec<QuotaId>),
    /// The tree would be deeper than [`MAX_QUOTA_DEPTH`].
    #[error("quota {quota} would be at depth {depth}, deeper than {max}")]
    TooDeep {
        /// The quota.
        quota: QuotaId,
        /// Its depth (a root is at 1).
        depth: usize,
        /// The maximum.
        max: usize,
    },
    /// A child counts another kind than its parent.
    #[error("quota {quota} counts {kind} but its parent {parent} counts {parent_kind}")]
    KindMismatch {
        /// The child.
        quota: QuotaId,
        /// Its kind.
        kind: ResourceKind,
        /// The parent.
        parent: QuotaId,
        /// The parent's kind.
        parent_kind: ResourceKind,
    },
    /// A root was given a borrow ceiling; it has no parent to borrow from.
    #[error("quota {0} is a root and cannot borrow")]
    RootCannotBorrow(QuotaId),
    /// A period shorter than [`MIN_QUOTA_PERIOD`].
    #[error("quota {quota} period {period:?} is shorter than {min:?}")]
    PeriodTooShort {
        /// The quota.
        quota: QuotaId,
        /// The period given.
        period: Duration,
        /// The minimum.
        min: Duration,
    },
    /// An amount or limit of zero.
    #[error("zero amount for quota {0}")]
    ZeroAmount(QuotaId),
    /// An amount or limit above [`MAX_QUOTA_AMOUNT`].
    #[error("amount {amount} for quota {quota} is above the maximum {max}")]
    AmountTooLarge {
        /// The quota.
        quota: QuotaId,
        /// The amount given.
        amount: u64,
        /// The maximum.
        max: u64,
    },
    /// A [`QuotaCharge`](super::QuotaCharge) was given to a handle on
    /// another quota tree than the one that made it. Nothing changed: the
    /// receipt is consumed and its charge stays where it was made.
    #[error("a charge of {amount} to quota tree #{charged_on} cannot be released or settled on quota tree #{given_to}")]
    ForeignCharge {
        /// The amount the receipt stands for.
        amount: u64,
        /// The tree that made the charge.
        charged_on: u64,
        /// The tree of the handle it was given to.
        given_to: u64,
    },
    /// The charge would take this level above its limit plus what it may
    /// borrow (or its parent has no idle capacity to lend).
    #[error(
        "quota {quota} exhausted for {kind}: limit {limit} (+{borrow_ceiling} borrowable), used {used}, requested {requested}"
    )]
    Exhausted {
        /// The level that refused.
        quota: QuotaId,
        /// What it counts.
        kind: ResourceKind,
        /// Its limit.
        limit: u64,
        /// How far above the limit it may borrow.
        borrow_ceiling: u64,
        /// Its usage when it refused.
        used: u64,
        /// The amount asked.
        requested: u64,
    },
    /// The amount is more than this level can ever hold at its current
    /// limit: above its limit plus its borrow ceiling. Refused before
    /// anything is charged; no level, peak or recall changes.
    #[error(
        "{requested} is more than quota {quota} can ever hold for {kind}: limit {limit} (+{borrow_ceiling} borrowable)"
    )]
    AboveCapacity {
        /// The level that can never hold it.
        quota: QuotaId,
        /// What it counts.
        kind: ResourceKind,
        /// Its limit.
        limit: u64,
        /// How far above the limit it may borrow.
        borrow_ceiling: u64,
        /// The amount asked.
        requested: u64,
    },
    /// The charge would borrow from a parent that is recalling its loans
    /// because another child needs its own share back.
    #[error("quota {quota} may not borrow: {lender} is reclaiming lent capacity")]
    BorrowRecalled {
        /// The would-be borrower.
        quota: QuotaId,
        /// The parent recalling.
        lender: QuotaId,
    },
    /// The `[quotas]` configuration is invalid (a quota keeper's sweep
    /// interval of zero, or longer than the shortest period allows).
    #[error("invalid quota config at `{field}`: {message}")]
    InvalidConfig {
        /// Dotted path of the offending field, e.g. `quotas.sweep_interval`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The quota keeper actor is not running.
    #[error("quota keeper unavailable")]
    Unavailable,
    /// The store quota usage is kept in could not be opened, read or
    /// written (damage is [`QuotaStoreError::Corrupt`](super::QuotaStoreError::Corrupt)).
    #[error(transparent)]
    Store(#[from] super::store::QuotaStoreError),
}

fn fmt_path(path: &[QuotaId]) -> String {
    path.iter().map(QuotaId::as_str).collect::<Vec<_>>().join(" -> ")
}
