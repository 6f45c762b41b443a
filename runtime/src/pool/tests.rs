use std::time::Duration;

use tokio::sync::mpsc;

use super::*;
use crate::agent::AgentContext;
use crate::config::NexusConfig;
use crate::error::HandlerError;
use crate::node::Node;

const TIMEOUT: Duration = Duration::from_secs(30);

/// Panics on `true`, reports `false` on its channel.
struct Picky(mpsc::UnboundedSender<usize>);

impl Agent for Picky {
    type Msg = bool;
    type State = ();

    async fn init(&self, _: &AgentContext<bool>) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn handle(&self, ctx: &AgentContext<bool>, fail: bool, _: &mut ()) -> Result<(), HandlerError> {
        assert!(!fail, "asked to fail");
        self.0.send(ctx.worker())?;
        Ok(())
    }
}

#[tokio::test]
async fn worker_restart_counts_survive_a_restart_of_the_pool_actor() {
    let node = Node::start(NexusConfig::default()).await.unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let pool = node.spawn_pool("picky", 2, Picky(tx)).await.unwrap();
    pool.send(true, Priority::Normal).await.unwrap();
    pool.send(true, Priority::Normal).await.unwrap();
    // Both failures restart a worker; a later message shows they are back.
    for _ in 0..4 {
        pool.send(false, Priority::Normal).await.unwrap();
    }
    for _ in 0..4 {
        tokio::time::timeout(TIMEOUT, rx.recv()).await.unwrap().unwrap();
    }
    assert_eq!(pool.stats().await.unwrap().restarts, 2);

    let before = pool.actor().unwrap();
    before.cast(PoolMsg::Fail).unwrap();
    tokio::time::timeout(TIMEOUT, async {
        while pool.actor().ok().map(|a| a.get_id()) == Some(before.get_id()) {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    let stats = pool.stats().await.unwrap();
    assert_eq!(
        stats.restarts, 2,
        "worker restarts are kept across the pool's own restart"
    );
    assert_eq!(stats.size, 2);
    assert_eq!(pool.restarts(), 2);
    let children = node.children().await;
    assert_eq!(children.len(), 1);
    assert_eq!(children[0].restarts, 1, "the pool actor itself restarted once");
    // The re-hosted workers still work.
    pool.send(false, Priority::Normal).await.unwrap();
    tokio::time::timeout(TIMEOUT, rx.recv()).await.unwrap().unwrap();
    assert_eq!(node.shutdown(TIMEOUT).await, crate::supervisor::NodeExit::Shutdown);
}

/// Fails (returns an error) on `true`, reports `false` on its channel.
struct Failing(mpsc::UnboundedSender<usize>);

impl Agent for Failing {
    type Msg = bool;
    type State = ();

    async fn init(&self, _: &AgentContext<bool>) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn handle(&self, ctx: &AgentContext<bool>, fail: bool, _: &mut ()) -> Result<(), HandlerError> {
        if fail {
            return Err("asked to fail".into());
        }
        self.0.send(ctx.worker())?;
        Ok(())
    }
}

#[tokio::test]
async fn handler_stats_record_every_worker_once_asked_for() {
    let node = Node::start(NexusConfig::default()).await.unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let signals = Arc::new(crate::spawn::AgentSignals::default());
    let opts = crate::spawn::SpawnOptions::new().signals(Arc::clone(&signals));
    let pool = node.spawn_pool_opts("failing", 2, Failing(tx), opts).await.unwrap();
    let stats = pool.handler_stats().expect("a pool with signals");
    assert!(Arc::ptr_eq(&stats, &signals.handler_stats()), "one per pool");
    for fail in [true, false, true, false, false] {
        pool.send(fail, Priority::Normal).await.unwrap();
    }
    for _ in 0..3 {
        tokio::time::timeout(TIMEOUT, rx.recv()).await.unwrap().unwrap();
    }
    // A worker records a message once its handler has returned: gather
    // until all five are in.
    let mut latencies = crate::spawn::new_latency_histogram();
    tokio::time::timeout(TIMEOUT, async {
        while latencies.len() < 5 || stats.errors() < 2 {
            latencies.add(stats.take()).unwrap();
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    assert_eq!(latencies.len(), 5, "both workers recorded into one histogram");
    assert_eq!(stats.errors(), 2);
    assert!(stats.take().is_empty(), "taking starts the recorder afresh");
    assert_eq!(pool.lane_capacities(), [1000; 3]);
    assert_eq!(node.shutdown(TIMEOUT).await, crate::supervisor::NodeExit::Shutdown);

    let (tx, _rx) = mpsc::unbounded_channel();
    let node = Node::start(NexusConfig::default()).await.unwrap();
    let bare = node.spawn_pool("bare", 1, Failing(tx)).await.unwrap();
    assert!(bare.handler_stats().is_none(), "no signals, no measuring");
    node.shutdown(TIMEOUT).await;
}
