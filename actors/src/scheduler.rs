//! [`Scheduler`]: resource pools, priorities, deadlines, reservations,
//! allocation strategies and QoS with preemption.
//!
//! # Behaviour
//!
//! - **Pools** hold capacity as a [`ResourceVector`]; a pool with a
//!   [`ScalingPolicy`] grows (in steps, up to a maximum) when a request does
//!   not fit, and gives grown capacity back once it is idle.
//! - **Requests** ([`ResourceRequest`]: id, vector, priority, deadline, QoS,
//!   tenant, optional pool) are answered [`Decision::Allocated`],
//!   [`Decision::Reserved`] (it waits until its deadline) or
//!   [`Decision::Rejected`] with a [`RejectReason`].
//! - **Release** returns exactly what the allocation held, then serves
//!   waiting reservations. A reservation is served in order: by aged
//!   priority, earliest deadline first within a priority, then arrival
//!   (fair share puts the tenant with the lowest dominant share first). A
//!   reservation that cannot be served holds back every later one that
//!   could use the same pool, so big requests are not starved by small
//!   ones. A reservation whose deadline passes is answered `Expired` at
//!   that deadline, by the scheduler's own timer, and is never served
//!   after it.
//! - **Aging**: a waiting request rises one priority level per
//!   `aging_interval`, so low priority is never starved. The timer also
//!   wakes the scheduler at each aging step, so a request that aged is
//!   served (or preempts) then, not at the next unrelated event.
//! - **Strategies** ([`AllocationStrategy`]): `priority` (first pool that
//!   fits), `fair_share` (Dominant Resource Fairness across tenants),
//!   `best_fit` (the pool left least fragmented).
//! - **QoS and preemption**: a guaranteed request, or one of higher
//!   priority than the holders, that cannot fit preempts best-effort
//!   allocations (lowest priority and most recent first), then the burst of
//!   burstable allocations above their request, taking exactly those it
//!   needs. Guaranteed allocations are never preempted. Holders learn it as
//!   [`SchedulerEvent::Preempted`] through their [`Notifier`].
//! - **Invalid input** (unknown pool, empty request, duplicate id, limits
//!   that are not a burstable's, a release of an id not held or held by
//!   another requester) is a typed [`SchedulerError`] and changes nothing.
//!
//! # Notifications
//!
//! Every request carries a [`Notifier`]: the scheduler calls it with the
//! [`SchedulerEvent`]s for that request after its first answer (a
//! reservation served or expired, an allocation preempted). A notifier is a
//! typed callback; [`Notifier::channel`] gives a receiver, and
//! [`Notifier::new`] adapts anything else (an agent's `try_send`, an actor
//! cast).
//!
//! The core ([`SchedulerCore`]) lives in the actor's arguments behind a
//! mutex that only the actor locks, so a scheduler restarted by its
//! supervisor ([`Scheduler::start`] runs it in a node's `system` subtree)
//! resumes with every allocation and reservation it had. The arguments
//! also hold the slot where the running scheduler stores itself, so a
//! [`SchedulerHandle`] taken before a restart reaches the new scheduler.
//!
//! # Layout
//!
//! | file | what it holds |
//! |---|---|
//! | `scheduler.rs` | the actor, its arguments, messages and handle |
//! | `scheduler/notifier.rs` | [`Notifier`]: how a requester hears of its events |
//! | `scheduler/model.rs` | ids, requests, pools, decisions, events, errors |
//! | `scheduler/core.rs` | [`SchedulerCore`]: every decision, synchronous |
//!
//! # Example
//!
//! ```
//! use nexus_swarm_actors::scheduler::*;
//! use nexus_swarm_runtime::resources::{QosClass, ResourceKind::Cpu, ResourceVector};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cpu = |m| ResourceVector::new().with(Cpu, m);
//! let args = SchedulerArgs::new(SchedulerCore::new(Default::default(), None, 100));
//! // Under a node: `Scheduler::start(&node, "scheduler", args)`.
//! let (scheduler, _join) = Scheduler::spawn_unsupervised(args).await?;
//! scheduler.register_pool(PoolSpec::new("cpu", cpu(1000))).await?;
//!
//! let (notifier, mut events) = Notifier::channel();
//! let batch = ResourceRequest::new(1, "batch", cpu(1000));
//! assert!(matches!(scheduler.request(batch, notifier).await?, Decision::Allocated(_)));
//!
//! let urgent = ResourceRequest::new(2, "api", cpu(400)).qos(QosClass::Guaranteed);
//! let Decision::Allocated(grant) = scheduler.request(urgent, Notifier::ignore()).await? else { panic!() };
//! assert_eq!(grant.preempted, vec![RequestId(1)]);
//! assert!(matches!(events.recv().await, Some(SchedulerEvent::Preempted(p)) if p.id == RequestId(1)));
//! assert_eq!(scheduler.release(RequestId(2), "api").await?, cpu(400));
//! # Ok(()) }
//! ```

mod core;
mod model;
mod notifier;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use nexus_swarm_runtime::config::SchedulerConfig;
use nexus_swarm_runtime::error::SpawnError;
use nexus_swarm_runtime::node::Node;
use nexus_swarm_runtime::resources::ResourceVector;
use nexus_swarm_runtime::supervisor::ChildSpec;
use parking_lot::Mutex;
use ractor::concurrency::JoinHandle;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr};
use tokio::time::Instant;

pub use self::core::{SchedulerCore, Share};
pub use model::{
    AllocationReport, Decision, Grant, InvalidPool, Notice, PoolId, PoolReport, PoolSpec, Preempted, RejectReason,
    RequestId, RequesterId, ResourceRequest, ScalingPolicy, SchedulerError, SchedulerEvent, TenantId,
};
pub use nexus_swarm_runtime::config::AllocationStrategy;
pub use notifier::Notifier;

/// The scheduler actor. Its state is in [`SchedulerArgs`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Scheduler;

/// What a scheduler starts from. Cloning shares the core, which is how a
/// restarted scheduler finds its allocations again.
#[derive(Debug, Clone)]
pub struct SchedulerArgs {
    // Locked only by the scheduler actor, one message at a time, so never
    // contended; it is a mutex (not plain state) because it lives in the
    // arguments, shared with the supervisor's copy used for restarts.
    core: Arc<Mutex<SchedulerCore<Notifier>>>,
    // The running scheduler, for handles. ArcSwapOption: read on every
    // call; the actor stores itself when it (re)starts and clears itself
    // when it stops.
    actor: Arc<ArcSwapOption<ActorRef<SchedulerMsg>>>,
}

impl SchedulerArgs {
    /// A scheduler over `core`.
    pub fn new(core: SchedulerCore<Notifier>) -> Self {
        Self {
            core: Arc::new(Mutex::new(core)),
            actor: Arc::new(ArcSwapOption::empty()),
        }
    }

    /// A handle on the scheduler these arguments start (its calls answer
    /// [`SchedulerError::Unavailable`] until it runs).
    pub fn handle(&self) -> SchedulerHandle {
        SchedulerHandle {
            actor: Arc::clone(&self.actor),
        }
    }

    /// A scheduler configured by the `[scheduler]` section.
    pub fn from_config(config: &SchedulerConfig) -> Result<Self, SchedulerError> {
        Ok(Self::new(SchedulerCore::from_config(config, Instant::now())?))
    }
}

/// The scheduler's state: its core and the timer armed for the next
/// reservation deadline or aging step.
#[derive(Debug)]
pub struct SchedulerState {
    core: Arc<Mutex<SchedulerCore<Notifier>>>,
    actor: Arc<ArcSwapOption<ActorRef<SchedulerMsg>>>,
    timer: Option<(Instant, JoinHandle<()>)>,
}

impl Drop for SchedulerState {
    fn drop(&mut self) {
        // Also after a panic, when no `post_stop` runs: the restarted
        // scheduler arms a timer of its own.
        if let Some((_, timer)) = self.timer.take() {
            timer.abort();
        }
    }
}

/// Messages to the scheduler.
#[derive(Debug)]
#[non_exhaustive]
pub enum SchedulerMsg {
    /// Registers a pool.
    RegisterPool(PoolSpec, RpcReplyPort<Result<(), SchedulerError>>),
    /// Asks for resources; later events go to the notifier.
    Request(
        Box<ResourceRequest>,
        Notifier,
        RpcReplyPort<Result<Decision, SchedulerError>>,
    ),
    /// Releases an allocation; answers what it held.
    Release {
        /// The allocation.
        id: RequestId,
        /// Who releases (must be its holder).
        requester: RequesterId,
        /// What it held, or why not.
        reply: RpcReplyPort<Result<ResourceVector, SchedulerError>>,
    },
    /// Gives back part of an allocation; answers what it still holds.
    ReleasePart {
        /// The allocation.
        id: RequestId,
        /// Who releases (must be its holder).
        requester: RequesterId,
        /// What to give back.
        part: ResourceVector,
        /// What it still holds, or why not.
        reply: RpcReplyPort<Result<ResourceVector, SchedulerError>>,
    },
    /// Withdraws a waiting reservation.
    Cancel {
        /// The reservation.
        id: RequestId,
        /// Who withdraws (must be its requester).
        requester: RequesterId,
        /// Done, or why not.
        reply: RpcReplyPort<Result<(), SchedulerError>>,
    },
    /// Changes the allocation strategy.
    SetStrategy(AllocationStrategy, RpcReplyPort<()>),
    /// Every pool.
    Pools(RpcReplyPort<Vec<PoolReport>>),
    /// Every allocation.
    Allocations(RpcReplyPort<Vec<AllocationReport>>),
    /// Waiting reservations in service order.
    Waiting(RpcReplyPort<Vec<RequestId>>),
    /// Time passed: expires reservations whose deadline passed and serves
    /// those that aging raised (sent by the scheduler's own timer, at
    /// [`SchedulerCore::next_wakeup`]).
    Wake,
    /// Panics in the handler (supervision tests only; the
    /// `fault-injection` feature).
    #[cfg(any(test, feature = "fault-injection"))]
    #[doc(hidden)]
    InjectPanic,
}

impl ractor::Message for SchedulerMsg {}

/// Calls each notifier. A notifier is the requester's code: one that panics
/// is logged and skipped, so it neither fails the scheduler nor keeps the
/// other requesters from hearing of their events.
fn deliver(notices: Vec<Notice<Notifier>>) {
    for n in notices {
        let Notice { to, event } = n;
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| to.notify(event))).is_err() {
            tracing::error!("a scheduler notifier panicked; its event is lost");
        }
    }
}

impl Scheduler {
    /// Arms (or re-arms) the timer for the next deadline or aging step.
    fn arm(myself: &ActorRef<SchedulerMsg>, state: &mut SchedulerState, next: Option<Instant>) {
        if state.timer.as_ref().map(|(at, _)| *at) == next {
            return;
        }
        if let Some((_, old)) = state.timer.take() {
            old.abort();
        }
        if let Some(at) = next {
            let me = myself.clone();
            let task = tokio::spawn(async move {
                tokio::time::sleep_until(at).await;
                // A stopped scheduler has nothing to expire.
                let _ = me.cast(SchedulerMsg::Wake);
            });
            state.timer = Some((at, task));
        }
    }
}

impl Actor for Scheduler {
    type Msg = SchedulerMsg;
    type State = SchedulerState;
    type Arguments = SchedulerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SchedulerArgs,
    ) -> Result<SchedulerState, ActorProcessingErr> {
        let mut state = SchedulerState {
            core: args.core,
            actor: args.actor,
            timer: None,
        };
        // A restarted scheduler may have reservations waiting.
        let next = state.core.lock().next_wakeup(Instant::now());
        Self::arm(&myself, &mut state, next);
        state.actor.store(Some(Arc::new(myself)));
        Ok(state)
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut SchedulerState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some((_, timer)) = state.timer.take() {
            timer.abort();
        }
        if state
            .actor
            .load()
            .as_ref()
            .is_some_and(|a| a.get_id() == myself.get_id())
        {
            state.actor.store(None);
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: SchedulerMsg,
        state: &mut SchedulerState,
    ) -> Result<(), ActorProcessingErr> {
        let now = Instant::now();
        // Replies to callers that stopped waiting fail; the decision stands
        // either way, so those failures are ignored on purpose.
        let (notices, next) = {
            let mut core = state.core.lock();
            let notices = match message {
                SchedulerMsg::RegisterPool(spec, reply) => {
                    let id = spec.id.clone();
                    let (result, notices) = split(core.register_pool(spec, now));
                    match &result {
                        Ok(()) => tracing::info!(pool = %id, "pool registered"),
                        Err(e) => tracing::warn!(pool = %id, error = %e, "pool refused"),
                    }
                    let _ = reply.send(result);
                    notices
                }
                SchedulerMsg::Request(req, notifier, reply) => {
                    let id = req.id;
                    match core.request(*req, notifier, now) {
                        Ok((decision, notices)) => {
                            tracing::debug!(request = %id, ?decision, "request answered");
                            let _ = reply.send(Ok(decision));
                            notices
                        }
                        Err(e) => {
                            tracing::warn!(request = %id, error = %e, "request refused");
                            let _ = reply.send(Err(e));
                            Vec::new()
                        }
                    }
                }
                SchedulerMsg::Release { id, requester, reply } => match core.release(id, &requester, now) {
                    Ok((held, notices)) => {
                        let _ = reply.send(Ok(held));
                        notices
                    }
                    Err(e) => {
                        tracing::warn!(request = %id, error = %e, "release refused");
                        let _ = reply.send(Err(e));
                        Vec::new()
                    }
                },
                SchedulerMsg::ReleasePart {
                    id,
                    requester,
                    part,
                    reply,
                } => match core.release_part(id, &requester, &part, now) {
                    Ok((rest, notices)) => {
                        let _ = reply.send(Ok(rest));
                        notices
                    }
                    Err(e) => {
                        tracing::warn!(request = %id, error = %e, "partial release refused");
                        let _ = reply.send(Err(e));
                        Vec::new()
                    }
                },
                SchedulerMsg::Cancel { id, requester, reply } => {
                    let (result, notices) = split(core.cancel(id, &requester, now));
                    let _ = reply.send(result);
                    notices
                }
                SchedulerMsg::SetStrategy(strategy, reply) => {
                    let notices = core.set_strategy(strategy, now);
                    let _ = reply.send(());
                    notices
                }
                SchedulerMsg::Pools(reply) => {
                    let _ = reply.send(core.pools());
                    Vec::new()
                }
                SchedulerMsg::Allocations(reply) => {
                    let _ = reply.send(core.allocations());
                    Vec::new()
                }
                SchedulerMsg::Waiting(reply) => {
                    let _ = reply.send(core.waiting(now));
                    Vec::new()
                }
                SchedulerMsg::Wake => core.expire(now),
                #[cfg(any(test, feature = "fault-injection"))]
                SchedulerMsg::InjectPanic => panic!("fault injected into the scheduler"),
            };
            (notices, core.next_wakeup(now))
        };
        deliver(notices);
        Self::arm(&myself, state, next);
        Ok(())
    }
}

fn split(result: Result<Vec<Notice<Notifier>>, SchedulerError>) -> (Result<(), SchedulerError>, Vec<Notice<Notifier>>) {
    match result {
        Ok(notices) => (Ok(()), notices),
        Err(e) => (Err(e), Vec::new()),
    }
}

impl Scheduler {
    /// Starts a scheduler under `node`'s supervisor, in its `system`
    /// subtree, as `name` (unique among the node's system actors), and
    /// returns a handle that keeps working across restarts.
    pub async fn start(node: &Node, name: &str, args: SchedulerArgs) -> Result<SchedulerHandle, SpawnError> {
        let handle = args.handle();
        node.start_child(Self::child_spec(name, args)).await?;
        Ok(handle)
    }

    /// A supervisor child spec for a scheduler named `name`; restarts
    /// resume the same allocations and reservations.
    pub fn child_spec(name: &str, args: SchedulerArgs) -> ChildSpec {
        ChildSpec::for_actor(name, Scheduler, args)
    }

    /// Starts a scheduler that no supervisor restarts (tests, tools).
    pub async fn spawn_unsupervised(args: SchedulerArgs) -> Result<(SchedulerHandle, JoinHandle<()>), SpawnErr> {
        let handle = args.handle();
        let (_, join) = Actor::spawn(None, Scheduler, args).await?;
        Ok((handle, join))
    }
}

/// A cloneable handle on a scheduler: each call goes to the scheduler
/// running now (so it reaches one restarted by its supervisor).
#[derive(Debug, Clone)]
pub struct SchedulerHandle {
    actor: Arc<ArcSwapOption<ActorRef<SchedulerMsg>>>,
}

impl SchedulerHandle {
    /// The scheduler's actor, if it is running.
    pub fn actor(&self) -> Option<ActorRef<SchedulerMsg>> {
        self.actor.load_full().map(|a| (*a).clone())
    }

    async fn call<T: Send + 'static>(
        &self,
        msg: impl FnOnce(RpcReplyPort<T>) -> SchedulerMsg,
    ) -> Result<T, SchedulerError> {
        let actor = self.actor().ok_or(SchedulerError::Unavailable)?;
        match actor.call(msg, None).await {
            Ok(ractor::rpc::CallResult::Success(v)) => Ok(v),
            _ => Err(SchedulerError::Unavailable),
        }
    }

    /// Registers a pool.
    pub async fn register_pool(&self, spec: PoolSpec) -> Result<(), SchedulerError> {
        self.call(|r| SchedulerMsg::RegisterPool(spec, r)).await?
    }

    /// Asks for resources; later events for this request go to `notifier`.
    pub async fn request(&self, req: ResourceRequest, notifier: Notifier) -> Result<Decision, SchedulerError> {
        self.call(|r| SchedulerMsg::Request(Box::new(req), notifier, r)).await?
    }

    /// Releases an allocation; returns what it held.
    pub async fn release(
        &self,
        id: RequestId,
        requester: impl Into<RequesterId>,
    ) -> Result<ResourceVector, SchedulerError> {
        let requester = requester.into();
        self.call(|reply| SchedulerMsg::Release { id, requester, reply })
            .await?
    }

    /// Gives back `part` of an allocation (a pool that shrinks); returns
    /// what it still holds (empty: released whole).
    pub async fn release_part(
        &self,
        id: RequestId,
        requester: impl Into<RequesterId>,
        part: ResourceVector,
    ) -> Result<ResourceVector, SchedulerError> {
        let requester = requester.into();
        self.call(|reply| SchedulerMsg::ReleasePart {
            id,
            requester,
            part,
            reply,
        })
        .await?
    }

    /// Withdraws a waiting reservation.
    pub async fn cancel(&self, id: RequestId, requester: impl Into<RequesterId>) -> Result<(), SchedulerError> {
        let requester = requester.into();
        self.call(|reply| SchedulerMsg::Cancel { id, requester, reply }).await?
    }

    /// Changes the allocation strategy.
    pub async fn set_strategy(&self, strategy: AllocationStrategy) -> Result<(), SchedulerError> {
        self.call(|r| SchedulerMsg::SetStrategy(strategy, r)).await
    }

    /// Every pool.
    pub async fn pools(&self) -> Result<Vec<PoolReport>, SchedulerError> {
        self.call(SchedulerMsg::Pools).await
    }

    /// Every allocation.
    pub async fn allocations(&self) -> Result<Vec<AllocationReport>, SchedulerError> {
        self.call(SchedulerMsg::Allocations).await
    }

    /// Waiting reservations in service order.
    pub async fn waiting(&self) -> Result<Vec<RequestId>, SchedulerError> {
        self.call(SchedulerMsg::Waiting).await
    }

    /// Makes the scheduler panic in its handler, as a bug would, so that a
    /// test can watch its supervisor restart it. Only with the
    /// `fault-injection` feature.
    #[cfg(any(test, feature = "fault-injection"))]
    #[doc(hidden)]
    pub fn inject_panic(&self) -> Result<(), SchedulerError> {
        let actor = self.actor().ok_or(SchedulerError::Unavailable)?;
        actor
            .cast(SchedulerMsg::InjectPanic)
            .map_err(|_| SchedulerError::Unavailable)
    }
}
