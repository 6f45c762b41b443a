//! Quota charges and scheduler decisions.
//!
//! `cargo bench --bench quotas -- --warm-up-time 1 --measurement-time 3`
//!
//! All quota figures go through the product's data path: a
//! [`QuotaHandle`] taken from the keeper's arguments, as the node builds
//! it, on a 3-level tree (system > tenant > agent).
//!
//! - `quota_charge/uncontended/by_name`: ns per `QuotaHandle::try_consume`
//!   of 1 unit by quota name, its receipt dropped (the charge stays: the
//!   plain charge a caller that keeps its usage makes).
//! - `quota_charge/uncontended/by_name_then_release`: the same charge, then
//!   its receipt released (`QuotaHandle::release`): the round trip of a
//!   hold that is given back.
//! - `quota_charge/uncontended/by_name_then_settle`: the charge of 2 units
//!   settled at 1 (`QuotaHandle::settle`).
//! - `quota_charge/uncontended/resolved`: the charge through a resolved
//!   `QuotaRef` (no lookup by name).
//! - `quota_charge/2_threads/*`: two threads charging two agents under the
//!   same tenant and system at once (contended on the two upper levels);
//!   the figure is wall time per charge per thread.
//! - `scheduler/*`: decisions per second of the synchronous scheduler core
//!   (criterion's `elem/s`): a request plus a release on a pool holding 50
//!   allocations, and the same with 100 reservations waiting, where each
//!   release serves the head of the queue.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use nexus_swarm::actors::quota_keeper::{MAX_QUOTA_AMOUNT, QuotaClock, QuotaHandle, QuotaKeeperArgs, QuotaSpec};
use nexus_swarm::actors::scheduler::{
    AllocationStrategy, Decision, PoolSpec, RequestId, RequesterId, ResourceRequest, SchedulerCore,
};
use nexus_swarm::runtime::resources::ResourceKind::{Cpu, InputTokens, Memory};
use nexus_swarm::runtime::resources::{QosClass, ResourceVector};

/// system > tenant > {agent-a, agent-b}, limits high enough never to
/// refuse, and the data-plane handle a quota keeper started from these
/// arguments would share.
fn tree() -> QuotaHandle {
    QuotaKeeperArgs::new(QuotaClock::tokio())
        .with_quotas(vec![
            QuotaSpec::root("system", InputTokens, MAX_QUOTA_AMOUNT),
            QuotaSpec::child("tenant", "system", InputTokens, MAX_QUOTA_AMOUNT),
            QuotaSpec::child("agent-a", "tenant", InputTokens, MAX_QUOTA_AMOUNT),
            QuotaSpec::child("agent-b", "tenant", InputTokens, MAX_QUOTA_AMOUNT),
        ])
        .expect("valid tree")
        .handle()
}

/// Runs `charge` `iters` times on each of two threads at once (the
/// receipt it returns is dropped: the charge stays).
fn two_threads<R>(iters: u64, charge: impl Fn(usize) -> R + Sync) -> Duration {
    let barrier = Barrier::new(2);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|t| {
                let (barrier, charge) = (&barrier, &charge);
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(charge(t));
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
    let quotas = tree();
    g.bench_function("uncontended/by_name", |b| {
        b.iter(|| {
            quotas
                .try_consume(black_box("agent-a"), black_box(1))
                .expect("admitted")
        })
    });
    g.bench_function("uncontended/by_name_then_release", |b| {
        b.iter(|| {
            let charge = quotas
                .try_consume(black_box("agent-a"), black_box(1))
                .expect("admitted");
            quotas.release(charge).expect("same tree")
        })
    });
    g.bench_function("uncontended/by_name_then_settle", |b| {
        b.iter(|| {
            let charge = quotas
                .try_consume(black_box("agent-a"), black_box(2))
                .expect("admitted");
            quotas.settle(charge, black_box(1)).expect("same tree")
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

fn scheduler(c: &mut Criterion) {
    let mut g = c.benchmark_group("scheduler");
    g.throughput(Throughput::Elements(2));
    let now = tokio::time::Instant::now();
    let vector = |cpu, mem| ResourceVector::new().with(Cpu, cpu).with(Memory, mem);
    for strategy in [
        AllocationStrategy::Priority,
        AllocationStrategy::FairShare,
        AllocationStrategy::BestFit,
    ] {
        let mut core: SchedulerCore<()> = SchedulerCore::new(strategy, None, 10_000);
        for p in 0..4 {
            core.register_pool(PoolSpec::new(format!("pool-{p}"), vector(16_000, 64 << 30)), now)
                .expect("pool");
        }
        for id in 0..50u64 {
            let req = ResourceRequest::new(id, "resident", vector(500, 1 << 30)).tenant(format!("t{}", id % 5));
            core.request(req, (), now).expect("valid");
        }
        let me = RequesterId::new("bench");
        let mut id = 1_000_000u64;
        g.bench_function(format!("request_release/{strategy:?}"), |b| {
            b.iter(|| {
                id += 1;
                let req = ResourceRequest::new(id, "bench", vector(250, 1 << 28)).tenant("bench");
                let (d, _) = core.request(black_box(req), (), now).expect("valid");
                assert!(matches!(d, Decision::Allocated(_)));
                core.release(RequestId(id), &me, now).expect("held");
            })
        });
    }

    // One pool held whole; 100 reservations wait for it. Each iteration the
    // holder releases (serving the head of the queue) and queues again.
    let mut core: SchedulerCore<()> = SchedulerCore::new(AllocationStrategy::Priority, None, 10_000);
    core.register_pool(PoolSpec::new("one", vector(1000, 1 << 30)), now)
        .expect("pool");
    let far = now + Duration::from_secs(1 << 30);
    let whole = || vector(1000, 1 << 30);
    let mut next = 0u64;
    let mut submit = |core: &mut SchedulerCore<()>| {
        next += 1;
        let req = ResourceRequest::new(next, "q", whole())
            .deadline(far)
            .qos(QosClass::Guaranteed);
        core.request(req, (), now).expect("valid");
    };
    for _ in 0..101 {
        submit(&mut core);
    }
    let me = RequesterId::new("q");
    let mut holder = 1u64;
    g.bench_function("release_serves_backlog_of_100", |b| {
        b.iter(|| {
            let (_, notices) = core.release(RequestId(holder), &me, now).expect("held");
            assert_eq!(notices.len(), 1);
            holder += 1;
            submit(&mut core);
        })
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    quota_charge(&mut c);
    scheduler(&mut c);
    c.final_summary();
}
