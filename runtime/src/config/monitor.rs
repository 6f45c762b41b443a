//! The `[monitor]` section: whether a swarm starts its monitor, how often
//! it samples, the alert thresholds (the seeds' warning 80 %, critical
//! 90 %, action 95 %) and how much history it keeps.
//!
//! A watched utilization (system CPU, memory and disk, each pool's fullest
//! lane) raises an alert when it reaches a threshold and clears it only
//! once it is `hysteresis_percent` below, so a value hovering at a
//! threshold gives one alert.
//!
//! ```
//! use std::time::Duration;
//! use nexus_swarm_runtime::config::NexusConfig;
//!
//! let cfg = NexusConfig::from_toml_str(
//!     r#"
//! [monitor]
//! interval = "5s"
//!
//! [monitor.thresholds]
//! warning_percent = 70
//! "#,
//! )
//! .unwrap();
//! assert_eq!(cfg.monitor.interval, Duration::from_secs(5));
//! assert_eq!(cfg.monitor.thresholds.critical_percent, 90); // the seed default
//!
//! let err = NexusConfig::from_toml_str("[monitor.thresholds]\nwarning_percent = 95\n").unwrap_err();
//! assert_eq!(err.field(), "monitor.thresholds.warning_percent");
//! assert!(err.to_string().contains("monitor.thresholds.critical_percent"));
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, in_range, nonzero_duration};

/// Most samples or per-minute aggregates the monitor may be told to keep.
pub const MAX_MONITOR_HISTORY: usize = 1 << 20;

/// Utilization thresholds, in percent. Default: the seeds' 80 / 90 / 95.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThresholdsConfig {
    /// A warning alert at or above this. Default: 80.
    pub warning_percent: u32,
    /// A critical alert at or above this. Default: 90.
    pub critical_percent: u32,
    /// An action alert (act now) at or above this. Default: 95.
    pub action_percent: u32,
    /// An alert eases (or clears) only once the value is this many
    /// percentage points below its threshold. Default: 5.
    pub hysteresis_percent: u32,
}

impl Default for ThresholdsConfig {
    fn default() -> Self {
        Self {
            warning_percent: 80,
            critical_percent: 90,
            action_percent: 95,
            hysteresis_percent: 5,
        }
    }
}

/// The monitor (`[monitor]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorConfig {
    /// Whether `Swarm::start` starts the monitor. Default: `true`.
    pub enabled: bool,
    /// How often system, process and pool metrics are sampled. Default:
    /// `"10s"` (the seeds' system-metrics interval).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Samples kept (a ring: the oldest goes first). Default: 360 (an hour
    /// at the default interval).
    pub history: usize,
    /// Per-minute aggregates kept (a ring). Default: 1440 (a day).
    pub minutes: usize,
    /// The alert thresholds.
    pub thresholds: ThresholdsConfig,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(10),
            history: 360,
            minutes: 1440,
            thresholds: ThresholdsConfig::default(),
        }
    }
}

impl MonitorConfig {
    /// Checks the section; errors name `monitor.<field>`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        nonzero_duration("monitor.interval", self.interval)?;
        let max = MAX_MONITOR_HISTORY as u64;
        in_range("monitor.history", self.history as u64, 1, max)?;
        in_range("monitor.minutes", self.minutes as u64, 1, max)?;
        let t = &self.thresholds;
        in_range("monitor.thresholds.warning_percent", t.warning_percent.into(), 1, 100)?;
        in_range("monitor.thresholds.critical_percent", t.critical_percent.into(), 1, 100)?;
        in_range("monitor.thresholds.action_percent", t.action_percent.into(), 1, 100)?;
        if t.warning_percent > t.critical_percent {
            return Err(ConfigError::conflict(
                ("monitor.thresholds.warning_percent", t.warning_percent),
                ("monitor.thresholds.critical_percent", t.critical_percent),
                "the warning threshold must not be above the critical one",
            ));
        }
        if t.critical_percent > t.action_percent {
            return Err(ConfigError::conflict(
                ("monitor.thresholds.critical_percent", t.critical_percent),
                ("monitor.thresholds.action_percent", t.action_percent),
                "the critical threshold must not be above the action one",
            ));
        }
        if t.hysteresis_percent >= t.warning_percent {
            return Err(ConfigError::conflict(
                ("monitor.thresholds.hysteresis_percent", t.hysteresis_percent),
                ("monitor.thresholds.warning_percent", t.warning_percent),
                "the hysteresis must be below the warning threshold, or no alert could clear",
            ));
        }
        Ok(())
    }
}
