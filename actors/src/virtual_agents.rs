//! Virtual agents: an agent addressed by a key is activated by its first
//! message, passivated once idle (its state saved as a snapshot, or
//! dropped when it has none) and activated again by its next message, so
//! a node addresses any number of keys while only the active ones are
//! resident.
//!
//! # Behaviour
//!
//! - **Addressing**: [`VirtualAgentsHandle::send`] (or
//!   [`deliver`](VirtualAgentsHandle::deliver), which waits until the
//!   message is handled, or [`ask`](VirtualAgentsHandle::ask)) names a
//!   key. A key that is not resident is activated: its snapshot is loaded
//!   from the [`SnapshotStore`] and given to [`VirtualAgent::activate`].
//!   Nothing is kept for a key that is not resident: a key costs memory
//!   only while it is active.
//! - **Order**: each activation is one lightweight task that handles its
//!   messages one at a time, in the order they were sent; different keys
//!   run concurrently.
//! - **Passivation**: an activation with nothing to do for
//!   [`idle_timeout`](VirtualAgentsConfig::idle_timeout) (checked every
//!   quarter of it, so between 1 and 1¼ times the timeout) is passivated:
//!   [`VirtualAgent::snapshot`] is saved, or, when it returns `None`, any
//!   saved snapshot of the key is removed. The messages it had accepted
//!   are handled first. A message for a key being passivated waits until
//!   the snapshot is saved, then activates it again from that snapshot.
//! - **Bound**: with [`max_resident`](VirtualAgentsConfig::max_resident),
//!   a key that needs activating when that many are resident waits for
//!   room, and the least recently used idle activation is passivated early
//!   to make it. Keys wait in arrival order. The resident count never
//!   exceeds the bound (an activation being passivated still counts).
//! - **Backpressure**: at most
//!   [`max_pending`](VirtualAgentsConfig::max_pending) messages are
//!   accepted and not yet handled, across all keys; `send` waits for room,
//!   [`try_send`](VirtualAgentsHandle::try_send) gives the message back
//!   ([`SendError::Full`]).
//! - **Failures**: a panic in [`VirtualAgent::handle`] drops that key's
//!   activation without saving it (its state may be half-changed); the
//!   message that panicked fails ([`HandleError::Panicked`]), the panic is
//!   counted and published ([`VirtualEvent::Panicked`]), and the messages
//!   queued behind it reactivate the key from its last saved snapshot.
//!   Other keys are not affected. An activation that cannot start (a
//!   damaged snapshot, a store error, an `activate` that fails or panics)
//!   fails the messages waiting for it with [`HandleError::Activation`]
//!   and is published; the next message tries again. A snapshot that
//!   cannot be saved is published ([`VirtualEvent::SaveFailed`]): the
//!   key's state since its last save is lost.
//! - **Stop**: [`VirtualAgentsHandle::passivate_all`] passivates every
//!   activation and answers once none is resident; a host stopped with its
//!   node waits for its activations to save their snapshots.
//! - **Cluster**: [`VirtualWork`] is a cluster
//!   [`WorkHandler`](crate::cluster_member::WorkHandler): keyed work for a
//!   key is decoded (bincode) and delivered to the key's virtual agent on
//!   its owner node, and acknowledged once that agent has handled it.
//!
//! A host restarted by its supervisor after a failure resumes where it
//! was: which keys are resident lives in its arguments, its activations
//! (tasks of their own) run on, and handles reach the new instance by its
//! name.
//!
//! # Layout
//!
//! | file | what it holds |
//! |---|---|
//! | `virtual_agents.rs` | the [`VirtualAgent`] trait, configuration, errors, events, the handle |
//! | `virtual_agents/host.rs` | the [`VirtualAgents`] actor: which keys are resident, activation and passivation |
//! | `virtual_agents/activation.rs` | one key's activation: load, handle in order, save |
//! | `virtual_agents/idle.rs` | the idle activations, least recently used first |
//! | `virtual_agents/store.rs` | [`SnapshotStore`], [`MemoryStore`], [`StoreError`] |
//! | `virtual_agents/redb_store.rs` | [`RedbStore`]: durable snapshots with checksums |
//! | `virtual_agents/cluster.rs` | [`VirtualWork`]: the cluster hook |
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use nexus_swarm_actors::virtual_agents::{MemoryStore, VirtualAgent, VirtualAgents, VirtualAgentsArgs, VirtualAgentsConfig};
//! use nexus_swarm_runtime::prelude::*;
//!
//! /// Counts what it is told; its count outlives passivation.
//! struct Counter(u64);
//!
//! enum CounterMsg {
//!     Add(u64),
//!     Get(Reply<u64>),
//! }
//!
//! impl VirtualAgent for Counter {
//!     type Msg = CounterMsg;
//!     type Context = ();
//!
//!     fn activate(_: &(), _key: &str, snapshot: Option<Vec<u8>>) -> Result<Self, HandlerError> {
//!         let count = match snapshot {
//!             Some(bytes) => u64::from_le_bytes(bytes.as_slice().try_into()?),
//!             None => 0,
//!         };
//!         Ok(Counter(count))
//!     }
//!
//!     async fn handle(&mut self, msg: CounterMsg) -> Result<(), HandlerError> {
//!         match msg {
//!             CounterMsg::Add(n) => self.0 += n,
//!             CounterMsg::Get(reply) => reply.send(self.0),
//!         }
//!         Ok(())
//!     }
//!
//!     fn snapshot(&self) -> Option<Vec<u8>> {
//!         Some(self.0.to_le_bytes().to_vec())
//!     }
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Node::start(NexusConfig::default()).await?;
//! let args = VirtualAgentsArgs::new(VirtualAgentsConfig::default(), Arc::new(MemoryStore::new()), ())?;
//! let counters = VirtualAgents::<Counter>::start(&node, "counters", args).await?;
//!
//! counters.send("user-7", CounterMsg::Add(2)).await?;
//! counters.send("user-7", CounterMsg::Add(3)).await?;
//! let count = counters.ask("user-7", CounterMsg::Get, Duration::from_secs(1)).await?;
//! assert_eq!(count, 5);
//!
//! counters.passivate_all().await?; // the count is saved; nothing is resident
//! assert_eq!(counters.resident(), 0);
//! let count = counters.ask("user-7", CounterMsg::Get, Duration::from_secs(1)).await?;
//! assert_eq!(count, 5);
//! assert_eq!(counters.activations(), 2);
//! node.shutdown(Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```

mod activation;
mod cluster;
mod host;
mod idle;
mod redb_store;
mod store;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use nexus_swarm_runtime::agent_ref::Reply;
use nexus_swarm_runtime::config::ConfigError;
use nexus_swarm_runtime::error::HandlerError;
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, oneshot};

pub use cluster::{VirtualWork, encode_work};
pub use host::{HostMsg, VirtualAgents, VirtualAgentsState};
pub use redb_store::{RedbStore, SNAPSHOTS_TABLE};
pub use store::{CorruptReason, MemoryStore, SnapshotStore, StoreError};

/// Events a subscriber may fall behind by before it loses the oldest.
pub const EVENT_BUFFER: usize = 1024;

/// An agent addressed by a key, activated on demand. One value per
/// resident key; it handles that key's messages one at a time.
pub trait VirtualAgent: Send + Sized + 'static {
    /// The messages it handles.
    type Msg: Send + 'static;

    /// What every activation is built with: its dependencies (handles,
    /// settings), given once to [`VirtualAgentsArgs::new`]. `()` for none.
    type Context: Send + Sync + 'static;

    /// Builds the activation of `key` from its last saved snapshot (`None`
    /// for a key never saved, or one whose agent kept no state). An error
    /// (say, a snapshot that does not decode) fails the messages waiting
    /// for it with [`HandleError::Activation`].
    fn activate(ctx: &Self::Context, key: &str, snapshot: Option<Vec<u8>>) -> Result<Self, HandlerError>;

    /// Handles one message. An error fails that message (the sender of a
    /// [`deliver`](VirtualAgentsHandle::deliver) sees it) and keeps the
    /// activation; a panic drops the activation unsaved.
    fn handle(&mut self, msg: Self::Msg) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// The state to save on passivation; `None` for a stateless agent
    /// (nothing is saved, and any earlier snapshot of the key is removed).
    fn snapshot(&self) -> Option<Vec<u8>>;
}

/// The `[virtual_agents]` settings of a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VirtualAgentsConfig {
    /// How long an activation may have nothing to do before it is
    /// passivated. Default: 60 s.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Most activations resident at once (`None`: no bound). Default: none.
    pub max_resident: Option<usize>,
    /// Most messages accepted and not yet handled, across all keys.
    /// Default: 10,000.
    pub max_pending: usize,
}

impl Default for VirtualAgentsConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(60),
            max_resident: None,
            max_pending: 10_000,
        }
    }
}

impl VirtualAgentsConfig {
    /// Checks every field: a zero timeout or bound is refused, naming the
    /// field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &str, value: String, reason: &str| ConfigError::Invalid {
            field: format!("virtual_agents.{field}"),
            value,
            reason: reason.to_string(),
        };
        if self.idle_timeout.is_zero() {
            return Err(invalid("idle_timeout", "0s".into(), "must be above zero"));
        }
        if self.max_resident == Some(0) {
            return Err(invalid("max_resident", "0".into(), "must be at least 1 (or left out)"));
        }
        if self.max_pending == 0 {
            return Err(invalid("max_pending", "0".into(), "must be at least 1"));
        }
        if self.max_pending > Semaphore::MAX_PERMITS {
            return Err(invalid(
                "max_pending",
                self.max_pending.to_string(),
                "above the most a semaphore can count",
            ));
        }
        Ok(())
    }
}

/// A message could not be accepted; it is given back.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum SendError<M> {
    /// `max_pending` messages are already waiting (`try_send` only).
    #[error("virtual agents host is full")]
    Full(M),
    /// The host is not running (stopped, or between a failure and its
    /// restart).
    #[error("virtual agents host is not running")]
    Unavailable(M),
}

impl<M> SendError<M> {
    /// The message that was not accepted.
    pub fn into_inner(self) -> M {
        match self {
            SendError::Full(m) | SendError::Unavailable(m) => m,
        }
    }
}

impl<M> std::fmt::Debug for SendError<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Full(_) => f.write_str("Full(..)"),
            SendError::Unavailable(_) => f.write_str("Unavailable(..)"),
        }
    }
}

/// Why an activation could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ActivationError {
    /// Its snapshot could not be loaded (damaged, or the store failed).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// [`VirtualAgent::activate`] refused the snapshot.
    #[error("activate failed: {0}")]
    Agent(#[source] HandlerError),
    /// [`VirtualAgent::activate`] panicked.
    #[error("activate panicked: {0}")]
    Panicked(String),
}

/// Why a message was not handled (or not answered).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandleError {
    /// The host is not running.
    #[error("virtual agents host is not running")]
    Unavailable,
    /// The key could not be activated.
    #[error("agent {key:?} could not be activated: {source}")]
    Activation {
        /// The key.
        key: String,
        /// Why.
        #[source]
        source: Arc<ActivationError>,
    },
    /// The agent panicked handling the message; its activation was dropped.
    #[error("agent {key:?} panicked: {message}")]
    Panicked {
        /// The key.
        key: String,
        /// The panic's message.
        message: String,
    },
    /// The agent returned an error for the message.
    #[error("agent {key:?} failed: {source}")]
    Failed {
        /// The key.
        key: String,
        /// Its error.
        #[source]
        source: HandlerError,
    },
    /// Not handled (or answered) within the deadline; it may still be.
    #[error("agent {key:?}: no answer within {waited_ms} ms")]
    Timeout {
        /// The key.
        key: String,
        /// How long the caller waited.
        waited_ms: u64,
    },
    /// The agent handled the request and dropped its reply port.
    #[error("agent {key:?} handled the request without answering")]
    NoAnswer {
        /// The key.
        key: String,
    },
    /// The host stopped before the message was handled.
    #[error("the host stopped before agent {key:?} handled the message")]
    Dropped {
        /// The key.
        key: String,
    },
}

/// Something that went wrong with one key, published to subscribers.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum VirtualEvent {
    /// The key's activation panicked and was dropped unsaved.
    Panicked {
        /// The key.
        key: Arc<str>,
        /// The panic's message.
        message: String,
    },
    /// The key could not be activated.
    ActivationFailed {
        /// The key.
        key: Arc<str>,
        /// Why.
        error: Arc<ActivationError>,
    },
    /// The key's snapshot could not be saved on passivation.
    SaveFailed {
        /// The key.
        key: Arc<str>,
        /// Why.
        error: Arc<StoreError>,
    },
}

/// A host's counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VirtualStats {
    /// Activations resident now (including ones being passivated).
    pub resident: usize,
    /// The most that were ever resident at once.
    pub peak_resident: usize,
    /// Activations started.
    pub activations: u64,
    /// Activations passivated: saved, dropped as stateless, or ended with
    /// a snapshot that could not be saved (also counted in `save_failures`).
    pub passivations: u64,
    /// Messages handled (with `Ok` or an error; not the ones that panicked).
    pub handled: u64,
    /// Activations dropped by a panic.
    pub panics: u64,
    /// Activations that could not start.
    pub activation_failures: u64,
    /// Snapshots that could not be saved.
    pub save_failures: u64,
}

/// Counters written by the host and its activations, read by handles
/// without a message: atomics, each written by one party at a time.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    resident: AtomicUsize,
    peak_resident: AtomicUsize,
    activations: AtomicU64,
    passivations: AtomicU64,
    handled: AtomicU64,
    panics: AtomicU64,
    activation_failures: AtomicU64,
    save_failures: AtomicU64,
}

impl Counters {
    fn read(&self) -> VirtualStats {
        VirtualStats {
            resident: self.resident.load(Ordering::Relaxed),
            peak_resident: self.peak_resident.load(Ordering::Relaxed),
            activations: self.activations.load(Ordering::Relaxed),
            passivations: self.passivations.load(Ordering::Relaxed),
            handled: self.handled.load(Ordering::Relaxed),
            panics: self.panics.load(Ordering::Relaxed),
            activation_failures: self.activation_failures.load(Ordering::Relaxed),
            save_failures: self.save_failures.load(Ordering::Relaxed),
        }
    }
}

/// What the host and its handles share.
#[derive(Debug)]
pub(crate) struct Shared {
    counters: Counters,
    events: broadcast::Sender<VirtualEvent>,
    /// One permit per message accepted and not yet handled: the bound on
    /// everything queued anywhere in the host (its mailbox, waiting keys,
    /// activation queues).
    permits: Arc<Semaphore>,
    max_pending: usize,
}

/// One message on its way to a key's activation.
pub(crate) struct Job<M> {
    msg: M,
    /// Told the outcome, for `deliver` and `ask`.
    done: Option<oneshot::Sender<Result<(), HandleError>>>,
    /// Released when the job is handled or dropped.
    _permit: OwnedSemaphorePermit,
}

impl<M> Job<M> {
    /// Tells the sender, if it waits, how it went. A sender that stopped
    /// waiting (deadline) no longer cares.
    fn finish(self, outcome: Result<(), HandleError>) {
        if let Some(done) = self.done {
            let _ = done.send(outcome);
        }
    }
}

/// What a host starts from. Cloning shares its counters and store, which
/// is how a restarted host keeps them.
pub struct VirtualAgentsArgs<A: VirtualAgent> {
    config: VirtualAgentsConfig,
    store: Arc<dyn SnapshotStore>,
    shared: Arc<Shared>,
    core: Arc<parking_lot::Mutex<host::Core<A>>>,
}

impl<A: VirtualAgent> Clone for VirtualAgentsArgs<A> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
            store: Arc::clone(&self.store),
            shared: Arc::clone(&self.shared),
            core: Arc::clone(&self.core),
        }
    }
}

impl<A: VirtualAgent> std::fmt::Debug for VirtualAgentsArgs<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtualAgentsArgs")
            .field("config", &self.config)
            .field("store", &self.store)
            .finish()
    }
}

impl<A: VirtualAgent> VirtualAgentsArgs<A> {
    /// A host with `config` (validated) keeping snapshots in `store`, its
    /// agents activated with `ctx`.
    pub fn new(
        config: VirtualAgentsConfig,
        store: Arc<dyn SnapshotStore>,
        ctx: A::Context,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let shared = Arc::new(Shared {
            counters: Counters::default(),
            events,
            permits: Arc::new(Semaphore::new(config.max_pending)),
            max_pending: config.max_pending,
        });
        let core = host::Core::new(config.clone(), Arc::clone(&store), Arc::new(ctx), Arc::clone(&shared));
        Ok(Self {
            config,
            store,
            shared,
            core: Arc::new(parking_lot::Mutex::new(core)),
        })
    }
}

/// A client of a running host, which it finds by name on each call (so it
/// reaches a restarted host). Cheap to clone.
pub struct VirtualAgentsHandle<A> {
    name: Arc<str>,
    shared: Arc<Shared>,
    _agent: std::marker::PhantomData<fn() -> A>,
}

impl<A> Clone for VirtualAgentsHandle<A> {
    fn clone(&self) -> Self {
        Self {
            name: Arc::clone(&self.name),
            shared: Arc::clone(&self.shared),
            _agent: std::marker::PhantomData,
        }
    }
}

impl<A> std::fmt::Debug for VirtualAgentsHandle<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtualAgentsHandle").field("name", &self.name).finish()
    }
}

fn elapsed_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl<A: VirtualAgent> VirtualAgentsHandle<A> {
    /// The host's registered name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The running host, if the actor registered under the name is one
    /// of ours (checked, so that a cast can only fail by the host
    /// stopping).
    fn actor(&self) -> Option<ractor::ActorRef<HostMsg<A>>> {
        let cell = ractor::registry::where_is(&self.name)?;
        (cell.is_message_type_of::<HostMsg<A>>() == Some(true)).then(|| cell.into())
    }

    /// Hands `job` for `key` to the host, or gives the message back.
    fn submit(&self, key: &str, job: Job<A::Msg>) -> Result<(), SendError<A::Msg>> {
        let Some(actor) = self.actor() else {
            return Err(SendError::Unavailable(job.msg));
        };
        match actor.cast(HostMsg(host::Cmd::Job(Arc::from(key), job))) {
            Ok(()) => Ok(()),
            Err(ractor::MessagingErr::SendErr(HostMsg(host::Cmd::Job(_, job)))) => Err(SendError::Unavailable(job.msg)),
            // A local cast fails only by giving back what it was given
            // (`SendErr`), or for an actor of another message type, which
            // `actor` ruled out.
            Err(_) => unreachable!("a cast to a local host of the checked type gives its message back"),
        }
    }

    /// Sends `msg` to `key`'s agent, activating it if it is not resident;
    /// waits while `max_pending` messages are already accepted.
    pub async fn send(&self, key: &str, msg: A::Msg) -> Result<(), SendError<A::Msg>> {
        let Ok(permit) = Arc::clone(&self.shared.permits).acquire_owned().await else {
            return Err(SendError::Unavailable(msg));
        };
        self.submit(
            key,
            Job {
                msg,
                done: None,
                _permit: permit,
            },
        )
    }

    /// [`send`](Self::send) without waiting: [`SendError::Full`] when
    /// `max_pending` messages are already accepted.
    pub fn try_send(&self, key: &str, msg: A::Msg) -> Result<(), SendError<A::Msg>> {
        let Ok(permit) = Arc::clone(&self.shared.permits).try_acquire_owned() else {
            return Err(SendError::Full(msg));
        };
        self.submit(
            key,
            Job {
                msg,
                done: None,
                _permit: permit,
            },
        )
    }

    /// Sends `msg` to `key`'s agent and waits until it has handled it
    /// (its [`handle`](VirtualAgent::handle) returned `Ok`), for at most
    /// `timeout` in all. The message is lost if the host is not running.
    pub async fn deliver(&self, key: &str, msg: A::Msg, timeout: Duration) -> Result<(), HandleError> {
        let start = tokio::time::Instant::now();
        let wait = async {
            let permit = Arc::clone(&self.shared.permits)
                .acquire_owned()
                .await
                .map_err(|_| HandleError::Unavailable)?;
            let (tx, rx) = oneshot::channel();
            self.submit(
                key,
                Job {
                    msg,
                    done: Some(tx),
                    _permit: permit,
                },
            )
            .map_err(|_| HandleError::Unavailable)?;
            match rx.await {
                Ok(outcome) => outcome,
                Err(_) => Err(HandleError::Dropped { key: key.to_string() }),
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(outcome) => outcome,
            Err(_) => Err(HandleError::Timeout {
                key: key.to_string(),
                waited_ms: elapsed_ms(start.elapsed()),
            }),
        }
    }

    /// Sends `key`'s agent the request `make` builds around a reply port
    /// and waits for the answer, for at most `timeout` in all.
    pub async fn ask<T: Send + 'static>(
        &self,
        key: &str,
        make: impl FnOnce(Reply<T>) -> A::Msg,
        timeout: Duration,
    ) -> Result<T, HandleError> {
        let start = tokio::time::Instant::now();
        let (reply, answer) = Reply::channel();
        self.deliver(key, make(reply), timeout).await?;
        let left = timeout.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, answer).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => Err(HandleError::NoAnswer { key: key.to_string() }),
            Err(_) => Err(HandleError::Timeout {
                key: key.to_string(),
                waited_ms: elapsed_ms(start.elapsed()),
            }),
        }
    }

    /// Passivates every activation (each handles what it accepted, then
    /// saves its snapshot) and answers once none is resident.
    pub async fn passivate_all(&self) -> Result<(), HandleError> {
        let actor = self.actor().ok_or(HandleError::Unavailable)?;
        match actor.call(|r| HostMsg(host::Cmd::PassivateAll(r)), None).await {
            Ok(ractor::rpc::CallResult::Success(())) => Ok(()),
            _ => Err(HandleError::Unavailable),
        }
    }

    /// Makes the host panic in its handler, as a bug would, so that a test
    /// can watch its supervisor restart it. Only with the
    /// `fault-injection` feature.
    #[cfg(any(test, feature = "fault-injection"))]
    #[doc(hidden)]
    pub fn inject_panic(&self) -> Result<(), HandleError> {
        let actor = self.actor().ok_or(HandleError::Unavailable)?;
        actor
            .cast(HostMsg(host::Cmd::InjectPanic))
            .map_err(|_| HandleError::Unavailable)
    }

    /// Every event (panics, failed activations and saves) from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<VirtualEvent> {
        self.shared.events.subscribe()
    }

    /// The counters now.
    pub fn stats(&self) -> VirtualStats {
        self.shared.counters.read()
    }

    /// Activations resident now.
    pub fn resident(&self) -> usize {
        self.shared.counters.resident.load(Ordering::Relaxed)
    }

    /// Activations started so far.
    pub fn activations(&self) -> u64 {
        self.shared.counters.activations.load(Ordering::Relaxed)
    }

    /// Activations passivated so far.
    pub fn passivations(&self) -> u64 {
        self.shared.counters.passivations.load(Ordering::Relaxed)
    }

    /// Messages accepted and not yet handled.
    pub fn pending(&self) -> usize {
        let free = self.shared.permits.available_permits();
        self.max_pending().saturating_sub(free)
    }

    fn max_pending(&self) -> usize {
        self.shared.max_pending
    }
}
