//! The `nexus` command line, as a library module so that it is tested.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::runtime::config::NexusConfig;

pub mod audit;
pub mod front_door_load;
pub mod ledger;
pub mod ledger_stress;
pub mod mcp;
pub mod mock_upstream;
pub mod node;
pub mod profile;
pub mod quota_stress;
pub mod report;
pub mod run;
pub mod spill_stress;
pub mod state;

/// Nexus Swarm: an actor-based multi-agent runtime.
#[derive(Debug, Parser)]
#[command(name = "nexus", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Run the load benchmark (our data plane against bare ractor, the seeds'
    /// scenario through the real path, scale), a load scenario, or render saved results.
    Bench(crate::bench::BenchCli),
    /// Profile a swarm workload at several pool sizes and rate limits:
    /// throughput, latency, cost per task, the point of diminishing returns,
    /// the bottleneck and recommendations (`--out` for `[scaling] profile`).
    Profile(profile::ProfileArgs),
    /// Print a cost report (total or grouped, table/JSON/CSV) from a ledger's data directory.
    Report(report::ReportArgs),
    /// Ledger tools: `nexus ledger verify` checks a ledger store for damage.
    #[command(subcommand)]
    Ledger(ledger::LedgerCommand),
    /// Serve the OpenAI-compatible API (`POST /v1/chat/completions`,
    /// `GET /v1/models`) through the LLM gateway, with virtual API keys.
    Serve(crate::serve::ServeArgs),
    /// Virtual API keys for `nexus serve`: `hash` a token, or make a `new` key entry.
    #[command(subcommand)]
    Keys(crate::serve::KeysCommand),
    /// Run a swarm from a configuration file with its HTTP status and admin
    /// API until SIGINT or SIGTERM, then shut down gracefully.
    Run(run::RunArgs),
    /// Run one node of a cluster: the swarm's supervision tree, a
    /// `ractor_cluster` node server authenticated by the cookie in
    /// `--cookie-file`, heartbeats and a failure detector keeping the ring
    /// of nodes, JSON-line events on stdout, and with `--http` the
    /// read-only `/cluster` API.
    Node(node::NodeArgs),
    /// Print the admin API's audit log, checking every line.
    Audit(audit::AuditArgs),
    /// Admin API tokens: `nexus tokens hash` prints what a tokens file stores.
    #[command(subcommand)]
    Tokens(audit::TokensCommand),
    /// A running `nexus run`'s quotas, budgets and pool sizes: export to
    /// or import from a versioned JSON file (token in `NEXUS_TOKEN`).
    #[command(subcommand)]
    State(state::StateCommand),
    /// Serve MCP (Model Context Protocol) on stdin/stdout, bridging to a
    /// running `nexus run`: tools `status`, `cost_report`, and with an
    /// operator token `adjust_quota` and `set_budget` (token from
    /// `--token-file` or `NEXUS_TOKEN`).
    Mcp(mcp::McpArgs),
    /// Record usage as fast as possible, printing each acknowledged record id (crash tests).
    #[command(hide = true)]
    LedgerStress(ledger_stress::StressArgs),
    /// Charge a quota kept under a data directory, printing each usage once it is written (crash tests).
    #[command(hide = true)]
    QuotaStress(quota_stress::QuotaStressArgs),
    /// Fill a pool's low lane past capacity so it spills to disk, recording what is handled (crash tests).
    #[command(hide = true)]
    SpillStress(spill_stress::SpillStressArgs),
    /// Serve a local OpenAI-compatible upstream that answers at once, with an
    /// optional rpm limit (429 past it) and counters at `GET /stats` (benchmarks).
    #[command(hide = true)]
    MockUpstream(mock_upstream::MockUpstreamArgs),
    /// Drive chat completions at an OpenAI-compatible endpoint and print
    /// requests/s and latency percentiles as one JSON line (benchmarks).
    #[command(hide = true)]
    FrontDoorLoad(front_door_load::FrontDoorLoadArgs),
}

/// `nexus config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the complete default configuration as TOML.
    Defaults,
    /// Check a configuration file (and the performance profile it names);
    /// exit 0 if valid, 1 naming the bad field if not.
    Check {
        /// The TOML file (at most 1 MiB), or `-` for standard input.
        file: PathBuf,
    },
}

/// Runs a parsed command line, writing to stdout/stderr.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Config(ConfigCommand::Defaults) => {
            let text = NexusConfig::default().to_toml_string();
            std::io::stdout().write_all(text.as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(bench) => crate::bench::main(bench),
        Command::Config(ConfigCommand::Check { file }) => {
            let checked = if file.as_os_str() == "-" {
                NexusConfig::from_reader(std::io::stdin().lock(), "<stdin>")
            } else {
                NexusConfig::from_file(&file)
            };
            // A file the configuration names is read as the swarm reads it.
            let checked = checked.and_then(|config| {
                let Some(path) = &config.scaling.profile else {
                    return Ok(());
                };
                match crate::actors::perf_profile::PerfProfile::load(path) {
                    Ok(_) => Ok(()),
                    Err(e) => Err(crate::runtime::config::ConfigError::Invalid {
                        field: "scaling.profile".into(),
                        value: format!("{:?}", path.display().to_string()),
                        reason: e.to_string(),
                    }),
                }
            });
            match checked {
                Ok(_) => {
                    println!("{}: ok", file.display());
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("{}: {e}", file.display());
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Profile(args) => profile::run(args),
        Command::Report(args) => report::run(args),
        Command::Ledger(command) => ledger::run(command),
        Command::Serve(args) => crate::serve::run(args),
        Command::Keys(command) => crate::serve::run_keys(command),
        Command::Run(args) => run::run(args),
        Command::Node(args) => node::run(args),
        Command::Audit(args) => audit::run(args),
        Command::Tokens(command) => audit::tokens(command),
        Command::State(command) => state::run(command),
        Command::Mcp(args) => mcp::run(args),
        Command::LedgerStress(args) => ledger_stress::run(args),
        Command::QuotaStress(args) => quota_stress::run(args),
        Command::SpillStress(args) => spill_stress::run(args),
        Command::MockUpstream(args) => mock_upstream::run(args),
        Command::FrontDoorLoad(args) => front_door_load::run(args),
    }
}
