//! Memory probes, each run in a fresh child process so that one probe's
//! freed memory (which the allocator keeps) does not flatter the next.
//!
//! The parent re-executes its own binary with [`PROBE_ENV`] set; the child
//! spawns the actors, reads its resident set size before and after from
//! `/proc/self/status`, prints one JSON line and exits.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ractor::Actor;
use serde::{Deserialize, Serialize};

/// Set to `raw:N` or `agents:N` to make a process run a probe and exit.
pub const PROBE_ENV: &str = "NEXUS_BENCH_PROBE";

/// What a probe measured.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct ProbeResult {
    /// Actors spawned.
    pub(crate) count: u64,
    /// Resident bytes added per actor.
    pub(crate) bytes_per_actor: u64,
    /// Time to spawn them all.
    pub(crate) spawn_ms: f64,
}

/// Runs the bare-ractor and the agents probe `rounds` times each,
/// alternating (raw, agents, raw, agents, ...) so that both see the same
/// machine, and returns each kind's median (per field): one slow moment of
/// a shared machine moves one sample, not the ratio.
pub(crate) fn paired_probes(n: usize, rounds: usize) -> anyhow::Result<(ProbeResult, ProbeResult)> {
    let mut raw = Vec::with_capacity(rounds);
    let mut agents = Vec::with_capacity(rounds);
    for _ in 0..rounds.max(1) {
        raw.push(probe_in_child("raw", n)?);
        agents.push(probe_in_child("agents", n)?);
    }
    Ok((median_probe(&raw), median_probe(&agents)))
}

/// The median of each field (the upper one of an even count).
fn median_probe(results: &[ProbeResult]) -> ProbeResult {
    let mut ms: Vec<f64> = results.iter().map(|r| r.spawn_ms).collect();
    let mut bytes: Vec<u64> = results.iter().map(|r| r.bytes_per_actor).collect();
    ms.sort_by(f64::total_cmp);
    bytes.sort_unstable();
    ProbeResult {
        count: results.first().map_or(0, |r| r.count),
        bytes_per_actor: bytes[bytes.len() / 2],
        spawn_ms: ms[ms.len() / 2],
    }
}

/// Resident set size of this process in bytes (Linux).
fn rss_bytes() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status").context("read /proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS in /proc/self/status")?;
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .context("malformed VmRSS line")?
        .parse()
        .context("malformed VmRSS value")?;
    Ok(kb * 1024)
}

/// If this process was started as a probe, runs it, prints the result and
/// exits. Call first thing in `main`.
pub fn run_probe_if_requested() {
    let Ok(spec) = std::env::var(PROBE_ENV) else {
        return;
    };
    let code = match run_probe(&spec) {
        Ok(result) => {
            println!("{}", serde_json::to_string(&result).unwrap_or_default());
            0
        }
        Err(e) => {
            eprintln!("probe {spec} failed: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

fn run_probe(spec: &str) -> anyhow::Result<ProbeResult> {
    let (kind, n) = spec.split_once(':').context("probe spec is kind:count")?;
    let n: usize = n.parse().context("probe count")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match kind {
            "raw" => {
                // Warm the allocator and runtime with a few actors first.
                let tally = super::raw::Tally::idle();
                let mut warm = Vec::new();
                for _ in 0..64 {
                    warm.push(Actor::spawn(None, super::raw::RawCounter, Arc::clone(&tally)).await?.0);
                }
                let before = rss_bytes()?;
                let started = Instant::now();
                let mut actors = Vec::with_capacity(n);
                for _ in 0..n {
                    actors.push(Actor::spawn(None, super::raw::RawCounter, Arc::clone(&tally)).await?.0);
                }
                let spawn_ms = started.elapsed().as_secs_f64() * 1e3;
                tokio::time::sleep(Duration::from_millis(200)).await;
                let after = rss_bytes()?;
                let result = ProbeResult {
                    count: n as u64,
                    bytes_per_actor: after.saturating_sub(before) / n as u64,
                    spawn_ms,
                };
                drop((warm, actors));
                Ok(result)
            }
            "agents" => {
                let node = nexus_swarm_runtime::node::Node::start(Default::default()).await?;
                let warm = super::lanes::spawn_idle_agents(&node, "warm", 64).await?;
                let before = rss_bytes()?;
                let started = Instant::now();
                let agents = super::lanes::spawn_idle_agents(&node, "idle", n).await?;
                let spawn_ms = started.elapsed().as_secs_f64() * 1e3;
                tokio::time::sleep(Duration::from_millis(200)).await;
                let after = rss_bytes()?;
                drop((warm, agents));
                Ok(ProbeResult {
                    count: n as u64,
                    bytes_per_actor: after.saturating_sub(before) / n as u64,
                    spawn_ms,
                })
            }
            other => anyhow::bail!("unknown probe kind {other:?}"),
        }
    })
}

/// Runs a probe in a child copy of this executable.
pub(crate) fn probe_in_child(kind: &str, n: usize) -> anyhow::Result<ProbeResult> {
    let exe = std::env::current_exe().context("locate own executable")?;
    let out = Command::new(exe)
        .env(PROBE_ENV, format!("{kind}:{n}"))
        .output()
        .context("run probe child")?;
    anyhow::ensure!(
        out.status.success(),
        "probe child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout)?;
    let line = stdout.lines().last().context("probe child printed nothing")?;
    Ok(serde_json::from_str(line)?)
}
