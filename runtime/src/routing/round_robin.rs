//! [`RoundRobin`]: each member in turn.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{RoutingKey, RoutingStrategy};

/// Each member in turn: over any `k * n` consecutive picks (from one
/// thread, or from many: the cursor is one atomic counter), each of the `n`
/// members is picked exactly `k` times.
#[derive(Debug)]
pub struct RoundRobin {
    members: usize,
    /// Shared by every handle reading this snapshot; an atomic add is the
    /// whole cost of a pick. Relaxed: only the counter's own sequence
    /// matters, it orders no other memory.
    cursor: AtomicUsize,
}

impl RoundRobin {
    /// Round-robin over `members` members (indices `0..members`).
    pub fn new(members: usize) -> Self {
        Self {
            members,
            cursor: AtomicUsize::new(0),
        }
    }
}

impl RoutingStrategy for RoundRobin {
    #[inline]
    fn pick(&self, _key: Option<&RoutingKey>) -> Option<usize> {
        if self.members == 0 {
            return None;
        }
        Some(self.cursor.fetch_add(1, Ordering::Relaxed) % self.members)
    }

    fn len(&self) -> usize {
        self.members
    }
}
