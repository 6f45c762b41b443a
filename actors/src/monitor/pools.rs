//! Watched pools and agents: what the runtime exposes about them
//! ([`Watched`], a [`Reading`]) turned into one [`PoolSample`] per interval
//! by a [`PoolMeter`], which also keeps the handler latency histogram since
//! the pool was watched.
//!
//! Latencies come from the pool's [`HandlerStats`] (one histogram for the
//! whole pool, created when it is watched, so an agent nobody watches pays
//! nothing). Queue wait is estimated per interval by Little's law, as the
//! scaler's meter does: the lanes do not timestamp messages.

use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use nexus_swarm_runtime::agent_ref::AgentRef;
use nexus_swarm_runtime::pool::PoolRef;
use nexus_swarm_runtime::priority::Priority;
use nexus_swarm_runtime::spawn::{HandlerStats, new_latency_histogram};

use super::sample::{PoolSample, permille};

/// What a watched pool reports at one instant.
#[derive(Debug, Clone)]
pub struct Reading {
    /// Workers taking messages.
    pub workers: u32,
    /// Messages admitted and not taken, per lane (high, normal, low).
    pub depths: [u64; 3],
    /// Lane capacity, every worker together, per lane.
    pub capacities: [u64; 3],
    /// Messages handled so far (a running total).
    pub handled: u64,
    /// Worker restarts so far.
    pub restarts: u64,
    /// Handler errors so far, where measured.
    pub errors: Option<u64>,
    /// Handler latencies (microseconds) since the last reading, where
    /// measured.
    pub latency_us: Option<Histogram<u64>>,
}

/// A pool or an agent the monitor reads each tick. Implemented for pools
/// ([`WatchedPool`]) and agents ([`WatchedAgent`]).
pub trait Watched: Send + Sync + 'static {
    /// Its name, unique among a monitor's watched pools and agents.
    fn name(&self) -> &str;
    /// Its counters now; called from the monitor's actor, must not block.
    fn read(&self) -> Reading;
}

fn u64s(v: [usize; 3]) -> [u64; 3] {
    v.map(|x| x as u64)
}

/// A pool, read through its handle.
pub struct WatchedPool<M> {
    pool: PoolRef<M>,
    stats: Option<Arc<HandlerStats>>,
}

impl<M> std::fmt::Debug for WatchedPool<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchedPool").field("pool", &self.pool).finish()
    }
}

impl<M: Send + 'static> WatchedPool<M> {
    /// Watches `pool`: from now on its workers record handler latencies
    /// (if it was spawned with signals, as a swarm spawns pools).
    pub fn new(pool: &PoolRef<M>) -> Self {
        Self {
            stats: pool.handler_stats(),
            pool: pool.clone(),
        }
    }
}

impl<M: Send + 'static> Watched for WatchedPool<M> {
    fn name(&self) -> &str {
        self.pool.name()
    }

    fn read(&self) -> Reading {
        let workers = self.pool.size();
        let n = workers as u64;
        Reading {
            workers: u32::try_from(workers).unwrap_or(u32::MAX),
            depths: u64s(self.pool.depths()),
            capacities: u64s(self.pool.lane_capacities()).map(|c| c.saturating_mul(n)),
            handled: self.pool.handled(),
            restarts: self.pool.restarts(),
            errors: self.stats.as_ref().map(|s| s.errors()),
            latency_us: self.stats.as_ref().map(|s| s.take()),
        }
    }
}

/// One agent, read through its handle.
pub struct WatchedAgent<M> {
    agent: AgentRef<M>,
    stats: Option<Arc<HandlerStats>>,
}

impl<M> std::fmt::Debug for WatchedAgent<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchedAgent").finish_non_exhaustive()
    }
}

impl<M: Send + 'static> WatchedAgent<M> {
    /// Watches `agent`: from now on it records handler latencies (if it was
    /// spawned with signals, as a swarm spawns agents).
    pub fn new(agent: &AgentRef<M>) -> Self {
        Self {
            stats: agent.handler_stats(),
            agent: agent.clone(),
        }
    }
}

impl<M: Send + 'static> Watched for WatchedAgent<M> {
    fn name(&self) -> &str {
        self.agent.name()
    }

    fn read(&self) -> Reading {
        let closed = self.agent.is_closed();
        Reading {
            workers: u32::from(!closed),
            depths: u64s(self.agent.depths()),
            capacities: [Priority::High, Priority::Normal, Priority::Low].map(|p| self.agent.capacity(p) as u64),
            handled: self.agent.handled(),
            restarts: u64::from(self.agent.restarts()),
            errors: self.stats.as_ref().map(|s| s.errors()),
            latency_us: self.stats.as_ref().map(|s| s.take()),
        }
    }
}

/// Turns one watched pool's readings into samples.
#[derive(Debug)]
pub struct PoolMeter {
    name: Arc<str>,
    last: Option<(Duration, u64, u64)>,
    /// Every latency since the pool was watched (for the Prometheus summary).
    total_latency_us: Histogram<u64>,
    /// Messages handled and handler errors counted since it was watched.
    totals: (u64, u64),
}

impl PoolMeter {
    /// A meter for the pool `name`.
    pub fn new(name: Arc<str>) -> Self {
        Self {
            name,
            last: None,
            total_latency_us: new_latency_histogram(),
            totals: (0, 0),
        }
    }

    /// Messages handled and handler errors counted since the pool was
    /// watched (the sum of its samples').
    pub fn totals(&self) -> (u64, u64) {
        self.totals
    }

    /// Every handler latency since the pool was watched, in microseconds.
    pub fn total_latency_us(&self) -> &Histogram<u64> {
        &self.total_latency_us
    }

    /// The sample of the reading `r` taken at `at`.
    pub fn sample(&mut self, at: Duration, r: Reading) -> PoolSample {
        let errors_total = r.errors.unwrap_or(0);
        let (handled, errors, elapsed) = match self.last {
            Some((then, handled, errors)) if r.handled >= handled => (
                r.handled - handled,
                errors_total.saturating_sub(errors),
                at.saturating_sub(then),
            ),
            // The first reading counts what came before it (no interval,
            // so no rate); a total that went down (workers retired with
            // their counts) starts again from this reading.
            None => (r.handled, errors_total, Duration::ZERO),
            Some(_) => (0, 0, Duration::ZERO),
        };
        self.last = Some((at, r.handled, errors_total));
        self.totals = (
            self.totals.0.saturating_add(handled),
            self.totals.1.saturating_add(errors),
        );
        let (p50, p99, max) = match &r.latency_us {
            Some(h) if !h.is_empty() => {
                // Same bounds on both sides: adding cannot fail.
                let _ = self.total_latency_us.add(h);
                (h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max())
            }
            _ => (0, 0, 0),
        };
        let queued: u64 = r.depths.iter().sum();
        let elapsed_ns = elapsed.as_nanos();
        let queue_wait_ms = if queued == 0 || elapsed_ns == 0 {
            0
        } else {
            let ms = u128::from(queued) * elapsed_ns / u128::from(handled.max(1)) / 1_000_000;
            u64::try_from(ms).unwrap_or(u64::MAX)
        };
        let throughput_milli = (u128::from(handled) * 1_000_000_000_000)
            .checked_div(elapsed_ns)
            .map_or(0, |t| u64::try_from(t).unwrap_or(u64::MAX));
        let queue_permille = r
            .depths
            .iter()
            .zip(r.capacities)
            .map(|(&d, c)| permille(d, c))
            .max()
            .unwrap_or(0);
        PoolSample {
            name: Arc::clone(&self.name),
            workers: r.workers,
            depths: r.depths,
            capacities: r.capacities,
            queue_permille,
            handled,
            errors,
            restarts: r.restarts,
            throughput_milli,
            latency_p50_us: p50,
            latency_p99_us: p99,
            latency_max_us: max,
            queue_wait_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(depths: [u64; 3], handled: u64, errors: u64, lat: &[u64]) -> Reading {
        let mut h = new_latency_histogram();
        for &v in lat {
            h.record(v).unwrap();
        }
        Reading {
            workers: 2,
            depths,
            capacities: [200, 200, 200],
            handled,
            restarts: 1,
            errors: Some(errors),
            latency_us: Some(h),
        }
    }

    #[test]
    fn intervals_give_rates_waits_latencies_and_the_fullest_lane() {
        let mut m = PoolMeter::new(Arc::from("p"));
        let first = m.sample(Duration::ZERO, reading([0, 50, 0], 100, 1, &[]));
        assert_eq!(
            (first.handled, first.errors, first.throughput_milli, first.queue_wait_ms),
            (100, 1, 0, 0),
            "what came before the first reading, without a rate"
        );
        assert_eq!(first.queue_permille, 250);

        // 200 handled in 10 s with 300 queued: 20/s, a 15 s wait.
        let lat: Vec<u64> = (1..=100).map(|i| i * 100).collect();
        let s = m.sample(Duration::from_secs(10), reading([10, 290, 0], 300, 4, &lat));
        assert_eq!((s.handled, s.errors), (200, 3));
        assert_eq!(s.throughput_milli, 20_000);
        assert_eq!(s.queue_wait_ms, 15_000);
        assert_eq!(s.queue_permille, 1450, "the normal lane, 290 of 200");
        assert!((4_950..=5_050).contains(&s.latency_p50_us), "{s:?}");
        assert!((9_800..=10_100).contains(&s.latency_p99_us), "{s:?}");
        assert_eq!(m.total_latency_us().len(), 100);
        assert_eq!(m.totals(), (300, 4));

        // Retired workers took their counts: this interval starts afresh.
        let s = m.sample(Duration::from_secs(20), reading([0, 0, 0], 50, 4, &[]));
        assert_eq!((s.handled, s.throughput_milli, s.latency_p99_us), (0, 0, 0));
        let s = m.sample(Duration::from_secs(30), reading([0, 0, 0], 60, 4, &[]));
        assert_eq!(s.throughput_milli, 1_000);
    }
}
