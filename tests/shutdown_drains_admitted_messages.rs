//! Node shutdown retires every agent: admitted messages are handled first,
//! and an agent stuck in a handler cannot hang the shutdown past its timeout.

#[path = "support/agents.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use nexus_swarm::prelude::*;
use support::{Recorder, TIMEOUT, collect, tagged};
use tokio::sync::{Semaphore, mpsc, oneshot};

#[tokio::test]
async fn shutdown_handles_what_was_admitted_and_a_stuck_agent_is_killed_at_the_timeout() {
    let node = Node::start(NexusConfig::default()).await.unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (entered_tx, entered_rx) = oneshot::channel();
    let a = node
        .spawn_agent(
            "slow",
            Recorder::new(tx).gated(Arc::clone(&gate)).signal_entry(entered_tx),
        )
        .await
        .unwrap();
    a.try_send(tagged(1, Priority::Normal), Priority::Normal).unwrap();
    tokio::time::timeout(TIMEOUT, entered_rx).await.unwrap().unwrap();
    for id in 2..=5 {
        a.try_send(tagged(id, Priority::Low), Priority::Low).unwrap();
    }
    // Graceful: the admitted messages are handled before the agent stops.
    let shutdown = tokio::spawn(async move { node.shutdown(TIMEOUT).await });
    gate.add_permits(5);
    assert_eq!(shutdown.await.unwrap(), NodeExit::Shutdown);
    let ids: Vec<u64> = collect(&mut rx, 5).await.iter().map(|m| m.id).collect();
    assert_eq!(ids, vec![1, 2, 3, 4, 5]);
    assert!(matches!(
        a.try_send(tagged(6, Priority::Low), Priority::Low),
        Err(SendError::Closed(_))
    ));

    // Stuck: a handler that never finishes does not hang the shutdown.
    let node = Node::start(NexusConfig::default()).await.unwrap();
    let (tx, _rx) = mpsc::unbounded_channel();
    let stuck = node
        .spawn_agent("stuck", Recorder::new(tx).gated(Arc::new(Semaphore::new(0))))
        .await
        .unwrap();
    stuck.try_send(tagged(1, Priority::Normal), Priority::Normal).unwrap();
    let exit = tokio::time::timeout(TIMEOUT, node.shutdown(Duration::from_millis(200))).await;
    assert_eq!(exit.expect("shutdown must not hang"), NodeExit::Shutdown);
}
