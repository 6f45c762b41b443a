//! The cost ledger as a node's supervised child: started from the node's
//! configuration with `CostLedger::start`, tracking usage through its
//! handle, and sending budget events to an actor subscribed to its ractor
//! output port.

use std::time::Duration;

use nexus_swarm::actors::cost_ledger::*;
use nexus_swarm::runtime::config::NexusConfig;
use nexus_swarm::runtime::node::Node;
use nexus_swarm::runtime::resources::ResourceKind;
use nexus_swarm::runtime::usage::UsageMeta;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::mpsc;

const TIMEOUT: Duration = Duration::from_secs(30);

/// Forwards every budget event it receives to a channel.
struct Listener;

impl Actor for Listener {
    type Msg = BudgetEvent;
    type State = mpsc::UnboundedSender<BudgetEvent>;
    type Arguments = mpsc::UnboundedSender<BudgetEvent>;

    async fn pre_start(&self, _: ActorRef<Self::Msg>, tx: Self::Arguments) -> Result<Self::State, ActorProcessingErr> {
        Ok(tx)
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        e: BudgetEvent,
        tx: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let _ = tx.send(e);
        Ok(())
    }
}

#[tokio::test]
async fn a_supervised_ledger_tracks_usage_and_publishes_budget_events_to_actors() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = NexusConfig::default();
    config.node.data_dir = dir.path().to_path_buf();
    config.ledger.group_commit_max = 64;
    let node = Node::start(config).await.unwrap();
    let args = CostLedgerArgs::open(LedgerOptions::from_config(node.config()))
        .await
        .unwrap();
    let ledger = CostLedger::start(&node, "cost-ledger", args).await.unwrap();
    let children = node.system_children().await;
    assert_eq!(children.len(), 1);
    assert_eq!(children[0].name, "cost-ledger");

    let (tx, mut rx) = mpsc::unbounded_channel();
    let (listener, _) = Actor::spawn(None, Listener, tx).await.unwrap();
    ledger.budgets().events_port().subscribe(listener.clone(), Some);

    ledger
        .put_budget(Budget::new("daily", 100, BudgetPeriod::Daily, BudgetAction::Alert))
        .await
        .unwrap();
    let ack = ledger
        .track_usage(ResourceKind::Cost, 60, UsageMeta::default().tenant("t"))
        .await
        .unwrap();
    assert_eq!(ack.cost_micro_usd, 60);
    let e = tokio::time::timeout(TIMEOUT, rx.recv()).await.unwrap().unwrap();
    assert_eq!(e.kind, BudgetEventKind::Threshold { percent: 50 });
    assert_eq!((e.budget.as_str(), e.spent_micro_usd), ("daily", 60));
    assert!(dir.path().join(STORE_FILE).is_file());

    listener.stop(None);
    node.shutdown(TIMEOUT).await;
}
