//! [`Dedup`]: the message ids a node has taken, so that a retried message
//! is handled once and acknowledged only once handled.

use std::collections::{HashMap, VecDeque};

/// What a node knows of a `(sender, message id)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Never seen (or forgotten): handle it.
    New,
    /// Being handled: neither handle nor acknowledge it again now (the
    /// ack goes out when the handling ends).
    InFlight,
    /// Handled: acknowledge it again, do not handle it.
    Done,
}

/// Remembers the last `capacity` `(sender, message id)` pairs taken.
///
/// Delivery across nodes is at-least-once: a sender that heard no ack
/// sends again (to the same owner, or to the key's new owner). The owner
/// handles only the first copy it sees while that pair is among the last
/// `capacity`, acknowledges once it is handled, and acknowledges later
/// copies at once. A handling that failed is forgotten, so the next copy
/// is handled anew.
#[derive(Debug, Clone)]
pub struct Dedup {
    capacity: usize,
    order: VecDeque<(String, u64)>,
    state: HashMap<(String, u64), bool>,
}

impl Dedup {
    /// Remembers up to `capacity` pairs (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            order: VecDeque::with_capacity(capacity.min(1 << 16)),
            state: HashMap::with_capacity(capacity.min(1 << 16)),
        }
    }

    /// Takes `(sender, id)`: `New` the first time (it is now in flight),
    /// else what became of it.
    pub fn begin(&mut self, sender: &str, id: u64) -> Seen {
        let pair = (sender.to_string(), id);
        match self.state.get(&pair) {
            Some(true) => return Seen::Done,
            Some(false) => return Seen::InFlight,
            None => {}
        }
        while self.order.len() >= self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.state.remove(&old);
            }
        }
        self.order.push_back(pair.clone());
        self.state.insert(pair, false);
        Seen::New
    }

    /// The handling of `(sender, id)` ended: remembered as done if it was
    /// `handled`, forgotten if not.
    pub fn finish(&mut self, sender: &str, id: u64, handled: bool) {
        let pair = (sender.to_string(), id);
        if handled {
            if let Some(done) = self.state.get_mut(&pair) {
                *done = true;
            }
        } else if self.state.remove(&pair).is_some() {
            // Failures are rare: a scan keeps `order` and `state` in step.
            self.order.retain(|p| p != &pair);
        }
    }

    /// Pairs remembered now.
    pub fn len(&self) -> usize {
        self.state.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.state.is_empty()
    }
}
