//! The seeds' load scenarios over the real path (seed 002's validation:
//! ramp-up, peak load, stress test, soak at 70 % steady load).
//!
//! Every scenario runs on the same [`Pipeline`] as the LLM scenario (router,
//! admission, quota, gateway, simulated provider, durable ledger), driven
//! open-loop: requests are offered at a planned rate whether or not earlier
//! ones are answered (a closed loop would slow down with the node and hide
//! its saturation). Each offer is `RouterHandle::try_send`: admitted, or
//! shed with a typed refusal (the router's admission, or a full lane: every
//! lane is bounded). Latency is measured per admitted request, from its
//! admission to its answer.
//!
//! The rate the node sustains is measured first, briefly, with closed-loop
//! conversations (or given with `--rate`), and each scenario is planned
//! relative to it:
//!
//! | scenario | offered rate | window |
//! |---|---|---|
//! | `ramp` | 0 to 100 % of sustainable, linearly | tenth of the run |
//! | `peak` | 100 % of sustainable | minute |
//! | `stress` | 200 %, admission set to the sustainable rate | minute |
//! | `soak` | 70 % (seed 002's steady load), a fault injected halfway | minute |
//!
//! `monitor` drives no load: it measures the monitor's own sampling cost
//! (see `bench/monitor.rs`). `cluster` measures cross-node messaging
//! over loopback, ours beside bare `ractor_cluster` (see `bench/cluster.rs`).
//!
//! Windows are a minute long when the run lasts 3 minutes or more, a sixth
//! of the run otherwise. Soak's fault makes every worker of the pool panic
//! on each message for 10 s (a sixth of the run if shorter); its recovery
//! time is from the fault's end until throughput, averaged over 1 s (or
//! half the fault), is back within 10 % of the 10 s before the fault.
//!
//! Each scenario prints one JSON line on stdout (human text on stderr),
//! with `checks` against the seeds' targets (p95 200 ms, p99 500 ms, error
//! rate below 0.1 %, recovery under 30 s) and `passed`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use super::BenchOptions;
use super::pipeline::{INJECTED_FAULT, Pipeline, PipelineConfig, Shed, StepOutcome};

/// One of the seeds' load scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScenarioKind {
    /// Offered load rises linearly from 0 to the sustainable rate.
    Ramp,
    /// The sustainable rate, steady.
    Peak,
    /// Twice the sustainable rate: the node must shed, not collapse.
    Stress,
    /// 70 % of the sustainable rate for long, memory and latency per
    /// minute, with an injected fault and the time to recover from it.
    Soak,
    /// The monitor's sampling cost at its default interval, in percent of
    /// one core (target: under 1 %).
    Monitor,
    /// Cross-node casts (throughput) and asks (round trip) over loopback,
    /// through our envelope beside bare `ractor_cluster`, at 64 B and 4 KiB.
    Cluster,
}

impl ScenarioKind {
    fn name(self) -> &'static str {
        match self {
            ScenarioKind::Ramp => "ramp",
            ScenarioKind::Peak => "peak",
            ScenarioKind::Stress => "stress",
            ScenarioKind::Soak => "soak",
            ScenarioKind::Monitor => "monitor",
            ScenarioKind::Cluster => "cluster",
        }
    }

    fn default_duration(self) -> Duration {
        match self {
            ScenarioKind::Ramp | ScenarioKind::Peak => Duration::from_secs(300),
            ScenarioKind::Stress => Duration::from_secs(120),
            ScenarioKind::Soak => Duration::from_secs(600),
            // Counts messages (`--messages`) instead.
            ScenarioKind::Monitor | ScenarioKind::Cluster => Duration::from_secs(10),
        }
    }
}

/// `--scenario cluster`'s casts of each kind and size, by default.
const CLUSTER_MESSAGES: u64 = 50_000;
/// Agents behind the router (seed 001: 100 concurrent agents).
const AGENTS: usize = 100;
/// The seeds' latency targets.
const SEED_P95_MS: f64 = 200.0;
const SEED_P99_MS: f64 = 500.0;
/// The seeds' error rate ceiling (0.1 %) and recovery time.
const SEED_ERROR_RATE: f64 = 0.001;
const SEED_RECOVERY: Duration = Duration::from_secs(30);

/// Runs a scenario and prints its JSON line.
pub(super) fn run(kind: ScenarioKind, opts: &BenchOptions) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        opts.messages.is_none() || kind == ScenarioKind::Cluster,
        "--messages is taken by --scenario cluster only"
    );
    let duration = opts.duration.unwrap_or(kind.default_duration());
    anyhow::ensure!(
        duration >= Duration::from_millis(600),
        "--duration {} is too short for a scenario (at least 600ms)",
        humantime::format_duration(duration)
    );
    if let Some(rate) = opts.rate {
        anyhow::ensure!(
            rate.is_finite() && rate >= 1.0,
            "--rate {rate} must be at least 1 request/s"
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let line = match kind {
        ScenarioKind::Monitor => rt.block_on(super::monitor::run(duration))?,
        ScenarioKind::Cluster => rt.block_on(super::cluster::run(opts.messages.unwrap_or(CLUSTER_MESSAGES)))?,
        load => rt.block_on(scenario(load, duration, opts.rate))?,
    };
    println!("{}", serde_json::to_string(&line)?);
    Ok(ExitCode::SUCCESS)
}

/// The rate the node sustains: closed-loop conversations, two per agent so
/// that no agent waits for work, for a tenth of the run (0.5 to 5 s).
async fn sustainable_rate(duration: Duration) -> anyhow::Result<f64> {
    let probe = (duration / 10).clamp(Duration::from_millis(500), Duration::from_secs(5));
    let p = Arc::new(Pipeline::start(PipelineConfig::unthrottled(AGENTS)).await?);
    super::pipeline::warm_up(&p, AGENTS).await?;
    let result = super::pipeline::closed_loop(&p, 2 * AGENTS, probe).await?;
    anyhow::ensure!(
        result.errors == 0,
        "{} steps failed while measuring the sustainable rate, the first: {}",
        result.errors,
        result.first_error.as_deref().unwrap_or("?")
    );
    if let Ok(p) = Arc::try_unwrap(p) {
        p.shutdown().await;
    }
    Ok(result.rate)
}

/// What to offer, when.
struct Plan {
    duration: Duration,
    /// Length of each window (the last may be shorter).
    window: Duration,
    /// Number of windows.
    windows: usize,
    /// Offered requests/s at a time (seconds from the start).
    rate: Box<dyn Fn(f64) -> f64 + Send>,
    /// (start, length) of the injected fault.
    fault: Option<(Duration, Duration)>,
}

/// Minute windows when the run lasts 3 minutes or more, sixths otherwise.
fn minute_or_sixth(duration: Duration) -> (Duration, usize) {
    if duration >= Duration::from_secs(180) {
        let minutes = (duration.as_secs_f64() / 60.0 - 1e-9).ceil() as usize;
        (Duration::from_secs(60), minutes)
    } else {
        (duration / 6, 6)
    }
}

async fn scenario(kind: ScenarioKind, duration: Duration, rate: Option<f64>) -> anyhow::Result<Value> {
    eprintln!("{} scenario, {}", kind.name(), humantime::format_duration(duration));
    let sustainable = match rate {
        Some(rate) => rate,
        None => {
            let rate = sustainable_rate(duration).await?;
            eprintln!("sustainable rate measured: {rate:.0} req/s");
            rate
        }
    };
    let (window, windows) = minute_or_sixth(duration);
    let mut cfg = PipelineConfig::unthrottled(AGENTS);
    let plan = match kind {
        ScenarioKind::Ramp => {
            let d = duration.as_secs_f64();
            Plan {
                duration,
                window: duration / 10,
                windows: 10,
                rate: Box::new(move |t| sustainable * (t / d).min(1.0)),
                fault: None,
            }
        }
        ScenarioKind::Peak => Plan {
            duration,
            window,
            windows,
            rate: Box::new(move |_| sustainable),
            fault: None,
        },
        ScenarioKind::Stress => {
            // The node's admission is set to what it sustains, as an
            // operator would; the seeds' burst is a tenth of the rate.
            cfg.admission_rate = sustainable.round().clamp(1.0, f64::from(u32::MAX)) as u32;
            cfg.admission_burst = (cfg.admission_rate / 10).max(1);
            Plan {
                duration,
                window,
                windows,
                rate: Box::new(move |_| 2.0 * sustainable),
                fault: None,
            }
        }
        ScenarioKind::Soak => {
            let fault = (duration / 6).min(Duration::from_secs(10));
            Plan {
                duration,
                window,
                windows,
                rate: Box::new(move |_| 0.7 * sustainable),
                fault: Some((duration / 2, fault)),
            }
        }
        // Measured by `super::monitor`, which `run` calls instead.
        ScenarioKind::Monitor => anyhow::bail!("the monitor scenario drives no load"),
        ScenarioKind::Cluster => anyhow::bail!("the cluster scenario drives no pipeline load"),
    };
    if plan.fault.is_some() {
        quiet_injected_panics();
    }
    let p = Arc::new(Pipeline::start(cfg).await?);
    super::pipeline::warm_up(&p, AGENTS).await?;
    let run = drive(&p, &plan).await?;
    p.check_ledger()?;
    let lane_capacity = p.lane_capacity();
    if let Ok(p) = Arc::try_unwrap(p) {
        p.shutdown().await;
    }
    Ok(summarize(kind, &plan, sustainable, lane_capacity, run))
}

/// Injected faults panic on purpose, thousands of times: keep the panic
/// hook's report of them off stderr (the pool still logs each failed
/// worker); every other panic is reported as before.
fn quiet_injected_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<&str>() != Some(&INJECTED_FAULT) {
            previous(info);
        }
    }));
}

/// Resident bytes of this process (`/proc/self/statm`, resident pages).
fn rss_bytes(page_size: u64) -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .map_or(0, |pages| pages * page_size)
}

fn page_size() -> u64 {
    std::process::Command::new("getconf")
        .arg("PAGESIZE")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(4096)
}

/// The generator's view of a window.
#[derive(Debug, Default, Clone)]
struct Offered {
    offered: u64,
    admitted: u64,
    shed_admission: u64,
    shed_lane_full: u64,
    shed_other: u64,
    max_lane_depth: usize,
    rss_bytes: u64,
}

/// The collector's view of a window (by time of answer).
#[derive(Debug, Clone)]
struct Answered {
    completed: u64,
    errors: u64,
    latency: Histogram<u64>,
}

struct Collected {
    windows: Vec<Answered>,
    /// Successful answers per bucket.
    buckets: Vec<u64>,
    bucket: Duration,
    latency: Histogram<u64>,
    errors_in_fault: u64,
    errors_outside_fault: u64,
    /// Steps refused by the quota or failed by the gateway.
    errors_refused: u64,
    /// Steps whose agent failed while handling them (reply dropped).
    errors_agent_failed: u64,
}

struct Run {
    offered: Vec<Offered>,
    collected: Collected,
    elapsed: Duration,
}

async fn drive(p: &Arc<Pipeline>, plan: &Plan) -> anyhow::Result<Run> {
    let page_size = page_size();
    let windows = plan.windows;
    let bucket = (plan.duration / 100).min(Duration::from_millis(100));
    let (tx, rx) = mpsc::unbounded_channel::<(Instant, oneshot::Receiver<StepOutcome>)>();
    let started = Instant::now();
    let collector = tokio::spawn(collect(
        rx,
        started,
        plan.window,
        windows,
        bucket,
        plan.duration,
        plan.fault,
    ));
    let mut per_window = vec![Offered::default(); windows];
    let mut credit = 0.0f64;
    let mut last = started;
    let mut conversation = 0u64;
    let mut fault_on = false;
    let mut rss_window = usize::MAX;
    loop {
        let now = Instant::now();
        let t = now - started;
        if t >= plan.duration {
            break;
        }
        let w = ((t.as_secs_f64() / plan.window.as_secs_f64()) as usize).min(windows - 1);
        if w != rss_window {
            rss_window = w;
            per_window[w].rss_bytes = rss_bytes(page_size);
        }
        if let Some((start, len)) = plan.fault {
            let on = t >= start && t < start + len;
            if on != fault_on {
                p.set_fault(on);
                fault_on = on;
                eprintln!(
                    "fault {} at {:.1} s",
                    if on { "injected" } else { "ended" },
                    t.as_secs_f64()
                );
            }
        }
        credit += (plan.rate)(t.as_secs_f64()) * (now - last).as_secs_f64();
        last = now;
        let g = &mut per_window[w];
        while credit >= 1.0 {
            credit -= 1.0;
            g.offered += 1;
            conversation += 1;
            match p.try_submit(conversation) {
                Ok(rx) => {
                    g.admitted += 1;
                    // The collector outlives the generator; it only stops
                    // when this sender is dropped.
                    let _ = tx.send((Instant::now(), rx));
                }
                Err(Shed::Admission) => g.shed_admission += 1,
                Err(Shed::LaneFull) => g.shed_lane_full += 1,
                Err(Shed::Other) => g.shed_other += 1,
            }
        }
        g.max_lane_depth = g.max_lane_depth.max(p.max_lane_depth());
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    p.set_fault(false);
    drop(tx);
    let collected = collector.await??;
    Ok(Run {
        offered: per_window,
        collected,
        elapsed: started.elapsed(),
    })
}

async fn collect(
    mut rx: mpsc::UnboundedReceiver<(Instant, oneshot::Receiver<StepOutcome>)>,
    started: Instant,
    window: Duration,
    windows: usize,
    bucket: Duration,
    duration: Duration,
    fault: Option<(Duration, Duration)>,
) -> anyhow::Result<Collected> {
    let nb = (duration.as_secs_f64() / bucket.as_secs_f64()).ceil() as usize + 1;
    let mut out = Collected {
        windows: vec![
            Answered {
                completed: 0,
                errors: 0,
                latency: super::histogram(),
            };
            windows
        ],
        buckets: vec![0; nb],
        bucket,
        latency: super::histogram(),
        errors_in_fault: 0,
        errors_outside_fault: 0,
        errors_refused: 0,
        errors_agent_failed: 0,
    };
    let mut record = |admitted: Instant, outcome: Result<StepOutcome, oneshot::error::RecvError>| {
        let now = Instant::now();
        let t = now - started;
        let w = ((t.as_secs_f64() / window.as_secs_f64()) as usize).min(windows - 1);
        match outcome {
            Ok(Ok(())) => {
                let latency = now - admitted;
                out.windows[w].completed += 1;
                super::record(&mut out.windows[w].latency, latency);
                super::record(&mut out.latency, latency);
                let b = ((t.as_secs_f64() / bucket.as_secs_f64()) as usize).min(nb - 1);
                out.buckets[b] += 1;
            }
            // A failed step, or a dropped reply (the agent failed on it).
            failed => {
                if failed.is_ok() {
                    out.errors_refused += 1;
                } else {
                    out.errors_agent_failed += 1;
                }
                out.windows[w].errors += 1;
                let grace = Duration::from_millis(100);
                match fault {
                    Some((start, len)) if t >= start && t <= start + len + grace => out.errors_in_fault += 1,
                    _ => out.errors_outside_fault += 1,
                }
            }
        }
    };
    let mut pending = FuturesUnordered::new();
    loop {
        tokio::select! {
            next = rx.recv() => match next {
                Some((admitted, answer)) => pending.push(async move { (admitted, answer.await) }),
                None => break,
            },
            Some((admitted, outcome)) = pending.next(), if !pending.is_empty() => record(admitted, outcome),
        }
    }
    // Everything admitted is answered or fails: every lane is drained.
    let drain = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some((admitted, outcome)) = pending.next().await {
            record(admitted, outcome);
        }
    })
    .await;
    anyhow::ensure!(drain.is_ok(), "admitted requests still unanswered 60 s after the run");
    Ok(out)
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.value_at_quantile(q) as f64 / 1e6
    }
}

/// Time from the fault's end until throughput is back within 10 % of the
/// 10 s before the fault (both in successful answers per bucket).
fn recovery(c: &Collected, fault: (Duration, Duration)) -> Option<Duration> {
    let (start, len) = fault;
    let b = c.bucket.as_secs_f64();
    let at = |t: Duration| (t.as_secs_f64() / b) as usize;
    let before_from = at(start.saturating_sub(Duration::from_secs(10)));
    let before = &c.buckets[before_from..at(start).min(c.buckets.len())];
    if before.is_empty() {
        return None;
    }
    let baseline = before.iter().sum::<u64>() as f64 / before.len() as f64;
    let smooth = ((Duration::from_secs(1).min(len / 2)).as_secs_f64() / b)
        .round()
        .max(1.0) as usize;
    let end = (start + len).as_secs_f64() / b;
    let first = end.ceil() as usize;
    // The last bucket is partial: never judge on it.
    let usable = c.buckets.len().saturating_sub(1);
    (first..usable.saturating_sub(smooth - 1))
        .find(|&i| {
            let avg = c.buckets[i..i + smooth].iter().sum::<u64>() as f64 / smooth as f64;
            avg >= 0.9 * baseline
        })
        .map(|i| Duration::from_secs_f64((i as f64 - end).max(0.0) * b))
}

fn summarize(kind: ScenarioKind, plan: &Plan, sustainable: f64, lane_capacity: usize, run: Run) -> Value {
    let c = &run.collected;
    let sum = |f: fn(&Offered) -> u64| run.offered.iter().map(f).sum::<u64>();
    let offered = sum(|o| o.offered);
    let admitted = sum(|o| o.admitted);
    let shed_admission = sum(|o| o.shed_admission);
    let shed_lane_full = sum(|o| o.shed_lane_full);
    let shed_other = sum(|o| o.shed_other);
    let shed = shed_admission + shed_lane_full + shed_other;
    let completed: u64 = c.windows.iter().map(|w| w.completed).sum();
    let errors: u64 = c.windows.iter().map(|w| w.errors).sum();
    let max_lane_depth = run.offered.iter().map(|o| o.max_lane_depth).max().unwrap_or(0);
    let secs = plan.duration.as_secs_f64();
    let throughput = completed as f64 / secs;
    let error_rate = if admitted == 0 {
        0.0
    } else {
        errors as f64 / admitted as f64
    };
    let window_s = plan.window.as_secs_f64();
    let windows: Vec<Value> = run
        .offered
        .iter()
        .zip(&c.windows)
        .enumerate()
        .map(|(i, (o, a))| {
            // The last window may be shorter than the others.
            let len = window_s.min(secs - i as f64 * window_s).max(1e-9);
            json!({
                "t_s": (i as f64 * window_s * 1000.0).round() / 1000.0,
                "offered_req_per_s": (o.offered as f64 / len).round(),
                "completed_req_per_s": (a.completed as f64 / len).round(),
                "shed": o.shed_admission + o.shed_lane_full + o.shed_other,
                "errors": a.errors,
                "p50_ms": ms(&a.latency, 0.50),
                "p99_ms": ms(&a.latency, 0.99),
                "max_lane_depth": o.max_lane_depth,
                "rss_bytes": o.rss_bytes,
            })
        })
        .collect();
    let p95 = ms(&c.latency, 0.95);
    let p99 = ms(&c.latency, 0.99);
    let mut line = json!({
        "scenario": kind.name(),
        "duration_s": secs,
        "window_s": window_s,
        "agents": AGENTS,
        "sustainable_req_per_s": sustainable.round(),
        "offered": offered,
        "offered_req_per_s": (offered as f64 / secs).round(),
        "admitted": admitted,
        "shed": shed,
        "shed_admission": shed_admission,
        "shed_lane_full": shed_lane_full,
        "shed_other": shed_other,
        "completed": completed,
        "errors": errors,
        "errors_refused": c.errors_refused,
        "errors_agent_failed": c.errors_agent_failed,
        "error_rate": error_rate,
        "throughput_req_per_s": throughput.round(),
        "p50_ms": ms(&c.latency, 0.50),
        "p95_ms": p95,
        "p99_ms": p99,
        "max_ms": c.latency.max() as f64 / 1e6,
        "max_lane_depth": max_lane_depth,
        "lane_capacity": lane_capacity,
        "windows": windows,
    });
    let mut checks = serde_json::Map::new();
    match kind {
        ScenarioKind::Ramp => {
            let each = c
                .windows
                .iter()
                .all(|w| w.latency.is_empty() || ms(&w.latency, 0.99) <= SEED_P99_MS);
            checks.insert("p99_within_seed_500ms_each_step".into(), each.into());
        }
        ScenarioKind::Peak => {
            checks.insert("p95_within_seed_200ms".into(), (p95 <= SEED_P95_MS).into());
            checks.insert("p99_within_seed_500ms".into(), (p99 <= SEED_P99_MS).into());
            checks.insert(
                "error_rate_below_seed_0.1pct".into(),
                (error_rate < SEED_ERROR_RATE).into(),
            );
            checks.insert(
                "throughput_at_least_90pct_of_offered".into(),
                (completed as f64 >= 0.9 * offered as f64).into(),
            );
        }
        ScenarioKind::Stress => {
            checks.insert("shed".into(), (shed > 0).into());
            checks.insert("not_collapsed".into(), (throughput >= 0.5 * sustainable).into());
            checks.insert("lanes_bounded".into(), (max_lane_depth <= lane_capacity).into());
            checks.insert("p99_of_admitted_within_seed_500ms".into(), (p99 <= SEED_P99_MS).into());
            line["goodput_to_sustainable_ratio"] = json!(throughput / sustainable);
        }
        ScenarioKind::Soak => {
            let rss: Vec<u64> = run.offered.iter().map(|o| o.rss_bytes).collect();
            let (second, last) = (rss.get(1).copied().unwrap_or(0), rss.last().copied().unwrap_or(0));
            let drift_pct = if second == 0 {
                0.0
            } else {
                (last as f64 - second as f64) / second as f64 * 100.0
            };
            let fault = plan.fault.unwrap_or_default();
            let recovered = recovery(c, fault);
            let outside = admitted.saturating_sub(c.errors_in_fault);
            let outside_rate = if outside == 0 {
                0.0
            } else {
                c.errors_outside_fault as f64 / outside as f64
            };
            line["rss_last_vs_second_window_pct"] = json!(drift_pct);
            line["fault_at_s"] = json!(fault.0.as_secs_f64());
            line["fault_s"] = json!(fault.1.as_secs_f64());
            line["errors_during_fault"] = json!(c.errors_in_fault);
            line["errors_outside_fault"] = json!(c.errors_outside_fault);
            line["recovery_ms"] = json!(recovered.map(|d| d.as_secs_f64() * 1e3));
            checks.insert("rss_flat_within_5pct".into(), (drift_pct.abs() <= 5.0).into());
            checks.insert("recovered".into(), recovered.is_some().into());
            checks.insert(
                "recovery_within_seed_30s".into(),
                recovered.is_some_and(|d| d <= SEED_RECOVERY).into(),
            );
            checks.insert(
                "error_rate_outside_fault_below_seed_0.1pct".into(),
                (outside_rate < SEED_ERROR_RATE).into(),
            );
        }
        ScenarioKind::Monitor | ScenarioKind::Cluster => {}
    }
    let passed = checks.values().all(|v| v.as_bool() == Some(true));
    eprintln!(
        "{}: offered {offered}, admitted {admitted}, shed {shed}, completed {completed} ({:.0} req/s), errors {errors}, p95 {p95:.2} ms, p99 {p99:.2} ms, max lane depth {max_lane_depth}/{lane_capacity} (run took {:.1} s)",
        kind.name(),
        throughput,
        run.elapsed.as_secs_f64()
    );
    for (check, ok) in &checks {
        eprintln!(
            "  {check}: {}",
            if ok.as_bool() == Some(true) { "ok" } else { "FAILED" }
        );
    }
    line["checks"] = Value::Object(checks);
    line["passed"] = passed.into();
    line
}
