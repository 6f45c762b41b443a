//! A panic in a handler restarts the agent, and every message admitted
//! before the panic is handled by the restarted instance.

use crate::support::agents as support;

use std::sync::Arc;
use std::time::Duration;

use nexus_swarm::prelude::*;
use support::{Recorder, TIMEOUT, collect, tagged};
use tokio::sync::{Semaphore, mpsc, oneshot};

#[tokio::test]
async fn messages_admitted_before_a_panic_are_handled_after_the_restart() {
    let node = Node::start(NexusConfig::default()).await.unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (entered_tx, entered_rx) = oneshot::channel();
    let agent = Recorder::new(tx)
        .gated(Arc::clone(&gate))
        .panicking_on(&[3])
        .signal_entry(entered_tx);
    let a = node.spawn_agent("fragile", agent).await.unwrap();

    // Park the agent in message 1, then admit 2..=6 behind it; 3 panics.
    a.try_send(tagged(1, Priority::Normal), Priority::Normal).unwrap();
    tokio::time::timeout(TIMEOUT, entered_rx).await.unwrap().unwrap();
    for id in 2..=6 {
        a.try_send(tagged(id, Priority::Normal), Priority::Normal).unwrap();
    }
    assert_eq!(a.depth(Priority::Normal), 5);
    gate.add_permits(6);

    // Nothing is sent after the panic: the restarted actor must wake itself
    // (the flag was left set by the actor that died mid-drain).
    let ids: Vec<u64> = collect(&mut rx, 5).await.iter().map(|m| m.id).collect();
    assert_eq!(ids, vec![1, 2, 4, 5, 6], "only the panicking message is not handled");
    assert_eq!(a.restarts(), 1);

    // Handles find the new actor: later sends and probes reach it.
    gate.add_permits(1);
    a.send(tagged(7, Priority::High), Priority::High).await.unwrap();
    assert_eq!(collect(&mut rx, 1).await[0].id, 7);
    assert!(a.ping(Duration::from_secs(5)).await);
    let children = node.children().await;
    assert_eq!(children.len(), 1);
    assert_eq!(children[0].restarts, 1);
    assert_eq!(node.shutdown(TIMEOUT).await, NodeExit::Shutdown);
}

#[tokio::test]
async fn a_handler_error_also_restarts_the_agent() {
    struct Picky;
    impl Agent for Picky {
        type Msg = (u64, Reply<u64>);
        type State = u64;
        async fn init(&self, ctx: &AgentContext<Self::Msg>) -> Result<u64, HandlerError> {
            Ok(u64::from(ctx.restarts()))
        }
        async fn handle(
            &self,
            _: &AgentContext<Self::Msg>,
            (n, r): Self::Msg,
            gen_: &mut u64,
        ) -> Result<(), HandlerError> {
            if n == 0 {
                return Err("zero is not allowed".into());
            }
            r.send(*gen_);
            Ok(())
        }
    }
    let node = Node::start(NexusConfig::default()).await.unwrap();
    let a = node.spawn_agent("picky", Picky).await.unwrap();
    assert_eq!(a.ask(|r| (1, r), Priority::Normal, TIMEOUT).await, Ok(0));
    // The failing request's reply port is dropped with the failed instance.
    assert_eq!(
        a.ask(|r| (0, r), Priority::Normal, TIMEOUT).await,
        Err(AskError::NoReply)
    );
    // The restarted instance has fresh state from init (restart count 1).
    assert_eq!(a.ask(|r| (1, r), Priority::Normal, TIMEOUT).await, Ok(1));
    node.shutdown(TIMEOUT).await;
}
