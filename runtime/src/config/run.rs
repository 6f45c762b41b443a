//! The `[run]` section: what `nexus run` starts over the swarm, and how
//! long it gives the swarm to shut down.
//!
//! Each `[[run.pools]]` entry is a pool of one of the agent types the
//! `nexus` binary knows ([`RunAgentKind`]), spawned through the swarm when
//! `nexus run` starts (admitted by its profile as any pool is); routers
//! declared over it (`[[routers]]`) start with it. Nothing here is read
//! by a program that does not call `nexus run`.
//!
//! ```
//! use std::time::Duration;
//! use nexus_swarm_runtime::config::{NexusConfig, RunAgentKind};
//!
//! let cfg = NexusConfig::from_toml_str(
//!     r#"
//! [run]
//! shutdown_timeout = "10s"
//!
//! [[run.pools]]
//! name = "echoes"
//! agent = "echo"
//! size = 4
//! "#,
//! )
//! .unwrap();
//! assert_eq!(cfg.run.pools[0].agent, RunAgentKind::Echo);
//! assert_eq!(cfg.run.shutdown_timeout, Duration::from_secs(10));
//!
//! let err = NexusConfig::from_toml_str("[[run.pools]]\nname = \"p\"\nagent = \"echo\"\nsize = 0\n").unwrap_err();
//! assert_eq!(err.field(), "run.pools[0].size");
//! let err = NexusConfig::from_toml_str("[[run.pools]]\nname = \"p\"\nagent = \"poet\"\nsize = 1\n").unwrap_err();
//! assert_eq!(err.field(), "run.pools[0].agent");
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, check_name, duration_in, in_range};

/// Most workers one `[[run.pools]]` entry may ask for.
pub const MAX_RUN_POOL_SIZE: u32 = 4096;

/// Most messages per second `nexus run` may send a pool itself
/// (`[[run.pools]] load_per_second`).
pub const MAX_RUN_LOAD_PER_SECOND: u32 = 100_000;

/// The `[run]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// How long `nexus run` waits, after SIGINT or SIGTERM, for the pools
    /// to handle what they admitted and the system actors to stop; past
    /// it, what is left is lost and `nexus run` exits non-zero. Between 1 s
    /// and 100 years. Default: 30 s.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// The pools `nexus run` spawns at start. Default: none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<RunPool>,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            shutdown_timeout: Duration::from_secs(30),
            pools: Vec::new(),
        }
    }
}

/// One `[[run.pools]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunPool {
    /// The pool's name, unique among `[[run.pools]]` (what `[[routers]]`
    /// and the admin API name it by).
    pub name: String,
    /// Its workers' agent type.
    pub agent: RunAgentKind,
    /// Workers at start, 1 to [`MAX_RUN_POOL_SIZE`].
    pub size: u32,
    /// Messages per second `nexus run` sends the pool itself, at normal
    /// priority, from start until shutdown begins: a steady load for
    /// demonstrations, the dashboard and smoke tests. A message its lanes
    /// have no room for is not sent (counted as refused in `/status`).
    /// 0 to [`MAX_RUN_LOAD_PER_SECOND`]. Default: 0 (none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub load_per_second: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The agent types the `nexus` binary knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunAgentKind {
    /// Replies with the text it is sent.
    Echo,
    /// Sends the text it is sent to the swarm's LLM gateway as its own call
    /// (charged to the pool's identity) and replies with the completion;
    /// needs `[[llm.providers]]` and `[[llm.models]]`.
    LlmCaller,
}

impl RunConfig {
    /// Checks the timeout, every pool's name and size, and that pool names
    /// are unique; errors name `run.<field>` or `run.pools[i].<field>`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        duration_in("run.shutdown_timeout", self.shutdown_timeout, Duration::from_secs(1))?;
        let mut seen = BTreeMap::new();
        for (i, p) in self.pools.iter().enumerate() {
            check_name(&format!("run.pools[{i}].name"), &p.name)?;
            in_range(
                &format!("run.pools[{i}].size"),
                p.size.into(),
                1,
                MAX_RUN_POOL_SIZE.into(),
            )?;
            in_range(
                &format!("run.pools[{i}].load_per_second"),
                p.load_per_second.into(),
                0,
                MAX_RUN_LOAD_PER_SECOND.into(),
            )?;
            if let Some(first) = seen.insert(p.name.as_str(), i) {
                return Err(ConfigError::conflict(
                    (format!("run.pools[{i}].name"), format!("{:?}", p.name)),
                    (format!("run.pools[{first}].name"), format!("{:?}", p.name)),
                    "pool names must be unique",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::NexusConfig;

    #[test]
    fn duplicate_names_short_timeouts_and_unknown_keys_are_refused() {
        let twice = "[[run.pools]]\nname = \"p\"\nagent = \"echo\"\nsize = 1\n[[run.pools]]\nname = \"p\"\nagent = \"llm-caller\"\nsize = 2\n";
        assert_eq!(
            NexusConfig::from_toml_str(twice).unwrap_err().field(),
            "run.pools[1].name"
        );
        let short = "[run]\nshutdown_timeout = \"10ms\"\n";
        assert_eq!(
            NexusConfig::from_toml_str(short).unwrap_err().field(),
            "run.shutdown_timeout"
        );
        let big = "[[run.pools]]\nname = \"p\"\nagent = \"echo\"\nsize = 4097\n";
        assert_eq!(
            NexusConfig::from_toml_str(big).unwrap_err().field(),
            "run.pools[0].size"
        );
        let flood = "[[run.pools]]\nname = \"p\"\nagent = \"echo\"\nsize = 1\nload_per_second = 100001\n";
        assert_eq!(
            NexusConfig::from_toml_str(flood).unwrap_err().field(),
            "run.pools[0].load_per_second"
        );
        let unknown = "[[run.pools]]\nname = \"p\"\nagent = \"echo\"\nsize = 1\nweight = 2\n";
        assert!(NexusConfig::from_toml_str(unknown).is_err());
    }

    #[test]
    fn defaults_write_no_pools_and_declared_pools_round_trip() {
        let defaults = NexusConfig::default().to_toml_string();
        assert!(!defaults.contains("run.pools"));
        let text = "[[run.pools]]\nname = \"w\"\nagent = \"llm-caller\"\nsize = 3\n";
        let cfg = NexusConfig::from_toml_str(text).unwrap();
        assert_eq!(cfg.run.pools[0].load_per_second, 0, "no load unless asked");
        assert!(!cfg.to_toml_string().contains("load_per_second"));
        let again = NexusConfig::from_toml_str(&cfg.to_toml_string()).unwrap();
        assert_eq!(cfg, again);
        let loaded = NexusConfig::from_toml_str(&format!("{text}load_per_second = 25\n")).unwrap();
        assert_eq!(loaded.run.pools[0].load_per_second, 25);
        let again = NexusConfig::from_toml_str(&loaded.to_toml_string()).unwrap();
        assert_eq!(loaded, again);
    }
}
