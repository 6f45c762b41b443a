//! [`Monitor`]: samples the machine, this process, registered processes and
//! every watched pool each interval; raises and clears alerts on
//! thresholds; keeps a bounded history; exports JSON, CSV and Prometheus
//! text.
//!
//! # Behaviour
//!
//! - **Every `interval`** (tokio time, so tests pause it; default 10 s,
//!   `monitor.interval`) the monitor takes a [`Sample`]:
//!   - the machine with `sysinfo` ([`SystemMetrics`]: CPU, memory, disk
//!     space, network bytes in the interval);
//!   - this process and every process registered with
//!     [`MonitorHandle::register_process`] (a tool subprocess an agent
//!     started): CPU and resident memory ([`ProcessSample`]);
//!   - every watched pool or agent ([`PoolSample`]): lane depths and
//!     capacities, messages handled, handler errors, restarts, throughput,
//!     handler latency percentiles from an `hdrhistogram`, and the queue
//!     wait estimated by Little's law. A [`Swarm`](crate::swarm::Swarm)
//!     watches each pool it spawns; [`MonitorHandle::watch_pool`] and
//!     [`MonitorHandle::watch_agent`] watch others. Latencies are recorded
//!     into one histogram per watched pool or agent, created when it is
//!     watched (see [`HandlerStats`](nexus_swarm_runtime::spawn::HandlerStats)):
//!     an agent nobody watches pays nothing.
//! - **Alerts**: the system's CPU, memory and disk use and each watched
//!   pool's fullest lane are judged against the thresholds (the seeds'
//!   warning 80 %, critical 90 %, action 95 %; `[monitor.thresholds]`)
//!   with hysteresis (see [`alerts`]): one crossing raises one alert and,
//!   once the value is back below by the hysteresis, clears it once. Each
//!   change is an [`AlertEvent`] on a broadcast channel
//!   ([`MonitorHandle::subscribe`]; a subscriber more than
//!   [`EVENT_BUFFER`] events behind loses the oldest and is told how
//!   many).
//! - **History**: the last `monitor.history` samples (default 360, an hour)
//!   and `monitor.minutes` per-minute aggregates (default 1440, a day),
//!   both rings.
//! - **Export** ([`MonitorHandle::export`]): JSON (samples, minutes,
//!   alerts), CSV (a header, then one row per sample) and the Prometheus
//!   text exposition format (the latest sample, counters, latency
//!   summaries).
//! - **Restarts**: the history, alerts, watched pools and the event channel
//!   live in the actor's arguments, so a monitor restarted by its
//!   supervisor goes on where it was; the running instance keeps itself in
//!   a slot of those arguments, where handles find it.
//!
//! Its own cost is measured by `nexus bench --scenario monitor`: the time
//! a sample takes over the interval, against a target of 1 % of one core.
//!
//! # Layout
//!
//! | file | what it holds |
//! |---|---|
//! | `monitor.rs` | the actor, its arguments, messages, handle, errors |
//! | `monitor/core.rs` | [`MonitorCore`]: a tick's readings into a sample, alerts, history, exports |
//! | `monitor/alerts.rs` | [`AlertBook`]: thresholds with hysteresis |
//! | `monitor/history.rs` | [`History`]: the sample ring and per-minute aggregates |
//! | `monitor/pools.rs` | [`Watched`] pools and agents, [`PoolMeter`] |
//! | `monitor/system.rs` | [`SystemProbe`]: `sysinfo` reads |
//! | `monitor/sample.rs` | what a sample holds |
//! | `monitor/export.rs` | CSV and Prometheus text |

pub mod alerts;
mod core;
pub mod export;
pub mod history;
pub mod pools;
pub mod sample;
pub mod system;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use nexus_swarm_runtime::agent_ref::AgentRef;
use nexus_swarm_runtime::config::MonitorConfig;
use nexus_swarm_runtime::error::SpawnError;
use nexus_swarm_runtime::node::Node;
use nexus_swarm_runtime::pool::PoolRef;
use nexus_swarm_runtime::supervisor::ChildSpec;
use parking_lot::Mutex;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::pressure::PressureHandle;

pub use self::core::MonitorCore;
pub use alerts::{AlertBook, AlertEvent, AlertKind, Severity, Subject, Thresholds};
pub use history::{History, MinuteAggregate, PoolMinute};
pub use pools::{PoolMeter, Reading, Watched, WatchedAgent, WatchedPool};
pub use sample::{PoolSample, ProcessSample, Sample, SystemMetrics};
pub use system::SystemProbe;

/// Alert events a subscriber may fall behind by before it loses the oldest.
pub const EVENT_BUFFER: usize = 1024;

/// Why the monitor refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MonitorError {
    /// A pool or agent of that name is already watched.
    #[error("{0} is already watched")]
    Duplicate(String),
    /// The monitor is not running (stopped, or between a failure and its restart).
    #[error("the monitor is not running")]
    Unavailable,
}

/// An export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExportFormat {
    /// One JSON object: the kept samples, the minutes, the alert counts
    /// and the standing alerts.
    Json,
    /// A header, then one row per kept sample.
    Csv,
    /// The Prometheus text exposition format (0.0.4) of the latest sample
    /// and the counters.
    Prometheus,
}

/// What the actor and its handles share; lives in the arguments, so it
/// survives restarts.
struct Shared {
    interval: Duration,
    /// The clock's origin: samples are stamped with the time since.
    started: Instant,
    // Each lock is held for one tick's step or one handle call, never
    // across an await. Mutexes rather than actor state because they live in
    // the arguments the supervisor keeps for restarts, and because handles
    // watch pools and export without a round trip through the actor.
    core: Mutex<MonitorCore>,
    probe: Mutex<SystemProbe>,
    watched: Mutex<BTreeMap<Arc<str>, Arc<dyn Watched>>>,
    events: broadcast::Sender<AlertEvent>,
    /// The running instance; an `ArcSwapOption` so handles read it without
    /// a lock while a restart replaces it.
    actor: ArcSwapOption<ActorRef<MonitorMsg>>,
    // The pressure detector fed with the machine's CPU and memory use on
    // every sample, if any.
    pressure: Mutex<Option<PressureHandle>>,
}

impl Shared {
    /// Takes one sample now and publishes its alert changes.
    fn tick(&self) -> Sample {
        let at = Instant::now().saturating_duration_since(self.started);
        let (system, processes) = {
            let mut probe = self.probe.lock();
            (probe.system(), probe.processes())
        };
        let watched: Vec<(Arc<str>, Arc<dyn Watched>)> = self
            .watched
            .lock()
            .iter()
            .map(|(n, w)| (Arc::clone(n), Arc::clone(w)))
            .collect();
        let readings = watched.into_iter().map(|(n, w)| (n, w.read())).collect();
        let (sample, events) = self.core.lock().record(at, system, processes, readings);
        if let Some(pressure) = self.pressure.lock().as_ref() {
            // A detector that is not running loses the sample.
            pressure.observe("system/cpu", system.cpu_permille);
            if system.memory_total_bytes > 0 {
                pressure.observe("system/memory", system.memory_permille());
            }
        }
        for e in events {
            tracing::info!(subject = %e.subject, value_permille = e.value_permille, kind = ?e.kind, "monitor alert");
            // No subscriber is fine: the counts and standing alerts remain.
            let _ = self.events.send(e);
        }
        sample
    }
}

/// The monitor actor. Its state is in [`MonitorArgs`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Monitor;

/// What a monitor starts from. Cloning shares the history, alerts and
/// watched pools, which is how a restarted monitor finds them again.
#[derive(Clone)]
pub struct MonitorArgs {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MonitorArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MonitorArgs")
            .field("interval", &self.shared.interval)
            .finish_non_exhaustive()
    }
}

impl MonitorArgs {
    /// A monitor sampling every `interval` (a zero interval is taken as
    /// 1 ms), judging by `thresholds`, keeping `samples` samples and
    /// `minutes` per-minute aggregates (at least one each).
    pub fn new(interval: Duration, thresholds: Thresholds, samples: usize, minutes: usize) -> Self {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        Self {
            shared: Arc::new(Shared {
                interval: interval.max(Duration::from_millis(1)),
                started: Instant::now(),
                core: Mutex::new(MonitorCore::new(thresholds, samples, minutes)),
                probe: Mutex::new(SystemProbe::new()),
                watched: Mutex::new(BTreeMap::new()),
                events,
                actor: ArcSwapOption::empty(),
                pressure: Mutex::new(None),
            }),
        }
    }

    /// Feeds `detector` the machine's CPU and memory use (as `system/cpu`
    /// and `system/memory`, in permille) on every sample.
    pub fn pressure(self, detector: PressureHandle) -> Self {
        *self.shared.pressure.lock() = Some(detector);
        self
    }

    /// A handle on the monitor these arguments start, named `name`.
    fn handle(&self, name: &str) -> MonitorHandle {
        MonitorHandle {
            name: Arc::from(name),
            shared: Arc::clone(&self.shared),
        }
    }

    /// The monitor the `[monitor]` section describes.
    pub fn from_config(config: &MonitorConfig) -> Self {
        Self::new(
            config.interval,
            Thresholds::from_config(&config.thresholds),
            config.history,
            config.minutes,
        )
    }
}

/// The monitor's state: its shared part and its ticker.
pub struct MonitorState {
    shared: Arc<Shared>,
    ticker: JoinHandle<()>,
}

impl std::fmt::Debug for MonitorState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MonitorState").finish_non_exhaustive()
    }
}

/// Messages to the monitor.
#[derive(Debug)]
#[non_exhaustive]
pub enum MonitorMsg {
    /// Take a sample now (sent by the monitor's own ticker).
    Tick,
    /// Take a sample now and answer it.
    Sample(RpcReplyPort<Sample>),
    /// Panic in the handler, as a bug would (supervision tests).
    #[cfg(any(test, feature = "fault-injection"))]
    #[doc(hidden)]
    InjectPanic,
}

impl ractor::Message for MonitorMsg {}

impl Actor for Monitor {
    type Msg = MonitorMsg;
    type State = MonitorState;
    type Arguments = MonitorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<MonitorMsg>,
        args: MonitorArgs,
    ) -> Result<MonitorState, ActorProcessingErr> {
        let interval = args.shared.interval;
        args.shared.actor.store(Some(Arc::new(myself.clone())));
        let ticker = tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(Instant::now() + interval, interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if myself.cast(MonitorMsg::Tick).is_err() {
                    return;
                }
            }
        });
        Ok(MonitorState {
            shared: args.shared,
            ticker,
        })
    }

    async fn post_stop(
        &self,
        myself: ActorRef<MonitorMsg>,
        state: &mut MonitorState,
    ) -> Result<(), ActorProcessingErr> {
        state.ticker.abort();
        let slot = &state.shared.actor;
        if slot.load().as_ref().is_some_and(|a| a.get_id() == myself.get_id()) {
            slot.store(None);
        }
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<MonitorMsg>,
        msg: MonitorMsg,
        state: &mut MonitorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            MonitorMsg::Tick => {
                state.shared.tick();
            }
            MonitorMsg::Sample(reply) => {
                // The caller may have stopped waiting; the sample is kept.
                let _ = reply.send(state.shared.tick());
            }
            #[cfg(any(test, feature = "fault-injection"))]
            MonitorMsg::InjectPanic => panic!("fault injected into the monitor"),
        }
        Ok(())
    }
}

impl Monitor {
    /// A supervisor child spec for a monitor named `name`;
    /// restarts keep its history, alerts and watched pools.
    pub fn child_spec(name: &str, args: MonitorArgs) -> ChildSpec {
        ChildSpec::for_actor(name, Monitor, args)
    }

    /// Starts a monitor under `node`'s supervisor as the child `name`.
    pub async fn start(node: &Node, name: &str, args: MonitorArgs) -> Result<MonitorHandle, SpawnError> {
        let handle = args.handle(name);
        node.start_child(Self::child_spec(name, args)).await?;
        Ok(handle)
    }
}

/// A client of a monitor. Reads (history, exports, alert counts) and
/// watching need no round trip; [`MonitorHandle::sample`] finds the running
/// actor in the shared slot (so it reaches a restarted one). Cheap to clone.
#[derive(Clone)]
pub struct MonitorHandle {
    name: Arc<str>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MonitorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MonitorHandle").field("name", &self.name).finish()
    }
}

impl MonitorHandle {
    /// The monitor's name under its supervisor.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How often it samples.
    pub fn interval(&self) -> Duration {
        self.shared.interval
    }

    /// Now on the clock samples are stamped with ([`Sample::at`]): the
    /// time since the monitor was first started (restarts keep it).
    pub fn clock(&self) -> Duration {
        Instant::now().saturating_duration_since(self.shared.started)
    }

    /// Every alert change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<AlertEvent> {
        self.shared.events.subscribe()
    }

    /// Watches anything that reports [`Reading`]s, under its name.
    pub fn watch(&self, watched: Arc<dyn Watched>) -> Result<(), MonitorError> {
        let name: Arc<str> = Arc::from(watched.name());
        let mut all = self.shared.watched.lock();
        if all.contains_key(&name) {
            return Err(MonitorError::Duplicate(name.to_string()));
        }
        all.insert(name, watched);
        Ok(())
    }

    /// Watches a pool (its workers record handler latencies from now on).
    pub fn watch_pool<M: Send + 'static>(&self, pool: &PoolRef<M>) -> Result<(), MonitorError> {
        self.watch(Arc::new(WatchedPool::new(pool)))
    }

    /// Watches one agent (it records handler latencies from now on).
    pub fn watch_agent<M: Send + 'static>(&self, agent: &AgentRef<M>) -> Result<(), MonitorError> {
        self.watch(Arc::new(WatchedAgent::new(agent)))
    }

    /// Stops watching `name` (its queue alert, if standing, is cleared and
    /// published); whether it was watched.
    pub fn unwatch(&self, name: &str) -> bool {
        if self.shared.watched.lock().remove(name).is_none() {
            return false;
        }
        let at = Instant::now().saturating_duration_since(self.shared.started);
        if let Some(e) = self.shared.core.lock().forget(name, at) {
            // No subscriber is fine.
            let _ = self.shared.events.send(e);
        }
        true
    }

    /// Watches process `pid` under `label` (a tool subprocess an agent
    /// started): its CPU and resident memory are in every sample from now on.
    pub fn register_process(&self, pid: u32, label: &str) {
        self.shared.probe.lock().register(pid, Arc::from(label));
    }

    /// Stops watching process `pid`; whether it was watched.
    pub fn unregister_process(&self, pid: u32) -> bool {
        self.shared.probe.lock().unregister(pid)
    }

    /// Makes the monitor panic in its handler, as a bug would, so that a
    /// test can watch its supervisor restart it. Only with the
    /// `fault-injection` feature.
    #[cfg(any(test, feature = "fault-injection"))]
    #[doc(hidden)]
    pub fn inject_panic(&self) -> Result<(), MonitorError> {
        let actor = self.shared.actor.load_full().ok_or(MonitorError::Unavailable)?;
        actor
            .cast(MonitorMsg::InjectPanic)
            .map_err(|_| MonitorError::Unavailable)
    }

    /// Takes a sample now (between ticks) and answers it.
    pub async fn sample(&self) -> Result<Sample, MonitorError> {
        let actor = self.shared.actor.load_full().ok_or(MonitorError::Unavailable)?;
        match actor.call(MonitorMsg::Sample, None).await {
            Ok(ractor::rpc::CallResult::Success(s)) => Ok(s),
            _ => Err(MonitorError::Unavailable),
        }
    }

    /// The latest sample.
    pub fn latest(&self) -> Option<Sample> {
        self.shared.core.lock().history().latest().cloned()
    }

    /// The kept samples, oldest first.
    pub fn history(&self) -> Vec<Sample> {
        self.shared.core.lock().history().samples().iter().cloned().collect()
    }

    /// The kept per-minute aggregates, oldest first.
    pub fn minutes(&self) -> Vec<MinuteAggregate> {
        self.shared.core.lock().history().minutes().iter().cloned().collect()
    }

    /// Samples taken so far.
    pub fn samples_taken(&self) -> u64 {
        self.shared.core.lock().samples_taken()
    }

    /// Alerts raised and cleared so far.
    pub fn alert_counts(&self) -> (u64, u64) {
        let core = self.shared.core.lock();
        (core.alerts().raised(), core.alerts().cleared())
    }

    /// The alerts standing now.
    pub fn active_alerts(&self) -> Vec<(Subject, Severity)> {
        let core = self.shared.core.lock();
        core.alerts().active().map(|(s, v)| (s.clone(), v)).collect()
    }

    /// The history in `format`.
    pub fn export(&self, format: ExportFormat) -> String {
        let core = self.shared.core.lock();
        match format {
            ExportFormat::Json => core.json(),
            ExportFormat::Csv => core.csv(),
            ExportFormat::Prometheus => core.prometheus(),
        }
    }
}
