//! What `GET /status/history` serves: the last minutes of the running
//! swarm as series, so that a dashboard opened now draws them at once.
//!
//! Pools come from the monitor's own bounded history (its kept samples and
//! per-minute aggregates, see
//! [`MonitorHandle`](nexus_swarm_actors::monitor::MonitorHandle)): per
//! sample, each watched pool's workers, messages handled in the interval,
//! throughput, lane depths, fullest lane and handler latency p50 and p99.
//! What the monitor does not sample, the pressure level and each budget's
//! spend, `nexus run` records beside it at the monitor's interval in a
//! [`Trail`], a ring of at most `monitor.history` points.
//!
//! Every point is placed by `ago_ms`, how long before the answer it was
//! taken, so series from both clocks line up. Building the document
//! ([`series`]) is plain synchronous code over the samples and the trail.

use std::collections::VecDeque;
use std::time::Duration;

use nexus_swarm_actors::monitor::{MinuteAggregate, Sample};
use nexus_swarm_actors::pressure::Level;
use serde::Serialize;

/// One budget at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetPoint {
    /// The budget's id.
    pub id: String,
    /// Spent in its current period: committed plus settled and not yet
    /// committed, in micro-dollars.
    pub spent_micro_usd: u64,
    /// Its limit, in micro-dollars.
    pub limit_micro_usd: u64,
}

/// What `nexus run` records beside the monitor at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailPoint {
    /// When, on the clock the trail is read with.
    pub at: Duration,
    /// The overall pressure level (`None` without a pressure detector, or
    /// before its first report).
    pub pressure: Option<Level>,
    /// Every budget.
    pub budgets: Vec<BudgetPoint>,
}

/// The last points of pressure and budgets, a ring.
#[derive(Debug, Clone)]
pub struct Trail {
    points: VecDeque<TrailPoint>,
    max: usize,
}

impl Trail {
    /// Keeps at most `max` points (at least one).
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        Self {
            points: VecDeque::with_capacity(max.min(4096)),
            max,
        }
    }

    /// Adds a point, dropping the oldest past the bound.
    pub fn push(&mut self, point: TrailPoint) {
        if self.points.len() == self.max {
            self.points.pop_front();
        }
        self.points.push_back(point);
    }

    /// The points kept, oldest first.
    pub fn points(&self) -> &VecDeque<TrailPoint> {
        &self.points
    }
}

/// One pool's series, oldest first; every vector is as long as `ago_ms`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PoolSeries {
    /// The pool's name.
    pub name: String,
    /// How long before the answer each sample was taken, in milliseconds.
    pub ago_ms: Vec<u64>,
    /// Workers.
    pub workers: Vec<u32>,
    /// Messages handled in the sample's interval.
    pub handled: Vec<u64>,
    /// Messages handled per second, times 1000.
    pub throughput_milli: Vec<u64>,
    /// Messages queued in the high lanes.
    pub depth_high: Vec<u64>,
    /// Messages queued in the normal lanes.
    pub depth_normal: Vec<u64>,
    /// Messages queued in the low lanes.
    pub depth_low: Vec<u64>,
    /// The fullest lane's depth over its capacity, in permille.
    pub queue_permille: Vec<u32>,
    /// Median handler latency in the interval, in microseconds.
    pub latency_p50_us: Vec<u64>,
    /// 99th-percentile handler latency in the interval, in microseconds.
    pub latency_p99_us: Vec<u64>,
}

/// The overall pressure level over time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PressureSeries {
    /// How long before the answer, in milliseconds.
    pub ago_ms: Vec<u64>,
    /// `normal`, `moderate`, `high` or `critical`.
    pub level: Vec<String>,
}

/// One budget over time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BudgetSeries {
    /// The budget's id.
    pub id: String,
    /// How long before the answer, in milliseconds.
    pub ago_ms: Vec<u64>,
    /// Spent in its period, in micro-dollars.
    pub spent_micro_usd: Vec<u64>,
    /// Its limit, in micro-dollars.
    pub limit_micro_usd: Vec<u64>,
}

/// The body of `GET /status/history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryDoc {
    /// Whether the monitor runs (without it, `pools` and `minutes` are empty).
    pub monitor: bool,
    /// How often samples and trail points are taken, in milliseconds.
    pub interval_ms: u64,
    /// Each watched pool, in the order it first appears.
    pub pools: Vec<PoolSeries>,
    /// The monitor's per-minute aggregates, oldest first.
    pub minutes: Vec<MinuteAggregate>,
    /// The overall pressure level.
    pub pressure: PressureSeries,
    /// Each budget, in the order it first appears.
    pub budgets: Vec<BudgetSeries>,
}

/// What the monitor holds, read at one instant.
#[derive(Debug, Clone, Default)]
pub struct MonitorView {
    /// Its kept samples, oldest first.
    pub samples: Vec<Sample>,
    /// Its per-minute aggregates, oldest first.
    pub minutes: Vec<MinuteAggregate>,
    /// Now on its clock.
    pub now: Duration,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The history document from the monitor's view (`None`: no monitor) and
/// the trail read at `trail_now` on its clock.
pub fn series(monitor: Option<MonitorView>, trail: &Trail, trail_now: Duration, interval: Duration) -> HistoryDoc {
    let mut pools: Vec<PoolSeries> = Vec::new();
    let running = monitor.is_some();
    let MonitorView { samples, minutes, now } = monitor.unwrap_or_default();
    for s in &samples {
        let ago = millis(now.saturating_sub(s.at));
        for p in &s.pools {
            let i = match pools.iter().position(|x| *x.name == *p.name) {
                Some(i) => i,
                None => {
                    pools.push(PoolSeries {
                        name: p.name.to_string(),
                        ..PoolSeries::default()
                    });
                    pools.len() - 1
                }
            };
            let x = &mut pools[i];
            x.ago_ms.push(ago);
            x.workers.push(p.workers);
            x.handled.push(p.handled);
            x.throughput_milli.push(p.throughput_milli);
            x.depth_high.push(p.depths[0]);
            x.depth_normal.push(p.depths[1]);
            x.depth_low.push(p.depths[2]);
            x.queue_permille.push(p.queue_permille);
            x.latency_p50_us.push(p.latency_p50_us);
            x.latency_p99_us.push(p.latency_p99_us);
        }
    }
    let mut pressure = PressureSeries::default();
    let mut budgets: Vec<BudgetSeries> = Vec::new();
    for point in trail.points() {
        let ago = millis(trail_now.saturating_sub(point.at));
        if let Some(level) = point.pressure {
            pressure.ago_ms.push(ago);
            pressure.level.push(level.to_string());
        }
        for b in &point.budgets {
            let i = match budgets.iter().position(|x| x.id == b.id) {
                Some(i) => i,
                None => {
                    budgets.push(BudgetSeries {
                        id: b.id.clone(),
                        ..BudgetSeries::default()
                    });
                    budgets.len() - 1
                }
            };
            let x = &mut budgets[i];
            x.ago_ms.push(ago);
            x.spent_micro_usd.push(b.spent_micro_usd);
            x.limit_micro_usd.push(b.limit_micro_usd);
        }
    }
    HistoryDoc {
        monitor: running,
        interval_ms: millis(interval),
        pools,
        minutes,
        pressure,
        budgets,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use nexus_swarm_actors::monitor::{PoolSample, Sample, SystemMetrics};
    use nexus_swarm_actors::pressure::Level;

    use super::*;

    fn pool(name: &str, handled: u64, depth: u64, p99: u64) -> PoolSample {
        PoolSample {
            name: Arc::from(name),
            workers: 2,
            depths: [0, depth, 1],
            capacities: [10, 10, 10],
            queue_permille: u32::try_from(depth * 100).unwrap(),
            handled,
            errors: 0,
            restarts: 0,
            throughput_milli: handled * 1000,
            latency_p50_us: p99 / 2,
            latency_p99_us: p99,
            latency_max_us: p99,
            queue_wait_ms: 0,
        }
    }

    fn sample(seq: u64, secs: u64, pools: Vec<PoolSample>) -> Sample {
        Sample {
            seq,
            at: Duration::from_secs(secs),
            system: SystemMetrics::default(),
            processes: Vec::new(),
            pools,
        }
    }

    fn point(secs: u64, level: Option<Level>, budgets: &[(&str, u64)]) -> TrailPoint {
        TrailPoint {
            at: Duration::from_secs(secs),
            pressure: level,
            budgets: budgets
                .iter()
                .map(|(id, spent)| BudgetPoint {
                    id: (*id).to_string(),
                    spent_micro_usd: *spent,
                    limit_micro_usd: 1000,
                })
                .collect(),
        }
    }

    #[test]
    fn pools_become_columns_placed_by_how_long_ago_a_late_pool_has_its_own() {
        let view = MonitorView {
            samples: vec![
                sample(0, 1, vec![pool("a", 5, 1, 40)]),
                sample(1, 2, vec![pool("a", 7, 2, 60), pool("b", 3, 0, 10)]),
            ],
            minutes: Vec::new(),
            now: Duration::from_millis(2500),
        };
        let doc = series(Some(view), &Trail::new(4), Duration::ZERO, Duration::from_secs(1));
        assert!(doc.monitor);
        assert_eq!(doc.interval_ms, 1000);
        let names: Vec<&str> = doc.pools.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        let a = &doc.pools[0];
        assert_eq!(a.ago_ms, [1500, 500]);
        assert_eq!(a.handled, [5, 7]);
        assert_eq!(a.throughput_milli, [5000, 7000]);
        assert_eq!((a.depth_normal.clone(), a.depth_low.clone()), (vec![1, 2], vec![1, 1]));
        assert_eq!(
            (a.latency_p50_us.clone(), a.latency_p99_us.clone()),
            (vec![20, 30], vec![40, 60])
        );
        assert_eq!(a.queue_permille, [100, 200]);
        assert_eq!(doc.pools[1].ago_ms, [500]);
    }

    #[test]
    fn the_trail_stays_bounded_and_gives_pressure_and_each_budget_its_series() {
        let mut trail = Trail::new(3);
        trail.push(point(1, None, &[]));
        trail.push(point(2, Some(Level::Normal), &[("daily", 10)]));
        trail.push(point(3, Some(Level::High), &[("daily", 30), ("acme", 5)]));
        trail.push(point(4, Some(Level::Moderate), &[("daily", 45)]));
        assert_eq!(trail.points().len(), 3, "the oldest went first");
        let doc = series(None, &trail, Duration::from_secs(5), Duration::from_secs(1));
        assert!(!doc.monitor && doc.pools.is_empty() && doc.minutes.is_empty());
        assert_eq!(doc.pressure.ago_ms, [3000, 2000, 1000]);
        assert_eq!(doc.pressure.level, ["normal", "high", "moderate"]);
        let daily = &doc.budgets[0];
        assert_eq!(
            (daily.id.as_str(), daily.ago_ms.clone()),
            ("daily", vec![3000, 2000, 1000])
        );
        assert_eq!(daily.spent_micro_usd, [10, 30, 45]);
        assert_eq!(daily.limit_micro_usd, [1000, 1000, 1000]);
        assert_eq!(doc.budgets[1].id, "acme");
        assert_eq!(doc.budgets[1].ago_ms, [2000]);
    }
}
