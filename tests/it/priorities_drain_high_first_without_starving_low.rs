//! High drains before normal before low, and aging keeps lower lanes
//! moving under sustained higher-priority load.

use crate::support::agents as support;

use std::sync::Arc;

use nexus_swarm::prelude::*;
use support::{Recorder, TIMEOUT, Tagged, collect, tagged};
use tokio::sync::{Semaphore, mpsc, oneshot};

async fn parked(aging_after: u32) -> (Node, AgentRef<Tagged>, Arc<Semaphore>, mpsc::UnboundedReceiver<Tagged>) {
    let mut cfg = NexusConfig::default();
    cfg.mailbox.aging_after = aging_after;
    let node = Node::start(cfg).await.unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let (tx, rx) = mpsc::unbounded_channel();
    let (entered_tx, entered_rx) = oneshot::channel();
    let a = node
        .spawn_agent(
            "prio",
            Recorder::new(tx).gated(Arc::clone(&gate)).signal_entry(entered_tx),
        )
        .await
        .unwrap();
    // Park the agent inside message 0 so the lanes fill up behind it.
    a.try_send(tagged(0, Priority::Low), Priority::Low).unwrap();
    tokio::time::timeout(TIMEOUT, entered_rx).await.unwrap().unwrap();
    (node, a, gate, rx)
}

#[tokio::test]
async fn high_drains_before_normal_before_low() {
    let (node, a, gate, mut rx) = parked(1_000).await;
    for id in 1..=10 {
        a.try_send(tagged(id, Priority::Low), Priority::Low).unwrap();
    }
    for id in 11..=20 {
        a.try_send(tagged(id, Priority::Normal), Priority::Normal).unwrap();
    }
    for id in 21..=30 {
        a.try_send(tagged(id, Priority::High), Priority::High).unwrap();
    }
    gate.add_permits(31);
    let order: Vec<Priority> = collect(&mut rx, 31).await[1..].iter().map(|m| m.priority).collect();
    let expected: Vec<Priority> = [Priority::High; 10]
        .into_iter()
        .chain([Priority::Normal; 10])
        .chain([Priority::Low; 10])
        .collect();
    assert_eq!(order, expected);
    node.shutdown(TIMEOUT).await;
}

#[tokio::test]
async fn aging_serves_normal_and_low_under_sustained_high_load() {
    let (node, a, gate, mut rx) = parked(8).await;
    for id in 1..=10 {
        a.try_send(tagged(id, Priority::Low), Priority::Low).unwrap();
    }
    for id in 11..=20 {
        a.try_send(tagged(id, Priority::Normal), Priority::Normal).unwrap();
    }
    for id in 100..400 {
        a.try_send(tagged(id, Priority::High), Priority::High).unwrap();
    }
    gate.add_permits(321);
    let got = collect(&mut rx, 321).await;
    let order: Vec<Priority> = got[1..].iter().map(|m| m.priority).collect();
    // Every lower message is served while high messages are still waiting.
    let last_low = order.iter().rposition(|p| *p == Priority::Low).unwrap();
    let last_normal = order.iter().rposition(|p| *p == Priority::Normal).unwrap();
    let last_high = order.iter().rposition(|p| *p == Priority::High).unwrap();
    assert!(
        last_low < last_high && last_normal < last_high,
        "lower lanes starved: {order:?}"
    );
    // And high still dominates: 8 high for each aged normal/low pair.
    assert_eq!(&order[..8], &[Priority::High; 8]);
    assert_eq!(&order[8..10], &[Priority::Normal, Priority::Low]);
    // Within a lane, order is FIFO.
    let lows: Vec<u64> = got
        .iter()
        .filter(|m| m.priority == Priority::Low && m.id != 0)
        .map(|m| m.id)
        .collect();
    assert_eq!(lows, (1..=10).collect::<Vec<_>>());
    node.shutdown(TIMEOUT).await;
}
