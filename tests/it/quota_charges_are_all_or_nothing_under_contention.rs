//! Several threads hammer `try_consume` and the release or settlement of
//! its receipts on a 3-level quota tree with borrowing: at the end every
//! level's usage is exactly the sum of the successful charges made through
//! it minus what their receipts gave back, and no level is ever seen above
//! its limit plus what it may borrow.

use std::collections::HashMap;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};

use nexus_swarm::actors::quota_keeper::{QuotaCharge, QuotaError, QuotaKeeper, QuotaKeeperArgs, QuotaSpec};
use nexus_swarm::runtime::resources::ResourceKind::Cost;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const THREADS: u64 = 4;
const OPS_PER_THREAD: usize = 20_000;

/// (id, parent, limit, borrow ceiling)
const TREE: [(&str, Option<&str>, u64, u64); 6] = [
    ("system", None, 100_000, 0),
    ("tenant-a", Some("system"), 60_000, 20_000),
    ("tenant-b", Some("system"), 50_000, 0),
    ("agent-a1", Some("tenant-a"), 30_000, 10_000),
    ("agent-a2", Some("tenant-a"), 30_000, 10_000),
    ("agent-b1", Some("tenant-b"), 40_000, 15_000),
];

fn path(quota: &str) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut cur = Some(quota);
    while let Some(q) = cur {
        let (id, parent, _, _) = TREE.iter().find(|t| t.0 == q).copied().expect("known quota");
        out.push(id);
        cur = parent;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_charges_are_all_or_nothing_under_contention() {
    let specs = TREE
        .iter()
        .map(|&(id, parent, limit, ceiling)| match parent {
            None => QuotaSpec::root(id, Cost, limit),
            Some(p) => QuotaSpec::child(id, p, Cost, limit).borrow_ceiling(ceiling),
        })
        .collect();
    let args = QuotaKeeperArgs::default().with_quotas(specs).unwrap();
    let (quotas, _join) = QuotaKeeper::spawn_unsupervised(args).await.unwrap();
    let targets = ["agent-a1", "agent-a2", "agent-b1", "tenant-a", "tenant-b"];

    let done = AtomicBool::new(false);
    let start = Barrier::new(THREADS as usize + 1);
    let (per_thread, samples) = std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            start.wait();
            let mut samples = 0u64;
            while !done.load(Ordering::Acquire) {
                for r in quotas.reports() {
                    assert!(
                        r.current <= r.limit + r.borrow_ceiling,
                        "{} at {} above limit {} + ceiling {}",
                        r.id,
                        r.current,
                        r.limit,
                        r.borrow_ceiling
                    );
                }
                samples += 1;
            }
            samples
        });
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (quotas, start) = (&quotas, &start);
                s.spawn(move || {
                    let mut rng = StdRng::seed_from_u64(0x5eed + t);
                    let mut held: Vec<(&str, QuotaCharge)> = Vec::new();
                    let mut net: HashMap<&str, i64> = HashMap::new();
                    let (mut admitted, mut refused) = (0u64, 0u64);
                    start.wait();
                    for _ in 0..OPS_PER_THREAD {
                        if !held.is_empty() && rng.random_ratio(1, 4) {
                            let (q, charge) = held.swap_remove(rng.random_range(0..held.len()));
                            // Half the time released whole, else settled at part of it.
                            let used = if rng.random_bool(0.5) {
                                0
                            } else {
                                rng.random_range(0..=charge.amount())
                            };
                            let back = charge.amount() - used;
                            quotas.settle(charge, used).expect("settling an own charge");
                            *net.entry(q).or_default() -= back as i64;
                            continue;
                        }
                        let q = targets[rng.random_range(0..targets.len())];
                        let amount = rng.random_range(1..=500);
                        match quotas.try_consume(q, amount) {
                            Ok(charge) => {
                                admitted += 1;
                                held.push((q, charge));
                                *net.entry(q).or_default() += amount as i64;
                            }
                            Err(QuotaError::Exhausted { .. } | QuotaError::BorrowRecalled { .. }) => refused += 1,
                            Err(e) => panic!("unexpected {e}"),
                        }
                    }
                    (net, admitted, refused)
                })
            })
            .collect();
        let results: Vec<_> = workers.into_iter().map(|w| w.join().expect("worker")).collect();
        done.store(true, Ordering::Release);
        (results, sampler.join().expect("sampler"))
    });

    let mut expected: HashMap<&str, i64> = HashMap::new();
    let (mut admitted, mut refused) = (0, 0);
    for (net, a, r) in per_thread {
        admitted += a;
        refused += r;
        for (q, amount) in net {
            for level in path(q) {
                *expected.entry(level).or_default() += amount;
            }
        }
    }
    assert!(
        admitted > 1000 && refused > 1000,
        "both outcomes exercised: {admitted} admitted, {refused} refused"
    );
    assert!(samples > 0);
    for (id, _, limit, ceiling) in TREE {
        let report = quotas.report(id).unwrap();
        let want = expected.get(id).copied().unwrap_or(0);
        assert_eq!(
            report.current as i64, want,
            "{id}: usage is the sum of its successful charges"
        );
        assert!(
            report.current <= limit + ceiling,
            "{id}: {} > {limit} + {ceiling}",
            report.current
        );
        assert!(report.borrowed <= ceiling);
        assert!(report.peak <= limit + ceiling);
    }
}
