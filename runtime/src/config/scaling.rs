//! The `[scaling]` section: the scaler's tick and the policy every scaling
//! group starts from (the seeds' agent-scaling plan).
//!
//! Each trigger fires when its metric stays at or above its threshold for
//! its `duration`; how many workers to add then follows the proportional
//! rule `desired = ceil(workers x metric / threshold)`, ignored within
//! `tolerance_percent` of the threshold, one `increment` per decision,
//! within `min_workers..=max_workers`, at most once per `cooldown`; a
//! scale-in waits for `scale_in_stabilization` of lower recommendations.
//!
//! ```
//! use std::time::Duration;
//! use nexus_swarm_runtime::config::NexusConfig;
//!
//! let cfg = NexusConfig::from_toml_str(
//!     r#"
//! [scaling]
//! max_workers = 20
//! cooldown = "5m"
//!
//! [scaling.queue]
//! length = 500
//! "#,
//! )
//! .unwrap();
//! assert_eq!(cfg.scaling.max_workers, 20);
//! assert_eq!(cfg.scaling.min_workers, 2); // the seed default
//! assert_eq!(cfg.scaling.queue.wait_time, Duration::from_secs(30));
//!
//! let err = NexusConfig::from_toml_str("[scaling]\nmin_workers = 12\n").unwrap_err();
//! assert_eq!(err.field(), "scaling.min_workers");
//! assert!(err.to_string().contains("scaling.max_workers"));
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, at_least, bounded_duration, in_range, nonzero_duration, toml_integer};

/// Most workers a scaling group may have (the runtime's largest pool).
pub const MAX_SCALING_WORKERS: u32 = 1 << 20;

/// The CPU trigger. Default: 75 % for 5 minutes (seeds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CpuTriggerConfig {
    /// CPU use in percent of the group's CPU limit (or, without a limit,
    /// of its requests). Default: 75.
    pub threshold_percent: u32,
    /// Sustain duration. Default: `"5m"`.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
}

impl Default for CpuTriggerConfig {
    fn default() -> Self {
        Self {
            threshold_percent: 75,
            duration: Duration::from_secs(300),
        }
    }
}

/// The memory trigger. Default: 80 % for 5 minutes (seeds). Only groups
/// that report a memory utilization use it: pools spawned through a
/// `Swarm` report none, so for them it never fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryTriggerConfig {
    /// Memory use in percent of the group's memory limit. Default: 80.
    pub threshold_percent: u32,
    /// Sustain duration. Default: `"5m"`.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
}

impl Default for MemoryTriggerConfig {
    fn default() -> Self {
        Self {
            threshold_percent: 80,
            duration: Duration::from_secs(300),
        }
    }
}

/// The queue triggers: the group's queued messages (every worker's lanes
/// together) and the estimated wait of a message queued now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueTriggerConfig {
    /// Queued messages at or above which the queue-length trigger counts.
    /// Default: 1000 (seeds).
    pub length: u64,
    /// Estimated queue wait at or above which the wait trigger counts.
    /// Default: `"30s"` (seeds).
    #[serde(with = "humantime_serde")]
    pub wait_time: Duration,
    /// Sustain duration of both queue triggers (the seeds give none; a
    /// queue grows faster than a utilization, so it is shorter than
    /// theirs). Default: `"1m"`.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
}

impl Default for QueueTriggerConfig {
    fn default() -> Self {
        Self {
            length: 1000,
            wait_time: Duration::from_secs(30),
            duration: Duration::from_secs(60),
        }
    }
}

/// Predictive scaling (`[scaling.predictive]`): each metric's recent
/// samples are fitted with a least-squares line, and a metric whose line
/// reaches its threshold within the horizon counts as if it were there
/// now, so the group scales out before the load arrives (never in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PredictiveConfig {
    /// Whether groups scale on the forecast too. Default: `false`.
    pub enabled: bool,
    /// How far ahead the forecast looks. Default: `"5m"` (the seeds'
    /// prediction horizon).
    #[serde(with = "humantime_serde")]
    pub horizon: Duration,
    /// The samples fitted: those of the last `window`. Default: `"10m"`.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

impl Default for PredictiveConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            horizon: Duration::from_secs(300),
            window: Duration::from_secs(600),
        }
    }
}

/// The scaler (`[scaling]`): whether it starts, how often it decides, and
/// the policy of a scaling group registered without one of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScalingConfig {
    /// Whether `Swarm::start` starts the scaler (without it, pools cannot
    /// be registered for auto-scaling). Default: `true`.
    pub enabled: bool,
    /// How often every group is sampled and decided on. Default: `"10s"`
    /// (the seeds' system-metrics interval).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Fewest workers. Default: 2 (seeds).
    pub min_workers: u32,
    /// Most workers. Default: 10 (seeds).
    pub max_workers: u32,
    /// Most workers added or removed by one decision. Default: 1 (seeds).
    pub increment: u32,
    /// No decision changes a group's size within this long of its last
    /// change. Default: `"10m"` (seeds).
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    /// A metric within this many percent of its threshold asks for no
    /// change. Default: 10 (Kubernetes' HPA tolerance).
    pub tolerance_percent: u32,
    /// A scale-in goes only as low as the highest recommendation over this
    /// window, so a load that dips does not remove workers. Default:
    /// `"5m"` (Kubernetes' HPA default).
    #[serde(with = "humantime_serde")]
    pub scale_in_stabilization: Duration,
    /// The CPU trigger.
    pub cpu: CpuTriggerConfig,
    /// The memory trigger.
    pub memory: MemoryTriggerConfig,
    /// The queue-length and queue-wait triggers.
    pub queue: QueueTriggerConfig,
    /// Scaling out on the forecast.
    pub predictive: PredictiveConfig,
    /// A performance profile written by `nexus profile --out FILE`: every
    /// scaling group's maximum is capped at its best size (the point of
    /// diminishing returns it measured), whatever `max_workers` or the
    /// group's own spec says. Read when the swarm starts; an unreadable
    /// or damaged file stops the start with a typed error. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<PathBuf>,
}

impl Default for ScalingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(10),
            min_workers: 2,
            max_workers: 10,
            increment: 1,
            cooldown: Duration::from_secs(600),
            tolerance_percent: 10,
            scale_in_stabilization: Duration::from_secs(300),
            cpu: CpuTriggerConfig::default(),
            memory: MemoryTriggerConfig::default(),
            queue: QueueTriggerConfig::default(),
            predictive: PredictiveConfig::default(),
            profile: None,
        }
    }
}

impl ScalingConfig {
    /// Checks the section; errors name `scaling.<field>`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        nonzero_duration("scaling.interval", self.interval)?;
        let max = u64::from(MAX_SCALING_WORKERS);
        in_range("scaling.min_workers", self.min_workers.into(), 1, max)?;
        in_range("scaling.max_workers", self.max_workers.into(), 1, max)?;
        if self.min_workers > self.max_workers {
            return Err(ConfigError::conflict(
                ("scaling.min_workers", self.min_workers),
                ("scaling.max_workers", self.max_workers),
                "the fewest workers must not be more than the most",
            ));
        }
        in_range("scaling.increment", self.increment.into(), 1, max)?;
        bounded_duration("scaling.cooldown", self.cooldown)?;
        in_range("scaling.tolerance_percent", self.tolerance_percent.into(), 0, 99)?;
        bounded_duration("scaling.scale_in_stabilization", self.scale_in_stabilization)?;
        in_range(
            "scaling.cpu.threshold_percent",
            self.cpu.threshold_percent.into(),
            1,
            100,
        )?;
        bounded_duration("scaling.cpu.duration", self.cpu.duration)?;
        in_range(
            "scaling.memory.threshold_percent",
            self.memory.threshold_percent.into(),
            1,
            100,
        )?;
        bounded_duration("scaling.memory.duration", self.memory.duration)?;
        at_least("scaling.queue.length", self.queue.length, 1)?;
        toml_integer("scaling.queue.length", self.queue.length)?;
        nonzero_duration("scaling.queue.wait_time", self.queue.wait_time)?;
        bounded_duration("scaling.queue.duration", self.queue.duration)?;
        nonzero_duration("scaling.predictive.horizon", self.predictive.horizon)?;
        bounded_duration("scaling.predictive.horizon", self.predictive.horizon)?;
        nonzero_duration("scaling.predictive.window", self.predictive.window)?;
        bounded_duration("scaling.predictive.window", self.predictive.window)?;
        if let Some(path) = &self.profile
            && path.as_os_str().is_empty()
        {
            return Err(ConfigError::invalid(
                "scaling.profile",
                "\"\"",
                "must name a performance profile file",
            ));
        }
        Ok(())
    }
}
