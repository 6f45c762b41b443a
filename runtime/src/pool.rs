//! Agent pools: N workers of one agent type behind one handle.
//!
//! # Why not `ractor::factory`
//!
//! ractor's factory keeps its queue inside the factory actor, so every job
//! passes through one actor's mailbox (the data plane would queue behind a
//! single actor), and when that queue is full it discards jobs rather than
//! making senders wait. Here each worker keeps its own bounded lanes (see
//! [`crate::mailbox`]); [`PoolRef`] picks a worker from a published snapshot
//! and pushes straight into its lanes, and the `AgentPool` actor is only
//! the control plane: it supervises workers (restarting them with their
//! lanes intact, as the factory does), resizes the pool and reports stats.
//!
//! Shrinking drains: a retired worker is first removed from the snapshot,
//! then its lanes are closed (senders that still hold the old snapshot get
//! `Closed` and pick another worker) and it stops only once every message it
//! admitted has been handled.
//!
//! A spilling pool ([`Node::spawn_spilling_pool`](crate::node::Node::spawn_spilling_pool))
//! keeps one disk spill behind all its workers' low lanes; low sends go
//! through it in FIFO order and workers take from it when their own low
//! lane is empty (see [`crate::spill`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use parking_lot::Mutex;
use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr, SupervisionEvent};
use tokio::time::Instant;

use crate::agent::Agent;
use crate::agent_ref::{AgentRef, Reply};
use crate::config::{MailboxConfig, SupervisionConfig};
use crate::error::{AskError, PoolError, SendError, SpawnError};
use crate::host::{AgentHost, HostMsg};
use crate::mailbox::Mailbox;
use crate::priority::Priority;
use crate::spill::{SpillQueue, SpillStats};
use crate::supervisor::{GaveUp, InitFailed, RestartIntensity, SubtreeKind, SubtreeStopped};

/// Most workers a pool may have.
pub const MAX_POOL_SIZE: usize = 1 << 20;

/// The part of a pool shared by its handles and its actor.
pub(crate) struct PoolShared<M> {
    pub(crate) name: Arc<str>,
    /// The workers that take new messages. Replaced whole on resize (by the
    /// pool actor only), read lock-free by every send.
    members: ArcSwap<Vec<AgentRef<M>>>,
    /// Workers retiring: out of `members`, still draining. Control plane
    /// only (touched on resize and restart), hence a plain mutex.
    retiring: Mutex<Vec<AgentRef<M>>>,
    /// Round-robin cursor; an atomic so that every handle clone shares it.
    next: AtomicUsize,
    pub(crate) mailbox_cfg: MailboxConfig,
    /// The live pool actor; swapped when the pool actor restarts.
    actor: ArcSwapOption<ActorRef<PoolMsg>>,
    /// Worker restarts since the pool was spawned. Here, not in the pool
    /// actor's state, so that the count survives a restart of the pool
    /// actor itself; an atomic because `PoolRef` reads it without a round trip.
    restarts: AtomicU64,
    /// Shared by every worker (see [`crate::spawn`]); set at spawn for a
    /// managed pool, or on first use (a preemption).
    pub(crate) signals: std::sync::OnceLock<Arc<crate::spawn::AgentSignals>>,
    /// The disk spill behind the workers' low lanes, for a spilling pool
    /// (see [`crate::spill`]).
    pub(crate) spill: Option<Arc<SpillQueue<M>>>,
}

/// A handle to a pool. Cheap to clone.
pub struct PoolRef<M> {
    shared: Arc<PoolShared<M>>,
}

impl<M> Clone for PoolRef<M> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<M> std::fmt::Debug for PoolRef<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolRef")
            .field("name", &self.shared.name)
            .field("size", &self.shared.members.load().len())
            .finish()
    }
}

impl<M: Send + 'static> PoolRef<M> {
    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The workers currently taking messages (a snapshot).
    pub fn members(&self) -> Arc<Vec<AgentRef<M>>> {
        self.shared.members.load_full()
    }

    /// Number of workers taking messages.
    pub fn size(&self) -> usize {
        self.shared.members.load().len()
    }

    /// Messages admitted to every worker and not yet taken, per lane.
    pub fn depths(&self) -> [usize; 3] {
        let mut d = [0; 3];
        for w in self
            .shared
            .members
            .load()
            .iter()
            .chain(self.shared.retiring.lock().iter())
        {
            for (acc, x) in d.iter_mut().zip(w.depths()) {
                *acc += x;
            }
        }
        d
    }

    /// Messages handled by current workers.
    pub fn handled(&self) -> u64 {
        self.shared.members.load().iter().map(AgentRef::handled).sum()
    }

    /// Admits `msg` to some worker's lane now, trying each worker once
    /// (round-robin start), or gives it back. A low message to a spilling
    /// pool whose workers' low lanes are full is spilled to disk instead
    /// (see [`crate::spill`]); `Full` then means the spill is full too.
    pub fn try_send(&self, msg: M, priority: Priority) -> Result<(), SendError<M>> {
        match &self.shared.spill {
            Some(spill) if priority == Priority::Low => self.admit_or_spill(spill, msg),
            _ => self.try_send_lanes(msg, priority),
        }
    }

    /// [`Self::try_send`] through the spill: in FIFO order, to a lane or
    /// to disk; rings the workers when it spilled.
    fn admit_or_spill(&self, spill: &SpillQueue<M>, msg: M) -> Result<(), SendError<M>> {
        if self.shared.members.load().is_empty() {
            // Stopped: nobody would take it from the spill in this process.
            return Err(SendError::Closed(msg));
        }
        if spill.admit_or_spill(msg, |m| self.try_send_lanes(m, Priority::Low))? {
            // Workers that found nothing went idle: the next one to look
            // takes it. Under load their doorbells are already set, and a
            // ring is one load.
            for worker in self.shared.members.load().iter() {
                worker.mailbox.ring();
            }
        }
        Ok(())
    }

    fn try_send_lanes(&self, mut msg: M, priority: Priority) -> Result<(), SendError<M>> {
        let members = self.shared.members.load();
        let n = members.len();
        if n == 0 {
            return Err(SendError::Closed(msg));
        }
        let start = self.shared.next.fetch_add(1, Ordering::Relaxed);
        let mut any_open = false;
        for i in 0..n {
            match members[(start + i) % n].try_send(msg, priority) {
                Ok(()) => return Ok(()),
                Err(SendError::Full(m)) => {
                    any_open = true;
                    msg = m;
                }
                Err(e) => msg = e.into_inner(),
            }
        }
        if any_open {
            Err(SendError::Full(msg))
        } else {
            Err(SendError::Closed(msg))
        }
    }

    /// Admits `msg` to some worker, waiting for room up to the lane's
    /// timeout (for a spilling pool's low message: waiting only when the
    /// spill is full, see [`Self::try_send`]).
    pub async fn send(&self, msg: M, priority: Priority) -> Result<(), SendError<M>> {
        let timeout = self.shared.mailbox_cfg.lane(priority).timeout;
        self.send_timeout(msg, priority, timeout).await
    }

    /// Admits `msg` to some worker, waiting for room up to `timeout`.
    pub async fn send_timeout(&self, msg: M, priority: Priority, timeout: Duration) -> Result<(), SendError<M>> {
        let deadline = crate::mailbox::deadline_after(timeout);
        if let Some(spill) = self.shared.spill.as_ref().filter(|_| priority == Priority::Low) {
            return self.spill_timeout(spill, msg, deadline).await;
        }
        let mut msg = match self.try_send(msg, priority) {
            Err(SendError::Full(m)) => m,
            other => return other,
        };
        loop {
            let target = {
                let members = self.shared.members.load();
                if members.is_empty() {
                    return Err(SendError::Closed(msg));
                }
                let start = self.shared.next.fetch_add(1, Ordering::Relaxed);
                members[start % members.len()].clone()
            };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match target.send_timeout(msg, priority, left).await {
                // The worker retired while we waited: pick another.
                Err(SendError::Closed(m)) => msg = m,
                other => return other,
            }
        }
    }

    /// A low send to a spilling pool: the spill's order holds while waiting,
    /// so the sender waits for room on disk (freed as spilled messages are
    /// acknowledged), not for a slot in a lane.
    async fn spill_timeout(
        &self,
        spill: &SpillQueue<M>,
        mut msg: M,
        deadline: tokio::time::Instant,
    ) -> Result<(), SendError<M>> {
        loop {
            // Registered before the attempt, so room freed in between wakes us.
            let (notified, waiting) = spill.park();
            match self.admit_or_spill(spill, msg) {
                Err(SendError::Full(m)) => msg = m,
                other => return other,
            }
            let woke = tokio::time::timeout_at(deadline, notified).await;
            drop(waiting);
            if woke.is_err() {
                return Err(SendError::Timeout(msg));
            }
        }
    }

    /// Request/reply with some worker; see [`AgentRef::ask`].
    pub async fn ask<R, F>(&self, make: F, priority: Priority, deadline: Duration) -> Result<R, AskError>
    where
        F: FnOnce(Reply<R>) -> M,
    {
        if deadline.is_zero() {
            // Refused up front, as `AgentRef::ask` does: see there.
            return Err(AskError::Deadline(deadline));
        }
        let (reply, rx) = Reply::channel();
        let exchange = async {
            self.send_timeout(make(reply), priority, deadline).await?;
            rx.await.map_err(|_| AskError::NoReply)
        };
        match tokio::time::timeout(deadline, exchange).await {
            Ok(r) => r,
            Err(_) => Err(AskError::Deadline(deadline)),
        }
    }

    /// Grows or shrinks the pool to `size` workers. Shrinking returns once
    /// the retired workers have handled every message they admitted.
    pub async fn resize(&self, size: usize) -> Result<usize, PoolError> {
        let actor = self.actor()?;
        ractor::call!(actor, PoolMsg::Resize, size).map_err(|_| PoolError::Gone)?
    }

    /// The pool's handler statistics (every worker records into them),
    /// created on the first call; `None` for a pool spawned without
    /// signals (through a bare node rather than a resource manager), whose
    /// handler time is not measured.
    pub fn handler_stats(&self) -> Option<Arc<crate::spawn::HandlerStats>> {
        self.shared.signals.get().map(|s| s.handler_stats())
    }

    /// Each lane's capacity per worker (high, normal, low).
    pub fn lane_capacities(&self) -> [usize; 3] {
        let m = &self.shared.mailbox_cfg;
        [Priority::High, Priority::Normal, Priority::Low].map(|p| m.lane(p).capacity)
    }

    /// The spill's counters, for a spilling pool.
    pub fn spill_stats(&self) -> Option<SpillStats> {
        self.shared.spill.as_ref().map(|s| s.stats())
    }

    /// Worker restarts since the pool was spawned (kept across restarts of
    /// the pool actor itself).
    pub fn restarts(&self) -> u64 {
        self.shared.restarts.load(Ordering::Relaxed)
    }

    /// The pool's supervision counters.
    pub async fn stats(&self) -> Result<PoolStats, PoolError> {
        let actor = self.actor()?;
        ractor::call!(actor, PoolMsg::Stats).map_err(|_| PoolError::Gone)
    }

    /// Stops the pool for good, gracefully: every worker admits nothing
    /// more, handles what it admitted and stops; the pool is not restarted.
    pub fn stop(&self) -> Result<(), PoolError> {
        self.actor()?.cast(PoolMsg::Retire).map_err(|_| PoolError::Gone)
    }

    /// Gives every worker a preemption notice (see [`AgentRef::preempt`]).
    /// `false` if the pool already had one.
    pub fn preempt(&self, notice: crate::spawn::Preemption) -> bool {
        let signals = Arc::clone(self.shared.signals.get_or_init(Default::default));
        if !signals.preempt(notice) {
            return false;
        }
        let members = self.shared.members.load_full();
        let retiring = self.shared.retiring.lock().clone();
        for worker in members.iter().chain(retiring.iter()) {
            // Workers of a managed pool already share these signals.
            let _ = worker.mailbox.signals.set(Arc::clone(&signals));
            if let Some(actor) = worker.mailbox.current_actor() {
                // Stopped or restarting if this fails; a restarted worker
                // hears of the notice on start.
                let _ = actor.cast(HostMsg::Preempted);
            }
        }
        true
    }

    fn actor(&self) -> Result<ActorRef<PoolMsg>, PoolError> {
        self.shared
            .actor
            .load_full()
            .map(|a| (*a).clone())
            .ok_or(PoolError::Gone)
    }
}

/// Pool counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStats {
    /// Workers taking messages.
    pub size: usize,
    /// Workers still draining after a shrink.
    pub retiring: usize,
    /// Worker restarts since the pool started.
    pub restarts: u64,
    /// Messages spilled to disk and taken back, for a spilling pool.
    pub spill: Option<SpillStats>,
}

/// Control messages to a pool's actor.
#[derive(Debug)]
pub enum PoolMsg {
    /// Resize to the given number of workers.
    Resize(usize, RpcReplyPort<Result<usize, PoolError>>),
    /// Report counters.
    Stats(RpcReplyPort<PoolStats>),
    /// Retire every worker, then stop.
    Retire,
    /// Fails the pool actor itself (tests of its restart).
    #[cfg(test)]
    Fail,
}

impl ractor::Message for PoolMsg {}

/// The pool actor's configuration.
pub(crate) struct AgentPool<A: Agent> {
    pub(crate) agent: Arc<A>,
    pub(crate) shared: Arc<PoolShared<A::Msg>>,
    pub(crate) supervision: SupervisionConfig,
    pub(crate) initial: usize,
}

impl<A: Agent> Clone for AgentPool<A> {
    fn clone(&self) -> Self {
        Self {
            agent: Arc::clone(&self.agent),
            shared: Arc::clone(&self.shared),
            supervision: self.supervision.clone(),
            initial: self.initial,
        }
    }
}

struct Worker<M> {
    agent: AgentRef<M>,
    index: usize,
    restarts: u32,
    retiring: bool,
}

/// A shrink waiting for its retiring workers: (still draining, reply).
type ResizeWaiter<M> = (Vec<AgentRef<M>>, RpcReplyPort<Result<usize, PoolError>>);

/// The pool actor's state.
pub(crate) struct PoolState<M> {
    workers: HashMap<ActorId, Worker<M>>,
    intensity: RestartIntensity,
    next_index: usize,
    /// Resizes waiting for retiring workers: (workers still draining, reply).
    waiting: Vec<ResizeWaiter<M>>,
    stopping: bool,
}

impl<A: Agent> AgentPool<A> {
    pub(crate) fn new_shared(
        name: Arc<str>,
        mailbox_cfg: MailboxConfig,
        signals: Option<Arc<crate::spawn::AgentSignals>>,
        spill: Option<Arc<SpillQueue<A::Msg>>>,
    ) -> Arc<PoolShared<A::Msg>> {
        let cell = std::sync::OnceLock::new();
        if let Some(signals) = signals {
            // Fresh cell: cannot fail.
            let _ = cell.set(signals);
        }
        Arc::new(PoolShared {
            name,
            members: ArcSwap::from_pointee(Vec::new()),
            retiring: Mutex::new(Vec::new()),
            next: AtomicUsize::new(0),
            mailbox_cfg,
            actor: ArcSwapOption::empty(),
            restarts: AtomicU64::new(0),
            signals: cell,
            spill,
        })
    }

    /// Closes every worker's lanes and drops what they had admitted (the
    /// pool is gone for good); returns how many messages were dropped.
    pub(crate) fn discard_all(shared: &PoolShared<A::Msg>) -> u64 {
        let members = shared.members.swap(Arc::new(Vec::new()));
        let retiring: Vec<AgentRef<A::Msg>> = shared.retiring.lock().clone();
        members
            .iter()
            .chain(retiring.iter())
            .map(|agent| agent.mailbox.discard())
            .sum()
    }

    pub(crate) fn handle(shared: Arc<PoolShared<A::Msg>>) -> PoolRef<A::Msg> {
        PoolRef { shared }
    }

    async fn spawn_worker(
        &self,
        pool: &ActorCell,
        agent: &AgentRef<A::Msg>,
        index: usize,
        restarts: u32,
    ) -> Result<ActorId, SpawnErr> {
        let host = AgentHost {
            agent: Arc::clone(&self.agent),
            mailbox: Arc::clone(&agent.mailbox),
            name: Arc::clone(&self.shared.name),
            worker: index,
            drain_batch: self.shared.mailbox_cfg.drain_batch,
            aging_after: self.shared.mailbox_cfg.aging_after,
        };
        let (r, _) = Actor::spawn_linked(None, host, restarts, pool.clone()).await?;
        Ok(r.get_id())
    }

    fn publish(&self, state: &PoolState<A::Msg>) {
        let mut members: Vec<(usize, AgentRef<A::Msg>)> = state
            .workers
            .values()
            .filter(|w| !w.retiring)
            .map(|w| (w.index, w.agent.clone()))
            .collect();
        members.sort_by_key(|(i, _)| *i);
        self.shared
            .members
            .store(Arc::new(members.into_iter().map(|(_, a)| a).collect()));
    }

    fn live(state: &PoolState<A::Msg>) -> usize {
        state.workers.values().filter(|w| !w.retiring).count()
    }

    async fn grow(
        &self,
        myself: &ActorRef<PoolMsg>,
        state: &mut PoolState<A::Msg>,
        to: usize,
    ) -> Result<(), PoolError> {
        // Published once, after every new worker is up: republishing per
        // worker made growing a pool quadratic in its size.
        let mut live = Self::live(state);
        let mut result = Ok(());
        state.workers.reserve(to.saturating_sub(live));
        while live < to {
            let index = state.next_index;
            state.next_index += 1;
            let mailbox = Arc::new(Mailbox::new(Arc::clone(&self.shared.name), &self.shared.mailbox_cfg));
            if let Some(signals) = self.shared.signals.get() {
                // Fresh mailbox: the cell is empty, so this cannot fail.
                let _ = mailbox.signals.set(Arc::clone(signals));
            }
            if let Some(spill) = &self.shared.spill {
                // Fresh mailbox, as above.
                let _ = mailbox.spill.set(Arc::clone(spill));
            }
            let agent = AgentRef::from_mailbox(mailbox);
            match self.spawn_worker(&myself.get_cell(), &agent, index, 0).await {
                Ok(id) => {
                    state.workers.insert(
                        id,
                        Worker {
                            agent,
                            index,
                            restarts: 0,
                            retiring: false,
                        },
                    );
                    live += 1;
                }
                Err(e) => {
                    result = Err(crate::supervisor::spawn_error(&format!("{}[{index}]", self.shared.name), e).into());
                    break;
                }
            }
        }
        // Workers started before a failure take messages too.
        self.publish(state);
        result
    }

    /// Retires the highest-indexed workers down to `to`; returns them.
    fn shrink(&self, myself: &ActorRef<PoolMsg>, state: &mut PoolState<A::Msg>, to: usize) -> Vec<AgentRef<A::Msg>> {
        let mut live: Vec<(usize, ActorId)> = state
            .workers
            .iter()
            .filter(|(_, w)| !w.retiring)
            .map(|(id, w)| (w.index, *id))
            .collect();
        live.sort();
        let mut retired = Vec::new();
        for (_, id) in live.into_iter().skip(to) {
            if let Some(w) = state.workers.get_mut(&id) {
                w.retiring = true;
                retired.push(w.agent.clone());
            }
        }
        // Out of the snapshot first, so that new sends go elsewhere...
        self.publish(state);
        self.shared.retiring.lock().extend(retired.iter().cloned());
        // ...then close, here and not only when the worker reads `Retire`:
        // a worker that fails before reading it loses the request with its
        // ractor mailbox, and its restarted instance then knows it is
        // retiring only from the closed lanes (see `AgentHost::post_start`).
        // Without this it would live on as a normal worker outside the
        // snapshot, and the resize would wait for it forever...
        for agent in &retired {
            agent.mailbox.close();
        }
        // ...and have each one drain what it admitted, then stop.
        for cell in myself.get_children() {
            if state.workers.get(&cell.get_id()).is_some_and(|w| w.retiring) {
                // A worker that is already gone will be accounted for by its
                // termination event.
                let _ = cell.send_message(HostMsg::Retire);
            }
        }
        retired
    }

    fn worker_gone(&self, state: &mut PoolState<A::Msg>, agent: &AgentRef<A::Msg>) {
        self.shared.retiring.lock().retain(|a| a != agent);
        let live = Self::live(state);
        let mut i = 0;
        while i < state.waiting.len() {
            state.waiting[i].0.retain(|a| a != agent);
            if state.waiting[i].0.is_empty() {
                let (_, reply) = state.waiting.swap_remove(i);
                // The resizer may have stopped waiting; the resize is done regardless.
                let _ = reply.send(Ok(live));
            } else {
                i += 1;
            }
        }
    }
}

impl<A: Agent> Actor for AgentPool<A> {
    type Msg = PoolMsg;
    type State = PoolState<A::Msg>;
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<PoolMsg>, _: ()) -> Result<Self::State, ActorProcessingErr> {
        self.shared.actor.store(Some(Arc::new(myself.clone())));
        let mut state = PoolState {
            workers: HashMap::new(),
            intensity: RestartIntensity::new(self.supervision.max_restarts, self.supervision.within),
            next_index: 0,
            waiting: Vec::new(),
            stopping: false,
        };
        // After a restart of the pool itself, the snapshot still lists the
        // workers' lanes: host them again so nothing admitted is lost.
        let existing = self.shared.members.load_full();
        let retiring: Vec<AgentRef<A::Msg>> = self.shared.retiring.lock().clone();
        for (agent, retiring) in existing
            .iter()
            .map(|a| (a, false))
            .chain(retiring.iter().map(|a| (a, true)))
        {
            let index = state.next_index;
            state.next_index += 1;
            let id = self.spawn_worker(&myself.get_cell(), agent, index, 1).await?;
            state.workers.insert(
                id,
                Worker {
                    agent: agent.clone(),
                    index,
                    restarts: 1,
                    retiring,
                },
            );
        }
        if state.workers.is_empty() {
            match self.grow(&myself, &mut state, self.initial).await {
                Ok(()) => {}
                // A worker's `init` failed: the pool fails to start with
                // that error, not as if it had panicked.
                Err(PoolError::Spawn(SpawnError::Init { source, .. })) => {
                    myself.stop_children(Some("pool failed to start".into()));
                    return Err(Box::new(InitFailed(source)));
                }
                Err(other) => {
                    myself.stop_children(Some("pool failed to start".into()));
                    return Err(Box::new(other));
                }
            }
        }
        self.publish(&state);
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<PoolMsg>,
        msg: PoolMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            PoolMsg::Resize(size, reply) => {
                if size == 0 {
                    let _ = reply.send(Err(PoolError::ZeroSize(size)));
                } else if size > MAX_POOL_SIZE {
                    let _ = reply.send(Err(PoolError::TooLarge {
                        asked: size,
                        max: MAX_POOL_SIZE,
                    }));
                } else if state.stopping {
                    let _ = reply.send(Err(PoolError::Gone));
                } else if size >= Self::live(state) {
                    let result = self.grow(&myself, state, size).await.map(|()| Self::live(state));
                    let _ = reply.send(result);
                } else {
                    let retired = self.shrink(&myself, state, size);
                    state.waiting.push((retired, reply));
                }
            }
            PoolMsg::Stats(reply) => {
                let _ = reply.send(PoolStats {
                    size: Self::live(state),
                    retiring: state.workers.len() - Self::live(state),
                    restarts: self.shared.restarts.load(Ordering::Relaxed),
                    spill: self.shared.spill.as_ref().map(|s| s.stats()),
                });
            }
            #[cfg(test)]
            PoolMsg::Fail => return Err("pool actor failed on request".into()),
            PoolMsg::Retire => {
                state.stopping = true;
                self.shrink(&myself, state, 0);
                if state.workers.is_empty() {
                    myself.stop(Some("retired".into()));
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<PoolMsg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, err) => {
                let Some(mut worker) = state.workers.remove(&cell.get_id()) else {
                    return Ok(());
                };
                tracing::warn!(pool = %self.shared.name, worker = worker.index, error = %err, "worker failed");
                loop {
                    if let Err(restarts) = state.intensity.record(Instant::now()) {
                        // The pool gives up as one subtree: its workers stop,
                        // what they admitted is dropped (and counted), and
                        // its supervisor reports it without restarting it.
                        myself.stop_children(Some("pool gave up".into()));
                        let discarded = worker.agent.mailbox.discard() + Self::discard_all(&self.shared);
                        return Err(Box::new(GaveUp(SubtreeStopped {
                            subtree: self.shared.name.to_string(),
                            kind: SubtreeKind::Pool,
                            restarts,
                            within: state.intensity.within(),
                            last_error: format!("worker {}: {err}", worker.index),
                            discarded,
                        })));
                    }
                    worker.restarts += 1;
                    self.shared.restarts.fetch_add(1, Ordering::Relaxed);
                    worker.agent.mailbox.counters.restarts.fetch_add(1, Ordering::Relaxed);
                    match self
                        .spawn_worker(&myself.get_cell(), &worker.agent, worker.index, worker.restarts)
                        .await
                    {
                        Ok(id) => {
                            state.workers.insert(id, worker);
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(pool = %self.shared.name, error = %e, "worker failed to restart")
                        }
                    }
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                if let Some(worker) = state.workers.remove(&cell.get_id()) {
                    worker.agent.mailbox.detach();
                    self.worker_gone(state, &worker.agent);
                    if !worker.retiring {
                        // Stopped without being asked to: keep the snapshot honest.
                        self.publish(state);
                    }
                }
                if state.stopping && state.workers.is_empty() {
                    myself.stop(Some("retired".into()));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
