//! `nexus profile`'s workload: the benchmark's real path (`Pipeline` in `bench/pipeline.rs`:
//! router, admission, quota, LLM gateway, simulated provider, durable
//! ledger) run once per pool size and rate limit, measuring a
//! [`Point`] each.
//!
//! Each point starts a fresh pipeline with that many agents and the
//! gateway's requests-per-minute limit on the provider, then drives it
//! with closed-loop conversations (the same number at every size, twice
//! the largest size, so the offered load is the same and the pool is what
//! changes) for the run's duration, after one untimed step per agent (the
//! tokenizer's tables, first allocations). The first quarter is a warm-up (first
//! allocations, the ledger's first commits, the rate limit's burst) and
//! is not counted: throughput, latency and cost are of the tasks that
//! finish in the last three quarters. Every 10 ms in that window the run
//! samples the pool's lanes and the requests waiting for rate-limit
//! capacity; it takes the process's CPU time at both ends and the
//! gateway's spend and budget refusals.
//!
//! The gateway's rate-limit burst is one request (`burst_percent` 0): a
//! profile measures sustained throughput, and a burst (the configuration's
//! default is 10 % of the limit) lets a short run go past the limit.

use std::sync::Arc;
use std::time::Duration;

use nexus_swarm_actors::perf_profile::{Evidence, Point};
use tokio::time::Instant;

use super::pipeline::{Pipeline, PipelineConfig, StepFailure};

/// Sampling interval of the lanes and the gateway's queue.
const SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// What to measure.
#[derive(Debug, Clone)]
pub struct ProfilePlan {
    /// Pool sizes, each at least 1.
    pub sizes: Vec<u32>,
    /// Rate limits (requests per minute; `None`: unlimited), one curve each.
    pub amounts: Vec<Option<u64>>,
    /// How long each point runs (its first quarter is a warm-up).
    pub duration: Duration,
    /// The simulated provider's median latency.
    pub provider_latency: Duration,
    /// Each agent's normal-lane capacity.
    pub lane_capacity: usize,
    /// The tenant's daily budget, micro-dollars (`None`: unreachable).
    pub budget_micro_usd: Option<u64>,
}

impl ProfilePlan {
    /// Closed-loop conversations at every point: twice the largest size.
    pub fn conversations(&self) -> usize {
        let largest = self.sizes.iter().copied().max().unwrap_or(1);
        2 * usize::try_from(largest).unwrap_or(usize::MAX / 2)
    }
}

/// Runs every point, sizes within amounts, calling `progress` before each.
pub fn run(plan: &ProfilePlan, mut progress: impl FnMut(&str)) -> anyhow::Result<Vec<Point>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut points = Vec::new();
    for &rpm in &plan.amounts {
        for &size in &plan.sizes {
            progress(&format!(
                "{size} workers, {}",
                rpm.map_or_else(|| "no rate limit".to_string(), |r| format!("{r} requests/min"))
            ));
            points.push(rt.block_on(point(plan, size, rpm))?);
        }
    }
    Ok(points)
}

/// Sums of the samples taken in the measured window.
#[derive(Debug, Default)]
struct Samples {
    n: u64,
    queued: u64,
    max_depth: u64,
    rate_limit_waiting: u64,
}

/// One point: `size` agents at `rpm`.
async fn point(plan: &ProfilePlan, size: u32, rpm: Option<u64>) -> anyhow::Result<Point> {
    let agents = usize::try_from(size)?;
    let cfg = PipelineConfig {
        provider_latency: plan.provider_latency,
        requests_per_minute: rpm,
        burst_percent: 0,
        budget_micro_usd: plan.budget_micro_usd,
        lane_capacity: plan.lane_capacity,
        ..PipelineConfig::unthrottled(agents)
    };
    let p = Arc::new(Pipeline::start(cfg).await?);
    // Cost per task counts every answered call of the point, warm-up
    // included: a budget that stops the run early still prices its tasks.
    let spent0 = p.gateway_stats();
    // One step per agent before the clock starts: the tokenizer's tables
    // and first allocations are not the pool's performance. A refused step
    // (a budget) is fine here: the run counts refusals.
    let steps = (0..u64::from(size)).map(|i| p.ask(i, plan_deadline()));
    for outcome in futures::future::join_all(steps).await {
        // Ok(Err(_)) is a refused step, counted as such in the run.
        let _ = outcome?;
    }
    let start = Instant::now();
    let warm_end = start + plan.duration / 4;
    let end = start + plan.duration;
    p.stop_at(end.into_std());

    let conversations: Vec<_> = (0..plan.conversations() as u64)
        .map(|conversation| {
            let p = Arc::clone(&p);
            tokio::spawn(async move {
                let mut hist = super::histogram();
                let (mut done, mut failed) = (0u64, 0u64);
                loop {
                    let t = Instant::now();
                    // A step still under way at the end is not waited for
                    // (nor counted); the pipeline's shutdown drains it.
                    let Ok(outcome) = tokio::time::timeout_at(end, p.ask(conversation, plan_deadline())).await else {
                        break;
                    };
                    let finished = Instant::now();
                    // The workers refuse steps from the stop time on
                    // (`StepFailure::Stopped`); the timer above may fire a
                    // little after it on a loaded machine, so a step that
                    // ends past the stop time, or that says the run
                    // stopped, ends the conversation uncounted.
                    if finished >= end || matches!(outcome, Ok(Err(StepFailure::Stopped))) {
                        break;
                    }
                    if finished < warm_end {
                        if !matches!(outcome, Ok(Ok(()))) {
                            // Refused at once (a budget): do not spin.
                            tokio::task::yield_now().await;
                        }
                        continue;
                    }
                    match outcome {
                        Ok(Ok(())) => {
                            super::record(&mut hist, finished - t);
                            done += 1;
                        }
                        _ => {
                            failed += 1;
                            tokio::task::yield_now().await;
                        }
                    }
                }
                (done, failed, hist)
            })
        })
        .collect();

    // The sampler: lanes and the gateway's queue every 10 ms in the window.
    tokio::time::sleep_until(warm_end).await;
    let cpu0 = super::monitor::process_cpu_time();
    let stats0 = p.gateway_stats();
    let mut samples = Samples::default();
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    while Instant::now() < end {
        tick.tick().await;
        let (queued, max_depth) = p.lane_depths();
        samples.n += 1;
        samples.queued += queued as u64;
        samples.max_depth += max_depth as u64;
        samples.rate_limit_waiting += p.gateway_stats().queued;
    }
    let window = Instant::now() - warm_end;
    let cpu1 = super::monitor::process_cpu_time();
    let stats1 = p.gateway_stats();

    let mut latency = super::histogram();
    let (mut done, mut failed) = (0u64, 0u64);
    for task in conversations {
        let (d, f, h) = task.await?;
        done += d;
        failed += f;
        latency.add(&h)?;
    }
    if let Ok(p) = Arc::try_unwrap(p) {
        p.shutdown().await;
    }

    let milli_avg = |sum: u64| sum.saturating_mul(1000) / samples.n.max(1);
    let window_us = u64::try_from(window.as_micros()).unwrap_or(u64::MAX).max(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let cpu_permille = cpu1.zip(cpu0).map(|(b, a)| {
        let used_us = u64::try_from(b.saturating_sub(a).as_micros()).unwrap_or(u64::MAX);
        used_us.saturating_mul(1000) / window_us.saturating_mul(cores).max(1)
    });
    let spent = stats1.spent_micro_usd.saturating_sub(spent0.spent_micro_usd);
    let answered = stats1.completed.saturating_sub(spent0.completed);
    let us = |q: f64| {
        if done == 0 {
            0
        } else {
            latency.value_at_quantile(q) / 1_000
        }
    };
    Ok(Point {
        size,
        requests_per_minute: rpm,
        completed: done,
        failed,
        throughput_milli: done.saturating_mul(1_000_000_000) / window_us,
        p50_us: us(0.50),
        p95_us: us(0.95),
        p99_us: us(0.99),
        cost_per_task_micro_usd: spent.checked_div(answered).unwrap_or(0),
        evidence: Evidence {
            queued_per_worker_milli: milli_avg(samples.queued) / u64::from(size).max(1),
            max_lane_depth_milli: milli_avg(samples.max_depth),
            lane_capacity: plan.lane_capacity as u64,
            rate_limit_waiting_milli: milli_avg(samples.rate_limit_waiting),
            budget_refusals: stats1.spend_refused.saturating_sub(stats0.spend_refused),
            cpu_permille,
        },
    })
}

/// How long one step may wait in the router (admission and lane room).
fn plan_deadline() -> Duration {
    Duration::from_secs(30)
}
