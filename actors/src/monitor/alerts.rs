//! [`AlertBook`]: utilizations judged against the thresholds, with
//! hysteresis, into [`AlertEvent`]s.
//!
//! A subject's severity is the highest threshold its value reaches. It
//! rises as soon as a sample reaches a higher threshold, and falls only
//! once a sample is `hysteresis` below the threshold of the severity it
//! holds; it then falls to the severity the sample's value reaches (none:
//! the alert is cleared). So a value that crosses a threshold and hovers
//! around it gives one alert raised and, once it is well below, one
//! cleared.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use nexus_swarm_runtime::config::ThresholdsConfig;
use serde::Serialize;

/// How bad a utilization is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// At or above the warning threshold (default 80 %).
    Warning,
    /// At or above the critical threshold (default 90 %).
    Critical,
    /// At or above the action threshold (default 95 %): act now.
    Action,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
            Severity::Action => "action",
        })
    }
}

/// What an alert is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "name")]
pub enum Subject {
    /// The machine's CPU, every core together.
    SystemCpu,
    /// The machine's memory.
    SystemMemory,
    /// The machine's disks, every mounted disk together.
    SystemDisk,
    /// A watched pool's (or agent's) fullest lane: admitted messages in
    /// that lane over its capacity, every worker together.
    Queue(Arc<str>),
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::SystemCpu => f.write_str("system cpu"),
            Subject::SystemMemory => f.write_str("system memory"),
            Subject::SystemDisk => f.write_str("system disk"),
            Subject::Queue(name) => write!(f, "queue of {name}"),
        }
    }
}

/// What happened to an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A subject with no alert reached a threshold.
    Raised(Severity),
    /// An alert reached a higher threshold.
    Escalated {
        /// Its severity before.
        from: Severity,
        /// Its severity now.
        to: Severity,
    },
    /// An alert fell below its threshold by the hysteresis, to a lower
    /// severity that still holds.
    Eased {
        /// Its severity before.
        from: Severity,
        /// Its severity now.
        to: Severity,
    },
    /// An alert fell below the warning threshold by the hysteresis: gone.
    Cleared {
        /// Its severity before.
        from: Severity,
    },
}

/// One change of one subject's alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertEvent {
    /// What it is about.
    pub subject: Subject,
    /// When (since the monitor started; tokio time).
    #[serde(serialize_with = "super::export::as_millis")]
    pub at: Duration,
    /// The value judged, in permille.
    pub value_permille: u32,
    /// What happened.
    pub kind: AlertKind,
}

/// Thresholds in permille, checked (warning <= critical <= action,
/// hysteresis below warning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    warning: u32,
    critical: u32,
    action: u32,
    hysteresis: u32,
}

impl Thresholds {
    /// From the `[monitor.thresholds]` section (validated there).
    pub fn from_config(t: &ThresholdsConfig) -> Self {
        Self::permille(
            t.warning_percent * 10,
            t.critical_percent * 10,
            t.action_percent * 10,
            t.hysteresis_percent * 10,
        )
    }

    /// From permille values; unordered ones are put in order and a
    /// hysteresis at or above the warning threshold is cut below it.
    pub fn permille(warning: u32, critical: u32, action: u32, hysteresis: u32) -> Self {
        let mut v = [warning.max(1), critical.max(1), action.max(1)];
        v.sort_unstable();
        Self {
            warning: v[0],
            critical: v[1],
            action: v[2],
            hysteresis: hysteresis.min(v[0] - 1),
        }
    }

    fn threshold(&self, s: Severity) -> u32 {
        match s {
            Severity::Warning => self.warning,
            Severity::Critical => self.critical,
            Severity::Action => self.action,
        }
    }

    /// The severity a value reaches, if any.
    pub fn severity(&self, permille: u32) -> Option<Severity> {
        [Severity::Action, Severity::Critical, Severity::Warning]
            .into_iter()
            .find(|&s| permille >= self.threshold(s))
    }
}

impl Default for Thresholds {
    fn default() -> Self {
        Self::from_config(&ThresholdsConfig::default())
    }
}

/// Every subject's alert, judged sample by sample.
#[derive(Debug, Clone, Default)]
pub struct AlertBook {
    thresholds: Thresholds,
    active: BTreeMap<Subject, Severity>,
    raised: u64,
    cleared: u64,
}

impl AlertBook {
    /// A book judging by `thresholds`.
    pub fn new(thresholds: Thresholds) -> Self {
        Self {
            thresholds,
            ..Self::default()
        }
    }

    /// Judges one sample of `subject`: the change it makes, if any.
    pub fn judge(&mut self, subject: &Subject, at: Duration, value_permille: u32) -> Option<AlertEvent> {
        let reached = self.thresholds.severity(value_permille);
        let current = self.active.get(subject).copied();
        let kind = match (current, reached) {
            (None, Some(to)) => AlertKind::Raised(to),
            (Some(from), Some(to)) if to > from => AlertKind::Escalated { from, to },
            (Some(from), reached) => {
                let floor = self.thresholds.threshold(from) - self.thresholds.hysteresis;
                if value_permille >= floor {
                    return None;
                }
                match reached {
                    Some(to) => AlertKind::Eased { from, to },
                    None => AlertKind::Cleared { from },
                }
            }
            (None, None) => return None,
        };
        match kind {
            AlertKind::Raised(s) | AlertKind::Escalated { to: s, .. } | AlertKind::Eased { to: s, .. } => {
                if matches!(kind, AlertKind::Raised(_)) {
                    self.raised += 1;
                }
                self.active.insert(subject.clone(), s);
            }
            AlertKind::Cleared { .. } => {
                self.cleared += 1;
                self.active.remove(subject);
            }
        }
        Some(AlertEvent {
            subject: subject.clone(),
            at,
            value_permille,
            kind,
        })
    }

    /// Forgets a subject (a pool no longer watched); its alert, if any,
    /// is cleared.
    pub fn forget(&mut self, subject: &Subject, at: Duration) -> Option<AlertEvent> {
        let from = self.active.remove(subject)?;
        self.cleared += 1;
        Some(AlertEvent {
            subject: subject.clone(),
            at,
            value_permille: 0,
            kind: AlertKind::Cleared { from },
        })
    }

    /// The alerts standing now.
    pub fn active(&self) -> impl Iterator<Item = (&Subject, Severity)> {
        self.active.iter().map(|(s, v)| (s, *v))
    }

    /// Alerts raised so far.
    pub fn raised(&self) -> u64 {
        self.raised
    }

    /// Alerts cleared so far.
    pub fn cleared(&self) -> u64 {
        self.cleared
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_crossing_hovering_at_the_threshold_raises_once_and_clears_once() {
        let mut book = AlertBook::default();
        let q = Subject::Queue(Arc::from("workers"));
        // Rises through 80 %, hovers 76..=84 % (noise), then falls.
        let series = [500, 700, 790, 800, 770, 830, 760, 840, 790, 805, 780, 760, 700, 400];
        let events: Vec<_> = series
            .iter()
            .enumerate()
            .filter_map(|(i, &v)| book.judge(&q, at(i as u64 * 10), v))
            .collect();
        let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            vec![
                AlertKind::Raised(Severity::Warning),
                AlertKind::Cleared {
                    from: Severity::Warning
                }
            ],
            "{events:?}"
        );
        assert_eq!((events[0].at, events[0].value_permille), (at(30), 800));
        assert_eq!((events[1].at, events[1].value_permille), (at(120), 700));
        assert_eq!((book.raised(), book.cleared()), (1, 1));
        assert_eq!(book.active().count(), 0);
    }

    #[test]
    fn severities_escalate_at_once_and_ease_only_past_the_hysteresis() {
        let mut book = AlertBook::default();
        let s = Subject::SystemCpu;
        let mut kinds = Vec::new();
        for v in [960, 920, 899, 800, 751, 749, 910, 860, 849, 990] {
            kinds.push(book.judge(&s, at(0), v).map(|e| e.kind));
        }
        use Severity::*;
        assert_eq!(
            kinds,
            vec![
                Some(AlertKind::Raised(Action)),
                None, // 92 %: within 5 points of 95 %
                Some(AlertKind::Eased {
                    from: Action,
                    to: Warning
                }),
                None,
                None, // 75.1 %: within 5 points of 80 %
                Some(AlertKind::Cleared { from: Warning }),
                Some(AlertKind::Raised(Critical)),
                None, // 86 %: within 5 points of 90 %
                Some(AlertKind::Eased {
                    from: Critical,
                    to: Warning
                }),
                Some(AlertKind::Escalated {
                    from: Warning,
                    to: Action
                }),
            ]
        );
        assert_eq!((book.raised(), book.cleared()), (2, 1));
        assert_eq!(
            book.forget(&s, at(1)).map(|e| e.kind),
            Some(AlertKind::Cleared { from: Action })
        );
        assert_eq!(book.forget(&s, at(1)), None);
    }

    #[test]
    fn subjects_are_judged_apart_and_thresholds_are_put_in_order() {
        let t = Thresholds::permille(900, 800, 950, 2000);
        assert_eq!(t.severity(850), Some(Severity::Warning));
        assert_eq!(t.severity(799), None);
        let mut book = AlertBook::new(t);
        let (a, b) = (Subject::Queue(Arc::from("a")), Subject::Queue(Arc::from("b")));
        assert!(book.judge(&a, at(0), 810).is_some());
        assert!(book.judge(&b, at(0), 100).is_none());
        // Hysteresis was cut to 79.9 %: a value of 0 still clears.
        assert_eq!(
            book.judge(&a, at(1), 0).map(|e| e.kind),
            Some(AlertKind::Cleared {
                from: Severity::Warning
            })
        );
    }
}
