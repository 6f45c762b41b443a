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

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use parking_lot::Mutex;
use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr, SupervisionEvent};
use tokio::time::Instant;

use crate::agent::Agent;
use crate::agent_ref::{AgentRef, Reply};
use crate::config::{MailboxConfig, SupervisionConfig};
use crate::error::{AskError, PoolError, SendError, SpawnError, SupervisionError};
use crate::host::{AgentHost, HostMsg};
use crate::mailbox::Mailbox;
use crate::priority::Priority;
use crate::supervisor::RestartIntensity;

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
    /// (round-robin start), or gives it back.
    pub fn try_send(&self, mut msg: M, priority: Priority) -> Result<(), SendError<M>> {
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

    /// Admits `msg` to some worker, waiting for room up to the lane's timeout.
    pub async fn send(&self, msg: M, priority: Priority) -> Result<(), SendError<M>> {
        let timeout = self.shared.mailbox_cfg.lane(priority).timeout;
        self.send_timeout(msg, priority, timeout).await
    }

    /// Admits `msg` to some worker, waiting for room up to `timeout`.
    pub async fn send_timeout(&self, msg: M, priority: Priority, timeout: Duration) -> Result<(), SendError<M>> {
        let deadline = tokio::time::Instant::now() + timeout;
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

    /// Request/reply with some worker; see [`AgentRef::ask`].
    pub async fn ask<R, F>(&self, make: F, priority: Priority, deadline: Duration) -> Result<R, AskError>
    where
        F: FnOnce(Reply<R>) -> M,
    {
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

    /// The pool's supervision counters.
    pub async fn stats(&self) -> Result<PoolStats, PoolError> {
        let actor = self.actor()?;
        ractor::call!(actor, PoolMsg::Stats).map_err(|_| PoolError::Gone)
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
    restarts: u64,
    /// Resizes waiting for retiring workers: (workers still draining, reply).
    waiting: Vec<ResizeWaiter<M>>,
    stopping: bool,
}

impl<A: Agent> AgentPool<A> {
    pub(crate) fn new_shared(name: &str, mailbox_cfg: MailboxConfig) -> Arc<PoolShared<A::Msg>> {
        Arc::new(PoolShared {
            name: name.into(),
            members: ArcSwap::from_pointee(Vec::new()),
            retiring: Mutex::new(Vec::new()),
            next: AtomicUsize::new(0),
            mailbox_cfg,
            actor: ArcSwapOption::empty(),
        })
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
        while Self::live(state) < to {
            let index = state.next_index;
            state.next_index += 1;
            let mailbox = Arc::new(Mailbox::new(&self.shared.name, &self.shared.mailbox_cfg));
            let agent = AgentRef::from_mailbox(mailbox);
            let id = self
                .spawn_worker(&myself.get_cell(), &agent, index, 0)
                .await
                .map_err(|e| SpawnError::Start {
                    name: format!("{}[{index}]", self.shared.name),
                    reason: e.to_string(),
                })?;
            state.workers.insert(
                id,
                Worker {
                    agent,
                    index,
                    restarts: 0,
                    retiring: false,
                },
            );
            self.publish(state);
        }
        Ok(())
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
        // ...then close and drain.
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
            restarts: 0,
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
            self.grow(&myself, &mut state, self.initial).await?;
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
                    restarts: state.restarts,
                });
            }
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
                        let e = SupervisionError::IntensityExceeded {
                            child: format!("{}[{}]", self.shared.name, worker.index),
                            restarts,
                            within: state.intensity.within(),
                        };
                        tracing::error!(error = %e, "pool escalates");
                        myself.stop_children(Some("pool escalated".into()));
                        return Err(Box::new(e));
                    }
                    worker.restarts += 1;
                    state.restarts += 1;
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
