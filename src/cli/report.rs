//! `nexus report`: prints a cost report from a ledger's data directory.
//!
//! The store is opened read-only ([`RedbStore::open_read_only`]): the file
//! is never written, and a report runs beside a swarm that holds the
//! ledger (it reads a verified snapshot). Exit codes, shared with
//! `nexus ledger verify`, are in [`EXIT_CODES`].

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::UNIX_EPOCH;

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::actors::Scope;
use crate::actors::cost_ledger::{
    Clock, Field, LedgerError, RedbStore, ReportQuery, SystemClock, TimeRange, build_report,
};
use crate::runtime::config::NexusConfig;

/// The exit codes of `nexus report` and `nexus ledger verify` (printed by
/// their `--help`).
pub const EXIT_CODES: &str = "\
Exit codes:
  0  done (the report was printed; the ledger is intact)
  1  the ledger is damaged, or written in a format this build does not read
     (what is damaged is printed)
  2  usage or I/O error: bad arguments, unreadable --config, no ledger store
     in the data directory, a file that cannot be read";

/// Exit code 1: the ledger is damaged or of another format.
pub const EXIT_DAMAGED: u8 = 1;
/// Exit code 2: usage or I/O error.
pub const EXIT_USAGE: u8 = 2;

/// The exit code for a ledger error: [`EXIT_DAMAGED`] for damage or an
/// unsupported format, [`EXIT_USAGE`] for the rest.
pub fn exit_code_of(e: &LedgerError) -> ExitCode {
    match e {
        LedgerError::Corrupt { .. } | LedgerError::UnsupportedFormat { .. } => ExitCode::from(EXIT_DAMAGED),
        _ => ExitCode::from(EXIT_USAGE),
    }
}

/// The data directory: `data_dir`, else `node.data_dir` of `config`, else
/// the default configuration's.
pub fn resolve_data_dir(data_dir: Option<&PathBuf>, config: Option<&PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(d) = data_dir {
        return Ok(d.clone());
    }
    let config = match config {
        // The error names the file and what the OS said, once.
        Some(file) => NexusConfig::from_file(file).map_err(|e| anyhow::anyhow!("{e}"))?,
        None => NexusConfig::default(),
    };
    Ok(config.node.data_dir)
}

/// Runs `f` with panic messages silenced and its panic caught: storage
/// panics already come back as [`LedgerError::Corrupt`], and the CLI never
/// exits by panic. A caught panic is returned as its message.
pub(crate) fn without_panic_exit<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(previous);
    r.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into())
    })
}

/// How the report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// An aligned text table with a total line.
    Table,
    /// Pretty JSON.
    Json,
    /// CSV with a header line.
    Csv,
}

/// `nexus report ...`
#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
pub struct ReportArgs {
    /// The data directory holding `ledger.redb`. Default: `node.data_dir` of
    /// `--config`, else `./nexus-data`.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// A configuration file to take `node.data_dir` from.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Start of the range, RFC 3339 (`2025-01-31T00:00:00Z`). Default: all time.
    #[arg(long)]
    pub from: Option<String>,
    /// End of the range (exclusive), RFC 3339. Default: now.
    #[arg(long)]
    pub to: Option<String>,
    /// The last span up to now (`24h`, `7days`), instead of `--from`.
    #[arg(long, conflicts_with = "from")]
    pub last: Option<String>,
    /// Grouping fields, comma-separated: tenant, workflow, agent, model,
    /// kind, day, label:KEY.
    #[arg(long, value_delimiter = ',')]
    pub group_by: Vec<String>,
    /// Only this tenant.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only this workflow.
    #[arg(long)]
    pub workflow: Option<String>,
    /// Only this agent.
    #[arg(long)]
    pub agent: Option<String>,
    /// Only this model.
    #[arg(long)]
    pub model: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
}

fn parse_time(text: &str) -> anyhow::Result<u64> {
    let t = humantime::parse_rfc3339_weak(text).with_context(|| format!("`{text}` is not an RFC 3339 time"))?;
    let d = t
        .duration_since(UNIX_EPOCH)
        .context("times before 1970 are not supported")?;
    // RFC 3339 ends at the year 9999, well inside u64 microseconds.
    u64::try_from(d.as_micros()).with_context(|| format!("`{text}` is out of range"))
}

impl ReportArgs {
    fn query(&self, now_us: u64) -> anyhow::Result<ReportQuery> {
        let to_us = match &self.to {
            Some(t) => parse_time(t)?,
            None => now_us.saturating_add(1),
        };
        let from_us = match (&self.from, &self.last) {
            (Some(f), _) => parse_time(f)?,
            (None, Some(span)) => {
                let span = humantime::parse_duration(span).with_context(|| format!("`{span}` is not a duration"))?;
                to_us.saturating_sub(u64::try_from(span.as_micros()).unwrap_or(u64::MAX))
            }
            (None, None) => 0,
        };
        let range = TimeRange::new(from_us, to_us)?;
        let group_by = self
            .group_by
            .iter()
            .map(|f| f.parse::<Field>())
            .collect::<Result<Vec<_>, _>>()?;
        let filter = Scope {
            tenant: self.tenant.clone(),
            workflow: self.workflow.clone(),
            agent: self.agent.clone(),
            model: self.model.clone(),
        };
        Ok(ReportQuery::new(range).filter(filter).group_by(group_by))
    }
}

/// Runs `nexus report`: exit 0 with the report on stdout; otherwise the
/// reason on stderr and an exit code of [`EXIT_CODES`].
pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    match without_panic_exit(|| report(&args)) {
        Ok(code) => Ok(code),
        Err(panic) => {
            eprintln!("nexus report: internal error: {panic}");
            Ok(ExitCode::from(EXIT_USAGE))
        }
    }
}

fn report(args: &ReportArgs) -> ExitCode {
    let query = match args.query(SystemClock.now_us()) {
        Ok(q) => q,
        Err(e) => {
            eprintln!("nexus report: {e:#}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let dir = match resolve_data_dir(args.data_dir.as_ref(), args.config.as_ref()) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("nexus report: {e:#}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let report = match RedbStore::open_read_only(&dir).and_then(|store| build_report(&store, query)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("nexus report: {e}");
            return exit_code_of(&e);
        }
    };
    let text = match args.format {
        ReportFormat::Table => match report.to_table() {
            Ok(t) => t,
            Err(e) => {
                eprintln!("nexus report: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        },
        ReportFormat::Json => report.to_json() + "\n",
        ReportFormat::Csv => report.to_csv(),
    };
    if let Err(e) = std::io::stdout().write_all(text.as_bytes()) {
        eprintln!("nexus report: writing the report failed: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    ExitCode::SUCCESS
}
