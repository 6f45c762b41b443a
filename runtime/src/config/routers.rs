//! Routers declared in configuration: `[[routers]]` (none by default).
//!
//! A `Swarm` starts each declared router, supervised, when the pool it
//! names is spawned through it (a router's message type is its pool's, so
//! it cannot start before), adds the pool's workers as its members, and
//! keeps the members in step with the pool's resizes. Settings not given
//! here are the `[router]` section's.
//!
//! ```
//! use nexus_swarm_runtime::config::{NexusConfig, RoutingStrategyKind};
//!
//! let cfg = NexusConfig::from_toml_str(
//!     r#"
//! [[routers]]
//! name = "by-conversation"
//! pool = "writers"
//! strategy = "consistent_hash"
//! "#,
//! )
//! .unwrap();
//! let declared = &cfg.routers[0];
//! assert_eq!(declared.pool, "writers");
//! assert_eq!(declared.settings(&cfg.router).strategy, RoutingStrategyKind::ConsistentHash);
//!
//! let err = NexusConfig::from_toml_str("[[routers]]\nname = \"r\"\npool = \"p\"\nvirtual_nodes = 0\n").unwrap_err();
//! assert_eq!(err.field(), "routers[0].virtual_nodes");
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ConfigError, RouterConfig, RoutingStrategyKind, check_name};

/// One `[[routers]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredRouter {
    /// The router's name, unique among declared routers (what
    /// `Swarm::router` finds it by).
    pub name: String,
    /// The pool it routes to: the router starts when a pool of this name
    /// is spawned through the swarm.
    pub pool: String,
    /// Its strategy. Default: `router.strategy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<RoutingStrategyKind>,
    /// Virtual nodes per member on its consistent-hash ring. Default:
    /// `router.virtual_nodes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_nodes: Option<u32>,
}

impl DeclaredRouter {
    /// Its settings: `base` (the `[router]` section) with this entry's
    /// strategy and virtual nodes where given.
    pub fn settings(&self, base: &RouterConfig) -> RouterConfig {
        let mut config = base.clone();
        if let Some(strategy) = self.strategy {
            config.strategy = strategy;
        }
        if let Some(v) = self.virtual_nodes {
            config.virtual_nodes = v;
        }
        config
    }
}

/// Checks every entry (names, ranges) and that names are unique; errors
/// name `routers[i].<field>`.
pub(super) fn validate(routers: &[DeclaredRouter], base: &RouterConfig) -> Result<(), ConfigError> {
    let mut seen = BTreeMap::new();
    for (i, r) in routers.iter().enumerate() {
        check_name(&format!("routers[{i}].name"), &r.name)?;
        check_name(&format!("routers[{i}].pool"), &r.pool)?;
        if let Some(v) = r.virtual_nodes {
            super::in_range(&format!("routers[{i}].virtual_nodes"), v.into(), 1, 65_536)?;
        }
        // The merged settings obey the [router] section's own rules.
        r.settings(base).validate().map_err(|e| match e {
            ConfigError::Invalid { field, value, reason } => ConfigError::Invalid {
                field: field.replacen("router.", &format!("routers[{i}]."), 1),
                value,
                reason,
            },
            other => other,
        })?;
        if let Some(first) = seen.insert(r.name.as_str(), i) {
            return Err(ConfigError::conflict(
                (format!("routers[{i}].name"), format!("{:?}", r.name)),
                (format!("routers[{first}].name"), format!("{:?}", r.name)),
                "router names must be unique",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::NexusConfig;

    #[test]
    fn duplicate_names_and_bad_names_are_refused_with_their_field() {
        let twice = "[[routers]]\nname = \"r\"\npool = \"a\"\n[[routers]]\nname = \"r\"\npool = \"b\"\n";
        assert_eq!(
            NexusConfig::from_toml_str(twice).unwrap_err().field(),
            "routers[1].name"
        );
        let bad = "[[routers]]\nname = \"\"\npool = \"a\"\n";
        assert_eq!(NexusConfig::from_toml_str(bad).unwrap_err().field(), "routers[0].name");
        let no_pool = "[[routers]]\nname = \"r\"\n";
        assert!(NexusConfig::from_toml_str(no_pool).is_err());
        let unknown = "[[routers]]\nname = \"r\"\npool = \"a\"\nweight = 3\n";
        assert!(NexusConfig::from_toml_str(unknown).is_err());
    }

    #[test]
    fn defaults_write_no_routers_and_a_declared_one_round_trips() {
        assert!(!NexusConfig::default().to_toml_string().contains("routers"));
        let cfg = NexusConfig::from_toml_str("[[routers]]\nname = \"r\"\npool = \"a\"\nvirtual_nodes = 40\n").unwrap();
        let back = NexusConfig::from_toml_str(&cfg.to_toml_string()).unwrap();
        assert_eq!(back, cfg);
        assert_eq!(back.routers[0].settings(&back.router).virtual_nodes, 40);
        assert_eq!(back.routers[0].settings(&back.router).strategy, back.router.strategy);
    }
}
