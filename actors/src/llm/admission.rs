//! The queue of requests waiting for rate-limit capacity.
//!
//! Waiters queue by priority (high, normal, low; first come first served
//! within one) and give up at their deadline. When capacity may have freed
//! (a settle, a refund, a new waiter, a timer), the gateway *scans* the
//! queue from the highest priority down and admits every waiter that fits
//! now. Once a waiter of a model group does not fit, later waiters of the
//! same group are skipped in that scan, so a large request is not starved
//! by smaller ones behind it and priorities hold within a group; waiters of
//! other groups (other limits) still go ahead.
//!
//! The queue is bounded: when it holds `capacity` waiters, a new one is
//! refused at once rather than growing a backlog.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use nexus_swarm_runtime::priority::Priority;

/// One waiting request.
#[derive(Debug)]
pub struct Waiter<T> {
    /// The model group whose limits it waits for.
    pub group: usize,
    /// When it gives up (time since the gateway's epoch).
    pub deadline: Duration,
    /// The caller's payload (how to hand it its admission).
    pub payload: T,
}

/// What an admission attempt says about one waiter.
#[derive(Debug, PartialEq, Eq)]
pub enum Attempt<G, E> {
    /// Admitted now, with this grant.
    Admitted(G),
    /// Not before this time.
    NotBefore(Duration),
    /// Never (the waiter is answered with this error and removed).
    Refused(E),
}

/// What one scan did.
#[derive(Debug)]
pub struct Scan<T, G, E> {
    /// Waiters admitted, with their grants.
    pub admitted: Vec<(Waiter<T>, G)>,
    /// Waiters refused, with their errors.
    pub refused: Vec<(Waiter<T>, E)>,
    /// Waiters removed because their deadline passed or they left.
    pub expired: Vec<Waiter<T>>,
    /// When to scan again at the latest (the earliest admission time or
    /// deadline among those left), if anyone is left.
    pub next: Option<Duration>,
}

/// A bounded priority queue of waiters.
///
/// Each priority lane keeps one FIFO per group, so a scan only looks at the
/// head of each group (the rest of a blocked group is skipped without a
/// look): a scan costs O(groups), not O(waiters). Waiters whose deadline
/// passes behind a head are swept out at most once per [`SWEEP_EVERY`].
#[derive(Debug)]
pub struct WaitQueue<T> {
    lanes: [Vec<(usize, VecDeque<Waiter<T>>)>; 3],
    len: usize,
    capacity: usize,
    last_sweep: Duration,
}

/// How often waiters behind the heads are checked for expiry.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

fn lane(p: Priority) -> usize {
    match p {
        Priority::High => 0,
        Priority::Normal => 1,
        Priority::Low => 2,
    }
}

impl<T> WaitQueue<T> {
    /// A queue of `capacity` waiters at most (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            lanes: Default::default(),
            len: 0,
            capacity: capacity.max(1),
            last_sweep: Duration::ZERO,
        }
    }

    /// Waiters queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nobody waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether anyone of priority `p` or higher waits.
    pub fn has_waiters_at_or_above(&self, p: Priority) -> bool {
        self.lanes[..=lane(p)]
            .iter()
            .any(|l| l.iter().any(|(_, q)| !q.is_empty()))
    }

    /// Queues a waiter, or gives it back if the queue is full.
    pub fn push(&mut self, priority: Priority, waiter: Waiter<T>) -> Result<(), Waiter<T>> {
        if self.len >= self.capacity {
            return Err(waiter);
        }
        let lane = &mut self.lanes[lane(priority)];
        match lane.iter_mut().find(|(g, _)| *g == waiter.group) {
            Some((_, q)) => q.push_back(waiter),
            None => lane.push((waiter.group, VecDeque::from([waiter]))),
        }
        self.len += 1;
        Ok(())
    }

    /// Admits what fits at `now`. `gone` says whether a waiter has left
    /// (its caller stopped waiting); `attempt` tries to admit one.
    pub fn scan<G, E>(
        &mut self,
        now: Duration,
        mut gone: impl FnMut(&Waiter<T>) -> bool,
        mut attempt: impl FnMut(&Waiter<T>) -> Attempt<G, E>,
    ) -> Scan<T, G, E> {
        let mut out = Scan {
            admitted: Vec::new(),
            refused: Vec::new(),
            expired: Vec::new(),
            next: None,
        };
        if now >= self.last_sweep.saturating_add(SWEEP_EVERY) {
            self.last_sweep = now;
            for lane in &mut self.lanes {
                for (_, q) in lane.iter_mut() {
                    let mut i = 0;
                    while i < q.len() {
                        if q[i].deadline <= now || gone(&q[i]) {
                            out.expired.extend(q.remove(i));
                        } else {
                            i += 1;
                        }
                    }
                }
            }
        }
        let mut blocked: HashSet<usize> = HashSet::new();
        for lane in &mut self.lanes {
            for (group, q) in lane.iter_mut() {
                if blocked.contains(group) {
                    continue;
                }
                while let Some(w) = q.front() {
                    if w.deadline <= now || gone(w) {
                        out.expired.extend(q.pop_front());
                        continue;
                    }
                    match attempt(w) {
                        Attempt::Admitted(g) => out.admitted.extend(q.pop_front().map(|w| (w, g))),
                        Attempt::Refused(e) => out.refused.extend(q.pop_front().map(|w| (w, e))),
                        Attempt::NotBefore(t) => {
                            blocked.insert(*group);
                            let t = t.min(w.deadline);
                            out.next = Some(out.next.map_or(t, |n: Duration| n.min(t)));
                            break;
                        }
                    }
                }
            }
            lane.retain(|(_, q)| !q.is_empty());
        }
        self.len -= out.admitted.len() + out.refused.len() + out.expired.len();
        out
    }
}

#[cfg(test)]
mod tests;
