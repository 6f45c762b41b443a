//! [`VirtualAgents`]: the host actor. It knows which keys are resident,
//! forwards each message to its key's activation (starting one when
//! needed), passivates idle activations and makes room under
//! `max_resident`. It never runs agent code: activations are tasks of
//! their own ([`super::activation`]).

use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use nexus_swarm_runtime::error::SpawnError;
use nexus_swarm_runtime::node::Node;
use nexus_swarm_runtime::supervisor::ChildSpec;
use parking_lot::Mutex;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::activation::{Activation, Outcome};
use super::idle::IdleList;
use super::{
    HandleError, Job, Shared, SnapshotStore, VirtualAgent, VirtualAgentsArgs, VirtualAgentsConfig, VirtualAgentsHandle,
    VirtualEvent,
};

/// The host actor for agents of type `A`. Its configuration comes with
/// [`VirtualAgentsArgs`]; what it owns is in [`VirtualAgentsState`].
pub struct VirtualAgents<A> {
    _agent: PhantomData<fn() -> A>,
}

impl<A> VirtualAgents<A> {
    /// The actor.
    pub fn new() -> Self {
        Self { _agent: PhantomData }
    }
}

impl<A> Default for VirtualAgents<A> {
    fn default() -> Self {
        Self::new()
    }
}

impl<A> Clone for VirtualAgents<A> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<A> std::fmt::Debug for VirtualAgents<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VirtualAgents")
    }
}

/// A message to the host (sent by its handles and activations only).
pub struct HostMsg<A: VirtualAgent>(pub(crate) Cmd<A>);

/// What a [`HostMsg`] asks.
pub(crate) enum Cmd<A: VirtualAgent> {
    /// A message for a key (from a handle).
    Job(Arc<str>, Job<A::Msg>),
    /// An activation emptied its queue after handling `handled` messages
    /// (from the activation).
    Idle {
        /// The key.
        key: Arc<str>,
        /// Which activation of the key.
        generation: u64,
        /// Messages it handled so far.
        handled: u64,
    },
    /// An activation ended, handing back the messages it did not handle
    /// (from the activation).
    Ended {
        /// The key.
        key: Arc<str>,
        /// Which activation of the key.
        generation: u64,
        /// Accepted and not handled (after a panic or a failed start).
        returned: Vec<Job<A::Msg>>,
        /// How it ended.
        outcome: Outcome,
    },
    /// Passivate the activations idle past the timeout (from the ticker).
    Tick,
    /// Passivate everything; answers once nothing is resident.
    PassivateAll(RpcReplyPort<()>),
    /// Panic in the handler, as a bug would (supervision tests).
    #[cfg(any(test, feature = "fault-injection"))]
    InjectPanic,
}

impl<A: VirtualAgent> std::fmt::Debug for HostMsg<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Cmd::Job(key, _) => write!(f, "Job({key})"),
            Cmd::Idle {
                key,
                generation,
                handled,
            } => write!(f, "Idle({key}#{generation}, {handled})"),
            Cmd::Ended {
                key,
                generation,
                returned,
                outcome,
            } => write!(f, "Ended({key}#{generation}, {} returned, {outcome:?})", returned.len()),
            Cmd::Tick => f.write_str("Tick"),
            Cmd::PassivateAll(_) => f.write_str("PassivateAll"),
            #[cfg(any(test, feature = "fault-injection"))]
            Cmd::InjectPanic => f.write_str("InjectPanic"),
        }
    }
}

impl<A: VirtualAgent> ractor::Message for HostMsg<A> {}

/// Where one key stands.
enum Slot<M> {
    /// Resident and taking messages.
    Active {
        generation: u64,
        // Unbounded because the host must never wait on one key: the
        // bound is the shared `max_pending` permits every job holds.
        tx: mpsc::UnboundedSender<Job<M>>,
        forwarded: u64,
        task: JoinHandle<()>,
    },
    /// Resident and ending (saving, or after a panic); new messages wait.
    Closing {
        generation: u64,
        waiting: Vec<Job<M>>,
        task: JoinHandle<()>,
    },
    /// Not resident, waiting for room under `max_resident`.
    Queued { waiting: Vec<Job<M>> },
}

/// Every key that is resident or has messages waiting. Kept in the
/// host's arguments, so that a host restarted after a failure resumes it:
/// the activations it started go on and report to the new instance.
pub(crate) struct Core<A: VirtualAgent> {
    config: VirtualAgentsConfig,
    store: Arc<dyn SnapshotStore>,
    ctx: Arc<A::Context>,
    shared: Arc<Shared>,
    slots: HashMap<Arc<str>, Slot<A::Msg>>,
    idle: IdleList,
    /// Keys waiting for room, in arrival order.
    room: VecDeque<Arc<str>>,
    /// `Active` and `Closing` slots.
    resident: usize,
    /// `Closing` slots.
    closing: usize,
    generation: u64,
    /// Callers of `passivate_all` waiting for nothing to be resident.
    draining: Vec<RpcReplyPort<()>>,
}

impl<A: VirtualAgent> Core<A> {
    pub(crate) fn new(
        config: VirtualAgentsConfig,
        store: Arc<dyn SnapshotStore>,
        ctx: Arc<A::Context>,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            config,
            store,
            ctx,
            shared,
            slots: HashMap::new(),
            idle: IdleList::default(),
            room: VecDeque::new(),
            resident: 0,
            closing: 0,
            generation: 0,
            draining: Vec::new(),
        }
    }
}

impl<A: VirtualAgent> std::fmt::Debug for Core<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("resident", &self.resident)
            .field("closing", &self.closing)
            .field("idle", &self.idle.len())
            .field("waiting_for_room", &self.room.len())
            .finish()
    }
}

/// The host's state: its keys (shared with its arguments) and its ticker.
pub struct VirtualAgentsState<A: VirtualAgent> {
    // Locked by the host, one message at a time and never across an
    // await; a mutex (not actor state) because it lives in the arguments,
    // which the supervisor keeps for restarts.
    core: Arc<Mutex<Core<A>>>,
    ticker: JoinHandle<()>,
}

impl<A: VirtualAgent> std::fmt::Debug for VirtualAgentsState<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtualAgentsState")
            .field("core", &*self.core.lock())
            .finish()
    }
}

impl<A: VirtualAgent> Actor for VirtualAgents<A> {
    type Msg = HostMsg<A>;
    type State = VirtualAgentsState<A>;
    type Arguments = VirtualAgentsArgs<A>;

    async fn pre_start(
        &self,
        myself: ActorRef<HostMsg<A>>,
        args: VirtualAgentsArgs<A>,
    ) -> Result<VirtualAgentsState<A>, ActorProcessingErr> {
        let every = (args.config.idle_timeout / 4).max(Duration::from_millis(1));
        let me = myself.clone();
        let ticker = tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if me.cast(HostMsg(Cmd::Tick)).is_err() {
                    return;
                }
            }
        });
        Ok(VirtualAgentsState {
            core: Arc::clone(&args.core),
            ticker,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<HostMsg<A>>,
        state: &mut VirtualAgentsState<A>,
    ) -> Result<(), ActorProcessingErr> {
        state.ticker.abort();
        // Every activation handles what it accepted and saves its
        // snapshot before the host counts as stopped; messages still
        // waiting for an activation are dropped (their senders see
        // `HandleError::Dropped`).
        let tasks = state.core.lock().stop();
        for task in tasks {
            // A task that panicked has nothing left to save.
            let _ = task.await;
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<HostMsg<A>>,
        msg: HostMsg<A>,
        state: &mut VirtualAgentsState<A>,
    ) -> Result<(), ActorProcessingErr> {
        #[cfg(any(test, feature = "fault-injection"))]
        if matches!(msg.0, Cmd::InjectPanic) {
            panic!("fault injected into the virtual agents host");
        }
        let mut core = state.core.lock();
        let core = &mut *core;
        match msg.0 {
            Cmd::Job(key, job) => core.job(&myself, key, job),
            Cmd::Idle {
                key,
                generation,
                handled,
            } => core.idle(key, generation, handled),
            Cmd::Ended {
                key,
                generation,
                returned,
                outcome,
            } => core.ended(&myself, key, generation, returned, outcome),
            Cmd::Tick => core.tick(),
            #[cfg(any(test, feature = "fault-injection"))]
            Cmd::InjectPanic => {}
            Cmd::PassivateAll(reply) => {
                core.draining.push(reply);
                let active: Vec<Arc<str>> = core
                    .slots
                    .iter()
                    .filter(|(_, s)| matches!(s, Slot::Active { .. }))
                    .map(|(k, _)| Arc::clone(k))
                    .collect();
                for key in active {
                    core.passivate(&key);
                }
            }
        }
        core.make_room(&myself);
        // Published before `passivate_all` is answered, so that its caller
        // reads the count it waited for.
        core.publish();
        core.answer_drained();
        Ok(())
    }
}

impl<A: VirtualAgent> Core<A> {
    /// A message for `key`: forwarded, or waiting for its activation.
    fn job(&mut self, myself: &ActorRef<HostMsg<A>>, key: Arc<str>, job: Job<A::Msg>) {
        match self.slots.get_mut(&key) {
            Some(Slot::Active {
                generation,
                tx,
                forwarded,
                ..
            }) => {
                self.idle.busy(&key);
                let generation = *generation;
                *forwarded += 1;
                if let Err(mpsc::error::SendError(job)) = tx.send(job) {
                    // The activation closed its queue (it panicked or could
                    // not start): the job waits for its `Ended`.
                    let Some(Slot::Active { task, .. }) = self.slots.remove(&key) else {
                        return;
                    };
                    self.closing += 1;
                    self.slots.insert(
                        key,
                        Slot::Closing {
                            generation,
                            waiting: vec![job],
                            task,
                        },
                    );
                }
            }
            Some(Slot::Closing { waiting, .. } | Slot::Queued { waiting }) => waiting.push(job),
            None => self.admit(myself, key, vec![job]),
        }
    }

    /// Activates `key` with `jobs`, or queues it for room.
    fn admit(&mut self, myself: &ActorRef<HostMsg<A>>, key: Arc<str>, jobs: Vec<Job<A::Msg>>) {
        let has_room = self.config.max_resident.is_none_or(|max| self.resident < max);
        if has_room && self.room.is_empty() {
            self.activate(myself, key, jobs);
        } else {
            self.room.push_back(Arc::clone(&key));
            self.slots.insert(key, Slot::Queued { waiting: jobs });
        }
    }

    /// Starts the activation of `key` with `jobs` queued.
    fn activate(&mut self, myself: &ActorRef<HostMsg<A>>, key: Arc<str>, jobs: Vec<Job<A::Msg>>) {
        self.generation += 1;
        let generation = self.generation;
        let (tx, rx) = mpsc::unbounded_channel();
        let forwarded = jobs.len() as u64;
        for job in jobs {
            // The receiver is right here: the send cannot fail.
            let _ = tx.send(job);
        }
        let activation = Activation::<A> {
            key: Arc::clone(&key),
            generation,
            store: Arc::clone(&self.store),
            ctx: Arc::clone(&self.ctx),
            shared: Arc::clone(&self.shared),
            host: myself.clone(),
            host_name: myself.get_name().map(Arc::from),
            rx,
        };
        let task = tokio::spawn(activation.run());
        self.resident += 1;
        let slot = if self.draining.is_empty() {
            Slot::Active {
                generation,
                tx,
                forwarded,
                task,
            }
        } else {
            // Draining: it handles what it was given, then passivates.
            self.closing += 1;
            Slot::Closing {
                generation,
                waiting: Vec::new(),
                task,
            }
        };
        self.slots.insert(key, slot);
    }

    /// Closes `key`'s activation: it handles what it accepted, saves and
    /// reports `Ended`.
    fn passivate(&mut self, key: &Arc<str>) {
        self.idle.busy(key);
        let Some(Slot::Active { generation, task, .. }) = self.slots.remove(key) else {
            return;
        };
        // Dropping the sender closes the activation's queue.
        self.closing += 1;
        self.slots.insert(
            Arc::clone(key),
            Slot::Closing {
                generation,
                waiting: Vec::new(),
                task,
            },
        );
    }

    /// An activation emptied its queue: idle if it handled all it was sent.
    fn idle(&mut self, key: Arc<str>, generation: u64, handled: u64) {
        let caught_up = matches!(
            self.slots.get(&key),
            Some(Slot::Active { generation: g, forwarded, .. }) if *g == generation && *forwarded == handled
        );
        if caught_up {
            self.idle.idle(key, Instant::now());
        }
    }

    /// An activation ended: counted, published, and what waits for the key
    /// activates it again (or fails, if it could not start).
    fn ended(
        &mut self,
        myself: &ActorRef<HostMsg<A>>,
        key: Arc<str>,
        generation: u64,
        returned: Vec<Job<A::Msg>>,
        outcome: Outcome,
    ) {
        let waiting = match self.slots.remove(&key) {
            Some(Slot::Active { generation: g, .. }) if g == generation => Vec::new(),
            Some(Slot::Closing {
                generation: g, waiting, ..
            }) if g == generation => {
                self.closing -= 1;
                waiting
            }
            // Not this activation's slot (cannot happen: a key has one
            // activation at a time); leave it.
            Some(other) => {
                self.slots.insert(key, other);
                return;
            }
            None => return,
        };
        self.idle.busy(&key);
        self.resident -= 1;
        let mut jobs = returned;
        jobs.extend(waiting);
        let counters = &self.shared.counters;
        // Events without subscribers are fine: the counters keep the count.
        match outcome {
            Outcome::Passivated => {
                counters.passivations.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::SaveFailed(error) => {
                counters.passivations.fetch_add(1, Ordering::Relaxed);
                counters.save_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(key = %key, %error, "snapshot not saved");
                let _ = self.shared.events.send(VirtualEvent::SaveFailed {
                    key: Arc::clone(&key),
                    error,
                });
            }
            Outcome::Panicked(message) => {
                counters.panics.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(key = %key, %message, "virtual agent panicked; activation dropped");
                let _ = self.shared.events.send(VirtualEvent::Panicked {
                    key: Arc::clone(&key),
                    message,
                });
            }
            Outcome::ActivationFailed(error) => {
                counters.activation_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(key = %key, %error, "virtual agent not activated");
                for job in jobs.drain(..) {
                    job.finish(Err(HandleError::Activation {
                        key: key.to_string(),
                        source: Arc::clone(&error),
                    }));
                }
                let _ = self.shared.events.send(VirtualEvent::ActivationFailed {
                    key: Arc::clone(&key),
                    error,
                });
            }
        }
        if !jobs.is_empty() {
            self.admit(myself, key, jobs);
        }
    }

    /// Passivates the activations idle for the whole timeout.
    fn tick(&mut self) {
        let Some(cutoff) = Instant::now().checked_sub(self.config.idle_timeout) else {
            return;
        };
        for key in self.idle.pop_expired(cutoff) {
            self.passivate(&key);
        }
    }

    /// Activates keys waiting for room while there is some, and passivates
    /// the least recently used idle activations to make more.
    fn make_room(&mut self, myself: &ActorRef<HostMsg<A>>) {
        let Some(max) = self.config.max_resident else {
            return;
        };
        while self.resident < max {
            let Some(key) = self.room.pop_front() else {
                break;
            };
            if let Some(Slot::Queued { waiting }) = self.slots.remove(&key) {
                self.activate(myself, key, waiting);
            }
        }
        // Each activation already closing frees a place (or takes it again
        // for messages that came meanwhile, which then queue behind).
        let wanted = self.room.len().saturating_sub(self.closing);
        for _ in 0..wanted {
            let Some(key) = self.idle.pop_oldest() else {
                break;
            };
            self.passivate(&key);
        }
    }

    /// Answers `passivate_all` callers once nothing is resident.
    fn answer_drained(&mut self) {
        if self.resident == 0 && self.room.is_empty() {
            for reply in self.draining.drain(..) {
                // A caller that gave up no longer cares.
                let _ = reply.send(());
            }
        }
    }

    /// The host stops: every activation is closed (it handles what it
    /// accepted, then saves) and its task returned to be awaited; messages
    /// waiting for an activation are dropped (their senders see
    /// `HandleError::Dropped`).
    fn stop(&mut self) -> Vec<JoinHandle<()>> {
        let tasks = self
            .slots
            .drain()
            .filter_map(|(_, slot)| match slot {
                Slot::Active { task, .. } | Slot::Closing { task, .. } => Some(task),
                Slot::Queued { .. } => None,
            })
            .collect();
        self.idle = IdleList::default();
        self.room.clear();
        self.resident = 0;
        self.closing = 0;
        self.publish();
        tasks
    }

    /// Publishes the resident count.
    fn publish(&self) {
        let counters = &self.shared.counters;
        counters.resident.store(self.resident, Ordering::Relaxed);
        counters.peak_resident.fetch_max(self.resident, Ordering::Relaxed);
    }
}

impl<A: VirtualAgent> VirtualAgents<A> {
    /// A supervisor child spec for a host registered as `name`.
    pub fn child_spec(name: &str, args: VirtualAgentsArgs<A>) -> ChildSpec {
        crate::named::child_spec(name, Self::new(), args)
    }

    /// Starts a host under `node`'s supervisor, in its `system` subtree,
    /// registered as `name`, and returns its handle.
    pub async fn start(
        node: &Node,
        name: &str,
        args: VirtualAgentsArgs<A>,
    ) -> Result<VirtualAgentsHandle<A>, SpawnError> {
        let shared = Arc::clone(&args.shared);
        node.start_child(Self::child_spec(name, args)).await?;
        Ok(VirtualAgentsHandle {
            name: Arc::from(name),
            shared,
            _agent: PhantomData,
        })
    }
}
