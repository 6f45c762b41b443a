//! Spawning with options: what a resource manager attaches to an agent.
//!
//! [`Node::spawn_agent_opts`](crate::node::Node::spawn_agent_opts) and
//! [`Node::spawn_pool_opts`](crate::node::Node::spawn_pool_opts) take
//! [`SpawnOptions`]:
//!
//! - **extensions**: typed values the agent reads from its context with
//!   [`AgentContext::extension`](crate::agent::AgentContext::extension)
//!   (an LLM client that carries the agent's identity, for instance);
//! - **signals** ([`AgentSignals`]): shared by the agent (every worker of a
//!   pool) and whoever manages it: the handler time it has used, whether it
//!   is throttled (then it yields to the other tasks after each message), and
//!   the [`Preemption`] notice once it has one; and, once a monitor asks
//!   for them ([`AgentSignals::handler_stats`]), its handler latency
//!   histogram and error count ([`HandlerStats`]);
//! - **on gone**: a hook run exactly once when the agent (or the pool) is
//!   gone for good: stopped, given up on by its supervisor, or torn down with
//!   the node. Not on a restart. Also run when the spawn itself fails or the
//!   options are dropped without spawning, so a resource held for the agent
//!   is never leaked.
//!
//! Agents spawned without options pay nothing for any of this: the signals
//! are created on first use, and handler time is measured only for agents
//! that have signals.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;

use crate::config::MailboxConfig;

/// Typed values attached to an agent, read from its context. Cheap to
/// clone; immutable once the agent is spawned.
#[derive(Clone, Default)]
pub struct Extensions(HashMap<TypeId, Arc<dyn Any + Send + Sync>>);

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extensions").field("len", &self.0.len()).finish()
    }
}

impl Extensions {
    /// No extensions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builder-style: attaches `value`, replacing any earlier value of its type.
    pub fn with<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.insert(value);
        self
    }

    /// Attaches `value`, replacing any earlier value of its type.
    pub fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        self.0.insert(TypeId::of::<T>(), Arc::new(value));
    }

    /// The value of type `T`, if one is attached.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.0.get(&TypeId::of::<T>()).and_then(|v| v.downcast_ref::<T>())
    }

    /// Whether nothing is attached.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The notice an agent gets when the resources it holds are taken for
/// another (see [`Agent::on_preempt`](crate::agent::Agent::on_preempt)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preemption {
    /// Who or what took the resources (e.g. the preempting agent's name).
    pub by: String,
    /// How long the agent has to hand back or finish what it admitted
    /// before it is stopped.
    pub grace: Duration,
}

/// Handler latencies (an `hdrhistogram`, microseconds, two significant
/// figures, up to an hour) and handler errors of one agent or one pool (its
/// workers record into the same one), since the last [`HandlerStats::take`].
///
/// Allocated only when a monitor asks for it
/// ([`AgentSignals::handler_stats`]), so an agent nobody watches pays
/// nothing, and one per pool, not per worker.
#[derive(Debug)]
pub struct HandlerStats {
    // A mutex, not atomics: an hdrhistogram records through `&mut`; held
    // for one record (tens of nanoseconds) by the worker that handled the
    // message, or for one swap by the monitor taking it.
    latency_us: Mutex<hdrhistogram::Histogram<u64>>,
    /// Handlers that returned an error, since the agent was watched; an
    /// atomic because workers add to it without the lock.
    errors: AtomicU64,
}

/// Longest handler time a [`HandlerStats`] tells apart (an hour, in
/// microseconds); longer ones count as this.
pub const MAX_HANDLER_LATENCY_US: u64 = 3_600_000_000;

impl Default for HandlerStats {
    fn default() -> Self {
        Self {
            latency_us: Mutex::new(new_latency_histogram()),
            errors: AtomicU64::new(0),
        }
    }
}

/// An empty histogram of the shape [`HandlerStats`] records into.
pub fn new_latency_histogram() -> hdrhistogram::Histogram<u64> {
    // Bounds are constants that `new_with_bounds` accepts (low 1, high >= 2
    // x low, 2 significant figures).
    hdrhistogram::Histogram::new_with_bounds(1, MAX_HANDLER_LATENCY_US, 2).unwrap_or_else(|_| unreachable!())
}

impl HandlerStats {
    /// Records one handled message: how long its handler took and
    /// whether it failed.
    pub fn record(&self, took: Duration, failed: bool) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.latency_us
            .lock()
            .saturating_record(us.clamp(1, MAX_HANDLER_LATENCY_US));
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The latencies recorded since the last call (the recorder starts
    /// again empty).
    pub fn take(&self) -> hdrhistogram::Histogram<u64> {
        std::mem::replace(&mut *self.latency_us.lock(), new_latency_histogram())
    }

    /// Handler errors so far.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}

/// What an agent (every worker of a pool) shares with whoever manages it.
#[derive(Debug, Default)]
pub struct AgentSignals {
    extensions: Extensions,
    preempted: OnceLock<Preemption>,
    busy_ns: AtomicU64,
    throttled: AtomicBool,
    stats: OnceLock<Arc<HandlerStats>>,
}

impl AgentSignals {
    /// Signals carrying `extensions`.
    pub fn new(extensions: Extensions) -> Self {
        Self {
            extensions,
            ..Self::default()
        }
    }

    /// The attached extensions.
    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    /// Time spent in the agent's handlers so far (every worker, summed).
    /// Measured per drain batch, so it includes taking messages off the lanes.
    pub fn busy(&self) -> Duration {
        Duration::from_nanos(self.busy_ns.load(Ordering::Relaxed))
    }

    pub(crate) fn add_busy(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.busy_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Throttles (or stops throttling) the agent: a throttled agent yields
    /// to every other runnable task after each message it handles, so its
    /// lanes are drained after others'.
    pub fn set_throttled(&self, throttled: bool) {
        self.throttled.store(throttled, Ordering::Relaxed);
    }

    /// Whether the agent is throttled.
    pub fn is_throttled(&self) -> bool {
        self.throttled.load(Ordering::Relaxed)
    }

    /// The agent's handler statistics, created on the first call: from
    /// then on every message it handles is recorded.
    pub fn handler_stats(&self) -> Arc<HandlerStats> {
        Arc::clone(self.stats.get_or_init(Default::default))
    }

    /// The handler statistics, if someone asked for them.
    pub(crate) fn recording(&self) -> Option<&HandlerStats> {
        self.stats.get().map(|s| &**s)
    }

    /// The preemption notice, once the agent has one.
    pub fn preemption(&self) -> Option<&Preemption> {
        self.preempted.get()
    }

    /// Records the notice; `false` if the agent already had one (the first
    /// notice stands).
    pub(crate) fn preempt(&self, notice: Preemption) -> bool {
        self.preempted.set(notice).is_ok()
    }
}

type Hook = Box<dyn FnOnce() + Send>;

/// The hook, run at most once: by [`OnGone::run`], or when the last handle
/// on it is dropped without having run it (options dropped unused, a spawn
/// abandoned half way), so what it releases is never leaked.
struct HookCell(Mutex<Option<Hook>>);

impl HookCell {
    fn run(&self) {
        let hook = self.0.lock().take();
        // A hook that panics is logged: it may run inside a `Drop`, where a
        // second panic would abort.
        if let Some(hook) = hook
            && std::panic::catch_unwind(std::panic::AssertUnwindSafe(hook)).is_err()
        {
            tracing::error!("an agent's on-gone hook panicked");
        }
    }
}

impl Drop for HookCell {
    fn drop(&mut self) {
        self.run();
    }
}

/// Run once when an agent or a pool is gone for good.
#[derive(Clone)]
pub(crate) struct OnGone(Arc<HookCell>);

impl OnGone {
    pub(crate) fn new(f: impl FnOnce() + Send + 'static) -> Self {
        Self(Arc::new(HookCell(Mutex::new(Some(Box::new(f))))))
    }

    /// Runs the hook unless it already ran.
    pub(crate) fn run(&self) {
        self.0.run();
    }
}

/// How to spawn an agent or a pool beyond its name and its agent value.
///
/// ```
/// use std::sync::Arc;
/// use nexus_swarm_runtime::spawn::{AgentSignals, Extensions, SpawnOptions};
///
/// let signals = Arc::new(AgentSignals::new(Extensions::new().with(42u32)));
/// let opts = SpawnOptions::new().signals(Arc::clone(&signals)).on_gone(|| println!("gone"));
/// assert_eq!(signals.extensions().get::<u32>(), Some(&42));
/// # drop(opts);
/// ```
#[derive(Clone, Default)]
pub struct SpawnOptions {
    pub(crate) mailbox: Option<MailboxConfig>,
    pub(crate) signals: Option<Arc<AgentSignals>>,
    pub(crate) on_gone: Option<OnGone>,
}

impl fmt::Debug for SpawnOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpawnOptions")
            .field("mailbox", &self.mailbox)
            .field("signals", &self.signals)
            .field("on_gone", &self.on_gone.is_some())
            .finish()
    }
}

impl SpawnOptions {
    /// The node's mailbox configuration, no signals, no hook.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builder-style: the agent's own mailbox configuration.
    pub fn mailbox(mut self, mailbox: MailboxConfig) -> Self {
        self.mailbox = Some(mailbox);
        self
    }

    /// Builder-style: the signals shared with the agent.
    pub fn signals(mut self, signals: Arc<AgentSignals>) -> Self {
        self.signals = Some(signals);
        self
    }

    /// Builder-style: a hook run once when the agent is gone for good (or
    /// its spawn failed, or these options are dropped without spawning).
    pub fn on_gone(mut self, f: impl FnOnce() + Send + 'static) -> Self {
        self.on_gone = Some(OnGone::new(f));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_are_typed() {
        let ext = Extensions::new().with(7u64).with("name".to_string()).with(9u64);
        assert_eq!(ext.get::<u64>(), Some(&9));
        assert_eq!(ext.get::<String>().map(String::as_str), Some("name"));
        assert_eq!(ext.get::<u32>(), None);
    }

    #[test]
    fn the_first_preemption_notice_stands() {
        let s = AgentSignals::default();
        assert!(s.preemption().is_none());
        let first = Preemption {
            by: "a".into(),
            grace: Duration::from_secs(1),
        };
        assert!(s.preempt(first.clone()));
        assert!(!s.preempt(Preemption {
            by: "b".into(),
            grace: Duration::ZERO
        }));
        assert_eq!(s.preemption(), Some(&first));
    }

    #[test]
    fn on_gone_runs_once_and_survives_a_panicking_hook() {
        let count = Arc::new(AtomicU64::new(0));
        let c = Arc::clone(&count);
        let hook = OnGone::new(move || {
            c.fetch_add(1, Ordering::SeqCst);
        });
        hook.clone().run();
        hook.run();
        assert_eq!(count.load(Ordering::SeqCst), 1);
        OnGone::new(|| panic!("boom")).run();
    }

    #[test]
    fn options_dropped_unused_run_their_hook() {
        let count = Arc::new(AtomicU64::new(0));
        let c = Arc::clone(&count);
        let opts = SpawnOptions::new().on_gone(move || {
            c.fetch_add(1, Ordering::SeqCst);
        });
        let copy = opts.clone();
        drop(opts);
        assert_eq!(count.load(Ordering::SeqCst), 0, "a copy still holds it");
        drop(copy);
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }
}
