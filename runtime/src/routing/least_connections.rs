//! [`LeastConnections`]: the member with the least load.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Load, RoutingKey, RoutingStrategy};

/// The member whose [`Load`] is the smallest at the time of the pick.
///
/// Every pick reads every member's load (a scan, stopped early at a load of
/// zero), starting from a rotating position so that ties are broken
/// round-robin rather than always towards the first member. The loads are
/// read without a lock, so two concurrent picks may both see the same
/// member as least loaded; a pick never returns a member whose load, as it
/// read it, is above another member's.
#[derive(Debug)]
pub struct LeastConnections<L> {
    members: Vec<L>,
    /// Where the next scan starts (tie-breaking). Relaxed: it orders nothing.
    cursor: AtomicUsize,
}

impl<L: Load> LeastConnections<L> {
    /// Least-connections over these members' loads.
    pub fn new(members: Vec<L>) -> Self {
        Self {
            members,
            cursor: AtomicUsize::new(0),
        }
    }

    /// The members' loads, in member order.
    pub fn loads(&self) -> Vec<u64> {
        self.members.iter().map(Load::load).collect()
    }
}

impl<L: Load> RoutingStrategy for LeastConnections<L> {
    #[inline]
    fn pick(&self, _key: Option<&RoutingKey>) -> Option<usize> {
        let n = self.members.len();
        if n == 0 {
            return None;
        }
        let start = self.cursor.fetch_add(1, Ordering::Relaxed) % n;
        let mut best = start;
        let mut best_load = self.members[start].load();
        for step in 1..n {
            if best_load == 0 {
                break;
            }
            let i = (start + step) % n;
            let load = self.members[i].load();
            if load < best_load {
                best = i;
                best_load = load;
            }
        }
        Some(best)
    }

    fn len(&self) -> usize {
        self.members.len()
    }
}
