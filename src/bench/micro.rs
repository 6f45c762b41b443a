//! Hot-path primitives timed in a tight loop (ns per operation).

use std::hint::black_box;
use std::time::Instant;

use nexus_swarm_actors::quota_keeper::{MAX_QUOTA_AMOUNT, QuotaClock, QuotaError, QuotaHandle, QuotaSpec, QuotaTable};
use nexus_swarm_runtime::resources::ResourceKind;
use nexus_swarm_runtime::routing::{HashRing, RoutingKey};

/// Mean ns per lookup on a 1,000-member ring with 160 virtual nodes each,
/// cycling over `distinct` precomputed keys (so the key hash is not timed,
/// but each lookup lands on an unrelated part of the ring; a million keys
/// are far more than any cache holds).
pub(crate) fn ring_lookup_ns(n: u64, distinct: usize) -> anyhow::Result<f64> {
    let names: Vec<String> = (0..1_000).map(|i| format!("node-{i}")).collect();
    let ring = HashRing::new(&names, 160)?;
    let keys: Vec<RoutingKey> = (0..distinct.max(1) as u64).map(RoutingKey::from_id).collect();
    let mut sink = 0usize;
    let mut next = 0usize;
    let started = Instant::now();
    for _ in 0..n {
        sink = sink.wrapping_add(black_box(ring.lookup(black_box(&keys[next]))).unwrap_or(0));
        next += 1;
        if next == keys.len() {
            next = 0;
        }
    }
    let elapsed = started.elapsed();
    black_box(sink);
    Ok(elapsed.as_nanos() as f64 / n as f64)
}

/// Charges `amount` to `quota` through the quota handle: the product's
/// data-plane call, and the one place in the benchmark that spells it, so
/// that a change of its call shape is made here only. The receipt is
/// dropped, which keeps the charge (the usage happened).
#[inline]
pub(crate) fn charge(quotas: &QuotaHandle, quota: &str, amount: u64) -> Result<(), QuotaError> {
    quotas.try_consume(quota, amount).map(drop)
}

/// A 3-level quota tree (system > tenant > agent) with limits high enough
/// never to refuse, and a handle to charge it.
pub(crate) fn quota_tree() -> anyhow::Result<(QuotaTable, QuotaHandle)> {
    let mut table = QuotaTable::new(QuotaClock::tokio());
    table.define_all(vec![
        QuotaSpec::root("system", ResourceKind::LlmRequests, MAX_QUOTA_AMOUNT),
        QuotaSpec::child("tenant", "system", ResourceKind::LlmRequests, MAX_QUOTA_AMOUNT),
        QuotaSpec::child("agent", "tenant", ResourceKind::LlmRequests, MAX_QUOTA_AMOUNT),
    ])?;
    let handle = table.handle();
    Ok((table, handle))
}

/// Mean ns per uncontended charge of one unit by quota name through
/// [`QuotaHandle`] on the 3-level tree (every level charged, all or nothing).
pub(crate) fn quota_charge_ns(n: u64) -> anyhow::Result<f64> {
    let (_table, quotas) = quota_tree()?;
    let started = Instant::now();
    for _ in 0..n {
        black_box(charge(&quotas, black_box("agent"), black_box(1)))?;
    }
    let elapsed = started.elapsed();
    Ok(elapsed.as_nanos() as f64 / n as f64)
}
