//! The `[cluster]` section: how a `nexus node` talks to its peers: the
//! heartbeat period, the silence after which a peer is ejected from the
//! ring, the ring's virtual nodes and optional load bound, the wire's
//! compression threshold, the reconnect backoff and how long a sender of
//! keyed work waits for an ack; and `[cluster.tls]`, to encrypt the
//! sessions between nodes.
//!
//! ```
//! use std::time::Duration;
//! use nexus_swarm_runtime::config::NexusConfig;
//!
//! let cfg = NexusConfig::from_toml_str(
//!     "[cluster]\nheartbeat_interval = \"100ms\"\nfailure_timeout = \"1s\"\n",
//! )
//! .unwrap();
//! assert_eq!(cfg.cluster.failure_timeout, Duration::from_secs(1));
//! assert_eq!(cfg.cluster.compress_above, 1024); // the seed default
//!
//! let err = NexusConfig::from_toml_str(
//!     "[cluster]\nheartbeat_interval = \"2s\"\nfailure_timeout = \"1s\"\n",
//! )
//! .unwrap_err();
//! assert_eq!(err.field(), "cluster.failure_timeout");
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, duration_in, in_range};

/// Most virtual nodes per member of the cluster ring.
pub const MAX_CLUSTER_VIRTUAL_NODES: u32 = 4096;

/// Largest payload (bytes, after decompression) a cluster frame may carry.
pub const MAX_CLUSTER_PAYLOAD: u32 = 16 * 1024 * 1024;

/// `[cluster]`: membership, failure detection and wire settings of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// How often a node sends a heartbeat to every peer. Default: 500 ms.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// Silence after which a peer is ejected from the ring, even if its TCP
    /// session stays open (a hung process). At least twice
    /// `heartbeat_interval`. Default: 3 s.
    #[serde(with = "humantime_serde")]
    pub failure_timeout: Duration,
    /// Points each member holds on the ring (1..=4096). Default: 128.
    pub virtual_nodes: u32,
    /// With it, a batch of keys is assigned with bounded loads: no member
    /// takes more than `(100 + load_bound_percent) / 100` times the average
    /// (consistent hashing with bounded loads, Mirrokni et al.). Without it,
    /// each key goes to its ring owner. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_bound_percent: Option<u32>,
    /// Payloads larger than this many bytes are LZ4-compressed on the wire.
    /// Default: 1024 (the seeds' 1 KB).
    pub compress_above: u32,
    /// First wait before reconnecting to a lost `--join` peer; doubled after
    /// each failure up to `reconnect_max`. Default: 100 ms.
    #[serde(with = "humantime_serde")]
    pub reconnect_min: Duration,
    /// Longest wait between reconnection attempts. Default: 5 s.
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// How long a sender of keyed work waits for the owner's ack before it
    /// sends the message again, to the key's owner at that time (the same
    /// node, or the next one if the owner was ejected). Default: 1 s.
    #[serde(with = "humantime_serde")]
    pub ack_timeout: Duration,
    /// Fewest members (this node included) a node must see to take keyed
    /// work. Below it, the node sends none (`NoQuorum`) and handles none
    /// from peers (no ack, so their senders go to the key's next owner):
    /// set to a majority (2 of 3) so that a node cut off from the others
    /// does not take work that the majority now gives to another owner.
    /// Default: none (a node alone still takes work).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quorum: Option<u32>,
    /// TLS between nodes (`[cluster.tls]`): every node then serves and
    /// dials TLS only, and a peer must present a certificate for its
    /// address signed by `ca`. Default: none (plain TCP; the cookie still
    /// authenticates, but nothing is encrypted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClusterTlsConfig>,
    /// Cluster-wide limits (`[[cluster.limits]]`): budgets of integer units
    /// spent from every node, each owned by one node of the ring, which
    /// leases units to the others. Default: none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<ClusterLimitConfig>,
}

/// Longest name of a cluster-wide limit.
pub const MAX_CLUSTER_LIMIT_NAME: usize = 64;

/// Most cluster-wide limits one configuration may declare.
pub const MAX_CLUSTER_LIMITS: usize = 1024;

/// `[[cluster.limits]]`: one budget of integer units (micro-dollars,
/// tokens, requests: the unit is the caller's) enforced across the
/// cluster. The node owning `name` on the ring keeps its book and leases
/// units to every node that spends; what all nodes spend together passes
/// `limit` by at most the leases outstanding when an owner fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterLimitConfig {
    /// Its name: 1 to 64 letters, digits, `-`, `_`, `.` or `/`; distinct.
    pub name: String,
    /// Units that may be spent in all, cluster-wide.
    pub limit: u64,
    /// Most units one node may hold in a lease at once (1..=`limit`, or 1
    /// when `limit` is 0). Larger chunks mean fewer round trips to the
    /// owner and a larger bound on the overshoot. Default: `limit / 100`,
    /// at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<u64>,
    /// How long a lease lives unless renewed; a node renews it when it
    /// asks for more units, and gives it back after half of it without a
    /// spend. At least twice `cluster.ack_timeout`. Default: 10 s.
    #[serde(default = "default_lease_ttl", with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// With it, the limit holds per window of this length (aligned to the
    /// Unix epoch on each node's clock): a quota such as tokens per minute.
    /// At each new window nothing is committed; leases outstanding carry
    /// over and count in it. At least 1 s. Default: none (a total budget).
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub window: Option<Duration>,
    /// What of every LLM call the node's gateway charges to this limit
    /// (`nexus node` wires it): `"cost"` (micro-dollars, a global money
    /// budget), `"llm_requests"`, `"input_tokens"` or `"output_tokens"`.
    /// Default: none (spent only through the cluster API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charges: Option<String>,
}

/// The resource kinds a `[[cluster.limits]]` entry may charge.
pub const CLUSTER_LIMIT_CHARGES: [&str; 4] = ["cost", "llm_requests", "input_tokens", "output_tokens"];

fn default_lease_ttl() -> Duration {
    Duration::from_secs(10)
}

impl ClusterLimitConfig {
    /// The chunk in force: `chunk`, else `limit / 100`, at least 1.
    pub fn chunk(&self) -> u64 {
        self.chunk.unwrap_or(self.limit / 100).max(1)
    }
}

/// `[cluster.tls]`: PEM files of this node's certificate and key and of the
/// authority that signs every node's certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterTlsConfig {
    /// This node's certificate chain (PEM), for the address peers dial.
    pub cert: PathBuf,
    /// This node's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The certificate authority (PEM) that signed the peers' certificates.
    pub ca: PathBuf,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_millis(500),
            failure_timeout: Duration::from_secs(3),
            virtual_nodes: 128,
            load_bound_percent: None,
            compress_above: 1024,
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            ack_timeout: Duration::from_secs(1),
            quorum: None,
            tls: None,
            limits: Vec::new(),
        }
    }
}

impl ClusterConfig {
    /// Checks every field, naming the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        duration_in(
            "cluster.heartbeat_interval",
            self.heartbeat_interval,
            Duration::from_millis(1),
        )?;
        duration_in(
            "cluster.failure_timeout",
            self.failure_timeout,
            Duration::from_millis(1),
        )?;
        if self.failure_timeout < self.heartbeat_interval.saturating_mul(2) {
            let fmt = |d: Duration| format!("\"{}\"", humantime::format_duration(d));
            return Err(ConfigError::conflict(
                ("cluster.failure_timeout", fmt(self.failure_timeout)),
                ("cluster.heartbeat_interval", fmt(self.heartbeat_interval)),
                "must be at least twice the heartbeat interval, or one late heartbeat ejects a healthy peer",
            ));
        }
        in_range(
            "cluster.virtual_nodes",
            self.virtual_nodes.into(),
            1,
            MAX_CLUSTER_VIRTUAL_NODES.into(),
        )?;
        if let Some(p) = self.load_bound_percent {
            in_range("cluster.load_bound_percent", p.into(), 1, 1000)?;
        }
        in_range(
            "cluster.compress_above",
            self.compress_above.into(),
            0,
            MAX_CLUSTER_PAYLOAD.into(),
        )?;
        duration_in("cluster.reconnect_min", self.reconnect_min, Duration::from_millis(1))?;
        duration_in("cluster.reconnect_max", self.reconnect_max, Duration::from_millis(1))?;
        duration_in("cluster.ack_timeout", self.ack_timeout, Duration::from_millis(1))?;
        if let Some(q) = self.quorum {
            in_range("cluster.quorum", q.into(), 1, 1024)?;
        }
        if let Some(tls) = &self.tls {
            for (field, path) in [
                ("cluster.tls.cert", &tls.cert),
                ("cluster.tls.key", &tls.key),
                ("cluster.tls.ca", &tls.ca),
            ] {
                if path.as_os_str().is_empty() {
                    return Err(ConfigError::invalid(field, "\"\"", "must name a PEM file"));
                }
            }
        }
        self.validate_limits()?;
        if self.reconnect_max < self.reconnect_min {
            let fmt = |d: Duration| format!("\"{}\"", humantime::format_duration(d));
            return Err(ConfigError::conflict(
                ("cluster.reconnect_max", fmt(self.reconnect_max)),
                ("cluster.reconnect_min", fmt(self.reconnect_min)),
                "must not be shorter than the first wait",
            ));
        }
        Ok(())
    }

    fn validate_limits(&self) -> Result<(), ConfigError> {
        if self.limits.len() > MAX_CLUSTER_LIMITS {
            return Err(ConfigError::invalid(
                "cluster.limits",
                self.limits.len().to_string(),
                format!("at most {MAX_CLUSTER_LIMITS} limits"),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for l in &self.limits {
            let valid = !l.name.is_empty()
                && l.name.len() <= MAX_CLUSTER_LIMIT_NAME
                && l.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
            if !valid {
                return Err(ConfigError::invalid(
                    "cluster.limits.name",
                    format!("{:?}", l.name),
                    "must be 1 to 64 letters, digits, '-', '_', '.' or '/'",
                ));
            }
            if !seen.insert(l.name.as_str()) {
                return Err(ConfigError::invalid(
                    "cluster.limits.name",
                    format!("{:?}", l.name),
                    "is declared twice",
                ));
            }
            if let Some(chunk) = l.chunk {
                in_range("cluster.limits.chunk", chunk, 1, l.limit.max(1))?;
            }
            if let Some(window) = l.window {
                duration_in("cluster.limits.window", window, Duration::from_secs(1))?;
            }
            if let Some(kind) = &l.charges {
                if !CLUSTER_LIMIT_CHARGES.contains(&kind.as_str()) {
                    return Err(ConfigError::invalid(
                        "cluster.limits.charges",
                        format!("{kind:?}"),
                        format!("must be one of {CLUSTER_LIMIT_CHARGES:?}"),
                    ));
                }
            }
            if l.lease_ttl < self.ack_timeout.saturating_mul(2) {
                let fmt = |d: Duration| format!("\"{}\"", humantime::format_duration(d));
                return Err(ConfigError::conflict(
                    ("cluster.limits.lease_ttl", fmt(l.lease_ttl)),
                    ("cluster.ack_timeout", fmt(self.ack_timeout)),
                    "must be at least twice the ack timeout, or a lease expires before its grant arrives",
                ));
            }
        }
        Ok(())
    }
}
