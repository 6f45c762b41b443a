//! Pools grow and shrink at run time; a shrinking pool's retired workers
//! handle every message they admitted before they stop.

use crate::support::agents as support;

use std::collections::HashSet;
use std::sync::Arc;

use nexus_swarm::prelude::*;
use support::{Recorder, TIMEOUT, collect, tagged};
use tokio::sync::{Semaphore, mpsc};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shrinking_under_load_handles_every_admitted_message_exactly_once() {
    let node = Node::start(NexusConfig::default()).await.unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let pool = node
        .spawn_pool("workers", 4, Recorder::new(tx).gated(Arc::clone(&gate)))
        .await
        .unwrap();
    assert_eq!(pool.size(), 4);

    // Fill all four workers' lanes while they are held.
    for id in 0..2_000 {
        pool.send(tagged(id, Priority::Normal), Priority::Normal).await.unwrap();
    }
    let queued: usize = pool.members().iter().map(|w| w.depth(Priority::Normal)).sum::<usize>();
    assert!(queued >= 1_996, "held workers keep their messages queued: {queued}");

    // Shrink to one while more messages keep arriving from a producer.
    let resize = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.resize(1).await })
    };
    let producer = {
        let pool = pool.clone();
        tokio::spawn(async move {
            for id in 2_000..3_000 {
                pool.send(tagged(id, Priority::Normal), Priority::Normal).await.unwrap();
            }
        })
    };
    gate.add_permits(3_000);
    producer.await.unwrap();
    assert_eq!(
        tokio::time::timeout(TIMEOUT, resize).await.unwrap().unwrap().unwrap(),
        1
    );
    assert_eq!(pool.size(), 1);

    let got = collect(&mut rx, 3_000).await;
    let ids: HashSet<u64> = got.iter().map(|m| m.id).collect();
    assert_eq!(ids.len(), 3_000, "every admitted message handled exactly once");
    let stats = pool.stats().await.unwrap();
    assert_eq!((stats.size, stats.retiring), (1, 0));
    node.shutdown(TIMEOUT).await;
}

#[tokio::test]
async fn growing_adds_workers_that_take_traffic() {
    let node = Node::start(NexusConfig::default()).await.unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let pool = node.spawn_pool("grow", 1, Recorder::new(tx)).await.unwrap();
    assert_eq!(pool.resize(3).await.unwrap(), 3);
    assert_eq!(pool.members().len(), 3);
    for id in 0..300 {
        pool.send(tagged(id, Priority::Low), Priority::Low).await.unwrap();
    }
    collect(&mut rx, 300).await;
    let per_worker: Vec<u64> = pool.members().iter().map(|w| w.handled()).collect();
    assert!(
        per_worker.iter().all(|&n| n > 0),
        "all workers took traffic: {per_worker:?}"
    );
    node.shutdown(TIMEOUT).await;
}

#[tokio::test]
async fn invalid_sizes_are_refused_and_change_nothing() {
    let node = Node::start(NexusConfig::default()).await.unwrap();
    let (tx, _rx) = mpsc::unbounded_channel();
    let pool = node.spawn_pool("fixed", 2, Recorder::new(tx)).await.unwrap();
    assert!(matches!(pool.resize(0).await, Err(PoolError::ZeroSize(0))));
    assert!(matches!(pool.resize(usize::MAX).await, Err(PoolError::TooLarge { .. })));
    assert_eq!(pool.size(), 2);
    node.shutdown(TIMEOUT).await;
}

#[tokio::test]
async fn a_panicking_pool_worker_is_restarted_with_its_lanes() {
    let node = Node::start(NexusConfig::default()).await.unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let pool = node
        .spawn_pool("p", 1, Recorder::new(tx).gated(Arc::clone(&gate)).panicking_on(&[2]))
        .await
        .unwrap();
    for id in 1..=4 {
        pool.try_send(tagged(id, Priority::Normal), Priority::Normal).unwrap();
    }
    gate.add_permits(4);
    let ids: Vec<u64> = collect(&mut rx, 3).await.iter().map(|m| m.id).collect();
    assert_eq!(ids, vec![1, 3, 4]);
    assert_eq!(pool.stats().await.unwrap().restarts, 1);
    node.shutdown(TIMEOUT).await;
}

#[tokio::test(start_paused = true)]
async fn a_worker_that_fails_before_reading_its_retire_request_still_retires() {
    // Worker 1 is parked in message 10 with 11..=13 behind it when the pool
    // shrinks to one; message 11 panics before the worker reads the retire
    // request. The restarted worker must keep retiring: handle 12 and 13,
    // stop, and let the resize return.
    let node = Node::start(NexusConfig::default()).await.unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (entered_tx, entered_rx) = tokio::sync::oneshot::channel();
    let pool = node
        .spawn_pool(
            "shrinking",
            2,
            Recorder::new(tx)
                .gated(Arc::clone(&gate))
                .panicking_on(&[11])
                .signal_entry(entered_tx),
        )
        .await
        .unwrap();
    let worker1 = pool.members()[1].clone();
    worker1
        .try_send(tagged(10, Priority::Normal), Priority::Normal)
        .unwrap();
    tokio::time::timeout(TIMEOUT, entered_rx).await.unwrap().unwrap();
    for id in 11..=13 {
        worker1
            .try_send(tagged(id, Priority::Normal), Priority::Normal)
            .unwrap();
    }
    let resize = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.resize(1).await })
    };
    tokio::task::yield_now().await;
    // Stats are answered in order, so the shrink has been handled.
    assert_eq!(pool.stats().await.unwrap().retiring, 1);
    gate.add_permits(4);
    let resized = tokio::time::timeout(TIMEOUT, resize)
        .await
        .expect("the resize must return once the retired worker has drained")
        .unwrap()
        .unwrap();
    assert_eq!(resized, 1);
    let ids: Vec<u64> = collect(&mut rx, 3).await.iter().map(|m| m.id).collect();
    assert_eq!(ids, vec![10, 12, 13]);
    assert_eq!(pool.stats().await.unwrap().retiring, 0);
    assert!(worker1.is_closed());
    node.shutdown(TIMEOUT).await;
}
