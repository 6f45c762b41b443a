//! [`Dedup`]: the message ids a node has handled, so that a retried
//! message is acknowledged again but handled once.

use std::collections::{HashSet, VecDeque};

/// Remembers the last `capacity` `(sender, message id)` pairs seen.
///
/// Delivery across nodes is at-least-once: a sender that heard no ack
/// sends again (to the same owner, or to the key's new owner). The owner
/// acknowledges every copy but handles only the first it sees while that
/// pair is among the last `capacity`.
#[derive(Debug, Clone)]
pub struct Dedup {
    capacity: usize,
    order: VecDeque<(String, u64)>,
    seen: HashSet<(String, u64)>,
}

impl Dedup {
    /// Remembers up to `capacity` pairs (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            order: VecDeque::with_capacity(capacity.min(1 << 16)),
            seen: HashSet::with_capacity(capacity.min(1 << 16)),
        }
    }

    /// `true` the first time `(sender, id)` is seen (handle it), `false`
    /// for a copy (acknowledge it only).
    pub fn first_time(&mut self, sender: &str, id: u64) -> bool {
        let pair = (sender.to_string(), id);
        if self.seen.contains(&pair) {
            return false;
        }
        if self.order.len() == self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.order.push_back(pair.clone());
        self.seen.insert(pair);
        true
    }

    /// Pairs remembered now.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}
