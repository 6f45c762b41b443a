//! Routing strategies: how a router picks one of its members for a message.
//!
//! Every strategy is a plain synchronous type, built by the router's actor
//! (the control plane) over the members that may take traffic, published in
//! a snapshot, and then read concurrently by every handle (the data plane).
//! A pick never takes a lock and never allocates; the only shared writes are
//! a cursor's `fetch_add`.
//!
//! | strategy | type | pick cost | what it guarantees |
//! |---|---|---|---|
//! | round-robin | [`RoundRobin`] | one atomic add | over `k * n` picks, each member exactly `k` times |
//! | least-connections | [`LeastConnections`] | a scan of the members' loads | never a member with more load than another |
//! | weighted | [`SmoothWeighted`] | one atomic add and an index | the nginx smooth weighted sequence: exact proportions over each cycle, no bursts |
//! | consistent hashing | [`HashRing`] | a table read and a search of ~1 point | a key keeps its member while membership is unchanged; a change moves only the keys it must |
//!
//! Strategies return an *index* into the member list they were built over;
//! the router keeps the list beside the strategy in its snapshot.
//!
//! [`RoutingKey`] is the 64-bit xxh3 hash of a key's bytes (a conversation
//! id, a tenant): computed once by the caller, stable across processes,
//! nodes and releases, so every node maps a key to the same member.

pub mod hash_ring;
pub mod least_connections;
pub mod round_robin;
pub mod weighted;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use hash_ring::HashRing;
pub use least_connections::LeastConnections;
pub use round_robin::RoundRobin;
pub use weighted::SmoothWeighted;

use crate::config::RoutingStrategyKind;

/// Most points a [`HashRing`] may hold (members x virtual nodes).
pub const MAX_RING_POINTS: usize = 1 << 26;

/// Most work allowed to build a [`SmoothWeighted`] schedule: the cycle
/// length (sum of the weights divided by their gcd) times the number of
/// members. Past it the weights are refused as [`RoutingError::WeightCycleTooLong`].
pub const MAX_WEIGHT_SCHEDULE_WORK: u64 = 1 << 26;

/// The key a message is routed by (conversation id, tenant, user...): the
/// xxh3 64-bit hash of its bytes, computed once.
///
/// ```
/// use nexus_swarm_runtime::routing::RoutingKey;
///
/// let a = RoutingKey::new("conversation-42");
/// assert_eq!(a, RoutingKey::from("conversation-42"));
/// assert_ne!(a, RoutingKey::new("conversation-43"));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoutingKey(u64);

impl RoutingKey {
    /// The key of some bytes (a string, an id's bytes).
    #[inline]
    pub fn new(bytes: impl AsRef<[u8]>) -> Self {
        Self(xxhash_rust::xxh3::xxh3_64(bytes.as_ref()))
    }

    /// The key of a numeric id (hash of its little-endian bytes).
    #[inline]
    pub fn from_id(id: u64) -> Self {
        Self(xxhash_rust::xxh3::xxh3_64(&id.to_le_bytes()))
    }

    /// A key whose hash the caller already computed with xxh3 64.
    #[inline]
    pub const fn from_hash(hash: u64) -> Self {
        Self(hash)
    }

    /// The 64-bit hash the ring is searched with.
    #[inline]
    pub const fn hash(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for RoutingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoutingKey({:#018x})", self.0)
    }
}

impl From<&str> for RoutingKey {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<&String> for RoutingKey {
    fn from(s: &String) -> Self {
        Self::new(s)
    }
}

impl From<String> for RoutingKey {
    fn from(s: String) -> Self {
        Self::new(s)
    }
}

/// A way of picking one member for a message.
///
/// Implementations are plain synchronous types shared by many threads:
/// `pick` takes `&self` and must not block.
pub trait RoutingStrategy {
    /// The index (into the member list the strategy was built over) of the
    /// member to send one message to, or `None` when there is no member.
    /// `key` matters to consistent hashing only; the others ignore it.
    fn pick(&self, key: Option<&RoutingKey>) -> Option<usize>;

    /// How many members the strategy picks among.
    fn len(&self) -> usize;

    /// Whether there is no member to pick.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A member's current load, read by [`LeastConnections`] at every pick.
pub trait Load {
    /// Messages in flight to this member, in whatever sense the owner
    /// defines (the router: requests awaiting a reply plus queued messages).
    fn load(&self) -> u64;
}

impl Load for AtomicU64 {
    #[inline]
    fn load(&self) -> u64 {
        AtomicU64::load(self, Ordering::Relaxed)
    }
}

impl<L: Load + ?Sized> Load for Arc<L> {
    #[inline]
    fn load(&self) -> u64 {
        (**self).load()
    }
}

impl<L: Load + ?Sized> Load for &L {
    #[inline]
    fn load(&self) -> u64 {
        (**self).load()
    }
}

/// A strategy's inputs could not make a strategy. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoutingError {
    /// A weight of zero (a member that should get no traffic is removed or
    /// left unhealthy instead).
    #[error("weight of member {member} must be at least 1, got 0")]
    ZeroWeight {
        /// The member's index.
        member: usize,
    },
    /// The weights' cycle is too long to precompute.
    #[error(
        "weights give a cycle of {cycle} picks over {members} members, above the limit of {max} (cycle x members); use smaller weights"
    )]
    WeightCycleTooLong {
        /// The cycle length (sum of weights / their gcd).
        cycle: u64,
        /// Members.
        members: usize,
        /// [`MAX_WEIGHT_SCHEDULE_WORK`].
        max: u64,
    },
    /// A ring needs at least one virtual node per member.
    #[error("virtual nodes per member must be at least 1")]
    ZeroVirtualNodes,
    /// Members x virtual nodes is above [`MAX_RING_POINTS`].
    #[error("ring of {members} members x {virtual_nodes} virtual nodes is above the limit of {max} points")]
    RingTooLarge {
        /// Members.
        members: usize,
        /// Virtual nodes per member.
        virtual_nodes: u32,
        /// [`MAX_RING_POINTS`].
        max: usize,
    },
    /// Two ring members have the same name, so they would share every point.
    #[error("two members are named {0:?}: ring members need distinct names")]
    DuplicateName(String),
}

/// One member as a [`Strategy`] is built over it.
#[derive(Debug, Clone)]
pub struct StrategyMember<'a, L> {
    /// A stable name: consistent hashing places the member's virtual nodes
    /// by it, so the same name lands on the same points everywhere.
    pub name: &'a str,
    /// Its weight (weighted strategy; at least 1).
    pub weight: u32,
    /// Its load (least-connections).
    pub load: L,
}

/// Any of the built-in strategies, as the router publishes it.
#[derive(Debug)]
#[non_exhaustive]
pub enum Strategy<L> {
    /// Each member in turn.
    RoundRobin(RoundRobin),
    /// The least loaded member.
    LeastConnections(LeastConnections<L>),
    /// Smooth weighted round-robin.
    Weighted(SmoothWeighted),
    /// Consistent hashing of the routing key (round-robin without a key).
    ConsistentHash(HashRing),
}

impl<L: Load> Strategy<L> {
    /// Builds the strategy `kind` over `members`, in their order (picks are
    /// indices into it). `virtual_nodes` is used by consistent hashing only.
    pub fn build(
        kind: RoutingStrategyKind,
        members: Vec<StrategyMember<'_, L>>,
        virtual_nodes: u32,
    ) -> Result<Self, RoutingError> {
        Ok(match kind {
            RoutingStrategyKind::RoundRobin => Strategy::RoundRobin(RoundRobin::new(members.len())),
            RoutingStrategyKind::LeastConnections => {
                Strategy::LeastConnections(LeastConnections::new(members.into_iter().map(|m| m.load).collect()))
            }
            RoutingStrategyKind::Weighted => {
                let weights: Vec<u32> = members.iter().map(|m| m.weight).collect();
                Strategy::Weighted(SmoothWeighted::new(&weights)?)
            }
            RoutingStrategyKind::ConsistentHash => {
                let names: Vec<&str> = members.iter().map(|m| m.name).collect();
                Strategy::ConsistentHash(HashRing::new(&names, virtual_nodes)?)
            }
        })
    }

    /// Whether [`build`](Self::build) accepts `members`, without building:
    /// the same errors, cheaply. A router checks every member, healthy or
    /// not, so that re-admitting one can never fail to build.
    pub fn check(
        kind: RoutingStrategyKind,
        members: &[StrategyMember<'_, L>],
        virtual_nodes: u32,
    ) -> Result<(), RoutingError> {
        match kind {
            RoutingStrategyKind::RoundRobin | RoutingStrategyKind::LeastConnections => Ok(()),
            RoutingStrategyKind::Weighted => {
                let weights: Vec<u32> = members.iter().map(|m| m.weight).collect();
                SmoothWeighted::check(&weights)
            }
            RoutingStrategyKind::ConsistentHash => {
                let names: Vec<&str> = members.iter().map(|m| m.name).collect();
                HashRing::check(&names, virtual_nodes)
            }
        }
    }

    /// Which kind of strategy this is.
    pub fn kind(&self) -> RoutingStrategyKind {
        match self {
            Strategy::RoundRobin(_) => RoutingStrategyKind::RoundRobin,
            Strategy::LeastConnections(_) => RoutingStrategyKind::LeastConnections,
            Strategy::Weighted(_) => RoutingStrategyKind::Weighted,
            Strategy::ConsistentHash(_) => RoutingStrategyKind::ConsistentHash,
        }
    }
}

impl<L: Load> RoutingStrategy for Strategy<L> {
    #[inline]
    fn pick(&self, key: Option<&RoutingKey>) -> Option<usize> {
        match self {
            Strategy::RoundRobin(s) => s.pick(key),
            Strategy::LeastConnections(s) => s.pick(key),
            Strategy::Weighted(s) => s.pick(key),
            Strategy::ConsistentHash(s) => s.pick(key),
        }
    }

    fn len(&self) -> usize {
        match self {
            Strategy::RoundRobin(s) => s.len(),
            Strategy::LeastConnections(s) => s.len(),
            Strategy::Weighted(s) => s.len(),
            Strategy::ConsistentHash(s) => s.len(),
        }
    }
}

#[cfg(test)]
mod tests;
