//! `nexus audit`: prints the admin API's audit log
//! (`<data_dir>/audit.jsonl`, see [`crate::ops::audit`]), checking every
//! line's checksum; damaged lines are listed, never printed as entries.
//!
//! `nexus tokens hash` prints the hash a tokens file stores for a token.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::report::resolve_data_dir;
use crate::ops::audit::{AuditRead, Outcome, read};
use crate::ops::tokens::hash_token;

/// Exit codes of `nexus audit`.
pub const AUDIT_EXIT_CODES: &str = "Exit codes:
  0  the log was read and every line is intact
  1  some lines are damaged (listed on stderr, or under \"damaged\" with --json)
  2  the log could not be read";

/// `nexus audit ...`
#[derive(Debug, Args)]
#[command(after_help = AUDIT_EXIT_CODES)]
pub struct AuditArgs {
    /// The data directory holding `audit.jsonl`. Default: `node.data_dir`
    /// of `--config`, else `./nexus-data`.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// A configuration file to take `node.data_dir` from.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print one JSON document (`{"entries": [...], "damaged": [...]}`)
    /// instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `nexus tokens ...`
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Print the SHA-256 (hex) of a token: what a tokens file's `sha256`
    /// holds. The token is read from standard input (one line) unless
    /// given as an argument, which other users of the machine may see.
    Hash {
        /// The token (default: read from standard input).
        token: Option<String>,
    },
}

/// Runs `nexus tokens ...`.
pub fn tokens(command: TokensCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokensCommand::Hash { token } => {
            let token = match token {
                Some(t) => t,
                None => {
                    let mut line = String::new();
                    std::io::stdin().lock().take_line(&mut line)?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            if token.is_empty() {
                eprintln!("nexus tokens hash: the token is empty");
                return Ok(ExitCode::from(2));
            }
            println!("{}", hash_token(&token));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Reads at most 4 KiB: a token is one short line.
trait TakeLine {
    fn take_line(&mut self, out: &mut String) -> std::io::Result<usize>;
}

impl<R: BufRead> TakeLine for R {
    fn take_line(&mut self, out: &mut String) -> std::io::Result<usize> {
        std::io::Read::take(self, 4096).read_line(out)
    }
}

/// Runs `nexus audit`.
pub fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let dir = match resolve_data_dir(args.data_dir.as_ref(), args.config.as_ref()) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("nexus audit: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    let log = match read(&dir) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("nexus audit: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &log)?;
        writeln!(out)?;
    } else {
        out.write_all(render(&log).as_bytes())?;
        for d in &log.damaged {
            eprintln!("nexus audit: line {}: damaged: {}", d.line, d.reason);
        }
    }
    Ok(if log.damaged.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The table `nexus audit` prints: one line per entry (control
/// characters in names and paths escaped, so an entry is one line).
pub fn render(log: &AuditRead) -> String {
    let mut out = String::from("seq\twhen\twho\trole\taction\toutcome\tstatus\tbefore\tafter\treason\n");
    for e in &log.entries {
        let when = humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(e.at_ms));
        out.push_str(&format!(
            "{}\t{when}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            e.seq,
            e.who.escape_debug(),
            e.role.map_or("-".to_string(), |r| r.to_string()),
            e.action.escape_debug(),
            match e.outcome {
                Outcome::Accepted => "accepted",
                Outcome::Refused => "refused",
            },
            e.status,
            e.before,
            e.after,
            e.reason.as_deref().unwrap_or("-").escape_debug(),
        ));
    }
    out
}
