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
