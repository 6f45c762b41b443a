//! [`WarmPool`]: agents started ahead of need, so that claiming one costs
//! no spawn (the seeds' warm pool of 5), with agents started on demand
//! when none is ready, at most a few at once (their cold pool of 15).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use nexus_swarm_runtime::agent::Agent;
use nexus_swarm_runtime::agent_ref::AgentRef;
use parking_lot::Mutex;
use tokio::sync::Semaphore;

use crate::swarm::{Swarm, SwarmError};

/// What a [`WarmPool`] has done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WarmPoolStats {
    /// Agents started and not yet claimed.
    pub ready: usize,
    /// Claims answered with an agent already running.
    pub warm_claims: u64,
    /// Claims that had to start an agent.
    pub cold_claims: u64,
}

/// Agents of one kind kept started ahead of need (see the module docs).
/// Each is spawned through a [`Swarm`], named `{prefix}-{n}`, so its
/// profile is admitted like any other agent's; a claimed agent belongs to
/// the claimer, who stops it when done.
pub struct WarmPool<A: Agent + Clone> {
    swarm: Swarm,
    prefix: String,
    agent: A,
    warm: usize,
    ready: Mutex<VecDeque<AgentRef<A::Msg>>>,
    cold: Semaphore,
    next: AtomicU64,
    warm_claims: AtomicU64,
    cold_claims: AtomicU64,
}

impl<A: Agent + Clone> std::fmt::Debug for WarmPool<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarmPool")
            .field("prefix", &self.prefix)
            .field("stats", &self.stats())
            .finish()
    }
}

impl<A: Agent + Clone> WarmPool<A> {
    /// The seeds' warm pool: agents kept started.
    pub const SEED_WARM: usize = 5;
    /// The seeds' cold pool: agents started on demand at once, at most.
    pub const SEED_COLD: usize = 15;

    /// Starts `warm` agents now and keeps that many ready; claims finding
    /// none ready start one, at most `cold` at once (at least 1).
    pub async fn start(
        swarm: &Swarm,
        prefix: &str,
        agent: A,
        warm: usize,
        cold: usize,
    ) -> Result<Arc<Self>, SwarmError> {
        let pool = Arc::new(Self {
            swarm: swarm.clone(),
            prefix: prefix.to_string(),
            agent,
            warm,
            ready: Mutex::new(VecDeque::with_capacity(warm)),
            cold: Semaphore::new(cold.max(1)),
            next: AtomicU64::new(0),
            warm_claims: AtomicU64::new(0),
            cold_claims: AtomicU64::new(0),
        });
        for _ in 0..warm {
            let agent = pool.spawn_one().await?;
            pool.ready.lock().push_back(agent);
        }
        Ok(pool)
    }

    async fn spawn_one(&self) -> Result<AgentRef<A::Msg>, SwarmError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.swarm
            .spawn_agent(&format!("{}-{n}", self.prefix), self.agent.clone())
            .await
    }

    /// An agent: a ready one at once (a replacement is started in the
    /// background), else one started now.
    pub async fn claim(self: &Arc<Self>) -> Result<AgentRef<A::Msg>, SwarmError> {
        let ready = self.ready.lock().pop_front();
        if let Some(agent) = ready {
            self.warm_claims.fetch_add(1, Ordering::Relaxed);
            let pool = Arc::clone(self);
            tokio::spawn(async move {
                match pool.spawn_one().await {
                    Ok(agent) => pool.ready.lock().push_back(agent),
                    Err(e) => tracing::warn!(pool = %pool.prefix, error = %e, "warm pool could not refill"),
                }
            });
            return Ok(agent);
        }
        // The semaphore is never closed, so acquiring only waits.
        let _permit = self.cold.acquire().await.ok();
        let agent = self.spawn_one().await?;
        self.cold_claims.fetch_add(1, Ordering::Relaxed);
        Ok(agent)
    }

    /// Agents it keeps ready.
    pub fn warm(&self) -> usize {
        self.warm
    }

    /// What it has done.
    pub fn stats(&self) -> WarmPoolStats {
        WarmPoolStats {
            ready: self.ready.lock().len(),
            warm_claims: self.warm_claims.load(Ordering::Relaxed),
            cold_claims: self.cold_claims.load(Ordering::Relaxed),
        }
    }
}
