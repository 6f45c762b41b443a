//! The resource model: integer quantities in fixed units.
//!
//! CPU is counted in millicores, memory in bytes, tokens as counts, money in
//! micro-dollars. There are no floats anywhere a quantity is charged.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A kind of resource. Amounts of every kind are `u64` in the unit named here.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    /// CPU in millicores (1000 = one core).
    Cpu,
    /// Memory in bytes.
    Memory,
    /// Whole GPUs.
    Gpu,
    /// LLM requests (count).
    LlmRequests,
    /// LLM input (prompt) tokens.
    InputTokens,
    /// LLM output (completion) tokens.
    OutputTokens,
    /// Money in micro-dollars (1_000_000 = one US dollar).
    Cost,
    /// A user-defined kind, counted in the user's own unit.
    Custom(String),
}

impl ResourceKind {
    /// The name used in configuration, metrics and reports.
    pub fn name(&self) -> &str {
        match self {
            ResourceKind::Cpu => "cpu",
            ResourceKind::Memory => "memory",
            ResourceKind::Gpu => "gpu",
            ResourceKind::LlmRequests => "llm_requests",
            ResourceKind::InputTokens => "input_tokens",
            ResourceKind::OutputTokens => "output_tokens",
            ResourceKind::Cost => "cost",
            ResourceKind::Custom(name) => name,
        }
    }

    /// The unit amounts of this kind are counted in.
    pub fn unit(&self) -> &'static str {
        match self {
            ResourceKind::Cpu => "millicores",
            ResourceKind::Memory => "bytes",
            ResourceKind::Gpu => "gpus",
            ResourceKind::LlmRequests => "requests",
            ResourceKind::InputTokens | ResourceKind::OutputTokens => "tokens",
            ResourceKind::Cost => "micro-dollars",
            ResourceKind::Custom(_) => "units",
        }
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ResourceKind {
    type Err = std::convert::Infallible;

    /// Known names map to their kinds; any other name is a custom kind.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "cpu" => ResourceKind::Cpu,
            "memory" => ResourceKind::Memory,
            "gpu" => ResourceKind::Gpu,
            "llm_requests" => ResourceKind::LlmRequests,
            "input_tokens" => ResourceKind::InputTokens,
            "output_tokens" => ResourceKind::OutputTokens,
            "cost" => ResourceKind::Cost,
            other => ResourceKind::Custom(other.to_string()),
        })
    }
}

/// An arithmetic step on resource vectors would overflow or go below zero.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResourceError {
    /// Adding would overflow `u64` for this kind.
    #[error("amount of {kind} overflows u64")]
    Overflow {
        /// The kind whose amount overflowed.
        kind: ResourceKind,
    },
    /// Subtracting would take this kind below zero.
    #[error("amount of {kind} would go below zero: have {have}, take {take}")]
    Underflow {
        /// The kind that would go negative.
        kind: ResourceKind,
        /// What was there.
        have: u64,
        /// What was to be taken.
        take: u64,
    },
}

/// A vector of resource amounts, one per kind; absent kinds are zero.
///
/// Kinds with amount zero are not stored, so two vectors are equal exactly
/// when every kind has the same amount.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ResourceVector(BTreeMap<ResourceKind, u64>);

impl ResourceVector {
    /// The empty vector (every kind zero).
    pub fn new() -> Self {
        Self::default()
    }

    /// Builder-style: this vector with `kind` set to `amount`.
    pub fn with(mut self, kind: ResourceKind, amount: u64) -> Self {
        self.set(kind, amount);
        self
    }

    /// Sets the amount of a kind (zero removes it).
    pub fn set(&mut self, kind: ResourceKind, amount: u64) {
        if amount == 0 {
            self.0.remove(&kind);
        } else {
            self.0.insert(kind, amount);
        }
    }

    /// The amount of a kind (zero when absent).
    pub fn get(&self, kind: &ResourceKind) -> u64 {
        self.0.get(kind).copied().unwrap_or(0)
    }

    /// Whether every kind is zero.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The non-zero entries, ordered by kind.
    pub fn iter(&self) -> impl Iterator<Item = (&ResourceKind, u64)> + '_ {
        self.0.iter().map(|(k, v)| (k, *v))
    }

    /// Whether every amount in `self` is at most the same kind's amount in `other`.
    pub fn fits_within(&self, other: &ResourceVector) -> bool {
        self.iter().all(|(k, v)| v <= other.get(k))
    }

    /// `self + other`, or the kind that overflowed.
    pub fn checked_add(&self, other: &ResourceVector) -> Result<ResourceVector, ResourceError> {
        let mut out = self.clone();
        for (k, v) in other.iter() {
            let sum = out
                .get(k)
                .checked_add(v)
                .ok_or_else(|| ResourceError::Overflow { kind: k.clone() })?;
            out.set(k.clone(), sum);
        }
        Ok(out)
    }

    /// `self - other`, or the kind that would go below zero.
    pub fn checked_sub(&self, other: &ResourceVector) -> Result<ResourceVector, ResourceError> {
        let mut out = self.clone();
        for (k, v) in other.iter() {
            let have = out.get(k);
            let rest = have.checked_sub(v).ok_or_else(|| ResourceError::Underflow {
                kind: k.clone(),
                have,
                take: v,
            })?;
            out.set(k.clone(), rest);
        }
        Ok(out)
    }

    /// `self - other`, clamping each kind at zero.
    pub fn saturating_sub(&self, other: &ResourceVector) -> ResourceVector {
        let mut out = self.clone();
        for (k, v) in other.iter() {
            let rest = out.get(k).saturating_sub(v);
            out.set(k.clone(), rest);
        }
        out
    }
}

impl FromIterator<(ResourceKind, u64)> for ResourceVector {
    fn from_iter<T: IntoIterator<Item = (ResourceKind, u64)>>(iter: T) -> Self {
        let mut v = ResourceVector::new();
        for (k, a) in iter {
            let sum = v.get(&k).saturating_add(a);
            v.set(k, sum);
        }
        v
    }
}

/// What this machine has: `cpu` in millicores (its available cores, which
/// follows CPU affinity and quotas), and `memory` in bytes (its total
/// memory, read from `/proc/meminfo`; left out where that cannot be read).
pub fn machine_capacity() -> ResourceVector {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let mut v = ResourceVector::new().with(ResourceKind::Cpu, cores.saturating_mul(1000));
    if let Some(bytes) = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .as_deref()
        .and_then(mem_total_bytes)
    {
        v.set(ResourceKind::Memory, bytes);
    }
    v
}

/// `MemTotal` of a `/proc/meminfo` text, in bytes.
fn mem_total_bytes(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut parts = line.split_whitespace().skip(1);
    let kib: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") => kib.checked_mul(1024),
        _ => None,
    }
}

/// Quality-of-service class, in the Kubernetes sense.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum QosClass {
    /// Requests equal limits; never preempted.
    Guaranteed,
    /// Requests below limits; may be preempted down to its requests.
    Burstable,
    /// No requests; preempted first.
    #[default]
    BestEffort,
}

impl QosClass {
    /// The order in which preemption reclaims: lower is reclaimed first.
    pub const fn preemption_rank(self) -> u8 {
        match self {
            QosClass::BestEffort => 0,
            QosClass::Burstable => 1,
            QosClass::Guaranteed => 2,
        }
    }
}

/// What an agent declares it needs (`requests`) and may use at most (`limits`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceProfile {
    /// Resources the agent needs to run; reserved for it.
    pub requests: ResourceVector,
    /// Resources the agent may use at most.
    pub limits: ResourceVector,
    /// The agent's QoS class.
    pub qos: QosClass,
}

impl ResourceProfile {
    /// A best-effort profile with no requests and no limits.
    pub fn best_effort() -> Self {
        Self::default()
    }

    /// A guaranteed profile: limits equal requests.
    pub fn guaranteed(requests: ResourceVector) -> Self {
        Self {
            limits: requests.clone(),
            requests,
            qos: QosClass::Guaranteed,
        }
    }

    /// A burstable profile: requests reserved, limits allowed.
    pub fn burstable(requests: ResourceVector, limits: ResourceVector) -> Self {
        Self {
            requests,
            limits,
            qos: QosClass::Burstable,
        }
    }

    /// The QoS class that the requests and limits imply (Kubernetes rules):
    /// no requests is best-effort; requests equal to limits is guaranteed;
    /// anything else is burstable.
    pub fn implied_qos(&self) -> QosClass {
        if self.requests.is_empty() && self.limits.is_empty() {
            QosClass::BestEffort
        } else if self.requests == self.limits {
            QosClass::Guaranteed
        } else {
            QosClass::Burstable
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_arithmetic_is_exact_and_checked() {
        let a = ResourceVector::new()
            .with(ResourceKind::Cpu, 500)
            .with(ResourceKind::Memory, 1 << 20);
        let b = ResourceVector::new().with(ResourceKind::Cpu, 200);
        let sum = a.checked_add(&b).unwrap();
        assert_eq!(sum.get(&ResourceKind::Cpu), 700);
        assert_eq!(sum.checked_sub(&b).unwrap(), a);
        assert!(b.fits_within(&a));
        assert!(!a.fits_within(&b));
        let err = b.checked_sub(&a).unwrap_err();
        assert!(matches!(err, ResourceError::Underflow { .. }));
        let max = ResourceVector::new().with(ResourceKind::Cpu, u64::MAX);
        assert!(matches!(max.checked_add(&b), Err(ResourceError::Overflow { .. })));
        // Zero amounts are not stored, so equality is by amounts only.
        assert_eq!(a.checked_sub(&a).unwrap(), ResourceVector::new());
    }

    #[test]
    fn kinds_parse_from_names_and_unknown_names_are_custom() {
        for k in [
            ResourceKind::Cpu,
            ResourceKind::Memory,
            ResourceKind::Gpu,
            ResourceKind::LlmRequests,
            ResourceKind::InputTokens,
            ResourceKind::OutputTokens,
            ResourceKind::Cost,
        ] {
            assert_eq!(k.name().parse::<ResourceKind>().unwrap(), k);
        }
        assert_eq!(
            "vector_searches".parse::<ResourceKind>().unwrap(),
            ResourceKind::Custom("vector_searches".into())
        );
    }

    #[test]
    fn machine_capacity_has_cpu_and_reads_meminfo() {
        assert!(machine_capacity().get(&ResourceKind::Cpu) >= 1000);
        assert_eq!(
            mem_total_bytes("MemTotal:       16384 kB\nMemFree: 1 kB\n"),
            Some(16384 * 1024)
        );
        assert_eq!(mem_total_bytes("MemFree: 1 kB\n"), None);
        assert_eq!(mem_total_bytes("MemTotal: lots kB\n"), None);
        assert_eq!(mem_total_bytes("MemTotal: 12 MB\n"), None);
    }

    #[test]
    fn implied_qos_follows_kubernetes_rules() {
        assert_eq!(ResourceProfile::best_effort().implied_qos(), QosClass::BestEffort);
        let r = ResourceVector::new().with(ResourceKind::Cpu, 100);
        assert_eq!(
            ResourceProfile::guaranteed(r.clone()).implied_qos(),
            QosClass::Guaranteed
        );
        let l = ResourceVector::new().with(ResourceKind::Cpu, 400);
        assert_eq!(ResourceProfile::burstable(r, l).implied_qos(), QosClass::Burstable);
    }
}
