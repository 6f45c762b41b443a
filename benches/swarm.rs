//! The load benchmark (`cargo bench --bench swarm [-- --quick] [-- --json FILE]`);
//! the same code runs behind `nexus bench`. See `nexus_swarm::bench`.

fn main() -> anyhow::Result<()> {
    nexus_swarm::bench::run_probe_if_requested();
    let opts = nexus_swarm::bench::BenchOptions::from_args(std::env::args().skip(1))?;
    nexus_swarm::bench::run(&opts)?;
    Ok(())
}
