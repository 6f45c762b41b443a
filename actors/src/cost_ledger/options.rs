//! [`LedgerOptions`]: how a ledger runs, from the node's configuration.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nexus_swarm_runtime::config::NexusConfig;

use super::clock::{Clock, SystemClock};
use super::error::LedgerError;

/// How a ledger runs. [`LedgerOptions::from_config`] takes the node's
/// data directory and the `ledger` section.
#[derive(Debug, Clone)]
pub struct LedgerOptions {
    /// The data directory; the store is `<data_dir>/ledger.redb`.
    /// Default: `./nexus-data` (config `node.data_dir`).
    pub data_dir: PathBuf,
    /// How long records are kept before compaction into daily aggregates.
    /// Default: 30 days (config `ledger.retention`, seed).
    pub retention: Duration,
    /// Records per transaction at most. Default: 1024 (config `ledger.group_commit_max`).
    pub group_commit_max: u32,
    /// The clock stamping records and rolling periods. Default: the system clock.
    pub clock: Arc<dyn Clock>,
    /// How often the ledger rolls budget periods. Default: 1 s.
    pub tick: Duration,
    /// How often records past retention are compacted. Default: 1 h.
    pub compact_every: Duration,
    /// How long a settled reservation stays counted while its records are
    /// awaited. Default: 60 s (the LLM timeout).
    pub settle_grace: Duration,
    /// Write jobs queued at most before trackers wait. Default: 8192.
    pub queue_capacity: usize,
}

impl LedgerOptions {
    /// Defaults with this data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            retention: Duration::from_secs(30 * 24 * 3600),
            group_commit_max: 1024,
            clock: Arc::new(SystemClock),
            tick: Duration::from_secs(1),
            compact_every: Duration::from_secs(3600),
            settle_grace: Duration::from_secs(60),
            queue_capacity: 8192,
        }
    }

    /// The node's data directory and `ledger` section.
    pub fn from_config(config: &NexusConfig) -> Self {
        Self {
            retention: config.ledger.retention,
            group_commit_max: config.ledger.group_commit_max,
            ..Self::new(config.node.data_dir.clone())
        }
    }

    /// Builder-style: sets the clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub(super) fn validate(&self) -> Result<(), LedgerError> {
        let bad = |what: &str| Err(LedgerError::InvalidQuery(format!("ledger option {what}")));
        if self.group_commit_max == 0 {
            return bad("group_commit_max must be at least 1");
        }
        if self.retention.is_zero() || self.tick.is_zero() || self.compact_every.is_zero() {
            return bad("durations must be longer than zero");
        }
        if self.queue_capacity == 0 {
            return bad("queue_capacity must be at least 1");
        }
        Ok(())
    }
}
