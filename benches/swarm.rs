//! The load benchmark (`cargo bench --bench swarm [-- --quick] [-- --json FILE] [-- --save]`);
//! the same code and options as `nexus bench`. See `nexus_swarm::bench`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    nexus_swarm::bench::run_probe_if_requested();
    // Cargo passes `--bench` to benchmark binaries; the options are `nexus bench`'s.
    let args = std::iter::once("nexus".to_string())
        .chain(std::iter::once("bench".to_string()))
        .chain(std::env::args().skip(1).filter(|a| a != "--bench"));
    let cli = match nexus_swarm::cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match nexus_swarm::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
