//! The monitor's own cost: `nexus bench --scenario monitor` takes samples
//! back to back through a running swarm's monitor (the actor hop, the
//! `sysinfo` reads of the machine and this process, ten watched pools of
//! four workers each, the alerts, the history) for the run's duration,
//! and states what one sample costs at the default interval (10 s) as a
//! percentage of one core, against the target of 1 %.
//!
//! Two figures: the wall time of a sample (an upper bound of its CPU
//! time, since the loop does nothing else), and, on Linux, the process's
//! CPU time (`/proc/self/stat`, user + system) over the loop divided by
//! the samples. The check uses the larger.

use std::time::{Duration, Instant};

use nexus_swarm_actors::swarm::Swarm;
use nexus_swarm_runtime::agent::{Agent, AgentContext};
use nexus_swarm_runtime::config::NexusConfig;
use nexus_swarm_runtime::error::HandlerError;
use serde_json::{Value, json};

use super::pipeline::TempDir;

/// The target: sampling costs under 1 % of one core at the default interval.
const TARGET_PCT: f64 = 1.0;
const POOLS: usize = 10;
const WORKERS: usize = 4;

struct Idle;

impl Agent for Idle {
    type Msg = ();
    type State = ();

    async fn init(&self, _: &AgentContext<()>) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn handle(&self, _: &AgentContext<()>, _: (), _: &mut ()) -> Result<(), HandlerError> {
        Ok(())
    }
}

/// This process's CPU time (user + system), where `/proc/self/stat` says.
pub(super) fn process_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command (which may hold spaces) end with ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line, 11 and 12
    // after the command; in clock ticks, which Linux fixes at 100 a second.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Runs the scenario for `duration` and answers its JSON line.
pub(super) async fn run(duration: Duration) -> anyhow::Result<Value> {
    eprintln!("monitor scenario, {}", humantime::format_duration(duration));
    let dir = TempDir::new()?;
    let mut config = NexusConfig::default();
    config.node.data_dir = dir.0.clone();
    config.scaling.enabled = false;
    let interval = config.monitor.interval;
    let swarm = Swarm::start(config).await?;
    let monitor = swarm
        .monitor()
        .ok_or_else(|| anyhow::anyhow!("the monitor is disabled"))?
        .clone();
    for i in 0..POOLS {
        swarm.spawn_pool(&format!("pool-{i}"), WORKERS, Idle).await?;
    }
    // Warm-up: the first reads list disks and interfaces.
    for _ in 0..10 {
        monitor.sample().await?;
    }
    let mut latency = super::histogram();
    let (cpu0, start) = (process_cpu_time(), Instant::now());
    let mut samples = 0u64;
    while start.elapsed() < duration {
        let t = Instant::now();
        monitor.sample().await?;
        super::record(&mut latency, t.elapsed());
        samples += 1;
    }
    let wall = start.elapsed();
    let cpu = process_cpu_time().zip(cpu0).map(|(b, a)| b.saturating_sub(a));
    swarm.shutdown(Duration::from_secs(5)).await;

    let per_sample_us = wall.as_secs_f64() * 1e6 / samples.max(1) as f64;
    let cpu_per_sample_us = cpu.map(|c| c.as_secs_f64() * 1e6 / samples.max(1) as f64);
    let pct = |us: f64| us / (interval.as_secs_f64() * 1e6) * 100.0;
    let wall_pct = pct(per_sample_us);
    let cpu_pct = cpu_per_sample_us.map(pct);
    let worst = cpu_pct.map_or(wall_pct, |c| c.max(wall_pct));
    eprintln!(
        "monitor sampling: {per_sample_us:.0} us a sample (p99 {:.0} us), {:.4} % of one core at {} (target < {TARGET_PCT} %){}",
        super::us(&latency, 0.99),
        wall_pct,
        humantime::format_duration(interval),
        cpu_pct.map_or(String::new(), |c| format!("; CPU time {c:.4} %")),
    );
    let passed = worst < TARGET_PCT;
    Ok(json!({
        "scenario": "monitor",
        "interval_s": interval.as_secs_f64(),
        "pools": POOLS,
        "workers_per_pool": WORKERS,
        "samples": samples,
        "sample_us": per_sample_us,
        "sample_p99_us": super::us(&latency, 0.99),
        "cpu_per_sample_us": cpu_per_sample_us,
        "overhead_pct_of_core": wall_pct,
        "cpu_overhead_pct_of_core": cpu_pct,
        "target_pct_of_core": TARGET_PCT,
        "checks": { "overhead_below_1pct_of_core": passed },
        "passed": passed,
    }))
}
