//! Hot-path primitives timed in a tight loop (ns per operation).

use std::hint::black_box;
use std::time::Instant;

use nexus_swarm_actors::quota_keeper::{MAX_QUOTA_AMOUNT, QuotaClock, QuotaHandle, QuotaSpec, QuotaTable};
use nexus_swarm_runtime::resources::ResourceKind;
use nexus_swarm_runtime::routing::{HashRing, RoutingKey};

/// Mean ns per lookup on a 1,000-member ring with 160 virtual nodes each,
/// over `n` distinct precomputed keys (so the key hash is not timed).
pub(crate) fn ring_lookup_ns(n: u64) -> anyhow::Result<f64> {
    let names: Vec<String> = (0..1_000).map(|i| format!("node-{i}")).collect();
    let ring = HashRing::new(&names, 160)?;
    let keys: Vec<RoutingKey> = (0..4096u64).map(RoutingKey::from_id).collect();
    let mut sink = 0usize;
    let started = Instant::now();
    for i in 0..n {
        let key = &keys[(i as usize) & 4095];
        sink = sink.wrapping_add(black_box(ring.lookup(black_box(key))).unwrap_or(0));
    }
    let elapsed = started.elapsed();
    black_box(sink);
    Ok(elapsed.as_nanos() as f64 / n as f64)
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

/// Mean ns per uncontended `try_consume` of one unit by quota name on the
/// 3-level tree (every level charged, all or nothing).
pub(crate) fn quota_charge_ns(n: u64) -> anyhow::Result<f64> {
    let (_table, quotas) = quota_tree()?;
    let started = Instant::now();
    for _ in 0..n {
        quotas.try_consume(black_box("agent"), black_box(1))?;
    }
    let elapsed = started.elapsed();
    Ok(elapsed.as_nanos() as f64 / n as f64)
}
