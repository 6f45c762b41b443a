//! What the router's actor publishes and its handles read: the members,
//! their counters, and the strategy built over the healthy ones.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use nexus_swarm_runtime::agent_ref::AgentRef;
use nexus_swarm_runtime::config::RoutingStrategyKind;
use nexus_swarm_runtime::routing::{Load, RoutingError, RoutingKey, RoutingStrategy, Strategy, StrategyMember};

use super::MemberId;

/// Per-member counters, updated by every handle. Atomics because handles on
/// any thread update them without coordination; aligned to a cache line so
/// that members' counters do not share one.
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct MemberStats {
    /// Asks sent to the member whose reply has not arrived (nor timed out).
    pub(crate) asks_in_flight: AtomicU64,
    /// Messages admitted to the member's lanes through the router, and
    /// asks it answered.
    pub(crate) sent: AtomicU64,
    /// Sends refused by the member's lanes (full, timed out, closed) and
    /// asks that failed after being routed to it.
    pub(crate) failures: AtomicU64,
    /// Times the member was ejected by health checks.
    pub(crate) ejections: AtomicU64,
}

/// One member, shared by every snapshot it appears in (so its counters
/// survive rebuilds).
#[derive(Debug)]
pub(crate) struct Member<M> {
    pub(crate) id: MemberId,
    pub(crate) name: Arc<str>,
    pub(crate) agent: AgentRef<M>,
    pub(crate) stats: MemberStats,
}

impl<M: Send + 'static> Member<M> {
    pub(crate) fn new(id: MemberId, name: Arc<str>, agent: AgentRef<M>) -> Self {
        Self {
            id,
            name,
            agent,
            stats: MemberStats::default(),
        }
    }

    /// Messages waiting in the member's lanes (from any sender).
    pub(crate) fn queued(&self) -> u64 {
        self.agent.depths().iter().map(|&d| d as u64).sum()
    }
}

/// The load least-connections compares: asks awaiting their reply plus
/// messages queued in the member's lanes. A queued ask counts in both (it
/// holds a lane slot and a reply is pending); once the agent takes it, it
/// counts once until answered.
impl<M: Send + 'static> Load for Member<M> {
    #[inline]
    fn load(&self) -> u64 {
        self.stats.asks_in_flight.load(Ordering::Relaxed) + self.queued()
    }
}

/// A member with its control-plane attributes.
#[derive(Debug)]
pub(crate) struct Entry<M> {
    pub(crate) member: Arc<Member<M>>,
    pub(crate) weight: u32,
    pub(crate) healthy: bool,
}

impl<M> Clone for Entry<M> {
    fn clone(&self) -> Self {
        Self {
            member: Arc::clone(&self.member),
            weight: self.weight,
            healthy: self.healthy,
        }
    }
}

/// An immutable view of the router: replaced whole by the actor, read
/// lock-free by handles.
#[derive(Debug)]
pub(crate) struct Snapshot<M> {
    /// Every member, by id (healthy or not).
    pub(crate) entries: Vec<Entry<M>>,
    /// The healthy members, by id: the strategy's indices point here.
    pub(crate) eligible: Vec<Arc<Member<M>>>,
    pub(crate) strategy: Strategy<Arc<Member<M>>>,
    /// The id the next member added will get. Published with the members so
    /// that a restarted router never gives a removed member's id again.
    pub(crate) next_id: u64,
}

impl<M: Send + 'static> Snapshot<M> {
    /// Builds the snapshot over `entries` (sorted by id by the caller), the
    /// strategy over the healthy ones. Refused if the strategy would not
    /// build over every entry, healthy or not: otherwise a member's
    /// re-admission could fail (weights whose cycle is too long, a ring too
    /// large).
    pub(crate) fn build(
        kind: RoutingStrategyKind,
        virtual_nodes: u32,
        entries: Vec<Entry<M>>,
        next_id: u64,
    ) -> Result<Self, RoutingError> {
        let all: Vec<StrategyMember<'_, Arc<Member<M>>>> = entries
            .iter()
            .map(|e| StrategyMember {
                name: &e.member.name,
                weight: e.weight,
                load: Arc::clone(&e.member),
            })
            .collect();
        Strategy::check(kind, &all, virtual_nodes)?;
        drop(all);
        let healthy: Vec<&Entry<M>> = entries.iter().filter(|e| e.healthy).collect();
        let eligible: Vec<Arc<Member<M>>> = healthy.iter().map(|e| Arc::clone(&e.member)).collect();
        let members = healthy
            .iter()
            .map(|e| StrategyMember {
                name: &e.member.name,
                weight: e.weight,
                load: Arc::clone(&e.member),
            })
            .collect();
        let strategy = Strategy::build(kind, members, virtual_nodes)?;
        Ok(Self {
            entries,
            eligible,
            strategy,
            next_id,
        })
    }

    /// The member for one message.
    #[inline]
    pub(crate) fn pick(&self, key: Option<&RoutingKey>) -> Option<&Arc<Member<M>>> {
        let i = self.strategy.pick(key)?;
        self.eligible.get(i)
    }
}
