//! Configuration: one TOML file, parsed once at the edge.
//!
//! Every field has a default taken from the seed documents, written beside
//! it as "Default: ...", and every table fills the keys it omits from those
//! defaults (a file holding only `[router.admission.policy]` with
//! `low = "wait"` is valid). Only the identity of a list entry has no
//! default: a pool's `name` and `capacity`, a quota's `id`, `kind` and
//! `limit`, an LLM provider's `id` and `kind`, a model's `name`, window,
//! prices and deployments (see [`ProviderConfig`] and [`ModelConfig`]).
//!
//! Reading refuses, each error naming the field by its dotted path (e.g.
//! `mailbox.high.capacity`) or, for TOML syntax, the line and column:
//! - a file larger than [`MAX_CONFIG_BYTES`] (it is never read whole), text
//!   that is not UTF-8, TOML syntax errors;
//! - unknown keys, values of the wrong type, integers outside TOML's range
//!   (above `i64::MAX`: TOML integers are 64-bit signed);
//! - in [`NexusConfig::validate`], values of the right type that the running
//!   system would refuse or that make no sense: a zero capacity, a duration
//!   longer than [`MAX_DURATION`], a resource kind that is neither a known
//!   kind nor `custom.`-prefixed (so a misspelt `gpus` is not silently a
//!   new kind), names holding control characters, fields that contradict
//!   each other (the message names both, e.g. a health-check timeout longer
//!   than its interval), and quota trees the quota keeper would refuse (the
//!   same check, [`check_quota_tree`], runs in both places);
//! - sections and keys of features this version does not have
//!   ([`UNSUPPORTED`]: `node.name`), each with a
//!   [`ConfigError::Unsupported`] saying what is missing, so nothing looks
//!   configured that no component reads.
//!
//! Durations are written as text (`"30s"`, `"10m"`, `"250ms"`, `"30days"`).
//!
//! ```
//! use nexus_swarm_runtime::config::NexusConfig;
//!
//! let cfg = NexusConfig::from_toml_str("[mailbox.high]\ncapacity = 64\n").unwrap();
//! assert_eq!(cfg.mailbox.high.capacity, 64);
//! assert_eq!(cfg.mailbox.normal.timeout.as_secs(), 30); // the seed default
//!
//! let err = NexusConfig::from_toml_str("[router.admission]\nburst = 0\n").unwrap_err();
//! assert!(err.to_string().contains("router.admission.burst"));
//!
//! let err = NexusConfig::from_toml_str("[router.health]\ninterval = \"5s\"\ntimeout = \"10s\"\n").unwrap_err();
//! assert!(err.to_string().contains("router.health.timeout"));
//! assert!(err.to_string().contains("router.health.interval"));
//!
//! let err = NexusConfig::from_toml_str("[node]\nname = \"node-1\"\n").unwrap_err();
//! assert_eq!(err.field(), "node.name");
//! assert!(err.to_string().contains("nexus node --name"));
//! ```

use std::collections::BTreeMap;
use std::fmt::Display;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::priority::Priority;

mod cluster;
mod llm;
mod monitor;
mod pressure;
mod quota_tree;
mod routers;
mod run;
mod scaling;
mod scheduling;
pub use cluster::{
    CLUSTER_LIMIT_CHARGES, ClusterConfig, ClusterLimitConfig, ClusterTlsConfig, MAX_CLUSTER_LIMIT_NAME,
    MAX_CLUSTER_LIMITS, MAX_CLUSTER_PAYLOAD, MAX_CLUSTER_VIRTUAL_NODES,
};
pub use llm::{
    Capability, DeploymentConfig, MAX_CONTEXT_WINDOW, MAX_MICRO_USD_PER_MILLION_TOKENS, MAX_SIMULATED_LATENCY,
    ModelConfig, ProviderConfig, ProviderKind, ProviderLimits,
};
pub use monitor::{MAX_MONITOR_HISTORY, MonitorConfig, ThresholdsConfig};
pub use pressure::{MAX_PRESSURE_RESPONSES, PressureAction, PressureConfig, PressureLevel, PressureResponse};
pub use quota_tree::{DefinedQuota, MAX_QUOTA_DEPTH, QuotaEntry, QuotaTreeError, check_quota_tree};
pub use routers::DeclaredRouter;
pub use run::{MAX_RUN_LOAD_PER_SECOND, MAX_RUN_POOL_SIZE, RunAgentKind, RunConfig, RunPool};
pub use scaling::{
    CpuTriggerConfig, MAX_SCALING_WORKERS, MemoryTriggerConfig, PredictiveConfig, QueueTriggerConfig, ScalingConfig,
};
pub use scheduling::{
    AllocationStrategy, MAX_QUOTA_AMOUNT, MAX_SWEEP_PERIODS, MIN_QUOTA_PERIOD, PoolConfig, QuotaConfig, QuotasConfig,
    SchedulerConfig,
};

/// Largest lane capacity accepted. The lane counter keeps flag bits above it.
pub const MAX_LANE_CAPACITY: usize = 1 << 24;

/// Largest configuration accepted, in bytes (1 MiB). A reader stops one
/// byte past it, so `/dev/zero` or a stray pipe cannot exhaust memory.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

/// Longest duration any field accepts: 100 years (of 365.25 days, as
/// `humantime` counts them, so `"100years"` is accepted).
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 31_557_600);

/// The prefix of a user-defined resource kind's name in configuration
/// (`custom.vector_searches`). Any other name must be a known kind (`cpu`,
/// `memory`, `gpu`, `llm_requests`, `input_tokens`, `output_tokens`,
/// `cost`).
pub const CUSTOM_KIND_PREFIX: &str = "custom.";

/// Sections and keys this version does not read, with why:
/// a configuration holding one is refused with
/// [`ConfigError::Unsupported`] rather than read and then ignored (no
/// field may look configured while nothing reads it). Each comes back with
/// the component that reads it.
pub const UNSUPPORTED: [(&str, &str); 1] = [(
    "node.name",
    "a node's name in a cluster is given by `nexus node --name`, not by the configuration (remove `name` from [node])",
)];

/// The names of the known resource kinds, as configuration spells them.
const KNOWN_KINDS: [&str; 7] = [
    "cpu",
    "memory",
    "gpu",
    "llm_requests",
    "input_tokens",
    "output_tokens",
    "cost",
];

/// A configuration could not be read, parsed or validated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The text is longer than [`MAX_CONFIG_BYTES`].
    #[error("the configuration is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The text is not UTF-8.
    #[error("the configuration is not UTF-8 text (invalid byte at offset {offset})")]
    NotUtf8 {
        /// Byte offset of the first invalid byte.
        offset: usize,
    },
    /// The text is not valid TOML.
    #[error("invalid TOML at line {line}, column {column}: {message}")]
    Syntax {
        /// Line of the error, from 1.
        line: usize,
        /// Column of the error (in characters), from 1.
        column: usize,
        /// What was wrong.
        message: String,
    },
    /// A key is unknown or missing, or a value has the wrong type, is out
    /// of TOML's integer range, or does not parse (e.g. a timeout that is
    /// not a duration).
    #[error("invalid config at `{field}`: {message}")]
    Parse {
        /// Dotted path of the offending field.
        field: String,
        /// What was wrong, with its line and column when known.
        message: String,
    },
    /// A value parsed but is out of range.
    #[error("invalid config at `{field}` = {value}: {reason}")]
    Invalid {
        /// Dotted path of the offending field.
        field: String,
        /// The offending value, as written.
        value: String,
        /// Why it is rejected.
        reason: String,
    },
    /// Two fields contradict each other.
    #[error("invalid config: `{field}` = {value} contradicts `{other}` = {other_value}: {reason}")]
    Conflict {
        /// Dotted path of the field reported as wrong.
        field: String,
        /// Its value, as written.
        value: String,
        /// Dotted path of the field it contradicts.
        other: String,
        /// That field's value, as written.
        other_value: String,
        /// The rule they break together.
        reason: String,
    },
    /// A section or key of a feature this version does not have (see
    /// [`UNSUPPORTED`]): refused rather than accepted and ignored.
    #[error("`{field}` is not supported yet: {reason}")]
    Unsupported {
        /// Dotted path of the section or key, e.g. `scaling`.
        field: String,
        /// Why, naming the missing feature.
        reason: String,
    },
    /// The quota tree breaks a rule the quota keeper enforces.
    #[error("invalid config at `{field}`: {source}")]
    QuotaTree {
        /// Dotted path of the offending field, e.g. `quotas.quotas[2].parent`.
        field: String,
        /// The rule broken (boxed: it is the largest of the errors).
        source: Box<QuotaTreeError>,
    },
}

impl ConfigError {
    /// The dotted path of the offending field (empty when the error is not
    /// about one field: unreadable, too large, not UTF-8, TOML syntax).
    pub fn field(&self) -> &str {
        match self {
            ConfigError::Io { .. }
            | ConfigError::TooLarge { .. }
            | ConfigError::NotUtf8 { .. }
            | ConfigError::Syntax { .. } => "",
            ConfigError::Parse { field, .. }
            | ConfigError::Invalid { field, .. }
            | ConfigError::Conflict { field, .. }
            | ConfigError::Unsupported { field, .. }
            | ConfigError::QuotaTree { field, .. } => field,
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, value: impl Display, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            field: field.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    fn conflict(
        (field, value): (impl Into<String>, impl Display),
        (other, other_value): (impl Into<String>, impl Display),
        reason: impl Into<String>,
    ) -> Self {
        ConfigError::Conflict {
            field: field.into(),
            value: value.to_string(),
            other: other.into(),
            other_value: other_value.to_string(),
            reason: reason.into(),
        }
    }
}

/// The whole configuration of a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct NexusConfig {
    /// This node's data directory.
    pub node: NodeConfig,
    /// Every agent's priority lanes.
    pub mailbox: MailboxConfig,
    /// Restart policy of supervisors.
    pub supervision: SupervisionConfig,
    /// Message routing, health checks and admission.
    pub router: RouterConfig,
    /// The LLM gateway.
    pub llm: LlmConfig,
    /// The LLM response cache.
    pub cache: CacheConfig,
    /// The cost ledger.
    pub ledger: LedgerConfig,
    /// The resource scheduler: pools, strategy, aging.
    pub scheduler: SchedulerConfig,
    /// The quota keeper: the quota tree defined at start.
    pub quotas: QuotasConfig,
    /// The scaler: its tick and the default policy of scaling groups.
    pub scaling: ScalingConfig,
    /// The monitor: its interval, alert thresholds and history.
    pub monitor: MonitorConfig,
    /// The pressure detector: its levels, window, horizon and automated
    /// responses.
    pub pressure: PressureConfig,
    /// Routers a `Swarm` starts over pools it spawns (`[[routers]]`).
    /// Default: none (and then not written by `nexus config defaults`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routers: Vec<DeclaredRouter>,
    /// What `nexus run` spawns and how long it waits at shutdown (`[run]`).
    pub run: RunConfig,
    /// What `nexus node` uses to talk to its peers (`[cluster]`).
    pub cluster: ClusterConfig,
}

impl NexusConfig {
    /// Parses TOML text and validates it.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        if text.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                limit: MAX_CONFIG_BYTES,
            });
        }
        let table = DeTable::parse(text).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |s| line_column(text, s.start));
            ConfigError::Syntax {
                line,
                column,
                message: e.message().trim().to_string(),
            }
        })?;
        check_unsupported(table.get_ref())?;
        check_integers(text, &table)?;
        let de = toml::Deserializer::from(table);
        let cfg: NexusConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let mut field = e.path().to_string();
            let inner = e.into_inner();
            let mut message = inner.message().trim().to_string();
            // "missing field `limit`" at `quotas.quotas[0]`: name the field itself.
            if let Some(missing) = message
                .strip_prefix("missing field `")
                .and_then(|m| m.strip_suffix('`'))
            {
                field = if field == "." {
                    missing.to_string()
                } else {
                    format!("{field}.{missing}")
                };
            }
            if let Some(span) = inner.span() {
                let (line, column) = line_column(text, span.start);
                message = format!("{message} (line {line}, column {column})");
            }
            ConfigError::Parse { field, message }
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads at most [`MAX_CONFIG_BYTES`] from `reader` (standard input, a
    /// file), then parses and validates it. `origin` names the source in an
    /// I/O error.
    pub fn from_reader(reader: impl Read, origin: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let mut bytes = Vec::new();
        reader
            .take(MAX_CONFIG_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| ConfigError::Io {
                path: origin.as_ref().to_path_buf(),
                source,
            })?;
        if bytes.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                limit: MAX_CONFIG_BYTES,
            });
        }
        let text = std::str::from_utf8(&bytes).map_err(|e| ConfigError::NotUtf8 {
            offset: e.valid_up_to(),
        })?;
        Self::from_toml_str(text)
    }

    /// Reads (at most [`MAX_CONFIG_BYTES`]), parses and validates a TOML
    /// file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_reader(file, path)
    }

    /// The configuration as TOML text: every field is written, except an
    /// empty `quotas.quotas`, so that `[[quotas.quotas]]` blocks can be
    /// appended to it. A validated configuration is always written as text
    /// that parses back to an equal configuration.
    pub fn to_toml_string(&self) -> String {
        toml::to_string_pretty(self).expect("config serializes: every field is a TOML type")
    }

    /// Checks every value for range and consistency. The first problem found
    /// is returned, naming its field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.node.validate()?;
        self.mailbox.validate()?;
        self.supervision.validate()?;
        self.router.validate()?;
        self.llm.validate()?;
        self.cache.validate()?;
        self.ledger.validate()?;
        self.scheduler.validate()?;
        self.quotas.validate()?;
        self.scaling.validate()?;
        self.monitor.validate()?;
        self.pressure.validate()?;
        routers::validate(&self.routers, &self.router)?;
        self.run.validate()?;
        self.cluster.validate()?;
        Ok(())
    }
}

/// Line and column (in characters), both from 1, of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Refuses the first section or key of [`UNSUPPORTED`] present, however it
/// is written (a `[scaling]` header, `scaling.enabled = true`, an inline
/// table).
fn check_unsupported(table: &DeTable<'_>) -> Result<(), ConfigError> {
    for (path, reason) in UNSUPPORTED {
        let mut at = Some(table);
        let mut keys = path.split('.').peekable();
        while let (Some(t), Some(key)) = (at, keys.next()) {
            let Some((_, value)) = t.iter().find(|(k, _)| k.get_ref() == key) else {
                break;
            };
            if keys.peek().is_none() {
                return Err(ConfigError::Unsupported {
                    field: path.to_string(),
                    reason: reason.to_string(),
                });
            }
            at = match value.get_ref() {
                DeValue::Table(inner) => Some(inner),
                _ => None,
            };
        }
    }
    Ok(())
}

/// Refuses integers outside TOML's range (64-bit signed): the parser
/// would hand them on as `u64`, and they could not be written back.
fn check_integers(text: &str, table: &Spanned<DeTable<'_>>) -> Result<(), ConfigError> {
    // Nesting is bounded by the TOML parser's recursion limit.
    fn walk(text: &str, path: &mut String, value: &Spanned<DeValue<'_>>) -> Result<(), ConfigError> {
        match value.get_ref() {
            DeValue::Integer(i) if i64::from_str_radix(i.as_str(), i.radix()).is_err() => {
                let (line, column) = line_column(text, value.span().start);
                Err(ConfigError::Parse {
                    field: path.clone(),
                    message: format!(
                        "integer {i} is outside TOML's range {} to {} (line {line}, column {column})",
                        i64::MIN,
                        i64::MAX
                    ),
                })
            }
            DeValue::Table(t) => walk_table(text, path, t),
            DeValue::Array(items) => {
                for (n, item) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{n}]"));
                    walk(text, path, item)?;
                    path.truncate(len);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
    fn walk_table(text: &str, path: &mut String, table: &DeTable<'_>) -> Result<(), ConfigError> {
        for (key, value) in table {
            let len = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(key.get_ref());
            walk(text, path, value)?;
            path.truncate(len);
        }
        Ok(())
    }
    walk_table(text, &mut String::new(), table.get_ref())
}

/// A duration between `min` and [`MAX_DURATION`].
fn duration_in(field: &str, d: Duration, min: Duration) -> Result<(), ConfigError> {
    let written = || format!("\"{}\"", humantime::format_duration(d));
    if d < min {
        let reason = if min == Duration::from_nanos(1) {
            "must be longer than zero".to_string()
        } else {
            format!("must be at least {}", humantime::format_duration(min))
        };
        return Err(ConfigError::invalid(field, written(), reason));
    }
    if d > MAX_DURATION {
        return Err(ConfigError::invalid(field, written(), "must be at most 100 years"));
    }
    Ok(())
}

/// A duration longer than zero and at most [`MAX_DURATION`].
fn nonzero_duration(field: &str, d: Duration) -> Result<(), ConfigError> {
    duration_in(field, d, Duration::from_nanos(1))
}

/// A duration (zero allowed) of at most [`MAX_DURATION`].
fn bounded_duration(field: &str, d: Duration) -> Result<(), ConfigError> {
    duration_in(field, d, Duration::ZERO)
}

/// `field` (`value_a`) must not be longer than `other` (`value_b`).
fn not_longer((field, d): (&str, Duration), (other, limit): (&str, Duration), reason: &str) -> Result<(), ConfigError> {
    if d > limit {
        let fmt = |d: Duration| format!("\"{}\"", humantime::format_duration(d));
        return Err(ConfigError::conflict((field, fmt(d)), (other, fmt(limit)), reason));
    }
    Ok(())
}

/// `field` must not be above `other`.
fn not_above((field, value): (&str, u64), (other, limit): (&str, u64), reason: &str) -> Result<(), ConfigError> {
    if value > limit {
        return Err(ConfigError::conflict((field, value), (other, limit), reason));
    }
    Ok(())
}

/// A name: not empty or only whitespace, no control characters (NUL, line
/// breaks, escapes), which would corrupt logs, reports and file names.
fn check_name(field: &str, name: &str) -> Result<(), ConfigError> {
    if name.trim().is_empty() {
        return Err(ConfigError::invalid(field, format!("{name:?}"), "must not be empty"));
    }
    if name.chars().any(char::is_control) {
        return Err(ConfigError::invalid(
            field,
            format!("{name:?}"),
            "must not hold control characters",
        ));
    }
    Ok(())
}

/// A resource kind's name: a known kind, or [`CUSTOM_KIND_PREFIX`] and a
/// name of letters, digits, `_`, `-` and `.`.
fn check_kind_name(field: &str, kind: &str) -> Result<(), ConfigError> {
    if KNOWN_KINDS.contains(&kind) {
        return Ok(());
    }
    let custom = kind
        .strip_prefix(CUSTOM_KIND_PREFIX)
        .is_some_and(|name| !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)));
    if custom {
        return Ok(());
    }
    Err(ConfigError::invalid(
        field,
        format!("{kind:?}"),
        format!(
            "is not a resource kind: use one of {} or name a custom kind `{CUSTOM_KIND_PREFIX}<name>`",
            KNOWN_KINDS.join(", ")
        ),
    ))
}

fn at_least(field: &str, value: u64, min: u64) -> Result<(), ConfigError> {
    if value < min {
        return Err(ConfigError::invalid(field, value, format!("must be at least {min}")));
    }
    Ok(())
}

pub(crate) fn in_range(field: &str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::invalid(
            field,
            value,
            format!("must be between {min} and {max}"),
        ));
    }
    Ok(())
}

/// At most `i64::MAX`, the largest integer TOML can write.
fn toml_integer(field: &str, value: u64) -> Result<(), ConfigError> {
    in_range(field, value, 0, i64::MAX as u64)
}

/// This node's data directory. (A node's cluster name is `nexus node
/// --name`: `node.name` is refused, see [`UNSUPPORTED`].)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Where durable state lives: the cost ledger (`ledger.redb`), quota
    /// usage (`quotas.redb`) and the LLM response cache's disk tier
    /// (`llm-cache/`). Default: `"./nexus-data"`.
    pub data_dir: PathBuf,
    /// What agents' declared requests are admitted against (by a `Swarm`,
    /// which spawns agents through the scheduler; `Node::spawn_agent` admits
    /// nothing), per resource
    /// kind (`cpu` in millicores, `memory` in bytes, any other kind in its
    /// own unit), e.g. `capacity = { cpu = 4000, memory = 8589934592 }`.
    /// A kind left out is what the machine has for `cpu` (its available
    /// cores) and `memory` (its total memory), and nothing for any other
    /// kind. Default: empty (the machine's cpu and memory).
    pub capacity: BTreeMap<String, u64>,
    /// How long spawning an agent through a `Swarm` whose requests do not
    /// fit waits for room
    /// (its status readable meanwhile) before it is refused; zero refuses
    /// at once. Default: `"0s"`.
    #[serde(with = "humantime_serde")]
    pub admission_wait: Duration,
    /// How long an agent a `Swarm` preempts has to hand back or finish
    /// what it admitted before it is stopped. Default: `"5s"`.
    #[serde(with = "humantime_serde")]
    pub preemption_grace: Duration,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./nexus-data"),
            capacity: BTreeMap::new(),
            admission_wait: Duration::ZERO,
            preemption_grace: Duration::from_secs(5),
        }
    }
}

impl NodeConfig {
    /// The capacity agents are admitted against: [`Self::capacity`], with
    /// `cpu` and `memory` taken from the machine where left out.
    pub fn resolved_capacity(&self) -> crate::resources::ResourceVector {
        let mut v = crate::resources::machine_capacity();
        for (kind, &amount) in &self.capacity {
            // Unknown names are custom kinds: parsing a kind cannot fail.
            let Ok(kind) = kind.parse::<crate::resources::ResourceKind>();
            v.set(kind, amount);
        }
        v
    }

    fn validate(&self) -> Result<(), ConfigError> {
        // A path read from TOML is UTF-8; one built in code may not be.
        check_name("node.data_dir", &self.data_dir.to_string_lossy())?;
        for (kind, &amount) in &self.capacity {
            let field = format!("node.capacity.{kind}");
            check_kind_name(&field, kind)?;
            toml_integer(&field, amount)?;
        }
        bounded_duration("node.admission_wait", self.admission_wait)?;
        bounded_duration("node.preemption_grace", self.preemption_grace)
    }
}

macro_rules! lane_config {
    ($(#[$doc:meta])* $name:ident, $timeout_secs:expr, $timeout_doc:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct $name {
            /// Messages the lane holds at most; a sender waits or fails
            /// beyond it. Default: 1000 (the seeds' queue length that
            /// triggers scale-out).
            pub capacity: usize,
            #[doc = concat!("How long `send` waits for room before giving up with `Timeout`. Default: ", $timeout_doc, " (seed).")]
            #[serde(with = "humantime_serde")]
            pub timeout: Duration,
        }

        impl Default for $name {
            fn default() -> Self {
                Self {
                    capacity: 1000,
                    timeout: Duration::from_secs($timeout_secs),
                }
            }
        }
    };
}

lane_config!(
    /// The high-priority lane of an agent's mailbox.
    HighLaneConfig, 10, "10 s"
);
lane_config!(
    /// The normal-priority lane of an agent's mailbox.
    NormalLaneConfig, 30, "30 s"
);
lane_config!(
    /// The low-priority lane of an agent's mailbox.
    LowLaneConfig, 60, "60 s"
);

/// A lane's settings, whichever lane it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneSettings {
    /// Capacity in messages.
    pub capacity: usize,
    /// Send timeout.
    pub timeout: Duration,
}

/// Every agent's priority lanes and how they are drained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailboxConfig {
    /// The high lane. Default: capacity 1000, timeout 10 s (seed).
    pub high: HighLaneConfig,
    /// The normal lane. Default: capacity 1000, timeout 30 s (seed).
    pub normal: NormalLaneConfig,
    /// The low lane. Default: capacity 1000, timeout 60 s (seed).
    pub low: LowLaneConfig,
    /// Messages an agent handles per wake-up before it yields its mailbox to
    /// control messages. Default: 64.
    pub drain_batch: usize,
    /// Aging: after this many consecutive messages from higher lanes while a
    /// lower lane waits, one message of the waiting lane is taken. Default: 8.
    pub aging_after: u32,
}

impl Default for MailboxConfig {
    fn default() -> Self {
        Self {
            high: HighLaneConfig::default(),
            normal: NormalLaneConfig::default(),
            low: LowLaneConfig::default(),
            drain_batch: 64,
            aging_after: 8,
        }
    }
}

impl MailboxConfig {
    /// The configuration of one lane.
    pub fn lane(&self, priority: Priority) -> LaneSettings {
        let (capacity, timeout) = match priority {
            Priority::High => (self.high.capacity, self.high.timeout),
            Priority::Normal => (self.normal.capacity, self.normal.timeout),
            Priority::Low => (self.low.capacity, self.low.timeout),
        };
        LaneSettings { capacity, timeout }
    }

    /// Every lane with the same capacity (timeouts unchanged).
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.high.capacity = capacity;
        self.normal.capacity = capacity;
        self.low.capacity = capacity;
        self
    }

    /// Checks ranges; errors name `mailbox.<lane>.<field>`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for p in Priority::ALL {
            let lane = self.lane(p);
            // Every spawn validates its mailbox: the field's name is
            // formatted only for a value that is refused.
            let field = |what: &str| format!("mailbox.{p}.{what}");
            if !(1..=MAX_LANE_CAPACITY).contains(&lane.capacity) {
                in_range(&field("capacity"), lane.capacity as u64, 1, MAX_LANE_CAPACITY as u64)?;
            }
            if lane.timeout.is_zero() || lane.timeout > MAX_DURATION {
                nonzero_duration(&field("timeout"), lane.timeout)?;
            }
        }
        in_range("mailbox.drain_batch", self.drain_batch as u64, 1, 1 << 20)?;
        at_least("mailbox.aging_after", self.aging_after.into(), 1)?;
        Ok(())
    }
}

/// Restart policy (OTP's intensity and period).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SupervisionConfig {
    /// Restarts allowed within `within` before the supervisor escalates to
    /// its parent. Default: 5.
    pub max_restarts: u32,
    /// The window restarts are counted in. Default: 30 s (the seeds'
    /// recovery time).
    #[serde(with = "humantime_serde")]
    pub within: Duration,
}

impl Default for SupervisionConfig {
    fn default() -> Self {
        Self {
            max_restarts: 5,
            within: Duration::from_secs(30),
        }
    }
}

impl SupervisionConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        nonzero_duration("supervision.within", self.within)
    }
}

/// How a router picks a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RoutingStrategyKind {
    /// Each member in turn. Default.
    #[default]
    RoundRobin,
    /// The member with the fewest messages in flight.
    LeastConnections,
    /// Smooth weighted round-robin.
    Weighted,
    /// Consistent hashing of a routing key with virtual nodes.
    ConsistentHash,
}

/// What a router does with a message when its token bucket is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdmissionPolicy {
    /// Wait for a token, up to the lane's timeout.
    Wait,
    /// Refuse at once with an error saying when to retry.
    Reject,
}

/// Router admission policy per priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdmissionPolicies {
    /// Default: wait.
    pub high: AdmissionPolicy,
    /// Default: wait.
    pub normal: AdmissionPolicy,
    /// Default: reject.
    pub low: AdmissionPolicy,
}

impl Default for AdmissionPolicies {
    fn default() -> Self {
        Self {
            high: AdmissionPolicy::Wait,
            normal: AdmissionPolicy::Wait,
            low: AdmissionPolicy::Reject,
        }
    }
}

impl AdmissionPolicies {
    /// The policy of one priority.
    pub fn get(&self, priority: Priority) -> AdmissionPolicy {
        match priority {
            Priority::High => self.high,
            Priority::Normal => self.normal,
            Priority::Low => self.low,
        }
    }
}

/// Token-bucket admission in front of a router.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdmissionConfig {
    /// Whether admission control is applied. Default: true.
    pub enabled: bool,
    /// Tokens added per second. Default: 1000 (seed).
    pub rate_per_sec: u32,
    /// Bucket size: messages admitted at once after idleness. Default: 100 (seed).
    /// At most what the bucket refills in 2^62 ns at 1 permille of the rate
    /// (the slowest a budget can throttle it to): about 4.6 million at 1/s,
    /// any `u32` from 1000/s up.
    pub burst: u32,
    /// What to do per priority when no token is left.
    pub policy: AdmissionPolicies,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            rate_per_sec: 1000,
            burst: 100,
            policy: AdmissionPolicies::default(),
        }
    }
}

/// Health checks of router members.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckConfig {
    /// Time between checks. Default: 30 s (seed).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// A check not answered within this fails; at most `interval`.
    /// Default: 5 s (seed).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Consecutive failures that make a member unhealthy. Default: 3 (seed).
    pub unhealthy_threshold: u32,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            unhealthy_threshold: 3,
        }
    }
}

/// Message routing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterConfig {
    /// The member-picking strategy. Default: `round_robin` (seed).
    pub strategy: RoutingStrategyKind,
    /// Virtual nodes per member on the consistent-hash ring. Default: 160.
    pub virtual_nodes: u32,
    /// Health checks.
    pub health: HealthCheckConfig,
    /// Token-bucket admission.
    pub admission: AdmissionConfig,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            strategy: RoutingStrategyKind::RoundRobin,
            virtual_nodes: 160,
            health: HealthCheckConfig::default(),
            admission: AdmissionConfig::default(),
        }
    }
}

impl RouterConfig {
    /// Checks ranges; errors name `router.<field>`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        in_range("router.virtual_nodes", self.virtual_nodes.into(), 1, 65_536)?;
        nonzero_duration("router.health.interval", self.health.interval)?;
        nonzero_duration("router.health.timeout", self.health.timeout)?;
        not_longer(
            ("router.health.timeout", self.health.timeout),
            ("router.health.interval", self.health.interval),
            "a check must time out before the next one is due",
        )?;
        at_least(
            "router.health.unhealthy_threshold",
            self.health.unhealthy_threshold.into(),
            1,
        )?;
        at_least("router.admission.rate_per_sec", self.admission.rate_per_sec.into(), 1)?;
        at_least("router.admission.burst", self.admission.burst.into(), 1)?;
        crate::admission::Gcra::check(self.admission.rate_per_sec, self.admission.burst)?;
        Ok(())
    }
}

/// Retries of failed LLM calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Retries after the first attempt. Default: 3.
    pub max_retries: u32,
    /// First backoff; doubled per attempt, with full jitter. Default: 500 ms.
    #[serde(with = "humantime_serde")]
    pub base_backoff: Duration,
    /// Longest backoff. Default: 30 s.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_retries: 3,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// Batching of LLM calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Whether requests are batched. Default: false.
    pub enabled: bool,
    /// Requests per batch at most. Default: 100 (seed).
    pub max_size: u32,
    /// Longest a request waits for its batch to fill. Default: 50 ms (seed).
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            max_size: 100,
            max_wait: Duration::from_millis(50),
        }
    }
}

/// The LLM gateway: its providers and models, their limits, the
/// connection pool, retries, batching and routing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmConfig {
    /// Requests per minute per provider. Default: 3500 (seed).
    pub requests_per_minute: u32,
    /// Tokens per minute per provider. Default: 90 000 (seed).
    pub tokens_per_minute: u32,
    /// Per-request timeout. Default: 60 s (seed).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Connections in the HTTP pool at most. Default: 50 (seed).
    pub max_connections: u32,
    /// Connections per host at most. Default: 10 (seed).
    pub max_connections_per_host: u32,
    /// Requests waiting in the gateway for rate-limit capacity at most (its
    /// wait queue); one more is refused at once with `Overloaded`.
    /// Default: 1000 (seed).
    pub max_concurrent: u32,
    /// Gateway requests under way per agent at most. A request whose usage
    /// metadata names an agent (an agent is its tenant, workflow and agent
    /// together) holds one of that agent's slots from after the cache
    /// lookup until it ends, retries and fallbacks included, whether it is
    /// answered, fails or is dropped by its caller. One more request of the
    /// agent waits, first come first served, until one of them ends, and
    /// gives up at its own timeout with `AgentBusy`, holding nothing.
    /// Requests that name no agent are not bounded per agent. At most
    /// `max_concurrent`. Default: 50 (seed).
    pub max_concurrent_per_agent: u32,
    /// Retries with exponential backoff (seed).
    pub retry: RetryConfig,
    /// Request batching.
    pub batch: BatchConfig,
    /// Prompt tokens per minute per provider, at most `tokens_per_minute`;
    /// 0 = no separate limit. Default: 0.
    pub input_tokens_per_minute: u32,
    /// Completion tokens per minute per provider, at most
    /// `tokens_per_minute`; 0 = no separate limit. Default: 0.
    pub output_tokens_per_minute: u32,
    /// GCRA burst of every rate limit, in percent of the limit: how much is
    /// admitted at once after idleness (the sliding-window cap holds
    /// regardless). Default: 10.
    pub burst_percent: u8,
    /// How a deployment is picked within a model group. Default: `weighted_shuffle`.
    pub routing: DeploymentRouting,
    /// Consecutive failures (5xx, timeouts, garbled replies) that put a
    /// deployment in cooldown. Default: 3.
    pub allowed_fails: u32,
    /// How long a deployment in cooldown receives nothing. Default: 30 s.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    /// The providers the gateway may call, as `[[llm.providers]]` blocks
    /// (see [`ProviderConfig`]): each with an `id` and a `kind`,
    /// `"simulated"` or `"openai_compatible"` (with a `base_url` and, for
    /// a key, `api_key_env` naming the environment variable that holds it).
    /// Every provider must serve a model and every model needs a provider.
    /// Default: none (and then not written by `nexus config defaults`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<ProviderConfig>,
    /// The model catalogue, as `[[llm.models]]` blocks (see
    /// [`ModelConfig`]): name, context window, prices in micro-dollars per
    /// million tokens, capabilities, fallbacks and deployments on the
    /// providers. The cost ledger is priced from them too. Default: none
    /// (and then not written by `nexus config defaults`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<ModelConfig>,
}

/// How the LLM gateway picks a deployment within a model group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentRouting {
    /// Random order weighted by each deployment's weight. Default.
    #[default]
    WeightedShuffle,
    /// Fewest requests in flight first.
    LeastBusy,
    /// Lowest recent latency first.
    LowestLatency,
    /// Lowest use of its rate limits in the current window first.
    LowestUsage,
    /// Cheapest for the request first.
    LowestCost,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            requests_per_minute: 3500,
            tokens_per_minute: 90_000,
            timeout: Duration::from_secs(60),
            max_connections: 50,
            max_connections_per_host: 10,
            max_concurrent: 1000,
            max_concurrent_per_agent: 50,
            retry: RetryConfig::default(),
            batch: BatchConfig::default(),
            input_tokens_per_minute: 0,
            output_tokens_per_minute: 0,
            burst_percent: 10,
            routing: DeploymentRouting::WeightedShuffle,
            allowed_fails: 3,
            cooldown: Duration::from_secs(30),
            providers: Vec::new(),
            models: Vec::new(),
        }
    }
}

impl LlmConfig {
    /// Checks ranges, and that providers and models are consistent (see
    /// [`ProviderConfig`] and [`ModelConfig`]); errors name `llm.<field>`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        at_least("llm.requests_per_minute", self.requests_per_minute.into(), 1)?;
        at_least("llm.tokens_per_minute", self.tokens_per_minute.into(), 1)?;
        let total = ("llm.tokens_per_minute", u64::from(self.tokens_per_minute));
        let part = "a part of the tokens cannot have a higher limit than all of them";
        not_above(
            ("llm.input_tokens_per_minute", self.input_tokens_per_minute.into()),
            total,
            part,
        )?;
        not_above(
            ("llm.output_tokens_per_minute", self.output_tokens_per_minute.into()),
            total,
            part,
        )?;
        nonzero_duration("llm.timeout", self.timeout)?;
        at_least("llm.max_connections", self.max_connections.into(), 1)?;
        at_least("llm.max_connections_per_host", self.max_connections_per_host.into(), 1)?;
        not_above(
            ("llm.max_connections_per_host", self.max_connections_per_host.into()),
            ("llm.max_connections", self.max_connections.into()),
            "one host cannot have more connections than the whole pool",
        )?;
        at_least("llm.max_concurrent", self.max_concurrent.into(), 1)?;
        at_least("llm.max_concurrent_per_agent", self.max_concurrent_per_agent.into(), 1)?;
        not_above(
            ("llm.max_concurrent_per_agent", self.max_concurrent_per_agent.into()),
            ("llm.max_concurrent", self.max_concurrent.into()),
            "one agent cannot have more requests in flight than the whole gateway",
        )?;
        nonzero_duration("llm.retry.base_backoff", self.retry.base_backoff)?;
        bounded_duration("llm.retry.max_backoff", self.retry.max_backoff)?;
        if self.retry.max_backoff < self.retry.base_backoff {
            let fmt = |d: Duration| format!("\"{}\"", humantime::format_duration(d));
            return Err(ConfigError::conflict(
                ("llm.retry.max_backoff", fmt(self.retry.max_backoff)),
                ("llm.retry.base_backoff", fmt(self.retry.base_backoff)),
                "the longest backoff must be at least the first",
            ));
        }
        in_range("llm.batch.max_size", self.batch.max_size.into(), 1, 10_000)?;
        nonzero_duration("llm.batch.max_wait", self.batch.max_wait)?;
        in_range("llm.burst_percent", self.burst_percent.into(), 1, 100)?;
        at_least("llm.allowed_fails", self.allowed_fails.into(), 1)?;
        nonzero_duration("llm.cooldown", self.cooldown)?;
        llm::validate(self)?;
        Ok(())
    }
}

/// The LLM response cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Whether responses are cached. Default: true.
    pub enabled: bool,
    /// Bytes of responses held in memory at most. Default: 1 GiB (seed).
    pub memory_bytes: u64,
    /// How long an entry lives. Default: 5 min (seed).
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Bytes of the disk tier at most (0 turns it off). Default: 10 GiB (seed).
    pub disk_bytes: u64,
    /// Whether disk entries are compressed. Default: true (seed).
    pub compression: bool,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            memory_bytes: 1 << 30,
            ttl: Duration::from_secs(300),
            disk_bytes: 10 << 30,
            compression: true,
        }
    }
}

impl CacheConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        toml_integer("cache.memory_bytes", self.memory_bytes)?;
        toml_integer("cache.disk_bytes", self.disk_bytes)?;
        bounded_duration("cache.ttl", self.ttl)?;
        if self.enabled {
            at_least("cache.memory_bytes", self.memory_bytes, 1)?;
            nonzero_duration("cache.ttl", self.ttl)?;
        }
        Ok(())
    }
}

/// The cost ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerConfig {
    /// How long individual usage records are kept before they are compacted
    /// into daily aggregates. Default: 30 days (seed).
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Records committed in one transaction at most. Default: 1024.
    pub group_commit_max: u32,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(30 * 24 * 3600),
            group_commit_max: 1024,
        }
    }
}

impl LedgerConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        nonzero_duration("ledger.retention", self.retention)?;
        in_range("ledger.group_commit_max", self.group_commit_max.into(), 1, 1 << 20)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
