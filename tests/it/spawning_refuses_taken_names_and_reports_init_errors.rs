//! Names are unique on a node, an `init` error is reported as such, and an
//! ask with a zero deadline is refused up front.

use crate::support::agents as support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nexus_swarm::prelude::*;
use support::{Recorder, TIMEOUT};
use tokio::sync::mpsc;

#[tokio::test]
async fn a_second_agent_pool_or_group_with_a_live_name_is_refused() {
    let node = Node::start(NexusConfig::default()).await.unwrap();
    let (tx, _rx) = mpsc::unbounded_channel();
    node.spawn_agent("twin", Recorder::new(tx.clone())).await.unwrap();
    for result in [
        node.spawn_agent("twin", Recorder::new(tx.clone())).await.map(|_| ()),
        node.spawn_pool("twin", 2, Recorder::new(tx.clone())).await.map(|_| ()),
        node.spawn_group("twin").await.map(|_| ()),
    ] {
        match result {
            Err(SpawnError::NameTaken { name }) => assert_eq!(name, "twin"),
            other => panic!("expected NameTaken, got {other:?}"),
        }
    }
    let group = node.spawn_group("crew").await.unwrap();
    assert!(matches!(
        group.spawn_agent("twin", Recorder::new(tx.clone())).await,
        Err(SpawnError::NameTaken { .. })
    ));
    let names: Vec<String> = node.children().await.into_iter().map(|c| c.name).collect();
    assert_eq!(names, vec!["crew", "twin"]);
    assert_eq!(node.shutdown(TIMEOUT).await, NodeExit::Shutdown);
}

/// Whose `init` always fails with a typed error.
struct BadInit {
    starts: Arc<AtomicU64>,
}

#[derive(Debug)]
struct NoCredentials;

impl std::fmt::Display for NoCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no credentials configured")
    }
}

impl std::error::Error for NoCredentials {}

impl Agent for BadInit {
    type Msg = ();
    type State = ();

    async fn init(&self, _: &AgentContext<()>) -> Result<(), HandlerError> {
        self.starts.fetch_add(1, Ordering::SeqCst);
        Err(Box::new(NoCredentials))
    }

    async fn handle(&self, _: &AgentContext<()>, _: (), _: &mut ()) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[tokio::test]
async fn an_init_error_is_reported_as_an_init_error_not_a_panic() {
    let node = Node::start(NexusConfig::default()).await.unwrap();
    let starts = Arc::new(AtomicU64::new(0));
    for result in [
        node.spawn_agent(
            "bad",
            BadInit {
                starts: Arc::clone(&starts),
            },
        )
        .await
        .map(|_| ()),
        node.spawn_pool(
            "bad-pool",
            3,
            BadInit {
                starts: Arc::clone(&starts),
            },
        )
        .await
        .map(|_| ()),
    ] {
        let err = result.expect_err("init fails");
        let text = err.to_string();
        assert!(!text.contains("panicked"), "{text}");
        assert!(text.contains("no credentials configured"), "{text}");
        match err {
            SpawnError::Init { source, .. } => assert!(source.downcast_ref::<NoCredentials>().is_some()),
            other => panic!("expected SpawnError::Init, got {other:?}"),
        }
    }
    // The failed spawns hold no name and no child.
    assert!(node.children().await.is_empty());
    let (tx, _rx) = mpsc::unbounded_channel();
    node.spawn_agent("bad", Recorder::new(tx)).await.unwrap();
    assert_eq!(node.shutdown(TIMEOUT).await, NodeExit::Shutdown);
}

struct Echo;

impl Agent for Echo {
    type Msg = Reply<u8>;
    type State = ();

    async fn init(&self, _: &AgentContext<Reply<u8>>) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn handle(&self, _: &AgentContext<Reply<u8>>, reply: Reply<u8>, _: &mut ()) -> Result<(), HandlerError> {
        reply.send(1);
        Ok(())
    }
}

#[tokio::test]
async fn an_ask_with_a_zero_deadline_is_refused_without_admitting_anything() {
    let node = Node::start(NexusConfig::default()).await.unwrap();
    let echo = node.spawn_agent("echo", Echo).await.unwrap();
    let pool = node.spawn_pool("echoes", 2, Echo).await.unwrap();
    let mut built = false;
    let refused = echo
        .ask(
            |r| {
                built = true;
                r
            },
            Priority::High,
            Duration::ZERO,
        )
        .await;
    assert_eq!(refused, Err(AskError::Deadline(Duration::ZERO)));
    assert!(!built, "the request is not even built");
    assert_eq!(
        pool.ask(|r| r, Priority::High, Duration::ZERO).await,
        Err(AskError::Deadline(Duration::ZERO))
    );
    assert_eq!(echo.handled() + pool.handled(), 0);
    assert_eq!(echo.ask(|r| r, Priority::High, TIMEOUT).await, Ok(1));
    assert_eq!(node.shutdown(TIMEOUT).await, NodeExit::Shutdown);
}

/// Counts how many times `SpawnOptions::on_gone` ran.
fn counting_hook(count: &Arc<AtomicU64>) -> SpawnOptions {
    let count = Arc::clone(count);
    SpawnOptions::new().on_gone(move || {
        count.fetch_add(1, Ordering::SeqCst);
    })
}

#[tokio::test]
async fn the_on_gone_hook_runs_once_when_a_spawn_fails_or_the_agent_stops_for_good() {
    let node = Node::start(NexusConfig::default()).await.unwrap();
    let (tx, _rx) = mpsc::unbounded_channel();
    let gone = Arc::new(AtomicU64::new(0));

    // A spawn refused for its name, or failing in `init`, runs the hook.
    node.spawn_agent("taken", Recorder::new(tx.clone())).await.unwrap();
    assert!(
        node.spawn_agent_opts("taken", Recorder::new(tx.clone()), counting_hook(&gone))
            .await
            .is_err()
    );
    assert_eq!(gone.load(Ordering::SeqCst), 1);
    let starts = Arc::new(AtomicU64::new(0));
    let bad = BadInit {
        starts: Arc::clone(&starts),
    };
    assert!(node.spawn_pool_opts("bad", 2, bad, counting_hook(&gone)).await.is_err());
    assert_eq!(gone.load(Ordering::SeqCst), 2);

    // A restart does not run it; a stop does, once.
    let gone = Arc::new(AtomicU64::new(0));
    let flaky = node
        .spawn_agent_opts(
            "flaky",
            Recorder::new(tx.clone()).panicking_on(&[1]),
            counting_hook(&gone),
        )
        .await
        .unwrap();
    flaky
        .send(
            support::Tagged {
                id: 1,
                priority: Priority::Normal,
            },
            Priority::Normal,
        )
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while flaky.restarts() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never restarted");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(flaky.ping(TIMEOUT).await);
    assert_eq!(gone.load(Ordering::SeqCst), 0, "a restart is not the end");
    flaky.stop();
    while gone.load(Ordering::SeqCst) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the hook never ran");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(flaky.is_closed());
    let names: Vec<String> = node.children().await.into_iter().map(|c| c.name).collect();
    assert_eq!(names, vec!["taken"]);
    assert_eq!(node.shutdown(TIMEOUT).await, NodeExit::Shutdown);
    assert_eq!(gone.load(Ordering::SeqCst), 1);
}
