//! The `nexus` command line: configuration tools (and, as they land,
//! benchmarks and reports).

use std::process::ExitCode;

use clap::Parser;

/// Every request through the front door, and every message a benchmark
/// sends, allocates; mimalloc serves small allocations faster than the
/// system allocator under concurrent load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // A benchmark memory probe re-executes this binary; it exits here.
    nexus_swarm::bench::run_probe_if_requested();
    // So does the cluster benchmark's peer node.
    nexus_swarm::bench::run_cluster_peer_if_requested();
    nexus_swarm::runtime::telemetry::init_tracing();
    let cli = nexus_swarm::cli::Cli::parse();
    match nexus_swarm::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
