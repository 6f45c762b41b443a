//! [`PerfProfile`]: a swarm's measured performance at several pool sizes
//! and resource amounts, the point of diminishing returns, the bottleneck,
//! and recommendations. `nexus profile` measures the points; everything
//! here is plain synchronous code over them.
//!
//! # The measured points
//!
//! A [`Point`] is one run of the workload at one pool size and one
//! resource amount (the LLM gateway's requests-per-minute limit): its
//! throughput, latency percentiles, cost per task in micro-dollars, and the
//! [`Evidence`] of saturation sampled during the run (lane depth, requests
//! waiting for rate-limit capacity, budget refusals, CPU). All figures are
//! integers: throughput in thousandths of a task per second, latency in
//! microseconds, money in micro-dollars, utilizations in permille.
//!
//! # Diminishing returns (the knee)
//!
//! For the points of one resource amount, in increasing size, each step's
//! *marginal gain* is its throughput increase per added worker,
//! `(T[i] - T[i-1]) / (size[i] - size[i-1])`. The first step's gain is the
//! reference. The knee is the size before the first step whose gain is
//! below `knee_fraction_permille` of the reference (default 100, i.e.
//! 10 %): adding workers beyond it buys less than a tenth of what the
//! first added workers bought. A first step that gains nothing puts the
//! knee at the smallest size; no step below the fraction puts it at the
//! largest size measured (diminishing returns not reached: measure larger
//! sizes). A single size is its own knee.
//!
//! # The bottleneck
//!
//! Each point is classified by the first rule that holds ([`Bottleneck`]):
//!
//! 1. **budget**: a request was refused by a budget (`budget_refusals > 0`);
//! 2. **rate limit**: on average at least one request waited for rate-limit
//!    capacity (`rate_limit_waiting_milli >= 1000`), or the throughput
//!    reached 90 % of the limit (`requests_per_minute / 60`);
//! 3. **CPU**: the process used at least 90 % of the cores available to it;
//! 4. **lane**: the deepest lane was on average at least half its capacity
//!    (senders are about to be pushed back);
//! 5. **pool**: on average at least one message waited per worker (every
//!    worker busy, work queued: more workers would take it);
//! 6. **none**: nothing measured was saturated (the offered load bounds
//!    throughput).
//!
//! The profile's bottleneck is that of its largest point at each amount.
//!
//! # Use in scaling
//!
//! [`PerfProfile::best_size`] (the largest knee over the amounts measured)
//! caps a scaling group's maximum: `[scaling] profile = "FILE"` or
//! [`ScalerArgs::max_from_profile`](crate::scaler::ScalerArgs::max_from_profile).
//!
//! # File format
//!
//! JSON with a `format` field ([`PROFILE_FORMAT`]); [`PerfProfile::load`]
//! refuses another format, a damaged file or points no profile can hold,
//! with a typed [`PerfProfileError`].

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file format [`PerfProfile::to_json`] writes and [`PerfProfile::load`] reads.
pub const PROFILE_FORMAT: u32 = 1;

/// Largest profile file [`PerfProfile::load`] reads: 16 MiB.
pub const MAX_PROFILE_BYTES: u64 = 16 << 20;

/// Largest pool size a point may have (the scaler's bound).
pub const MAX_PROFILE_SIZE: u32 = nexus_swarm_runtime::config::MAX_SCALING_WORKERS;

/// Default knee fraction: 100 permille (10 %) of the first step's gain.
pub const DEFAULT_KNEE_FRACTION_PERMILLE: u32 = 100;

/// Why a profile could not be read or analysed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PerfProfileError {
    /// The file could not be read.
    #[error("performance profile {path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_PROFILE_BYTES`].
    #[error("performance profile {path}: {bytes} bytes is above the {MAX_PROFILE_BYTES}-byte limit")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
    },
    /// The file is not a profile's JSON (damaged, truncated, another file).
    #[error("performance profile {path}: damaged: {message}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What the parser found.
        message: String,
    },
    /// The file is a profile of another format.
    #[error("performance profile {path}: format {found} is not supported (this build reads {PROFILE_FORMAT})")]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
        /// The format it says it has.
        found: u32,
    },
    /// The points are not a profile (none, a size of 0, a size twice).
    #[error("performance profile: {0}")]
    Invalid(String),
}

/// Signs that a resource was saturated during one point's run, each
/// averaged over the samples taken while it ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// Messages queued in the pool's lanes per worker, thousandths.
    pub queued_per_worker_milli: u64,
    /// The deepest lane's depth, thousandths of a message.
    pub max_lane_depth_milli: u64,
    /// Each lane's capacity.
    pub lane_capacity: u64,
    /// Requests waiting for the gateway's rate-limit capacity, thousandths.
    pub rate_limit_waiting_milli: u64,
    /// Requests refused by a budget during the run.
    pub budget_refusals: u64,
    /// CPU the process used, permille of the cores available to it;
    /// `None` where the platform does not say.
    pub cpu_permille: Option<u64>,
}

/// One run of the workload at one size and amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Point {
    /// Workers in the pool.
    pub size: u32,
    /// The gateway's requests-per-minute limit; `None`: unlimited.
    pub requests_per_minute: Option<u64>,
    /// Tasks completed in the measured window.
    pub completed: u64,
    /// Tasks that failed in the measured window.
    pub failed: u64,
    /// Completed tasks per second, thousandths.
    pub throughput_milli: u64,
    /// Task latency, median, microseconds.
    pub p50_us: u64,
    /// Task latency, 95th percentile, microseconds.
    pub p95_us: u64,
    /// Task latency, 99th percentile, microseconds.
    pub p99_us: u64,
    /// Spend per completed task, micro-dollars (0 with none completed).
    pub cost_per_task_micro_usd: u64,
    /// What was saturated.
    pub evidence: Evidence,
}

/// What bounded a point's throughput, by the rules of the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Bottleneck {
    /// A budget refused requests.
    Budget {
        /// How many.
        refusals: u64,
    },
    /// The gateway's requests-per-minute limit.
    RateLimit {
        /// The limit.
        requests_per_minute: u64,
        /// Requests waiting for its capacity, thousandths, on average.
        waiting_milli: u64,
    },
    /// The node's CPU.
    Cpu {
        /// Permille of the cores available.
        cpu_permille: u64,
    },
    /// The pool's lanes, half full or more.
    Lane {
        /// The deepest lane, thousandths of a message, on average.
        max_lane_depth_milli: u64,
        /// Each lane's capacity.
        capacity: u64,
    },
    /// The pool's workers: work queued behind every one of them.
    Pool {
        /// Queued messages per worker, thousandths, on average.
        queued_per_worker_milli: u64,
    },
    /// Nothing measured was saturated.
    None,
}

impl fmt::Display for Bottleneck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Bottleneck::Budget { .. } => f.write_str("budget"),
            Bottleneck::RateLimit { .. } => f.write_str("rate limit"),
            Bottleneck::Cpu { .. } => f.write_str("cpu"),
            Bottleneck::Lane { .. } => f.write_str("lane"),
            Bottleneck::Pool { .. } => f.write_str("pool"),
            Bottleneck::None => f.write_str("none"),
        }
    }
}

/// CPU at or above this (permille of the available cores) is saturated.
const CPU_SATURATED_PERMILLE: u64 = 900;
/// Throughput at or above this share of the rate limit (permille) is bound by it.
const RATE_LIMIT_REACHED_PERMILLE: u64 = 900;

impl Bottleneck {
    /// Classifies one point, first rule first (see the module docs).
    pub fn of(point: &Point) -> Self {
        let e = &point.evidence;
        if e.budget_refusals > 0 {
            return Bottleneck::Budget {
                refusals: e.budget_refusals,
            };
        }
        if let Some(rpm) = point.requests_per_minute {
            // throughput_milli / 1000 >= 0.9 x rpm / 60, exactly in integers.
            let reached = u128::from(point.throughput_milli) * 60 * 1000
                >= u128::from(rpm) * 1000 * u128::from(RATE_LIMIT_REACHED_PERMILLE);
            if e.rate_limit_waiting_milli >= 1000 || reached {
                return Bottleneck::RateLimit {
                    requests_per_minute: rpm,
                    waiting_milli: e.rate_limit_waiting_milli,
                };
            }
        }
        if let Some(cpu) = e.cpu_permille.filter(|&c| c >= CPU_SATURATED_PERMILLE) {
            return Bottleneck::Cpu { cpu_permille: cpu };
        }
        if e.lane_capacity > 0 && e.max_lane_depth_milli * 2 >= e.lane_capacity * 1000 {
            return Bottleneck::Lane {
                max_lane_depth_milli: e.max_lane_depth_milli,
                capacity: e.lane_capacity,
            };
        }
        if e.queued_per_worker_milli >= 1000 {
            return Bottleneck::Pool {
                queued_per_worker_milli: e.queued_per_worker_milli,
            };
        }
        Bottleneck::None
    }
}

/// One thing to do, with the figures that justify it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Recommendation {
    /// Cap the pool at the knee: larger sizes add little throughput.
    CapWorkers {
        /// The knee.
        size: u32,
        /// The rate limit the knee was measured at.
        requests_per_minute: Option<u64>,
        /// Throughput at the knee, thousandths of a task per second.
        throughput_milli: u64,
        /// Throughput at the largest size measured.
        largest_throughput_milli: u64,
        /// The largest size measured.
        largest_size: u32,
    },
    /// The knee was not reached: measure larger pools.
    MeasureLarger {
        /// The largest size measured.
        largest_size: u32,
    },
    /// Raise the rate limit (or add a deployment) before adding workers.
    RaiseRateLimit {
        /// The limit that bound throughput.
        requests_per_minute: u64,
    },
    /// Raise the budget or lower the cost per task.
    RaiseBudget {
        /// Requests refused.
        refusals: u64,
        /// Cost per task at that point.
        cost_per_task_micro_usd: u64,
    },
    /// The node's CPU is saturated: more workers only queue; add cores or nodes.
    AddCpu {
        /// Permille of the available cores used.
        cpu_permille: u64,
    },
    /// The lanes are near full: raise their capacity or add workers.
    RaiseLaneCapacity {
        /// Each lane's capacity.
        capacity: u64,
    },
    /// Work queues behind every worker at the largest size: add workers.
    AddWorkers {
        /// The largest size measured.
        largest_size: u32,
    },
}

impl fmt::Display for Recommendation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Recommendation::CapWorkers {
                size,
                requests_per_minute,
                throughput_milli,
                largest_throughput_milli,
                largest_size,
            } => write!(
                f,
                "cap the pool at {size} workers{}: it does {} tasks/s, {largest_size} workers do {} \
                 (set `[scaling] max_workers = {size}`, or `[scaling] profile` to this profile's file)",
                at_limit(*requests_per_minute),
                Rate(*throughput_milli),
                Rate(*largest_throughput_milli)
            ),
            Recommendation::MeasureLarger { largest_size } => write!(
                f,
                "throughput still grows at {largest_size} workers: profile larger sizes to find the knee"
            ),
            Recommendation::RaiseRateLimit { requests_per_minute } => write!(
                f,
                "the rate limit ({requests_per_minute} requests/min) bounds throughput: raise \
                 `llm.requests_per_minute` or add a deployment before adding workers"
            ),
            Recommendation::RaiseBudget {
                refusals,
                cost_per_task_micro_usd,
            } => write!(
                f,
                "a budget refused {refusals} requests: raise it or lower the cost per task \
                 ({cost_per_task_micro_usd} micro-USD)"
            ),
            Recommendation::AddCpu { cpu_permille } => write!(
                f,
                "the process used {}.{} % of its cores: more workers only queue; add cores or nodes",
                cpu_permille / 10,
                cpu_permille % 10
            ),
            Recommendation::RaiseLaneCapacity { capacity } => write!(
                f,
                "lanes are half full or more (capacity {capacity}): raise `mailbox` lane capacity or add workers"
            ),
            Recommendation::AddWorkers { largest_size } => {
                write!(f, "work queues behind every one of {largest_size} workers: add workers")
            }
        }
    }
}

fn at_limit(rpm: Option<u64>) -> String {
    rpm.map(|r| format!(" at {r} requests/min")).unwrap_or_default()
}

/// Thousandths of a task per second, printed with one decimal.
#[derive(Debug, Clone, Copy)]
pub struct Rate(pub u64);

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tenths = (self.0 + 50) / 100;
        write!(f, "{}.{}", tenths / 10, tenths % 10)
    }
}

/// The analysis of the points at one resource amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Curve {
    /// The rate limit; `None`: unlimited.
    pub requests_per_minute: Option<u64>,
    /// The point of diminishing returns.
    pub knee: u32,
    /// What bounded the largest size.
    pub bottleneck: Bottleneck,
    /// Each size's bottleneck, in increasing size.
    pub bottlenecks: Vec<(u32, Bottleneck)>,
}

/// A performance profile: the points, their analysis, the recommendations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerfProfile {
    /// [`PROFILE_FORMAT`].
    pub format: u32,
    /// The knee rule's fraction of the first step's gain, permille.
    pub knee_fraction_permille: u32,
    /// How long each point ran, milliseconds.
    pub duration_ms: u64,
    /// Every point, by amount then size.
    pub points: Vec<Point>,
    /// One analysis per resource amount.
    pub curves: Vec<Curve>,
    /// The largest knee: the most workers worth having.
    pub best_size: u32,
    /// What to do.
    pub recommendations: Vec<Recommendation>,
}

impl PerfProfile {
    /// Analyses `points` with the default knee fraction (10 %).
    pub fn analyse(points: Vec<Point>, duration_ms: u64) -> Result<Self, PerfProfileError> {
        Self::analyse_with(points, duration_ms, DEFAULT_KNEE_FRACTION_PERMILLE)
    }

    /// Analyses `points`: a knee and bottleneck per amount, recommendations.
    /// Refuses no points, a size of 0 or above [`MAX_PROFILE_SIZE`], the
    /// same size twice at one amount, and a fraction of 0 or 1000 and above.
    pub fn analyse_with(
        mut points: Vec<Point>,
        duration_ms: u64,
        knee_fraction_permille: u32,
    ) -> Result<Self, PerfProfileError> {
        validate(&points, knee_fraction_permille)?;
        points.sort_by_key(|p| (p.requests_per_minute.map_or(u64::MAX, |r| r), p.size));
        let mut curves = Vec::new();
        for group in points.chunk_by(|a, b| a.requests_per_minute == b.requests_per_minute) {
            let largest = &group[group.len() - 1];
            curves.push(Curve {
                requests_per_minute: largest.requests_per_minute,
                knee: knee(group, knee_fraction_permille),
                bottleneck: Bottleneck::of(largest),
                bottlenecks: group.iter().map(|p| (p.size, Bottleneck::of(p))).collect(),
            });
        }
        let best_size = curves.iter().map(|c| c.knee).max().unwrap_or(1);
        let recommendations = recommend(&points, &curves);
        Ok(Self {
            format: PROFILE_FORMAT,
            knee_fraction_permille,
            duration_ms,
            points,
            curves,
            best_size,
            recommendations,
        })
    }

    /// The profile as pretty JSON (what `nexus profile --out` writes).
    pub fn to_json(&self) -> String {
        // Plain data with string keys: serializing cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Parses a profile's JSON, checking its format and points; `path`
    /// names it in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<Self, PerfProfileError> {
        #[derive(Deserialize)]
        struct Header {
            format: u32,
        }
        let damaged = |e: serde_json::Error| PerfProfileError::Damaged {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let header: Header = serde_json::from_str(text).map_err(damaged)?;
        if header.format != PROFILE_FORMAT {
            return Err(PerfProfileError::UnsupportedFormat {
                path: path.to_path_buf(),
                found: header.format,
            });
        }
        let profile: PerfProfile = serde_json::from_str(text).map_err(damaged)?;
        validate(&profile.points, profile.knee_fraction_permille)?;
        if profile.best_size == 0 || profile.best_size > MAX_PROFILE_SIZE {
            return Err(PerfProfileError::Invalid(format!(
                "best_size {} is not within 1..={MAX_PROFILE_SIZE}",
                profile.best_size
            )));
        }
        Ok(profile)
    }

    /// Reads a profile written by [`Self::to_json`].
    pub fn load(path: &Path) -> Result<Self, PerfProfileError> {
        let io = |source| PerfProfileError::Io {
            path: path.to_path_buf(),
            source,
        };
        let bytes = std::fs::metadata(path).map_err(io)?.len();
        if bytes > MAX_PROFILE_BYTES {
            return Err(PerfProfileError::TooLarge {
                path: path.to_path_buf(),
                bytes,
            });
        }
        let text = std::fs::read(path).map_err(io)?;
        let text = String::from_utf8(text).map_err(|e| PerfProfileError::Damaged {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Self::from_json(&text, path)
    }
}

fn validate(points: &[Point], knee_fraction_permille: u32) -> Result<(), PerfProfileError> {
    if points.is_empty() {
        return Err(PerfProfileError::Invalid("no points".into()));
    }
    if knee_fraction_permille == 0 || knee_fraction_permille >= 1000 {
        return Err(PerfProfileError::Invalid(format!(
            "knee_fraction_permille {knee_fraction_permille} is not within 1..=999"
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    for p in points {
        if p.size == 0 || p.size > MAX_PROFILE_SIZE {
            return Err(PerfProfileError::Invalid(format!(
                "size {} is not within 1..={MAX_PROFILE_SIZE}",
                p.size
            )));
        }
        if !seen.insert((p.requests_per_minute, p.size)) {
            return Err(PerfProfileError::Invalid(format!(
                "size {} is measured twice at {}",
                p.size,
                p.requests_per_minute
                    .map_or_else(|| "no rate limit".to_string(), |r| format!("{r} requests/min"))
            )));
        }
    }
    Ok(())
}

/// The knee of points of one amount, sorted by size (see the module docs).
pub fn knee(points: &[Point], fraction_permille: u32) -> u32 {
    let Some(first) = points.first() else {
        return 1;
    };
    // Marginal gain per added worker, thousandths of a task/s; signed.
    let gain = |a: &Point, b: &Point| {
        let dt = i128::from(b.throughput_milli) - i128::from(a.throughput_milli);
        dt / i128::from(b.size.saturating_sub(a.size).max(1))
    };
    let mut steps = points.windows(2);
    let Some(pair) = steps.next() else {
        return first.size;
    };
    let reference = gain(&pair[0], &pair[1]);
    if reference <= 0 {
        return first.size;
    }
    for pair in std::iter::once(pair).chain(steps) {
        // gain < fraction x reference, exactly.
        if gain(&pair[0], &pair[1]) * 1000 < reference * i128::from(fraction_permille) {
            return pair[0].size;
        }
    }
    points[points.len() - 1].size
}

fn recommend(points: &[Point], curves: &[Curve]) -> Vec<Recommendation> {
    let mut out = Vec::new();
    for curve in curves {
        let at: Vec<&Point> = points
            .iter()
            .filter(|p| p.requests_per_minute == curve.requests_per_minute)
            .collect();
        let Some(largest) = at.last() else { continue };
        let knee_point = at.iter().find(|p| p.size == curve.knee).unwrap_or(largest);
        if curve.knee < largest.size {
            out.push(Recommendation::CapWorkers {
                size: curve.knee,
                requests_per_minute: curve.requests_per_minute,
                throughput_milli: knee_point.throughput_milli,
                largest_throughput_milli: largest.throughput_milli,
                largest_size: largest.size,
            });
        } else if at.len() > 1 {
            out.push(Recommendation::MeasureLarger {
                largest_size: largest.size,
            });
        }
        let next = match curve.bottleneck {
            Bottleneck::Budget { refusals } => Some(Recommendation::RaiseBudget {
                refusals,
                cost_per_task_micro_usd: largest.cost_per_task_micro_usd,
            }),
            Bottleneck::RateLimit {
                requests_per_minute, ..
            } => Some(Recommendation::RaiseRateLimit { requests_per_minute }),
            Bottleneck::Cpu { cpu_permille } => Some(Recommendation::AddCpu { cpu_permille }),
            Bottleneck::Lane { capacity, .. } => Some(Recommendation::RaiseLaneCapacity { capacity }),
            Bottleneck::Pool { .. } => Some(Recommendation::AddWorkers {
                largest_size: largest.size,
            }),
            Bottleneck::None => None,
        };
        if let Some(r) = next.filter(|r| !out.contains(r)) {
            out.push(r);
        }
    }
    out
}
