//! [`HealthTracker`]: consecutive health-check failures per member, and the
//! ejections and re-admissions they cause.

use std::collections::HashMap;

use super::MemberId;

/// A member's health changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthChange {
    /// It failed `threshold` checks in a row (or its lanes closed): it gets
    /// no traffic until it answers again.
    Ejected,
    /// It answered a check after being ejected: it takes traffic again.
    Readmitted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Health {
    consecutive_failures: u32,
    healthy: bool,
}

/// Tracks health-check results. Plain synchronous code: the router's actor
/// feeds it results and acts on the changes it returns.
///
/// A member is ejected after `threshold` consecutive failed checks (seed
/// default: 3) and re-admitted by its first successful one.
#[derive(Debug, Clone)]
pub struct HealthTracker {
    threshold: u32,
    members: HashMap<MemberId, Health>,
}

impl HealthTracker {
    /// A tracker that ejects after `threshold` consecutive failures (at least 1).
    pub fn new(threshold: u32) -> Self {
        Self {
            threshold: threshold.max(1),
            members: HashMap::new(),
        }
    }

    /// Starts tracking a member, healthy or not.
    pub fn insert(&mut self, id: MemberId, healthy: bool) {
        let consecutive_failures = if healthy { 0 } else { self.threshold };
        self.members.insert(
            id,
            Health {
                consecutive_failures,
                healthy,
            },
        );
    }

    /// Stops tracking a member.
    pub fn remove(&mut self, id: MemberId) {
        self.members.remove(&id);
    }

    /// Whether a member is tracked.
    pub fn contains(&self, id: MemberId) -> bool {
        self.members.contains_key(&id)
    }

    /// Stops tracking every member for which `keep` is false.
    pub fn retain(&mut self, mut keep: impl FnMut(MemberId) -> bool) {
        self.members.retain(|id, _| keep(*id));
    }

    /// Whether a tracked member takes traffic (`false` for unknown ids).
    pub fn is_healthy(&self, id: MemberId) -> bool {
        self.members.get(&id).is_some_and(|h| h.healthy)
    }

    /// Consecutive failed checks of a member so far.
    pub fn failures(&self, id: MemberId) -> u32 {
        self.members.get(&id).map_or(0, |h| h.consecutive_failures)
    }

    /// Records one check's result; returns the change it causes, if any.
    /// Results for unknown members (removed while checked) are ignored.
    pub fn record(&mut self, id: MemberId, answered: bool) -> Option<HealthChange> {
        let threshold = self.threshold;
        let h = self.members.get_mut(&id)?;
        if answered {
            h.consecutive_failures = 0;
            if !h.healthy {
                h.healthy = true;
                return Some(HealthChange::Readmitted);
            }
            return None;
        }
        h.consecutive_failures = h.consecutive_failures.saturating_add(1);
        if h.healthy && h.consecutive_failures >= threshold {
            h.healthy = false;
            return Some(HealthChange::Ejected);
        }
        None
    }

    /// Ejects a member at once (its lanes were found closed).
    pub fn eject(&mut self, id: MemberId) -> Option<HealthChange> {
        let threshold = self.threshold;
        let h = self.members.get_mut(&id)?;
        h.consecutive_failures = h.consecutive_failures.max(threshold);
        if h.healthy {
            h.healthy = false;
            return Some(HealthChange::Ejected);
        }
        None
    }
}
