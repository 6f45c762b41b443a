//! [`PressureCore`]: pressure levels, trends, anomalies and forecasts from
//! utilization samples, in plain synchronous code on integers.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use crate::trend::fit;

/// How hard a resource is pressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Level {
    /// Below the moderate threshold.
    #[default]
    Normal,
    /// At or above the moderate threshold (default 80 %).
    Moderate,
    /// At or above the high threshold (default 90 %).
    High,
    /// At or above the critical threshold (default 95 %).
    Critical,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Normal => "normal",
            Level::Moderate => "moderate",
            Level::High => "high",
            Level::Critical => "critical",
        })
    }
}

/// Where a trend is going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Rising faster than the flat band.
    Rising,
    /// Within the flat band.
    Flat,
    /// Falling faster than the flat band.
    Falling,
}

/// The least-squares line through a resource's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trend {
    /// Slope in permille of utilization per minute (rounded toward zero).
    pub slope_per_minute: i64,
    /// Its sign, with slopes within [`PressureSpec::flat_per_minute`] flat.
    pub direction: Direction,
}

/// A sample far from the rest of its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anomaly {
    /// The sample, in permille.
    pub value: u32,
    /// The median of the window before it.
    pub median: u32,
    /// Its modified z-score (0.6745 x (value - median) / MAD), in thousandths.
    pub z_milli: i64,
}

/// Where the trend line reaches at a horizon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forecast {
    /// The time forecast for (the newest sample's time plus the horizon).
    pub at: Instant,
    /// Utilization on the trend line then, in permille (at least 0).
    pub utilization: u32,
    /// The level that utilization is (thresholds without hysteresis).
    pub level: Level,
}

/// One resource's pressure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourcePressure {
    /// The newest sample, in permille.
    pub utilization: u32,
    /// Its level, with hysteresis.
    pub level: Level,
    /// The trend over the window (two samples at different times at least).
    pub trend: Option<Trend>,
    /// Whether the newest sample is an anomaly.
    pub anomaly: Option<Anomaly>,
    /// The trend line at the horizon.
    pub forecast: Option<Forecast>,
}

/// A change of level: of one resource, or (`resource` `None`) overall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelChange {
    /// The resource, or `None` for the overall level.
    pub resource: Option<String>,
    /// The level before.
    pub from: Level,
    /// The level now.
    pub to: Level,
    /// The utilization that caused it, in permille.
    pub utilization: u32,
    /// When.
    pub at: Instant,
}

/// How pressure is judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PressureSpec {
    /// Moderate at or above this, in permille. Default: 800 (the seeds'
    /// warning threshold).
    pub moderate: u32,
    /// High at or above this. Default: 900 (the seeds' critical threshold).
    pub high: u32,
    /// Critical at or above this. Default: 950 (the seeds' action threshold).
    pub critical: u32,
    /// A level is left downwards only below its threshold minus this, so
    /// a utilization hovering at a threshold changes the level once.
    /// Default: 50 (5 %).
    pub hysteresis: u32,
    /// Samples older than this leave the window. Default: 10 min.
    pub window: Duration,
    /// Most samples a window keeps (the oldest leave first). Default: 1024.
    pub max_samples: usize,
    /// How far ahead the forecast looks. Default: 5 min.
    pub horizon: Duration,
    /// Trends slower than this many permille per minute are flat. Default: 5.
    pub flat_per_minute: u32,
    /// A sample whose modified z-score against the window before it
    /// exceeds this, in thousandths, is an anomaly. Default: 3500
    /// (Iglewicz and Hoaglin's 3.5).
    pub anomaly_z_milli: u32,
    /// The MAD is taken as at least this (permille), so a flat window does
    /// not make every wobble an anomaly. Default: 5.
    pub min_mad: u32,
    /// Samples needed before the newest before anomalies are judged.
    /// Default: 8.
    pub min_anomaly_samples: usize,
}

impl Default for PressureSpec {
    fn default() -> Self {
        Self {
            moderate: 800,
            high: 900,
            critical: 950,
            hysteresis: 50,
            window: Duration::from_secs(600),
            max_samples: 1024,
            horizon: Duration::from_secs(300),
            flat_per_minute: 5,
            anomaly_z_milli: 3500,
            min_mad: 5,
            min_anomaly_samples: 8,
        }
    }
}

impl PressureSpec {
    /// The `[pressure]` section's levels, window and horizon (percent
    /// there, permille here); the rest stays at its default.
    pub fn from_config(config: &nexus_swarm_runtime::config::PressureConfig) -> Self {
        Self {
            moderate: config.moderate_percent.saturating_mul(10),
            high: config.high_percent.saturating_mul(10),
            critical: config.critical_percent.saturating_mul(10),
            hysteresis: config.hysteresis_percent.saturating_mul(10),
            window: config.window,
            horizon: config.horizon,
            ..Self::default()
        }
    }

    /// The level of `permille`, without hysteresis.
    pub fn level_of(&self, permille: u32) -> Level {
        if permille >= self.critical {
            Level::Critical
        } else if permille >= self.high {
            Level::High
        } else if permille >= self.moderate {
            Level::Moderate
        } else {
            Level::Normal
        }
    }

    /// The next level from `current` at `permille`: up at once to the
    /// level it reaches, down only to the level it is within
    /// `hysteresis` of.
    pub fn next_level(&self, current: Level, permille: u32) -> Level {
        let up = self.level_of(permille);
        if up >= current {
            return up;
        }
        self.level_of(permille.saturating_add(self.hysteresis)).min(current)
    }
}

/// One resource's window and level.
#[derive(Debug, Clone, Default)]
struct Series {
    samples: VecDeque<(Instant, u32)>,
    level: Level,
}

/// Pressure per resource and overall (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct PressureCore {
    spec: PressureSpec,
    series: BTreeMap<String, Series>,
    overall: Level,
}

impl PressureCore {
    /// A core judging by `spec`.
    pub fn new(spec: PressureSpec) -> Self {
        Self {
            spec,
            series: BTreeMap::new(),
            overall: Level::Normal,
        }
    }

    /// How it judges.
    pub fn spec(&self) -> &PressureSpec {
        &self.spec
    }

    /// The overall level: the highest of the resources'.
    pub fn overall(&self) -> Level {
        self.overall
    }

    /// Takes one sample of `resource` (utilization in permille) at `at`;
    /// answers the resource's pressure and the level changes it caused
    /// (the resource's, then the overall one).
    pub fn observe(&mut self, resource: &str, at: Instant, permille: u32) -> (ResourcePressure, Vec<LevelChange>) {
        let spec = &self.spec;
        let s = self.series.entry(resource.to_string()).or_default();
        let anomaly = anomaly(spec, s.samples.iter().map(|&(_, v)| v), permille);
        s.samples.push_back((at, permille));
        while s.samples.len() > spec.max_samples.max(2)
            || s.samples
                .front()
                .is_some_and(|&(t, _)| at.saturating_duration_since(t) > spec.window)
        {
            s.samples.pop_front();
        }
        let mut changes = Vec::new();
        let level = spec.next_level(s.level, permille);
        if level != s.level {
            changes.push(LevelChange {
                resource: Some(resource.to_string()),
                from: s.level,
                to: level,
                utilization: permille,
                at,
            });
            s.level = level;
        }
        let line = fit(s.samples.iter().map(|&(t, v)| (t, u64::from(v))));
        let trend = line.map(|l| {
            let slope = l.slope_per_minute();
            let flat = i64::from(spec.flat_per_minute);
            let direction = if slope > flat {
                Direction::Rising
            } else if slope < -flat {
                Direction::Falling
            } else {
                Direction::Flat
            };
            Trend {
                slope_per_minute: slope,
                direction,
            }
        });
        let forecast = line.map(|l| {
            let when = at + spec.horizon;
            let utilization = u32::try_from(l.at(when)).unwrap_or(u32::MAX);
            Forecast {
                at: when,
                utilization,
                level: spec.level_of(utilization),
            }
        });
        let report = ResourcePressure {
            utilization: permille,
            level,
            trend,
            anomaly,
            forecast,
        };
        let overall = self.series.values().map(|s| s.level).max().unwrap_or_default();
        if overall != self.overall {
            changes.push(LevelChange {
                resource: None,
                from: self.overall,
                to: overall,
                utilization: permille,
                at,
            });
            self.overall = overall;
        }
        (report, changes)
    }

    /// Every resource's current level.
    pub fn levels(&self) -> BTreeMap<String, Level> {
        self.series.iter().map(|(k, s)| (k.clone(), s.level)).collect()
    }

    /// Forgets a resource (its level no longer counts overall); answers the
    /// overall level change this causes, if any.
    pub fn forget(&mut self, resource: &str, at: Instant) -> Option<LevelChange> {
        self.series.remove(resource)?;
        let overall = self.series.values().map(|s| s.level).max().unwrap_or_default();
        (overall != self.overall).then(|| {
            let change = LevelChange {
                resource: None,
                from: self.overall,
                to: overall,
                utilization: 0,
                at,
            };
            self.overall = overall;
            change
        })
    }
}

/// Whether `value` is an anomaly against `window` (the samples before it)
/// by the modified z-score.
fn anomaly(spec: &PressureSpec, window: impl Iterator<Item = u32>, value: u32) -> Option<Anomaly> {
    let mut values: Vec<u32> = window.collect();
    if values.len() < spec.min_anomaly_samples.max(1) {
        return None;
    }
    let center = median(&mut values);
    let mut deviations: Vec<u32> = values.iter().map(|&v| v.abs_diff(center)).collect();
    let mad = median(&mut deviations).max(spec.min_mad).max(1);
    // 0.6745 x (value - median) / MAD, in thousandths.
    let z_milli = 6745 * (i64::from(value) - i64::from(center)) / (10 * i64::from(mad));
    (z_milli.unsigned_abs() > u64::from(spec.anomaly_z_milli)).then_some(Anomaly {
        value,
        median: center,
        z_milli,
    })
}

/// The median (the lower middle of an even count; 0 for none).
fn median(values: &mut [u32]) -> u32 {
    if values.is_empty() {
        return 0;
    }
    let mid = (values.len() - 1) / 2;
    *values.select_nth_unstable(mid).1
}
