//! [`Scaler`]: resizes registered scaling groups (agent pools) by their
//! load, one decision per group per tick, each published with its reason.
//!
//! # Behaviour
//!
//! - **Groups**: a [`ScaledGroup`] (for a pool spawned through a swarm,
//!   [`SwarmPool`], or [`Swarm::autoscale`](crate::swarm::Swarm::autoscale))
//!   registered with a [`GroupSpec`] (the `[scaling]` section's by
//!   default).
//! - **Every `interval`** (tokio time, so tests pause it) the scaler
//!   observes each group, turns the counters into [`Metrics`] ([`Meter`]:
//!   queue length, queue wait by Little's law, CPU over the interval) and
//!   asks the group's [`GroupPolicy`] for a [`Decision`]: scale out after
//!   a trigger is sustained, scale in after the stabilization window, at
//!   most `step` workers, never outside `min..=max`, never inside the
//!   cooldown (see [`policy`]).
//! - **Resizing** runs beside the actor (a shrink waits for the retired
//!   workers to drain what they admitted, so no admitted message is lost),
//!   and the group holds ([`Hold::InProgress`]) until it is done. The
//!   cooldown starts when the change is made. For a [`SwarmPool`] a
//!   scale-out goes through the scheduler: when the node's capacity cannot
//!   admit it the decision is [`Hold::NotAdmitted`], the pool keeps its
//!   size and no cooldown starts.
//! - **Events**: every decision, holds included, is a [`ScalingEvent`] on
//!   a broadcast channel ([`ScalerHandle::subscribe`]; a subscriber that
//!   falls more than [`EVENT_BUFFER`] events behind loses the oldest and
//!   is told how many). A scaling decision is published once its resize
//!   is done; a hold at once.
//! - **Cap from a performance profile**:
//!   [`ScalerArgs::max_from_profile`] (or `[scaling] profile = "FILE"`
//!   through [`Swarm::start`](crate::swarm::Swarm::start)) lowers every
//!   group's `max` to the profile's best size, the point past which added
//!   workers bought less than a tenth of the first ones' throughput.
//! - **Restarts**: groups, their policies and the event channel live in
//!   the actor's arguments, so a scaler restarted by its supervisor
//!   resumes every group where it was, and a resize under way reports to
//!   the restarted actor (found by its registered name).
//!
//! # Layout
//!
//! | file | what it holds |
//! |---|---|
//! | `scaler.rs` | the actor, its arguments, messages, handle, events, errors |
//! | `scaler/policy.rs` | [`GroupPolicy`]: every decision, synchronous |
//! | `scaler/meter.rs` | [`Meter`]: counters to metrics |
//! | `scaler/group.rs` | [`ScaledGroup`], [`SwarmPool`] |

pub mod group;
pub mod meter;
pub mod policy;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nexus_swarm_runtime::config::ScalingConfig;
use nexus_swarm_runtime::error::SpawnError;
use nexus_swarm_runtime::node::Node;
use nexus_swarm_runtime::supervisor::ChildSpec;
use parking_lot::Mutex;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use group::{ScaledGroup, SwarmPool};
pub use meter::{Meter, Observation};
pub use policy::{Decision, GroupPolicy, GroupSpec, Hold, Metric, Metrics, Reason, Sample, Trigger};

use crate::perf_profile::PerfProfile;
use crate::pressure::PressureHandle;
use crate::swarm::SwarmError;

/// Events a subscriber may fall behind by before it loses the oldest.
pub const EVENT_BUFFER: usize = 1024;

/// Why the scaler refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScalerError {
    /// A group spec no group can follow.
    #[error("scaling group {group}: invalid `{field}`: {reason}")]
    InvalidSpec {
        /// The group.
        group: String,
        /// The offending field of [`GroupSpec`].
        field: String,
        /// Why.
        reason: String,
    },
    /// A group of that name is already registered.
    #[error("scaling group {0} is already registered")]
    Duplicate(String),
    /// The scaler is not running (stopped, or between a failure and its restart).
    #[error("the scaler is not running")]
    Unavailable,
}

/// One decision about one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalingEvent {
    /// The group.
    pub group: Arc<str>,
    /// When it was decided.
    pub at: Instant,
    /// Workers when it was decided.
    pub workers: u32,
    /// What it was decided on.
    pub metrics: Metrics,
    /// The decision and its reason.
    pub decision: Decision,
}

/// Where one group stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupStatus {
    /// The group.
    pub name: Arc<str>,
    /// Its policy's spec.
    pub spec: GroupSpec,
    /// Its workers now.
    pub workers: u32,
    /// The size a resize under way is reaching for.
    pub resizing: Option<u32>,
    /// When the cooldown after its last change ends, if it has not.
    pub cooldown_until: Option<Instant>,
    /// Its last decision.
    pub last: Option<ScalingEvent>,
}

/// One registered group.
struct Group {
    group: Arc<dyn ScaledGroup>,
    policy: GroupPolicy,
    meter: Meter,
    /// The scaling decision whose resize is under way.
    in_flight: Option<ScalingEvent>,
    last: Option<ScalingEvent>,
}

/// Groups and the event channel, shared by the actor's arguments (so they
/// survive its restarts) and its handles.
struct Shared {
    interval: Duration,
    defaults: GroupSpec,
    /// Most workers any group may have (a performance profile's best size).
    cap: Option<u32>,
    // Locked by the scaler actor, one message at a time, and never across
    // an await; a mutex (not actor state) because it lives in the
    // arguments, which the supervisor keeps for restarts.
    groups: Mutex<BTreeMap<Arc<str>, Group>>,
    events: broadcast::Sender<ScalingEvent>,
    // Whether best-effort groups are held at their minimum (a pressure
    // response); read on every tick.
    shed_best_effort: AtomicBool,
}

/// The scaler actor. Its state is in [`ScalerArgs`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Scaler;

/// What a scaler starts from. Cloning shares the groups, which is how a
/// restarted scaler finds them again.
#[derive(Clone)]
pub struct ScalerArgs {
    shared: Arc<Shared>,
    pressure: Option<PressureHandle>,
}

impl std::fmt::Debug for ScalerArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScalerArgs")
            .field("interval", &self.shared.interval)
            .field("cap", &self.shared.cap)
            .field("groups", &self.shared.groups.lock().len())
            .finish()
    }
}

impl ScalerArgs {
    /// A scaler that decides every `interval` (a zero interval is taken
    /// as 1 ms), registering groups with `defaults` unless told otherwise.
    pub fn new(interval: Duration, defaults: GroupSpec) -> Self {
        Self::build(interval, defaults, None)
    }

    fn build(interval: Duration, defaults: GroupSpec, cap: Option<u32>) -> Self {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        Self {
            shared: Arc::new(Shared {
                interval: interval.max(Duration::from_millis(1)),
                defaults: match cap {
                    Some(cap) => defaults.capped(cap),
                    None => defaults,
                },
                cap,
                groups: Mutex::new(BTreeMap::new()),
                events,
                shed_best_effort: AtomicBool::new(false),
            }),
            pressure: None,
        }
    }

    /// Caps every group's `max` at `profile`'s best size (its point of
    /// diminishing returns, see [`crate::perf_profile`]): the defaults and
    /// every group registered afterwards, whatever its own spec says (a
    /// `min` above the cap comes down to it). Call before the scaler
    /// starts: the scaler is rebuilt with the cap, without groups.
    pub fn max_from_profile(self, profile: &PerfProfile) -> Self {
        let cap = profile.best_size.max(1);
        let cap = self.shared.cap.map_or(cap, |c| c.min(cap));
        Self {
            pressure: self.pressure,
            ..Self::build(self.shared.interval, self.shared.defaults.clone(), Some(cap))
        }
    }

    /// The cap on every group's `max`, if a profile set one.
    pub fn max_cap(&self) -> Option<u32> {
        self.shared.cap
    }

    /// Sends every group's CPU (and memory, where reported) utilization
    /// to `detector` at each tick, as the resources `<group>/cpu` and
    /// `<group>/memory`.
    pub fn pressure(mut self, detector: PressureHandle) -> Self {
        self.pressure = Some(detector);
        self
    }

    /// The scaler the `[scaling]` section describes (its `interval` and,
    /// as every group's default, its policy).
    pub fn from_config(config: &ScalingConfig) -> Self {
        Self::new(config.interval, GroupSpec::from_config(config))
    }
}

/// The scaler's state: its groups and its ticker.
pub struct ScalerState {
    shared: Arc<Shared>,
    pressure: Option<PressureHandle>,
    ticker: JoinHandle<()>,
}

impl std::fmt::Debug for ScalerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScalerState")
            .field("groups", &self.shared.groups.lock().len())
            .finish()
    }
}

/// Messages to the scaler.
#[non_exhaustive]
pub enum ScalerMsg {
    /// Registers a group.
    Register(Arc<dyn ScaledGroup>, GroupSpec, RpcReplyPort<Result<(), ScalerError>>),
    /// Forgets a group; answers whether it was registered.
    Unregister(String, RpcReplyPort<bool>),
    /// Every group's status.
    Groups(RpcReplyPort<Vec<GroupStatus>>),
    /// Decide for every group now (sent by the scaler's own ticker).
    Tick,
    /// A resize finished (sent by the task that ran it).
    Resized(Arc<str>, Result<u32, SwarmError>),
    /// Panic in the handler, as a bug would (supervision tests).
    #[cfg(any(test, feature = "fault-injection"))]
    #[doc(hidden)]
    InjectPanic,
}

impl std::fmt::Debug for ScalerMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScalerMsg::Register(g, spec, _) => write!(f, "Register({}, {spec:?})", g.name()),
            ScalerMsg::Unregister(name, _) => write!(f, "Unregister({name})"),
            ScalerMsg::Groups(_) => f.write_str("Groups"),
            ScalerMsg::Tick => f.write_str("Tick"),
            ScalerMsg::Resized(name, r) => write!(f, "Resized({name}, {r:?})"),
            #[cfg(any(test, feature = "fault-injection"))]
            ScalerMsg::InjectPanic => f.write_str("InjectPanic"),
        }
    }
}

impl ractor::Message for ScalerMsg {}

impl Actor for Scaler {
    type Msg = ScalerMsg;
    type State = ScalerState;
    type Arguments = ScalerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ScalerMsg>,
        args: ScalerArgs,
    ) -> Result<ScalerState, ActorProcessingErr> {
        let interval = args.shared.interval;
        let me = myself.clone();
        let ticker = tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(Instant::now() + interval, interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if me.cast(ScalerMsg::Tick).is_err() {
                    return;
                }
            }
        });
        Ok(ScalerState {
            shared: args.shared,
            pressure: args.pressure,
            ticker,
        })
    }

    async fn post_stop(&self, _: ActorRef<ScalerMsg>, state: &mut ScalerState) -> Result<(), ActorProcessingErr> {
        state.ticker.abort();
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<ScalerMsg>,
        msg: ScalerMsg,
        state: &mut ScalerState,
    ) -> Result<(), ActorProcessingErr> {
        let shared = &state.shared;
        // Replies to callers that stopped waiting fail; the change stands
        // either way, so those failures are ignored on purpose.
        match msg {
            ScalerMsg::Register(group, spec, reply) => {
                let name: Arc<str> = Arc::from(group.name());
                let spec = match shared.cap {
                    Some(cap) => spec.capped(cap),
                    None => spec,
                };
                let result = spec.validate(&name).and_then(|()| {
                    let mut groups = shared.groups.lock();
                    if groups.contains_key(&name) {
                        return Err(ScalerError::Duplicate(name.to_string()));
                    }
                    tracing::info!(group = %name, ?spec, "scaling group registered");
                    groups.insert(
                        name,
                        Group {
                            group,
                            policy: GroupPolicy::new(spec),
                            meter: Meter::default(),
                            in_flight: None,
                            last: None,
                        },
                    );
                    Ok(())
                });
                let _ = reply.send(result);
            }
            ScalerMsg::Unregister(name, reply) => {
                let removed = shared.groups.lock().remove(name.as_str()).is_some();
                if removed {
                    forget_pressure(state.pressure.as_ref(), &name);
                }
                let _ = reply.send(removed);
            }
            ScalerMsg::Groups(reply) => {
                let now = Instant::now();
                let groups = shared.groups.lock();
                let status = groups
                    .iter()
                    .map(|(name, g)| GroupStatus {
                        name: Arc::clone(name),
                        spec: g.policy.spec().clone(),
                        workers: g.group.observe().workers,
                        resizing: g.in_flight.as_ref().and_then(|e| e.decision.target()),
                        cooldown_until: g.policy.cooldown_until(now),
                        last: g.last.clone(),
                    })
                    .collect();
                let _ = reply.send(status);
            }
            ScalerMsg::Tick => self.tick(&myself, shared, state.pressure.as_ref()),
            ScalerMsg::Resized(name, result) => Self::resized(shared, state.pressure.as_ref(), name, result),
            #[cfg(any(test, feature = "fault-injection"))]
            ScalerMsg::InjectPanic => panic!("fault injected into the scaler"),
        }
        Ok(())
    }
}

/// A best-effort group's decision while best-effort work is shed: down to
/// its minimum first, then held there (a scale-in the policy wants below
/// that cannot happen: the minimum is the policy's floor too).
fn shed(workers: u32, min: u32, decision: Decision) -> Decision {
    if workers > min {
        return Decision::ScaleIn {
            from: workers,
            to: min,
            reason: Reason::Shed { min },
        };
    }
    match decision {
        Decision::ScaleOut { to, .. } => Decision::Hold(Hold::Shed { desired: to }),
        other => other,
    }
}

impl Scaler {
    /// Observes every group and decides for it; starts the resizes.
    fn tick(&self, myself: &ActorRef<ScalerMsg>, shared: &Shared, pressure: Option<&PressureHandle>) {
        let now = Instant::now();
        let mut groups = shared.groups.lock();
        for (name, g) in groups.iter_mut() {
            if g.in_flight.is_some() {
                let o = g.group.observe();
                let event = ScalingEvent {
                    group: Arc::clone(name),
                    at: now,
                    workers: o.workers,
                    metrics: Metrics::default(),
                    decision: Decision::Hold(Hold::InProgress),
                };
                publish(shared, g, event);
                continue;
            }
            let o = g.group.observe();
            let metrics = g.meter.metrics(now, &o);
            if let Some(detector) = pressure {
                let permille = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
                // A detector that is not running loses the sample: scaling
                // does not depend on it.
                if let Some(cpu) = metrics.cpu_permille {
                    detector.observe(format!("{name}/cpu"), permille(cpu));
                }
                if let Some(memory) = metrics.memory_permille {
                    detector.observe(format!("{name}/memory"), permille(memory));
                }
            }
            let decision = g.policy.decide(&Sample {
                at: now,
                workers: o.workers,
                metrics,
            });
            let decision = if shared.shed_best_effort.load(Ordering::Relaxed) && g.group.best_effort() {
                shed(o.workers, g.policy.spec().min, decision)
            } else {
                decision
            };
            let event = ScalingEvent {
                group: Arc::clone(name),
                at: now,
                workers: o.workers,
                metrics,
                decision,
            };
            let Some(to) = event.decision.target() else {
                publish(shared, g, event);
                continue;
            };
            tracing::debug!(group = %name, from = o.workers, to, "resizing");
            g.in_flight = Some(event);
            let resize = g.group.resize(to);
            let (me, name) = (myself.get_name(), Arc::clone(name));
            let fallback = myself.clone();
            tokio::spawn(async move {
                let result = resize.await;
                // The scaler may have restarted meanwhile: the current one
                // is found by name (an unregistered scaler by its ref).
                let actor = me
                    .as_deref()
                    .and_then(crate::named::lookup::<ScalerMsg>)
                    .unwrap_or(fallback);
                // A stopped scaler no longer cares.
                let _ = actor.cast(ScalerMsg::Resized(name, result));
            });
        }
    }

    /// A resize is done: the decision is published, or the hold that
    /// replaced it.
    fn resized(shared: &Shared, pressure: Option<&PressureHandle>, name: Arc<str>, result: Result<u32, SwarmError>) {
        let mut groups = shared.groups.lock();
        let Some(g) = groups.get_mut(&name) else {
            return;
        };
        let Some(mut event) = g.in_flight.take() else {
            return;
        };
        let to = event.decision.target().unwrap_or(event.workers);
        match result {
            Ok(size) => {
                g.policy.scaled(Instant::now());
                tracing::info!(group = %name, from = event.workers, to = size, decision = ?event.decision, "group scaled");
            }
            Err(SwarmError::NotAdmitted { refusal, .. }) => {
                tracing::info!(group = %name, to, %refusal, "scale-out not admitted");
                event.decision = Decision::Hold(Hold::NotAdmitted { to, refusal });
            }
            Err(SwarmError::Unknown(_)) => {
                tracing::info!(group = %name, "scaling group gone");
                event.decision = Decision::Hold(Hold::Gone);
                let _ = shared.events.send(event);
                groups.remove(&name);
                forget_pressure(pressure, &name);
                return;
            }
            Err(e) => {
                tracing::warn!(group = %name, to, error = %e, "resize failed");
                event.decision = Decision::Hold(Hold::ResizeFailed {
                    to,
                    error: e.to_string(),
                });
            }
        }
        publish(shared, g, event);
    }

    /// A supervisor child spec for a scaler registered as `name`; restarts
    /// resume the same groups.
    pub fn child_spec(name: &str, args: ScalerArgs) -> ChildSpec {
        crate::named::child_spec(name, Scaler, args)
    }

    /// Starts a scaler under `node`'s supervisor, registered as `name`.
    pub async fn start(node: &Node, name: &str, args: ScalerArgs) -> Result<ScalerHandle, SpawnError> {
        let shared = Arc::clone(&args.shared);
        node.start_child(Self::child_spec(name, args)).await?;
        Ok(ScalerHandle {
            name: Arc::from(name),
            shared,
        })
    }
}

/// A group is gone: its resources no longer count in the detector.
fn forget_pressure(pressure: Option<&PressureHandle>, group: &str) {
    if let Some(detector) = pressure {
        // A detector that is not running has nothing to forget.
        detector.forget(format!("{group}/cpu"));
        detector.forget(format!("{group}/memory"));
    }
}

fn publish(shared: &Shared, g: &mut Group, event: ScalingEvent) {
    g.last = Some(event.clone());
    // No subscriber is fine: the event is also the group's last decision.
    let _ = shared.events.send(event);
}

/// A client of a registered scaler, which it finds by name on each call
/// (so it reaches a restarted scaler). Cheap to clone.
#[derive(Clone)]
pub struct ScalerHandle {
    name: Arc<str>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ScalerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScalerHandle").field("name", &self.name).finish()
    }
}

impl ScalerHandle {
    /// The scaler's registered name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sheds best-effort work (`true`): from its next tick the scaler
    /// scales every best-effort group ([`ScaledGroup::best_effort`]) in to
    /// its minimum, draining what the retired workers admitted, and holds
    /// it there ([`Hold::Shed`]); `false` lets the policy decide again. A
    /// pressure response (`shed_best_effort`).
    pub fn shed_best_effort(&self, shed: bool) {
        self.shared.shed_best_effort.store(shed, Ordering::Relaxed);
    }

    /// Whether best-effort work is shed.
    pub fn sheds_best_effort(&self) -> bool {
        self.shared.shed_best_effort.load(Ordering::Relaxed)
    }

    /// How often it decides.
    pub fn interval(&self) -> Duration {
        self.shared.interval
    }

    /// The spec groups get unless registered with their own.
    pub fn defaults(&self) -> &GroupSpec {
        &self.shared.defaults
    }

    /// Every decision from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ScalingEvent> {
        self.shared.events.subscribe()
    }

    fn actor(&self) -> Option<ActorRef<ScalerMsg>> {
        crate::named::lookup(&self.name)
    }

    async fn call<T: Send + 'static>(&self, msg: impl FnOnce(RpcReplyPort<T>) -> ScalerMsg) -> Result<T, ScalerError> {
        let actor = self.actor().ok_or(ScalerError::Unavailable)?;
        match actor.call(msg, None).await {
            Ok(ractor::rpc::CallResult::Success(v)) => Ok(v),
            _ => Err(ScalerError::Unavailable),
        }
    }

    /// Makes the scaler panic in its handler, as a bug would, so that a
    /// test can watch its supervisor restart it. Only with the
    /// `fault-injection` feature.
    #[cfg(any(test, feature = "fault-injection"))]
    #[doc(hidden)]
    pub fn inject_panic(&self) -> Result<(), ScalerError> {
        let actor = self.actor().ok_or(ScalerError::Unavailable)?;
        actor.cast(ScalerMsg::InjectPanic).map_err(|_| ScalerError::Unavailable)
    }

    /// Registers `group` with `spec` (refused if invalid, or if a group of
    /// that name is registered).
    pub async fn register(&self, group: impl ScaledGroup, spec: GroupSpec) -> Result<(), ScalerError> {
        let group: Arc<dyn ScaledGroup> = Arc::new(group);
        self.call(|r| ScalerMsg::Register(group, spec, r)).await?
    }

    /// Forgets a group (its size stays as it is); whether it was registered.
    pub async fn unregister(&self, name: &str) -> Result<bool, ScalerError> {
        let name = name.to_string();
        self.call(|r| ScalerMsg::Unregister(name, r)).await
    }

    /// Every group's status.
    pub async fn groups(&self) -> Result<Vec<GroupStatus>, ScalerError> {
        self.call(ScalerMsg::Groups).await
    }
}
