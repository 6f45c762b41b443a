//! Hot-path primitives timed in a tight loop (ns per operation).

use std::hint::black_box;
use std::time::Instant;

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
