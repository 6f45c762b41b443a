//! Node shutdown retires every agent: admitted messages are handled first,
//! and an agent stuck in a handler cannot hang the shutdown past its timeout.

use crate::support::agents as support;

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
    // It never read its retire request, yet its lanes are closed: the killed
    // node will not handle anything sent to it.
    assert!(matches!(
        stuck.try_send(tagged(2, Priority::Normal), Priority::Normal),
        Err(SendError::Closed(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn an_agent_that_panics_while_draining_at_shutdown_still_handles_the_rest() {
    // The agent is parked in message 1 with 2..=5 admitted behind it when the
    // shutdown asks it to retire; message 3 panics before the agent has even
    // read the retire request. The restarted instance must finish the job.
    let node = Arc::new(Node::start(NexusConfig::default()).await.unwrap());
    let gate = Arc::new(Semaphore::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (entered_tx, entered_rx) = oneshot::channel();
    let a = node
        .spawn_agent(
            "fragile",
            Recorder::new(tx)
                .gated(Arc::clone(&gate))
                .panicking_on(&[3])
                .signal_entry(entered_tx),
        )
        .await
        .unwrap();
    a.try_send(tagged(1, Priority::Normal), Priority::Normal).unwrap();
    tokio::time::timeout(TIMEOUT, entered_rx).await.unwrap().unwrap();
    for id in 2..=5 {
        a.try_send(tagged(id, Priority::Normal), Priority::Normal).unwrap();
    }
    let shutdown = {
        let node = Arc::clone(&node);
        tokio::spawn(async move { node.shutdown(TIMEOUT).await })
    };
    // Let the shutdown task send its request; the supervisor answers in
    // order, so once `children` returns the shutdown has been handled.
    tokio::task::yield_now().await;
    node.children().await;
    gate.add_permits(5);
    let ids: Vec<u64> = collect(&mut rx, 4).await.iter().map(|m| m.id).collect();
    assert_eq!(ids, vec![1, 2, 4, 5], "only the panicking message is not handled");
    assert_eq!(shutdown.await.unwrap(), NodeExit::Shutdown);
    assert!(a.is_closed());
}

#[tokio::test(start_paused = true)]
async fn two_concurrent_shutdowns_both_drain_gracefully() {
    let node = Arc::new(Node::start(NexusConfig::default()).await.unwrap());
    let gate = Arc::new(Semaphore::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (entered_tx, entered_rx) = oneshot::channel();
    let a = node
        .spawn_agent(
            "busy",
            Recorder::new(tx).gated(Arc::clone(&gate)).signal_entry(entered_tx),
        )
        .await
        .unwrap();
    a.try_send(tagged(1, Priority::Normal), Priority::Normal).unwrap();
    tokio::time::timeout(TIMEOUT, entered_rx).await.unwrap().unwrap();
    for id in 2..=4 {
        a.try_send(tagged(id, Priority::Normal), Priority::Normal).unwrap();
    }
    let shutdowns: Vec<_> = (0..2)
        .map(|_| {
            let node = Arc::clone(&node);
            tokio::spawn(async move { node.shutdown(TIMEOUT).await })
        })
        .collect();
    tokio::task::yield_now().await;
    node.children().await;
    gate.add_permits(4);
    let ids: Vec<u64> = collect(&mut rx, 4).await.iter().map(|m| m.id).collect();
    assert_eq!(
        ids,
        vec![1, 2, 3, 4],
        "a second shutdown must not kill the first one's drain"
    );
    for s in shutdowns {
        assert_eq!(s.await.unwrap(), NodeExit::Shutdown);
    }
}

#[tokio::test(start_paused = true)]
async fn a_second_waiter_keeps_waiting_while_the_node_runs() {
    let node = Arc::new(Node::start(NexusConfig::default()).await.unwrap());
    let first = {
        let node = Arc::clone(&node);
        tokio::spawn(async move { node.wait().await })
    };
    tokio::task::yield_now().await;
    assert!(
        tokio::time::timeout(Duration::from_secs(1), node.wait()).await.is_err(),
        "the node is running: wait must not return"
    );
    assert_eq!(node.shutdown(TIMEOUT).await, NodeExit::Shutdown);
    assert_eq!(first.await.unwrap(), NodeExit::Shutdown);
}

#[tokio::test(start_paused = true)]
async fn shutdown_retires_a_pool_whose_workers_hold_queued_messages() {
    let node = Arc::new(Node::start(NexusConfig::default()).await.unwrap());
    let gate = Arc::new(Semaphore::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let pool = node
        .spawn_pool("held", 3, Recorder::new(tx).gated(Arc::clone(&gate)))
        .await
        .unwrap();
    for id in 0..30 {
        pool.try_send(tagged(id, Priority::Normal), Priority::Normal).unwrap();
    }
    let shutdown = {
        let node = Arc::clone(&node);
        tokio::spawn(async move { node.shutdown(TIMEOUT).await })
    };
    tokio::task::yield_now().await;
    node.children().await;
    // The pool answers in order: once stats return, it has closed its workers.
    let _ = pool.stats().await;
    assert!(matches!(
        pool.try_send(tagged(99, Priority::Normal), Priority::Normal),
        Err(SendError::Closed(_))
    ));
    gate.add_permits(30);
    let mut ids: Vec<u64> = collect(&mut rx, 30).await.iter().map(|m| m.id).collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..30).collect::<Vec<_>>());
    assert_eq!(shutdown.await.unwrap(), NodeExit::Shutdown);
}
