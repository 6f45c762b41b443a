//! The load benchmark: our data plane against bare `ractor` with the same
//! number of senders, consumers and work, the seeds' scenario through the
//! product's real path, and scale, measured in one run.
//!
//! The same code runs behind `nexus bench` and `cargo bench --bench swarm`.
//! Every figure in a report is measured in the run that prints it, and
//! every ratio is the quotient of two figures of that same run; the seeds'
//! targets and the team's floors are printed beside them.
//!
//! # Layout
//!
//! | module | what it measures or does |
//! |---|---|
//! | `raw` | the floor: bare ractor actors (cast, round-robin over N, call, flood) |
//! | `lanes` | our data plane: `AgentRef` sends, routed casts into a pool, asks, priorities, ping-pong, spawns |
//! | `pipeline` | the real path: router, admission, quota, gateway, simulated provider, durable ledger |
//! | `gateway` | the gateway's added latency over a direct provider call |
//! | `micro` | ring lookups over a million keys, the quota charge through `QuotaHandle` |
//! | `probe` | 100,000 idle agents / bare actors, each in a child process (time and resident bytes) |
//! | `scenario` | the seeds' load scenarios (`--scenario ramp|peak|stress|soak`) over the pipeline |
//! | [`profile`] | `nexus profile`'s workload: the pipeline at each pool size and rate limit, with saturation evidence |
//! | `monitor` | the monitor's sampling cost at its default interval (`--scenario monitor`), in % of one core |
//! | `cluster` | cross-node casts and asks over loopback, ours beside bare `ractor_cluster` (`--scenario cluster`) |
//! | [`cluster_table`] | the README's cross-node table, rendered from a saved cluster result |
//! | [`results`] | saved results (machine, medians of runs), baseline comparison, README table |

mod cluster;
pub mod cluster_table;
mod gateway;
mod lanes;
mod micro;
mod monitor;
mod pipeline;
mod probe;
pub mod profile;
mod raw;
pub mod results;
mod scenario;
pub mod soak_table;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

pub use cluster::{PEER_ENV as CLUSTER_PEER_ENV, run_peer_if_requested as run_cluster_peer_if_requested};
pub use probe::{PROBE_ENV, run_probe_if_requested};
pub use scenario::ScenarioKind;

/// `nexus bench`: a run of the load benchmark, a load scenario, or a
/// command on saved results.
#[derive(Debug, Clone, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchCli {
    /// A command on saved results instead of a run.
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    /// How to run.
    #[command(flatten)]
    pub options: BenchOptions,
}

/// Commands on saved results.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum BenchCommand {
    /// Render the README benchmark table (markdown) from saved result files:
    /// the medians of every run they hold.
    Render(RenderArgs),
}

/// `nexus bench render`.
#[derive(Debug, Clone, clap::Args)]
pub struct RenderArgs {
    /// Replace the block between `<!-- bench-table:begin -->` and
    /// `<!-- bench-table:end -->` (and, with `--soak`, the block between
    /// `<!-- soak-table:begin -->` and `<!-- soak-table:end -->`; with
    /// `--cluster`, the block between `<!-- cluster-table:begin -->` and
    /// `<!-- cluster-table:end -->`) in this file instead of printing.
    #[arg(long, value_name = "FILE")]
    pub readme: Option<PathBuf>,
    /// A soak result (the JSON line `nexus bench --scenario soak` printed,
    /// saved to a file): render its per-minute table.
    #[arg(long, value_name = "FILE")]
    pub soak: Option<PathBuf>,
    /// A cluster result (the JSON line `nexus bench --scenario cluster`
    /// printed, saved to a file): render its cross-node table.
    #[arg(long, value_name = "FILE")]
    pub cluster: Option<PathBuf>,
    /// Result files written by `nexus bench --save` (or `--json`).
    #[arg(required_unless_present_any = ["soak", "cluster"], value_name = "FILES")]
    pub files: Vec<PathBuf>,
}

/// How much work a run does and what it does with the report.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct BenchOptions {
    /// Smaller workloads: the whole run finishes in about a minute on 2 cores.
    #[arg(long)]
    pub quick: bool,
    /// Tiny workloads that only prove the harness works (tests use it);
    /// its figures are too small to mean anything.
    #[arg(long, hide = true)]
    pub smoke: bool,
    /// Also write the report (the medians with `--runs`) as one JSON object to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Run the whole benchmark this many times and report the median of each figure.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,
    /// Save the report, every run and the machine under `--results-dir`
    /// (file named after the date, the git revision and the mode).
    #[arg(long)]
    pub save: bool,
    /// Where `--save` writes.
    #[arg(long, value_name = "DIR", default_value = "benches/results")]
    pub results_dir: PathBuf,
    /// Compare this run with a saved one: print each figure's change, exit 1
    /// if a ratio regressed by more than `--threshold`.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Regression threshold for `--baseline`, in percent.
    #[arg(long, value_name = "PCT", default_value_t = 10.0)]
    pub threshold: f64,
    /// Run one of the seeds' load scenarios over the real path instead (or
    /// `monitor`: the monitor's sampling cost; `cluster`: cross-node casts
    /// and asks over loopback); prints one JSON line on stdout.
    #[arg(long, value_enum, conflicts_with_all = ["quick", "smoke", "json", "runs", "save", "baseline"])]
    pub scenario: Option<ScenarioKind>,
    /// The scenario's length (e.g. `90s`, `10m`). Default: ramp 5m, peak 5m,
    /// stress 2m, soak 10m, monitor 10s. Not taken by `cluster`, which
    /// counts messages instead.
    #[arg(long, value_parser = humantime::parse_duration, requires = "scenario", conflicts_with = "messages")]
    pub duration: Option<Duration>,
    /// `--scenario cluster` only: casts of each kind and payload size (a
    /// tenth as many asks, at least 10). Default: 50000.
    #[arg(long, value_name = "N", requires = "scenario")]
    pub messages: Option<u64>,
    /// The rate (requests/s) the scenario takes as the node's sustainable
    /// rate. Default: measured first, briefly, with closed-loop conversations.
    #[arg(long, value_name = "REQ_PER_S", requires = "scenario")]
    pub rate: Option<f64>,
}

impl BenchOptions {
    /// `quick`, `smoke` or `full`.
    pub fn mode(&self) -> &'static str {
        if self.smoke {
            "smoke"
        } else if self.quick {
            "quick"
        } else {
            "full"
        }
    }
}

/// Everything one run measured. Field names are the JSON keys; every ratio
/// is the quotient of two figures of the same run, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// `smoke`, `quick` or `full`.
    pub mode: String,
    /// Messages each throughput measurement sends.
    pub messages: u64,
    /// Bare ractor: one task casting to one actor.
    pub raw_cast_msgs_per_s: f64,
    /// Ours: one task sending to one agent (`AgentRef::try_send`, then `send` when full).
    pub agent_send_msgs_per_s: f64,
    /// `agent_send_msgs_per_s / raw_cast_msgs_per_s`.
    pub agent_to_raw_ratio: f64,
    /// Consumers on each side of the routed comparison (the pool's size).
    pub pool_workers: u64,
    /// Bare ractor: one task casting round-robin over `pool_workers` actors.
    pub raw_pool_msgs_per_s: f64,
    /// Ours: one task sending through a router (admission, pick) into a
    /// pool of `pool_workers` agents' lanes.
    pub routed_cast_msgs_per_s: f64,
    /// `routed_cast_msgs_per_s / raw_pool_msgs_per_s`.
    pub routed_to_raw_ratio: f64,
    /// Bare ractor `call!` round trip, median.
    pub raw_call_p50_us: f64,
    /// Bare ractor `call!` round trip, 99th percentile.
    pub raw_call_p99_us: f64,
    /// Asks through the router under a steady load at half the routed maximum.
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
    /// Agent ping-pong (message passing only): 100 agents, 50 chats, agent messages/s.
    pub pingpong_msgs_per_s: f64,
    /// Ping-pong exchange latency, 95th percentile.
    pub pingpong_p95_ms: f64,
    /// Ping-pong exchange latency, 99th percentile.
    pub pingpong_p99_ms: f64,
    /// Ping-pong exchange latency, maximum.
    pub pingpong_max_ms: f64,
    /// Agents in the LLM scenario.
    pub llm_scenario_agents: u64,
    /// Concurrent conversations in the LLM scenario.
    pub llm_scenario_conversations: u64,
    /// The seeds' scenario through the real path (router, admission,
    /// quota, gateway, simulated provider, durable ledger): requests/s.
    pub llm_scenario_req_per_s: f64,
    /// LLM scenario step latency, median.
    pub llm_scenario_p50_ms: f64,
    /// LLM scenario step latency, 95th percentile.
    pub llm_scenario_p95_ms: f64,
    /// LLM scenario step latency, 99th percentile.
    pub llm_scenario_p99_ms: f64,
    /// The gateway's added latency over a direct provider call, median.
    pub gateway_overhead_p50_us: f64,
    /// The gateway's added latency over a direct provider call, 99th percentile.
    pub gateway_overhead_p99_us: f64,
    /// Idle supervised agents spawned by the scale probe (and bare actors).
    /// The probe runs in fresh child processes, bare and agents alternating
    /// (three times each outside `--smoke`); the figures below are each
    /// kind's median.
    pub spawned_agents: u64,
    /// Time to spawn them.
    pub spawn_100k_ms: f64,
    /// Time to spawn as many bare ractor actors.
    pub raw_spawn_100k_ms: f64,
    /// `spawn_100k_ms / raw_spawn_100k_ms`.
    pub spawn_ratio: f64,
    /// Resident bytes per idle agent.
    pub bytes_per_idle_agent: f64,
    /// Resident bytes per idle bare ractor actor.
    pub bytes_per_raw_actor: f64,
    /// `bytes_per_idle_agent / bytes_per_raw_actor`.
    pub idle_bytes_ratio: f64,
    /// Agents in each spawn below.
    pub spawn_batch: u64,
    /// `spawn_batch` separate `Node::spawn_agent` calls.
    pub spawn_10k_agents_ms: f64,
    /// One `Node::spawn_pool` of `spawn_batch` workers.
    pub pool_spawn_10k_ms: f64,
    /// `pool_spawn_10k_ms / spawn_10k_agents_ms`.
    pub pool_spawn_ratio: f64,
    /// Consistent-hash lookup on a 1,000-member ring with 160 virtual nodes each.
    pub ring_lookup_ns: f64,
    /// Distinct keys the lookups cycle through.
    pub ring_lookup_keys: u64,
    /// Uncontended quota charge by name through `QuotaHandle` on a 3-level tree.
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

/// `a / b` for a ratio key, refusing a zero denominator by name.
fn ratio(a: f64, b: f64, denominator: &str) -> anyhow::Result<f64> {
    anyhow::ensure!(b > 0.0, "{denominator} is {b}: no ratio can be formed");
    Ok(a / b)
}

/// Rounds to one decimal.
fn tenth(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
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
    gateway_samples: u64,
    spawn: usize,
    /// Each scale probe runs this many times, alternating kinds (median).
    probe_rounds: usize,
    spawn_batch: usize,
    workers: usize,
    lookups: u64,
    ring_keys: usize,
    charges: u64,
}

impl Sizes {
    fn new(opts: &BenchOptions) -> Self {
        if opts.smoke {
            Sizes {
                casts: 20_000,
                calls: 1_000,
                flood: 20_000,
                ask_window: Duration::from_millis(100),
                scenario: Duration::from_millis(200),
                gateway_samples: 300,
                spawn: 1_000,
                probe_rounds: 1,
                spawn_batch: 300,
                workers: 2,
                lookups: 100_000,
                ring_keys: 100_000,
                charges: 100_000,
            }
        } else if opts.quick {
            Sizes {
                casts: 1_000_000,
                calls: 20_000,
                flood: 1_000_000,
                ask_window: Duration::from_secs(2),
                scenario: Duration::from_secs(2),
                gateway_samples: 20_000,
                spawn: 100_000,
                probe_rounds: 3,
                spawn_batch: 10_000,
                workers: 2,
                lookups: 10_000_000,
                ring_keys: 1_000_000,
                charges: 10_000_000,
            }
        } else {
            Sizes {
                casts: 5_000_000,
                calls: 200_000,
                flood: 1_000_000,
                ask_window: Duration::from_secs(10),
                scenario: Duration::from_secs(10),
                gateway_samples: 50_000,
                spawn: 100_000,
                probe_rounds: 3,
                spawn_batch: 10_000,
                workers: 2,
                lookups: 20_000_000,
                ring_keys: 1_000_000,
                charges: 20_000_000,
            }
        }
    }
}

/// Agents and conversations of the seeds' scenario (seed 001: 100
/// concurrent agents, 50 concurrent chats).
const SEED_AGENTS: usize = 100;
const SEED_CHATS: usize = 50;

/// Runs every measurement once and returns the report (also printed as a
/// table on stdout).
pub fn run_once(opts: &BenchOptions) -> anyhow::Result<BenchReport> {
    let sizes = Sizes::new(opts);
    let mut progress = Progress::new(12);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let started = Instant::now();

    progress.start("bare ractor: 1 sender -> 1 actor, and round-robin over the pool's size");
    let raw_cast = rt.block_on(raw::cast_throughput(sizes.casts))?.round();
    let raw_pool = rt.block_on(raw::pool_throughput(sizes.casts, sizes.workers))?.round();
    progress.start("ours: 1 sender -> 1 agent (AgentRef::send)");
    let agent_send = rt.block_on(lanes::agent_send_throughput(sizes.casts))?.round();
    progress.start("ours: router (admission, pick) -> a pool's lanes");
    let routed_cast = rt
        .block_on(lanes::routed_cast_throughput(sizes.casts, sizes.workers))?
        .round();
    progress.start("bare ractor call round trips");
    let raw_call = rt.block_on(raw::call_latency(sizes.calls))?;
    progress.start("asks under steady load at half the routed maximum");
    let load = (routed_cast / 2.0).round();
    let asks = rt.block_on(lanes::ask_under_steady_load(load, sizes.ask_window, sizes.workers))?;
    progress.start("priority isolation under a flood (ours, then bare ractor)");
    let gap = Duration::from_micros(200);
    let high_flood = rt.block_on(lanes::high_ask_under_flood(sizes.flood, 100_000, gap))?;
    let raw_flood = rt.block_on(raw::ask_under_flood(sizes.flood, 100_000, gap))?;
    progress.start("agent ping-pong: 100 agents, 50 chats");
    let (pingpong_rate, pingpong) = rt.block_on(lanes::pingpong(SEED_AGENTS, SEED_CHATS, sizes.scenario))?;
    progress.start("LLM scenario, real path: 100 agents, 50 conversations");
    let llm = rt.block_on(pipeline::llm_scenario(SEED_AGENTS, SEED_CHATS, sizes.scenario))?;
    progress.start("gateway overhead over a direct provider call");
    let (gw_p50, gw_p99) = rt.block_on(gateway::overhead_us(sizes.gateway_samples))?;
    progress.start("spawn: separate agents, then one pool of the same size");
    let agents_ms = rt.block_on(lanes::spawn_agents_ms(sizes.spawn_batch))?;
    let pool_ms = rt.block_on(lanes::pool_spawn_ms(sizes.spawn_batch))?;
    drop(rt);
    progress.start("scale: idle bare ractor actors and idle agents, alternating (child processes)");
    let (raw_probe, agent_probe) = probe::paired_probes(sizes.spawn, sizes.probe_rounds)?;
    progress.start("hash ring lookups and quota charges");
    let ring_lookup = tenth(micro::ring_lookup_ns(sizes.lookups, sizes.ring_keys)?);
    let quota_charge = tenth(micro::quota_charge_ns(sizes.charges)?);
    progress.finish();

    let round2 = |x: f64| (x * 100.0).round() / 100.0;
    let spawn_100k_ms = round2(agent_probe.spawn_ms);
    let raw_spawn_100k_ms = round2(raw_probe.spawn_ms);
    let bytes_per_idle_agent = agent_probe.bytes_per_actor as f64;
    let bytes_per_raw_actor = raw_probe.bytes_per_actor as f64;
    let spawn_10k_agents_ms = round2(agents_ms);
    let pool_spawn_10k_ms = round2(pool_ms);
    let report = BenchReport {
        mode: opts.mode().to_string(),
        messages: sizes.casts,
        raw_cast_msgs_per_s: raw_cast,
        agent_send_msgs_per_s: agent_send,
        agent_to_raw_ratio: ratio(agent_send, raw_cast, "raw_cast_msgs_per_s")?,
        pool_workers: sizes.workers as u64,
        raw_pool_msgs_per_s: raw_pool,
        routed_cast_msgs_per_s: routed_cast,
        routed_to_raw_ratio: ratio(routed_cast, raw_pool, "raw_pool_msgs_per_s")?,
        raw_call_p50_us: us(&raw_call, 0.50),
        raw_call_p99_us: us(&raw_call, 0.99),
        ask_p50_us: us(&asks, 0.50),
        ask_p95_us: us(&asks, 0.95),
        ask_p99_us: us(&asks, 0.99),
        ask_p999_us: us(&asks, 0.999),
        ask_load_msgs_per_s: load,
        high_ask_p99_under_flood_us: us(&high_flood, 0.99),
        raw_ask_p99_under_flood_us: us(&raw_flood, 0.99),
        flood_messages: sizes.flood,
        pingpong_msgs_per_s: pingpong_rate.round(),
        pingpong_p95_ms: ms(&pingpong, 0.95),
        pingpong_p99_ms: ms(&pingpong, 0.99),
        pingpong_max_ms: pingpong.max() as f64 / 1e6,
        llm_scenario_agents: SEED_AGENTS as u64,
        llm_scenario_conversations: SEED_CHATS as u64,
        llm_scenario_req_per_s: llm.rate.round(),
        llm_scenario_p50_ms: ms(&llm.latency, 0.50),
        llm_scenario_p95_ms: ms(&llm.latency, 0.95),
        llm_scenario_p99_ms: ms(&llm.latency, 0.99),
        gateway_overhead_p50_us: tenth(gw_p50),
        gateway_overhead_p99_us: tenth(gw_p99),
        spawned_agents: agent_probe.count,
        spawn_100k_ms,
        raw_spawn_100k_ms,
        spawn_ratio: ratio(spawn_100k_ms, raw_spawn_100k_ms, "raw_spawn_100k_ms")?,
        bytes_per_idle_agent,
        bytes_per_raw_actor,
        idle_bytes_ratio: ratio(bytes_per_idle_agent, bytes_per_raw_actor, "bytes_per_raw_actor")?,
        spawn_batch: sizes.spawn_batch as u64,
        spawn_10k_agents_ms,
        pool_spawn_10k_ms,
        pool_spawn_ratio: ratio(pool_spawn_10k_ms, spawn_10k_agents_ms, "spawn_10k_agents_ms")?,
        ring_lookup_ns: ring_lookup,
        ring_lookup_keys: sizes.ring_keys as u64,
        quota_charge_ns: quota_charge,
    };
    println!(
        "Nexus Swarm load benchmark ({} mode, {:.1} s)",
        report.mode,
        started.elapsed().as_secs_f64()
    );
    print!("{}", results::text_table(&report));
    Ok(report)
}

/// `nexus bench` (and `cargo bench --bench swarm`): a run, a scenario, or a
/// command on saved results. Exit 1 when a baseline comparison finds a
/// regression.
pub fn main(cli: BenchCli) -> anyhow::Result<ExitCode> {
    if let Some(BenchCommand::Render(args)) = cli.command {
        return results::render_command(&args);
    }
    let opts = cli.options;
    if let Some(kind) = opts.scenario {
        return scenario::run(kind, &opts);
    }
    // Read the baseline first: a bad file should not cost a whole run.
    let baseline = opts.baseline.as_deref().map(results::load).transpose()?;
    let n = opts.runs.max(1);
    let mut runs = Vec::with_capacity(n as usize);
    for i in 0..n {
        if n > 1 {
            eprintln!("run {} of {n}", i + 1);
        }
        runs.push(run_once(&opts)?);
    }
    let report = if runs.len() == 1 {
        runs[0].clone()
    } else {
        let median = results::median(&runs)?;
        println!("Medians of {} runs", runs.len());
        print!("{}", results::text_table(&median));
        median
    };
    if let Some(path) = &opts.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")?;
        println!("wrote {}", path.display());
    }
    if opts.save {
        let saved = results::SavedResult::new(report.clone(), runs);
        let path = saved.save(&opts.results_dir)?;
        println!("saved {}", path.display());
    }
    if let Some(baseline) = baseline {
        let current = serde_json::to_value(&report)?;
        let comparison = results::compare(&baseline.report, &current, opts.threshold);
        print!("{comparison}");
        if !comparison.regressions().is_empty() {
            return Ok(ExitCode::from(1));
        }
    }
    Ok(ExitCode::SUCCESS)
}
