//! `nexus report`: prints a cost report from a ledger's data directory.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::UNIX_EPOCH;

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::actors::cost_ledger::{
    BudgetScope, Clock, Field, RedbStore, ReportQuery, STORE_FILE, SystemClock, TimeRange, build_report,
};
use crate::runtime::config::NexusConfig;

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
        let filter = BudgetScope {
            tenant: self.tenant.clone(),
            workflow: self.workflow.clone(),
            agent: self.agent.clone(),
            model: self.model.clone(),
        };
        Ok(ReportQuery::new(range).filter(filter).group_by(group_by))
    }

    fn data_dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(d) = &self.data_dir {
            return Ok(d.clone());
        }
        let config = match &self.config {
            Some(file) => NexusConfig::from_file(file)?,
            None => NexusConfig::default(),
        };
        Ok(config.node.data_dir)
    }
}

/// Runs `nexus report`: exit 0 with the report on stdout; 1 with the reason
/// on stderr if the arguments or the store are bad.
pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let query = match args.query(SystemClock.now_us()) {
        Ok(q) => q,
        Err(e) => {
            eprintln!("nexus report: {e:#}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let dir = args.data_dir()?;
    if !dir.join(STORE_FILE).is_file() {
        eprintln!("nexus report: no ledger store ({STORE_FILE}) in {}", dir.display());
        return Ok(ExitCode::FAILURE);
    }
    let report = match RedbStore::open(&dir).and_then(|store| build_report(&store, query)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("nexus report: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let text = match args.format {
        ReportFormat::Table => match report.to_table() {
            Ok(t) => t,
            Err(e) => {
                eprintln!("nexus report: {e}");
                return Ok(ExitCode::FAILURE);
            }
        },
        ReportFormat::Json => report.to_json() + "\n",
        ReportFormat::Csv => report.to_csv(),
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}
