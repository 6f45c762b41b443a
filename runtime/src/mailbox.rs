//! Bounded priority lanes in front of every agent.
//!
//! `ractor` mailboxes are unbounded, so a fast sender can bury a slow actor
//! under an unbounded backlog, and a mailbox has no priorities. The runtime
//! therefore keeps each agent's messages *outside* the actor, in three
//! bounded lanes (high, normal, low) held in an `Arc` shared by the agent's
//! handles and its hosting actor. The actor's own ractor mailbox only ever
//! carries a doorbell ([`HostMsg::Wake`](crate::host::HostMsg)) and control
//! messages, which is also why user message types need no ractor traits.
//!
//! # Protocol
//!
//! * A sender reserves a slot by incrementing the lane's counter (a CAS that
//!   fails at capacity or when the lane is closed), pushes the message, then
//!   rings the doorbell if, and only if, it flips the `scheduled` flag from
//!   false to true. So one wake-up is in flight per burst, not per message.
//! * The actor drains up to a batch, picking lanes with [`DrainPolicy`]
//!   (high before normal before low, with aging). When the lanes are empty it
//!   clears `scheduled` *first* and *then* re-checks the counters, both
//!   `SeqCst`; a sender that pushed in between either sees the flag cleared
//!   (and rings) or is seen by the re-check. The naive order (check, then
//!   clear) strands messages.
//! * A sender that finds its lane full registers as a waiter on the lane's
//!   [`Notify`] *before* re-checking the lane, so a slot freed between the
//!   check and the wait is not missed. The actor notifies only when the
//!   waiter count is non-zero (the uncontended path pays one atomic load),
//!   and, while it keeps draining, only once the lane has drained to half
//!   its capacity, so a parked sender wakes to a batch of room, not to one
//!   slot at a time. Whenever the actor stops draining with room in a lane
//!   (its handler awaits: a slow agent, an agent waiting on another), it
//!   wakes a parked sender at once (`Mailbox::offer_room`): otherwise a
//!   sender could wait out its whole timeout beside free slots, because a
//!   slow lane may take longer than that timeout to reach half. (A handler
//!   that blocks its thread without awaiting gives no such signal; tokio
//!   wants blocking work in `spawn_blocking`, which awaits.) There is no
//!   FIFO hand-off: a newcomer that finds a free slot takes it even while
//!   others are parked.
//! * A parked sender stays counted as a waiter only while its future lives
//!   (a drop guard), so a send cancelled while parked (a caller's timeout or
//!   `select!`, an `ask` whose deadline fires) is not counted forever.
//! * Closing (a pool retiring a worker, a node shutting down) sets a bit in
//!   every lane's counter: reservations fail with `Closed` from then on, and
//!   the counter still says exactly how many admitted messages remain, so
//!   the actor knows when it has handled the last one.
//!
//! Counters include messages that are reserved but not yet pushed, so a lane
//! can never hold more than its capacity.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use crossbeam_queue::SegQueue;
use ractor::ActorRef;
use tokio::sync::Notify;

use crate::config::MailboxConfig;
use crate::error::SendError;
use crate::host::HostMsg;
use crate::priority::Priority;
use crate::spill::{SpillQueue, SpillTicket};

/// High bit of a lane counter: the lane admits nothing more.
const CLOSED: usize = 1 << (usize::BITS - 1);

/// Why a slot could not be reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    Full,
    Closed,
}

/// One bounded lane.
struct Lane<M> {
    /// Lock-free unbounded queue; the bound is enforced by `len`. Allocated
    /// on the lane's first push: a `SegQueue` keeps its head and tail on
    /// separate cache lines (256 bytes, 128-aligned), which for three lanes
    /// was over a kilobyte per idle agent; most agents never use their low
    /// or high lane at all. (An `ArrayQueue` would preallocate `capacity`
    /// slots.) `OnceLock` rather than a lock: after the first push, reading
    /// it is one acquire load.
    queue: OnceLock<Box<SegQueue<M>>>,
    /// Reserved + queued messages, with [`CLOSED`] as its top bit. An atomic
    /// (not a lock) because senders on any thread reserve concurrently with
    /// the single draining actor.
    len: AtomicUsize,
    capacity: usize,
    timeout: Duration,
    /// Senders currently waiting for room. Lets the actor skip `notify_one`
    /// (a lock inside `Notify`) when nobody waits.
    waiters: AtomicUsize,
    /// Wakes senders waiting for room.
    room: Notify,
}

impl<M> Lane<M> {
    fn new(capacity: usize, timeout: Duration) -> Self {
        Self {
            queue: OnceLock::new(),
            len: AtomicUsize::new(0),
            capacity,
            timeout,
            waiters: AtomicUsize::new(0),
            room: Notify::new(),
        }
    }

    #[inline]
    fn try_reserve(&self) -> Result<(), Refused> {
        // SeqCst loads, not Relaxed: a parked sender increments `waiters`
        // and then re-checks `len` here, while the actor decrements `len`
        // and then reads `waiters` (a Dekker pair). Only if both re-reads
        // are SeqCst is one side guaranteed to see the other; a Relaxed
        // load may return a stale "full" after the actor saw no waiter
        // (possible on weakly ordered CPUs), and the sender would sleep
        // beside free room. On x86 a SeqCst load costs the same as Relaxed.
        let mut cur = self.len.load(Ordering::SeqCst);
        loop {
            if cur & CLOSED != 0 {
                return Err(Refused::Closed);
            }
            if cur >= self.capacity {
                return Err(Refused::Full);
            }
            match self
                .len
                .compare_exchange_weak(cur, cur + 1, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return Ok(()),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Queues a message whose slot is reserved.
    #[inline]
    fn push(&self, msg: M) {
        self.queue.get_or_init(|| Box::new(SegQueue::new())).push(msg);
    }

    /// Whether a message is queued (reserved slots not yet pushed do not count).
    #[inline]
    fn has_queued(&self) -> bool {
        self.queue.get().is_some_and(|q| !q.is_empty())
    }

    #[inline]
    fn depth(&self) -> usize {
        self.len.load(Ordering::SeqCst) & !CLOSED
    }

    /// Takes one message and frees its slot. Waiting senders are woken
    /// only once the lane has drained to half its capacity, not on every
    /// freed slot: waking a parked sender per message would make it push
    /// one message and park again, a context switch per message that
    /// floods the runtime's run queues (and delays everyone else, high
    /// priority asks included). That alone is not enough: a lane drained
    /// slowly (or not at all while the handler waits) may not reach half
    /// before a parked sender's timeout, so the actor also offers the room
    /// whenever it blocks ([`Mailbox::offer_room`]). A woken sender that
    /// leaves room passes the wake-up on ([`Self::pass_on`]).
    #[inline]
    fn pop(&self) -> Option<M> {
        let msg = self.queue.get()?.pop()?;
        let before = self.len.fetch_sub(1, Ordering::SeqCst) & !CLOSED;
        if before - 1 <= self.capacity / 2 && self.waiters.load(Ordering::SeqCst) > 0 {
            self.room.notify_one();
        }
        Some(msg)
    }

    /// If room is left and senders wait, wakes one. Called by a sender
    /// that was woken and got a slot (to pass the wake-up on) and by the
    /// actor when it stops draining for a while ([`Mailbox::offer_room`]).
    #[inline]
    fn pass_on(&self) {
        if self.depth() < self.capacity && self.waiters.load(Ordering::SeqCst) > 0 {
            self.room.notify_one();
        }
    }
}

/// Counts a parked sender in its lane's `waiters` for exactly as long as
/// the guard lives: the count is dropped with the sender's future even
/// when that future is cancelled while parked.
struct Parked<'a>(&'a AtomicUsize);

impl<'a> Parked<'a> {
    fn new(waiters: &'a AtomicUsize) -> Self {
        waiters.fetch_add(1, Ordering::SeqCst);
        Self(waiters)
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Beyond this a timeout means "no limit": `Instant + Duration::MAX`
/// overflows (and panics), so deadlines are capped here, as tokio caps
/// its own timers (30 years).
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `now + timeout`, without overflowing for huge timeouts such as
/// `Duration::MAX` (which callers use to mean "wait as long as it takes").
pub(crate) fn deadline_after(timeout: Duration) -> tokio::time::Instant {
    tokio::time::Instant::now() + timeout.min(FAR_FUTURE)
}

/// Per-mailbox counters, readable at any time.
#[derive(Debug, Default)]
pub(crate) struct MailboxCounters {
    /// Messages handled by the agent (successfully or not).
    pub(crate) handled: AtomicU64,
    /// Times the hosting actor was restarted.
    pub(crate) restarts: AtomicU32,
    /// Doorbells rung by senders (one per burst, not per message).
    pub(crate) rings: AtomicU64,
}

/// The shared part of an agent: its lanes, its doorbell flag and the
/// current hosting actor. Survives restarts of the actor.
pub(crate) struct Mailbox<M> {
    lanes: [Lane<M>; 3],
    /// True while a wake-up is pending or the actor is draining.
    scheduled: AtomicBool,
    /// The actor currently hosting this agent. Swapped (not locked) on
    /// restart so that handles always ring the live actor; read on each
    /// doorbell ring only, never per message.
    actor: ArcSwapOption<ActorRef<HostMsg>>,
    pub(crate) name: std::sync::Arc<str>,
    pub(crate) counters: MailboxCounters,
    /// What the agent shares with whoever manages it; set at spawn for
    /// agents spawned with signals, or on first use (a preemption).
    pub(crate) signals: std::sync::OnceLock<std::sync::Arc<crate::spawn::AgentSignals>>,
    /// The pool's disk spill behind the low lane, for workers of a
    /// spilling pool (see [`crate::spill`]); set once at the worker's
    /// creation, read with one load per pop.
    pub(crate) spill: std::sync::OnceLock<std::sync::Arc<SpillQueue<M>>>,
}

/// A message taken from a mailbox, with the ticket that acknowledges it to
/// the pool's spill (dropped after its handling) if it came from there.
pub(crate) struct Taken<M: Send + 'static> {
    pub(crate) msg: M,
    pub(crate) ticket: Option<SpillTicket<M>>,
}

impl<M> std::fmt::Debug for Mailbox<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox")
            .field("name", &self.name)
            .field("depths", &self.depths())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl<M> Mailbox<M> {
    pub(crate) fn new(name: std::sync::Arc<str>, cfg: &MailboxConfig) -> Self {
        Self {
            lanes: [
                Lane::new(cfg.high.capacity, cfg.high.timeout),
                Lane::new(cfg.normal.capacity, cfg.normal.timeout),
                Lane::new(cfg.low.capacity, cfg.low.timeout),
            ],
            scheduled: AtomicBool::new(false),
            actor: ArcSwapOption::empty(),
            name,
            counters: MailboxCounters::default(),
            signals: std::sync::OnceLock::new(),
            spill: std::sync::OnceLock::new(),
        }
    }

    #[inline]
    fn lane(&self, p: Priority) -> &Lane<M> {
        &self.lanes[p.index()]
    }

    /// Installs the live hosting actor.
    pub(crate) fn attach(&self, actor: ActorRef<HostMsg>) {
        self.actor.store(Some(std::sync::Arc::new(actor)));
    }

    /// The actor currently hosting this agent, if any.
    pub(crate) fn current_actor(&self) -> Option<ActorRef<HostMsg>> {
        self.actor.load().as_ref().map(|a| (**a).clone())
    }

    /// Forgets the hosting actor (it stopped for good).
    pub(crate) fn detach(&self) {
        self.actor.store(None);
    }

    /// Rings the doorbell unless a wake-up is already pending.
    #[inline]
    pub(crate) fn ring(&self) {
        // A plain load first: under load the flag is almost always already
        // set, and a load does not bounce the cache line like a swap does.
        // Correctness only needs the SeqCst swap when the load saw `false`
        // (see the module docs).
        if !self.scheduled.load(Ordering::SeqCst) && !self.scheduled.swap(true, Ordering::SeqCst) {
            self.counters.rings.fetch_add(1, Ordering::Relaxed);
            self.wake_actor();
        }
    }

    /// Sends a wake-up to the current actor. A failed cast is fine: the
    /// actor is restarting, and a restarted actor wakes itself on start.
    pub(crate) fn wake_actor(&self) {
        if let Some(actor) = self.actor.load().as_ref() {
            let _ = actor.cast(HostMsg::Wake);
        }
    }

    /// Admits a message now or refuses it.
    #[inline]
    pub(crate) fn try_push(&self, msg: M, p: Priority) -> Result<(), SendError<M>> {
        let lane = self.lane(p);
        match lane.try_reserve() {
            Ok(()) => {
                lane.push(msg);
                self.ring();
                Ok(())
            }
            Err(Refused::Full) => Err(SendError::Full(msg)),
            Err(Refused::Closed) => Err(SendError::Closed(msg)),
        }
    }

    /// Admits a message, waiting up to `timeout` for room.
    pub(crate) async fn push(&self, msg: M, p: Priority, timeout: Duration) -> Result<(), SendError<M>> {
        let msg = match self.try_push(msg, p) {
            Err(SendError::Full(m)) => m,
            other => return other,
        };
        let deadline = deadline_after(timeout);
        let lane = self.lane(p);
        loop {
            // Register before re-checking, or a slot freed in between is missed.
            let notified = lane.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let parked = Parked::new(&lane.waiters);
            let reserved = lane.try_reserve();
            if reserved != Err(Refused::Full) {
                drop(parked);
                return match reserved {
                    Ok(()) => {
                        lane.push(msg);
                        self.ring();
                        lane.pass_on();
                        Ok(())
                    }
                    Err(_) => Err(SendError::Closed(msg)),
                };
            }
            let woke = tokio::time::timeout_at(deadline, notified).await;
            drop(parked);
            if woke.is_err() {
                return Err(SendError::Timeout(msg));
            }
        }
    }

    /// The lane's configured send timeout.
    pub(crate) fn timeout(&self, p: Priority) -> Duration {
        self.lane(p).timeout
    }

    /// Messages admitted to a lane and not yet taken by the agent.
    pub(crate) fn depth(&self, p: Priority) -> usize {
        self.lane(p).depth()
    }

    /// Depths of all lanes, high first.
    pub(crate) fn depths(&self) -> [usize; 3] {
        [self.lanes[0].depth(), self.lanes[1].depth(), self.lanes[2].depth()]
    }

    /// The capacity of a lane.
    pub(crate) fn capacity(&self, p: Priority) -> usize {
        self.lane(p).capacity
    }

    /// Total admitted and not yet taken, counting one for a pool's spill
    /// that has messages this worker may take.
    pub(crate) fn pending(&self) -> usize {
        self.lanes.iter().map(Lane::depth).sum::<usize>()
            + usize::from(self.open_spill().is_some_and(|s| s.has_untaken()))
    }

    /// The pool's spill, while the lanes are open: a retiring or stopping
    /// worker handles what its lanes admitted and leaves the spill for the
    /// pool's other workers (or the next start).
    #[inline]
    fn open_spill(&self) -> Option<&std::sync::Arc<SpillQueue<M>>> {
        self.spill.get().filter(|_| !self.is_closed())
    }
}

impl<M: Send + 'static> Mailbox<M> {
    /// Takes the next message according to the drain policy. The low lane
    /// is served from the lane first, then from the pool's spill (whatever
    /// the lane holds is older than anything spilled: see [`crate::spill`]).
    #[inline]
    pub(crate) fn pop(&self, policy: &mut DrainPolicy) -> Option<Taken<M>> {
        let spill = self.open_spill().filter(|s| s.has_untaken());
        let nonempty = [
            self.lanes[0].has_queued(),
            self.lanes[1].has_queued(),
            self.lanes[2].has_queued() || spill.is_some(),
        ];
        let p = policy.pick(nonempty)?;
        if let Some(msg) = self.lane(p).pop() {
            return Some(Taken { msg, ticket: None });
        }
        let (msg, ticket) = spill.filter(|_| p == Priority::Low)?.take()?;
        Some(Taken {
            msg,
            ticket: Some(ticket),
        })
    }
}

impl<M> Mailbox<M> {
    /// Runs one handler call. If it does not finish at once (it awaits),
    /// the lanes will not drain until it does, so room freed so far is
    /// offered to parked senders now rather than when the lane next drains
    /// to half (see [`Lane::pop`]). Costs nothing for handlers that finish
    /// on their first poll.
    pub(crate) async fn offer_room_while<F: Future>(&self, handling: F) -> F::Output {
        let mut handling = std::pin::pin!(handling);
        let mut offered = false;
        std::future::poll_fn(|cx| {
            let poll = handling.as_mut().poll(cx);
            if poll.is_pending() && !offered {
                offered = true;
                self.offer_room();
            }
            poll
        })
        .await
    }

    /// Wakes a parked sender on every lane that has room (each passes the
    /// wake-up on while room is left).
    pub(crate) fn offer_room(&self) {
        for lane in &self.lanes {
            lane.pass_on();
        }
    }

    /// Called by the actor when it found the lanes empty: clears the flag,
    /// then re-checks. Returns true if the actor must keep draining (it has
    /// re-set the flag itself).
    pub(crate) fn idle(&self) -> bool {
        self.idle_with(|| ())
    }

    /// [`Self::idle`] with `between` run between its two steps, where a
    /// concurrent sender may land: tests use it to pin the step order
    /// deterministically (the stress tests only hit that window by luck).
    fn idle_with(&self, between: impl FnOnce()) -> bool {
        self.clear_scheduled();
        between();
        self.recheck()
    }

    /// First half of [`Self::idle`]: from here on, senders ring.
    fn clear_scheduled(&self) {
        self.scheduled.store(false, Ordering::SeqCst);
    }

    /// Second half of [`Self::idle`]: work admitted before the clear (whose
    /// sender saw the flag still set and did not ring) is found here. If a
    /// sender rang in between, its doorbell covers the work instead.
    fn recheck(&self) -> bool {
        self.pending() > 0 && !self.scheduled.swap(true, Ordering::SeqCst)
    }

    /// Marks a wake-up as pending (a starting actor does this, since the flag
    /// may have been left set by a predecessor that died mid-drain).
    pub(crate) fn force_scheduled(&self) {
        self.scheduled.store(true, Ordering::SeqCst);
    }

    /// Stops admitting: every later reservation fails with `Closed`, and
    /// waiting senders are woken to see it.
    pub(crate) fn close(&self) {
        for lane in &self.lanes {
            lane.len.fetch_or(CLOSED, Ordering::SeqCst);
            lane.room.notify_waiters();
        }
    }

    /// Closes the lanes and drops every message they had admitted, for an
    /// agent that is gone for good. Returns how many were dropped. A
    /// dropped request drops its reply port, so its asker fails at once.
    ///
    /// A sender that reserved a slot just before the close pushes its
    /// message a moment later; the counters include it, so this waits
    /// (yielding the thread) until every reserved slot has been pushed and
    /// taken.
    pub(crate) fn discard(&self) -> u64 {
        self.close();
        let mut dropped = 0;
        for lane in &self.lanes {
            let mut idle_spins = 0u32;
            while lane.depth() > 0 {
                match lane.queue.get().and_then(|q| q.pop()) {
                    Some(msg) => {
                        drop(msg);
                        lane.len.fetch_sub(1, Ordering::SeqCst);
                        dropped += 1;
                        idle_spins = 0;
                    }
                    // Reserved, not yet pushed (a few instructions away), or
                    // taken by a hosting actor still draining while it stops.
                    None if idle_spins < 10_000 => {
                        idle_spins += 1;
                        std::thread::yield_now();
                    }
                    None => break,
                }
            }
        }
        dropped
    }

    /// Whether the mailbox has been closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.lanes[0].len.load(Ordering::SeqCst) & CLOSED != 0
    }
}

/// Picks the lane to take the next message from: the highest non-empty
/// lane, except that a lower lane passed over `aging_after` times in a row
/// while it had messages is served once. Under sustained load on every lane
/// with `aging_after = 8`, high gets 8 of every 10 messages and normal and
/// low one each; neither starves, and a high message never waits behind
/// more than one aged message.
///
/// Plain synchronous code so that it is tested without a runtime.
#[derive(Debug, Clone)]
pub struct DrainPolicy {
    aging_after: u32,
    /// Consecutive picks of a higher lane while this lane had messages.
    passed_over: [u32; 3],
}

impl DrainPolicy {
    /// A policy that serves a waiting lower lane after `aging_after`
    /// consecutive picks of higher lanes (at least 1).
    pub fn new(aging_after: u32) -> Self {
        Self {
            aging_after: aging_after.max(1),
            passed_over: [0; 3],
        }
    }

    /// Given which lanes (high, normal, low) have messages, the lane to take
    /// from next, or `None` when all are empty. Records the pick.
    pub fn pick(&mut self, nonempty: [bool; 3]) -> Option<Priority> {
        let highest = nonempty.iter().position(|&n| n)?;
        // The most passed-over aged lane wins; ties go to the higher lane.
        let mut chosen = highest;
        let mut best = 0;
        for (lane, (&has, &age)) in nonempty.iter().zip(&self.passed_over).enumerate().skip(highest + 1) {
            if has && age >= self.aging_after && age > best {
                chosen = lane;
                best = age;
            }
        }
        for (lane, (&has, age)) in nonempty.iter().zip(self.passed_over.iter_mut()).enumerate() {
            if lane == chosen || !has {
                *age = 0;
            } else if lane > chosen {
                *age = age.saturating_add(1);
            }
        }
        Priority::from_index(chosen)
    }
}

#[cfg(test)]
mod tests;
