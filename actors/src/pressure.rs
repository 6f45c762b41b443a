//! [`PressureDetector`]: pressure levels per resource and overall, trends,
//! anomalies and forecasts from utilization samples.
//!
//! # Behaviour
//!
//! Each sample is a resource's utilization in permille (what a scaling
//! group uses of its CPU, a pool's share of a node's capacity...), and the
//! [`PressureCore`] judges it:
//!
//! - **Level** ([`Level`]): normal, moderate at 80 %, high at 90 %,
//!   critical at 95 % (the seeds' warning, critical and action
//!   thresholds). A level rises as soon as a sample reaches it and falls
//!   only once a sample is `hysteresis` (5 %) below its threshold, so a
//!   utilization hovering at a threshold changes the level once. The
//!   overall level is the highest of the resources'.
//! - **Trend** ([`Trend`]): the least-squares line through the window's
//!   samples (default 10 min), its slope in permille per minute and its
//!   direction (flat within 5 permille a minute).
//! - **Anomaly** ([`Anomaly`]): a sample whose modified z-score
//!   (0.6745 x (x - median) / MAD, median and MAD of the window before it)
//!   is above 3.5; robust to the outliers it looks for, and with the MAD
//!   floored (0.5 %) so a flat window does not make every wobble one.
//! - **Forecast** ([`Forecast`]): where the trend line is at the horizon
//!   (default 5 min), and the level that would be.
//!
//! Arithmetic is on integers (`i128` sums for the line, exact medians).
//!
//! The actor takes samples as casts ([`PressureHandle::observe`]; the
//! scaler sends every group's CPU and memory utilization, see
//! [`ScalerArgs::pressure`](crate::scaler::ScalerArgs::pressure)) and
//! publishes every level change and anomaly as a [`PressureEvent`] on a
//! broadcast channel ([`PressureHandle::subscribe`]). The core lives in the
//! actor's arguments, so a restart keeps the windows and levels.
//!
//! # Automated responses
//!
//! The `[pressure]` section's responses ([`Responses`]) are judged on every
//! level change; the actions they engage or release are applied through
//! the [`PressureResponder`] the detector was given (a `Swarm` gives one
//! that empties the gateway's memory cache, scales best-effort pools in
//! first, and refuses low-priority LLM requests) and published as
//! [`PressureEvent::Response`].
//!
//! # Layout
//!
//! | file | what it holds |
//! |---|---|
//! | `pressure.rs` | the actor, its arguments, messages, handle, events |
//! | `pressure/core.rs` | [`PressureCore`]: every judgement, synchronous |
//! | `pressure/responses.rs` | [`Responses`]: which automated responses are engaged |

mod core;
mod responses;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use nexus_swarm_runtime::error::SpawnError;
use nexus_swarm_runtime::node::Node;
use nexus_swarm_runtime::supervisor::ChildSpec;
use parking_lot::Mutex;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::broadcast;
use tokio::time::Instant;

pub use self::core::{
    Anomaly, Direction, Forecast, Level, LevelChange, PressureCore, PressureSpec, ResourcePressure, Trend,
};
pub use self::responses::{ActionChange, PressureResponder, ResponseOutcome, Responses};
pub use nexus_swarm_runtime::config::{PressureAction, PressureLevel, PressureResponse};

/// Events a subscriber may fall behind by before it loses the oldest.
pub const EVENT_BUFFER: usize = 1024;

/// What the detector publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PressureEvent {
    /// A resource's level, or the overall level, changed.
    Level(LevelChange),
    /// A resource's sample is an anomaly.
    Anomaly {
        /// The resource.
        resource: String,
        /// When.
        at: Instant,
        /// How far off.
        anomaly: Anomaly,
    },
    /// An automated response's action was engaged or released.
    Response {
        /// The action.
        action: PressureAction,
        /// Engaged (`true`) or released.
        engaged: bool,
        /// The level change that caused it.
        cause: LevelChange,
        /// What applying it did.
        outcome: ResponseOutcome,
    },
}

/// Where pressure stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PressureReport {
    /// The highest of the resources' levels.
    pub overall: Level,
    /// Each resource's latest judgement.
    pub resources: Vec<(String, ResourcePressure)>,
    /// The automated responses' actions engaged now.
    pub engaged: Vec<PressureAction>,
}

/// The core, the last judgement per resource and the responses.
#[derive(Debug, Default)]
struct State {
    core: PressureCore,
    latest: std::collections::BTreeMap<String, ResourcePressure>,
    responses: Responses,
}

/// The pressure detector actor. Its state is in [`PressureArgs`].
#[derive(Debug, Clone, Copy, Default)]
pub struct PressureDetector;

/// What a detector starts from. Cloning shares the core, which is how a
/// restarted detector keeps its windows.
#[derive(Debug, Clone)]
pub struct PressureArgs {
    // Locked only by the detector actor, one message at a time; a mutex
    // because it lives in the arguments the supervisor keeps for restarts.
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<PressureEvent>,
    responder: Option<Arc<dyn PressureResponder>>,
}

impl std::fmt::Debug for dyn PressureResponder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PressureResponder")
    }
}

impl PressureArgs {
    /// A detector judging by `spec`, with no automated responses.
    pub fn new(spec: PressureSpec) -> Self {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        Self {
            state: Arc::new(Mutex::new(State {
                core: PressureCore::new(spec),
                latest: Default::default(),
                responses: Responses::default(),
            })),
            events,
            responder: None,
        }
    }

    /// The `[pressure]` section's levels, window, horizon and responses.
    pub fn from_config(config: &nexus_swarm_runtime::config::PressureConfig) -> Self {
        Self::new(PressureSpec::from_config(config)).responses(config.responses.clone())
    }

    /// Judges `rules` on every level change (none engaged yet).
    pub fn responses(self, rules: Vec<PressureResponse>) -> Self {
        self.state.lock().responses = Responses::new(rules);
        self
    }

    /// Applies the responses' actions through `responder`; without one
    /// they are published as [`ResponseOutcome::Unavailable`].
    pub fn responder(mut self, responder: Arc<dyn PressureResponder>) -> Self {
        self.responder = Some(responder);
        self
    }

    /// Publishes `change`, and applies and publishes the actions it
    /// engages or releases.
    fn level_changed(&self, state: &mut State, change: LevelChange) {
        tracing::info!(resource = ?change.resource, from = %change.from, to = %change.to, "pressure level changed");
        for ActionChange { action, engaged, cause } in state.responses.on_change(&change) {
            let outcome = match &self.responder {
                Some(r) => r.apply(action, engaged),
                None => ResponseOutcome::Unavailable("the detector has no responder".into()),
            };
            tracing::warn!(%action, engaged, ?outcome, resource = ?cause.resource, level = %cause.to, "pressure response");
            let _ = self.events.send(PressureEvent::Response {
                action,
                engaged,
                cause,
                outcome,
            });
        }
        let _ = self.events.send(PressureEvent::Level(change));
    }
}

/// Messages to the detector.
#[derive(Debug)]
#[non_exhaustive]
pub enum PressureMsg {
    /// A sample: the resource and its utilization in permille.
    Observe(String, u32),
    /// Forgets a resource.
    Forget(String),
    /// Where pressure stands.
    Report(RpcReplyPort<PressureReport>),
    /// Panic in the handler, as a bug would (supervision tests).
    #[cfg(any(test, feature = "fault-injection"))]
    #[doc(hidden)]
    InjectPanic,
}

impl ractor::Message for PressureMsg {}

impl Actor for PressureDetector {
    type Msg = PressureMsg;
    type State = PressureArgs;
    type Arguments = PressureArgs;

    async fn pre_start(
        &self,
        _: ActorRef<PressureMsg>,
        args: PressureArgs,
    ) -> Result<PressureArgs, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        _: ActorRef<PressureMsg>,
        msg: PressureMsg,
        args: &mut PressureArgs,
    ) -> Result<(), ActorProcessingErr> {
        let now = Instant::now();
        let mut state = args.state.lock();
        // No subscriber is fine: the report holds the latest judgement.
        match msg {
            PressureMsg::Observe(resource, permille) => {
                let (report, changes) = state.core.observe(&resource, now, permille);
                if let Some(anomaly) = report.anomaly {
                    tracing::info!(%resource, value = anomaly.value, median = anomaly.median, z_milli = anomaly.z_milli, "utilization anomaly");
                    let _ = args.events.send(PressureEvent::Anomaly {
                        resource: resource.clone(),
                        at: now,
                        anomaly,
                    });
                }
                for change in changes {
                    args.level_changed(&mut state, change);
                }
                state.latest.insert(resource, report);
            }
            PressureMsg::Forget(resource) => {
                state.latest.remove(&resource);
                // A forgotten resource is no longer under pressure: its
                // level falls to normal (which may release responses).
                let level = state.core.levels().get(&resource).copied().unwrap_or_default();
                let overall = state.core.forget(&resource, now);
                if level != Level::Normal {
                    let change = LevelChange {
                        resource: Some(resource),
                        from: level,
                        to: Level::Normal,
                        utilization: 0,
                        at: now,
                    };
                    args.level_changed(&mut state, change);
                }
                if let Some(change) = overall {
                    args.level_changed(&mut state, change);
                }
            }
            PressureMsg::Report(reply) => {
                let report = PressureReport {
                    overall: state.core.overall(),
                    resources: state.latest.iter().map(|(k, v)| (k.clone(), *v)).collect(),
                    engaged: state.responses.engaged_actions(),
                };
                // The caller may have stopped waiting.
                let _ = reply.send(report);
            }
            #[cfg(any(test, feature = "fault-injection"))]
            PressureMsg::InjectPanic => panic!("fault injected into the pressure detector"),
        }
        Ok(())
    }
}

impl PressureDetector {
    /// A supervisor child spec for a detector registered as `name`;
    /// restarts keep its windows and levels.
    pub fn child_spec(name: &str, args: PressureArgs) -> ChildSpec {
        crate::named::child_spec(name, PressureDetector, args)
    }

    /// Starts a detector under `node`'s supervisor, registered as `name`.
    pub async fn start(node: &Node, name: &str, args: PressureArgs) -> Result<PressureHandle, SpawnError> {
        let events = args.events.clone();
        node.start_child(Self::child_spec(name, args)).await?;
        Ok(PressureHandle {
            name: Arc::from(name),
            events,
        })
    }
}

/// A client of a registered detector, found by name on each call (so it
/// reaches a restarted one). Cheap to clone.
#[derive(Debug, Clone)]
pub struct PressureHandle {
    name: Arc<str>,
    events: broadcast::Sender<PressureEvent>,
}

impl PressureHandle {
    /// The detector's registered name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Level changes and anomalies from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<PressureEvent> {
        self.events.subscribe()
    }

    fn actor(&self) -> Option<ActorRef<PressureMsg>> {
        crate::named::lookup(&self.name)
    }

    /// A sample of `resource`'s utilization, in permille, taken now. Does
    /// not wait; `false` if the detector is not running (the sample is
    /// lost).
    pub fn observe(&self, resource: impl Into<String>, permille: u32) -> bool {
        self.actor()
            .is_some_and(|a| a.cast(PressureMsg::Observe(resource.into(), permille)).is_ok())
    }

    /// Forgets a resource; `false` if the detector is not running.
    pub fn forget(&self, resource: impl Into<String>) -> bool {
        self.actor()
            .is_some_and(|a| a.cast(PressureMsg::Forget(resource.into())).is_ok())
    }

    /// Makes the detector panic in its handler, as a bug would, so that a
    /// test can watch its supervisor restart it; `false` if it is not
    /// running. Only with the `fault-injection` feature.
    #[cfg(any(test, feature = "fault-injection"))]
    #[doc(hidden)]
    pub fn inject_panic(&self) -> bool {
        self.actor().is_some_and(|a| a.cast(PressureMsg::InjectPanic).is_ok())
    }

    /// Where pressure stands; `None` if the detector is not running.
    pub async fn report(&self) -> Option<PressureReport> {
        let actor = self.actor()?;
        match actor.call(PressureMsg::Report, None).await {
            Ok(ractor::rpc::CallResult::Success(r)) => Some(r),
            _ => None,
        }
    }
}
