//! Past its restart intensity a supervisor stops restarting and escalates.

#[path = "support/agents.rs"]
mod support;

use std::time::Duration;

use nexus_swarm::prelude::*;
use support::{Recorder, TIMEOUT, tagged};
use tokio::sync::mpsc;

fn config(max_restarts: u32, within: Duration) -> NexusConfig {
    let mut cfg = NexusConfig::default();
    cfg.supervision.max_restarts = max_restarts;
    cfg.supervision.within = within;
    cfg
}

#[tokio::test]
async fn more_failures_than_the_intensity_allows_escalate_the_node() {
    let node = Node::start(config(2, Duration::from_secs(60))).await.unwrap();
    let (tx, _rx) = mpsc::unbounded_channel();
    let a = node
        .spawn_agent("doomed", Recorder::new(tx).panicking_on(&[1, 2, 3]))
        .await
        .unwrap();
    for id in 1..=3 {
        a.try_send(tagged(id, Priority::Normal), Priority::Normal).unwrap();
    }
    let exit = tokio::time::timeout(TIMEOUT, node.wait())
        .await
        .expect("node must escalate");
    match exit {
        NodeExit::Escalated(reason) => {
            assert!(reason.contains("doomed"), "{reason}");
            assert!(reason.contains("3 restarts"), "{reason}");
        }
        other => panic!("expected escalation, got {other:?}"),
    }
    assert_eq!(
        a.restarts(),
        2,
        "two restarts were allowed before the third failure escalated"
    );
}

/// Panics on every message; reports each (re)start's count from `init`.
struct AlwaysPanics(mpsc::UnboundedSender<u32>);

impl Agent for AlwaysPanics {
    type Msg = ();
    type State = ();

    async fn init(&self, ctx: &AgentContext<()>) -> Result<(), HandlerError> {
        self.0.send(ctx.restarts())?;
        Ok(())
    }

    async fn handle(&self, _: &AgentContext<()>, _: (), _: &mut ()) -> Result<(), HandlerError> {
        panic!("always");
    }
}

#[tokio::test(start_paused = true)]
async fn failures_spread_wider_than_the_window_are_restarted_indefinitely() {
    let node = Node::start(config(1, Duration::from_secs(10))).await.unwrap();
    let (tx, mut starts) = mpsc::unbounded_channel();
    let a = node.spawn_agent("flaky", AlwaysPanics(tx)).await.unwrap();
    assert_eq!(starts.recv().await, Some(0));
    for n in 1..=3 {
        // One failure per 11 s: never more than one in a 10 s window.
        tokio::time::sleep(Duration::from_secs(11)).await;
        a.try_send((), Priority::Normal).unwrap();
        let restarted = tokio::time::timeout(TIMEOUT, starts.recv()).await.unwrap();
        assert_eq!(restarted, Some(n));
    }
    assert_eq!(node.children().await[0].restarts, 3);
    assert_eq!(node.shutdown(TIMEOUT).await, NodeExit::Shutdown);
}

#[tokio::test(start_paused = true)]
async fn two_failures_inside_the_window_escalate_with_intensity_one() {
    let node = Node::start(config(1, Duration::from_secs(10))).await.unwrap();
    let (tx, mut starts) = mpsc::unbounded_channel();
    let a = node.spawn_agent("flaky", AlwaysPanics(tx)).await.unwrap();
    assert_eq!(starts.recv().await, Some(0));
    a.try_send((), Priority::Normal).unwrap();
    assert_eq!(starts.recv().await, Some(1));
    tokio::time::sleep(Duration::from_secs(5)).await;
    a.try_send((), Priority::Normal).unwrap();
    let exit = tokio::time::timeout(TIMEOUT, node.wait()).await.unwrap();
    assert!(matches!(exit, NodeExit::Escalated(_)), "{exit:?}");
}
