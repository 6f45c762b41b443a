//! Failure domains: an agent, pool or group past its restart intensity is
//! stopped alone and reported as a typed event; the node, its other agents
//! and its system actors go on. Only the system subtree giving up stops the
//! node.

use crate::support::agents as support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nexus_swarm::prelude::*;
use nexus_swarm::runtime::supervisor::ChildSpec;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use support::{Recorder, TIMEOUT, collect, tagged};
use tokio::sync::{Semaphore, broadcast, mpsc};

fn config(max_restarts: u32, within: Duration) -> NexusConfig {
    let mut cfg = NexusConfig::default();
    cfg.supervision.max_restarts = max_restarts;
    cfg.supervision.within = within;
    cfg
}

async fn next_stopped(events: &mut broadcast::Receiver<NodeEvent>) -> SubtreeStopped {
    match tokio::time::timeout(TIMEOUT, events.recv()).await {
        Ok(Ok(NodeEvent::SubtreeStopped(s))) => s,
        other => panic!("expected a stopped subtree, got {other:?}"),
    }
}

/// Fails on one message in a hundred.
struct Flaky;

enum FlakyMsg {
    Work(u64),
}

impl Agent for Flaky {
    type Msg = FlakyMsg;
    type State = ();

    async fn init(&self, _: &AgentContext<FlakyMsg>) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn handle(&self, _: &AgentContext<FlakyMsg>, msg: FlakyMsg, _: &mut ()) -> Result<(), HandlerError> {
        match msg {
            FlakyMsg::Work(n) if n % 100 == 99 => Err(format!("message {n} is bad").into()),
            FlakyMsg::Work(_) => Ok(()),
        }
    }
}

/// A system actor that counts the calls it answers.
#[derive(Clone)]
struct Counter;

struct Count(ractor::RpcReplyPort<u64>);
impl ractor::Message for Count {}

impl Actor for Counter {
    type Msg = Count;
    type State = u64;
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<Count>, _: ()) -> Result<u64, ActorProcessingErr> {
        Ok(0)
    }

    async fn handle(&self, _: ActorRef<Count>, Count(reply): Count, n: &mut u64) -> Result<(), ActorProcessingErr> {
        *n += 1;
        let _ = reply.send(*n);
        Ok(())
    }
}

#[tokio::test]
async fn an_agent_failing_one_message_in_a_hundred_stops_alone_and_is_reported() {
    let node = Node::start(NexusConfig::default()).await.unwrap();
    let mut events = node.subscribe();
    let system = node
        .start_child(ChildSpec::for_actor("counter", Counter, ()))
        .await
        .unwrap();
    let system: ActorRef<Count> = system.into();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let bystander = node.spawn_agent("bystander", Recorder::new(tx.clone())).await.unwrap();
    let pool = node.spawn_pool("pool", 2, Recorder::new(tx)).await.unwrap();
    let flaky = node.spawn_agent("flaky", Flaky).await.unwrap();

    // Six failures (the default intensity allows five in 30 s) come within
    // 600 messages; far more are admitted behind them.
    for n in 0..2_000 {
        if flaky.send(FlakyMsg::Work(n), Priority::Normal).await.is_err() {
            break;
        }
    }
    let stopped = next_stopped(&mut events).await;
    assert_eq!(stopped.subtree, "flaky");
    assert_eq!(stopped.kind, SubtreeKind::Agent);
    assert_eq!(stopped.restarts, 6, "{stopped}");
    assert!(stopped.last_error.contains("is bad"), "{stopped}");
    assert!(flaky.is_closed());
    assert!(matches!(
        flaky.try_send(FlakyMsg::Work(0), Priority::Normal),
        Err(SendError::Closed(_))
    ));

    // The node and everything else go on.
    assert!(
        tokio::time::timeout(Duration::from_millis(50), node.wait())
            .await
            .is_err()
    );
    bystander
        .send(tagged(1, Priority::Normal), Priority::Normal)
        .await
        .unwrap();
    pool.send(tagged(2, Priority::Normal), Priority::Normal).await.unwrap();
    let mut ids: Vec<u64> = collect(&mut rx, 2).await.iter().map(|m| m.id).collect();
    ids.sort();
    assert_eq!(ids, vec![1, 2]);
    assert_eq!(ractor::call!(system, Count).unwrap(), 1);
    let names: Vec<String> = node.children().await.into_iter().map(|c| c.name).collect();
    assert_eq!(names, vec!["bystander", "pool"]);
    // The name is free again.
    node.spawn_agent("flaky", Flaky).await.unwrap();
    assert_eq!(node.shutdown(TIMEOUT).await, NodeExit::Shutdown);
}

#[tokio::test]
async fn admitted_messages_of_a_stopped_agent_are_counted_and_waiting_asks_fail_at_once() {
    let node = Node::start(config(0, Duration::from_secs(60))).await.unwrap();
    let mut events = node.subscribe();
    let gate = Arc::new(Semaphore::new(0));
    let (tx, _rx) = mpsc::unbounded_channel();
    let (entered_tx, entered) = tokio::sync::oneshot::channel();
    let doomed = node
        .spawn_agent(
            "doomed",
            Recorder::new(tx)
                .gated(Arc::clone(&gate))
                .panicking_on(&[1])
                .signal_entry(entered_tx),
        )
        .await
        .unwrap();
    doomed.try_send(tagged(1, Priority::Normal), Priority::Normal).unwrap();
    entered.await.unwrap();
    // Held behind the failing message: ten plain messages.
    for id in 2..12 {
        doomed.try_send(tagged(id, Priority::Normal), Priority::Normal).unwrap();
    }
    gate.add_permits(1);
    let stopped = next_stopped(&mut events).await;
    assert_eq!(stopped.subtree, "doomed");
    assert_eq!(stopped.discarded, 10, "{stopped}");
    assert_eq!(node.shutdown(TIMEOUT).await, NodeExit::Shutdown);
}

/// Answers asks, after panicking on its first message.
struct AskTarget {
    gate: Arc<Semaphore>,
}

impl Agent for AskTarget {
    type Msg = Option<Reply<u32>>;
    type State = ();

    async fn init(&self, _: &AgentContext<Self::Msg>) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn handle(&self, _: &AgentContext<Self::Msg>, msg: Self::Msg, _: &mut ()) -> Result<(), HandlerError> {
        self.gate.acquire().await?.forget();
        match msg {
            None => panic!("poison"),
            Some(reply) => reply.send(1),
        }
        Ok(())
    }
}

#[tokio::test]
async fn an_ask_queued_behind_a_fatal_failure_fails_at_once_with_no_reply() {
    let node = Node::start(config(0, Duration::from_secs(60))).await.unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let target = node
        .spawn_agent(
            "target",
            AskTarget {
                gate: Arc::clone(&gate),
            },
        )
        .await
        .unwrap();
    target.try_send(None, Priority::Normal).unwrap();
    let asking = {
        let target = target.clone();
        tokio::spawn(async move { target.ask(Some, Priority::Normal, Duration::from_secs(3600)).await })
    };
    while target.depth(Priority::Normal) < 1 {
        tokio::task::yield_now().await;
    }
    gate.add_permits(1);
    // Long before the hour-long deadline.
    let answer = tokio::time::timeout(TIMEOUT, asking).await.unwrap().unwrap();
    assert_eq!(answer, Err(AskError::NoReply));
    assert_eq!(node.shutdown(TIMEOUT).await, NodeExit::Shutdown);
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
async fn intensity_is_counted_per_agent_not_across_agents() {
    // Two agents each fail once inside the window: with intensity one per
    // subtree neither gives up (a node-wide count would have stopped one).
    let node = Node::start(config(1, Duration::from_secs(10))).await.unwrap();
    let mut events = node.subscribe();
    let (tx, mut starts) = mpsc::unbounded_channel();
    let a = node.spawn_agent("a", AlwaysPanics(tx.clone())).await.unwrap();
    let b = node.spawn_agent("b", AlwaysPanics(tx)).await.unwrap();
    assert_eq!(starts.recv().await, Some(0));
    assert_eq!(starts.recv().await, Some(0));
    a.try_send((), Priority::Normal).unwrap();
    b.try_send((), Priority::Normal).unwrap();
    assert_eq!(starts.recv().await, Some(1));
    assert_eq!(starts.recv().await, Some(1));
    assert!(events.try_recv().is_err(), "nobody gave up");
    // A second failure of `a` inside its window stops `a` only.
    a.try_send((), Priority::Normal).unwrap();
    let stopped = next_stopped(&mut events).await;
    assert_eq!(stopped.subtree, "a");
    assert_eq!(stopped.restarts, 2);
    assert!(!b.is_closed());
    assert_eq!(node.shutdown(TIMEOUT).await, NodeExit::Shutdown);
}

#[tokio::test]
async fn a_pool_past_its_intensity_stops_as_one_subtree() {
    let node = Node::start(config(2, Duration::from_secs(60))).await.unwrap();
    let mut events = node.subscribe();
    let (tx, _rx) = mpsc::unbounded_channel();
    let pool = node
        .spawn_pool("pool", 2, Recorder::new(tx.clone()).panicking_on(&[1, 2, 3]))
        .await
        .unwrap();
    let bystander = node.spawn_agent("bystander", Recorder::new(tx)).await.unwrap();
    for id in 1..=3 {
        pool.send(tagged(id, Priority::Normal), Priority::Normal).await.unwrap();
    }
    let stopped = next_stopped(&mut events).await;
    assert_eq!(stopped.subtree, "pool");
    assert_eq!(stopped.kind, SubtreeKind::Pool);
    assert_eq!(stopped.restarts, 3);
    assert_eq!(pool.restarts(), 2);
    assert!(matches!(
        pool.try_send(tagged(9, Priority::Normal), Priority::Normal),
        Err(SendError::Closed(_))
    ));
    bystander
        .send(tagged(4, Priority::Normal), Priority::Normal)
        .await
        .unwrap();
    assert!(!bystander.is_closed());
    assert_eq!(node.shutdown(TIMEOUT).await, NodeExit::Shutdown);
}

#[tokio::test]
async fn a_group_restarts_together_and_stops_together() {
    let node = Node::start(config(1, Duration::from_secs(60))).await.unwrap();
    let mut events = node.subscribe();
    let group = node.spawn_group("crew").await.unwrap();
    let (tx, mut starts) = mpsc::unbounded_channel();
    let a = group.spawn_agent("crew-a", AlwaysPanics(tx.clone())).await.unwrap();
    let b = group.spawn_agent("crew-b", AlwaysPanics(tx)).await.unwrap();
    let (rtx, mut seen) = mpsc::unbounded_channel();
    let outsider = node.spawn_agent("outsider", Recorder::new(rtx)).await.unwrap();
    assert_eq!(starts.recv().await, Some(0));
    assert_eq!(starts.recv().await, Some(0));
    // One member fails: both restart.
    a.try_send((), Priority::Normal).unwrap();
    let mut restarted = vec![starts.recv().await.unwrap(), starts.recv().await.unwrap()];
    restarted.sort();
    assert_eq!(restarted, vec![1, 1]);
    // The other fails inside the window: the whole group stops, once.
    b.try_send((), Priority::Normal).unwrap();
    let stopped = next_stopped(&mut events).await;
    assert_eq!(stopped.subtree, "crew");
    assert_eq!(stopped.kind, SubtreeKind::Group);
    assert!(a.is_closed() && b.is_closed());
    outsider
        .send(tagged(1, Priority::Normal), Priority::Normal)
        .await
        .unwrap();
    assert_eq!(collect(&mut seen, 1).await[0].id, 1);
    assert_eq!(node.shutdown(TIMEOUT).await, NodeExit::Shutdown);
}

/// A system actor that panics on every call.
#[derive(Clone)]
struct Fragile(Arc<AtomicU64>);

impl Actor for Fragile {
    type Msg = Count;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<Count>, _: ()) -> Result<(), ActorProcessingErr> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn handle(&self, _: ActorRef<Count>, _: Count, _: &mut ()) -> Result<(), ActorProcessingErr> {
        panic!("fragile");
    }
}

#[tokio::test]
async fn only_the_system_subtree_giving_up_stops_the_node() {
    let node = Node::start(config(1, Duration::from_secs(60))).await.unwrap();
    let mut events = node.subscribe();
    let starts = Arc::new(AtomicU64::new(0));
    node.start_child(ChildSpec::for_actor("fragile", Fragile(Arc::clone(&starts)), ()))
        .await
        .unwrap();
    let (tx, _rx) = mpsc::unbounded_channel();
    let agent = node.spawn_agent("agent", Recorder::new(tx)).await.unwrap();
    for started in 1..=2 {
        // Wait for this instance to be up, then make it panic.
        tokio::time::timeout(TIMEOUT, async {
            while starts.load(Ordering::SeqCst) < started {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        let fragile: ActorRef<Count> = node.supervisor().get_children()[0].clone().into();
        // The call fails: the actor panics instead of answering.
        assert!(ractor::call!(fragile, Count).is_err());
    }
    let exit = tokio::time::timeout(TIMEOUT, node.wait()).await.unwrap();
    match exit {
        NodeExit::Escalated(reason) => {
            assert!(reason.contains("fragile"), "{reason}");
            assert!(reason.contains("2 restarts"), "{reason}");
        }
        other => panic!("expected escalation, got {other:?}"),
    }
    match tokio::time::timeout(TIMEOUT, events.recv()).await.unwrap() {
        Ok(NodeEvent::NodeEscalated { reason }) => assert!(reason.contains("fragile"), "{reason}"),
        other => panic!("expected the node's escalation event, got {other:?}"),
    }
    // Everything is gone for good: handles refuse rather than lose messages.
    assert!(agent.is_closed());
    assert!(matches!(
        agent.try_send(tagged(1, Priority::Normal), Priority::Normal),
        Err(SendError::Closed(_))
    ));
}
