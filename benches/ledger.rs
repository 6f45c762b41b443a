//! Committed usage records per second through the cost ledger, with group
//! commit (every record acknowledged only after its transaction is durable).
//!
//! `cargo bench --bench ledger` (quick run: add
//! `-- --warm-up-time 1 --measurement-time 3`). Each iteration submits a
//! wave of records at once and waits for every acknowledgement; criterion's
//! throughput is records/s. `group_commit_1` commits each record alone, for
//! comparison; `sequential` waits for each record before sending the next.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use futures::future::join_all;
use nexus_swarm::actors::cost_ledger::{
    Budget, BudgetAction, BudgetPeriod, CostLedger, CostLedgerArgs, LedgerOptions, ModelRates,
};
use nexus_swarm::runtime::resources::ResourceKind;
use nexus_swarm::runtime::usage::UsageMeta;

fn bench_ledger(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("ledger");
    group.sample_size(10);
    for (name, group_commit_max, wave, concurrent) in [
        ("group_commit_1024", 1024u32, 1000usize, true),
        ("group_commit_1", 1, 200, true),
        ("sequential", 1024, 50, false),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (actor, ledger) = rt.block_on(async {
            let options = LedgerOptions {
                group_commit_max,
                ..LedgerOptions::new(dir.path())
            };
            let (actor, ledger) = CostLedger::spawn_unsupervised(CostLedgerArgs::open(options).await.unwrap())
                .await
                .unwrap();
            ledger
                .set_model_price("m", ModelRates::new(150_000, 600_000, 0).unwrap())
                .await
                .unwrap();
            ledger
                .put_budget(Budget::new("all", 1 << 50, BudgetPeriod::Daily, BudgetAction::Alert))
                .await
                .unwrap();
            (actor, ledger)
        });
        group.throughput(Throughput::Elements(wave as u64));
        group.bench_function(BenchmarkId::new("committed_records", name), |b| {
            b.to_async(&rt).iter(|| {
                let ledger = ledger.clone();
                async move {
                    let meta = UsageMeta::default().tenant("t").model("m");
                    if concurrent {
                        let acks = join_all(
                            (0..wave).map(|_| ledger.track_usage(ResourceKind::InputTokens, 1000, meta.clone())),
                        )
                        .await;
                        assert!(acks.iter().all(Result::is_ok));
                    } else {
                        for _ in 0..wave {
                            ledger
                                .track_usage(ResourceKind::InputTokens, 1000, meta.clone())
                                .await
                                .unwrap();
                        }
                    }
                }
            });
        });
        rt.block_on(async {
            let _ = tokio::time::timeout(Duration::from_secs(10), actor.stop_and_wait(None, None)).await;
        });
        drop(ledger);
    }
    group.finish();
}

// criterion's macros generate undocumented public functions.
#[allow(missing_docs, unreachable_pub)]
mod harness {
    use super::*;
    criterion_group!(benches, bench_ledger);
}
criterion_main!(harness::benches);
