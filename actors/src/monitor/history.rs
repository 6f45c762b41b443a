//! [`History`]: the last samples (a ring) and per-minute aggregates (a
//! ring too), both bounded.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde::Serialize;

use super::sample::Sample;

/// One pool over one minute.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PoolMinute {
    /// Messages handled.
    pub handled: u64,
    /// Handlers that failed.
    pub errors: u64,
    /// The most messages queued in one sample (every lane together).
    pub max_queued: u64,
    /// The highest 99th-percentile handler latency of a sample, in
    /// microseconds.
    pub max_latency_p99_us: u64,
}

/// One minute of samples.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MinuteAggregate {
    /// Which minute since the monitor started (from 0).
    pub minute: u64,
    /// Samples taken in it.
    pub samples: u32,
    /// Mean system CPU use, in permille.
    pub cpu_mean_permille: u32,
    /// Highest system CPU use, in permille.
    pub cpu_max_permille: u32,
    /// Mean memory use, in permille.
    pub memory_mean_permille: u32,
    /// Highest memory use, in permille.
    pub memory_max_permille: u32,
    /// Bytes received on the network.
    pub net_rx_bytes: u64,
    /// Bytes sent on the network.
    pub net_tx_bytes: u64,
    /// Each watched pool, by name.
    pub pools: BTreeMap<Arc<str>, PoolMinute>,
    #[serde(skip)]
    cpu_sum: u64,
    #[serde(skip)]
    memory_sum: u64,
}

impl MinuteAggregate {
    fn new(minute: u64) -> Self {
        Self {
            minute,
            ..Self::default()
        }
    }

    fn add(&mut self, s: &Sample) {
        let (cpu, memory) = (s.system.cpu_permille, s.system.memory_permille());
        self.samples += 1;
        self.cpu_sum += u64::from(cpu);
        self.memory_sum += u64::from(memory);
        let n = u64::from(self.samples);
        self.cpu_mean_permille = u32::try_from(self.cpu_sum / n).unwrap_or(u32::MAX);
        self.memory_mean_permille = u32::try_from(self.memory_sum / n).unwrap_or(u32::MAX);
        self.cpu_max_permille = self.cpu_max_permille.max(cpu);
        self.memory_max_permille = self.memory_max_permille.max(memory);
        self.net_rx_bytes = self.net_rx_bytes.saturating_add(s.system.net_rx_bytes);
        self.net_tx_bytes = self.net_tx_bytes.saturating_add(s.system.net_tx_bytes);
        for p in &s.pools {
            let m = self.pools.entry(Arc::clone(&p.name)).or_default();
            m.handled = m.handled.saturating_add(p.handled);
            m.errors = m.errors.saturating_add(p.errors);
            m.max_queued = m.max_queued.max(p.depths.iter().sum());
            m.max_latency_p99_us = m.max_latency_p99_us.max(p.latency_p99_us);
        }
    }
}

/// The last `samples` samples and the last `minutes` minutes.
#[derive(Debug, Clone)]
pub struct History {
    samples: VecDeque<Sample>,
    minutes: VecDeque<MinuteAggregate>,
    max_samples: usize,
    max_minutes: usize,
}

impl History {
    /// Keeps at most `samples` samples and `minutes` aggregates (at least one each).
    pub fn new(samples: usize, minutes: usize) -> Self {
        let (max_samples, max_minutes) = (samples.max(1), minutes.max(1));
        Self {
            samples: VecDeque::with_capacity(max_samples.min(4096)),
            minutes: VecDeque::with_capacity(max_minutes.min(4096)),
            max_samples,
            max_minutes,
        }
    }

    /// Adds a sample (dropping the oldest past the bound) and counts it in
    /// its minute.
    pub fn push(&mut self, sample: Sample) {
        let minute = sample.at.as_secs() / 60;
        if self.minutes.back().is_none_or(|m| m.minute != minute) {
            if self.minutes.len() == self.max_minutes {
                self.minutes.pop_front();
            }
            self.minutes.push_back(MinuteAggregate::new(minute));
        }
        if let Some(m) = self.minutes.back_mut() {
            m.add(&sample);
        }
        if self.samples.len() == self.max_samples {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    /// The samples kept, oldest first.
    pub fn samples(&self) -> &VecDeque<Sample> {
        &self.samples
    }

    /// The minutes kept, oldest first (the last one may be under way).
    pub fn minutes(&self) -> &VecDeque<MinuteAggregate> {
        &self.minutes
    }

    /// The latest sample.
    pub fn latest(&self) -> Option<&Sample> {
        self.samples.back()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::sample::{PoolSample, SystemMetrics};
    use super::*;

    fn sample(seq: u64, secs: u64, cpu: u32, handled: u64) -> Sample {
        Sample {
            seq,
            at: Duration::from_secs(secs),
            system: SystemMetrics {
                cpu_permille: cpu,
                memory_used_bytes: 1,
                memory_total_bytes: 4,
                ..SystemMetrics::default()
            },
            processes: Vec::new(),
            pools: vec![PoolSample {
                name: Arc::from("p"),
                workers: 1,
                depths: [0, seq, 0],
                capacities: [10, 10, 10],
                queue_permille: 0,
                handled,
                errors: 0,
                restarts: 0,
                throughput_milli: 0,
                latency_p50_us: 0,
                latency_p99_us: seq,
                latency_max_us: 0,
                queue_wait_ms: 0,
            }],
        }
    }

    #[test]
    fn the_rings_stay_bounded_and_minutes_aggregate_their_samples() {
        let mut h = History::new(5, 3);
        for i in 0..100 {
            // Every 10 s: six samples a minute.
            h.push(sample(i, i * 10, (i % 6) as u32 * 100, 2));
            assert!(h.samples().len() <= 5 && h.minutes().len() <= 3);
        }
        let seqs: Vec<u64> = h.samples().iter().map(|s| s.seq).collect();
        assert_eq!(seqs, vec![95, 96, 97, 98, 99]);
        let minutes: Vec<u64> = h.minutes().iter().map(|m| m.minute).collect();
        assert_eq!(minutes, vec![14, 15, 16]);
        let full = &h.minutes()[1];
        assert_eq!(full.samples, 6);
        assert_eq!((full.cpu_mean_permille, full.cpu_max_permille), (250, 500));
        assert_eq!(full.memory_max_permille, 250);
        let p = &full.pools[&Arc::<str>::from("p")];
        assert_eq!((p.handled, p.max_queued, p.max_latency_p99_us), (12, 95, 95));
        assert_eq!(h.latest().map(|s| s.seq), Some(99));
    }
}
