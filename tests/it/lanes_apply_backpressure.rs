//! Bounded lanes: capacity is never exceeded, `try_send` gives the message
//! back when full, a waiting `send` proceeds when room frees, and the lane
//! timeout fires.

use crate::support::agents as support;

use std::sync::Arc;
use std::time::Duration;

use nexus_swarm::prelude::*;
use support::{Countdown, Recorder, TIMEOUT, collect, tagged};
use tokio::sync::{Semaphore, mpsc, oneshot};

fn config(capacity: usize) -> NexusConfig {
    NexusConfig {
        mailbox: MailboxConfig::default().with_capacity(capacity),
        ..NexusConfig::default()
    }
}

/// Spawns a gated recorder and parks it inside the handler of message 0, so
/// that the lanes hold exactly what the test admits afterwards.
async fn parked_recorder(
    node: &Node,
    gate: &Arc<Semaphore>,
) -> (AgentRef<support::Tagged>, mpsc::UnboundedReceiver<support::Tagged>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (entered_tx, entered_rx) = oneshot::channel();
    let agent = Recorder::new(tx).gated(Arc::clone(gate)).signal_entry(entered_tx);
    let a = node.spawn_agent("recorder", agent).await.unwrap();
    a.try_send(tagged(0, Priority::Normal), Priority::Normal).unwrap();
    tokio::time::timeout(TIMEOUT, entered_rx).await.unwrap().unwrap();
    (a, rx)
}

#[tokio::test]
async fn try_send_on_a_full_lane_returns_the_message_and_capacity_is_never_exceeded() {
    let node = Node::start(config(4)).await.unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let (a, mut rx) = parked_recorder(&node, &gate).await;

    for id in 1..=4 {
        a.try_send(tagged(id, Priority::Normal), Priority::Normal).unwrap();
    }
    assert_eq!(a.depth(Priority::Normal), 4);
    match a.try_send(tagged(99, Priority::Normal), Priority::Normal) {
        Err(SendError::Full(m)) => assert_eq!(m.id, 99, "the refused message comes back"),
        other => panic!("expected Full, got {other:?}"),
    }
    assert_eq!(a.depth(Priority::Normal), 4, "a refused message takes no slot");
    // The other lanes have their own capacity.
    a.try_send(tagged(5, Priority::High), Priority::High).unwrap();
    assert_eq!(a.depths(), [1, 4, 0]);

    gate.add_permits(6);
    let got = collect(&mut rx, 6).await;
    assert!(got.iter().all(|m| m.id != 99));
    node.shutdown(TIMEOUT).await;
}

#[tokio::test]
async fn a_waiting_send_proceeds_when_room_frees() {
    let node = Node::start(config(2)).await.unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let (a, mut rx) = parked_recorder(&node, &gate).await;
    a.try_send(tagged(1, Priority::Normal), Priority::Normal).unwrap();
    a.try_send(tagged(2, Priority::Normal), Priority::Normal).unwrap();

    let sender = {
        let a = a.clone();
        tokio::spawn(async move { a.send(tagged(3, Priority::Normal), Priority::Normal).await })
    };
    // Let the sender run until it parks on the full lane.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!sender.is_finished(), "the lane is full: send must wait");
    assert_eq!(a.depth(Priority::Normal), 2);

    // Message 0 finishes, the agent takes message 1 from the lane: room for 3.
    gate.add_permits(1);
    tokio::time::timeout(TIMEOUT, sender).await.unwrap().unwrap().unwrap();
    gate.add_permits(3);
    let ids: Vec<u64> = collect(&mut rx, 4).await.iter().map(|m| m.id).collect();
    assert_eq!(ids, vec![0, 1, 2, 3]);
    node.shutdown(TIMEOUT).await;
}

#[tokio::test(start_paused = true)]
async fn a_send_gives_up_after_the_lane_timeout_and_returns_the_message() {
    let node = Node::start(config(1)).await.unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let (a, _rx) = parked_recorder(&node, &gate).await;
    a.try_send(tagged(1, Priority::High), Priority::High).unwrap();

    let started = tokio::time::Instant::now();
    let sender = {
        let a = a.clone();
        tokio::spawn(async move { a.send(tagged(2, Priority::High), Priority::High).await })
    };
    tokio::time::sleep(Duration::from_millis(9_900)).await;
    assert!(!sender.is_finished(), "the high lane's timeout is 10 s (seed default)");
    match sender.await.unwrap() {
        Err(SendError::Timeout(m)) => assert_eq!(m.id, 2),
        other => panic!("expected Timeout, got {other:?}"),
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(10) && waited < Duration::from_millis(10_100),
        "{waited:?}"
    );
    assert_eq!(a.depth(Priority::High), 1);
    gate.add_permits(10);
    node.shutdown(TIMEOUT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_senders_on_a_one_slot_lane_all_get_through() {
    // Every send parks on a full lane and must be woken by the slot its
    // predecessor frees: a missed wake-up shows up as a Timeout.
    const SENDERS: u64 = 4;
    const EACH: u64 = 5_000;
    let node = Node::start(config(1)).await.unwrap();
    let (agent, count, done) = Countdown::new(SENDERS * EACH);
    let a = node.spawn_agent("countdown", agent).await.unwrap();
    let tasks: Vec<_> = (0..SENDERS)
        .map(|s| {
            let a = a.clone();
            tokio::spawn(async move {
                for i in 0..EACH {
                    a.send_timeout(s * EACH + i, Priority::Normal, TIMEOUT)
                        .await
                        .expect("send must get a slot");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    tokio::time::timeout(TIMEOUT, done).await.unwrap().unwrap();
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), SENDERS * EACH);
    node.shutdown(TIMEOUT).await;
}

#[tokio::test]
async fn ask_answers_and_reports_deadline_and_dropped_replies() {
    struct Oracle;
    enum Q {
        Square(u64, Reply<u64>),
        Ignore(Reply<u64>),
        Never(Reply<u64>, Arc<Semaphore>),
    }
    impl Agent for Oracle {
        type Msg = Q;
        type State = ();
        async fn init(&self, _: &AgentContext<Q>) -> Result<(), HandlerError> {
            Ok(())
        }
        async fn handle(&self, _: &AgentContext<Q>, q: Q, _: &mut ()) -> Result<(), HandlerError> {
            match q {
                Q::Square(n, r) => r.send(n * n),
                Q::Ignore(r) => drop(r),
                Q::Never(r, gate) => {
                    gate.acquire().await?.forget();
                    assert!(r.is_closed(), "the asker gave up at its deadline");
                }
            }
            Ok(())
        }
    }
    let node = Node::start(NexusConfig::default()).await.unwrap();
    let a = node.spawn_agent("oracle", Oracle).await.unwrap();
    assert_eq!(a.ask(|r| Q::Square(12, r), Priority::Normal, TIMEOUT).await, Ok(144));
    assert_eq!(
        a.ask(Q::Ignore, Priority::Normal, TIMEOUT).await,
        Err(AskError::NoReply)
    );
    let gate = Arc::new(Semaphore::new(0));
    let short = Duration::from_millis(50);
    let g = Arc::clone(&gate);
    assert_eq!(
        a.ask(move |r| Q::Never(r, g), Priority::High, short).await,
        Err(AskError::Deadline(short))
    );
    gate.add_permits(1);
    // The agent is still alive and answering after the abandoned ask.
    assert_eq!(a.ask(|r| Q::Square(3, r), Priority::Normal, TIMEOUT).await, Ok(9));
    // The `is_closed` assertion inside the handler panics the agent if it
    // fails, which only shows here: the agent would have been restarted.
    assert_eq!(a.restarts(), 0, "the handler saw an open reply port after the deadline");
    node.shutdown(TIMEOUT).await;
}

#[tokio::test(start_paused = true)]
async fn a_parked_send_takes_a_slot_freed_by_an_agent_that_then_blocks() {
    // The agent frees one slot of a deep lane and then blocks in its next
    // handler: the lane will not drain further for now, so the parked sender
    // must get that slot at once, not wait for the lane to drain to half its
    // capacity (which would take until its 30 s timeout here).
    let node = Node::start(config(4)).await.unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let (a, mut rx) = parked_recorder(&node, &gate).await;
    for id in 1..=4 {
        a.try_send(tagged(id, Priority::Normal), Priority::Normal).unwrap();
    }
    let sender = {
        let a = a.clone();
        tokio::spawn(async move { a.send(tagged(5, Priority::Normal), Priority::Normal).await })
    };
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!sender.is_finished(), "the lane is full: send must wait");

    // Message 0 finishes; the agent takes message 1 (one slot free) and
    // blocks in its handler.
    gate.add_permits(1);
    let sent = tokio::time::timeout(Duration::from_secs(1), sender)
        .await
        .expect("the parked sender must take the freed slot, not time out")
        .unwrap();
    assert!(sent.is_ok(), "{sent:?}");
    assert_eq!(a.depth(Priority::Normal), 4);

    gate.add_permits(5);
    let ids: Vec<u64> = collect(&mut rx, 6).await.iter().map(|m| m.id).collect();
    assert_eq!(ids, vec![0, 1, 2, 3, 4, 5]);
    node.shutdown(TIMEOUT).await;
}

#[tokio::test(start_paused = true)]
async fn a_send_with_an_unbounded_timeout_waits_instead_of_panicking() {
    // `Duration::MAX` is how callers say "no time limit"; it must not
    // overflow the deadline computation.
    let node = Node::start(config(1)).await.unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let (a, mut rx) = parked_recorder(&node, &gate).await;
    a.try_send(tagged(1, Priority::Low), Priority::Low).unwrap();
    let sender = {
        let a = a.clone();
        tokio::spawn(async move {
            a.send_timeout(tagged(2, Priority::Low), Priority::Low, Duration::MAX)
                .await
        })
    };
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!sender.is_finished(), "the lane is full: send must wait");
    gate.add_permits(3);
    tokio::time::timeout(TIMEOUT, sender).await.unwrap().unwrap().unwrap();
    let ids: Vec<u64> = collect(&mut rx, 3).await.iter().map(|m| m.id).collect();
    assert_eq!(ids, vec![0, 1, 2]);

    // Same through a pool, whose send and ask compute their own deadline.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let pool = node.spawn_pool("unbounded", 2, Recorder::new(tx)).await.unwrap();
    pool.send_timeout(tagged(3, Priority::Low), Priority::Low, Duration::MAX)
        .await
        .unwrap();
    assert_eq!(collect(&mut rx, 1).await[0].id, 3);
    node.shutdown(TIMEOUT).await;
}
