//! The `[scheduler]` and `[quotas]` sections: resource pools, the allocation
//! strategy, and the hierarchical quota tree declared at start.
//!
//! ```
//! use nexus_swarm_runtime::config::{AllocationStrategy, NexusConfig};
//!
//! let cfg = NexusConfig::from_toml_str(
//!     r#"
//! [scheduler]
//! strategy = "fair_share"
//!
//! [[scheduler.pools]]
//! name = "gpu"
//! capacity = { gpu = 4, memory = 68719476736 }
//! max = { gpu = 8 }
//! step = { gpu = 2 }
//!
//! [[quotas.quotas]]
//! id = "system-tokens"
//! kind = "input_tokens"
//! limit = 90000
//! period = "1m"
//! selector = {}
//!
//! [[quotas.quotas]]
//! id = "acme-tokens"
//! parent = "system-tokens"
//! kind = "input_tokens"
//! limit = 30000
//! borrow_ceiling = 10000
//! selector = { tenant = "acme" }
//! "#,
//! )
//! .unwrap();
//! assert_eq!(cfg.scheduler.strategy, AllocationStrategy::FairShare);
//! assert_eq!(cfg.scheduler.pools[0].capacity["gpu"], 4);
//! assert_eq!(cfg.quotas.quotas[1].parent.as_deref(), Some("system-tokens"));
//!
//! let err = NexusConfig::from_toml_str("[[quotas.quotas]]\nid = \"q\"\nkind = \"cost\"\nlimit = 0\n").unwrap_err();
//! assert_eq!(err.field(), "quotas.quotas[0].limit");
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::quota_tree::{QuotaEntry, QuotaTreeError, check_quota_tree};
use super::{ConfigError, bounded_duration, check_kind_name, check_name, in_range, nonzero_duration, toml_integer};
use crate::scope::Scope;

/// Largest amount a quota limit may have: quota counters keep a period tag
/// in the top 16 bits of a 64-bit word (2^48 - 1, about 2.8e14: 281 million
/// dollars in micro-dollars, 281 trillion tokens).
pub const MAX_QUOTA_AMOUNT: u64 = (1 << 48) - 1;

/// Shortest quota period accepted (a counter's 16-bit period tag then wraps
/// after more than a minute, far longer than the keeper's sweep).
pub const MIN_QUOTA_PERIOD: Duration = Duration::from_millis(1);

/// Most periods of the shortest quota period that `quotas.sweep_interval`
/// may span: a counter's 16-bit period tag is compared as "newer by less
/// than 32768 periods", and a sweep may find a counter written up to one
/// period before the previous sweep.
pub const MAX_SWEEP_PERIODS: u32 = 32_767;

/// How the scheduler orders waiting requests and picks a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AllocationStrategy {
    /// Highest (aged) priority first, earliest deadline first within a
    /// priority; the first pool in registration order that fits.
    #[default]
    Priority,
    /// Dominant Resource Fairness across tenants: the tenant with the lowest
    /// dominant share is served first; then as `priority`.
    FairShare,
    /// As `priority`, but the pool chosen is the one the request leaves least
    /// fragmented (the smallest leftover, relative to capacity).
    BestFit,
}

/// One resource pool of the scheduler. Amounts are keyed by resource kind
/// name (`cpu` millicores, `memory` bytes, `gpu`, `llm_requests`,
/// `input_tokens`, `output_tokens`, `cost` micro-dollars, or a custom kind
/// named `custom.<name>`; any other name is refused, so a misspelt kind is
/// not taken for a new one). Its `name` and `capacity` have no default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// The pool's name, unique.
    pub name: String,
    /// What the pool holds at start.
    pub capacity: BTreeMap<String, u64>,
    /// How far the pool may grow when a request does not fit (per kind; an
    /// empty map means the pool never grows). Default: empty.
    #[serde(default)]
    pub max: BTreeMap<String, u64>,
    /// Growth step per kind (0 or absent: grow exactly as needed); only
    /// for kinds that have a `max`. Default: empty.
    #[serde(default)]
    pub step: BTreeMap<String, u64>,
}

/// The resource scheduler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// The allocation strategy. Default: `priority` (seed allocator).
    pub strategy: AllocationStrategy,
    /// A waiting request rises one priority level per this much waiting,
    /// so low priority is never starved. Default: 30 s.
    #[serde(with = "humantime_serde")]
    pub aging_interval: Duration,
    /// Reservations waiting at most; more are rejected. Default: 10000.
    pub max_waiting: u32,
    /// Pools registered at start. Default: one pool `default` with 8 cores
    /// (8000 millicores) and 16 GiB of memory (seed allocator).
    pub pools: Vec<PoolConfig>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            strategy: AllocationStrategy::Priority,
            aging_interval: Duration::from_secs(30),
            max_waiting: 10_000,
            pools: vec![PoolConfig {
                name: "default".into(),
                capacity: BTreeMap::from([("cpu".to_string(), 8000), ("memory".to_string(), 16 << 30)]),
                max: BTreeMap::new(),
                step: BTreeMap::new(),
            }],
        }
    }
}

impl SchedulerConfig {
    /// Checks the section alone, as the scheduler would when it registers
    /// the pools; errors name `scheduler.<field>`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        nonzero_duration("scheduler.aging_interval", self.aging_interval)?;
        in_range("scheduler.max_waiting", self.max_waiting.into(), 1, 1 << 24)?;
        // Sums of the pools' ceilings per kind: the scheduler keeps totals
        // of them and refuses a pool that would overflow u64.
        let mut ceilings: BTreeMap<&str, u64> = BTreeMap::new();
        for (i, pool) in self.pools.iter().enumerate() {
            let at = |f: &str| format!("scheduler.pools[{i}].{f}");
            check_name(&at("name"), &pool.name)?;
            if let Some(j) = self.pools[..i].iter().position(|p| p.name == pool.name) {
                return Err(ConfigError::conflict(
                    (at("name"), format!("{:?}", pool.name)),
                    (format!("scheduler.pools[{j}].name"), format!("{:?}", pool.name)),
                    "pool names must be unique",
                ));
            }
            for (map, amounts) in [("capacity", &pool.capacity), ("max", &pool.max), ("step", &pool.step)] {
                for (kind, &amount) in amounts {
                    let field = at(&format!("{map}.{kind}"));
                    check_kind_name(&field, kind)?;
                    toml_integer(&field, amount)?;
                }
            }
            if pool.capacity.values().all(|&v| v == 0) {
                return Err(ConfigError::invalid(at("capacity"), "{}", "must hold some resource"));
            }
            for (kind, &max) in &pool.max {
                let cap = pool.capacity.get(kind).copied().unwrap_or(0);
                if max < cap {
                    return Err(ConfigError::conflict(
                        (at(&format!("max.{kind}")), max),
                        (at(&format!("capacity.{kind}")), cap),
                        "a pool cannot grow to less than it holds",
                    ));
                }
            }
            for (kind, &step) in &pool.step {
                if step > 0 && !pool.max.contains_key(kind) {
                    return Err(ConfigError::invalid(
                        at(&format!("step.{kind}")),
                        step,
                        format!("has no `max.{kind}` to grow to"),
                    ));
                }
            }
            for (kind, &cap) in &pool.capacity {
                let ceiling = pool.max.get(kind).copied().unwrap_or(0).max(cap);
                let sum = ceilings.entry(kind).or_default();
                *sum = sum.checked_add(ceiling).ok_or_else(|| {
                    ConfigError::invalid(
                        at(&format!("capacity.{kind}")),
                        cap,
                        "the pools' capacities of this kind add up to more than 2^64 - 1",
                    )
                })?;
            }
            for (kind, &max) in pool.max.iter().filter(|(k, _)| !pool.capacity.contains_key(*k)) {
                let sum = ceilings.entry(kind).or_default();
                *sum = sum.checked_add(max).ok_or_else(|| {
                    ConfigError::invalid(
                        at(&format!("max.{kind}")),
                        max,
                        "the pools' capacities of this kind add up to more than 2^64 - 1",
                    )
                })?;
            }
        }
        Ok(())
    }
}

/// One quota of the tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    /// The quota's id, unique.
    pub id: String,
    /// The parent quota's id; every charge to this quota is charged to the
    /// parent too. Default: none (a root).
    #[serde(default)]
    pub parent: Option<String>,
    /// The resource kind (by name: a known kind or `custom.<name>`); a
    /// child has its parent's kind.
    pub kind: String,
    /// The limit, in the kind's unit (1 to 2^48 - 1).
    pub limit: u64,
    /// Usage resets after each period. Default: never.
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub period: Option<Duration>,
    /// How far above its limit this quota may go by borrowing its parent's
    /// idle capacity (a root cannot borrow). Default: 0.
    #[serde(default)]
    pub borrow_ceiling: u64,
    /// Which requests' usage this quota applies to when the LLM gateway
    /// reserves through the quota keeper: the [`Scope`] fields given
    /// (`tenant`, `workflow`, `agent`, `model`) must equal the request's,
    /// absent ones match anything (`{}` matches every request). Default:
    /// none (charged only by id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<Scope>,
}

/// The quota keeper.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotasConfig {
    /// How often the keeper normalizes idle counters whose period ended.
    /// At most [`MAX_SWEEP_PERIODS`] times the shortest period (32.767 s for
    /// 1 ms periods): a counter idle for longer than 32768 periods is
    /// otherwise read as still holding its old usage (refusing, never
    /// overshooting) until 65536 periods have passed. Default: 10 s.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// How often the quota keeper writes the usage that changed to its
    /// store, `<node.data_dir>/quotas.redb`, so that a restarted process
    /// resumes it: a process killed loses at most the charges of the last
    /// interval (a clean stop writes everything first). Default: 1 s.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Quotas defined at start, in any order (parents may come after their
    /// children), written as `[[quotas.quotas]]` blocks. Default: none (and
    /// then not written by `nexus config defaults`, so that blocks can be
    /// appended to its output).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub quotas: Vec<QuotaConfig>,
}

impl Default for QuotasConfig {
    fn default() -> Self {
        Self {
            sweep_interval: Duration::from_secs(10),
            flush_interval: Duration::from_secs(1),
            quotas: Vec::new(),
        }
    }
}

impl QuotasConfig {
    /// Checks the section alone; errors name `quotas.<field>`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        nonzero_duration("quotas.sweep_interval", self.sweep_interval)?;
        nonzero_duration("quotas.flush_interval", self.flush_interval)?;
        let shortest = self.quotas.iter().filter_map(|q| q.period).min();
        let limit = shortest.and_then(|p| p.checked_mul(MAX_SWEEP_PERIODS));
        if let Some(limit) = limit.filter(|l| self.sweep_interval > *l) {
            return Err(ConfigError::invalid(
                "quotas.sweep_interval",
                format!("\"{}\"", humantime::format_duration(self.sweep_interval)),
                format!(
                    "must be at most {MAX_SWEEP_PERIODS} times the shortest quota period ({})",
                    humantime::format_duration(limit)
                ),
            ));
        }
        for (i, q) in self.quotas.iter().enumerate() {
            let at = |f: &str| format!("quotas.quotas[{i}].{f}");
            check_name(&at("id"), &q.id)?;
            if let Some(parent) = &q.parent {
                check_name(&at("parent"), parent)?;
            }
            check_kind_name(&at("kind"), &q.kind)?;
            if let Some(period) = q.period {
                bounded_duration(&at("period"), period)?;
            }
            if let Some(sel) = &q.selector {
                for (f, value) in sel.fields() {
                    if let Some(value) = value {
                        check_name(&at(&format!("selector.{f}")), value)?;
                    }
                }
            }
        }
        // The quota keeper's own rules, by the same function it runs.
        let entries: Vec<QuotaEntry<'_>> = self
            .quotas
            .iter()
            .map(|q| QuotaEntry {
                id: &q.id,
                parent: q.parent.as_deref(),
                kind: &q.kind,
                limit: q.limit,
                borrow_ceiling: q.borrow_ceiling,
                period: q.period,
            })
            .collect();
        check_quota_tree(&entries, |_| None).map_err(|e| {
            let at = |i: usize, f: &str| format!("quotas.quotas[{i}].{f}");
            match e {
                QuotaTreeError::AlreadyDefined {
                    index,
                    ref id,
                    first: Some(first),
                } => ConfigError::conflict(
                    (at(index, "id"), format!("{id:?}")),
                    (at(first, "id"), format!("{id:?}")),
                    "quota ids must be unique",
                ),
                QuotaTreeError::KindMismatch {
                    index,
                    ref kind,
                    ref parent_kind,
                    parent_index: Some(p),
                    ..
                } => ConfigError::conflict(
                    (at(index, "kind"), format!("{kind:?}")),
                    (at(p, "kind"), format!("{parent_kind:?}")),
                    "a child quota counts its parent's kind",
                ),
                e => ConfigError::QuotaTree {
                    field: at(e.index(), e.field()),
                    source: Box::new(e),
                },
            }
        })?;
        Ok(())
    }
}
