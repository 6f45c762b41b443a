//! The [`Router`]: spreads messages over a set of agents (its members) by a
//! routing strategy, ejects members that fail health checks, and guards the
//! whole with token-bucket admission.
//!
//! # Two planes
//!
//! * Control plane: the `Router` actor owns membership, weights and health.
//!   Every change ([`RouterMsg`]) rebuilds a snapshot (the
//!   members, and the strategy, e.g. the consistent-hash ring, built over the
//!   healthy ones) and publishes it in an `ArcSwap`. A restarted router
//!   recovers its members from the last published snapshot, and their
//!   health (consecutive failed checks, ejections) from the
//!   [`HealthTracker`] it shares with its handles.
//! * Data plane: a [`RouterHandle`] (cloneable, one `Arc`) sends without a
//!   round trip to the actor: admission (a compare-and-swap on the token
//!   bucket), a snapshot load, a strategy pick, then the member's
//!   [`AgentRef`] lanes. It never changes structure; when it finds a
//!   member's lanes closed it tells the actor, which ejects the member.
//!
//! # Strategies
//!
//! From the configuration (`router.strategy`, see
//! [`nexus_swarm_runtime::routing`]): round-robin, least-connections,
//! smooth weighted round-robin, consistent hashing by a [`RoutingKey`]
//! (`router.virtual_nodes` points per member, default 160).
//!
//! # Least-connections and "in flight"
//!
//! A member's load is what is in flight to it: asks sent through the router
//! whose reply has not arrived (counted by a guard created when the ask is
//! routed and dropped when the reply arrives, the deadline passes or the
//! caller gives up), plus the messages waiting in its lanes (from any
//! sender). A one-way send has no completion signal, so it counts while it
//! is queued, that is until the agent takes it. The same figure is reported
//! as `in_flight` in [`MemberMetrics`].
//!
//! # Health checks
//!
//! Every `router.health.interval` (seed: 30 s) each member is pinged with
//! [`AgentRef::ping`] and `router.health.timeout` (seed: 5 s). After
//! `router.health.unhealthy_threshold` (seed: 3) consecutive failures the
//! member is ejected: it is left out of the strategy, so it receives no
//! traffic (with consistent hashing, its keys fall to the next members on
//! the ring). Its first successful check re-admits it (and its keys come
//! back). [`RouterHandle::check_health`] runs a round at once.
//!
//! # Admission
//!
//! [`Admission`] (seed: 1000 messages/s, burst 100). By priority, an empty
//! bucket makes a sender wait for its slot (up to the lane's timeout, or an
//! ask's deadline) or fails it with [`AdmissionError`] carrying when to
//! retry. A token pays for an attempt: a send refused by a full lane has
//! still used one. Budgets throttle the router through [`RateControl`].
//!
//! ```
//! use std::time::Duration;
//! use nexus_swarm_actors::router::Router;
//! use nexus_swarm_runtime::prelude::*;
//! use nexus_swarm_runtime::routing::RoutingKey;
//!
//! struct Echo;
//! impl Agent for Echo {
//!     type Msg = (u64, Reply<u64>);
//!     type State = ();
//!     async fn init(&self, _: &AgentContext<Self::Msg>) -> Result<(), HandlerError> { Ok(()) }
//!     async fn handle(&self, _: &AgentContext<Self::Msg>, (n, r): Self::Msg, _: &mut ()) -> Result<(), HandlerError> {
//!         r.send(n);
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Node::start(NexusConfig::default()).await?;
//! let pool = node.spawn_pool("echo", 3, Echo).await?;
//! let router = Router::start(&node, "echo-router", node.config().router.clone()).await?;
//! router.add_pool(&pool).await?;
//! let key = RoutingKey::new("conversation-1");
//! let n = router.ask(|r| (7, r), Priority::Normal, Some(&key), Duration::from_secs(1)).await?;
//! assert_eq!(n, 7);
//! node.shutdown(Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```

mod health;
mod snapshot;

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use parking_lot::Mutex;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

pub use health::{HealthChange, HealthTracker};
use nexus_swarm_runtime::admission::{Admission, AdmissionError, AdmissionMetrics, PriorityAdmission};
use nexus_swarm_runtime::agent_ref::{AgentRef, Reply};
use nexus_swarm_runtime::config::{ConfigError, MailboxConfig, RouterConfig, RoutingStrategyKind};
use nexus_swarm_runtime::error::{AskError, SendError, SpawnError};
use nexus_swarm_runtime::node::Node;
use nexus_swarm_runtime::pool::PoolRef;
use nexus_swarm_runtime::priority::Priority;
use nexus_swarm_runtime::routing::{RoutingError, RoutingKey};
use nexus_swarm_runtime::supervisor::ChildSpec;
use nexus_swarm_runtime::usage::RateControl;
use snapshot::{Entry, Member, Snapshot};

/// Health events kept for slow subscribers; older ones are dropped for them.
const HEALTH_EVENTS_CAPACITY: usize = 256;

/// A member's id within one router: assigned in order of addition, never
/// reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId(u64);

impl MemberId {
    /// The raw number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A control-plane request was refused. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouterError {
    /// No member has this id.
    #[error("no member {0}")]
    UnknownMember(MemberId),
    /// This agent is already a member.
    #[error("agent is already member {0}")]
    AlreadyMember(MemberId),
    /// Another member has this name (consistent hashing places members by name).
    #[error("a member is already named {0:?}")]
    DuplicateName(String),
    /// Member names must not be empty.
    #[error("member name must not be empty")]
    EmptyName,
    /// Weights are at least 1.
    #[error("weight must be at least 1, got 0")]
    ZeroWeight,
    /// The strategy cannot be built with this change over every member,
    /// ejected ones included (weights' cycle too long, ring too large).
    #[error(transparent)]
    Routing(#[from] RoutingError),
    /// The router actor is not running.
    #[error("router is not running")]
    Gone,
}

/// What [`RouterHandle::sync_pool`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolSync {
    /// Workers added as members.
    pub added: usize,
    /// Members removed because their worker left the pool.
    pub removed: usize,
}

/// A message could not be routed. The message is given back.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum RouteError<M> {
    /// The token bucket refused it (see [`AdmissionError::retry_after`]).
    #[error("not admitted: {error}")]
    Admission {
        /// The message.
        msg: M,
        /// Why, and when to retry.
        error: AdmissionError,
    },
    /// No healthy member.
    #[error("no healthy member to route to")]
    NoMember(M),
    /// The chosen member's lanes refused it.
    #[error("member {member} refused the message: {error}")]
    Send {
        /// The member picked.
        member: MemberId,
        /// The lane's refusal, holding the message.
        error: SendError<M>,
    },
}

impl<M> RouteError<M> {
    /// The message that was not routed.
    pub fn into_inner(self) -> M {
        match self {
            RouteError::Admission { msg, .. } | RouteError::NoMember(msg) => msg,
            RouteError::Send { error, .. } => error.into_inner(),
        }
    }

    /// The admission refusal, if that is what happened.
    pub fn admission(&self) -> Option<&AdmissionError> {
        match self {
            RouteError::Admission { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl<M> fmt::Debug for RouteError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteError::Admission { error, .. } => f.debug_tuple("Admission").field(error).finish(),
            RouteError::NoMember(_) => f.write_str("NoMember(..)"),
            RouteError::Send { member, error } => f
                .debug_struct("Send")
                .field("member", member)
                .field("error", error)
                .finish(),
        }
    }
}

/// A request/reply through the router failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteAskError {
    /// The token bucket refused it.
    #[error("not admitted: {0}")]
    Admission(#[from] AdmissionError),
    /// No healthy member.
    #[error("no healthy member to route to")]
    NoMember,
    /// The exchange with the chosen member failed.
    #[error("ask to member {member} failed: {error}")]
    Ask {
        /// The member picked.
        member: MemberId,
        /// What went wrong.
        error: AskError,
    },
}

/// A member as listed by [`RouterHandle::members`].
pub struct MemberInfo<M> {
    /// Its id.
    pub id: MemberId,
    /// Its name (its place on the consistent-hash ring).
    pub name: String,
    /// Its weight.
    pub weight: u32,
    /// Whether it takes traffic.
    pub healthy: bool,
    /// The agent.
    pub agent: AgentRef<M>,
}

impl<M> fmt::Debug for MemberInfo<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemberInfo")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("weight", &self.weight)
            .field("healthy", &self.healthy)
            .finish()
    }
}

/// One member's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberMetrics {
    /// Its id.
    pub id: MemberId,
    /// Its name.
    pub name: String,
    /// Its weight.
    pub weight: u32,
    /// Whether it takes traffic.
    pub healthy: bool,
    /// The load least-connections compares: `asks_in_flight + queued`.
    pub in_flight: u64,
    /// Asks routed to it whose reply is pending.
    pub asks_in_flight: u64,
    /// Messages waiting in its lanes (from any sender).
    pub queued: u64,
    /// Messages the router admitted to its lanes, and asks it answered.
    pub sent: u64,
    /// Routed messages its lanes refused, and routed asks that failed.
    pub failures: u64,
    /// Times health checks ejected it.
    pub ejections: u64,
    /// Health checks it failed in a row since its last answer (kept across
    /// restarts of the router).
    pub health_failures: u32,
}

/// A router's counters, read from atomics without a round trip to the actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterMetrics {
    /// Per member, by id.
    pub members: Vec<MemberMetrics>,
    /// Admission per priority (admitted, rejected, waited), the rate factor
    /// and the tokens available.
    pub admission: AdmissionMetrics,
}

impl RouterMetrics {
    /// Admission counters of one priority.
    pub fn priority(&self, p: Priority) -> PriorityAdmission {
        self.admission.priority(p)
    }

    /// The counters of one member.
    pub fn member(&self, id: MemberId) -> Option<&MemberMetrics> {
        self.members.iter().find(|m| m.id == id)
    }
}

/// A member was ejected or re-admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthEvent {
    /// The member.
    pub member: MemberId,
    /// Its name.
    pub name: String,
    /// What happened.
    pub change: HealthChange,
}

/// The outcome of one health-check round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthReport {
    /// Members checked.
    pub checked: usize,
    /// Members that did not answer in time.
    pub failed: Vec<MemberId>,
    /// Members ejected by this round.
    pub ejected: Vec<MemberId>,
    /// Members re-admitted by this round.
    pub readmitted: Vec<MemberId>,
}

/// What the actor and its handles share; outlives restarts of the actor.
struct RouterShared<M> {
    name: Arc<str>,
    /// The published snapshot. Swapped whole by the actor, loaded lock-free
    /// (a thread-local debt slot, no refcount traffic) on every send.
    snapshot: ArcSwap<Snapshot<M>>,
    admission: Admission,
    /// The live actor, swapped when it restarts; read by control calls and
    /// by the rare closed-member report, never per message.
    actor: ArcSwapOption<ActorRef<RouterMsg<M>>>,
    events: broadcast::Sender<HealthEvent>,
    /// Consecutive failed health checks and ejections per member. Kept here,
    /// not in the actor's state, so that a restarted router goes on counting
    /// where its predecessor stopped (a member two failures short of
    /// ejection stays two short). A mutex because it is written by the
    /// actor only, once per check result, and read by [`RouterHandle::metrics`]:
    /// never on the send path, so it is never contended in practice.
    health: Mutex<HealthTracker>,
}

/// The data-plane handle to a router (and its control calls). Cheap to
/// clone (one `Arc`), `Send` and `Sync`.
pub struct RouterHandle<M> {
    shared: Arc<RouterShared<M>>,
}

impl<M> Clone for RouterHandle<M> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<M> fmt::Debug for RouterHandle<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouterHandle")
            .field("name", &self.shared.name)
            .field("members", &self.shared.snapshot.load().entries.len())
            .finish()
    }
}

/// Decrements a member's asks-in-flight when dropped: when the reply
/// arrives, the deadline passes, or the asking future is dropped.
struct AskGuard<'a, M>(&'a Member<M>);

impl<M> Drop for AskGuard<'_, M> {
    fn drop(&mut self) {
        self.0.stats.asks_in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<M: Send + 'static> RouterHandle<M> {
    /// The router's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Routes `msg`: admission by `priority`'s policy (may wait), a pick
    /// (by `key` with consistent hashing), then the member's lane, waiting
    /// for room up to the lane's timeout. Returns the member that took it.
    pub async fn send(&self, msg: M, priority: Priority, key: Option<&RoutingKey>) -> Result<MemberId, RouteError<M>> {
        let wait = match self.shared.admission.reserve(priority, None) {
            Ok(wait) => wait,
            Err(error) => return Err(RouteError::Admission { msg, error }),
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        // Fast path: the lane has room; the snapshot guard is held only here.
        let (member, msg) = {
            let snap = self.shared.snapshot.load();
            let Some(member) = snap.pick(key) else {
                return Err(RouteError::NoMember(msg));
            };
            match member.agent.try_send(msg, priority) {
                Ok(()) => {
                    member.stats.sent.fetch_add(1, Ordering::Relaxed);
                    return Ok(member.id);
                }
                Err(SendError::Full(msg)) => (Arc::clone(member), msg),
                Err(error) => return Err(self.refused(member, error)),
            }
        };
        match member.agent.send(msg, priority).await {
            Ok(()) => {
                member.stats.sent.fetch_add(1, Ordering::Relaxed);
                Ok(member.id)
            }
            Err(error) => Err(self.refused(&member, error)),
        }
    }

    /// Routes `msg` now or gives it back: admission without waiting
    /// (whatever the policy), a pick, the member's lane without waiting.
    #[inline]
    pub fn try_send(&self, msg: M, priority: Priority, key: Option<&RoutingKey>) -> Result<MemberId, RouteError<M>> {
        if let Err(error) = self.shared.admission.try_admit(priority) {
            return Err(RouteError::Admission { msg, error });
        }
        let snap = self.shared.snapshot.load();
        let Some(member) = snap.pick(key) else {
            return Err(RouteError::NoMember(msg));
        };
        match member.agent.try_send(msg, priority) {
            Ok(()) => {
                member.stats.sent.fetch_add(1, Ordering::Relaxed);
                Ok(member.id)
            }
            Err(error) => Err(self.refused(member, error)),
        }
    }

    /// Routes a request built by `make` around a [`Reply`] and waits for
    /// the answer. `deadline` bounds the whole exchange, admission wait
    /// included. The ask counts in the member's in-flight load until the
    /// reply arrives or the exchange ends.
    pub async fn ask<R, F>(
        &self,
        make: F,
        priority: Priority,
        key: Option<&RoutingKey>,
        deadline: Duration,
    ) -> Result<R, RouteAskError>
    where
        F: FnOnce(Reply<R>) -> M,
    {
        let started = tokio::time::Instant::now();
        self.shared.admission.admit_within(priority, Some(deadline)).await?;
        let member = {
            let snap = self.shared.snapshot.load();
            let Some(member) = snap.pick(key) else {
                return Err(RouteAskError::NoMember);
            };
            Arc::clone(member)
        };
        member.stats.asks_in_flight.fetch_add(1, Ordering::Relaxed);
        let guard = AskGuard(&member);
        let left = deadline.saturating_sub(started.elapsed());
        let result = member.agent.ask(make, priority, left).await;
        drop(guard);
        match result {
            Ok(r) => {
                member.stats.sent.fetch_add(1, Ordering::Relaxed);
                Ok(r)
            }
            Err(error) => {
                member.stats.failures.fetch_add(1, Ordering::Relaxed);
                if error == AskError::Send(nexus_swarm_runtime::error::SendErrorKind::Closed) {
                    self.report_closed(member.id);
                }
                Err(RouteAskError::Ask {
                    member: member.id,
                    error,
                })
            }
        }
    }

    /// The member a message with `key` would go to now, without sending
    /// (for round-robin-like strategies this takes a turn).
    pub fn pick(&self, key: Option<&RoutingKey>) -> Option<MemberId> {
        self.shared.snapshot.load().pick(key).map(|m| m.id)
    }

    fn refused(&self, member: &Member<M>, error: SendError<M>) -> RouteError<M> {
        member.stats.failures.fetch_add(1, Ordering::Relaxed);
        if matches!(error, SendError::Closed(_)) {
            self.report_closed(member.id);
        }
        RouteError::Send {
            member: member.id,
            error,
        }
    }

    fn report_closed(&self, id: MemberId) {
        if let Some(actor) = self.shared.actor.load().as_ref() {
            // A router that is restarting misses this report; health checks
            // eject the member anyway.
            let _ = actor.cast(RouterMsg::MemberClosed(id));
        }
    }

    fn actor(&self) -> Result<ActorRef<RouterMsg<M>>, RouterError> {
        self.shared
            .actor
            .load()
            .as_ref()
            .map(|a| (**a).clone())
            .ok_or(RouterError::Gone)
    }

    async fn call<T, F>(&self, make: F) -> Result<T, RouterError>
    where
        T: Send + 'static,
        F: FnOnce(RpcReplyPort<T>) -> RouterMsg<M>,
    {
        match self.actor()?.call(make, None).await {
            Ok(ractor::rpc::CallResult::Success(v)) => Ok(v),
            _ => Err(RouterError::Gone),
        }
    }

    /// Makes the router actor panic in its handler, as a bug would, so that
    /// a test can watch its supervisor restart it. Only with the
    /// `fault-injection` feature.
    #[cfg(any(test, feature = "fault-injection"))]
    #[doc(hidden)]
    pub fn inject_panic(&self) -> Result<(), RouterError> {
        self.actor()?
            .cast(RouterMsg::InjectPanic)
            .map_err(|_| RouterError::Gone)
    }

    /// Adds a member with weight `weight`, named `"{agent name}#{id}"`.
    pub async fn add_member(&self, agent: AgentRef<M>, weight: u32) -> Result<MemberId, RouterError> {
        self.call(|reply| RouterMsg::AddMember {
            agent,
            name: None,
            weight,
            reply,
        })
        .await?
    }

    /// Adds a member with a chosen name: its place on the consistent-hash
    /// ring, so routers that name members alike map keys alike.
    pub async fn add_named_member(
        &self,
        agent: AgentRef<M>,
        name: impl Into<String>,
        weight: u32,
    ) -> Result<MemberId, RouterError> {
        let name = name.into();
        self.call(|reply| RouterMsg::AddMember {
            agent,
            name: Some(name),
            weight,
            reply,
        })
        .await?
    }

    /// Adds every current worker of a pool, weight 1, named `"{pool}[i]"`.
    /// Stops at the first refusal, keeping the members added before it.
    pub async fn add_pool(&self, pool: &PoolRef<M>) -> Result<Vec<MemberId>, RouterError> {
        let mut ids = Vec::new();
        for (i, agent) in pool.members().iter().enumerate() {
            ids.push(
                self.add_named_member(agent.clone(), format!("{}[{i}]", pool.name()), 1)
                    .await?,
            );
        }
        Ok(ids)
    }

    /// Brings the members taken from `pool` in step with its workers now:
    /// members whose worker left the pool (retired by a shrink) are
    /// removed, workers not yet members are added (weight 1). Members keep
    /// their names, so their keys stay put on the consistent-hash ring; a
    /// new worker takes the lowest free name `"{pool}[i]"`. Members that are
    /// not the pool's are left alone. Returns how many were added and removed.
    pub async fn sync_pool(&self, pool: &PoolRef<M>) -> Result<PoolSync, RouterError> {
        let workers = pool.members();
        let prefix = format!("{}[", pool.name());
        let mine: Vec<MemberInfo<M>> = self
            .members()
            .into_iter()
            .filter(|m| m.name.starts_with(&prefix) && m.name.ends_with(']'))
            .collect();
        let mut sync = PoolSync::default();
        let mut taken = std::collections::BTreeSet::new();
        for m in &mine {
            if workers.contains(&m.agent) {
                taken.insert(m.name.clone());
            } else {
                self.remove_member(m.id).await?;
                sync.removed += 1;
            }
        }
        let mut next = 0usize;
        for worker in workers.iter().filter(|w| !mine.iter().any(|m| &m.agent == *w)) {
            let name = loop {
                let name = format!("{}[{next}]", pool.name());
                next += 1;
                if !taken.contains(&name) {
                    break name;
                }
            };
            self.add_named_member(worker.clone(), name, 1).await?;
            sync.added += 1;
        }
        Ok(sync)
    }

    /// Removes a member. Messages already in its lanes stay there.
    pub async fn remove_member(&self, id: MemberId) -> Result<(), RouterError> {
        self.call(|reply| RouterMsg::RemoveMember(id, reply)).await?
    }

    /// Changes a member's weight (weighted strategy).
    pub async fn set_weight(&self, id: MemberId, weight: u32) -> Result<(), RouterError> {
        self.call(|reply| RouterMsg::SetWeight(id, weight, reply)).await?
    }

    /// Runs a health-check round now and reports it once every member has
    /// answered or timed out.
    pub async fn check_health(&self) -> Result<HealthReport, RouterError> {
        self.call(RouterMsg::CheckHealth).await
    }

    /// The members (from the published snapshot, no round trip).
    pub fn members(&self) -> Vec<MemberInfo<M>> {
        self.shared
            .snapshot
            .load()
            .entries
            .iter()
            .map(|e| MemberInfo {
                id: e.member.id,
                name: e.member.name.to_string(),
                weight: e.weight,
                healthy: e.healthy,
                agent: e.member.agent.clone(),
            })
            .collect()
    }

    /// The counters (from atomics and the shared health tracker, no round
    /// trip to the actor).
    pub fn metrics(&self) -> RouterMetrics {
        let snap = self.shared.snapshot.load();
        let health = self.shared.health.lock();
        let members = snap
            .entries
            .iter()
            .map(|e| {
                let m = &e.member;
                let asks = m.stats.asks_in_flight.load(Ordering::Relaxed);
                let queued = m.queued();
                MemberMetrics {
                    id: m.id,
                    name: m.name.to_string(),
                    weight: e.weight,
                    healthy: e.healthy,
                    in_flight: asks + queued,
                    asks_in_flight: asks,
                    queued,
                    sent: m.stats.sent.load(Ordering::Relaxed),
                    failures: m.stats.failures.load(Ordering::Relaxed),
                    ejections: m.stats.ejections.load(Ordering::Relaxed),
                    health_failures: health.failures(m.id),
                }
            })
            .collect();
        drop(health);
        RouterMetrics {
            members,
            admission: self.shared.admission.metrics(),
        }
    }

    /// Ejections and re-admissions from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<HealthEvent> {
        self.shared.events.subscribe()
    }

    /// The router's admission control.
    pub fn admission(&self) -> &Admission {
        &self.shared.admission
    }

    /// The strategy in use.
    pub fn strategy(&self) -> RoutingStrategyKind {
        self.shared.snapshot.load().strategy.kind()
    }
}

/// Budgets throttle a router by scaling its admission rate.
impl<M: Send + 'static> RateControl for RouterHandle<M> {
    fn set_rate_factor(&self, permille: u32) {
        self.shared.admission.set_rate_factor(permille);
    }
}

/// Control messages to a [`Router`].
pub enum RouterMsg<M> {
    /// Add a member (named `"{agent}#{id}"` when `name` is `None`).
    AddMember {
        /// The agent.
        agent: AgentRef<M>,
        /// Its name on the ring, if chosen.
        name: Option<String>,
        /// Its weight (at least 1).
        weight: u32,
        /// The new member's id, or why it was refused.
        reply: RpcReplyPort<Result<MemberId, RouterError>>,
    },
    /// Remove a member.
    RemoveMember(MemberId, RpcReplyPort<Result<(), RouterError>>),
    /// Change a member's weight.
    SetWeight(MemberId, u32, RpcReplyPort<Result<(), RouterError>>),
    /// Run a health-check round now; reply when it is complete.
    CheckHealth(RpcReplyPort<HealthReport>),
    /// The interval's tick: run a health-check round (sent by the router to
    /// itself).
    HealthTick,
    /// A round's results (sent by the router's probing task).
    HealthResults {
        /// Whether each member answered in time.
        results: Vec<(MemberId, bool)>,
        /// Who asked for the round, if anyone.
        reply: Option<RpcReplyPort<HealthReport>>,
    },
    /// A handle found this member's lanes closed (sent by the data plane).
    MemberClosed(MemberId),
    /// Panic in the handler, as a bug would (supervision tests).
    #[cfg(any(test, feature = "fault-injection"))]
    #[doc(hidden)]
    InjectPanic,
}

impl<M> fmt::Debug for RouterMsg<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouterMsg::AddMember { name, weight, .. } => f
                .debug_struct("AddMember")
                .field("name", name)
                .field("weight", weight)
                .finish(),
            RouterMsg::RemoveMember(id, _) => f.debug_tuple("RemoveMember").field(id).finish(),
            RouterMsg::SetWeight(id, w, _) => f.debug_tuple("SetWeight").field(id).field(w).finish(),
            RouterMsg::CheckHealth(_) => f.write_str("CheckHealth"),
            RouterMsg::HealthTick => f.write_str("HealthTick"),
            RouterMsg::HealthResults { results, .. } => {
                f.debug_struct("HealthResults").field("results", results).finish()
            }
            RouterMsg::MemberClosed(id) => f.debug_tuple("MemberClosed").field(id).finish(),
            #[cfg(any(test, feature = "fault-injection"))]
            RouterMsg::InjectPanic => f.write_str("InjectPanic"),
        }
    }
}

impl<M: Send + 'static> ractor::Message for RouterMsg<M> {}

/// Arguments of a [`Router`]: its configuration and the state it shares
/// with its handles. Build them with [`RouterArgs::new`], which also gives
/// the handle.
pub struct RouterArgs<M> {
    config: RouterConfig,
    shared: Arc<RouterShared<M>>,
}

impl<M> Clone for RouterArgs<M> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<M> fmt::Debug for RouterArgs<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouterArgs")
            .field("name", &self.shared.name)
            .field("config", &self.config)
            .finish()
    }
}

impl<M: Send + 'static> RouterArgs<M> {
    /// Validates `config` and prepares a router named `name` whose waits are
    /// bounded by the lane timeouts of `mailbox`. Returns the arguments to
    /// start the actor with and the handle to it (usable once it started).
    pub fn new(
        name: &str,
        config: RouterConfig,
        mailbox: &MailboxConfig,
    ) -> Result<(Self, RouterHandle<M>), ConfigError> {
        config.validate()?;
        let admission = Admission::new(&config.admission, mailbox)?;
        let empty = Snapshot::build(config.strategy, config.virtual_nodes, Vec::new(), 0)
            .expect("a strategy over no members always builds");
        let (events, _) = broadcast::channel(HEALTH_EVENTS_CAPACITY);
        let shared = Arc::new(RouterShared {
            name: name.into(),
            snapshot: ArcSwap::from_pointee(empty),
            admission,
            actor: ArcSwapOption::empty(),
            events,
            health: Mutex::new(HealthTracker::new(config.health.unhealthy_threshold)),
        });
        let handle = RouterHandle {
            shared: Arc::clone(&shared),
        };
        Ok((Self { config, shared }, handle))
    }
}

/// The router actor (control plane). Stateless configuration: everything
/// it owns is in [`RouterState`].
pub struct Router<M> {
    _msg: PhantomData<fn() -> M>,
}

impl<M> Router<M> {
    /// The actor (its configuration comes with [`RouterArgs`]).
    pub fn new() -> Self {
        Self { _msg: PhantomData }
    }
}

impl<M> Default for Router<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M> Clone for Router<M> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<M> fmt::Debug for Router<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Router")
    }
}

impl<M: Send + 'static> Router<M> {
    /// Starts a router under `node`'s supervisor, in its `system` subtree,
    /// as `name` (unique among the node's system actors), its admission
    /// waits bounded by the node's lane timeouts, and returns its handle,
    /// which keeps working across restarts.
    pub async fn start(node: &Node, name: &str, config: RouterConfig) -> Result<RouterHandle<M>, SpawnError> {
        let (args, handle) = RouterArgs::new(name, config, &node.config().mailbox)?;
        node.start_child(ChildSpec::for_actor(name, Router::new(), args))
            .await?;
        Ok(handle)
    }
}

/// The router actor's state: membership, weights and health.
pub struct RouterState<M> {
    config: RouterConfig,
    shared: Arc<RouterShared<M>>,
    /// Every member by id, with its weight and health flag.
    entries: BTreeMap<MemberId, Entry<M>>,
    next_id: u64,
    /// The health-check interval's task.
    timer: Option<JoinHandle<()>>,
}

impl<M> fmt::Debug for RouterState<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouterState")
            .field("name", &self.shared.name)
            .field("members", &self.entries.len())
            .field("next_id", &self.next_id)
            .finish()
    }
}

impl<M: Send + 'static> RouterState<M> {
    /// Builds the snapshot for `entries` and, if it builds, publishes it and
    /// makes `entries` and `next_id` the state. Otherwise nothing changes.
    fn publish(&mut self, entries: BTreeMap<MemberId, Entry<M>>, next_id: u64) -> Result<(), RouterError> {
        let list: Vec<Entry<M>> = entries.values().cloned().collect();
        let snapshot = Snapshot::build(self.config.strategy, self.config.virtual_nodes, list, next_id)?;
        self.shared.snapshot.store(Arc::new(snapshot));
        self.entries = entries;
        self.next_id = next_id;
        Ok(())
    }

    fn add(&mut self, agent: AgentRef<M>, name: Option<String>, weight: u32) -> Result<MemberId, RouterError> {
        if weight == 0 {
            return Err(RouterError::ZeroWeight);
        }
        if let Some(e) = self.entries.values().find(|e| e.member.agent == agent) {
            return Err(RouterError::AlreadyMember(e.member.id));
        }
        let id = MemberId(self.next_id);
        let name = name.unwrap_or_else(|| format!("{}{id}", agent.name()));
        if name.trim().is_empty() {
            return Err(RouterError::EmptyName);
        }
        if self.entries.values().any(|e| *e.member.name == *name) {
            return Err(RouterError::DuplicateName(name));
        }
        let mut entries = self.entries.clone();
        entries.insert(
            id,
            Entry {
                member: Arc::new(Member::new(id, name.into(), agent)),
                weight,
                healthy: true,
            },
        );
        self.publish(entries, self.next_id + 1)?;
        self.shared.health.lock().insert(id, true);
        Ok(id)
    }

    fn remove(&mut self, id: MemberId) -> Result<(), RouterError> {
        let mut entries = self.entries.clone();
        entries.remove(&id).ok_or(RouterError::UnknownMember(id))?;
        self.publish(entries, self.next_id)?;
        self.shared.health.lock().remove(id);
        Ok(())
    }

    fn set_weight(&mut self, id: MemberId, weight: u32) -> Result<(), RouterError> {
        if weight == 0 {
            return Err(RouterError::ZeroWeight);
        }
        let mut entries = self.entries.clone();
        entries.get_mut(&id).ok_or(RouterError::UnknownMember(id))?.weight = weight;
        self.publish(entries, self.next_id)
    }

    /// Applies health changes to the entries and republishes if any.
    fn apply_health(&mut self, changes: &[(MemberId, HealthChange)]) {
        if changes.is_empty() {
            return;
        }
        let mut entries = self.entries.clone();
        for (id, change) in changes {
            let Some(entry) = entries.get_mut(id) else { continue };
            entry.healthy = *change == HealthChange::Readmitted;
            if *change == HealthChange::Ejected {
                entry.member.stats.ejections.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(router = %self.shared.name, member = %entry.member.name, "member ejected");
            } else {
                tracing::info!(router = %self.shared.name, member = %entry.member.name, "member re-admitted");
            }
            // Nobody listening is fine: events are for observers.
            let _ = self.shared.events.send(HealthEvent {
                member: *id,
                name: entry.member.name.to_string(),
                change: *change,
            });
        }
        if let Err(error) = self.publish(entries, self.next_id) {
            // Every change was checked with all members healthy, so a
            // health change always builds; keep the last snapshot if not.
            tracing::error!(router = %self.shared.name, %error, "could not publish health change");
        }
    }

    /// Pings every member concurrently in a task that reports back.
    fn start_round(&self, myself: ActorRef<RouterMsg<M>>, reply: Option<RpcReplyPort<HealthReport>>) {
        let targets: Vec<(MemberId, AgentRef<M>)> = self
            .entries
            .values()
            .map(|e| (e.member.id, e.member.agent.clone()))
            .collect();
        let timeout = self.config.health.timeout;
        tokio::spawn(async move {
            let results = futures::future::join_all(
                targets
                    .into_iter()
                    .map(|(id, agent)| async move { (id, agent.ping(timeout).await) }),
            )
            .await;
            // A router that stopped meanwhile needs no results.
            let _ = myself.cast(RouterMsg::HealthResults { results, reply });
        });
    }
}

impl<M: Send + 'static> Actor for Router<M> {
    type Msg = RouterMsg<M>;
    type State = RouterState<M>;
    type Arguments = RouterArgs<M>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: RouterArgs<M>,
    ) -> Result<Self::State, ActorProcessingErr> {
        // Recover membership from the last published snapshot: a restarted
        // router keeps its members and weights, and the shared tracker keeps
        // their consecutive failures and ejections. The tracker is made to
        // follow the snapshot exactly (a predecessor that stopped between
        // publishing a change and recording it leaves them apart).
        let snapshot = args.shared.snapshot.load_full();
        let entries: BTreeMap<MemberId, Entry<M>> = snapshot.entries.iter().map(|e| (e.member.id, e.clone())).collect();
        {
            let mut health = args.shared.health.lock();
            health.retain(|id| entries.contains_key(&id));
            for e in entries.values() {
                if !health.contains(e.member.id) {
                    health.insert(e.member.id, e.healthy);
                }
            }
        }
        // Ids are never reused, not even those of members removed before
        // the restart: a stale id must not name a new member.
        let next_id = snapshot.next_id;
        args.shared.actor.store(Some(Arc::new(myself)));
        Ok(RouterState {
            config: args.config,
            shared: args.shared,
            entries,
            next_id,
            timer: None,
        })
    }

    async fn post_start(&self, myself: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        state.timer = Some(myself.send_interval(state.config.health.interval, || RouterMsg::HealthTick));
        Ok(())
    }

    async fn post_stop(&self, myself: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        if let Some(timer) = state.timer.take() {
            timer.abort();
        }
        // Forget ourselves unless a successor already took over.
        let current = state.shared.actor.load_full();
        if current.is_some_and(|a| a.get_id() == myself.get_id()) {
            state.shared.actor.store(None);
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RouterMsg::AddMember {
                agent,
                name,
                weight,
                reply,
            } => {
                // The caller may have given up waiting; the change stands.
                let _ = reply.send(state.add(agent, name, weight));
            }
            RouterMsg::RemoveMember(id, reply) => {
                let _ = reply.send(state.remove(id));
            }
            RouterMsg::SetWeight(id, weight, reply) => {
                let _ = reply.send(state.set_weight(id, weight));
            }
            #[cfg(any(test, feature = "fault-injection"))]
            RouterMsg::InjectPanic => panic!("fault injected into the router"),
            RouterMsg::CheckHealth(reply) => state.start_round(myself, Some(reply)),
            RouterMsg::HealthTick => state.start_round(myself, None),
            RouterMsg::HealthResults { results, reply } => {
                let mut report = HealthReport::default();
                let mut changes = Vec::new();
                let mut health = state.shared.health.lock();
                for (id, answered) in results {
                    if !state.entries.contains_key(&id) {
                        continue; // removed while the round ran
                    }
                    report.checked += 1;
                    if !answered {
                        report.failed.push(id);
                    }
                    if let Some(change) = health.record(id, answered) {
                        match change {
                            HealthChange::Ejected => report.ejected.push(id),
                            HealthChange::Readmitted => report.readmitted.push(id),
                        }
                        changes.push((id, change));
                    }
                }
                drop(health);
                state.apply_health(&changes);
                if let Some(reply) = reply {
                    // The caller may have stopped waiting; the round counted anyway.
                    let _ = reply.send(report);
                }
            }
            RouterMsg::MemberClosed(id) => {
                let change = state.shared.health.lock().eject(id);
                if let Some(change) = change {
                    state.apply_health(&[(id, change)]);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
