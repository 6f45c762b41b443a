//! Supervision: failure domains with one-for-one or one-for-all restarts and
//! a restart intensity counted per subtree, OTP style.
//!
//! # The tree
//!
//! ```text
//! NodeSupervisor          escalates (stops the node) only when `system` gives up
//! ├── system              one-for-one; a child past its intensity stops the node
//! │   └── system actors   (router, quota keeper, scheduler, ledger, gateway, ...)
//! └── agents              one-for-one; a child past its intensity stops alone
//!     ├── Agent(name)     restarted alone; its own intensity
//!     ├── AgentPool(name) supervises its workers; its own intensity (see `crate::pool`)
//!     └── Group(name)     one-for-all: members live and die together; one intensity
//! ```
//!
//! Every child of a [`Supervisor`] is its own failure domain: its restarts
//! are counted in its own window ([`RestartIntensity`], from
//! [`SupervisionConfig`]), so a crash-looping agent uses up its own budget,
//! never its neighbours'. What happens past the limit depends on the domain:
//!
//! * under `agents`, the child alone is stopped: its lanes are closed, the
//!   messages they had admitted are discarded (each dropped request drops
//!   its [`Reply`](crate::agent_ref::Reply), so a waiting `ask` fails at
//!   once with `NoReply`, and senders parked for room get `Closed`), and a
//!   typed [`NodeEvent::SubtreeStopped`] says which subtree, why, after how
//!   many restarts, and how many admitted messages were discarded;
//! * under `system`, the system subtree gives up and fails, and the
//!   [`NodeSupervisor`] stops the node ([`NodeExit::Escalated`]): a runtime
//!   whose ledger or router cannot stay up must not pretend to run;
//! * a group ([`Strategy::OneForAll`]) restarts every member when one fails,
//!   counting one intensity for the whole group, and past it stops as one
//!   subtree with one event.
//!
//! Events are published on the node's [`EventSink`] (a bounded broadcast:
//! `Node::subscribe`) and logged at `error` level; when the program has
//! installed no `tracing` subscriber they are written to stderr instead, so
//! a stopped subtree is never silent.
//!
//! A child that stops normally is not restarted. Agents' lanes live outside
//! their actors, so what was admitted before a failure is handled by the
//! restarted instance. That holds during a shutdown too: a child that fails
//! while retiring is restarted (within its intensity) and asked to retire
//! again, so an agent that panics while draining at shutdown still handles
//! the rest of what it admitted.
//!
//! # Adoption
//!
//! Spawning an agent or a pool neither queues behind the supervisor nor
//! sends it a message: the caller starts the child itself, linked to the
//! supervisor's cell, and files its spec in the supervisor's [`Registry`]
//! (a map shared by the supervisor and the spawning tasks). The supervisor
//! reads the registry only when a supervision event arrives. A child may
//! fail before its spec is filed; the supervisor then notes the event in
//! the registry, and the spawner, finding it there, hands the spec over
//! with a cast ([`SupervisorMsg::Adopt`]) so that the supervisor replays
//! the event with it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;
use parking_lot::Mutex;
use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr, SupervisionEvent};
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::config::SupervisionConfig;
use crate::error::{SpawnError, SupervisionError};

/// Counts restarts in a sliding window (OTP's intensity and period).
///
/// Plain synchronous code: tests drive it with explicit instants.
#[derive(Debug, Clone)]
pub struct RestartIntensity {
    max_restarts: u32,
    within: Duration,
    history: VecDeque<Instant>,
}

impl RestartIntensity {
    /// Allows `max_restarts` restarts within any window of `within`.
    pub fn new(max_restarts: u32, within: Duration) -> Self {
        Self {
            max_restarts,
            within,
            history: VecDeque::new(),
        }
    }

    /// Records a restart at `now`. `Ok(n)` when it is allowed (`n` restarts
    /// now in the window), `Err(n)` when it exceeds the intensity.
    pub fn record(&mut self, now: Instant) -> Result<u32, u32> {
        while let Some(&oldest) = self.history.front() {
            if now.saturating_duration_since(oldest) >= self.within {
                self.history.pop_front();
            } else {
                break;
            }
        }
        self.history.push_back(now);
        let n = u32::try_from(self.history.len()).unwrap_or(u32::MAX);
        if n > self.max_restarts { Err(n) } else { Ok(n) }
    }

    /// The window restarts are counted in.
    pub fn within(&self) -> Duration {
        self.within
    }
}

/// Starts (or restarts) a child linked to the given supervisor cell. The
/// `u32` is how many times it has been restarted so far.
pub type StartFn = Arc<dyn Fn(ActorCell, u32) -> BoxFuture<'static, Result<ActorCell, SpawnErr>> + Send + Sync>;

/// Asks a child to stop gracefully (for agents: retire, handling every
/// admitted message first).
pub type RetireFn = Arc<dyn Fn(&ActorCell) + Send + Sync>;

/// What kind of subtree a supervised child is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SubtreeKind {
    /// One agent.
    Agent,
    /// An agent pool and its workers.
    Pool,
    /// A named group of agents that live and die together.
    Group,
    /// A system actor (router, quota keeper, ledger, ...).
    System,
}

impl fmt::Display for SubtreeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SubtreeKind::Agent => "agent",
            SubtreeKind::Pool => "pool",
            SubtreeKind::Group => "group",
            SubtreeKind::System => "system actor",
        })
    }
}

/// How a child is started, stopped gracefully, and cleared when it is gone
/// for good. Agents, pools and groups implement it inside the runtime;
/// other actors use [`ChildSpec::new`] / [`ChildSpec::for_actor`].
pub(crate) trait Supervised: Send + Sync + 'static {
    fn name(&self) -> &str;
    fn kind(&self) -> SubtreeKind;
    fn start(&self, supervisor: ActorCell, restarts: u32) -> BoxFuture<'static, Result<ActorCell, SpawnErr>>;
    /// Asks the running child to stop gracefully.
    fn retire(&self, cell: &ActorCell) {
        cell.stop(Some("shutdown".into()));
    }
    /// The child is gone for good: close its lanes and drop what they had
    /// admitted. Returns how many messages were dropped.
    fn discard(&self) -> u64 {
        0
    }
}

/// A child defined by closures.
struct FnChild {
    name: String,
    start: StartFn,
    retire: RetireFn,
}

impl Supervised for FnChild {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> SubtreeKind {
        SubtreeKind::System
    }

    fn start(&self, supervisor: ActorCell, restarts: u32) -> BoxFuture<'static, Result<ActorCell, SpawnErr>> {
        (self.start)(supervisor, restarts)
    }

    fn retire(&self, cell: &ActorCell) {
        (self.retire)(cell)
    }
}

/// How to start a child, and how to stop it gracefully. Cheap to clone.
#[derive(Clone)]
pub struct ChildSpec {
    pub(crate) inner: Arc<dyn Supervised>,
}

impl fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildSpec")
            .field("name", &self.inner.name())
            .field("kind", &self.inner.kind())
            .finish()
    }
}

impl ChildSpec {
    /// A spec started by `start`, whose graceful stop is a plain `stop`.
    pub fn new(name: impl Into<String>, start: StartFn) -> Self {
        Self {
            inner: Arc::new(FnChild {
                name: name.into(),
                start,
                retire: Arc::new(|cell: &ActorCell| cell.stop(Some("shutdown".into()))),
            }),
        }
    }

    /// The same spec with another graceful stop.
    pub fn with_retire(self, retire: RetireFn) -> Self {
        let name = self.inner.name().to_string();
        let inner = Arc::clone(&self.inner);
        let start: StartFn = Arc::new(move |sup, restarts| inner.start(sup, restarts));
        Self {
            inner: Arc::new(FnChild { name, start, retire }),
        }
    }

    /// A spec for any ractor actor that can be rebuilt from clones of its
    /// configuration and arguments.
    pub fn for_actor<T>(name: impl Into<String>, actor: T, args: T::Arguments) -> Self
    where
        T: Actor + Clone,
        T::Arguments: Clone + Sync,
    {
        let start: StartFn = Arc::new(move |sup: ActorCell, _restarts: u32| {
            let actor = actor.clone();
            let args = args.clone();
            Box::pin(async move {
                let (r, _) = Actor::spawn_linked(None, actor, args, sup).await?;
                Ok(r.get_cell())
            })
        });
        Self::new(name, start)
    }

    pub(crate) fn from_child(inner: Arc<dyn Supervised>) -> Self {
        Self { inner }
    }

    /// The child's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// Starts one instance linked to `supervisor`.
    pub(crate) fn start(
        &self,
        supervisor: ActorCell,
        restarts: u32,
    ) -> BoxFuture<'static, Result<ActorCell, SpawnErr>> {
        self.inner.start(supervisor, restarts)
    }
}

/// A child as reported by [`Node::children`](crate::node::Node::children).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildInfo {
    /// The spec's name.
    pub name: String,
    /// What it is.
    pub kind: SubtreeKind,
    /// Times it has been restarted (for a pool: the pool actor itself; its
    /// workers' restarts are in `PoolStats`).
    pub restarts: u32,
}

/// How a node supervisor ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeExit {
    /// Shut down on request.
    Shutdown,
    /// The system subtree gave up; the text says which child and why.
    Escalated(String),
}

/// A subtree that exceeded its restart intensity and was stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubtreeStopped {
    /// The agent's, pool's or group's name (for a system subtree: the
    /// system actor whose failures crossed the limit).
    pub subtree: String,
    /// What the subtree was.
    pub kind: SubtreeKind,
    /// Restarts counted in the window when it gave up (the failure that
    /// crossed the limit included).
    pub restarts: u32,
    /// The window restarts were counted in.
    pub within: Duration,
    /// The last failure, as reported by the actor (a panic message or the
    /// handler's error).
    pub last_error: String,
    /// Messages admitted to the subtree's lanes and never handled.
    pub discarded: u64,
}

impl fmt::Display for SubtreeStopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} stopped: {} restarts within {:?} exceeded its restart intensity (last failure: {}); {} admitted messages discarded",
            self.kind, self.subtree, self.restarts, self.within, self.last_error, self.discarded
        )
    }
}

/// What the supervision tree reports through [`EventSink`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeEvent {
    /// A subtree under `agents` gave up and was stopped alone; the node and
    /// every other subtree go on.
    SubtreeStopped(SubtreeStopped),
    /// The system subtree gave up and the node stopped.
    NodeEscalated {
        /// Which system actor and why.
        reason: String,
    },
}

impl fmt::Display for NodeEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeEvent::SubtreeStopped(s) => s.fmt(f),
            NodeEvent::NodeEscalated { reason } => write!(f, "node escalated: {reason}"),
        }
    }
}

/// Publishes [`NodeEvent`]s to every subscriber. Bounded: a subscriber that
/// falls more than 1,024 events behind is told how many it missed
/// (`RecvError::Lagged`) rather than making the tree wait.
#[derive(Debug, Clone)]
pub struct EventSink(broadcast::Sender<NodeEvent>);

impl Default for EventSink {
    fn default() -> Self {
        Self(broadcast::channel(1024).0)
    }
}

impl EventSink {
    /// A new receiver of every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.0.subscribe()
    }

    /// Logs the event at error level (to stderr when no `tracing` subscriber
    /// is installed) and publishes it.
    pub(crate) fn emit(&self, event: NodeEvent) {
        if tracing::dispatcher::has_been_set() {
            tracing::error!(event = %event, "supervision");
        } else {
            eprintln!("nexus: error: {event}");
        }
        // No subscriber is fine: the event has been logged.
        let _ = self.0.send(event);
    }
}

/// Names in use on a node: agents, pools and groups share one namespace,
/// system actors have another. A claim is released when the child it names
/// is gone for good (the spec that owns it is dropped).
#[derive(Debug, Clone, Default)]
pub(crate) struct Names(Arc<Mutex<HashSet<Arc<str>>>>);

impl Names {
    /// Claims `name`, or says it is taken. A plain mutex: claims happen once
    /// per spawn (control plane), never per message.
    pub(crate) fn claim(&self, name: &str) -> Result<NameClaim, SpawnError> {
        let name: Arc<str> = Arc::from(name);
        if !self.0.lock().insert(Arc::clone(&name)) {
            return Err(SpawnError::NameTaken { name: name.to_string() });
        }
        Ok(NameClaim {
            name,
            names: self.clone(),
        })
    }
}

/// A claimed name; released on drop.
#[derive(Debug)]
pub(crate) struct NameClaim {
    pub(crate) name: Arc<str>,
    names: Names,
}

impl Drop for NameClaim {
    fn drop(&mut self) {
        self.names.0.lock().remove(&self.name);
    }
}

/// The error an agent's `init` failure travels in through ractor's startup,
/// so that it is reported as [`SpawnError::Init`] and not as a panic.
#[derive(Debug)]
pub(crate) struct InitFailed(pub(crate) crate::error::HandlerError);

impl fmt::Display for InitFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "init failed: {}", self.0)
    }
}

impl std::error::Error for InitFailed {}

/// A subtree that gave up fails with this, so that its parent knows not to
/// restart it and reports it instead.
#[derive(Debug)]
pub(crate) struct GaveUp(pub(crate) SubtreeStopped);

impl fmt::Display for GaveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for GaveUp {}

/// Turns ractor's start failure into a typed [`SpawnError`].
pub(crate) fn spawn_error(name: &str, e: SpawnErr) -> SpawnError {
    match e {
        SpawnErr::StartupFailed(err) => match err.downcast::<InitFailed>() {
            Ok(init) => SpawnError::Init {
                name: name.to_string(),
                source: init.0,
            },
            Err(other) => SpawnError::Start {
                name: name.to_string(),
                reason: other.to_string(),
            },
        },
        other => SpawnError::Start {
            name: name.to_string(),
            reason: other.to_string(),
        },
    }
}

/// How a [`Supervisor`] restarts its children.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// A failed child is restarted alone, with its own restart intensity.
    OneForOne,
    /// When one child fails every child is restarted; one intensity counts
    /// the whole group.
    OneForAll,
}

/// What a [`Supervisor`] does when a child exceeds its restart intensity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// Stop that child alone and report it (`agents`).
    StopChild,
    /// Stop every child and fail, so that the parent decides (`system`, and
    /// groups, whose parent then reports the group as one stopped subtree).
    Escalate,
}

/// Control messages to a [`Supervisor`].
pub enum SupervisorMsg {
    /// Start a child and supervise it.
    StartChild(ChildSpec, RpcReplyPort<Result<ActorCell, SpawnError>>),
    /// Supervise a child that the sender has already started, linked to
    /// this supervisor.
    Adopt(ActorCell, ChildSpec),
    /// The current children.
    Children(RpcReplyPort<Vec<ChildInfo>>),
    /// Retire every child, wait for all of them to stop, then stop.
    Shutdown(RpcReplyPort<()>),
}

impl fmt::Debug for SupervisorMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SupervisorMsg::StartChild(spec, _) => write!(f, "StartChild({})", spec.name()),
            SupervisorMsg::Adopt(_, spec) => write!(f, "Adopt({})", spec.name()),
            SupervisorMsg::Children(_) => f.write_str("Children"),
            SupervisorMsg::Shutdown(_) => f.write_str("Shutdown"),
        }
    }
}

impl ractor::Message for SupervisorMsg {}

/// A supervisor of one failure domain (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct Supervisor;

/// Arguments of a [`Supervisor`].
#[derive(Debug, Clone)]
pub struct SupervisorArgs {
    /// For logs and events.
    pub name: Arc<str>,
    /// Restart intensity: per child (one-for-one) or per group (one-for-all).
    pub policy: SupervisionConfig,
    /// How children are restarted.
    pub strategy: Strategy,
    /// What happens past the intensity.
    pub give_up: GiveUp,
    /// Where stopped subtrees are reported.
    pub events: EventSink,
    /// The children, shared with the tasks that start them.
    pub registry: Arc<Registry>,
}

struct Child {
    spec: ChildSpec,
    restarts: u32,
    intensity: RestartIntensity,
    /// One-for-all: killed to be restarted with a failed sibling.
    restart_pending: bool,
}

/// A supervision event that arrived before the child's adoption.
enum Early {
    Failed(ActorProcessingErr),
    Terminated,
}

/// The children of one supervisor, shared with the tasks that start
/// children for it (see "Adoption" in the module docs). A plain mutex:
/// taken once per spawn and once per supervision event, never per message,
/// and never held across an await.
pub struct Registry {
    policy: SupervisionConfig,
    inner: Mutex<RegistryInner>,
}

#[derive(Default)]
struct RegistryInner {
    children: HashMap<ActorId, Child>,
    early: HashMap<ActorId, Early>,
    shutting_down: bool,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.inner.lock();
        f.debug_struct("Registry")
            .field("children", &inner.children.len())
            .field("early", &inner.early.len())
            .finish()
    }
}

/// What became of a child filed in a [`Registry`].
pub(crate) enum Adoption {
    /// Supervised from now on.
    Supervised,
    /// Supervised, but the supervisor is shutting down: retire it.
    Retire(ChildSpec),
    /// It already failed or stopped: hand the spec to the supervisor
    /// ([`SupervisorMsg::Adopt`]), which replays the event.
    Replay(ChildSpec),
}

impl Registry {
    /// An empty registry whose children get `policy`'s restart intensity.
    pub(crate) fn new(policy: SupervisionConfig) -> Self {
        Self {
            policy,
            inner: Mutex::new(RegistryInner::default()),
        }
    }

    fn child(&self, spec: ChildSpec) -> Child {
        Child {
            spec,
            restarts: 0,
            intensity: RestartIntensity::new(self.policy.max_restarts, self.policy.within),
            restart_pending: false,
        }
    }

    /// Files a child that the caller started, linked to the supervisor.
    pub(crate) fn adopt(&self, cell: &ActorCell, spec: ChildSpec) -> Adoption {
        let id = cell.get_id();
        let mut inner = self.inner.lock();
        if inner.early.contains_key(&id) {
            return Adoption::Replay(spec);
        }
        let retire = inner.shutting_down.then(|| spec.clone());
        inner.children.insert(id, self.child(spec));
        match retire {
            Some(spec) => Adoption::Retire(spec),
            None => Adoption::Supervised,
        }
    }

    fn insert(&self, id: ActorId, child: Child) {
        self.inner.lock().children.insert(id, child);
    }

    /// Takes the child out, or notes `early` for a child not filed yet.
    fn take_or_note(&self, id: ActorId, early: Early) -> Option<(Child, Early)> {
        let mut inner = self.inner.lock();
        match inner.children.remove(&id) {
            Some(child) => Some((child, early)),
            None => {
                inner.early.insert(id, early);
                None
            }
        }
    }

    fn take_early(&self, id: &ActorId) -> Option<Early> {
        self.inner.lock().early.remove(id)
    }

    fn is_empty(&self) -> bool {
        self.inner.lock().children.is_empty()
    }

    fn drain(&self) -> Vec<Child> {
        self.inner.lock().children.drain().map(|(_, c)| c).collect()
    }

    fn mark_restart_pending(&self, id: &ActorId) -> bool {
        match self.inner.lock().children.get_mut(id) {
            Some(child) => {
                child.restart_pending = true;
                true
            }
            None => false,
        }
    }

    fn spec_of(&self, id: &ActorId) -> Option<ChildSpec> {
        self.inner.lock().children.get(id).map(|c| c.spec.clone())
    }

    fn set_shutting_down(&self) {
        self.inner.lock().shutting_down = true;
    }

    fn list(&self) -> Vec<ChildInfo> {
        let mut list: Vec<ChildInfo> = self
            .inner
            .lock()
            .children
            .values()
            .map(|c| ChildInfo {
                name: c.spec.name().to_string(),
                kind: c.spec.inner.kind(),
                restarts: c.restarts,
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }
}

/// State of a [`Supervisor`].
pub struct SupervisorState {
    args: SupervisorArgs,
    registry: Arc<Registry>,
    /// One-for-all: the whole group's restarts.
    group: RestartIntensity,
    /// Set once a shutdown is asked for: everyone waiting for it. A list,
    /// because a second `Shutdown` must wait with the first, not replace
    /// (and so drop) the first caller's reply port.
    shutdown: Option<Vec<RpcReplyPort<()>>>,
}

impl Drop for SupervisorState {
    fn drop(&mut self) {
        // The supervisor is gone (stopped, or killed with the tree, when
        // `post_stop` does not run): its children are gone for good, and
        // dropping their specs closes their lanes and drops what those
        // admitted. The registry itself may outlive it (spawners hold it).
        drop(self.registry.drain());
    }
}

impl fmt::Debug for SupervisorState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SupervisorState")
            .field("name", &self.args.name)
            .field("registry", &self.registry)
            .field("shutting_down", &self.shutdown.is_some())
            .finish()
    }
}

impl Supervisor {
    fn new_child(state: &SupervisorState, spec: ChildSpec) -> Child {
        state.registry.child(spec)
    }

    /// Starts a child again after a failure (retrying failed starts, each
    /// counted), unless its intensity is used up: then the failure is
    /// handed back for the give-up path.
    async fn restart(
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        mut child: Child,
        mut error: String,
        counted: bool,
    ) -> Result<(), (Child, u32, String)> {
        let mut counted = counted;
        loop {
            if !counted {
                let record = match state.args.strategy {
                    Strategy::OneForOne => child.intensity.record(Instant::now()),
                    Strategy::OneForAll => state.group.record(Instant::now()),
                };
                if let Err(restarts) = record {
                    return Err((child, restarts, error));
                }
            }
            counted = false;
            child.restarts += 1;
            match child.spec.start(myself.get_cell(), child.restarts).await {
                Ok(cell) => {
                    tracing::info!(supervisor = %state.args.name, child = %child.spec.name(), restarts = child.restarts, "child restarted");
                    if state.shutdown.is_some() {
                        // Failed while retiring (maybe before it even read
                        // the request, which died with it): the new
                        // instance retires in its place, handling what its
                        // predecessor had admitted.
                        child.spec.inner.retire(&cell);
                    }
                    state.registry.insert(cell.get_id(), child);
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(supervisor = %state.args.name, child = %child.spec.name(), error = %e, "child failed to restart");
                    error = e.to_string();
                }
            }
        }
    }

    /// A child failed: restart it (one-for-one) or every child
    /// (one-for-all), or give up.
    async fn child_failed(
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        child: Child,
        error: ActorProcessingErr,
    ) -> Result<(), ActorProcessingErr> {
        // A subtree below that already gave up is reported, not restarted.
        let error = match error.downcast::<GaveUp>() {
            Ok(gave_up) => {
                let discarded = child.spec.inner.discard();
                let mut stopped = gave_up.0;
                stopped.discarded += discarded;
                return Self::give_up(myself, state, child, stopped);
            }
            Err(other) => other.to_string(),
        };
        tracing::warn!(supervisor = %state.args.name, child = %child.spec.name(), error = %error, "child failed");
        if state.args.strategy == Strategy::OneForAll {
            if let Err(restarts) = state.group.record(Instant::now()) {
                let stopped = SubtreeStopped {
                    subtree: state.args.name.to_string(),
                    kind: SubtreeKind::Group,
                    restarts,
                    within: state.group.within(),
                    last_error: format!("{}: {error}", child.spec.name()),
                    discarded: child.spec.inner.discard(),
                };
                return Self::give_up(myself, state, child, stopped);
            }
            // Siblings are killed and restarted when their termination is
            // reported; their lanes (and what they admitted) survive.
            for cell in myself.get_children() {
                if state.registry.mark_restart_pending(&cell.get_id()) {
                    cell.kill();
                }
            }
        }
        let counted = state.args.strategy == Strategy::OneForAll;
        Self::restart_or_give_up(myself, state, child, error, counted).await
    }

    async fn restart_or_give_up(
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        child: Child,
        error: String,
        counted: bool,
    ) -> Result<(), ActorProcessingErr> {
        let mut child = child;
        child.restart_pending = false;
        match Self::restart(myself, state, child, error, counted).await {
            Ok(()) => Ok(()),
            Err((child, restarts, last_error)) => {
                let stopped = SubtreeStopped {
                    subtree: child.spec.name().to_string(),
                    kind: child.spec.inner.kind(),
                    restarts,
                    within: child.intensity.within(),
                    last_error,
                    discarded: child.spec.inner.discard(),
                };
                Self::give_up(myself, state, child, stopped)
            }
        }
    }

    fn give_up(
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        child: Child,
        stopped: SubtreeStopped,
    ) -> Result<(), ActorProcessingErr> {
        match state.args.give_up {
            GiveUp::StopChild => {
                state.args.events.emit(NodeEvent::SubtreeStopped(stopped));
                // Dropping the spec releases the name and closes the lanes.
                drop(child);
                Self::finish_shutdown_if_done(myself, state);
                Ok(())
            }
            GiveUp::Escalate => {
                drop(child);
                let mut stopped = stopped;
                if state.args.strategy == Strategy::OneForAll {
                    stopped.subtree = state.args.name.to_string();
                    stopped.kind = SubtreeKind::Group;
                }
                myself.stop_children(Some("supervisor gave up".into()));
                for sibling in state.registry.drain() {
                    stopped.discarded += sibling.spec.inner.discard();
                }
                tracing::error!(supervisor = %state.args.name, "{stopped}");
                Err(Box::new(GaveUp(stopped)))
            }
        }
    }

    fn finish_shutdown_if_done(myself: &ActorRef<SupervisorMsg>, state: &mut SupervisorState) {
        if state.registry.is_empty() {
            if let Some(replies) = state.shutdown.take() {
                for reply in replies {
                    // The caller may have stopped waiting; shutting down is still right.
                    let _ = reply.send(());
                }
                myself.stop(Some("shutdown".into()));
            }
        }
    }

    async fn adopt(
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        cell: ActorCell,
        spec: ChildSpec,
    ) -> Result<(), ActorProcessingErr> {
        let child = Self::new_child(state, spec);
        match state.registry.take_early(&cell.get_id()) {
            Some(Early::Failed(error)) => Self::child_failed(myself, state, child, error).await,
            Some(Early::Terminated) => {
                drop(child);
                Self::finish_shutdown_if_done(myself, state);
                Ok(())
            }
            None => {
                if state.shutdown.is_some() {
                    child.spec.inner.retire(&cell);
                }
                state.registry.insert(cell.get_id(), child);
                Ok(())
            }
        }
    }
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        args: SupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        Ok(SupervisorState {
            group: RestartIntensity::new(args.policy.max_restarts, args.policy.within),
            registry: Arc::clone(&args.registry),
            args,
            shutdown: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        msg: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::StartChild(spec, reply) => {
                let result = if state.shutdown.is_some() {
                    Err(SpawnError::SupervisorGone)
                } else {
                    match spec.start(myself.get_cell(), 0).await {
                        Ok(cell) => {
                            let child = Self::new_child(state, spec);
                            state.registry.insert(cell.get_id(), child);
                            Ok(cell)
                        }
                        Err(e) => Err(spawn_error(spec.name(), e)),
                    }
                };
                // The requester may have given up; the child stays supervised.
                let _ = reply.send(result);
            }
            SupervisorMsg::Adopt(cell, spec) => Self::adopt(&myself, state, cell, spec).await?,
            SupervisorMsg::Children(reply) => {
                let _ = reply.send(state.registry.list());
            }
            SupervisorMsg::Shutdown(reply) => {
                if let Some(waiting) = &mut state.shutdown {
                    // Already retiring everyone: wait with the first caller.
                    waiting.push(reply);
                    return Ok(());
                }
                state.shutdown = Some(vec![reply]);
                // Children started but not filed yet are retired as they
                // are filed (`Adoption::Retire`).
                state.registry.set_shutting_down();
                for cell in myself.get_children() {
                    if let Some(spec) = state.registry.spec_of(&cell.get_id()) {
                        spec.inner.retire(&cell);
                    }
                }
                Self::finish_shutdown_if_done(&myself, state);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, err) => {
                let Some((child, Early::Failed(err))) = state.registry.take_or_note(cell.get_id(), Early::Failed(err))
                else {
                    return Ok(());
                };
                if child.restart_pending {
                    // Killed for a sibling's restart and failed on its way out.
                    Self::restart_or_give_up(&myself, state, child, err.to_string(), true).await?;
                } else {
                    Self::child_failed(&myself, state, child, err).await?;
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                match state
                    .registry
                    .take_or_note(cell.get_id(), Early::Terminated)
                    .map(|(c, _)| c)
                {
                    Some(child) if child.restart_pending && state.shutdown.is_none() => {
                        Self::restart_or_give_up(&myself, state, child, "restarted with its group".into(), true)
                            .await?;
                    }
                    Some(child) => {
                        tracing::debug!(supervisor = %state.args.name, child = %child.spec.name(), ?reason, "child stopped");
                    }
                    // Not filed yet: noted for its spawner.
                    None => {}
                }
                Self::finish_shutdown_if_done(&myself, state);
            }
            _ => {}
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        // Stopped with children still listed (the node escalated or was
        // killed): nothing will handle what their lanes admitted.
        let mut discarded = 0;
        for child in state.registry.drain() {
            discarded += child.spec.inner.discard();
        }
        if discarded > 0 {
            tracing::warn!(supervisor = %state.args.name, discarded, "stopped with admitted messages unhandled");
        }
        Ok(())
    }
}

/// Messages to the [`NodeSupervisor`].
#[derive(Debug)]
pub enum RootMsg {
    /// Retire the agents subtree, then the system subtree, then stop.
    Shutdown(RpcReplyPort<()>),
    /// Both subtrees have finished retiring.
    ShutdownDone,
}

impl ractor::Message for RootMsg {}

/// The root of a node: starts the `system` and `agents` subtrees and stops
/// the node when `system` gives up.
#[derive(Debug, Clone, Default)]
pub struct NodeSupervisor;

/// The two subtrees a [`NodeSupervisor`] starts.
#[derive(Debug, Clone)]
pub struct Domains {
    /// System actors.
    pub system: ActorRef<SupervisorMsg>,
    /// Agents, pools and groups.
    pub agents: ActorRef<SupervisorMsg>,
    /// The children of `agents`, filed by the tasks that spawn them.
    pub agents_registry: Arc<Registry>,
}

/// Arguments of a [`NodeSupervisor`].
#[derive(Debug, Clone)]
pub struct NodeSupervisorArgs {
    /// Restart intensity of every subtree.
    pub policy: SupervisionConfig,
    /// Where the supervisor writes how it ended.
    pub exit: Arc<OnceLock<NodeExit>>,
    /// Where the subtrees it starts are published.
    pub domains: Arc<OnceLock<Domains>>,
    /// Where events are reported.
    pub events: EventSink,
}

/// State of a [`NodeSupervisor`].
#[derive(Debug)]
pub struct NodeSupervisorState {
    args: NodeSupervisorArgs,
    domains: Domains,
    shutdown: Option<Vec<RpcReplyPort<()>>>,
}

impl Actor for NodeSupervisor {
    type Msg = RootMsg;
    type State = NodeSupervisorState;
    type Arguments = NodeSupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<RootMsg>,
        args: NodeSupervisorArgs,
    ) -> Result<NodeSupervisorState, ActorProcessingErr> {
        let domain = |name: &str, give_up| SupervisorArgs {
            name: Arc::from(name),
            policy: args.policy.clone(),
            strategy: Strategy::OneForOne,
            give_up,
            events: args.events.clone(),
            registry: Arc::new(Registry::new(args.policy.clone())),
        };
        let (system, _) =
            Actor::spawn_linked(None, Supervisor, domain("system", GiveUp::Escalate), myself.get_cell()).await?;
        let agents_args = domain("agents", GiveUp::StopChild);
        let agents_registry = Arc::clone(&agents_args.registry);
        let (agents, _) = Actor::spawn_linked(None, Supervisor, agents_args, myself.get_cell()).await?;
        let domains = Domains {
            system,
            agents,
            agents_registry,
        };
        // Set once: this actor is never restarted (it has no parent).
        let _ = args.domains.set(domains.clone());
        Ok(NodeSupervisorState {
            args,
            domains,
            shutdown: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<RootMsg>,
        msg: RootMsg,
        state: &mut NodeSupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RootMsg::Shutdown(reply) => {
                if let Some(waiting) = &mut state.shutdown {
                    waiting.push(reply);
                    return Ok(());
                }
                state.shutdown = Some(vec![reply]);
                let domains = state.domains.clone();
                let me = myself.clone();
                // Off the actor: supervision events keep being handled while
                // the agents drain. Agents first, so that what they still
                // do reaches the system actors (ledger, quotas) before those stop.
                tokio::spawn(async move {
                    // A subtree that is already gone has nothing left to retire.
                    let _ = ractor::call!(domains.agents, SupervisorMsg::Shutdown);
                    let _ = ractor::call!(domains.system, SupervisorMsg::Shutdown);
                    // Gone only if the root already stopped, which ends the shutdown anyway.
                    let _ = me.cast(RootMsg::ShutdownDone);
                });
            }
            RootMsg::ShutdownDone => {
                let _ = state.args.exit.set(NodeExit::Shutdown);
                for reply in state.shutdown.take().unwrap_or_default() {
                    // The caller may have stopped waiting; the node is down regardless.
                    let _ = reply.send(());
                }
                myself.stop(Some("shutdown".into()));
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<RootMsg>,
        event: SupervisionEvent,
        state: &mut NodeSupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let reason = match event {
            SupervisionEvent::ActorFailed(cell, err) => {
                let which = if cell.get_id() == state.domains.system.get_id() {
                    "system"
                } else {
                    "agents"
                };
                let e = match err.downcast::<GaveUp>() {
                    Ok(g) => {
                        SupervisionError::IntensityExceeded {
                            child: g.0.subtree.clone(),
                            restarts: g.0.restarts,
                            within: g.0.within,
                        }
                        .to_string()
                            + &format!(" (last failure: {})", g.0.last_error)
                    }
                    Err(other) => format!("{which} subtree failed: {other}"),
                };
                Some(e)
            }
            SupervisionEvent::ActorTerminated(_, _, _) if state.shutdown.is_none() => {
                Some("a subtree stopped outside a shutdown".to_string())
            }
            _ => None,
        };
        if let Some(reason) = reason {
            if state.args.exit.set(NodeExit::Escalated(reason.clone())).is_ok() {
                state.args.events.emit(NodeEvent::NodeEscalated { reason });
            }
            myself.stop_children(Some("node escalated".into()));
            myself.stop(Some("escalated".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intensity_allows_max_restarts_in_window_then_refuses() {
        let t0 = Instant::now();
        let mut i = RestartIntensity::new(3, Duration::from_secs(10));
        assert_eq!(i.record(t0), Ok(1));
        assert_eq!(i.record(t0 + Duration::from_secs(1)), Ok(2));
        assert_eq!(i.record(t0 + Duration::from_secs(2)), Ok(3));
        assert_eq!(i.record(t0 + Duration::from_secs(3)), Err(4));
    }

    #[test]
    fn intensity_forgets_restarts_older_than_the_window() {
        let t0 = Instant::now();
        let mut i = RestartIntensity::new(2, Duration::from_secs(10));
        assert!(i.record(t0).is_ok());
        assert!(i.record(t0 + Duration::from_secs(5)).is_ok());
        // t0 falls out of the window at t0 + 10 s.
        assert_eq!(i.record(t0 + Duration::from_secs(10)), Ok(2));
        assert_eq!(i.record(t0 + Duration::from_secs(11)), Err(3));
    }

    #[test]
    fn zero_intensity_refuses_the_first_restart() {
        let mut i = RestartIntensity::new(0, Duration::from_secs(1));
        assert_eq!(i.record(Instant::now()), Err(1));
    }

    #[test]
    fn a_name_is_free_again_once_its_claim_is_dropped() {
        let names = Names::default();
        let claim = names.claim("twin").unwrap();
        assert!(matches!(names.claim("twin"), Err(SpawnError::NameTaken { .. })));
        drop(claim);
        assert!(names.claim("twin").is_ok());
    }
}
