//! The data plane of budgets: [`BudgetHandle`], a cloneable [`SpendGate`]
//! that reserves and settles without an actor round trip.
//!
//! The budget table is an `ArcSwap` snapshot replaced only by the ledger's
//! writer; each budget's counters sit behind their own short mutex (a
//! reservation touches only the budgets in its scope, for a few
//! arithmetic steps). A budget's *used* amount is committed spend + spend
//! in flight + reservations, and a hard budget admits a reservation only if
//! used + estimate stays within the limit.
//!
//! # Waiting for holds in flight
//!
//! The decision is [`BudgetCounters::check`] (fits / wait / refuse, see
//! [`budget`](super::budget)); this module only waits around it. A
//! reservation is decided in all the budgets of its scope at once: their
//! locks are taken together, in the budgets' creation order (so two
//! reservations never lock in opposite orders), and it is held in all or
//! none, so a waiter never holds one budget while it waits for another.
//! [`SpendGate::reserve_until`] makes a reservation that must wait take a
//! [`WaitTicket`] (first come, first served), queue it in its budgets and
//! sleep on its own [`Notify`] until woken or its deadline passes; on
//! every wake it decides again. Every change that frees room or raises
//! settled spend (settle, release, a waiter leaving, a window moving, a
//! record committed or dropped, a budget redefined or removed) asks the
//! changed budget, under the same lock, which waiters it may have let
//! through ([`BudgetCounters::wakeable`]) and wakes exactly those. A
//! `Notify` keeps one permit, so a wake that comes between a decision and
//! the sleep is not lost. A waiter that gives up (deadline, or its future
//! dropped) leaves its queues at once and holds nothing. With no waiter, a
//! reservation costs what it did before: one short lock per budget in
//! scope.
//!
//! Between `settle` and the commit of the matching records, the settled
//! amount stays counted as in flight: records tracked with the same
//! [`UsageMeta`] as a settled hold consume it (first settled, first
//! consumed) instead of being counted twice. So the gateway's order —
//! reserve, call, settle, record — never leaves a request's cost uncounted,
//! and a hard budget is overshot by at most the error of the estimates in
//! flight. A settled amount whose records never come is dropped after the
//! settle grace period.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use arc_swap::ArcSwap;
use dashmap::DashMap;
use futures::future::BoxFuture;
use nexus_swarm_runtime::resources::ResourceVector;
use nexus_swarm_runtime::scope::Scope;
use nexus_swarm_runtime::usage::{RateControl, SpendGate, SpendHold, SpendRefused, UsageMeta};
use parking_lot::{Mutex, MutexGuard};
use ractor::OutputPort;
use tokio::sync::{Notify, broadcast};
use tokio::time::Instant;

use super::budget::{
    Budget, BudgetCounters, BudgetEvent, BudgetEventKind, BudgetPeriod, BudgetStatus, Verdict, WaitTicket,
};
use super::clock::Clock;
use super::error::LedgerError;
use super::pricing::PriceTable;
use super::record::NewRecord;

/// Events buffered per `subscribe()` receiver before the slowest lags.
const EVENT_BUFFER: usize = 1024;

/// One budget's live state.
#[derive(Debug)]
pub(crate) struct BudgetCell {
    pub(crate) id: String,
    /// Creation order: a reservation spanning several budgets locks them
    /// in this order.
    pub(crate) seq: u64,
    pub(crate) scope: Scope,
    pub(crate) period: BudgetPeriod,
    // A mutex, not atomics: a reservation checks committed + in flight +
    // reserved against the limit and updates one of them as one step, and
    // rolls the window; held for a few arithmetic steps, never across I/O.
    pub(crate) counters: Mutex<BudgetCounters>,
}

/// Spend in flight charged to one budget, to uncharge at commit.
pub(crate) type Charges = Vec<(Arc<BudgetCell>, u64)>;

/// Committed spend to apply to budgets: (budget, usage time, cost).
pub(crate) type Applied = Vec<(Arc<BudgetCell>, u64, u64)>;

/// Spend to add to one budget's bucket, in the same transaction as records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendDelta {
    /// The budget's id.
    pub budget: String,
    /// The bucket's start (microseconds since the epoch).
    pub bucket_start_us: u64,
    /// Micro-dollars to add.
    pub amount: u64,
}

#[derive(Debug)]
struct Hold {
    meta: UsageMeta,
    cells: Vec<Arc<BudgetCell>>,
    estimate: u64,
}

#[derive(Debug)]
struct Awaiting {
    remaining: u64,
    cells: Vec<Arc<BudgetCell>>,
    expires_us: u64,
}

struct Target {
    scope: Scope,
    control: Arc<dyn RateControl>,
    factor: u32,
}

/// Shared state of the budgets, owned by the ledger and read by handles.
pub(crate) struct BudgetBook {
    // ArcSwap: read on every reservation without locking, replaced only by
    // the ledger's single writer when a budget is defined or removed.
    cells: ArcSwap<Vec<Arc<BudgetCell>>>,
    // DashMap: holds are inserted and removed concurrently by every caller.
    holds: DashMap<u64, Hold>,
    // Atomic: a unique id per hold, from any thread.
    next_hold: AtomicU64,
    // Atomic: the creation order of budgets (the lock order), bumped by
    // the writer.
    next_cell: AtomicU64,
    // DashMap: reservations waiting for holds in flight register and leave
    // concurrently; a change to a budget wakes the tickets it names here.
    waiters: DashMap<WaitTicket, Arc<Notify>>,
    // Atomic: wait tickets in arrival order, from any thread.
    next_ticket: AtomicU64,
    // A mutex: settle pushes and record-tracking pops per meta, once per
    // request; `awaiting_count` lets the common case skip it.
    awaiting: Mutex<HashMap<UsageMeta, VecDeque<Awaiting>>>,
    // Atomic: entries in `awaiting`, read without the lock.
    awaiting_count: AtomicUsize,
    // ArcSwap: prices are read on every reservation and record, replaced
    // rarely by the writer.
    prices: ArcSwap<PriceTable>,
    pub(crate) clock: Arc<dyn Clock>,
    settle_grace_us: u64,
    // A mutex: targets are registered rarely and re-evaluated only when a
    // throttle budget changes state.
    targets: Mutex<Vec<Target>>,
    events: broadcast::Sender<BudgetEvent>,
    port: Arc<OutputPort<BudgetEvent>>,
}

impl std::fmt::Debug for BudgetBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetBook")
            .field("budgets", &self.cells.load().len())
            .field("holds", &self.holds.len())
            .finish_non_exhaustive()
    }
}

impl BudgetBook {
    pub(crate) fn new(prices: PriceTable, clock: Arc<dyn Clock>, settle_grace_us: u64) -> Self {
        Self {
            cells: ArcSwap::from_pointee(Vec::new()),
            holds: DashMap::new(),
            next_hold: AtomicU64::new(1),
            next_cell: AtomicU64::new(0),
            waiters: DashMap::new(),
            next_ticket: AtomicU64::new(0),
            awaiting: Mutex::new(HashMap::new()),
            awaiting_count: AtomicUsize::new(0),
            prices: ArcSwap::from_pointee(prices),
            clock,
            settle_grace_us,
            targets: Mutex::new(Vec::new()),
            events: broadcast::channel(EVENT_BUFFER).0,
            port: Arc::new(OutputPort::default()),
        }
    }

    pub(crate) fn prices(&self) -> Arc<PriceTable> {
        self.prices.load_full()
    }

    pub(crate) fn set_prices(&self, prices: PriceTable) {
        self.prices.store(Arc::new(prices));
    }

    pub(crate) fn now_us(&self) -> u64 {
        self.clock.now_us()
    }

    /// The budgets whose scope holds `meta`, in lock order.
    fn matching(&self, meta: &UsageMeta) -> Vec<Arc<BudgetCell>> {
        let mut cells: Vec<Arc<BudgetCell>> = self
            .cells
            .load()
            .iter()
            .filter(|c| c.scope.matches(meta))
            .cloned()
            .collect();
        // The table keeps creation order already; this only guards it.
        cells.sort_by_key(|c| c.seq);
        cells
    }

    /// Wakes these waiting reservations (those gone already are skipped).
    fn wake(&self, tickets: Vec<WaitTicket>) {
        for t in tickets {
            if let Some(notify) = self.waiters.get(&t) {
                notify.notify_one();
            }
        }
    }

    /// Installs (or redefines) a budget with its committed buckets. Called
    /// by the writer only.
    pub(crate) fn install(&self, budget: Budget, buckets: Vec<(u64, u64)>) {
        let now = self.now_us();
        let current = self.cells.load_full();
        let mut next: Vec<Arc<BudgetCell>> = Vec::with_capacity(current.len() + 1);
        let mut done = false;
        let mut wake = Vec::new();
        for cell in current.iter() {
            if cell.id != budget.id {
                next.push(cell.clone());
            } else if cell.scope == budget.scope && cell.period == budget.period {
                let mut k = cell.counters.lock();
                k.redefine(budget.clone(), buckets.clone(), now);
                wake.extend(k.wakeable());
                drop(k);
                next.push(cell.clone());
                done = true;
            } else {
                // Replaced by a budget of another scope or period: its
                // waiters decide again without it.
                wake.extend(cell.counters.lock().drain_queue());
            }
        }
        if !done {
            next.push(Arc::new(BudgetCell {
                id: budget.id.clone(),
                seq: self.next_cell.fetch_add(1, Ordering::Relaxed),
                scope: budget.scope.clone(),
                period: budget.period,
                counters: Mutex::new(BudgetCounters::new(budget, buckets, now)),
            }));
        }
        self.cells.store(Arc::new(next));
        self.wake(wake);
        self.refresh_throttles();
    }

    /// Removes a budget; whether it existed. Called by the writer only.
    pub(crate) fn uninstall(&self, id: &str) -> bool {
        let current = self.cells.load_full();
        let next: Vec<Arc<BudgetCell>> = current.iter().filter(|c| c.id != id).cloned().collect();
        let existed = next.len() != current.len();
        self.cells.store(Arc::new(next));
        // Its waiters decide again without it.
        let wake: Vec<WaitTicket> = current
            .iter()
            .filter(|c| c.id == id)
            .flat_map(|c| c.counters.lock().drain_queue())
            .collect();
        self.wake(wake);
        self.refresh_throttles();
        existed
    }

    pub(crate) fn contains(&self, id: &str) -> bool {
        self.cells.load().iter().any(|c| c.id == id)
    }

    pub(crate) fn status(&self, id: &str) -> Result<BudgetStatus, LedgerError> {
        let cells = self.cells.load();
        let cell = cells
            .iter()
            .find(|c| c.id == id)
            .ok_or_else(|| LedgerError::UnknownBudget(id.to_string()))?;
        let mut events = Vec::new();
        let mut wake = Vec::new();
        let status = {
            let mut k = cell.counters.lock();
            if k.roll(self.now_us(), &mut events) {
                wake = k.wakeable();
            }
            k.status()
        };
        self.wake(wake);
        self.emit(events);
        Ok(status)
    }

    pub(crate) fn statuses(&self) -> Vec<BudgetStatus> {
        let now = self.now_us();
        let mut events = Vec::new();
        let mut wake = Vec::new();
        let out = self
            .cells
            .load()
            .iter()
            .map(|c| {
                let mut k = c.counters.lock();
                if k.roll(now, &mut events) {
                    wake.extend(k.wakeable());
                }
                k.status()
            })
            .collect();
        self.wake(wake);
        self.emit(events);
        out
    }

    /// Rolls every budget's window to now and drops settled amounts whose
    /// records never came.
    pub(crate) fn tick(&self) {
        let now = self.now_us();
        let mut events = Vec::new();
        let mut wake = Vec::new();
        for cell in self.cells.load().iter() {
            let mut k = cell.counters.lock();
            if k.roll(now, &mut events) {
                wake.extend(k.wakeable());
            }
        }
        self.emit(events);
        if self.awaiting_count.load(Ordering::Acquire) > 0 {
            let mut awaiting = self.awaiting.lock();
            let mut dropped = 0;
            awaiting.retain(|_, q| {
                while let Some(front) = q.front() {
                    if front.expires_us > now {
                        break;
                    }
                    let a = q.pop_front().expect("front exists");
                    for c in &a.cells {
                        let mut k = c.counters.lock();
                        k.uncharge_inflight(a.remaining);
                        wake.extend(k.wakeable());
                    }
                    dropped += 1;
                }
                !q.is_empty()
            });
            self.awaiting_count.fetch_sub(dropped, Ordering::AcqRel);
        }
        self.wake(wake);
    }

    /// Counts tracked records as in flight for the budgets in their scope,
    /// consuming settled amounts of the same metadata first. The returned
    /// charges are uncharged when the records commit or fail.
    pub(crate) fn charge_records(&self, records: &[NewRecord]) -> Charges {
        let mut charges = Charges::new();
        let mut wake = Vec::new();
        let mut awaiting = (self.awaiting_count.load(Ordering::Acquire) > 0).then(|| self.awaiting.lock());
        for r in records {
            let mut rest = r.cost_micro_usd;
            if let Some(awaiting) = awaiting.as_mut()
                && let Some(q) = awaiting.get_mut(&r.meta)
            {
                while rest > 0 {
                    let Some(front) = q.front_mut() else { break };
                    let take = rest.min(front.remaining);
                    front.remaining -= take;
                    rest -= take;
                    charges.extend(front.cells.iter().map(|c| (c.clone(), take)));
                    if front.remaining == 0 {
                        q.pop_front();
                        self.awaiting_count.fetch_sub(1, Ordering::AcqRel);
                    }
                }
                if q.is_empty() {
                    awaiting.remove(&r.meta);
                }
            }
            if rest > 0 {
                for cell in self.matching(&r.meta) {
                    let mut k = cell.counters.lock();
                    k.charge_inflight(rest);
                    // Waiters that settled spend leaves no room for are
                    // refused now, not at their deadline.
                    wake.extend(k.wakeable());
                    drop(k);
                    charges.push((cell, rest));
                }
            }
        }
        drop(awaiting);
        self.wake(wake);
        charges
    }

    pub(crate) fn uncharge(&self, charges: Charges) {
        let mut wake = Vec::new();
        for (cell, amount) in charges {
            let mut k = cell.counters.lock();
            k.uncharge_inflight(amount);
            wake.extend(k.wakeable());
        }
        self.wake(wake);
    }

    /// The spend deltas of records about to be committed, with the cells
    /// they apply to. Called by the writer only.
    pub(crate) fn spend_of(&self, records: &[NewRecord]) -> (Vec<SpendDelta>, Applied) {
        let cells = self.cells.load();
        let mut deltas: Vec<SpendDelta> = Vec::new();
        let mut applied = Vec::new();
        for cell in cells.iter() {
            let mut per_bucket: std::collections::BTreeMap<u64, u64> = std::collections::BTreeMap::new();
            for r in records.iter().filter(|r| cell.scope.matches(&r.meta)) {
                let b = per_bucket.entry(cell.period.bucket_start(r.at_us)).or_insert(0);
                *b = b.saturating_add(r.cost_micro_usd);
                applied.push((cell.clone(), r.at_us, r.cost_micro_usd));
            }
            deltas.extend(per_bucket.into_iter().map(|(bucket_start_us, amount)| SpendDelta {
                budget: cell.id.clone(),
                bucket_start_us,
                amount,
            }));
        }
        (deltas, applied)
    }

    /// Applies committed spend and releases the records' in-flight
    /// charges, both under one lock per budget: settled spend neither dips
    /// nor counts a record twice in between (either could let through, or
    /// refuse and halt, a reservation wrongly).
    pub(crate) fn apply_commit(&self, applied: Applied, charges: Charges) {
        let now = self.now_us();
        let mut events = Vec::new();
        let mut wake = Vec::new();
        let mut cells: Vec<&Arc<BudgetCell>> = Vec::new();
        for cell in applied.iter().map(|(c, ..)| c).chain(charges.iter().map(|(c, _)| c)) {
            if !cells.iter().any(|seen| Arc::ptr_eq(seen, cell)) {
                cells.push(cell);
            }
        }
        for cell in cells {
            let mut k = cell.counters.lock();
            for (_, at_us, cost) in applied.iter().filter(|(c, ..)| Arc::ptr_eq(c, cell)) {
                k.commit(*at_us, *cost, now, &mut events);
            }
            for (_, amount) in charges.iter().filter(|(c, _)| Arc::ptr_eq(c, cell)) {
                k.uncharge_inflight(*amount);
            }
            wake.extend(k.wakeable());
        }
        self.wake(wake);
        self.emit(events);
    }

    pub(crate) fn emit(&self, events: Vec<BudgetEvent>) {
        if events.is_empty() {
            return;
        }
        let mut throttles_changed = false;
        for e in events {
            throttles_changed |= matches!(e.kind, BudgetEventKind::Throttled { .. } | BudgetEventKind::Unthrottled);
            tracing::info!(budget = %e.budget, kind = ?e.kind, spent = e.spent_micro_usd, limit = e.limit_micro_usd, "budget event");
            // No receiver is fine: events are for whoever listens.
            let _ = self.events.send(e.clone());
            self.port.send(e);
        }
        if throttles_changed {
            self.refresh_throttles();
        }
    }

    /// Sets every registered rate control to the lowest factor of the over
    /// throttle budgets covering it (1000 if none).
    pub(crate) fn refresh_throttles(&self) {
        let cells = self.cells.load();
        let mut targets = self.targets.lock();
        for t in targets.iter_mut() {
            let factor = cells
                .iter()
                .filter(|c| c.scope.covers(&t.scope))
                .filter_map(|c| c.counters.lock().throttle_factor())
                .min()
                .unwrap_or(1000);
            if factor != t.factor {
                t.factor = factor;
                t.control.set_rate_factor(factor);
            }
        }
    }

    pub(crate) fn register(&self, scope: Scope, control: Arc<dyn RateControl>) {
        self.targets.lock().push(Target {
            scope,
            control,
            factor: 1000,
        });
        self.refresh_throttles();
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<BudgetEvent> {
        self.events.subscribe()
    }

    pub(crate) fn port(&self) -> Arc<OutputPort<BudgetEvent>> {
        self.port.clone()
    }

    fn cost_of(&self, meta: &UsageMeta, estimate: &ResourceVector) -> Result<u64, SpendRefused> {
        self.prices
            .load()
            .cost_of_vector(meta.scope.model.as_deref(), estimate)
            .map_err(|e| SpendRefused::Unavailable(e.to_string()))
    }

    /// Decides a reservation of `cost` in all of `cells` at once (locked
    /// together, in creation order) and holds it in every one if it fits
    /// in every one. A refusal anywhere wins over a wait. With a ticket,
    /// the reservation is queued in each budget first, and leaves the
    /// queues if it fits.
    fn attempt(&self, cells: &[Arc<BudgetCell>], cost: u64, ticket: Option<WaitTicket>) -> Verdict {
        let now = self.now_us();
        let mut events = Vec::new();
        let mut wake = Vec::new();
        let verdict = {
            let mut locked: Vec<MutexGuard<'_, BudgetCounters>> = cells.iter().map(|c| c.counters.lock()).collect();
            let mut verdict = Verdict::Fits;
            for k in locked.iter_mut() {
                if k.roll(now, &mut events) {
                    wake.extend(k.wakeable());
                }
                if let Some(t) = ticket {
                    k.enqueue(t, cost);
                }
                match k.check(cost, ticket, now, &mut events) {
                    Verdict::Fits => {}
                    Verdict::Wait(e) => {
                        if verdict == Verdict::Fits {
                            verdict = Verdict::Wait(e);
                        }
                    }
                    refused @ Verdict::Refused(_) => {
                        // Halted: its waiters are refused too.
                        wake.extend(k.wakeable());
                        verdict = refused;
                        break;
                    }
                }
            }
            if verdict == Verdict::Fits {
                for k in locked.iter_mut() {
                    k.hold(cost);
                    if let Some(t) = ticket {
                        k.dequeue(t);
                    }
                }
            }
            verdict
        };
        self.wake(wake);
        self.emit(events);
        verdict
    }

    fn hold(&self, meta: &UsageMeta, cells: Vec<Arc<BudgetCell>>, cost: u64, estimate: &ResourceVector) -> SpendHold {
        let id = self.next_hold.fetch_add(1, Ordering::Relaxed);
        self.holds.insert(
            id,
            Hold {
                meta: meta.clone(),
                cells,
                estimate: cost,
            },
        );
        SpendHold::new(id, estimate.clone())
    }

    fn reserve(&self, meta: &UsageMeta, estimate: &ResourceVector) -> Result<SpendHold, SpendRefused> {
        let cost = self.cost_of(meta, estimate)?;
        let cells = self.matching(meta);
        match self.attempt(&cells, cost, None) {
            Verdict::Fits => Ok(self.hold(meta, cells, cost, estimate)),
            Verdict::Wait(e) | Verdict::Refused(e) => Err(e),
        }
    }

    async fn reserve_until(
        &self,
        meta: &UsageMeta,
        estimate: &ResourceVector,
        deadline: Instant,
    ) -> Result<SpendHold, SpendRefused> {
        let cost = self.cost_of(meta, estimate)?;
        let cells = self.matching(meta);
        let mut last = match self.attempt(&cells, cost, None) {
            Verdict::Fits => return Ok(self.hold(meta, cells, cost, estimate)),
            Verdict::Refused(e) => return Err(e),
            Verdict::Wait(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(last);
        }
        let mut queued = Queued::new(self);
        tracing::debug!(ticket = queued.ticket.0, cost, "reservation waits for holds in flight");
        loop {
            // The budgets in scope now (one may have been removed or added
            // while it waited).
            let cells = queued.follow(self.matching(meta));
            match self.attempt(&cells, cost, Some(queued.ticket)) {
                Verdict::Fits => {
                    drop(queued);
                    return Ok(self.hold(meta, cells, cost, estimate));
                }
                // Dropping `queued` leaves the queues and wakes those behind.
                Verdict::Refused(e) => return Err(e),
                Verdict::Wait(e) => last = e,
            }
            let notify = queued.notify.clone();
            tokio::select! {
                _ = notify.notified() => {}
                _ = tokio::time::sleep_until(deadline) => return Err(last),
            }
        }
    }

    fn settle(&self, hold: SpendHold, actual: &ResourceVector) {
        let Some((_, h)) = self.holds.remove(&hold.id()) else {
            return;
        };
        // An actual we cannot price counts at the estimate: never less.
        let actual = self
            .prices
            .load()
            .cost_of_vector(h.meta.scope.model.as_deref(), actual)
            .unwrap_or(h.estimate);
        let mut wake = Vec::new();
        for cell in &h.cells {
            let mut k = cell.counters.lock();
            k.settle(h.estimate, actual);
            wake.extend(k.wakeable());
        }
        self.wake(wake);
        if actual > 0 && !h.cells.is_empty() {
            let expires_us = self.now_us().saturating_add(self.settle_grace_us);
            self.awaiting.lock().entry(h.meta).or_default().push_back(Awaiting {
                remaining: actual,
                cells: h.cells,
                expires_us,
            });
            self.awaiting_count.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn release(&self, hold: SpendHold) {
        if let Some((_, h)) = self.holds.remove(&hold.id()) {
            let mut wake = Vec::new();
            for cell in &h.cells {
                let mut k = cell.counters.lock();
                k.release(h.estimate);
                wake.extend(k.wakeable());
            }
            self.wake(wake);
        }
    }
}

/// A reservation waiting in the queues of its budgets. Dropped when it is
/// reserved, refused or gives up (its deadline, or the caller dropping the
/// future): it then leaves every queue and wakes the waiters that may fit
/// without it.
struct Queued<'a> {
    book: &'a BudgetBook,
    ticket: WaitTicket,
    notify: Arc<Notify>,
    /// The budgets it may be queued in.
    cells: Vec<Arc<BudgetCell>>,
}

impl<'a> Queued<'a> {
    fn new(book: &'a BudgetBook) -> Self {
        let ticket = WaitTicket(book.next_ticket.fetch_add(1, Ordering::Relaxed));
        let notify = Arc::new(Notify::new());
        book.waiters.insert(ticket, notify.clone());
        Self {
            book,
            ticket,
            notify,
            cells: Vec::new(),
        }
    }

    /// Waits in `cells` from now on: leaves the queues of budgets no
    /// longer in scope (removed or replaced). [`BudgetBook::attempt`]
    /// queues it in the others.
    fn follow(&mut self, cells: Vec<Arc<BudgetCell>>) -> Vec<Arc<BudgetCell>> {
        let mut wake = Vec::new();
        for old in &self.cells {
            if !cells.iter().any(|c| Arc::ptr_eq(c, old)) {
                let mut k = old.counters.lock();
                if k.dequeue(self.ticket) {
                    wake.extend(k.wakeable());
                }
            }
        }
        self.book.wake(wake);
        self.cells.clone_from(&cells);
        cells
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.book.waiters.remove(&self.ticket);
        let mut wake = Vec::new();
        for cell in &self.cells {
            let mut k = cell.counters.lock();
            if k.dequeue(self.ticket) {
                wake.extend(k.wakeable());
            }
        }
        self.book.wake(wake);
    }
}

/// A cloneable, data-plane handle on the ledger's budgets: a [`SpendGate`]
/// (reserve before a call, waiting for holds in flight if need be, settle
/// after), status reads, event subscriptions and throttle targets.
#[derive(Clone, Debug)]
pub struct BudgetHandle {
    pub(crate) book: Arc<BudgetBook>,
}

impl BudgetHandle {
    /// The state of one budget.
    pub fn status(&self, id: &str) -> Result<BudgetStatus, LedgerError> {
        self.book.status(id)
    }

    /// The state of every budget.
    pub fn statuses(&self) -> Vec<BudgetStatus> {
        self.book.statuses()
    }

    /// A typed subscription to every budget event (alerts at 50/80/100 %,
    /// throttle, halt). A receiver that falls more than 1024 events behind
    /// loses the oldest.
    pub fn subscribe(&self) -> broadcast::Receiver<BudgetEvent> {
        self.book.subscribe()
    }

    /// The same events as a ractor output port, for actor subscribers:
    /// `port.subscribe(actor_ref, |e| Some(MyMsg::Budget(e)))`.
    pub fn events_port(&self) -> Arc<OutputPort<BudgetEvent>> {
        self.book.port()
    }

    /// Registers an admission rate to throttle: while a throttle budget
    /// whose scope covers `scope` is over its limit, `control` is set to
    /// that budget's factor; it is set back to 1000 when the budget is under
    /// again or its period rolls over.
    pub fn register_rate_control(&self, scope: Scope, control: Arc<dyn RateControl>) {
        self.book.register(scope, control);
    }

    /// Reservations currently held.
    pub fn holds(&self) -> usize {
        self.book.holds.len()
    }

    /// Reservations waiting for holds in flight to settle.
    pub fn waiting(&self) -> usize {
        self.book.waiters.len()
    }
}

impl SpendGate for BudgetHandle {
    fn reserve(&self, meta: &UsageMeta, estimate: &ResourceVector) -> Result<SpendHold, SpendRefused> {
        self.book.reserve(meta, estimate)
    }

    /// Waits, up to `deadline`, while the reservation does not fit only
    /// because of holds in flight (see the module docs).
    fn reserve_until<'a>(
        &'a self,
        meta: &'a UsageMeta,
        estimate: &'a ResourceVector,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<SpendHold, SpendRefused>> {
        Box::pin(self.book.reserve_until(meta, estimate, deadline))
    }

    fn settle(&self, hold: SpendHold, actual: &ResourceVector) {
        self.book.settle(hold, actual)
    }

    fn release(&self, hold: SpendHold) {
        self.book.release(hold)
    }
}

#[cfg(test)]
mod tests;
