//! Quota charges and scheduler decisions.
//!
//! `cargo bench --bench quotas -- --warm-up-time 1 --measurement-time 3`
//!
//! - `quota_charge/uncontended/*`: ns per `try_consume` of 1 unit on a
//!   3-level tree (system > tenant > agent), by name and through a
//!   resolved `QuotaRef`.
//! - `quota_charge/2_threads/*`: two threads charging two agents under the
//!   same tenant and system at once (contended on the two upper levels);
//!   the figure is wall time per charge per thread.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use nexus_swarm::actors::quota_keeper::{MAX_QUOTA_AMOUNT, QuotaClock, QuotaHandle, QuotaSpec, QuotaTable};
use nexus_swarm::runtime::resources::ResourceKind::InputTokens;

/// system > tenant > {agent-a, agent-b}, limits high enough never to refuse.
fn tree() -> (QuotaTable, QuotaHandle) {
    let mut table = QuotaTable::new(QuotaClock::tokio());
    table
        .define_all(vec![
            QuotaSpec::root("system", InputTokens, MAX_QUOTA_AMOUNT),
            QuotaSpec::child("tenant", "system", InputTokens, MAX_QUOTA_AMOUNT),
            QuotaSpec::child("agent-a", "tenant", InputTokens, MAX_QUOTA_AMOUNT),
            QuotaSpec::child("agent-b", "tenant", InputTokens, MAX_QUOTA_AMOUNT),
        ])
        .expect("valid tree");
    let handle = table.handle();
    (table, handle)
}

fn two_threads(iters: u64, charge: impl Fn(usize) + Sync) -> Duration {
    let barrier = Barrier::new(2);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|t| {
                let (barrier, charge) = (&barrier, &charge);
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..iters {
                        charge(t);
                    }
                    start.elapsed()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("bench thread"))
            .max()
            .unwrap_or_default()
    })
}

fn quota_charge(c: &mut Criterion) {
    let mut g = c.benchmark_group("quota_charge");
    let (_table, quotas) = tree();
    g.bench_function("uncontended/by_name", |b| {
        b.iter(|| {
            quotas
                .try_consume(black_box("agent-a"), black_box(1))
                .expect("admitted")
        })
    });
    let agent = quotas.resolve("agent-a").expect("defined");
    g.bench_function("uncontended/resolved", |b| {
        b.iter(|| agent.try_consume(black_box(1)).expect("admitted"))
    });
    let names = ["agent-a", "agent-b"];
    g.bench_function("2_threads/by_name", |b| {
        b.iter_custom(|iters| two_threads(iters, |t| quotas.try_consume(black_box(names[t]), 1).expect("admitted")))
    });
    let refs = [
        quotas.resolve("agent-a").expect("a"),
        quotas.resolve("agent-b").expect("b"),
    ];
    g.bench_function("2_threads/resolved", |b| {
        b.iter_custom(|iters| two_threads(iters, |t| refs[t].try_consume(black_box(1)).expect("admitted")))
    });
    g.finish();
}

criterion_group!(benches, quota_charge);
criterion_main!(benches);
