//! [`GroupPolicy`]: one scaling group's decisions, in plain synchronous
//! code driven by an explicit clock.
//!
//! Each tick gives it a [`Sample`] (the time, the workers, the group's
//! [`Metrics`]) and it answers one [`Decision`]:
//!
//! 1. **Bounds** first: a group below `min` or above `max` is brought back
//!    at once ([`Reason::BelowMin`], [`Reason::AboveMax`]), whatever the
//!    load and the cooldown.
//! 2. **Per metric** (cpu, memory, queue length, queue wait; a metric the
//!    group does not report is skipped) the proportional rule gives the
//!    workers wanted: `desired = ceil(workers x value / threshold)`, or
//!    `workers` when `|value / threshold - 1| <= tolerance`. The
//!    recommendation is the largest of them, within `min..=max`.
//! 3. **Scale-out** (recommendation above `workers`) needs a *trigger*: a
//!    metric asking for more that has been at or above its threshold
//!    without a break for its sustain duration. It adds at most `step`
//!    workers, and not within the cooldown of the last change.
//! 4. **Scale-in** (recommendation below `workers`) goes down only to the
//!    highest recommendation of the last `stabilization` window (as
//!    Kubernetes' HPA does), only once the group has been observed for a
//!    whole window, by at most `step` workers, and not within the
//!    cooldown. A load that dips and comes back therefore removes nothing.
//!
//! Everything else is a [`Hold`] saying what blocked the change. All
//! arithmetic is on integers: utilizations in permille, waits in
//! milliseconds, ceilings computed exactly in `u128`.
//!
//! The cooldown starts when the caller reports a change done
//! ([`GroupPolicy::scaled`]), not when it is decided: a scale-out that the
//! node cannot admit changes nothing and starts no cooldown.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use nexus_swarm_runtime::config::{MAX_SCALING_WORKERS, ScalingConfig};
use tokio::time::Instant;

use super::ScalerError;
use crate::swarm::Refusal;

/// A metric a scaling group is judged by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// CPU use in permille of what the group may use.
    Cpu,
    /// Memory use in permille of the group's memory limit.
    Memory,
    /// Messages queued in every worker's lanes together.
    QueueLength,
    /// Estimated wait of a message queued now, in milliseconds.
    QueueWait,
}

impl Metric {
    const ALL: [Metric; 4] = [Metric::Cpu, Metric::Memory, Metric::QueueLength, Metric::QueueWait];

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Metric::Cpu => "cpu",
            Metric::Memory => "memory",
            Metric::QueueLength => "queue_length",
            Metric::QueueWait => "queue_wait",
        })
    }
}

/// A scale-out trigger and the proportional rule's target for one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trigger {
    /// The threshold, in the metric's unit (permille, messages, or
    /// milliseconds): the trigger counts at or above it. Above zero.
    pub threshold: u64,
    /// How long the metric must stay at or above the threshold before it
    /// can scale the group out.
    pub sustain: Duration,
}

/// Scaling out on a forecast: each metric's samples of the last `window`
/// are fitted with a least-squares line, and the line's value `horizon`
/// ahead counts in place of the metric when it is higher. The group then
/// scales out before the load arrives, by the same triggers, sustain,
/// proportional rule and cooldown; a forecast never scales a group in
/// (a falling line is ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prediction {
    /// How far ahead the forecast looks. Default: 5 min.
    pub horizon: Duration,
    /// The samples fitted. Default: 10 min.
    pub window: Duration,
}

/// Samples a line needs before its forecast counts.
const MIN_FORECAST_SAMPLES: usize = 3;

/// How one scaling group scales. [`GroupSpec::from_config`] builds the
/// `[scaling]` section's; the builder methods change one part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpec {
    /// Fewest workers (at least 1). Default: 2.
    pub min: u32,
    /// Most workers. Default: 10.
    pub max: u32,
    /// Most workers added or removed by one decision (at least 1). Default: 1.
    pub step: u32,
    /// No change within this long of the last one. Default: 10 min.
    pub cooldown: Duration,
    /// A metric within this many permille of its threshold asks for no
    /// change (below 1000). Default: 100.
    pub tolerance_permille: u32,
    /// Scale-in goes only down to the highest recommendation over this
    /// window. Default: 5 min.
    pub stabilization: Duration,
    /// CPU in permille. Default: 750 for 5 min.
    pub cpu: Option<Trigger>,
    /// Memory in permille. Default: 800 for 5 min.
    pub memory: Option<Trigger>,
    /// Queued messages. Default: 1000 for 1 min.
    pub queue_length: Option<Trigger>,
    /// Queue wait in milliseconds. Default: 30 000 for 1 min.
    pub queue_wait: Option<Trigger>,
    /// Scaling out on a forecast too. Default: off.
    pub predict: Option<Prediction>,
}

impl Default for GroupSpec {
    fn default() -> Self {
        Self::from_config(&ScalingConfig::default())
    }
}

impl GroupSpec {
    /// The policy the `[scaling]` section describes.
    pub fn from_config(c: &ScalingConfig) -> Self {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Self {
            min: c.min_workers,
            max: c.max_workers,
            step: c.increment,
            cooldown: c.cooldown,
            tolerance_permille: c.tolerance_percent.saturating_mul(10),
            stabilization: c.scale_in_stabilization,
            cpu: Some(Trigger {
                threshold: u64::from(c.cpu.threshold_percent) * 10,
                sustain: c.cpu.duration,
            }),
            memory: Some(Trigger {
                threshold: u64::from(c.memory.threshold_percent) * 10,
                sustain: c.memory.duration,
            }),
            queue_length: Some(Trigger {
                threshold: c.queue.length,
                sustain: c.queue.duration,
            }),
            queue_wait: Some(Trigger {
                threshold: millis(c.queue.wait_time),
                sustain: c.queue.duration,
            }),
            predict: c.predictive.enabled.then_some(Prediction {
                horizon: c.predictive.horizon,
                window: c.predictive.window,
            }),
        }
    }

    /// Scales out on the forecast too (`None`: on the metrics alone).
    pub fn predictive(mut self, prediction: Option<Prediction>) -> Self {
        self.predict = prediction;
        self
    }

    /// Between `min` and `max` workers.
    pub fn workers(mut self, min: u32, max: u32) -> Self {
        self.min = min;
        self.max = max;
        self
    }

    /// `max` lowered to `cap` (at least 1) if it is above, and `min` with it
    /// if it is above the new `max`.
    pub fn capped(mut self, cap: u32) -> Self {
        let cap = cap.max(1);
        self.max = self.max.min(cap);
        self.min = self.min.min(self.max);
        self
    }

    /// At most `step` workers per decision.
    pub fn step(mut self, step: u32) -> Self {
        self.step = step;
        self
    }

    /// The cooldown after a change.
    pub fn cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// The scale-in stabilization window.
    pub fn stabilization(mut self, window: Duration) -> Self {
        self.stabilization = window;
        self
    }

    /// The trigger on `metric` (`None`: the metric is not used).
    pub fn trigger(mut self, metric: Metric, trigger: Option<Trigger>) -> Self {
        *self.slot_mut(metric) = trigger;
        self
    }

    /// The trigger on `metric`, if it is used.
    pub fn trigger_of(&self, metric: Metric) -> Option<Trigger> {
        match metric {
            Metric::Cpu => self.cpu,
            Metric::Memory => self.memory,
            Metric::QueueLength => self.queue_length,
            Metric::QueueWait => self.queue_wait,
        }
    }

    fn slot_mut(&mut self, metric: Metric) -> &mut Option<Trigger> {
        match metric {
            Metric::Cpu => &mut self.cpu,
            Metric::Memory => &mut self.memory,
            Metric::QueueLength => &mut self.queue_length,
            Metric::QueueWait => &mut self.queue_wait,
        }
    }

    /// Refuses a spec no group can follow, naming the field.
    pub fn validate(&self, group: &str) -> Result<(), ScalerError> {
        let bad = |field: &str, reason: String| ScalerError::InvalidSpec {
            group: group.to_string(),
            field: field.to_string(),
            reason,
        };
        if self.min == 0 {
            return Err(bad("min", "must be at least 1".into()));
        }
        if self.max > MAX_SCALING_WORKERS {
            return Err(bad("max", format!("{} is above {MAX_SCALING_WORKERS}", self.max)));
        }
        if self.min > self.max {
            return Err(bad("min", format!("{} is above max {}", self.min, self.max)));
        }
        if self.step == 0 {
            return Err(bad("step", "must be at least 1".into()));
        }
        if self.tolerance_permille >= 1000 {
            return Err(bad(
                "tolerance_permille",
                format!("{} must be below 1000", self.tolerance_permille),
            ));
        }
        for metric in Metric::ALL {
            if self.trigger_of(metric).is_some_and(|t| t.threshold == 0) {
                return Err(bad(&format!("{metric}.threshold"), "must be above 0".into()));
            }
        }
        Ok(())
    }
}

/// What a group reports at one tick; `None` for a metric it does not have.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Metrics {
    /// CPU use in permille of what the group may use.
    pub cpu_permille: Option<u64>,
    /// Memory use in permille of the group's limit.
    pub memory_permille: Option<u64>,
    /// Messages queued in every worker's lanes.
    pub queue_length: Option<u64>,
    /// Estimated wait of a message queued now.
    pub queue_wait: Option<Duration>,
}

impl Metrics {
    /// The value of `metric` in its unit (permille, messages, milliseconds).
    pub fn get(&self, metric: Metric) -> Option<u64> {
        match metric {
            Metric::Cpu => self.cpu_permille,
            Metric::Memory => self.memory_permille,
            Metric::QueueLength => self.queue_length,
            Metric::QueueWait => self
                .queue_wait
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }
    }
}

/// One tick's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// When it was taken.
    pub at: Instant,
    /// Workers taking messages.
    pub workers: u32,
    /// The group's metrics.
    pub metrics: Metrics,
}

/// Why a group is resized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A metric's proportional rule: `desired` workers for `value` against
    /// `threshold` (for a scale-in, the highest recommendation over the
    /// stabilization window).
    Metric {
        /// The metric that decided.
        metric: Metric,
        /// Its value, in its unit.
        value: u64,
        /// Its threshold.
        threshold: u64,
        /// Workers wanted.
        desired: u32,
    },
    /// Fewer workers than the group's minimum.
    BelowMin {
        /// The minimum.
        min: u32,
    },
    /// More workers than the group's maximum.
    AboveMax {
        /// The maximum.
        max: u32,
    },
    /// A metric's forecast (predictive mode): its line reaches `forecast`
    /// within the horizon, for which the proportional rule wants `desired`.
    Forecast {
        /// The metric whose forecast decided.
        metric: Metric,
        /// Its value now.
        value: u64,
        /// Its forecast at the horizon.
        forecast: u64,
        /// Its threshold.
        threshold: u64,
        /// Workers wanted.
        desired: u32,
    },
    /// Best-effort work is shed under pressure (a `[pressure]` response,
    /// `shed_best_effort`): a best-effort group goes to its minimum first.
    Shed {
        /// The minimum.
        min: u32,
    },
}

/// Why a group keeps its size.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Hold {
    /// Every metric asks for the current size (within tolerance).
    Steady,
    /// The group reports none of the metrics its spec uses.
    NoMetrics,
    /// More workers are wanted, but no metric asking for them has been at
    /// or above its threshold for its sustain duration yet.
    AwaitingSustain {
        /// The metric asking for the most workers.
        metric: Metric,
        /// Since when it has been at or above its threshold.
        since: Instant,
        /// How long it must stay there.
        sustain: Duration,
        /// Workers wanted.
        desired: u32,
    },
    /// A change is wanted, but the last one was less than the cooldown ago.
    Cooldown {
        /// When the cooldown ends.
        until: Instant,
        /// Workers wanted.
        desired: u32,
    },
    /// Fewer workers are wanted, but not over the whole stabilization
    /// window (or the group has not been observed for a whole window).
    Stabilizing {
        /// Workers wanted now.
        desired: u32,
        /// The highest recommendation over the window.
        highest: u32,
    },
    /// More workers are wanted than the group's maximum, which it has.
    AtMax {
        /// Workers wanted (above the maximum).
        desired: u32,
    },
    /// Fewer workers are wanted than the group's minimum, which it has.
    AtMin {
        /// Workers wanted (below the minimum).
        desired: u32,
    },
    /// A best-effort group held at its minimum while best-effort work is
    /// shed under pressure.
    Shed {
        /// Workers the policy wanted.
        desired: u32,
    },
    /// The previous resize of this group is still under way (a shrink
    /// waits for retired workers to drain).
    InProgress,
    /// A scale-out the node's capacity cannot admit: the group keeps its
    /// size and no cooldown starts.
    NotAdmitted {
        /// The size asked for.
        to: u32,
        /// What is short, and who holds it.
        refusal: Refusal,
    },
    /// The resize failed for another reason.
    ResizeFailed {
        /// The size asked for.
        to: u32,
        /// Why.
        error: String,
    },
    /// The group's pool is gone; the group is removed.
    Gone,
}

/// One decision about one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Add workers.
    ScaleOut {
        /// Workers before.
        from: u32,
        /// Workers after.
        to: u32,
        /// Why.
        reason: Reason,
    },
    /// Remove workers (each drains what it admitted first).
    ScaleIn {
        /// Workers before.
        from: u32,
        /// Workers after.
        to: u32,
        /// Why.
        reason: Reason,
    },
    /// Keep the size.
    Hold(Hold),
}

impl Decision {
    /// The size to resize to, for a scaling decision.
    pub fn target(&self) -> Option<u32> {
        match self {
            Decision::ScaleOut { to, .. } | Decision::ScaleIn { to, .. } => Some(*to),
            Decision::Hold(_) => None,
        }
    }
}

/// One metric's view at a tick.
#[derive(Debug, Clone, Copy)]
struct Reading {
    metric: Metric,
    value: u64,
    /// The forecast, when it is above the value and counted instead.
    forecast: Option<u64>,
    threshold: u64,
    desired: u32,
    /// At or above its threshold for its sustain duration.
    sustained: bool,
    since: Option<Instant>,
    sustain: Duration,
}

/// One group's decision state: when each metric went over its threshold,
/// the recommendations of the stabilization window, the last change.
#[derive(Debug, Clone)]
pub struct GroupPolicy {
    spec: GroupSpec,
    /// Per metric (by [`Metric::index`]): since when it has been at or
    /// above its threshold without a break.
    above_since: [Option<Instant>; 4],
    /// Recommendations of the window, as a monotonic queue: times rising,
    /// values falling, so the front is the window's highest. At most one
    /// entry per distinct value, so at most `max - min + 1` entries.
    window: VecDeque<(Instant, u32)>,
    first_seen: Option<Instant>,
    last_change: Option<Instant>,
    /// Per metric, the samples of the prediction window (predictive mode).
    history: [VecDeque<(Instant, u64)>; 4],
}

impl GroupPolicy {
    /// A policy following `spec` (validate it first: see
    /// [`GroupSpec::validate`]).
    pub fn new(spec: GroupSpec) -> Self {
        Self {
            spec,
            above_since: [None; 4],
            window: VecDeque::new(),
            first_seen: None,
            last_change: None,
            history: Default::default(),
        }
    }

    /// The spec it follows.
    pub fn spec(&self) -> &GroupSpec {
        &self.spec
    }

    /// When the cooldown after the last change ends, if it has not yet at `now`.
    pub fn cooldown_until(&self, now: Instant) -> Option<Instant> {
        let until = self.last_change? + self.spec.cooldown;
        (now < until).then_some(until)
    }

    /// A change to `workers` was made at `at`: the cooldown starts.
    pub fn scaled(&mut self, at: Instant) {
        self.last_change = Some(at);
    }

    /// Decides for one tick.
    pub fn decide(&mut self, s: &Sample) -> Decision {
        let now = s.at;
        let cur = s.workers;
        let (min, max, step) = (self.spec.min, self.spec.max, self.spec.step);
        self.first_seen.get_or_insert(now);
        let readings = self.read(s);
        if cur < min {
            return Decision::ScaleOut {
                from: cur,
                to: min,
                reason: Reason::BelowMin { min },
            };
        }
        if cur > max {
            return Decision::ScaleIn {
                from: cur,
                to: max,
                reason: Reason::AboveMax { max },
            };
        }
        // The reading asking for the most workers decides (the first such
        // in `Metric::ALL` order on a tie).
        let Some(top) = readings
            .iter()
            .copied()
            .reduce(|a, b| if b.desired > a.desired { b } else { a })
        else {
            return Decision::Hold(Hold::NoMetrics);
        };
        let recommended = top.desired.clamp(min, max);
        let highest = self.remember(now, recommended);
        if recommended > cur {
            let firing = readings
                .iter()
                .filter(|r| r.desired > cur && r.sustained)
                .copied()
                .reduce(|a, b| if b.desired > a.desired { b } else { a });
            let Some(firing) = firing else {
                return Decision::Hold(Hold::AwaitingSustain {
                    metric: top.metric,
                    // Wanting more means being above the threshold.
                    since: top.since.unwrap_or(now),
                    sustain: top.sustain,
                    desired: top.desired,
                });
            };
            let desired = firing.desired.min(max);
            if let Some(until) = self.cooldown_until(now) {
                return Decision::Hold(Hold::Cooldown { until, desired });
            }
            let reason = match firing.forecast {
                Some(forecast) => Reason::Forecast {
                    metric: firing.metric,
                    value: firing.value,
                    forecast,
                    threshold: firing.threshold,
                    desired,
                },
                None => Reason::Metric {
                    metric: firing.metric,
                    value: firing.value,
                    threshold: firing.threshold,
                    desired,
                },
            };
            return Decision::ScaleOut {
                from: cur,
                to: desired.min(cur.saturating_add(step)),
                reason,
            };
        }
        if top.desired > cur {
            return Decision::Hold(Hold::AtMax { desired: top.desired });
        }
        if recommended < cur {
            let observed = now.saturating_duration_since(self.first_seen.unwrap_or(now));
            if highest >= cur || observed < self.spec.stabilization {
                return Decision::Hold(Hold::Stabilizing {
                    desired: recommended,
                    highest: highest.max(cur),
                });
            }
            if let Some(until) = self.cooldown_until(now) {
                return Decision::Hold(Hold::Cooldown {
                    until,
                    desired: highest,
                });
            }
            return Decision::ScaleIn {
                from: cur,
                to: highest.max(cur.saturating_sub(step)),
                reason: Reason::Metric {
                    metric: top.metric,
                    value: top.value,
                    threshold: top.threshold,
                    desired: highest,
                },
            };
        }
        if top.desired < cur {
            return Decision::Hold(Hold::AtMin { desired: top.desired });
        }
        Decision::Hold(Hold::Steady)
    }

    /// Each used and reported metric's reading; updates when each went
    /// over its threshold.
    fn read(&mut self, s: &Sample) -> Vec<Reading> {
        let mut out = Vec::with_capacity(4);
        for metric in Metric::ALL {
            let slot = &mut self.above_since[metric.index()];
            let history = &mut self.history[metric.index()];
            let (Some(trigger), Some(value)) = (self.spec.trigger_of(metric), s.metrics.get(metric)) else {
                // Unused or not reported this tick: a run above the threshold ends.
                *slot = None;
                history.clear();
                continue;
            };
            let forecast = self.spec.predict.and_then(|p| forecast(history, s.at, value, p));
            // A forecast above the value counts in its place.
            let counted = forecast.unwrap_or(value);
            if counted >= trigger.threshold {
                slot.get_or_insert(s.at);
            } else {
                *slot = None;
            }
            let since = *slot;
            out.push(Reading {
                metric,
                value,
                forecast,
                threshold: trigger.threshold,
                desired: proportional(s.workers, counted, trigger.threshold, self.spec.tolerance_permille),
                sustained: since.is_some_and(|t| s.at.saturating_duration_since(t) >= trigger.sustain),
                since,
                sustain: trigger.sustain,
            });
        }
        out
    }

    /// Adds a recommendation to the window; returns the window's highest.
    fn remember(&mut self, now: Instant, recommended: u32) -> u32 {
        while self.window.back().is_some_and(|&(_, v)| v <= recommended) {
            self.window.pop_back();
        }
        self.window.push_back((now, recommended));
        while self
            .window
            .front()
            .is_some_and(|&(t, _)| now.saturating_duration_since(t) > self.spec.stabilization)
        {
            self.window.pop_front();
        }
        // Never empty: the entry just pushed is within the window.
        self.window.front().map_or(recommended, |&(_, v)| v)
    }
}

/// Adds `(at, value)` to a metric's window and returns the line's value
/// `p.horizon` ahead, if it is above `value` (a falling or flat line, or
/// too few samples, gives none).
fn forecast(history: &mut VecDeque<(Instant, u64)>, at: Instant, value: u64, p: Prediction) -> Option<u64> {
    history.push_back((at, value));
    while history
        .front()
        .is_some_and(|&(t, _)| at.saturating_duration_since(t) > p.window)
    {
        history.pop_front();
    }
    if history.len() < MIN_FORECAST_SAMPLES {
        return None;
    }
    let line = crate::trend::fit(history.iter().copied())?;
    let ahead = line.at(at + p.horizon);
    (ahead > value).then_some(ahead)
}

/// `ceil(workers x value / threshold)`, or `workers` when `value` is
/// within `tolerance_permille` of `threshold`; at most `u32::MAX`.
pub fn proportional(workers: u32, value: u64, threshold: u64, tolerance_permille: u32) -> u32 {
    let threshold = u128::from(threshold.max(1));
    let value = u128::from(value);
    // |value / threshold - 1| <= tolerance, as |value - threshold| * 1000 <= tolerance * threshold.
    if value.abs_diff(threshold) * 1000 <= u128::from(tolerance_permille) * threshold {
        return workers;
    }
    let desired = (u128::from(workers) * value).div_ceil(threshold);
    u32::try_from(desired).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests;
