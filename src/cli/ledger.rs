//! `nexus ledger verify`: checks a ledger store for damage without writing
//! it. It runs the storage engine's page check on a private copy, then
//! verifies the checksum of every record, aggregate, budget, spend bucket,
//! the price table and the metadata ([`RedbStore::verify`]), and lists
//! everything damaged. Exit codes are those of `nexus report`
//! ([`EXIT_CODES`]).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::report::{EXIT_CODES, EXIT_DAMAGED, EXIT_USAGE, exit_code_of, resolve_data_dir, without_panic_exit};
use crate::actors::cost_ledger::{Damage, LedgerError, LedgerStore, RecordCodec, RedbStore, VerifyReport};

/// `nexus ledger ...`
#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Check a ledger store for damage without writing it: exit 0 if intact,
    /// 1 listing what is damaged.
    Verify(VerifyArgs),
    /// Write each record of a ledger as one file in the form the record
    /// codec decodes (`RecordCodec::encode_entry`): seeds for the
    /// `ledger_record` fuzz target.
    #[command(hide = true)]
    DumpRecords {
        /// The data directory holding `ledger.redb`.
        #[arg(long)]
        data_dir: PathBuf,
        /// The directory to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Write at most this many records.
        #[arg(long, default_value_t = 48)]
        limit: usize,
    },
}

/// `nexus ledger verify ...`
#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
pub struct VerifyArgs {
    /// The data directory holding `ledger.redb`. Default: `node.data_dir` of
    /// `--config`, else `./nexus-data`.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// A configuration file to take `node.data_dir` from.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Runs `nexus ledger ...`.
pub fn run(command: LedgerCommand) -> anyhow::Result<ExitCode> {
    match command {
        LedgerCommand::Verify(args) => match without_panic_exit(|| verify(&args)) {
            Ok(code) => Ok(code),
            Err(panic) => {
                eprintln!("nexus ledger verify: internal error: {panic}");
                Ok(ExitCode::from(EXIT_USAGE))
            }
        },
        LedgerCommand::DumpRecords { data_dir, out, limit } => {
            let store = match RedbStore::open_read_only(&data_dir) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("nexus ledger dump-records: {e}");
                    return Ok(exit_code_of(&e));
                }
            };
            let mut records = Vec::new();
            if let Err(e) = store.visit_records(0, u64::MAX, &mut |r| {
                if records.len() < limit {
                    records.push(r);
                }
                Ok(())
            }) {
                eprintln!("nexus ledger dump-records: {e}");
                return Ok(exit_code_of(&e));
            }
            std::fs::create_dir_all(&out)?;
            for r in &records {
                std::fs::write(out.join(format!("record-{}", r.id)), RecordCodec::encode_entry(r))?;
            }
            println!("{} records written to {}", records.len(), out.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The text `nexus ledger verify` prints for a report: one summary line,
/// then one line per damaged item.
pub fn render(report: &VerifyReport) -> String {
    let mut out = String::new();
    let counts = format!(
        "{} records, {} daily aggregates, {} budgets, {} spend buckets intact",
        report.records, report.aggregates, report.budgets, report.spend_buckets
    );
    if report.is_intact() {
        out.push_str(&format!("{}: intact ({counts})\n", report.path.display()));
    } else {
        out.push_str(&format!(
            "{}: DAMAGED, {} damaged item(s) ({counts})\n",
            report.path.display(),
            report.damage.len()
        ));
        for d in &report.damage {
            out.push_str(&format!("  damaged: {d}\n"));
        }
    }
    out
}

fn verify(args: &VerifyArgs) -> ExitCode {
    let dir = match resolve_data_dir(args.data_dir.as_ref(), args.config.as_ref()) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("nexus ledger verify: {e:#}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let report = match RedbStore::verify(&dir) {
        Ok(r) => r,
        // Damage that keeps the file from opening at all is still a finding.
        Err(LedgerError::Corrupt { path, what, detail }) => VerifyReport {
            path,
            records: 0,
            aggregates: 0,
            budgets: 0,
            spend_buckets: 0,
            damage: vec![Damage { what, detail }],
        },
        Err(e) => {
            eprintln!("nexus ledger verify: {e}");
            return exit_code_of(&e);
        }
    };
    if let Err(e) = std::io::stdout().write_all(render(&report).as_bytes()) {
        eprintln!("nexus ledger verify: writing the result failed: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    if report.is_intact() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_DAMAGED)
    }
}
