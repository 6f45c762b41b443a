//! One quota's counters: the atomics the data plane charges.
//!
//! A quota's usage and the period it belongs to share one `AtomicU64`: the
//! top 16 bits are the period's index (mod 2^16), the low 48 bits the usage.
//! A charge reads the word, and if its period tag is older than the
//! clock's, treats usage as zero and writes the new tag with its amount in
//! the same compare-and-swap. So a period reset is exact under concurrency:
//! no charge is lost to a reset racing with it, and none leaks into the
//! next period. The tag is compared modulo 2^16 as "newer by less than half
//! the range"; the keeper's sweep rewrites idle counters long before that
//! range could wrap.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use nexus_swarm_runtime::resources::ResourceKind;
use nexus_swarm_runtime::scope::Scope;

use super::clock::QuotaClock;
use super::model::{MAX_QUOTA_AMOUNT, QuotaId, QuotaReport};

const USED_BITS: u32 = 48;

#[inline]
const fn pack(tag: u16, used: u64) -> u64 {
    ((tag as u64) << USED_BITS) | used
}

#[inline]
const fn unpack(state: u64) -> (u16, u64) {
    ((state >> USED_BITS) as u16, state & MAX_QUOTA_AMOUNT)
}

/// Whether period tag `cur` is after `stored` (mod 2^16, by less than half).
#[inline]
const fn newer(cur: u16, stored: u16) -> bool {
    let d = cur.wrapping_sub(stored);
    d != 0 && d < 0x8000
}

/// The current time, read from the clock at most once per operation and
/// only if some level has a period.
pub(crate) struct Now<'a> {
    clock: &'a QuotaClock,
    nanos: Option<u64>,
}

impl<'a> Now<'a> {
    pub(crate) fn new(clock: &'a QuotaClock) -> Self {
        Self { clock, nanos: None }
    }

    #[inline]
    fn get(&mut self) -> u64 {
        *self.nanos.get_or_insert_with(|| self.clock.now_nanos())
    }

    /// The time, only if `needed` (quotas without a period never read it).
    #[inline]
    fn get_if(&mut self, needed: bool) -> Option<u64> {
        needed.then(|| self.get())
    }
}

/// A successful charge of one level.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Charged {
    /// The period tag the amount was charged in (to undo it in that period only).
    pub(crate) tag: u16,
    /// Whether the level went above its own limit (borrowed from its parent).
    pub(crate) borrowing: bool,
}

/// Why one level refused a charge.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Refusal {
    /// Usage plus the amount is above the limit plus the borrow ceiling.
    Exhausted { used: u64, limit: u64, ceiling: u64 },
    /// The charge would borrow, and the parent is recalling its loans.
    Recalled,
}

/// The counters of one quota, on a cache line of their own so that charges
/// to different quotas never contend on a line.
#[repr(align(64))]
#[derive(Debug)]
struct Hot {
    // Period tag and usage packed (see the module docs). Every charge and
    // release is one compare-and-swap on it; Relaxed is enough because the
    // word is self-contained: no other memory is published through it, and
    // a single atomic's modifications are totally ordered at any ordering.
    state: AtomicU64,
    // Limits change at run time (`adjust`) without republishing the tree;
    // charges read them Relaxed: a charge racing with an adjustment sees
    // the old or the new limit, either of which is a valid decision.
    limit: AtomicU64,
    ceiling: AtomicU64,
    // Highest usage recorded just before a decrease (release, undo, period
    // reset); the peak reported is the max of this and the counter, so a
    // charge, which only increases usage, never writes it.
    peak: AtomicU64,
    // Set by a child refused within its own share while siblings borrow;
    // advisory only (it steers who gets capacity, never the limits), so
    // Relaxed.
    recall: AtomicBool,
    period: u64,
    start: u64,
}

/// One quota: counters, identity and its ancestors.
#[derive(Debug)]
pub(crate) struct QuotaNode {
    hot: Hot,
    pub(crate) id: QuotaId,
    /// Place in the order of definition, unique in its tree: what a
    /// charge's receipt names it by.
    pub(crate) index: usize,
    pub(crate) kind: ResourceKind,
    pub(crate) parent: Option<QuotaId>,
    pub(crate) selector: Option<Scope>,
    /// Ancestors, nearest first. Fixed at definition (a quota never moves),
    /// so charges walk it without reading the published tree.
    pub(crate) path: Box<[Arc<QuotaNode>]>,
}

/// A quota's period in nanoseconds, 0 for none (a period rounds up to at
/// least 1 ns and saturates at `u64::MAX`).
pub(crate) fn period_nanos(period: Option<Duration>) -> u64 {
    period.map_or(0, |p| u64::try_from(p.as_nanos()).unwrap_or(u64::MAX).max(1))
}

/// Where a quota defined anew resumes from stored usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Resume {
    /// Where its periods are counted from.
    pub(crate) start: u64,
    /// The current period's tag.
    pub(crate) tag: u16,
    /// Usage in the current period.
    pub(crate) used: u64,
    /// Highest usage recorded.
    pub(crate) peak: u64,
}

/// A quota's counter as it is stored: see [`QuotaNode::stored`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CounterState {
    /// The period in nanoseconds, 0 for none.
    pub(crate) period: u64,
    /// Where periods are counted from (0 without a period).
    pub(crate) start: u64,
    /// The current period's index (0 without a period).
    pub(crate) index: u64,
    /// Usage in the current period.
    pub(crate) used: u64,
    /// Highest usage recorded.
    pub(crate) peak: u64,
}

/// What a new node is made of.
pub(crate) struct NodeInit {
    pub(crate) id: QuotaId,
    pub(crate) index: usize,
    pub(crate) kind: ResourceKind,
    pub(crate) parent: Option<Arc<QuotaNode>>,
    pub(crate) selector: Option<Scope>,
    pub(crate) limit: u64,
    pub(crate) ceiling: u64,
    pub(crate) period: Option<Duration>,
    pub(crate) start_nanos: u64,
    /// Stored usage to start from (its start replaces `start_nanos`).
    pub(crate) resume: Option<Resume>,
}

impl QuotaNode {
    pub(crate) fn new(init: NodeInit) -> Self {
        let path: Box<[Arc<QuotaNode>]> = match &init.parent {
            None => Box::new([]),
            Some(p) => std::iter::once(Arc::clone(p)).chain(p.path.iter().cloned()).collect(),
        };
        let period = period_nanos(init.period);
        let resume = init.resume.unwrap_or(Resume {
            start: init.start_nanos,
            tag: 0,
            used: 0,
            peak: 0,
        });
        Self {
            hot: Hot {
                state: AtomicU64::new(pack(resume.tag, resume.used.min(MAX_QUOTA_AMOUNT))),
                limit: AtomicU64::new(init.limit),
                ceiling: AtomicU64::new(init.ceiling),
                peak: AtomicU64::new(resume.peak),
                recall: AtomicBool::new(false),
                period,
                start: resume.start,
            },
            parent: init.parent.as_ref().map(|p| p.id.clone()),
            id: init.id,
            index: init.index,
            kind: init.kind,
            selector: init.selector,
            path,
        }
    }

    /// Levels from the root to this node, both included.
    pub(crate) fn depth(&self) -> usize {
        self.path.len() + 1
    }

    pub(crate) fn limit(&self) -> u64 {
        self.hot.limit.load(Ordering::Relaxed)
    }

    pub(crate) fn set_limit(&self, limit: u64) -> u64 {
        self.hot.limit.swap(limit, Ordering::Relaxed)
    }

    pub(crate) fn ceiling(&self) -> u64 {
        self.hot.ceiling.load(Ordering::Relaxed)
    }

    pub(crate) fn set_ceiling(&self, ceiling: u64) -> u64 {
        self.hot.ceiling.swap(ceiling, Ordering::Relaxed)
    }

    /// The most this quota may ever count at its current limit and
    /// ceiling: its limit plus what it may borrow, within the counter.
    pub(crate) fn capacity(&self) -> u64 {
        // Both are at most MAX, so the sum cannot overflow.
        (self.limit() + self.ceiling()).min(MAX_QUOTA_AMOUNT)
    }

    pub(crate) fn recalling(&self) -> bool {
        self.hot.recall.load(Ordering::Relaxed)
    }

    pub(crate) fn set_recalling(&self, on: bool) {
        self.hot.recall.store(on, Ordering::Relaxed);
    }

    pub(crate) fn period(&self) -> Option<Duration> {
        (self.hot.period != 0).then(|| Duration::from_nanos(self.hot.period))
    }

    #[inline]
    fn current_tag(&self, now: &mut Now<'_>) -> u16 {
        match now.get_if(self.hot.period != 0) {
            // Truncation to 16 bits is the tag's modulus.
            Some(t) => (t.saturating_sub(self.hot.start) / self.hot.period.max(1)) as u16,
            None => 0,
        }
    }

    /// Tag and usage of `state` seen from period `cur`: an older period's
    /// usage counts as zero in the current one.
    #[inline]
    fn effective(&self, state: u64, cur: u16) -> (u16, u64) {
        let (tag, used) = unpack(state);
        if self.hot.period != 0 && newer(cur, tag) {
            (cur, 0)
        } else {
            (tag, used)
        }
    }

    /// Records `used` as a peak candidate before usage goes down.
    #[inline]
    fn note_peak(&self, used: u64) {
        if used > self.hot.peak.load(Ordering::Relaxed) {
            self.hot.peak.fetch_max(used, Ordering::Relaxed);
        }
    }

    /// After a write in period `tag` replaced `old`: if `old` was an earlier
    /// period's usage, it is dropped now, so it is recorded as a peak.
    #[inline]
    fn note_reset(&self, old: u64, tag: u16) {
        let (old_tag, old_used) = unpack(old);
        if old_tag != tag {
            self.note_peak(old_used);
        }
    }

    /// Charges `amount` (1..=MAX) if usage stays within limit + ceiling, and
    /// refuses a charge that would borrow while the parent recalls.
    #[inline]
    pub(crate) fn try_add(&self, amount: u64, now: &mut Now<'_>) -> Result<Charged, Refusal> {
        let h = &self.hot;
        let limit = h.limit.load(Ordering::Relaxed);
        let ceiling = h.ceiling.load(Ordering::Relaxed);
        // Both are at most MAX, so the sum cannot overflow; capping at MAX
        // keeps usage inside its 48 bits.
        let cap = (limit + ceiling).min(MAX_QUOTA_AMOUNT);
        let cur = self.current_tag(now);
        let mut state = h.state.load(Ordering::Relaxed);
        loop {
            let (tag, used) = self.effective(state, cur);
            let new = used + amount;
            if new > cap {
                return Err(Refusal::Exhausted { used, limit, ceiling });
            }
            let borrowing = new > limit;
            if borrowing && self.path.first().is_some_and(|p| p.recalling()) {
                return Err(Refusal::Recalled);
            }
            match h
                .state
                .compare_exchange_weak(state, pack(tag, new), Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.note_reset(state, tag);
                    return Ok(Charged { tag, borrowing });
                }
                Err(actual) => state = actual,
            }
        }
    }

    /// Adds `amount` with no limit check (usage that already happened, such
    /// as actual tokens above an estimate), saturating at the maximum.
    pub(crate) fn force_add(&self, amount: u64, now: &mut Now<'_>) {
        let cur = self.current_tag(now);
        let mut state = self.hot.state.load(Ordering::Relaxed);
        loop {
            let (tag, used) = self.effective(state, cur);
            let new = used.saturating_add(amount).min(MAX_QUOTA_AMOUNT);
            match self
                .hot
                .state
                .compare_exchange_weak(state, pack(tag, new), Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.note_reset(state, tag);
                    return;
                }
                Err(actual) => state = actual,
            }
        }
    }

    /// Takes back `amount` charged in period `tag`, usage that was held (a
    /// spend-gate hold settled or released); nothing if that period has
    /// been reset since (the reset already dropped it).
    pub(crate) fn undo(&self, amount: u64, tag: u16) {
        if let Some(held) = self.take_back(amount, tag) {
            self.note_peak(held);
        }
    }

    /// Takes back `amount` charged in period `tag` by a charge that was
    /// refused at another level: it never counted as usage, so it is not a
    /// peak.
    pub(crate) fn rollback(&self, amount: u64, tag: u16) {
        self.take_back(amount, tag);
    }

    /// Subtracts `amount` if the counter is still in period `tag`; returns
    /// the usage it held before.
    fn take_back(&self, amount: u64, tag: u16) -> Option<u64> {
        let mut state = self.hot.state.load(Ordering::Relaxed);
        loop {
            let (t, used) = unpack(state);
            if self.hot.period != 0 && t != tag {
                return None;
            }
            let new = pack(t, used.saturating_sub(amount));
            match self
                .hot
                .state
                .compare_exchange_weak(state, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Some(used),
                Err(actual) => state = actual,
            }
        }
    }

    /// Usage in the current period.
    pub(crate) fn used(&self, now: &mut Now<'_>) -> u64 {
        let cur = self.current_tag(now);
        self.effective(self.hot.state.load(Ordering::Relaxed), cur).1
    }

    /// Whether usage is above the limit (the quota is borrowing).
    pub(crate) fn borrowing(&self, now: &mut Now<'_>) -> bool {
        self.used(now) > self.limit()
    }

    /// Rewrites a counter left in an ended period to the current one with
    /// zero usage. Returns whether it did.
    pub(crate) fn normalize(&self, now: &mut Now<'_>) -> bool {
        if self.hot.period == 0 {
            return false;
        }
        let cur = self.current_tag(now);
        let mut state = self.hot.state.load(Ordering::Relaxed);
        loop {
            let (tag, _) = unpack(state);
            if !newer(cur, tag) {
                return false;
            }
            match self
                .hot
                .state
                .compare_exchange_weak(state, pack(cur, 0), Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.note_reset(state, cur);
                    return true;
                }
                Err(actual) => state = actual,
            }
        }
    }

    /// The counter as the store keeps it: usage in the current period (by
    /// the full period index, not the counter's 16-bit tag) and the peak.
    /// One read of the counter.
    pub(crate) fn stored(&self, now: &mut Now<'_>) -> CounterState {
        let raw = self.hot.state.load(Ordering::Relaxed);
        let peak = self.hot.peak.load(Ordering::Relaxed).max(unpack(raw).1);
        let period = self.hot.period;
        if period == 0 {
            return CounterState {
                period,
                start: 0,
                index: 0,
                used: unpack(raw).1,
                peak,
            };
        }
        let index = now.get().saturating_sub(self.hot.start) / period;
        // Truncation to 16 bits is the tag's modulus.
        let used = self.effective(raw, index as u16).1;
        CounterState {
            period,
            start: self.hot.start,
            index,
            used,
            peak,
        }
    }

    /// This quota's usage report.
    pub(crate) fn report(&self, now: &mut Now<'_>) -> QuotaReport {
        let raw = self.hot.state.load(Ordering::Relaxed);
        let current = self.effective(raw, self.current_tag(now)).1;
        // The raw counter is a real past usage even when its period ended.
        let peak = self.hot.peak.load(Ordering::Relaxed).max(unpack(raw).1);
        let limit = self.limit();
        let resets_in = (self.hot.period != 0).then(|| {
            let into = now.get().saturating_sub(self.hot.start) % self.hot.period;
            Duration::from_nanos(self.hot.period - into)
        });
        QuotaReport {
            id: self.id.clone(),
            parent: self.parent.clone(),
            kind: self.kind.clone(),
            limit,
            borrow_ceiling: self.ceiling(),
            period: self.period(),
            current,
            borrowed: current.saturating_sub(limit),
            peak,
            // current < 2^48 and * 1000 < 2^58: no overflow; limit >= 1.
            utilization_permille: current * 1000 / limit.max(1),
            recalling: self.recalling(),
            resets_in,
        }
    }
}
