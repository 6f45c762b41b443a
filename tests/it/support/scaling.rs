//! A synthetic load for the scaler tests: a pool of workers that each take
//! a fixed (tokio) time per message, a producer that sends at a rate that
//! changes with time, and the scaler's events collected.

#![allow(dead_code, unreachable_pub, missing_docs, missing_debug_implementations)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nexus_swarm::actors::scaler::{Decision, GroupSpec, Metric, ScalingEvent, Trigger};
use nexus_swarm::prelude::*;
use nexus_swarm::runtime::pool::PoolRef;
use nexus_swarm::runtime::resources::ResourceKind::Cpu;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How often the scaler decides in these tests.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// Each message takes `work` of (paused) time; every handled message is counted.
pub struct Worker {
    pub work: Duration,
    pub cpu_millicores: u64,
    pub handled: Arc<AtomicU64>,
}

impl Worker {
    /// A worker of 100 ms per message (10 per second) asking for `cpu_millicores`.
    pub fn new(cpu_millicores: u64) -> (Self, Arc<AtomicU64>) {
        let handled = Arc::new(AtomicU64::new(0));
        let w = Self {
            work: Duration::from_millis(100),
            cpu_millicores,
            handled: Arc::clone(&handled),
        };
        (w, handled)
    }
}

impl Agent for Worker {
    type Msg = u64;
    type State = ();

    fn profile(&self) -> ResourceProfile {
        ResourceProfile {
            requests: ResourceVector::new().with(Cpu, self.cpu_millicores),
            limits: ResourceVector::new(),
            qos: QosClass::Burstable,
        }
    }

    async fn init(&self, _ctx: &AgentContext<u64>) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn handle(&self, _ctx: &AgentContext<u64>, _msg: u64, _: &mut ()) -> Result<(), HandlerError> {
        tokio::time::sleep(self.work).await;
        self.handled.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// A swarm's configuration: `cpu` millicores of node capacity, the scaler
/// deciding every [`INTERVAL`].
pub fn config(dir: &std::path::Path, cpu: u64) -> NexusConfig {
    let mut config = NexusConfig::default();
    config.node.data_dir = dir.to_path_buf();
    config.node.capacity = [("cpu".to_string(), cpu), ("memory".to_string(), 1 << 30)].into();
    config.scaling.interval = INTERVAL;
    config
}

/// Judged by queue length alone (CPU is measured in real time, which a
/// paused clock does not follow): `threshold` messages for `sustain`.
pub fn queue_spec(threshold: u64, sustain: Duration) -> GroupSpec {
    GroupSpec::default()
        .trigger(Metric::Cpu, None)
        .trigger(Metric::Memory, None)
        .trigger(Metric::QueueWait, None)
        .trigger(Metric::QueueLength, Some(Trigger { threshold, sustain }))
}

/// Sends `rate(elapsed)` messages per second, in tenths of a second, for
/// `length`; answers how many were admitted.
pub fn drive(
    pool: &PoolRef<u64>,
    length: Duration,
    rate: impl Fn(Duration) -> u64 + Send + 'static,
) -> JoinHandle<u64> {
    let pool = pool.clone();
    tokio::spawn(async move {
        let start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut sent = 0u64;
        loop {
            tick.tick().await;
            let t = start.elapsed();
            if t >= length {
                return sent;
            }
            for _ in 0..rate(t) / 10 {
                if pool.send(sent, Priority::Normal).await.is_ok() {
                    sent += 1;
                }
            }
        }
    })
}

/// Every event received so far.
pub fn drain(rx: &mut broadcast::Receiver<ScalingEvent>) -> Vec<ScalingEvent> {
    let mut out = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(e) => out.push(e),
            Err(broadcast::error::TryRecvError::Empty) => return out,
            Err(e) => panic!("events lost: {e}"),
        }
    }
}

/// The scaling decisions among `events`: (offset from `t0`, from, to).
pub fn changes(events: &[ScalingEvent], t0: Instant) -> Vec<(Duration, u32, u32)> {
    events
        .iter()
        .filter_map(|e| match e.decision {
            Decision::ScaleOut { from, to, .. } | Decision::ScaleIn { from, to, .. } => Some((e.at - t0, from, to)),
            Decision::Hold(_) => None,
        })
        .collect()
}

/// Waits (in paused time, so at no cost) until every sent message is handled.
pub async fn settle(handled: &AtomicU64, sent: u64) {
    let deadline = Instant::now() + Duration::from_secs(3600);
    while handled.load(Ordering::SeqCst) < sent {
        assert!(
            Instant::now() < deadline,
            "{} of {sent} handled",
            handled.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
