//! [`ClusterLimitGate`]: a cluster-wide limit as a [`SpendGate`], so the
//! LLM gateway of every node charges its calls to one budget
//! (`[[cluster.limits]]` with `charges`, wired by `nexus node`).
//!
//! A reservation takes the estimate's amount of the gate's resource kind
//! from this node's lease at once when the lease holds it, and otherwise
//! waits, up to the request's deadline, for the limit's owner to grant a
//! lease (a network round trip once per `chunk` units, not per call). A
//! settle for less puts the difference back into the lease; a settle for
//! more spends the rest (asking for a lease if needed; refused once the
//! limit is reached, when the overshoot is the estimate's error). A
//! release puts the whole hold back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use futures::future::BoxFuture;
use nexus_swarm_runtime::resources::{ResourceKind, ResourceVector};
use nexus_swarm_runtime::usage::{SpendGate, SpendHold, SpendRefused, UsageMeta};
use tokio::time::Instant;

use super::{ClusterHandle, LimitError};

/// A cluster-wide limit charged with one resource kind of every spend it
/// gates. Cheap to clone; made before the cluster member starts and bound
/// to it once it has ([`bind`](Self::bind)); until then it refuses.
#[derive(Debug, Clone)]
pub struct ClusterLimitGate {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    limit: String,
    kind: ResourceKind,
    cluster: OnceLock<ClusterHandle>,
    next_hold: AtomicU64,
}

impl ClusterLimitGate {
    /// A gate charging `kind` to the cluster limit `limit`.
    pub fn new(limit: &str, kind: ResourceKind) -> Self {
        Self {
            inner: Arc::new(Inner {
                limit: limit.to_string(),
                kind,
                cluster: OnceLock::new(),
                next_hold: AtomicU64::new(1),
            }),
        }
    }

    /// Binds the gate to this node's cluster member; false if it was bound.
    pub fn bind(&self, cluster: ClusterHandle) -> bool {
        self.inner.cluster.set(cluster).is_ok()
    }

    /// The limit's name.
    pub fn limit(&self) -> &str {
        &self.inner.limit
    }

    fn hold(&self, estimate: &ResourceVector) -> SpendHold {
        SpendHold::new(self.inner.next_hold.fetch_add(1, Ordering::Relaxed), estimate.clone())
    }

    fn refusal(&self, requested: u64, e: LimitError) -> SpendRefused {
        let quota = format!("cluster/{}", self.inner.limit);
        match e {
            LimitError::Exhausted {
                limit,
                committed,
                outstanding,
            } if self.inner.kind == ResourceKind::Cost => SpendRefused::BudgetExceeded {
                budget: quota,
                limit,
                spent: committed,
                reserved: outstanding,
                requested,
            },
            LimitError::Exhausted {
                limit,
                committed,
                outstanding,
            } => SpendRefused::QuotaExceeded {
                quota,
                kind: self.inner.kind.clone(),
                limit,
                used: committed.saturating_add(outstanding),
                requested,
            },
            other => SpendRefused::Unavailable(format!("{quota}: {other}")),
        }
    }

    fn cluster(&self) -> Result<&ClusterHandle, SpendRefused> {
        self.inner.cluster.get().ok_or_else(|| {
            SpendRefused::Unavailable(format!(
                "cluster/{}: the cluster member is not started",
                self.inner.limit
            ))
        })
    }
}

impl SpendGate for ClusterLimitGate {
    fn reserve(&self, _meta: &UsageMeta, estimate: &ResourceVector) -> Result<SpendHold, SpendRefused> {
        let amount = estimate.get(&self.inner.kind);
        if amount > 0 && !self.cluster()?.try_spend_leased(&self.inner.limit, amount) {
            return Err(SpendRefused::Unavailable(format!(
                "cluster/{}: this node's lease does not hold {amount} units now",
                self.inner.limit
            )));
        }
        Ok(self.hold(estimate))
    }

    /// Waits, up to `deadline`, for a lease from the limit's owner when
    /// this node's lease does not hold the amount.
    fn reserve_until<'a>(
        &'a self,
        _meta: &'a UsageMeta,
        estimate: &'a ResourceVector,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<SpendHold, SpendRefused>> {
        Box::pin(async move {
            let amount = estimate.get(&self.inner.kind);
            if amount == 0 {
                return Ok(self.hold(estimate));
            }
            let cluster = self.cluster()?;
            match tokio::time::timeout_at(deadline, cluster.spend(&self.inner.limit, amount)).await {
                Ok(Ok(())) => Ok(self.hold(estimate)),
                Ok(Err(e)) => Err(self.refusal(amount, e)),
                Err(_) => Err(SpendRefused::Unavailable(format!(
                    "cluster/{}: no lease before the request's deadline",
                    self.inner.limit
                ))),
            }
        })
    }

    fn settle(&self, hold: SpendHold, actual: &ResourceVector) {
        let reserved = hold.estimate().get(&self.inner.kind);
        let spent = actual.get(&self.inner.kind);
        let Some(cluster) = self.inner.cluster.get() else {
            return;
        };
        if spent < reserved {
            cluster.refund(&self.inner.limit, reserved - spent);
        } else if spent > reserved {
            let extra = spent - reserved;
            if !cluster.try_spend_leased(&self.inner.limit, extra) {
                let cluster = cluster.clone();
                let limit = self.inner.limit.clone();
                tokio::spawn(async move {
                    if let Err(e) = cluster.spend(&limit, extra).await {
                        tracing::warn!(limit = %limit, extra, error = %e, "spend above its estimate not charged to the cluster limit");
                    }
                });
            }
        }
    }

    fn release(&self, hold: SpendHold) {
        let reserved = hold.estimate().get(&self.inner.kind);
        if let (Some(cluster), true) = (self.inner.cluster.get(), reserved > 0) {
            cluster.refund(&self.inner.limit, reserved);
        }
    }
}
