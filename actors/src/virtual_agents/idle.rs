//! [`IdleList`]: the idle activations, least recently used first. The
//! host's every passivation decision is read from it: those idle past the
//! timeout, and the one to make room with when `max_resident` is reached.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio::time::Instant;

/// Idle activations ordered by when they became idle (ties by arrival).
/// A busy activation is not in the list; one that gets a message leaves
/// it.
#[derive(Debug, Default)]
pub(crate) struct IdleList {
    order: BTreeMap<(Instant, u64), Arc<str>>,
    at: HashMap<Arc<str>, (Instant, u64)>,
    seq: u64,
}

impl IdleList {
    /// `key` became idle at `now` (moving it to the back if it was idle).
    pub(crate) fn idle(&mut self, key: Arc<str>, now: Instant) {
        self.busy(&key);
        self.seq += 1;
        let stamp = (now, self.seq);
        self.order.insert(stamp, Arc::clone(&key));
        self.at.insert(key, stamp);
    }

    /// `key` got work (or is going away): no longer idle.
    pub(crate) fn busy(&mut self, key: &str) {
        if let Some(stamp) = self.at.remove(key) {
            self.order.remove(&stamp);
        }
    }

    /// Takes the least recently used idle key.
    pub(crate) fn pop_oldest(&mut self) -> Option<Arc<str>> {
        let (_, key) = self.order.pop_first()?;
        self.at.remove(&key);
        Some(key)
    }

    /// Takes every key idle since `cutoff` or earlier, oldest first.
    pub(crate) fn pop_expired(&mut self, cutoff: Instant) -> Vec<Arc<str>> {
        let mut expired = Vec::new();
        while let Some(entry) = self.order.first_entry() {
            if entry.key().0 > cutoff {
                break;
            }
            let key = entry.remove();
            self.at.remove(&key);
            expired.push(key);
        }
        expired
    }

    /// Idle keys.
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }
}
