//! A ledger restarted by its supervisor after a panic keeps its writer (no
//! second one beside it) and every handle reaches the new actor.

use std::sync::Arc;
use std::time::Duration;

use nexus_swarm_runtime::config::NexusConfig;
use nexus_swarm_runtime::node::Node;
use nexus_swarm_runtime::resources::ResourceKind;
use nexus_swarm_runtime::usage::UsageMeta;

use crate::cost_ledger::{
    Budget, BudgetAction, BudgetPeriod, CostLedger, CostLedgerArgs, LedgerError, LedgerOptions, TimeRange,
};

const TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_ledger_restarted_after_a_panic_keeps_its_writer_and_handles() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(NexusConfig::default()).await.unwrap();
    let args = CostLedgerArgs::open(LedgerOptions::new(dir.path())).await.unwrap();
    let ledger = CostLedger::start(&node, "ledger", args).await.unwrap();
    let first = ledger.shared.actor.load_full().expect("running").get_id();
    let queue = ledger.shared.writer.load_full().expect("a writer queue");
    let writer = ledger
        .shared
        .writer_task
        .lock()
        .as_ref()
        .expect("a writer")
        .abort_handle();
    let before = ledger
        .track_usage(ResourceKind::Cost, 5, UsageMeta::default())
        .await
        .unwrap();

    ledger.inject_panic().unwrap();
    tokio::time::timeout(TIMEOUT, async {
        while node.system_children().await[0].restarts == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the ledger is restarted");
    let second = ledger.shared.actor.load_full().expect("running again").get_id();
    assert_ne!(second, first, "handles reach the new actor");
    // The same writer and queue: none was started beside them.
    assert!(Arc::ptr_eq(&queue, &ledger.shared.writer.load_full().unwrap()));
    let kept = ledger.shared.writer_task.lock().as_ref().unwrap().abort_handle();
    assert_eq!(kept.id(), writer.id());
    assert!(!writer.is_finished());
    drop(queue);

    let after = ledger
        .track_usage(ResourceKind::Cost, 7, UsageMeta::default())
        .await
        .unwrap();
    ledger
        .put_budget(Budget::new("b", 1_000, BudgetPeriod::Daily, BudgetAction::Alert))
        .await
        .unwrap();
    assert_eq!(ledger.budget_status("b").unwrap().spent_micro_usd, 12);
    let ids: Vec<u64> = ledger
        .records(TimeRange::all())
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, [before.id, after.id]);

    node.shutdown(TIMEOUT).await;
    // A clean stop ends the writer, once it has committed what it queued.
    assert!(writer.is_finished());
    assert_eq!(
        ledger.track_usage(ResourceKind::Cost, 1, UsageMeta::default()).await,
        Err(LedgerError::Unavailable)
    );
}
