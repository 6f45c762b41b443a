//! The queue of requests waiting for rate-limit capacity.
//!
//! Waiters queue by priority (high, normal, low; first come first served
//! within one, across every group) and give up at their deadline. When
//! capacity may have freed (a settle, a refund, a new waiter, a timer), the
//! gateway *scans* the queue in that order (priority, then arrival) and
//! admits every waiter that fits now. Once a waiter of a model group does
//! not fit, later waiters of the same group are skipped in that scan, so a
//! large request is not starved by smaller ones behind it and priorities
//! hold within a group. Waiters of other groups are still tried, in order;
//! whether they may take capacity that a waiter skipped before them is
//! waiting for (a limit two groups share) is the attempt's decision: the
//! [`dispatch`](super::dispatch) module makes it, so that priority holds
//! across everything that shares a limit.
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
/// heads of the groups (the rest of a blocked group is skipped without a
/// look), taking the oldest head each time: a scan costs
/// O(groups x (admitted + 1)), not O(waiters). Waiters whose deadline
/// passes behind a head are swept out at most once per [`SWEEP_EVERY`].
#[derive(Debug)]
pub struct WaitQueue<T> {
    lanes: [Vec<(usize, VecDeque<Queued<T>>)>; 3],
    len: usize,
    next_seq: u64,
    capacity: usize,
    last_sweep: Duration,
}

#[derive(Debug)]
struct Queued<T> {
    // Arrival order, across groups.
    seq: u64,
    waiter: Waiter<T>,
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
            next_seq: 0,
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
        let group = waiter.group;
        let queued = Queued {
            seq: self.next_seq,
            waiter,
        };
        self.next_seq += 1;
        let lane = &mut self.lanes[lane(priority)];
        match lane.iter_mut().find(|(g, _)| *g == group) {
            Some((_, q)) => q.push_back(queued),
            None => lane.push((group, VecDeque::from([queued]))),
        }
        self.len += 1;
        Ok(())
    }

    /// Admits what fits at `now`, trying waiters in order (priority, then
    /// arrival). `gone` says whether a waiter has left (its caller stopped
    /// waiting); `attempt` tries to admit one.
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
                        if q[i].waiter.deadline <= now || gone(&q[i].waiter) {
                            out.expired.extend(q.remove(i).map(|e| e.waiter));
                        } else {
                            i += 1;
                        }
                    }
                }
            }
        }
        let mut blocked: HashSet<usize> = HashSet::new();
        for lane in &mut self.lanes {
            // The oldest head among the groups not blocked, until none is
            // left: arrival order across groups within a priority.
            while let Some(i) = lane
                .iter()
                .enumerate()
                .filter(|(_, (g, q))| !blocked.contains(g) && !q.is_empty())
                .min_by_key(|(_, (_, q))| q.front().map_or(u64::MAX, |e| e.seq))
                .map(|(i, _)| i)
            {
                let (group, q) = &mut lane[i];
                let Some(head) = q.front() else { continue };
                let w = &head.waiter;
                if w.deadline <= now || gone(w) {
                    out.expired.extend(q.pop_front().map(|e| e.waiter));
                    continue;
                }
                match attempt(w) {
                    Attempt::Admitted(g) => out.admitted.extend(q.pop_front().map(|e| (e.waiter, g))),
                    Attempt::Refused(e) => out.refused.extend(q.pop_front().map(|w| (w.waiter, e))),
                    Attempt::NotBefore(t) => {
                        blocked.insert(*group);
                        let t = t.min(w.deadline);
                        out.next = Some(out.next.map_or(t, |n: Duration| n.min(t)));
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
