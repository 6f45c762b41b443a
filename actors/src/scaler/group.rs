//! [`ScaledGroup`]: what the scaler needs of a group of workers, whatever
//! their message type; [`SwarmPool`] is the one for a pool spawned through
//! a [`Swarm`].

use futures::future::BoxFuture;
use nexus_swarm_runtime::error::PoolError;
use nexus_swarm_runtime::pool::PoolRef;
use nexus_swarm_runtime::resources::QosClass;

use super::meter::Observation;
use crate::swarm::{Swarm, SwarmError, WeakSwarm};

/// A group of workers the scaler can observe and resize. Implemented by
/// [`SwarmPool`]; implement it to scale something else (its `resize`
/// decides what admission means there).
pub trait ScaledGroup: Send + Sync + 'static {
    /// The group's name, unique among a scaler's groups.
    fn name(&self) -> &str;

    /// Its counters now. Called from the scaler's actor: it must not block.
    fn observe(&self) -> Observation;

    /// Resizes to `workers`; answers the size reached. A growth the
    /// group's resources cannot admit is [`SwarmError::NotAdmitted`], and
    /// a group that is gone is [`SwarmError::Unknown`] (the scaler then
    /// forgets it).
    fn resize(&self, workers: u32) -> BoxFuture<'static, Result<u32, SwarmError>>;

    /// Whether its work is best-effort: such groups go to their minimum
    /// first, and stay there, while the scaler sheds best-effort work
    /// ([`ScalerHandle::shed_best_effort`](crate::scaler::ScalerHandle::shed_best_effort)).
    /// Default: `false`.
    fn best_effort(&self) -> bool {
        false
    }
}

/// A pool spawned through a [`Swarm`], resized with
/// [`Swarm::resize_pool`]: a scale-out asks the scheduler for the new
/// workers' requests first (all or nothing), so it never takes more than
/// the node's capacity, and a scale-in drains retired workers and gives
/// their requests back. CPU use is measured against the pool's CPU limit,
/// else its requests; a pool reports no memory use.
///
/// It holds the swarm weakly: the scaler it is registered with belongs to
/// that swarm.
pub struct SwarmPool<M> {
    swarm: WeakSwarm,
    pool: PoolRef<M>,
}

impl<M> std::fmt::Debug for SwarmPool<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwarmPool").field("pool", &self.pool).finish()
    }
}

impl<M: Send + 'static> SwarmPool<M> {
    /// `pool` of `swarm`.
    pub fn new(swarm: &Swarm, pool: PoolRef<M>) -> Self {
        Self {
            swarm: swarm.downgrade(),
            pool,
        }
    }
}

impl<M: Send + 'static> ScaledGroup for SwarmPool<M> {
    fn name(&self) -> &str {
        self.pool.name()
    }

    fn observe(&self) -> Observation {
        let usage = self.swarm.upgrade().and_then(|s| s.usage(self.pool.name()));
        let capacity = usage.map(|u| {
            if u.cpu_limit_millicores > 0 {
                u.cpu_limit_millicores
            } else {
                u.cpu_request_millicores
            }
        });
        Observation {
            workers: u32::try_from(self.pool.size()).unwrap_or(u32::MAX),
            queued: self.pool.depths().iter().map(|&d| d as u64).sum(),
            handled: self.pool.handled(),
            busy: usage.map(|u| u.busy),
            cpu_capacity_millicores: capacity,
            memory_permille: None,
        }
    }

    /// A pool whose profile is best-effort.
    fn best_effort(&self) -> bool {
        let usage = self.swarm.upgrade().and_then(|s| s.usage(self.pool.name()));
        usage.is_some_and(|u| u.qos == QosClass::BestEffort)
    }

    fn resize(&self, workers: u32) -> BoxFuture<'static, Result<u32, SwarmError>> {
        let swarm = self.swarm.upgrade();
        let pool = self.pool.clone();
        Box::pin(async move {
            let swarm = swarm.ok_or_else(|| SwarmError::Unknown(pool.name().to_string()))?;
            let size = usize::try_from(workers).unwrap_or(usize::MAX);
            match swarm.resize_pool(&pool, size).await {
                Ok(n) => Ok(u32::try_from(n).unwrap_or(u32::MAX)),
                // The pool stopped: as gone as a name the swarm forgot.
                Err(SwarmError::Pool(PoolError::Gone)) => Err(SwarmError::Unknown(pool.name().to_string())),
                Err(e) => Err(e),
            }
        })
    }
}
