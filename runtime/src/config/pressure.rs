//! The `[pressure]` section: the pressure detector's levels (the seeds'
//! 80 / 90 / 95 %), its trend window and forecast horizon, and the
//! automated responses a swarm takes when a level is reached.
//!
//! A response is engaged when the level of the resources it watches
//! reaches its `at` level, and released once they fall back below it (the
//! detector's hysteresis keeps a hovering utilization from flapping it).
//! `resource` names what it watches: a kind (`"cpu"`, `"memory"`) for
//! every resource of that kind (the machine's `system/memory`, each
//! scaling group's `<pool>/memory`...), an exact resource name, or nothing
//! for the overall level.
//!
//! ```
//! use nexus_swarm_runtime::config::{NexusConfig, PressureAction, PressureLevel};
//!
//! let cfg = NexusConfig::from_toml_str(
//!     r#"
//! [pressure]
//! responses = [
//!   { at = "high", resource = "memory", action = "shrink_caches" },
//!   { at = "critical", action = "reject_low_priority" },
//! ]
//! "#,
//! )
//! .unwrap();
//! assert_eq!(cfg.pressure.responses[1].at, PressureLevel::Critical);
//! assert_eq!(cfg.pressure.responses[1].action, PressureAction::RejectLowPriority);
//! assert_eq!(cfg.pressure.high_percent, 90); // the seed default
//!
//! let err = NexusConfig::from_toml_str("[pressure]\nhigh_percent = 97\n").unwrap_err();
//! assert_eq!(err.field(), "pressure.high_percent");
//! ```

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, duration_in, in_range};

/// Most responses a `[pressure]` section may declare.
pub const MAX_PRESSURE_RESPONSES: usize = 64;

/// A pressure level a response engages at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PressureLevel {
    /// At or above `moderate_percent`.
    Moderate,
    /// At or above `high_percent`.
    High,
    /// At or above `critical_percent`.
    Critical,
}

impl fmt::Display for PressureLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PressureLevel::Moderate => "moderate",
            PressureLevel::High => "high",
            PressureLevel::Critical => "critical",
        })
    }
}

/// What a swarm does while a response is engaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PressureAction {
    /// Empty the LLM gateway's in-memory response cache (its disk tier
    /// keeps answering), once per engagement.
    ShrinkCaches,
    /// Scale the best-effort pools the scaler manages in to their minimum
    /// first (draining what they admitted), and hold them there.
    ShedBestEffort,
    /// Refuse new low-priority LLM requests at the gateway (typed
    /// `GatewayError::Shed`); queued and running ones go on.
    RejectLowPriority,
}

impl fmt::Display for PressureAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PressureAction::ShrinkCaches => "shrink_caches",
            PressureAction::ShedBestEffort => "shed_best_effort",
            PressureAction::RejectLowPriority => "reject_low_priority",
        })
    }
}

/// One automated response (`[[pressure.responses]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PressureResponse {
    /// The level that engages it.
    pub at: PressureLevel,
    /// What it watches: a resource kind (`"cpu"`, `"memory"`, matched
    /// against the last `/` segment of resource names), an exact resource
    /// name (`"system/memory"`), or, when absent, the overall level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// What it does.
    pub action: PressureAction,
}

/// The pressure detector (`[pressure]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PressureConfig {
    /// Whether `Swarm::start` starts the detector (fed by the monitor's
    /// system CPU and memory and by the scaler's groups). Default: `true`.
    pub enabled: bool,
    /// Moderate at or above this utilization. Default: 80.
    pub moderate_percent: u32,
    /// High at or above this. Default: 90.
    pub high_percent: u32,
    /// Critical at or above this. Default: 95.
    pub critical_percent: u32,
    /// A level is left downwards only this many points below its
    /// threshold. Default: 5.
    pub hysteresis_percent: u32,
    /// The window trends and anomalies are judged over. Default: `"10m"`.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// How far ahead the forecast looks. Default: `"5m"`.
    #[serde(with = "humantime_serde")]
    pub horizon: Duration,
    /// The automated responses. Default: under high memory pressure,
    /// shrink caches and shed best-effort pools first.
    pub responses: Vec<PressureResponse>,
}

impl Default for PressureConfig {
    fn default() -> Self {
        let memory = Some("memory".to_string());
        Self {
            enabled: true,
            moderate_percent: 80,
            high_percent: 90,
            critical_percent: 95,
            hysteresis_percent: 5,
            window: Duration::from_secs(600),
            horizon: Duration::from_secs(300),
            responses: vec![
                PressureResponse {
                    at: PressureLevel::High,
                    resource: memory.clone(),
                    action: PressureAction::ShrinkCaches,
                },
                PressureResponse {
                    at: PressureLevel::High,
                    resource: memory,
                    action: PressureAction::ShedBestEffort,
                },
            ],
        }
    }
}

impl PressureConfig {
    /// Checks the section; errors name `pressure.<field>`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        in_range("pressure.moderate_percent", self.moderate_percent.into(), 1, 100)?;
        in_range("pressure.high_percent", self.high_percent.into(), 1, 100)?;
        in_range("pressure.critical_percent", self.critical_percent.into(), 1, 100)?;
        if self.moderate_percent > self.high_percent {
            return Err(ConfigError::conflict(
                ("pressure.moderate_percent", self.moderate_percent),
                ("pressure.high_percent", self.high_percent),
                "the moderate level must not be above the high one",
            ));
        }
        if self.high_percent > self.critical_percent {
            return Err(ConfigError::conflict(
                ("pressure.high_percent", self.high_percent),
                ("pressure.critical_percent", self.critical_percent),
                "the high level must not be above the critical one",
            ));
        }
        if self.hysteresis_percent >= self.moderate_percent {
            return Err(ConfigError::conflict(
                ("pressure.hysteresis_percent", self.hysteresis_percent),
                ("pressure.moderate_percent", self.moderate_percent),
                "the hysteresis must be below the moderate level, or no level could fall back",
            ));
        }
        duration_in("pressure.window", self.window, Duration::from_secs(1))?;
        duration_in("pressure.horizon", self.horizon, Duration::ZERO)?;
        let day = Duration::from_secs(86_400);
        for (field, d) in [("pressure.window", self.window), ("pressure.horizon", self.horizon)] {
            if d > day {
                let written = format!("\"{}\"", humantime::format_duration(d));
                return Err(ConfigError::invalid(field, written, "must be at most 1 day"));
            }
        }
        if self.responses.len() > MAX_PRESSURE_RESPONSES {
            return Err(ConfigError::invalid(
                "pressure.responses",
                self.responses.len(),
                format!("at most {MAX_PRESSURE_RESPONSES} responses"),
            ));
        }
        for (i, r) in self.responses.iter().enumerate() {
            if let Some(resource) = &r.resource
                && (resource.is_empty() || resource.len() > 256 || resource.chars().any(char::is_control))
            {
                return Err(ConfigError::invalid(
                    format!("pressure.responses[{i}].resource"),
                    format!("{resource:?}"),
                    "a resource kind or name of 1 to 256 printable characters",
                ));
            }
        }
        Ok(())
    }
}
