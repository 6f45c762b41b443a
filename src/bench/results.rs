//! Saved results, medians of runs, baseline comparison and the README table.
//!
//! `nexus bench --save` writes a [`SavedResult`] under `benches/results/`:
//! the report (the medians when `--runs N` ran several), every run's own
//! report, and the machine it ran on. `nexus bench render FILES...` turns
//! the runs those files hold into the README's markdown table (their
//! medians), so the README's figures always trace back to committed runs;
//! with `--readme README.md` it replaces the block between
//! [`BEGIN_MARKER`] and [`END_MARKER`] in place.
//!
//! # Medians
//!
//! Each figure of a median report is the median of that figure over the
//! runs, and each ratio is the median of the runs' ratios (each the
//! quotient of two figures of one run), not a quotient of medians taken
//! from different runs. With an odd number of runs every value is one that
//! a run measured.
//!
//! # Regressions
//!
//! [`compare`] prints every figure's change against a baseline, but only
//! the ratios can fail it: absolute times on a shared machine vary from
//! run to run by more than any useful threshold, while each ratio divides
//! two figures measured moments apart on the same machine.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{BenchReport, RenderArgs};

/// Opens the README block the rendered table goes in.
pub const BEGIN_MARKER: &str = "<!-- bench-table:begin -->";
/// Closes the README block the rendered table goes in.
pub const END_MARKER: &str = "<!-- bench-table:end -->";

/// Version of the saved-result format.
pub const SCHEMA: u32 = 1;

/// Where a run ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// Logical CPUs available to the process.
    pub cores: u64,
    /// `model name` from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// Kernel release (`/proc/sys/kernel/osrelease`).
    pub kernel: String,
    /// `rustc --version` of the compiler that built the binary.
    pub rustc: String,
    /// `git rev-parse --short HEAD` of the working directory, `-dirty` if
    /// tracked files were modified.
    pub git_rev: String,
}

impl Machine {
    /// Reads this machine's description. Parts that cannot be read are
    /// `unknown`.
    pub fn detect() -> Self {
        let unknown = || "unknown".to_string();
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get() as u64);
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| cpu_model(&info))
            .unwrap_or_else(unknown);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|k| format!("Linux {}", k.trim()))
            .unwrap_or_else(|_| unknown());
        let rustc = option_env!("NEXUS_RUSTC_VERSION")
            .map(str::to_string)
            .or_else(|| command_output("rustc", &["--version"]))
            .unwrap_or_else(unknown);
        let git_rev = match command_output("git", &["rev-parse", "--short", "HEAD"]) {
            Some(rev) => {
                let dirty = command_output("git", &["status", "--porcelain", "--untracked-files=no"])
                    .is_some_and(|s| !s.is_empty());
                if dirty { format!("{rev}-dirty") } else { rev }
            }
            None => unknown(),
        };
        Self {
            cores,
            cpu_model,
            kernel,
            rustc,
            git_rev,
        }
    }
}

/// The first `model name` of a `/proc/cpuinfo` text.
fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

/// A command's trimmed stdout, if it ran and succeeded.
fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// What `nexus bench --save` writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedResult {
    /// [`SCHEMA`].
    pub schema: u32,
    /// When it was saved (RFC 3339, UTC).
    pub saved_at: String,
    /// Where it ran.
    pub machine: Machine,
    /// The report: the run's, or the medians of `run_reports`.
    pub report: BenchReport,
    /// Every run's own report.
    pub run_reports: Vec<BenchReport>,
}

impl SavedResult {
    /// A result for `report` measured on this machine now, from `runs`.
    pub fn new(report: BenchReport, runs: Vec<BenchReport>) -> Self {
        Self {
            schema: SCHEMA,
            saved_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            machine: Machine::detect(),
            report,
            run_reports: runs,
        }
    }

    /// The file name: date, git revision, mode (`2026-01-31-abc1234-full.json`).
    pub fn file_name(&self) -> String {
        let date = self.saved_at.get(..10).unwrap_or("undated");
        format!("{date}-{}-{}.json", self.machine.git_rev, self.report.mode)
    }

    /// Writes it under `dir` (created if needed) without replacing an
    /// existing file (a `-2`, `-3`... suffix is added); returns the path.
    pub fn save(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let name = self.file_name();
        let stem = name.trim_end_matches(".json");
        let mut path = dir.join(&name);
        let mut n = 2;
        while path.exists() {
            path = dir.join(format!("{stem}-{n}.json"));
            n += 1;
        }
        std::fs::write(&path, serde_json::to_string_pretty(self)? + "\n")
            .with_context(|| format!("write {}", path.display()))?;
        Ok(path)
    }
}

/// A result file read back: a [`SavedResult`], or a bare report from `--json`.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The file.
    pub path: PathBuf,
    /// Its report, as JSON (older files may lack newer keys).
    pub report: Value,
    /// Every run it holds (the report itself for a bare report).
    pub runs: Vec<Value>,
    /// Where it ran, if saved with `--save`.
    pub machine: Option<Machine>,
    /// When it was saved, if saved with `--save`.
    pub saved_at: Option<String>,
}

/// Reads a result file.
pub fn load(path: &Path) -> anyhow::Result<Loaded> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let value: Value = serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
    anyhow::ensure!(value.is_object(), "{}: not a JSON object", path.display());
    if let Some(report) = value.get("report") {
        let runs = match value.get("run_reports").and_then(Value::as_array) {
            Some(runs) if !runs.is_empty() => runs.clone(),
            _ => vec![report.clone()],
        };
        let machine = value
            .get("machine")
            .map(|m| serde_json::from_value(m.clone()))
            .transpose()
            .with_context(|| format!("{}: machine", path.display()))?;
        Ok(Loaded {
            path: path.to_path_buf(),
            report: report.clone(),
            runs,
            machine,
            saved_at: value.get("saved_at").and_then(Value::as_str).map(str::to_string),
        })
    } else {
        Ok(Loaded {
            path: path.to_path_buf(),
            report: value.clone(),
            runs: vec![value],
            machine: None,
            saved_at: None,
        })
    }
}

/// The median of each key over `runs` (JSON objects with the same keys):
/// numbers by value (integers stay integers), anything else must be equal
/// in every run.
pub fn median_values(runs: &[Value]) -> anyhow::Result<Value> {
    let first = runs
        .first()
        .and_then(Value::as_object)
        .context("no runs to take the median of")?;
    let mut out = Map::new();
    for key in first.keys() {
        let values: Vec<&Value> = runs
            .iter()
            .map(|r| r.get(key).with_context(|| format!("a run lacks {key:?}")))
            .collect::<anyhow::Result<_>>()?;
        let median = if values.iter().all(|v| v.is_u64()) {
            let mut xs: Vec<u64> = values.iter().filter_map(|v| v.as_u64()).collect();
            xs.sort_unstable();
            let n = xs.len();
            let m = if n % 2 == 1 {
                xs[n / 2]
            } else {
                (xs[n / 2 - 1] + xs[n / 2]) / 2
            };
            Value::from(m)
        } else if values.iter().all(|v| v.is_number()) {
            let mut xs: Vec<f64> = values.iter().filter_map(|v| v.as_f64()).collect();
            xs.sort_by(f64::total_cmp);
            let n = xs.len();
            let m = if n % 2 == 1 {
                xs[n / 2]
            } else {
                (xs[n / 2 - 1] + xs[n / 2]) / 2.0
            };
            Value::from(m)
        } else {
            anyhow::ensure!(
                values.iter().all(|v| *v == values[0]),
                "runs differ in {key:?}: no median of non-numbers"
            );
            values[0].clone()
        };
        out.insert(key.clone(), median);
    }
    Ok(Value::Object(out))
}

/// The median report of `runs` (see the module docs).
pub fn median(runs: &[BenchReport]) -> anyhow::Result<BenchReport> {
    let values = runs.iter().map(serde_json::to_value).collect::<Result<Vec<_>, _>>()?;
    Ok(serde_json::from_value(median_values(&values)?)?)
}

/// Which way a figure improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// Throughputs and ratios of ours to bare.
    Higher,
    /// Times, sizes, and ratios of a cost of ours to bare.
    Lower,
}

/// The ratios a comparison gates on, and which way each improves.
pub const GATED_RATIOS: &[(&str, Better)] = &[
    ("agent_to_raw_ratio", Better::Higher),
    ("routed_to_raw_ratio", Better::Higher),
    ("spawn_ratio", Better::Lower),
    ("idle_bytes_ratio", Better::Lower),
    ("pool_spawn_ratio", Better::Lower),
];

/// Which way `key` improves, if it is a measurement at all (sizes of the
/// workload such as `messages` are not).
pub fn direction(key: &str) -> Option<Better> {
    if let Some((_, better)) = GATED_RATIOS.iter().find(|(k, _)| *k == key) {
        return Some(*better);
    }
    if key.ends_with("_per_s") {
        Some(Better::Higher)
    } else if key.ends_with("_us") || key.ends_with("_ms") || key.ends_with("_ns") || key.starts_with("bytes_") {
        Some(Better::Lower)
    } else {
        None
    }
}

/// One figure in a comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The JSON key.
    pub key: String,
    /// Its value in the baseline.
    pub baseline: f64,
    /// Its value now.
    pub current: f64,
    /// `(current - baseline) / baseline` in percent (0 when both are 0).
    pub change_pct: f64,
    /// Which way it improves, if it is a measurement.
    pub better: Option<Better>,
    /// A gated ratio that got worse by more than the threshold.
    pub regressed: bool,
}

/// A run compared with a baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Threshold in percent.
    pub threshold_pct: f64,
    /// Every numeric key present in both, in the current report's order.
    pub changes: Vec<Change>,
    /// Gated ratios missing from either side.
    pub missing: Vec<String>,
}

impl Comparison {
    /// The changes that fail the comparison.
    pub fn regressions(&self) -> Vec<&Change> {
        self.changes.iter().filter(|c| c.regressed).collect()
    }
}

/// Compares `current` with `baseline` (report objects): every numeric key
/// in both gets its change; a gated ratio regresses when it got worse by
/// more than `threshold_pct` percent of the baseline.
pub fn compare(baseline: &Value, current: &Value, threshold_pct: f64) -> Comparison {
    let empty = Map::new();
    let base = baseline.as_object().unwrap_or(&empty);
    let cur = current.as_object().unwrap_or(&empty);
    let mut changes = Vec::new();
    for (key, value) in cur {
        let (Some(now), Some(before)) = (value.as_f64(), base.get(key).and_then(Value::as_f64)) else {
            continue;
        };
        let change_pct = if before == 0.0 {
            if now == 0.0 { 0.0 } else { f64::INFINITY.copysign(now) }
        } else {
            (now - before) / before.abs() * 100.0
        };
        let better = direction(key);
        let gated = GATED_RATIOS.iter().any(|(k, _)| k == key);
        let worse_pct = match better {
            Some(Better::Higher) => -change_pct,
            Some(Better::Lower) => change_pct,
            None => 0.0,
        };
        changes.push(Change {
            key: key.clone(),
            baseline: before,
            current: now,
            change_pct,
            better,
            regressed: gated && worse_pct > threshold_pct,
        });
    }
    let missing = GATED_RATIOS
        .iter()
        .filter(|(k, _)| !(base.contains_key(*k) && cur.contains_key(*k)))
        .map(|(k, _)| k.to_string())
        .collect();
    Comparison {
        threshold_pct,
        changes,
        missing,
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self.changes.iter().map(|c| c.key.len()).max().unwrap_or(3);
        writeln!(
            f,
            "Against the baseline (ratios fail beyond {:.1} %; other figures are informative):",
            self.threshold_pct
        )?;
        writeln!(f, "{:w$}  {:>14}  {:>14}  {:>9}", "key", "baseline", "now", "change")?;
        for c in &self.changes {
            let note = match (c.regressed, c.better) {
                (true, _) => "  REGRESSION",
                (false, Some(Better::Higher)) if c.change_pct > 0.0 => "  better",
                (false, Some(Better::Lower)) if c.change_pct < 0.0 => "  better",
                (false, Some(_)) if c.change_pct != 0.0 => "  worse",
                _ => "",
            };
            writeln!(
                f,
                "{:w$}  {:>14.2}  {:>14.2}  {:>+8.1}%{note}",
                c.key, c.baseline, c.current, c.change_pct
            )?;
        }
        for key in &self.missing {
            writeln!(f, "{key}: missing from the baseline or this run, not compared")?;
        }
        let regressions = self.regressions();
        if regressions.is_empty() {
            writeln!(f, "no ratio regressed beyond {:.1} %", self.threshold_pct)
        } else {
            let keys: Vec<&str> = regressions.iter().map(|c| c.key.as_str()).collect();
            writeln!(f, "regressed: {}", keys.join(", "))
        }
    }
}

/// `12345.6` as `12,346`.
fn thousands(x: f64) -> String {
    let n = x.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn millions(x: f64) -> String {
    format!("{:.2} M msgs/s", x / 1e6)
}

/// The table's rows: (measurement, measured, target or note).
pub fn rows(r: &BenchReport) -> Vec<[String; 3]> {
    let row = |a: String, b: String, c: &str| [a, b, c.to_string()];
    vec![
        row(
            "bare ractor cast, 1 sender -> 1 actor".into(),
            millions(r.raw_cast_msgs_per_s),
            "floor",
        ),
        row(
            "agent send, 1 sender -> 1 agent (`AgentRef::send`)".into(),
            millions(r.agent_send_msgs_per_s),
            "",
        ),
        row(
            "  ratio to the bare cast".into(),
            format!("{:.2}x", r.agent_to_raw_ratio),
            ">= 1.5 (aim 2)",
        ),
        row(
            format!("bare ractor cast, 1 sender round-robin over {} actors", r.pool_workers),
            millions(r.raw_pool_msgs_per_s),
            "floor",
        ),
        row(
            format!(
                "routed cast: router (admission, pick) -> pool of {} agents",
                r.pool_workers
            ),
            millions(r.routed_cast_msgs_per_s),
            "",
        ),
        row(
            "  ratio to the bare round-robin".into(),
            format!("{:.2}x", r.routed_to_raw_ratio),
            ">= 1.0 (aim 2)",
        ),
        row(
            "bare ractor `call` round trip p50 / p99".into(),
            format!("{:.1} / {:.1} us", r.raw_call_p50_us, r.raw_call_p99_us),
            "floor",
        ),
        row(
            format!(
                "ask through the router at {:.2} M msgs/s, p50 / p95 / p99 / p999",
                r.ask_load_msgs_per_s / 1e6
            ),
            format!(
                "{:.0} / {:.0} / {:.0} / {:.0} us",
                r.ask_p50_us, r.ask_p95_us, r.ask_p99_us, r.ask_p999_us
            ),
            "p99 <= 100 us (aim 50)",
        ),
        row(
            format!(
                "high-priority ask p99 while {} normal messages flood the agent",
                thousands(r.flood_messages as f64)
            ),
            format!("{} us", thousands(r.high_ask_p99_under_flood_us)),
            "<= 30 us",
        ),
        row(
            "  the same with bare ractor (one FIFO mailbox)".into(),
            format!("{} us", thousands(r.raw_ask_p99_under_flood_us)),
            "",
        ),
        row(
            format!(
                "LLM scenario, real path: {} agents, {} conversations",
                r.llm_scenario_agents, r.llm_scenario_conversations
            ),
            format!("{} req/s", thousands(r.llm_scenario_req_per_s)),
            ">= 10,000 (aim 100,000); seeds 1,000 msg/s",
        ),
        row(
            "  step latency p95 / p99".into(),
            format!("{:.2} / {:.2} ms", r.llm_scenario_p95_ms, r.llm_scenario_p99_ms),
            "p99 < 50 ms (aim 5); seeds p95 200, p99 500 ms",
        ),
        row(
            "agent ping-pong (messages only): 100 agents, 50 chats".into(),
            format!("{} msgs/s", thousands(r.pingpong_msgs_per_s)),
            "",
        ),
        row(
            "  exchange latency p95 / p99 / max".into(),
            format!(
                "{:.2} / {:.2} / {:.2} ms",
                r.pingpong_p95_ms, r.pingpong_p99_ms, r.pingpong_max_ms
            ),
            "",
        ),
        row(
            "gateway's added latency over a direct provider call, p50 / p99".into(),
            format!("{:.1} / {:.1} us", r.gateway_overhead_p50_us, r.gateway_overhead_p99_us),
            "",
        ),
        row(
            format!("spawn {} idle agents", thousands(r.spawned_agents as f64)),
            format!("{} ms", thousands(r.spawn_100k_ms)),
            &format!("bare ractor {} ms", thousands(r.raw_spawn_100k_ms)),
        ),
        row(
            "  spawn ratio to bare ractor".into(),
            format!("{:.2}x", r.spawn_ratio),
            "<= 1.5",
        ),
        row(
            "resident bytes per idle agent".into(),
            format!("{} B", thousands(r.bytes_per_idle_agent)),
            &format!("bare ractor actor {} B", thousands(r.bytes_per_raw_actor)),
        ),
        row(
            "  idle bytes ratio to bare ractor".into(),
            format!("{:.2}x", r.idle_bytes_ratio),
            "<= 1.25 (aim 1.1)",
        ),
        row(
            format!(
                "spawn {} agents, one `spawn_agent` each",
                thousands(r.spawn_batch as f64)
            ),
            format!("{} ms", thousands(r.spawn_10k_agents_ms)),
            "",
        ),
        row(
            format!("one `spawn_pool` of {} workers", thousands(r.spawn_batch as f64)),
            format!("{} ms", thousands(r.pool_spawn_10k_ms)),
            "",
        ),
        row(
            "  pool / separate spawns".into(),
            format!("{:.2}x", r.pool_spawn_ratio),
            "<= 2",
        ),
        row(
            format!(
                "hash ring lookup, 1,000 members x 160, {} distinct keys",
                thousands(r.ring_lookup_keys as f64)
            ),
            format!("{:.1} ns", r.ring_lookup_ns),
            "<= 100 ns",
        ),
        row(
            "quota charge through `QuotaHandle`, 3 levels, by name".into(),
            format!("{:.1} ns", r.quota_charge_ns),
            "<= 50 ns",
        ),
    ]
}

/// The table as aligned text (the terminal's view).
pub fn text_table(r: &BenchReport) -> String {
    let rows = rows(r);
    let w0 = rows.iter().map(|r| r[0].len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r[1].len()).max().unwrap_or(0);
    let mut out = format!("{:w0$}  {:>w1$}  target / note\n", "measurement", "measured");
    out.push_str(&"-".repeat(w0 + w1 + 30));
    out.push('\n');
    for [a, b, c] in rows {
        out.push_str(format!("{a:w0$}  {b:>w1$}  {c}").trim_end());
        out.push('\n');
    }
    out
}

/// The table as markdown (the README's view).
pub fn markdown_table(r: &BenchReport) -> String {
    let mut out = String::from("| measurement | measured | target |\n|---|---|---|\n");
    for [a, b, c] in rows(r) {
        out.push_str(&format!("| {} | {b} | {c} |\n", a.trim_start()));
    }
    out
}

/// The README block for result files: a line saying where the figures
/// come from (files, runs, machine, revision), then the table of the
/// medians of every run the files hold.
pub fn render(files: &[Loaded]) -> anyhow::Result<String> {
    let runs: Vec<Value> = files.iter().flat_map(|f| f.runs.iter().cloned()).collect();
    let median: BenchReport = serde_json::from_value(median_values(&runs)?)
        .context("the result files lack keys this version reports: re-run them")?;
    let distinct = |values: Vec<String>| {
        let mut v = values;
        v.dedup();
        v.sort();
        v.dedup();
        v.join(" / ")
    };
    let machines: Vec<&Machine> = files.iter().filter_map(|f| f.machine.as_ref()).collect();
    let names: Vec<String> = files
        .iter()
        .map(|f| {
            let name = f
                .path
                .file_name()
                .map_or_else(|| f.path.display().to_string(), |n| n.to_string_lossy().to_string());
            format!("`{name}`")
        })
        .collect();
    let what = if runs.len() == 1 {
        "One run".to_string()
    } else {
        format!("Medians of {} runs", runs.len())
    };
    let mut out = format!("{what} of `nexus bench` ({} mode)", median.mode);
    if !machines.is_empty() {
        out.push_str(&format!(
            " at revision {} on {} cores ({}), {}, {}",
            distinct(machines.iter().map(|m| m.git_rev.clone()).collect()),
            distinct(machines.iter().map(|m| m.cores.to_string()).collect()),
            distinct(machines.iter().map(|m| m.cpu_model.clone()).collect()),
            distinct(machines.iter().map(|m| m.kernel.clone()).collect()),
            distinct(machines.iter().map(|m| m.rustc.clone()).collect()),
        ));
    }
    let dates = distinct(
        files
            .iter()
            .filter_map(|f| f.saved_at.as_ref().and_then(|d| d.get(..10)).map(str::to_string))
            .collect(),
    );
    if !dates.is_empty() {
        out.push_str(&format!(", {dates}"));
    }
    out.push_str(&format!(
        "; rendered by `nexus bench render` from {}.\n\n",
        names.join(", ")
    ));
    out.push_str(&markdown_table(&median));
    Ok(out)
}

/// `text` with the block between the markers replaced by `block`.
pub fn replace_block(text: &str, block: &str) -> anyhow::Result<String> {
    replace_between(text, (BEGIN_MARKER, END_MARKER), block)
}

/// `text` with what stands between the `begin` and `end` marker lines
/// replaced by `block`.
pub fn replace_between(text: &str, (begin_marker, end_marker): (&str, &str), block: &str) -> anyhow::Result<String> {
    let begin = text
        .find(begin_marker)
        .with_context(|| format!("no {begin_marker} line"))?;
    let after_begin = begin + begin_marker.len();
    let end = text[after_begin..]
        .find(end_marker)
        .map(|i| after_begin + i)
        .with_context(|| format!("no {end_marker} after {begin_marker}"))?;
    let block = block.trim_end();
    Ok(format!("{}\n{block}\n{}", &text[..after_begin], &text[end..]))
}

/// `nexus bench render`.
pub fn render_command(args: &RenderArgs) -> anyhow::Result<ExitCode> {
    let bench = if args.files.is_empty() {
        None
    } else {
        let files = args.files.iter().map(|p| load(p)).collect::<anyhow::Result<Vec<_>>>()?;
        Some(render(&files)?)
    };
    let soak = match &args.soak {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
            Some(super::soak_table::render(path, &text)?)
        }
    };
    let cluster = match &args.cluster {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
            Some(super::cluster_table::render(path, &text)?)
        }
    };
    match &args.readme {
        None => {
            for block in bench.iter().chain(soak.iter()).chain(cluster.iter()) {
                println!("{block}");
            }
        }
        Some(readme) => {
            let mut text = std::fs::read_to_string(readme).with_context(|| format!("read {}", readme.display()))?;
            if let Some(block) = &bench {
                text = replace_block(&text, block).with_context(|| format!("{}", readme.display()))?;
            }
            if let Some(block) = &soak {
                text =
                    super::soak_table::replace_block(&text, block).with_context(|| format!("{}", readme.display()))?;
            }
            if let Some(block) = &cluster {
                text = super::cluster_table::replace_block(&text, block)
                    .with_context(|| format!("{}", readme.display()))?;
            }
            std::fs::write(readme, text).with_context(|| format!("write {}", readme.display()))?;
            println!("updated the rendered tables in {}", readme.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests;
