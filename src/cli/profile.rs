//! `nexus profile`: runs the swarm workload at several pool sizes and rate
//! limits, records a performance profile (throughput, latency percentiles,
//! cost per task at each point), finds the point of diminishing returns and
//! the bottleneck, and prints recommendations. The analysis and its rules
//! are in [`nexus_swarm_actors::perf_profile`]; the workload in
//! [`crate::bench::profile`].
//!
//! Bad input (a size of 0, an empty or repeated size, a duration outside
//! 100 ms..=10 min, an unreadable configuration) is a [`ProfileCliError`]
//! before anything runs; the binary exits 2 on it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use nexus_swarm_actors::perf_profile::{PerfProfile, Rate};

use crate::bench::profile::{ProfilePlan, run as run_workload};
use crate::runtime::config::{NexusConfig, ProviderKind};
use crate::runtime::prelude::Priority;

/// Most points one profile measures (sizes x rate limits).
pub const MAX_POINTS: usize = 64;
/// Largest pool size a profile measures.
pub const MAX_SIZE: u32 = 4096;
/// Shortest and longest run of one point.
pub const MIN_DURATION: Duration = Duration::from_millis(100);
/// See [`MIN_DURATION`].
pub const MAX_DURATION: Duration = Duration::from_secs(600);
/// The provider latency used unless given or configured.
pub const DEFAULT_LATENCY: Duration = Duration::from_millis(50);

/// `nexus profile`.
#[derive(Debug, Clone, clap::Args)]
pub struct ProfileArgs {
    /// A configuration file: the gateway's `llm.requests_per_minute` (the
    /// rate limit profiled unless `--rpm` is given), the first simulated
    /// provider's `latency_median`, and the normal lane's capacity.
    /// Default: the built-in defaults.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Pool sizes to measure, comma-separated, each 1..=4096.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    pub sizes: Vec<u32>,
    /// How long each point runs (its first quarter is a warm-up), 100ms..=10m.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    pub duration: Duration,
    /// Rate limits (requests per minute) to measure each size at,
    /// comma-separated. Default: the configuration's `llm.requests_per_minute`.
    #[arg(long, value_delimiter = ',', value_name = "RPM")]
    pub rpm: Vec<u64>,
    /// The simulated provider's median latency. Default: the configuration's
    /// first simulated provider's `latency_median`, else 50ms.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub latency: Option<Duration>,
    /// The tenant's budget for each point's run, micro-dollars. Default:
    /// one the run cannot reach.
    #[arg(long, value_name = "MICRO_USD")]
    pub budget: Option<u64>,
    /// Print the profile as one JSON document on stdout (progress on stderr).
    #[arg(long)]
    pub json: bool,
    /// Write the profile (versioned JSON) to this file; `[scaling] profile`
    /// reads it back.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Why `nexus profile` refused its input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileCliError {
    /// `--sizes` is empty.
    #[error("--sizes is empty: give at least one pool size")]
    NoSizes,
    /// A size is out of range.
    #[error("--sizes: {0} is not within 1..={MAX_SIZE}")]
    Size(u32),
    /// A size is given twice.
    #[error("--sizes: {0} is given twice")]
    RepeatedSize(u32),
    /// A rate limit is 0 or given twice.
    #[error("--rpm: {0} is 0 or given twice")]
    Rpm(u64),
    /// Too many points.
    #[error("{0} points (sizes x rate limits) is more than {MAX_POINTS}")]
    TooManyPoints(usize),
    /// The duration is out of range.
    #[error("--duration {0} is not within 100ms..=10m")]
    Duration(String),
    /// The provider latency is above the run.
    #[error("--latency {0} must be below the duration")]
    Latency(String),
    /// The configuration could not be read.
    #[error(transparent)]
    Config(#[from] crate::runtime::config::ConfigError),
    /// `--out`'s directory does not exist.
    #[error("--out {0}: its directory does not exist")]
    OutDir(PathBuf),
}

/// Checks the arguments and builds the plan.
pub fn plan(args: &ProfileArgs) -> Result<ProfilePlan, ProfileCliError> {
    let config = match &args.config {
        Some(path) => NexusConfig::from_file(path)?,
        None => NexusConfig::default(),
    };
    if args.sizes.is_empty() {
        return Err(ProfileCliError::NoSizes);
    }
    let mut sizes = Vec::new();
    for &s in &args.sizes {
        if s == 0 || s > MAX_SIZE {
            return Err(ProfileCliError::Size(s));
        }
        if sizes.contains(&s) {
            return Err(ProfileCliError::RepeatedSize(s));
        }
        sizes.push(s);
    }
    sizes.sort_unstable();
    let mut amounts = Vec::new();
    for &r in &args.rpm {
        if r == 0 || amounts.contains(&Some(r)) {
            return Err(ProfileCliError::Rpm(r));
        }
        amounts.push(Some(r));
    }
    if amounts.is_empty() {
        amounts.push(Some(u64::from(config.llm.requests_per_minute)));
    }
    amounts.sort_unstable();
    let points = sizes.len() * amounts.len();
    if points > MAX_POINTS {
        return Err(ProfileCliError::TooManyPoints(points));
    }
    if !(MIN_DURATION..=MAX_DURATION).contains(&args.duration) {
        return Err(ProfileCliError::Duration(
            humantime::format_duration(args.duration).to_string(),
        ));
    }
    let configured = config
        .llm
        .providers
        .iter()
        .find(|p| p.kind == ProviderKind::Simulated)
        .and_then(|p| p.latency_median);
    let provider_latency = args.latency.or(configured).unwrap_or(DEFAULT_LATENCY);
    if provider_latency >= args.duration {
        return Err(ProfileCliError::Latency(
            humantime::format_duration(provider_latency).to_string(),
        ));
    }
    if let Some(out) = &args.out {
        let dir = out.parent().filter(|d| !d.as_os_str().is_empty());
        if dir.is_some_and(|d| !d.is_dir()) {
            return Err(ProfileCliError::OutDir(out.clone()));
        }
    }
    Ok(ProfilePlan {
        sizes,
        amounts,
        duration: args.duration,
        provider_latency,
        lane_capacity: config.mailbox.lane(Priority::Normal).capacity,
        budget_micro_usd: args.budget,
    })
}

/// Runs `nexus profile`.
pub fn run(args: ProfileArgs) -> anyhow::Result<ExitCode> {
    let plan = plan(&args)?;
    eprintln!(
        "nexus profile: {} points, {} each, provider latency {}, {} conversations",
        plan.sizes.len() * plan.amounts.len(),
        humantime::format_duration(plan.duration),
        humantime::format_duration(plan.provider_latency),
        plan.conversations()
    );
    let total = plan.sizes.len() * plan.amounts.len();
    let mut step = 0;
    let points = run_workload(&plan, |what| {
        step += 1;
        eprintln!("[{step}/{total}] {what}");
    })?;
    let duration_ms = u64::try_from(plan.duration.as_millis()).unwrap_or(u64::MAX);
    let profile = PerfProfile::analyse(points, duration_ms)?;
    if let Some(out) = &args.out {
        std::fs::write(out, profile.to_json() + "\n")
            .map_err(|e| anyhow::anyhow!("--out {}: cannot write: {e}", out.display()))?;
        eprintln!("wrote {}", out.display());
    }
    if args.json {
        println!("{}", profile.to_json());
    } else {
        print!("{}", table(&profile));
    }
    Ok(ExitCode::SUCCESS)
}

/// The human report: a row per point, then the knees and recommendations.
pub fn table(profile: &PerfProfile) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let ms = |us: u64| format!("{}.{}", us / 1000, (us % 1000) / 100);
    let _ = writeln!(
        out,
        "{:>9} {:>5} {:>9} {:>8} {:>8} {:>14}  bottleneck",
        "rpm", "size", "tasks/s", "p50 ms", "p99 ms", "cost/task µUSD"
    );
    for p in &profile.points {
        let rpm = p.requests_per_minute.map_or_else(|| "none".into(), |r| r.to_string());
        let bottleneck = nexus_swarm_actors::perf_profile::Bottleneck::of(p);
        let _ = writeln!(
            out,
            "{rpm:>9} {:>5} {:>9} {:>8} {:>8} {:>14}  {bottleneck}",
            p.size,
            Rate(p.throughput_milli).to_string(),
            ms(p.p50_us),
            ms(p.p99_us),
            p.cost_per_task_micro_usd
        );
    }
    let _ = writeln!(
        out,
        "\nknee (marginal gain per added worker below {}.{} % of the first step's):",
        profile.knee_fraction_permille / 10,
        profile.knee_fraction_permille % 10
    );
    for c in &profile.curves {
        let rpm = c
            .requests_per_minute
            .map_or_else(|| "no rate limit".into(), |r| format!("{r} requests/min"));
        let _ = writeln!(
            out,
            "  at {rpm}: {} workers; bottleneck at the largest size: {}",
            c.knee, c.bottleneck
        );
    }
    let _ = writeln!(out, "best size: {}", profile.best_size);
    let _ = writeln!(out, "recommendations:");
    for r in &profile.recommendations {
        let _ = writeln!(out, "  - {r}");
    }
    if profile.recommendations.is_empty() {
        let _ = writeln!(out, "  (none: nothing measured was saturated)");
    }
    out
}
