//! The load benchmark: our data plane against bare `ractor`, the seeds'
//! targets, and scale, measured in one run.
//!
//! The same code runs behind `nexus bench` and `cargo bench --bench swarm`.
//! Every figure in the report is measured in the run that prints it; the
//! seeds' targets and the team's goals are printed beside them.

mod lanes;
mod micro;
mod probe;
mod raw;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

pub use probe::{PROBE_ENV, run_probe_if_requested};

/// How much work each measurement does.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Smaller workloads: the whole run finishes in well under a minute on 2 cores.
    pub quick: bool,
    /// Tiny workloads that only prove the harness works (tests use it);
    /// its figures are too small to mean anything.
    pub smoke: bool,
    /// Also write the report as one JSON object to this file.
    pub json: Option<PathBuf>,
}

impl BenchOptions {
    /// Parses `--quick` and `--json FILE`, ignoring anything else (cargo
    /// passes `--bench` to benchmark binaries).
    pub fn from_args(args: impl IntoIterator<Item = String>) -> anyhow::Result<Self> {
        let mut opts = BenchOptions {
            quick: false,
            smoke: false,
            json: None,
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => opts.quick = true,
                "--smoke" => opts.smoke = true,
                "--json" => {
                    let file = args.next().ok_or_else(|| anyhow::anyhow!("--json needs a file name"))?;
                    opts.json = Some(PathBuf::from(file));
                }
                _ => {}
            }
        }
        Ok(opts)
    }
}

/// Everything one run measured. Field names are the JSON keys.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// `quick` or `full`.
    pub mode: &'static str,
    /// Bare ractor: one task casting to one actor.
    pub raw_cast_msgs_per_s: f64,
    /// Bare ractor `call!` round trip, median.
    pub raw_call_p50_us: f64,
    /// Bare ractor `call!` round trip, 99th percentile.
    pub raw_call_p99_us: f64,
    /// Our data plane: one task charging a quota and casting through a
    /// router (admission, pick) into a pool of agents' lanes.
    pub routed_cast_msgs_per_s: f64,
    /// `routed_cast_msgs_per_s / raw_cast_msgs_per_s`.
    pub routed_to_raw_ratio: f64,
    /// Asks under a steady load at half the measured maximum.
    pub ask_p50_us: f64,
    /// See `ask_p50_us`.
    pub ask_p95_us: f64,
    /// See `ask_p50_us`.
    pub ask_p99_us: f64,
    /// See `ask_p50_us`.
    pub ask_p999_us: f64,
    /// The steady load the asks ran under (msgs/s).
    pub ask_load_msgs_per_s: f64,
    /// High-priority asks while producers flood the agent's normal lane.
    pub high_ask_p99_under_flood_us: f64,
    /// The same with a bare ractor actor (one unbounded FIFO mailbox).
    pub raw_ask_p99_under_flood_us: f64,
    /// Messages in each flood.
    pub flood_messages: u64,
    /// Seeds' scenario: 100 agents, 50 concurrent chats, agent messages/s.
    pub seed_scenario_msgs_per_s: f64,
    /// Seeds' scenario exchange latency, 95th percentile.
    pub seed_scenario_p95_ms: f64,
    /// Seeds' scenario exchange latency, 99th percentile.
    pub seed_scenario_p99_ms: f64,
    /// Seeds' scenario exchange latency, maximum.
    pub seed_scenario_max_ms: f64,
    /// Idle supervised agents spawned by the scale probe.
    pub spawned_agents: u64,
    /// Time to spawn them.
    pub spawn_100k_ms: f64,
    /// Resident bytes per idle agent.
    pub bytes_per_idle_agent: f64,
    /// Time to spawn as many bare ractor actors.
    pub raw_spawn_100k_ms: f64,
    /// Resident bytes per idle bare ractor actor.
    pub bytes_per_raw_actor: f64,
    /// Consistent-hash lookup on a 1,000-member ring with 160 virtual nodes each.
    pub ring_lookup_ns: f64,
    /// Uncontended quota charge by name on a 3-level tree.
    pub quota_charge_ns: f64,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000_000, 3).expect("valid histogram bounds")
}

/// Records a duration in nanoseconds.
fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1));
}

fn us(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1e3
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1e6
}

/// Progress on stderr: a bar on a terminal, plain lines otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    step: u64,
    total: u64,
}

impl Progress {
    fn new(total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed}]")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        Self { bar, step: 0, total }
    }

    fn start(&mut self, what: &str) {
        self.step += 1;
        match &self.bar {
            Some(bar) => {
                bar.set_position(self.step - 1);
                bar.set_message(what.to_string());
            }
            None => eprintln!("[{}/{}] {what}", self.step, self.total),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

struct Sizes {
    casts: u64,
    calls: u64,
    flood: u64,
    ask_window: Duration,
    scenario: Duration,
    spawn: usize,
    workers: usize,
    lookups: u64,
}

impl Sizes {
    fn new(quick: bool, smoke: bool) -> Self {
        if smoke {
            Sizes {
                casts: 20_000,
                calls: 1_000,
                flood: 20_000,
                ask_window: Duration::from_millis(100),
                scenario: Duration::from_millis(100),
                spawn: 1_000,
                workers: 2,
                lookups: 100_000,
            }
        } else if quick {
            Sizes {
                casts: 1_000_000,
                calls: 20_000,
                flood: 1_000_000,
                ask_window: Duration::from_secs(2),
                scenario: Duration::from_secs(2),
                spawn: 100_000,
                workers: 2,
                lookups: 10_000_000,
            }
        } else {
            Sizes {
                casts: 5_000_000,
                calls: 200_000,
                flood: 1_000_000,
                ask_window: Duration::from_secs(10),
                scenario: Duration::from_secs(10),
                spawn: 100_000,
                workers: 2,
                lookups: 10_000_000,
            }
        }
    }
}

/// Runs every measurement and returns the report (also printed as a table,
/// and written as JSON when asked).
pub fn run(opts: &BenchOptions) -> anyhow::Result<BenchReport> {
    let sizes = Sizes::new(opts.quick, opts.smoke);
    let mut progress = Progress::new(9);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let started = Instant::now();

    progress.start("bare ractor cast throughput");
    let raw_cast = rt.block_on(raw::cast_throughput(sizes.casts))?;
    progress.start("bare ractor call round trips");
    let raw_call = rt.block_on(raw::call_latency(sizes.calls))?;
    progress.start("data plane: quota charge + router + admission into a pool's lanes");
    let routed_cast = rt.block_on(lanes::routed_cast_throughput(sizes.casts, sizes.workers))?;
    progress.start("asks under steady load at half the maximum");
    let load = routed_cast / 2.0;
    let asks = rt.block_on(lanes::ask_under_steady_load(load, sizes.ask_window, sizes.workers))?;
    progress.start("priority isolation under a flood (ours, then bare ractor)");
    let gap = Duration::from_micros(200);
    let high_flood = rt.block_on(lanes::high_ask_under_flood(sizes.flood, 100_000, gap))?;
    let raw_flood = rt.block_on(raw::ask_under_flood(sizes.flood, 100_000, gap))?;
    progress.start("seeds' scenario: 100 agents, 50 chats");
    let (scenario_rate, scenario) = rt.block_on(lanes::seed_scenario(100, 50, sizes.scenario))?;
    drop(rt);
    progress.start("scale: spawning idle bare ractor actors (child process)");
    let raw_probe = probe::probe_in_child("raw", sizes.spawn)?;
    progress.start("scale: spawning idle supervised agents (child process)");
    let agent_probe = probe::probe_in_child("agents", sizes.spawn)?;
    progress.start("hash ring lookups and quota charges");
    let ring_lookup = micro::ring_lookup_ns(sizes.lookups)?;
    let quota_charge = micro::quota_charge_ns(sizes.lookups)?;
    progress.finish();

    let report = BenchReport {
        mode: if opts.smoke {
            "smoke"
        } else if opts.quick {
            "quick"
        } else {
            "full"
        },
        raw_cast_msgs_per_s: raw_cast.round(),
        raw_call_p50_us: us(&raw_call, 0.50),
        raw_call_p99_us: us(&raw_call, 0.99),
        routed_cast_msgs_per_s: routed_cast.round(),
        routed_to_raw_ratio: (routed_cast / raw_cast * 100.0).round() / 100.0,
        ask_p50_us: us(&asks, 0.50),
        ask_p95_us: us(&asks, 0.95),
        ask_p99_us: us(&asks, 0.99),
        ask_p999_us: us(&asks, 0.999),
        ask_load_msgs_per_s: load.round(),
        high_ask_p99_under_flood_us: us(&high_flood, 0.99),
        raw_ask_p99_under_flood_us: us(&raw_flood, 0.99),
        flood_messages: sizes.flood,
        seed_scenario_msgs_per_s: scenario_rate.round(),
        seed_scenario_p95_ms: ms(&scenario, 0.95),
        seed_scenario_p99_ms: ms(&scenario, 0.99),
        seed_scenario_max_ms: scenario.max() as f64 / 1e6,
        spawned_agents: agent_probe.count,
        spawn_100k_ms: agent_probe.spawn_ms as f64,
        bytes_per_idle_agent: agent_probe.bytes_per_actor as f64,
        raw_spawn_100k_ms: raw_probe.spawn_ms as f64,
        bytes_per_raw_actor: raw_probe.bytes_per_actor as f64,
        ring_lookup_ns: (ring_lookup * 10.0).round() / 10.0,
        quota_charge_ns: (quota_charge * 10.0).round() / 10.0,
    };
    print_table(&report, started.elapsed());
    if let Some(path) = &opts.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")?;
        println!("wrote {}", path.display());
    }
    Ok(report)
}

fn print_table(r: &BenchReport, took: Duration) {
    let rows: Vec<(String, String, String)> = vec![
        (
            "bare ractor cast (1 task -> 1 actor)".into(),
            format!("{:.2} M msgs/s", r.raw_cast_msgs_per_s / 1e6),
            "floor".into(),
        ),
        (
            "bare ractor call p50 / p99".into(),
            format!("{:.1} / {:.1} us", r.raw_call_p50_us, r.raw_call_p99_us),
            "floor".into(),
        ),
        (
            "our cast: quota + router + admission -> lanes".into(),
            format!("{:.2} M msgs/s", r.routed_cast_msgs_per_s / 1e6),
            "".into(),
        ),
        (
            "  ratio to bare ractor cast".into(),
            format!("{:.2}x", r.routed_to_raw_ratio),
            ">= 1.0 (aim 2)".into(),
        ),
        (
            format!("ask p50/p95/p99/p999 at {:.2} M msgs/s", r.ask_load_msgs_per_s / 1e6),
            format!(
                "{:.0} / {:.0} / {:.0} / {:.0} us",
                r.ask_p50_us, r.ask_p95_us, r.ask_p99_us, r.ask_p999_us
            ),
            "p99 <= 100 us (aim 50)".into(),
        ),
        (
            format!("high ask p99, {}k-message normal flood", r.flood_messages / 1000),
            format!("{:.0} us", r.high_ask_p99_under_flood_us),
            "<= 100 us (aim 50)".into(),
        ),
        (
            "  same with bare ractor (no priorities)".into(),
            format!("{:.0} us", r.raw_ask_p99_under_flood_us),
            "".into(),
        ),
        (
            "seeds' scenario: 100 agents, 50 chats".into(),
            format!("{:.0} msgs/s", r.seed_scenario_msgs_per_s),
            format!(
                "seed 1,000 msgs/s ({:.0}x); goal 100x",
                r.seed_scenario_msgs_per_s / 1000.0
            ),
        ),
        (
            "  exchange latency p95 / p99 / max".into(),
            format!(
                "{:.2} / {:.2} / {:.2} ms",
                r.seed_scenario_p95_ms, r.seed_scenario_p99_ms, r.seed_scenario_max_ms
            ),
            "seed 200 / 500 / 1000 ms; goal p99 < 1 ms".into(),
        ),
        (
            format!("spawn {}k idle agents", r.spawned_agents / 1000),
            format!("{:.0} ms", r.spawn_100k_ms),
            format!("bare ractor {:.0} ms", r.raw_spawn_100k_ms),
        ),
        (
            "resident bytes per idle agent".into(),
            format!("{:.0} B", r.bytes_per_idle_agent),
            format!(
                "<= 1.5x bare ({:.0} B): {:.2}x",
                r.bytes_per_raw_actor,
                r.bytes_per_idle_agent / r.bytes_per_raw_actor.max(1.0)
            ),
        ),
        (
            "hash ring lookup (1,000 members x 160)".into(),
            format!("{:.1} ns", r.ring_lookup_ns),
            "<= 100 ns".into(),
        ),
        (
            "quota charge (3 levels, by name)".into(),
            format!("{:.1} ns", r.quota_charge_ns),
            "<= 50 ns".into(),
        ),
    ];
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    println!(
        "Nexus Swarm load benchmark ({} mode, {:.1} s)",
        r.mode,
        took.as_secs_f64()
    );
    println!("{:w0$}  {:>w1$}  target / note", "measurement", "measured");
    println!("{}", "-".repeat(w0 + w1 + 30));
    for (a, b, c) in rows {
        println!("{a:w0$}  {b:>w1$}  {c}");
    }
}
