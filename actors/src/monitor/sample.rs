//! What one sample holds: the machine, this process, the processes agents
//! registered, and every watched pool.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

/// The machine at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SystemMetrics {
    /// CPU use, every core together, in permille of all of them.
    pub cpu_permille: u32,
    /// Memory in use, in bytes.
    pub memory_used_bytes: u64,
    /// Memory installed, in bytes.
    pub memory_total_bytes: u64,
    /// Space used on the mounted disks, in bytes.
    pub disk_used_bytes: u64,
    /// Space of the mounted disks, in bytes.
    pub disk_total_bytes: u64,
    /// Bytes received on every network interface since the last sample.
    pub net_rx_bytes: u64,
    /// Bytes sent on every network interface since the last sample.
    pub net_tx_bytes: u64,
}

impl SystemMetrics {
    /// Memory in use, in permille of what is installed.
    pub fn memory_permille(&self) -> u32 {
        permille(self.memory_used_bytes, self.memory_total_bytes)
    }

    /// Disk space used, in permille of the disks' space.
    pub fn disk_permille(&self) -> u32 {
        permille(self.disk_used_bytes, self.disk_total_bytes)
    }
}

/// `part / whole` in permille (0 when `whole` is 0).
pub(crate) fn permille(part: u64, whole: u64) -> u32 {
    if whole == 0 {
        return 0;
    }
    u32::try_from(u128::from(part) * 1000 / u128::from(whole)).unwrap_or(u32::MAX)
}

/// One process at one instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessSample {
    /// Its id.
    pub pid: u32,
    /// What it was registered as (`"self"` for this process).
    pub label: Arc<str>,
    /// Whether it was found running.
    pub alive: bool,
    /// CPU use since the last sample, in permille of one core (above 1000
    /// on several cores).
    pub cpu_permille: u32,
    /// Resident memory, in bytes.
    pub rss_bytes: u64,
}

/// One watched pool (or agent) over one interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolSample {
    /// Its name.
    pub name: Arc<str>,
    /// Workers taking messages (1 for an agent).
    pub workers: u32,
    /// Messages admitted and not yet taken, per lane (high, normal, low).
    pub depths: [u64; 3],
    /// Lane capacity, every worker together, per lane.
    pub capacities: [u64; 3],
    /// The fullest lane's depth over its capacity, in permille.
    pub queue_permille: u32,
    /// Messages handled in the interval (in the pool's first sample: all
    /// it handled before).
    pub handled: u64,
    /// Handlers that failed in the interval (as `handled`, counted from
    /// when the pool was watched).
    pub errors: u64,
    /// Worker restarts so far.
    pub restarts: u64,
    /// Messages handled per second over the interval, times 1000.
    pub throughput_milli: u64,
    /// Handler latency in the interval, in microseconds: median, 99th
    /// percentile and longest (0 when nothing was recorded).
    pub latency_p50_us: u64,
    /// See `latency_p50_us`.
    pub latency_p99_us: u64,
    /// See `latency_p50_us`.
    pub latency_max_us: u64,
    /// Estimated wait of a message queued now, by Little's law (queued x
    /// interval / handled in the interval; a queue nothing drained counts
    /// one handled), in milliseconds.
    pub queue_wait_ms: u64,
}

/// Everything one tick saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// Its number, from 0.
    pub seq: u64,
    /// When, since the monitor started (tokio time).
    #[serde(serialize_with = "super::export::as_millis", rename = "at_ms")]
    pub at: Duration,
    /// The machine.
    pub system: SystemMetrics,
    /// This process, then each registered process.
    pub processes: Vec<ProcessSample>,
    /// Every watched pool and agent, by name.
    pub pools: Vec<PoolSample>,
}
