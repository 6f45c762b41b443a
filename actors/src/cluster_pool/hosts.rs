//! [`PoolRing`]: which node owns a key of a cluster pool. A plain
//! synchronous decision: the ring over the members of the cluster's ring
//! that host the pool.

use std::sync::Arc;

use nexus_swarm_runtime::cluster::{ClusterRing, LoadBound};
use nexus_swarm_runtime::routing::{RoutingError, RoutingKey};
use parking_lot::Mutex;

/// The ring of a pool: the cluster's ring restricted to the nodes hosting
/// it.
///
/// Ring points depend only on node names, so for a key whose owner on the
/// whole ring hosts the pool, the owner here is the same node; a key whose
/// owner does not host it goes to the next host along the ring. Every node
/// that sees the same members and hosts picks the same owner.
#[derive(Debug)]
pub struct PoolRing {
    /// Sorted, as the ring keeps them; empty when no member hosts the pool.
    hosts: Vec<String>,
    ring: Option<ClusterRing>,
}

impl PoolRing {
    /// The ring over those of `members` for which `hosts` answers `true`,
    /// with `virtual_nodes` points per host.
    pub fn new(members: &[String], hosts: impl Fn(&str) -> bool, virtual_nodes: u32) -> Result<Self, RoutingError> {
        let hosts: Vec<String> = members.iter().filter(|m| hosts(m)).cloned().collect();
        Self::over(hosts, virtual_nodes)
    }

    fn over(hosts: Vec<String>, virtual_nodes: u32) -> Result<Self, RoutingError> {
        if hosts.is_empty() {
            return Ok(Self { hosts, ring: None });
        }
        let ring = ClusterRing::new(hosts, virtual_nodes)?;
        Ok(Self {
            hosts: ring.members().to_vec(),
            ring: Some(ring),
        })
    }

    /// The nodes hosting the pool, sorted.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// The host owning `key`, or `None` when no node hosts the pool.
    pub fn owner(&self, key: RoutingKey) -> Option<&str> {
        self.ring.as_ref().and_then(|r| r.owner(key))
    }

    /// Owners of a batch of keys, with bounded loads over the hosts when
    /// `bound` is set (see [`ClusterRing::assign`]).
    pub fn assign(&self, keys: &[RoutingKey], bound: Option<LoadBound>) -> Vec<Option<&str>> {
        match &self.ring {
            Some(ring) => ring.assign(keys, bound),
            None => vec![None; keys.len()],
        }
    }
}

/// The last [`PoolRing`] built, rebuilt only when the hosts change.
#[derive(Debug, Default)]
pub(crate) struct PoolRingCache {
    /// Read and replaced by senders; a mutex held while comparing the
    /// hosts and, when they changed, building the new ring (synchronous,
    /// so concurrent senders build it once).
    last: Mutex<Option<Arc<PoolRing>>>,
}

impl PoolRingCache {
    /// The ring over `members` hosting the pool (by `hosts`), reusing the
    /// last one when the hosts are the same.
    pub(crate) fn get(
        &self,
        members: &[String],
        hosts: impl Fn(&str) -> bool,
        virtual_nodes: u32,
    ) -> Result<Arc<PoolRing>, RoutingError> {
        let mut now: Vec<String> = members.iter().filter(|m| hosts(m)).cloned().collect();
        now.sort();
        let mut last = self.last.lock();
        if let Some(ring) = last.as_ref().filter(|r| r.hosts == now) {
            return Ok(Arc::clone(ring));
        }
        let ring = Arc::new(PoolRing::over(now, virtual_nodes)?);
        *last = Some(Arc::clone(&ring));
        Ok(ring)
    }
}
