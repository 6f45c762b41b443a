//! The scheduler's vocabulary: ids, requests, pools, decisions, events, errors.

use std::fmt;
use std::sync::Arc;

use nexus_swarm_runtime::config::PoolConfig;
use nexus_swarm_runtime::priority::Priority;
use nexus_swarm_runtime::resources::{QosClass, ResourceKind, ResourceVector};
use tokio::time::Instant;

macro_rules! name_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Arc<str>);

        impl $name {
            /// From any string.
            pub fn new(name: impl AsRef<str>) -> Self {
                Self(Arc::from(name.as_ref()))
            }

            /// As text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self::new(s)
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(Arc::from(s))
            }
        }
    };
}

name_id!(
    /// A resource pool's name.
    PoolId
);
name_id!(
    /// Who holds an allocation (an agent, a workflow step): only it may
    /// release or cancel it.
    RequesterId
);
name_id!(
    /// The tenant an allocation counts against for fair share.
    TenantId
);

/// A request's id, chosen by the requester, unique among the requests the
/// scheduler holds (allocated or waiting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// How a pool may grow when a request does not fit: per kind, up to `max`,
/// in whole `step`s (a kind without a step grows by exactly what is
/// missing). Grown capacity that falls idle is given back on release, down
/// to the pool's registered capacity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScalingPolicy {
    /// The most the pool may hold, per kind (absent kinds do not grow).
    pub max: ResourceVector,
    /// The growth step per kind.
    pub step: ResourceVector,
}

/// A pool to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSpec {
    /// Its name.
    pub id: PoolId,
    /// What it holds.
    pub capacity: ResourceVector,
    /// How it may grow.
    pub scaling: Option<ScalingPolicy>,
}

impl PoolSpec {
    /// A fixed pool.
    pub fn new(id: impl Into<PoolId>, capacity: ResourceVector) -> Self {
        Self {
            id: id.into(),
            capacity,
            scaling: None,
        }
    }

    /// Builder-style: the pool may grow.
    pub fn scaling(mut self, policy: ScalingPolicy) -> Self {
        self.scaling = Some(policy);
        self
    }
}

fn vector(map: &std::collections::BTreeMap<String, u64>) -> ResourceVector {
    map.iter()
        .map(|(k, v)| (k.parse::<ResourceKind>().unwrap_or_else(|never| match never {}), *v))
        .collect()
}

impl From<&PoolConfig> for PoolSpec {
    fn from(c: &PoolConfig) -> Self {
        let scaling = (!c.max.is_empty()).then(|| ScalingPolicy {
            max: vector(&c.max),
            step: vector(&c.step),
        });
        Self {
            id: PoolId::new(&c.name),
            capacity: vector(&c.capacity),
            scaling,
        }
    }
}

/// A request for resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRequest {
    /// Its id.
    pub id: RequestId,
    /// Who asks (and alone may release).
    pub requester: RequesterId,
    /// Whose fair share it counts against. Default: the requester's name.
    pub tenant: TenantId,
    /// The pool, or any pool (the strategy picks).
    pub pool: Option<PoolId>,
    /// What it needs.
    pub resources: ResourceVector,
    /// Burstable only: what it would use at most. Granted whole when it
    /// fits at once, and the part above `resources` is reclaimable.
    pub limits: Option<ResourceVector>,
    /// Its priority.
    pub priority: Priority,
    /// How long it may wait; `None` means it is rejected if it cannot be
    /// allocated at once.
    pub deadline: Option<Instant>,
    /// Its QoS class: guaranteed is never preempted, best-effort first.
    pub qos: QosClass,
}

impl ResourceRequest {
    /// A normal-priority best-effort request that cannot wait, in any pool.
    pub fn new(id: u64, requester: impl Into<RequesterId>, resources: ResourceVector) -> Self {
        let requester = requester.into();
        Self {
            id: RequestId(id),
            tenant: TenantId::new(requester.as_str()),
            requester,
            pool: None,
            resources,
            limits: None,
            priority: Priority::Normal,
            deadline: None,
            qos: QosClass::BestEffort,
        }
    }

    /// Builder-style: counts against `tenant`.
    pub fn tenant(mut self, tenant: impl Into<TenantId>) -> Self {
        self.tenant = tenant.into();
        self
    }

    /// Builder-style: only in `pool`.
    pub fn pool(mut self, pool: impl Into<PoolId>) -> Self {
        self.pool = Some(pool.into());
        self
    }

    /// Builder-style: the priority.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Builder-style: may wait until `deadline`.
    pub fn deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Builder-style: the QoS class.
    pub fn qos(mut self, qos: QosClass) -> Self {
        self.qos = qos;
        self
    }

    /// Builder-style: burstable up to `limits`.
    pub fn burstable(mut self, limits: ResourceVector) -> Self {
        self.qos = QosClass::Burstable;
        self.limits = Some(limits);
        self
    }
}

/// Resources granted to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The request.
    pub id: RequestId,
    /// The pool they come from.
    pub pool: PoolId,
    /// What was granted (a burstable request's limits when they fit).
    pub resources: ResourceVector,
    /// Allocations preempted to make room, if any.
    pub preempted: Vec<RequestId>,
}

/// Why a request was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectReason {
    /// It does not fit now and has no deadline to wait for.
    Insufficient,
    /// Reservations ordered before it wait for the same pool, and it has no
    /// deadline to wait behind them.
    WaitingAhead {
        /// How many wait ahead of it.
        ahead: usize,
    },
    /// No candidate pool can ever hold it, even grown to its maximum.
    NeverFits,
    /// Its deadline had passed when it arrived.
    DeadlinePassed,
    /// The reservation queue is full.
    QueueFull {
        /// The queue's bound.
        max: usize,
    },
}

/// The answer to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allocated now.
    Allocated(Grant),
    /// Waiting until its deadline; the outcome comes as a
    /// [`SchedulerEvent`] (`Allocated` or `Expired`).
    Reserved {
        /// The request.
        id: RequestId,
    },
    /// Not allocated and not waiting.
    Rejected {
        /// The request.
        id: RequestId,
        /// Why.
        reason: RejectReason,
    },
}

/// An allocation lost resources to a more important request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preempted {
    /// The allocation.
    pub id: RequestId,
    /// Its pool.
    pub pool: PoolId,
    /// What was taken back.
    pub reclaimed: ResourceVector,
    /// What it still holds (a burstable allocation keeps its request;
    /// empty when the allocation is gone).
    pub remaining: ResourceVector,
    /// The request it was preempted for.
    pub by: RequestId,
}

/// What a requester learns after its request was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SchedulerEvent {
    /// A reservation was served.
    Allocated(Grant),
    /// A reservation's deadline passed before it could be served.
    Expired {
        /// The request.
        id: RequestId,
    },
    /// An allocation was preempted (in whole or its burst).
    Preempted(Preempted),
}

/// An event and whom it is for (the payload the request came with).
#[derive(Debug, Clone)]
pub struct Notice<T> {
    /// The requester's payload (in the actor, its notifier).
    pub to: T,
    /// The event.
    pub event: SchedulerEvent,
}

/// A pool's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolReport {
    /// The pool.
    pub id: PoolId,
    /// Capacity at registration (the floor of scaling down).
    pub base: ResourceVector,
    /// Capacity now.
    pub capacity: ResourceVector,
    /// Allocated now.
    pub allocated: ResourceVector,
    /// `capacity - allocated`.
    pub available: ResourceVector,
    /// The most it may grow to, if it scales.
    pub max: Option<ResourceVector>,
}

/// An allocation's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationReport {
    /// The request.
    pub id: RequestId,
    /// Who holds it.
    pub requester: RequesterId,
    /// Its tenant.
    pub tenant: TenantId,
    /// Its pool.
    pub pool: PoolId,
    /// What it holds.
    pub granted: ResourceVector,
    /// Its priority.
    pub priority: Priority,
    /// Its QoS class.
    pub qos: QosClass,
}

/// Why a pool spec is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidPool {
    /// The id is empty.
    EmptyId,
    /// The capacity holds nothing.
    EmptyCapacity,
    /// A scaling maximum is below the capacity.
    MaxBelowCapacity {
        /// The kind.
        kind: ResourceKind,
    },
}

/// A scheduler operation's input was invalid; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchedulerError {
    /// No pool has this id.
    #[error("unknown pool {0}")]
    UnknownPool(PoolId),
    /// A pool with this id exists.
    #[error("pool {0} already exists")]
    PoolExists(PoolId),
    /// The pool spec is invalid.
    #[error("invalid pool {pool}: {reason:?}")]
    InvalidPool {
        /// The pool.
        pool: PoolId,
        /// Why.
        reason: InvalidPool,
    },
    /// A request for nothing.
    #[error("request {0} asks for no resources")]
    EmptyRequest(RequestId),
    /// The id is held or waiting already.
    #[error("request {0} is already held or waiting")]
    DuplicateRequest(RequestId),
    /// Limits given that are not a burstable's (limits below the request,
    /// or limits on a guaranteed or best-effort request).
    #[error("request {0} has limits that do not cover its request or a QoS class other than burstable")]
    InvalidLimits(RequestId),
    /// No allocation has this id.
    #[error("request {0} holds no allocation")]
    NotHeld(RequestId),
    /// No reservation with this id is waiting.
    #[error("request {0} is not waiting")]
    NotWaiting(RequestId),
    /// A partial release of more than the allocation holds.
    #[error("request {id} holds {held:?}, cannot give back {part:?}")]
    ReleaseExceedsHeld {
        /// The allocation.
        id: RequestId,
        /// What it holds.
        held: ResourceVector,
        /// What was to be given back.
        part: ResourceVector,
    },
    /// The allocation or reservation is another requester's.
    #[error("request {id} is held by {holder}, not {requester}")]
    WrongRequester {
        /// The request.
        id: RequestId,
        /// Who holds it.
        holder: RequesterId,
        /// Who asked.
        requester: RequesterId,
    },
    /// Capacities summed over pools would overflow `u64`.
    #[error("total capacity of {kind} would overflow u64")]
    Overflow {
        /// The kind.
        kind: ResourceKind,
    },
    /// The `[scheduler]` configuration is invalid (see
    /// `SchedulerConfig::validate`).
    #[error("invalid scheduler config at `{field}`: {message}")]
    InvalidConfig {
        /// Dotted path of the offending field, e.g. `scheduler.aging_interval`.
        field: String,
        /// The configuration error, in full.
        message: String,
    },
    /// The scheduler actor is not running.
    #[error("scheduler unavailable")]
    Unavailable,
}
