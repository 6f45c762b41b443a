//! [`MonitorCore`]: one tick's readings into a [`Sample`], its alerts, the
//! history and the exports; synchronous, driven by the caller's clock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::alerts::{AlertBook, AlertEvent, Severity, Subject, Thresholds};
use super::export::{self, PromInput};
use super::history::{History, MinuteAggregate};
use super::pools::{PoolMeter, Reading};
use super::sample::{ProcessSample, Sample, SystemMetrics};

/// Samples, alerts and per-pool meters.
#[derive(Debug)]
pub struct MonitorCore {
    seq: u64,
    history: History,
    alerts: AlertBook,
    meters: BTreeMap<Arc<str>, PoolMeter>,
}

/// The JSON export's shape.
#[derive(Serialize)]
struct JsonExport<'a> {
    samples: &'a std::collections::VecDeque<Sample>,
    minutes: &'a std::collections::VecDeque<MinuteAggregate>,
    alerts_raised: u64,
    alerts_cleared: u64,
    active_alerts: Vec<ActiveAlert<'a>>,
}

#[derive(Serialize)]
struct ActiveAlert<'a> {
    subject: &'a Subject,
    severity: Severity,
}

impl MonitorCore {
    /// A core judging by `thresholds`, keeping `samples` samples and
    /// `minutes` per-minute aggregates.
    pub fn new(thresholds: Thresholds, samples: usize, minutes: usize) -> Self {
        Self {
            seq: 0,
            history: History::new(samples, minutes),
            alerts: AlertBook::new(thresholds),
            meters: BTreeMap::new(),
        }
    }

    /// Records one tick taken at `at`: the machine, the processes and each
    /// watched pool's reading. Answers the sample and the alert changes it
    /// made (system CPU, memory and disk, and each pool's fullest lane).
    pub fn record(
        &mut self,
        at: Duration,
        system: SystemMetrics,
        processes: Vec<ProcessSample>,
        readings: Vec<(Arc<str>, Reading)>,
    ) -> (Sample, Vec<AlertEvent>) {
        let pools: Vec<_> = readings
            .into_iter()
            .map(|(name, r)| {
                self.meters
                    .entry(Arc::clone(&name))
                    .or_insert_with(|| PoolMeter::new(name))
                    .sample(at, r)
            })
            .collect();
        let mut events = Vec::new();
        let mut judge = |subject: Subject, v: u32| events.extend(self.alerts.judge(&subject, at, v));
        // The first sample has no CPU interval yet: its 0 is not judged.
        if self.seq > 0 {
            judge(Subject::SystemCpu, system.cpu_permille);
        }
        if system.memory_total_bytes > 0 {
            judge(Subject::SystemMemory, system.memory_permille());
        }
        if system.disk_total_bytes > 0 {
            judge(Subject::SystemDisk, system.disk_permille());
        }
        for p in &pools {
            judge(Subject::Queue(Arc::clone(&p.name)), p.queue_permille);
        }
        let sample = Sample {
            seq: self.seq,
            at,
            system,
            processes,
            pools,
        };
        self.seq += 1;
        self.history.push(sample.clone());
        (sample, events)
    }

    /// Forgets a pool no longer watched; its alert, if any, is cleared.
    pub fn forget(&mut self, name: &str, at: Duration) -> Option<AlertEvent> {
        let name: Arc<str> = Arc::from(name);
        self.meters.remove(&name);
        self.alerts.forget(&Subject::Queue(name), at)
    }

    /// The history.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The alerts.
    pub fn alerts(&self) -> &AlertBook {
        &self.alerts
    }

    /// Samples taken so far.
    pub fn samples_taken(&self) -> u64 {
        self.seq
    }

    /// The kept samples, the minutes, the alert counts and the standing
    /// alerts, as one JSON object.
    pub fn json(&self) -> String {
        let export = JsonExport {
            samples: self.history.samples(),
            minutes: self.history.minutes(),
            alerts_raised: self.alerts.raised(),
            alerts_cleared: self.alerts.cleared(),
            active_alerts: self
                .alerts
                .active()
                .map(|(subject, severity)| ActiveAlert { subject, severity })
                .collect(),
        };
        // Plain data with string keys: serializing cannot fail.
        serde_json::to_string(&export).unwrap_or_default()
    }

    /// The kept samples as CSV: a header, then one row per sample.
    pub fn csv(&self) -> String {
        export::csv(self.history.samples())
    }

    /// The latest sample, the counters and the latency summaries in the
    /// Prometheus text format.
    pub fn prometheus(&self) -> String {
        export::prometheus(&PromInput {
            latest: self.history.latest(),
            samples: self.seq,
            pools: self
                .meters
                .iter()
                .map(|(name, m)| {
                    let (handled, errors) = m.totals();
                    (&**name, handled, errors, m.total_latency_us())
                })
                .collect(),
            alerts: (self.alerts.raised(), self.alerts.cleared()),
            active: self.alerts.active().collect(),
        })
    }
}
