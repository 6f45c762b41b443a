//! Budgets: definitions, periods, and the synchronous counters that decide
//! reservations, alerts, throttling and halts (tested without a runtime).
//!
//! # Hard budgets: reserve, wait, or refuse
//!
//! A request reserves its worst-case cost before it is sent and settles
//! the actual cost after, so near the limit most of a hard budget can be
//! *held* by requests in flight whose actual costs will leave room. With
//! *settled* spend = committed + settled-but-not-yet-committed, *used* =
//! settled + held, and *ahead* = the estimates of the reservations already
//! waiting before this one, [`BudgetCounters::check`] decides:
//!
//! - **fits** when used + ahead + estimate ≤ limit: reserve it;
//! - **wait** ([`Verdict::Wait`]) when it does not fit only because of
//!   holds in flight or reservations waiting ahead, i.e. settled +
//!   estimate ≤ limit: it may wait (the budget book does, up to the
//!   request's deadline) for holds to settle or be released;
//! - **refuse** ([`Verdict::Refused`]) when settled + estimate > limit: it
//!   cannot fit whatever the holds in flight cost. The budget *halts*:
//!   every reservation in scope is refused until the period rolls over (a
//!   rolling window: until settled spend plus the halting estimate fits
//!   again). A halt never comes from holds alone.
//!
//! Reservations never push used over the limit, so with actual costs at or
//! below their estimates a hard budget is never overshot.
//!
//! Waiting reservations queue in [`WaitTicket`] order: first come, first
//! served. A waiter fits only with the estimates of every waiter ahead of
//! it counted as used, so the room a waiter needs is never taken by one
//! behind it or by a newcomer; one behind goes first only into room beyond
//! what those ahead need (when they are held back by another budget).
//! [`BudgetCounters::wakeable`] names the waiters a change may have let
//! through (those that fit now, and those that can no longer ever fit, to
//! be refused without waiting for their deadline); the budget book wakes
//! exactly those after every change that frees room or raises settled
//! spend. Tickets are global, so the oldest waiter is ahead in every budget
//! it waits in and a reservation spanning several budgets cannot deadlock.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::Duration;

use nexus_swarm_runtime::scope::Scope;
use nexus_swarm_runtime::usage::SpendRefused;
use serde::{Deserialize, Serialize};

use super::clock::{MICROS_PER_DAY, MICROS_PER_SEC, civil_from_days, days_from_civil};
use super::error::LedgerError;

/// Alert thresholds, in percent of the limit.
pub const ALERT_THRESHOLDS: [u8; 3] = [50, 80, 100];

/// Shortest rolling window: one minute (it is counted in 60 slices).
pub const MIN_ROLLING_WINDOW: Duration = Duration::from_secs(60);
/// Longest rolling window: 31 days.
pub const MAX_ROLLING_WINDOW: Duration = Duration::from_secs(31 * 24 * 3600);

/// The period a budget's limit applies to. Calendar periods are UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetPeriod {
    /// Each UTC clock hour.
    Hourly,
    /// Each UTC day.
    Daily,
    /// Each UTC calendar month.
    Monthly,
    /// The trailing window of this length, counted in 60 slices (a slice
    /// leaves the window whole). Between 1 minute and 31 days.
    Rolling(Duration),
}

impl BudgetPeriod {
    fn slice_us(window: Duration) -> u64 {
        let w = u64::try_from(window.as_micros()).unwrap_or(u64::MAX);
        (w / 60 / MICROS_PER_SEC).max(1) * MICROS_PER_SEC
    }

    /// The start of the bucket (calendar period, or slice of a rolling
    /// window) that holds `at_us`. Spend is stored per bucket.
    pub fn bucket_start(&self, at_us: u64) -> u64 {
        match self {
            BudgetPeriod::Hourly => at_us - at_us % (3600 * MICROS_PER_SEC),
            BudgetPeriod::Daily => at_us - at_us % MICROS_PER_DAY,
            BudgetPeriod::Monthly => {
                let (y, m, _) = civil_from_days((at_us / MICROS_PER_DAY) as i64);
                days_from_civil(y, m, 1).max(0) as u64 * MICROS_PER_DAY
            }
            BudgetPeriod::Rolling(w) => {
                let s = Self::slice_us(*w);
                at_us - at_us % s
            }
        }
    }

    /// The first bucket counted at `now_us`: the period's start for a
    /// calendar period, the oldest slice still in a rolling window.
    pub fn window_start(&self, now_us: u64) -> u64 {
        let current = self.bucket_start(now_us);
        match self {
            BudgetPeriod::Rolling(w) => {
                let s = Self::slice_us(*w);
                let w_us = u64::try_from(w.as_micros()).unwrap_or(u64::MAX);
                let slices = w_us.div_ceil(s);
                current.saturating_sub((slices - 1) * s)
            }
            _ => current,
        }
    }

    /// Whether the period is a calendar period (it rolls over at once).
    pub fn is_calendar(&self) -> bool {
        !matches!(self, BudgetPeriod::Rolling(_))
    }

    fn validate(&self) -> Result<(), String> {
        if let BudgetPeriod::Rolling(w) = self
            && (*w < MIN_ROLLING_WINDOW || *w > MAX_ROLLING_WINDOW)
        {
            return Err(format!("rolling window {w:?} is not between 1 minute and 31 days"));
        }
        Ok(())
    }
}

impl fmt::Display for BudgetPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BudgetPeriod::Hourly => f.write_str("hourly"),
            BudgetPeriod::Daily => f.write_str("daily"),
            BudgetPeriod::Monthly => f.write_str("monthly"),
            BudgetPeriod::Rolling(w) => write!(f, "rolling {}", humantime::format_duration(*w)),
        }
    }
}

/// What a budget does when spend reaches its limit. Every budget sends
/// alert events at 50 %, 80 % and 100 %.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetAction {
    /// Alert events only.
    Alert,
    /// While spend is at or over the limit, the rate controls registered
    /// for the scope admit `permille`/1000 of their rate.
    Throttle {
        /// The reduced rate factor, below 1000.
        permille: u32,
    },
    /// A hard budget: a reservation that does not fit only because of
    /// holds in flight waits for them (up to its deadline); one that cannot
    /// fit whatever they cost (settled spend plus it is over the limit) is
    /// refused, and so is every reservation in scope after it, until the
    /// period rolls over.
    Halt,
}

/// A budget: a limit in micro-dollars on the spend of a scope in a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    /// Its id (letters, digits, `_ - . /`).
    pub id: String,
    /// Which usage it covers.
    pub scope: Scope,
    /// The limit per period, in micro-dollars.
    pub limit_micro_usd: u64,
    /// The period.
    pub period: BudgetPeriod,
    /// What happens at the limit.
    pub action: BudgetAction,
}

impl Budget {
    /// A budget covering everything (narrow it with [`Budget::scope`]).
    pub fn new(id: impl Into<String>, limit_micro_usd: u64, period: BudgetPeriod, action: BudgetAction) -> Self {
        Self {
            id: id.into(),
            scope: Scope::all(),
            limit_micro_usd,
            period,
            action,
        }
    }

    /// Builder-style: sets the scope.
    pub fn scope(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self
    }

    /// Whether reservations are refused at the limit.
    pub fn is_hard(&self) -> bool {
        self.action == BudgetAction::Halt
    }

    /// Checks the definition.
    pub fn validate(&self) -> Result<(), LedgerError> {
        let bad = |reason: String| LedgerError::InvalidBudget {
            id: self.id.clone(),
            reason,
        };
        let id_ok = !self.id.is_empty()
            && self.id.len() <= 128
            && self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
        if !id_ok {
            return Err(bad("the id must be 1-128 letters, digits or `_ - . /`".into()));
        }
        if self.limit_micro_usd == 0 {
            return Err(bad("the limit must be above zero".into()));
        }
        self.period.validate().map_err(bad)?;
        if let BudgetAction::Throttle { permille } = self.action
            && permille >= 1000
        {
            return Err(bad(format!("throttle factor {permille} must be below 1000")));
        }
        for (name, v) in self.scope.fields() {
            if let Some(v) = v
                && v.trim().is_empty()
            {
                return Err(bad(format!("scope field {name} is empty")));
            }
        }
        Ok(())
    }
}

/// What happened to a budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetEventKind {
    /// Committed spend reached this percentage of the limit (once per
    /// threshold per period).
    Threshold {
        /// 50, 80 or 100.
        percent: u8,
    },
    /// A throttle budget went over: its scope's rate is reduced.
    Throttled {
        /// The factor applied.
        permille: u32,
    },
    /// A throttle budget is back under (or its period rolled over).
    Unthrottled,
    /// A hard budget refused a reservation that cannot fit (settled spend
    /// plus its estimate is over the limit); the scope is halted.
    Halted,
    /// A halted budget admits again (its period rolled over).
    Resumed,
}

/// An event of one budget, sent to subscribers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetEvent {
    /// The budget's id.
    pub budget: String,
    /// What happened.
    pub kind: BudgetEventKind,
    /// Committed spend in the period, in micro-dollars.
    pub spent_micro_usd: u64,
    /// The limit, in micro-dollars.
    pub limit_micro_usd: u64,
    /// Start of the period (or of the rolling window), microseconds since the epoch.
    pub period_start_us: u64,
    /// When it happened.
    pub at_us: u64,
}

impl ractor::Message for BudgetEvent {}

/// A budget's state, as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetStatus {
    /// The definition.
    pub budget: Budget,
    /// Start of the current period (or rolling window).
    pub period_start_us: u64,
    /// Committed spend in the period.
    pub spent_micro_usd: u64,
    /// Settled or tracked spend not yet committed.
    pub inflight_micro_usd: u64,
    /// Held by reservations of requests in flight.
    pub reserved_micro_usd: u64,
    /// Reservations waiting for holds in flight to settle.
    pub waiting: usize,
    /// Thresholds already alerted in this period.
    pub alerted_percent: Vec<u8>,
    /// Whether a throttle budget is over.
    pub throttled: bool,
    /// Whether a hard budget is halted.
    pub halted: bool,
}

/// A waiting reservation's place in the queues of the hard budgets it
/// waits in: lower tickets are served first. The budget book hands them out
/// in increasing order, one per waiting request, shared by all its budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WaitTicket(pub u64);

/// What a budget says to a reservation (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It fits now.
    Fits,
    /// It fits only once holds in flight settle or are released (settled
    /// spend plus it is within the limit). Carries the error to give if it
    /// stops waiting ([`SpendRefused::HoldsInFlight`]).
    Wait(SpendRefused),
    /// It cannot fit in this period ([`SpendRefused::BudgetExceeded`]); the
    /// budget is halted.
    Refused(SpendRefused),
}

/// The counters of one budget. All decisions about it are made here,
/// synchronously, with the time passed in.
#[derive(Debug, Clone)]
pub struct BudgetCounters {
    budget: Budget,
    /// Committed spend per bucket start, only buckets in the window.
    buckets: BTreeMap<u64, u64>,
    inflight: u64,
    reserved: u64,
    window_start: u64,
    alerted: u8,
    /// `Some(estimate)` once a hard budget refused a reservation that
    /// cannot fit.
    halted: Option<u64>,
    throttled: bool,
    /// Waiting reservations of a hard budget, by ticket (ascending), with
    /// their estimates.
    queue: VecDeque<(WaitTicket, u64)>,
    /// The sum of the estimates in `queue`.
    queued: u64,
}

impl BudgetCounters {
    /// Counters for `budget` with committed spend `buckets` (bucket start
    /// -> micro-dollars), at `now_us`. Thresholds already reached are not
    /// alerted again; an over throttle budget starts throttled.
    pub fn new(budget: Budget, buckets: impl IntoIterator<Item = (u64, u64)>, now_us: u64) -> Self {
        let window_start = budget.period.window_start(now_us);
        let mut c = Self {
            budget,
            buckets: buckets.into_iter().filter(|(b, _)| *b >= window_start).collect(),
            inflight: 0,
            reserved: 0,
            window_start,
            alerted: 0,
            halted: None,
            throttled: false,
            queue: VecDeque::new(),
            queued: 0,
        };
        c.alerted = c.reached_mask();
        c.throttled = matches!(c.budget.action, BudgetAction::Throttle { .. }) && c.spent() >= c.budget.limit_micro_usd;
        c
    }

    /// The definition.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// Replaces limit and action (same scope and period), keeping holds
    /// and waiting reservations (call [`BudgetCounters::wakeable`] after).
    pub fn redefine(&mut self, budget: Budget, buckets: impl IntoIterator<Item = (u64, u64)>, now_us: u64) {
        let fresh = BudgetCounters::new(budget, buckets, now_us);
        self.budget = fresh.budget;
        self.buckets = fresh.buckets;
        self.window_start = fresh.window_start;
        self.alerted = fresh.alerted;
        self.throttled = fresh.throttled;
        if !self.budget.is_hard() {
            self.halted = None;
        }
    }

    fn reached_mask(&self) -> u8 {
        let spent = u128::from(self.spent());
        let limit = u128::from(self.budget.limit_micro_usd);
        ALERT_THRESHOLDS
            .iter()
            .enumerate()
            .filter(|(_, pct)| spent * 100 >= limit * u128::from(**pct))
            .fold(0, |m, (i, _)| m | (1 << i))
    }

    /// Committed spend in the current window.
    pub fn spent(&self) -> u64 {
        self.buckets.values().fold(0u64, |s, v| s.saturating_add(*v))
    }

    /// Committed + settled (in flight): what is really spent, holds aside.
    pub fn settled(&self) -> u64 {
        self.spent().saturating_add(self.inflight)
    }

    /// Committed + in flight + reserved.
    pub fn used(&self) -> u64 {
        self.settled().saturating_add(self.reserved)
    }

    fn event(&self, kind: BudgetEventKind, now_us: u64) -> BudgetEvent {
        BudgetEvent {
            budget: self.budget.id.clone(),
            kind,
            spent_micro_usd: self.spent(),
            limit_micro_usd: self.budget.limit_micro_usd,
            period_start_us: self.window_start,
            at_us: now_us,
        }
    }

    /// Moves the window to `now_us`: drops buckets that left it, resets
    /// alerts and the halt at a calendar rollover, re-arms alerts and
    /// releases throttles that spend fell below. Whether the window moved
    /// (spend may have dropped: call [`BudgetCounters::wakeable`]).
    pub fn roll(&mut self, now_us: u64, events: &mut Vec<BudgetEvent>) -> bool {
        let start = self.budget.period.window_start(now_us);
        let moved = start > self.window_start;
        if moved {
            self.window_start = start;
            self.buckets = self.buckets.split_off(&start);
            if self.budget.period.is_calendar() {
                self.alerted = 0;
                if self.halted.take().is_some() {
                    events.push(self.event(BudgetEventKind::Resumed, now_us));
                }
            } else {
                // A rolling window re-arms the thresholds spend fell below.
                self.alerted &= self.reached_mask();
                if let Some(need) = self.halted
                    && fits(self.settled(), need, self.budget.limit_micro_usd)
                {
                    self.halted = None;
                    events.push(self.event(BudgetEventKind::Resumed, now_us));
                }
            }
        }
        if self.throttled && self.spent() < self.budget.limit_micro_usd {
            self.throttled = false;
            events.push(self.event(BudgetEventKind::Unthrottled, now_us));
        }
        moved
    }

    /// Decides a reservation of `estimate` micro-dollars without making it
    /// (see the module docs): `ticket` is the reservation's place among the
    /// waiting ones, `None` for a newcomer (behind every waiter). A
    /// [`Verdict::Refused`] halts a hard budget. Budgets that are not hard
    /// always fit.
    pub fn check(
        &mut self,
        estimate: u64,
        ticket: Option<WaitTicket>,
        now_us: u64,
        events: &mut Vec<BudgetEvent>,
    ) -> Verdict {
        self.roll(now_us, events);
        if !self.budget.is_hard() {
            return Verdict::Fits;
        }
        let limit = self.budget.limit_micro_usd;
        if self.halted.is_none() && !fits(self.settled(), estimate, limit) {
            self.halted = Some(estimate);
            events.push(self.event(BudgetEventKind::Halted, now_us));
        }
        if self.halted.is_some() {
            return Verdict::Refused(SpendRefused::BudgetExceeded {
                budget: self.budget.id.clone(),
                limit,
                spent: self.settled(),
                reserved: self.reserved,
                requested: estimate,
            });
        }
        let ahead = match ticket {
            None => self.queued,
            Some(t) => self
                .queue
                .iter()
                .take_while(|(w, _)| *w < t)
                .fold(0u64, |sum, (_, e)| sum.saturating_add(*e)),
        };
        if fits(self.used().saturating_add(ahead), estimate, limit) {
            Verdict::Fits
        } else {
            Verdict::Wait(SpendRefused::HoldsInFlight {
                budget: self.budget.id.clone(),
                limit,
                spent: self.settled(),
                reserved: self.reserved,
                requested: estimate,
            })
        }
    }

    /// Holds `estimate` micro-dollars for a reservation that
    /// [`BudgetCounters::check`] found to fit.
    pub fn hold(&mut self, estimate: u64) {
        self.reserved = self.reserved.saturating_add(estimate);
    }

    /// [`BudgetCounters::check`], then [`BudgetCounters::hold`] if it fits.
    pub fn try_reserve(
        &mut self,
        estimate: u64,
        ticket: Option<WaitTicket>,
        now_us: u64,
        events: &mut Vec<BudgetEvent>,
    ) -> Verdict {
        let verdict = self.check(estimate, ticket, now_us, events);
        if verdict == Verdict::Fits {
            self.hold(estimate);
        }
        verdict
    }

    /// Queues a waiting reservation of `estimate` under `ticket` (once: a
    /// ticket already queued is left as is). Budgets that are not hard keep
    /// no queue: nothing waits for them.
    pub fn enqueue(&mut self, ticket: WaitTicket, estimate: u64) {
        if !self.budget.is_hard() {
            return;
        }
        if let Err(at) = self.queue.binary_search_by_key(&ticket, |(t, _)| *t) {
            self.queue.insert(at, (ticket, estimate));
            self.queued = self.queued.saturating_add(estimate);
        }
    }

    /// Removes a waiting reservation (it was reserved, refused or gave
    /// up); whether it was queued. Call [`BudgetCounters::wakeable`] after:
    /// those behind it may fit now.
    pub fn dequeue(&mut self, ticket: WaitTicket) -> bool {
        match self.queue.binary_search_by_key(&ticket, |(t, _)| *t) {
            Ok(at) => {
                let (_, estimate) = self.queue.remove(at).expect("found at this index");
                self.queued = self.queued.saturating_sub(estimate);
                true
            }
            Err(_) => false,
        }
    }

    /// Empties the queue (the budget is removed or replaced); the tickets
    /// to wake so that they decide again without it.
    pub fn drain_queue(&mut self) -> Vec<WaitTicket> {
        self.queued = 0;
        self.queue.drain(..).map(|(t, _)| t).collect()
    }

    /// Reservations waiting.
    pub fn waiting(&self) -> usize {
        self.queue.len()
    }

    /// The waiting reservations whose verdict may have changed to *fits*
    /// or *refused*: each waiter that fits with every waiter ahead of it
    /// counted as used (a prefix of the queue), and each that settled spend
    /// leaves no room for ever. All of them once halted, or if the budget
    /// is no longer hard. Empty, without allocating, when none wait.
    pub fn wakeable(&self) -> Vec<WaitTicket> {
        if self.queue.is_empty() {
            return Vec::new();
        }
        if !self.budget.is_hard() || self.halted.is_some() {
            return self.queue.iter().map(|(t, _)| *t).collect();
        }
        let limit = self.budget.limit_micro_usd;
        let settled = self.settled();
        let mut used = self.used();
        let mut out = Vec::new();
        for (ticket, estimate) in &self.queue {
            let fits_now = fits(used, *estimate, limit);
            used = used.saturating_add(*estimate);
            if fits_now || !fits(settled, *estimate, limit) {
                out.push(*ticket);
            }
        }
        out
    }

    /// Replaces a reservation of `estimate` by `actual` spend in flight.
    pub fn settle(&mut self, estimate: u64, actual: u64) {
        self.reserved = self.reserved.saturating_sub(estimate);
        self.inflight = self.inflight.saturating_add(actual);
    }

    /// Drops a reservation of `estimate`.
    pub fn release(&mut self, estimate: u64) {
        self.reserved = self.reserved.saturating_sub(estimate);
    }

    /// Counts `cost` as in flight (tracked, not yet committed).
    pub fn charge_inflight(&mut self, cost: u64) {
        self.inflight = self.inflight.saturating_add(cost);
    }

    /// Stops counting `cost` as in flight (committed, failed or expired).
    pub fn uncharge_inflight(&mut self, cost: u64) {
        self.inflight = self.inflight.saturating_sub(cost);
    }

    /// Adds committed spend of a usage at `at_us`; sends threshold and
    /// throttle events it causes.
    pub fn commit(&mut self, at_us: u64, cost: u64, now_us: u64, events: &mut Vec<BudgetEvent>) {
        self.roll(now_us, events);
        let bucket = self.budget.period.bucket_start(at_us);
        if bucket >= self.window_start && cost > 0 {
            let b = self.buckets.entry(bucket).or_insert(0);
            *b = b.saturating_add(cost);
        }
        let reached = self.reached_mask();
        for (i, pct) in ALERT_THRESHOLDS.iter().enumerate() {
            if reached & (1 << i) != 0 && self.alerted & (1 << i) == 0 {
                self.alerted |= 1 << i;
                events.push(self.event(BudgetEventKind::Threshold { percent: *pct }, now_us));
            }
        }
        if let BudgetAction::Throttle { permille } = self.budget.action
            && !self.throttled
            && self.spent() >= self.budget.limit_micro_usd
        {
            self.throttled = true;
            events.push(self.event(BudgetEventKind::Throttled { permille }, now_us));
        }
    }

    /// The throttle factor this budget imposes now, if any.
    pub fn throttle_factor(&self) -> Option<u32> {
        match self.budget.action {
            BudgetAction::Throttle { permille } if self.throttled => Some(permille),
            _ => None,
        }
    }

    /// The reported state.
    pub fn status(&self) -> BudgetStatus {
        BudgetStatus {
            budget: self.budget.clone(),
            period_start_us: self.window_start,
            spent_micro_usd: self.spent(),
            inflight_micro_usd: self.inflight,
            reserved_micro_usd: self.reserved,
            alerted_percent: ALERT_THRESHOLDS
                .iter()
                .enumerate()
                .filter(|(i, _)| self.alerted & (1 << i) != 0)
                .map(|(_, p)| *p)
                .collect(),
            throttled: self.throttled,
            halted: self.halted.is_some(),
            waiting: self.queue.len(),
        }
    }
}

/// Whether `base + add` is within `limit` (an overflow is not).
fn fits(base: u64, add: u64, limit: u64) -> bool {
    base.checked_add(add).is_some_and(|total| total <= limit)
}

#[cfg(test)]
mod tests;
