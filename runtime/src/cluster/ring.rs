//! [`ClusterRing`]: which node owns a routing key.

use crate::routing::{HashRing, RoutingError, RoutingKey};

/// The bound of consistent hashing with bounded loads (Mirrokni,
/// Thorup and Zadimoghaddam): over a batch of `m` keys and `n` members, no
/// member takes more than `ceil(m * (100 + epsilon_percent) / (100 * n))`
/// keys. A key whose owner is full goes to the next member along the ring
/// with room, so a key still moves only when membership (or the batch)
/// changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadBound {
    /// How far above the average a member may go, in percent (25 means
    /// 1.25 x the average).
    pub epsilon_percent: u32,
}

impl LoadBound {
    /// Most keys one member may take of `keys` spread over `members`
    /// (at least 1 when there is a key).
    pub fn capacity(self, keys: usize, members: usize) -> usize {
        if members == 0 || keys == 0 {
            return 0;
        }
        let num = keys as u128 * (100 + u128::from(self.epsilon_percent));
        let den = 100 * members as u128;
        num.div_ceil(den).max(1) as usize
    }
}

/// The cluster's consistent-hash ring over node names.
///
/// Members are kept sorted and the ring's points depend only on the names,
/// so every node that sees the same membership maps every key to the same
/// owner, whatever order it learnt of the members in. Removing a member
/// moves only the keys it owned; adding one moves only keys onto it.
#[derive(Debug)]
pub struct ClusterRing {
    members: Vec<String>,
    ring: HashRing,
}

impl ClusterRing {
    /// A ring over these node names (duplicates are merged), with
    /// `virtual_nodes` points per member.
    pub fn new<I, S>(members: I, virtual_nodes: u32) -> Result<Self, RoutingError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut members: Vec<String> = members.into_iter().map(Into::into).collect();
        members.sort();
        members.dedup();
        let ring = HashRing::new(&members, virtual_nodes)?;
        Ok(Self { members, ring })
    }

    /// The members, sorted by name.
    pub fn members(&self) -> &[String] {
        &self.members
    }

    /// Whether `name` is a member.
    pub fn contains(&self, name: &str) -> bool {
        self.members.binary_search_by(|m| m.as_str().cmp(name)).is_ok()
    }

    /// The node owning `key`, or `None` when the ring is empty.
    pub fn owner(&self, key: RoutingKey) -> Option<&str> {
        self.ring.lookup(&key).map(|i| self.members[i].as_str())
    }

    /// Owners of a batch of keys, in the order given. With a bound, keys
    /// are placed in the order of their hashes (so every node computes the
    /// same placement for the same batch), each on the first member along
    /// the ring from its hash that is below [`LoadBound::capacity`];
    /// without one, each key goes to its [`owner`](Self::owner).
    pub fn assign(&self, keys: &[RoutingKey], bound: Option<LoadBound>) -> Vec<Option<&str>> {
        let Some(bound) = bound else {
            return keys.iter().map(|&k| self.owner(k)).collect();
        };
        if self.members.is_empty() {
            return vec![None; keys.len()];
        }
        let capacity = bound.capacity(keys.len(), self.members.len());
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_by_key(|&i| (keys[i].hash(), i));
        let mut loads = vec![0usize; self.members.len()];
        let mut owners = vec![None; keys.len()];
        for i in order {
            // capacity x members >= keys, so some member has room.
            let member = self.ring.successors(keys[i].hash()).find(|&m| loads[m] < capacity);
            if let Some(m) = member {
                loads[m] += 1;
                owners[i] = Some(self.members[m].as_str());
            }
        }
        owners
    }
}
