//! Auto-scaling a pool through a day's shape of load, on the node's
//! capacity: the load rises, holds, spikes and falls, and the swarm's
//! scaler adds workers when a trigger has held for its sustain duration,
//! one per decision and never inside the cooldown, asks the scheduler for
//! each new worker's CPU (so the spike meets the node's capacity and is
//! refused, "not admitted", rather than overcommitting it), and removes
//! workers once the stabilization window has seen only lower
//! recommendations, each draining what it admitted first.
//!
//! The policy is the `[scaling]` section's defaults (the seeds': min 2,
//! max 10, one worker per decision, a 10-minute cooldown, a 5-minute
//! stabilization window, queue wait over 30 s for a minute) with the
//! queue-length threshold lowered to 200 for workers that take a second
//! per message. The clock is tokio's paused clock, so about three hours of
//! load run in a few seconds, exactly the same way each time; CPU use is
//! measured in real handler time, which a paused clock does not follow,
//! so the CPU trigger is left out here.
//!
//! The swarm's monitor watches the pool: when the backlog fills its
//! lanes past the thresholds (80 / 90 / 95 % of their capacity, every
//! worker together) it raises an alert, escalates it, and clears it once
//! the lanes are 5 points below the warning threshold again (a new worker
//! adds lane capacity, so a scale-out can clear it too).
//!
//! It prints each scaling decision, each change of the queue's alert and a
//! summary; with `--json` stdout is exactly one line, a JSON object with
//! `scale_outs`, `scale_ins`, `min_workers_seen`, `max_workers_seen`,
//! `decisions_inside_cooldown` (always 0), `not_admitted`,
//! `messages_sent` and `messages_handled` (always equal), `alerts_raised`
//! and `alerts_cleared` (the monitor's alerts on the pool's queue, equal
//! once the load has drained), and the rest goes to stderr.
//!
//! ```text
//! cargo run --example autoscale
//! cargo run --example autoscale -- --json
//! ```

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Parser;
use nexus_swarm::actors::monitor::{AlertEvent, AlertKind, Subject};
use nexus_swarm::actors::scaler::{Decision, Hold, Metric, Reason, ScalingEvent};
use nexus_swarm::prelude::*;
use nexus_swarm::runtime::pool::PoolRef;
use nexus_swarm::runtime::resources::ResourceKind::Cpu;
use tokio::sync::broadcast;
use tokio::time::Instant;

#[derive(Debug, Parser)]
#[command(about = "Drive a pool through a rising, holding, spiking and falling load and watch it scale")]
struct Args {
    /// Print one JSON object as the only line of stdout (the rest goes to
    /// stderr).
    #[arg(long)]
    json: bool,
}

/// Each worker takes a second per message and asks for half a CPU.
const WORK: Duration = Duration::from_secs(1);
const WORKER_CPU: u64 = 500;
/// Room for eight workers: the backlog after the spike wants more.
const NODE_CPU: u64 = 8 * WORKER_CPU;

const MIN: u64 = 60;

/// Messages per minute at `t` seconds: rising over 20 minutes from 60 to
/// 480 (1 to 8 per second), holding for 30, a 3-minute spike of 1200,
/// then 60 for the rest.
fn per_minute(t: u64) -> u64 {
    match t {
        t if t < 20 * MIN => 60 + 420 * t / (20 * MIN),
        t if t < 50 * MIN => 480,
        t if t < 53 * MIN => 1200,
        _ => 60,
    }
}

/// How long the load lasts; then the pool drains and the run ends.
const LOAD: Duration = Duration::from_secs(170 * MIN);

struct Worker {
    handled: Arc<AtomicU64>,
}

impl Agent for Worker {
    type Msg = u64;
    type State = ();

    fn profile(&self) -> ResourceProfile {
        ResourceProfile {
            requests: ResourceVector::new().with(Cpu, WORKER_CPU),
            limits: ResourceVector::new(),
            qos: QosClass::Burstable,
        }
    }

    async fn init(&self, _ctx: &AgentContext<u64>) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn handle(&self, _ctx: &AgentContext<u64>, _msg: u64, _: &mut ()) -> Result<(), HandlerError> {
        tokio::time::sleep(WORK).await;
        self.handled.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Sends the load, a tenth of a second at a time; answers how many
/// messages were admitted.
async fn drive(pool: PoolRef<u64>) -> u64 {
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let (mut sent, mut credit) = (0u64, 0u64);
    loop {
        tick.tick().await;
        let t = start.elapsed();
        if t >= LOAD {
            return sent;
        }
        // Per-minute rate over 600 ticks a minute.
        credit += per_minute(t.as_secs());
        for _ in 0..credit / 600 {
            if pool.send(sent, Priority::Normal).await.is_ok() {
                sent += 1;
            }
        }
        credit %= 600;
    }
}

/// What the run saw.
#[derive(Default)]
struct Tally {
    scale_outs: u64,
    scale_ins: u64,
    min_seen: u32,
    max_seen: u32,
    inside_cooldown: u64,
    not_admitted: u64,
    last_change: Option<Instant>,
    alerts_raised: u64,
    alerts_cleared: u64,
}

impl Tally {
    fn see(
        &mut self,
        e: &ScalingEvent,
        cooldown: Duration,
        start: Instant,
        out: &mut dyn Write,
    ) -> std::io::Result<()> {
        let minute = (e.at - start).as_secs() / MIN;
        let mut size = e.workers;
        match &e.decision {
            Decision::ScaleOut { from, to, reason } | Decision::ScaleIn { from, to, reason } => {
                if self.last_change.is_some_and(|l| e.at - l < cooldown) {
                    self.inside_cooldown += 1;
                }
                self.last_change = Some(e.at);
                if to > from {
                    self.scale_outs += 1;
                } else {
                    self.scale_ins += 1;
                }
                size = *to;
                let why = match reason {
                    Reason::Metric {
                        metric,
                        value,
                        threshold,
                        desired,
                    } => format!("{metric} {value} against {threshold}, {desired} wanted"),
                    Reason::Forecast {
                        metric,
                        value,
                        forecast,
                        threshold,
                        desired,
                    } => format!("{metric} {value}, forecast {forecast}, against {threshold}, {desired} wanted"),
                    Reason::BelowMin { min } => format!("below the minimum {min}"),
                    Reason::AboveMax { max } => format!("above the maximum {max}"),
                    Reason::Shed { min } => format!("best-effort work shed under pressure, to {min}"),
                };
                writeln!(out, "  {minute:>4} min  {from:>2} -> {to:>2} workers  ({why})")?;
            }
            Decision::Hold(Hold::NotAdmitted { to, refusal }) => {
                if self.not_admitted == 0 {
                    writeln!(
                        out,
                        "  {minute:>4} min  {} -> {to:>2} not admitted: {refusal}",
                        e.workers
                    )?;
                }
                self.not_admitted += 1;
            }
            Decision::Hold(_) => {}
        }
        self.min_seen = self.min_seen.min(e.workers).min(size);
        self.max_seen = self.max_seen.max(e.workers).max(size);
        Ok(())
    }
}

impl Tally {
    /// The monitor's alerts on the pool's queue (the machine's own CPU,
    /// memory and disk alerts are the machine's business, not the load's).
    fn alert(&mut self, e: &AlertEvent, pool: &str, out: &mut dyn Write) -> std::io::Result<()> {
        if e.subject != Subject::Queue(Arc::from(pool)) {
            return Ok(());
        }
        let minute = e.at.as_secs() / MIN;
        let what = match e.kind {
            AlertKind::Raised(s) => {
                self.alerts_raised += 1;
                format!("{s} alert raised")
            }
            AlertKind::Escalated { from, to } => format!("alert escalated {from} -> {to}"),
            AlertKind::Eased { from, to } => format!("alert eased {from} -> {to}"),
            AlertKind::Cleared { from } => {
                self.alerts_cleared += 1;
                format!("{from} alert cleared")
            }
        };
        writeln!(
            out,
            "  {minute:>4} min  {what}: {} at {}.{} % full",
            e.subject,
            e.value_permille / 10,
            e.value_permille % 10
        )
    }
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> anyhow::Result<()> {
    nexus_swarm::runtime::telemetry::init_tracing();
    let args = Args::parse();

    let temp = tempfile::tempdir()?;
    let mut config = NexusConfig::default();
    config.node.data_dir = temp.path().to_path_buf();
    config.node.capacity = [("cpu".to_string(), NODE_CPU), ("memory".to_string(), 1 << 30)].into();
    config.scaling.queue.length = 200;
    let cooldown = config.scaling.cooldown;
    let swarm = Swarm::start(config).await?;

    let handled = Arc::new(AtomicU64::new(0));
    let worker = Worker {
        handled: Arc::clone(&handled),
    };
    let pool = swarm.spawn_pool("workers", 2, worker).await?;
    let scaler = swarm
        .scaler()
        .ok_or_else(|| anyhow::anyhow!("the scaler is disabled"))?;
    let mut events = scaler.subscribe();
    let monitor = swarm
        .monitor()
        .ok_or_else(|| anyhow::anyhow!("the monitor is disabled"))?
        .clone();
    let mut alerts = monitor.subscribe();
    let spec = scaler.defaults().clone().trigger(Metric::Cpu, None);
    swarm.autoscale_with(&pool, spec).await?;

    let mut out: Box<dyn Write> = if args.json {
        Box::new(std::io::stderr().lock())
    } else {
        Box::new(std::io::stdout().lock())
    };
    writeln!(
        out,
        "autoscale: a pool of 2 workers (1 message/s each, {WORKER_CPU} millicores), node capacity {NODE_CPU} millicores"
    )?;
    let start = Instant::now();
    let mut tally = Tally {
        min_seen: u32::MAX,
        ..Tally::default()
    };
    let mut load = tokio::spawn(drive(pool.clone()));
    let sent = loop {
        tokio::select! {
            sent = &mut load => break sent?,
            event = events.recv() => match event {
                Ok(e) => tally.see(&e, cooldown, start, &mut *out)?,
                Err(broadcast::error::RecvError::Lagged(n)) => anyhow::bail!("{n} scaling events lost"),
                Err(broadcast::error::RecvError::Closed) => anyhow::bail!("the scaler stopped"),
            },
            alert = alerts.recv() => match alert {
                Ok(e) => tally.alert(&e, pool.name(), &mut *out)?,
                Err(broadcast::error::RecvError::Lagged(n)) => anyhow::bail!("{n} alerts lost"),
                Err(broadcast::error::RecvError::Closed) => anyhow::bail!("the monitor stopped"),
            },
        }
    };
    // Let the pool drain what it admitted, and the monitor see it drained.
    while handled.load(Ordering::SeqCst) < sent {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::sleep(2 * monitor.interval()).await;
    while let Ok(e) = events.try_recv() {
        tally.see(&e, cooldown, start, &mut *out)?;
    }
    while let Ok(e) = alerts.try_recv() {
        tally.alert(&e, pool.name(), &mut *out)?;
    }

    let handled = handled.load(Ordering::SeqCst);
    let simulated = start.elapsed();
    swarm.shutdown(Duration::from_secs(10)).await;

    writeln!(
        out,
        "  {} scale-outs, {} scale-ins, {}..={} workers, {} decisions inside the cooldown, {} scale-outs not admitted",
        tally.scale_outs, tally.scale_ins, tally.min_seen, tally.max_seen, tally.inside_cooldown, tally.not_admitted
    )?;
    writeln!(
        out,
        "  {sent} messages sent, {handled} handled, over {} simulated minutes",
        simulated.as_secs() / MIN
    )?;
    writeln!(
        out,
        "  {} alerts on the pool's queue raised, {} cleared",
        tally.alerts_raised, tally.alerts_cleared
    )?;
    drop(out);
    if args.json {
        let json = serde_json::json!({
            "scale_outs": tally.scale_outs,
            "scale_ins": tally.scale_ins,
            "min_workers_seen": tally.min_seen,
            "max_workers_seen": tally.max_seen,
            "decisions_inside_cooldown": tally.inside_cooldown,
            "not_admitted": tally.not_admitted,
            "messages_sent": sent,
            "messages_handled": handled,
            "alerts_raised": tally.alerts_raised,
            "alerts_cleared": tally.alerts_cleared,
            "simulated_secs": simulated.as_secs(),
        });
        println!("{json}");
    }
    Ok(())
}
