//! The doorbell protocol never strands a message: after the last send
//! nobody rings again, so a message left in a lane with the agent idle
//! would never be handled and the countdown would time out.

use crate::support::agents as support;

use std::sync::atomic::Ordering;

use nexus_swarm::prelude::*;
use support::{Countdown, TIMEOUT};
use tokio::sync::watch;

/// Publishes its running count on a watch channel.
struct Counter(watch::Sender<u64>);

impl Agent for Counter {
    type Msg = u64;
    type State = ();

    async fn init(&self, _: &AgentContext<u64>) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn handle(&self, _: &AgentContext<u64>, _: u64, _: &mut ()) -> Result<(), HandlerError> {
        self.0.send_modify(|c| *c += 1);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_round_of_bursts_completes_without_a_further_send() {
    // Each round ends with nobody sending: a message stranded by a lost
    // wake-up stays stranded and the round never completes. Many short
    // rounds give the race many chances to show.
    const ROUNDS: u64 = 2_000;
    const PRODUCERS: u64 = 2;
    const BURST: u64 = 25;
    let node = Node::start(NexusConfig::default()).await.unwrap();
    let (tx, mut rx) = watch::channel(0u64);
    let a = node.spawn_agent("counter", Counter(tx)).await.unwrap();
    for round in 1..=ROUNDS {
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|_| {
                let a = a.clone();
                tokio::spawn(async move {
                    for i in 0..BURST {
                        a.send(i, Priority::Normal).await.unwrap();
                    }
                })
            })
            .collect();
        for p in producers {
            p.await.unwrap();
        }
        let target = round * PRODUCERS * BURST;
        tokio::time::timeout(TIMEOUT, rx.wait_for(|c| *c >= target))
            .await
            .unwrap_or_else(|_| panic!("round {round}: a message was stranded"))
            .unwrap();
    }
    node.shutdown(TIMEOUT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_thousands_of_handoffs_from_threads_are_all_handled() {
    // Producers on their own OS threads race the draining agent as hard as
    // the machine allows; a small lane makes the agent go idle and wake up
    // constantly, which is where a wrong clear/re-check order strands work.
    const PRODUCERS: u64 = 3;
    const EACH: u64 = 100_000;
    let cfg = NexusConfig {
        mailbox: MailboxConfig::default().with_capacity(16),
        ..NexusConfig::default()
    };
    let node = Node::start(cfg).await.unwrap();
    let (agent, count, done) = Countdown::new(PRODUCERS * EACH);
    let a = node.spawn_agent("countdown", agent).await.unwrap();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let a = a.clone();
            std::thread::spawn(move || {
                for i in 0..EACH {
                    let mut msg = p * EACH + i;
                    loop {
                        match a.try_send(msg, Priority::Normal) {
                            Ok(()) => break,
                            Err(SendError::Full(m)) => {
                                msg = m;
                                std::thread::yield_now();
                            }
                            Err(e) => panic!("unexpected {e:?}"),
                        }
                    }
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    tokio::time::timeout(TIMEOUT, done)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "stranded: handled {} of {}",
                count.load(Ordering::SeqCst),
                PRODUCERS * EACH
            )
        })
        .unwrap();
    assert_eq!(a.depths(), [0, 0, 0]);
    node.shutdown(TIMEOUT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_messages_to_an_idle_agent_are_each_handled() {
    // One message at a time, waiting for each: every send finds the agent
    // idle and must ring the doorbell itself.
    let node = Node::start(NexusConfig::default()).await.unwrap();
    let (agent, count, _done) = Countdown::new(u64::MAX);
    let a = node.spawn_agent("idle", agent).await.unwrap();
    for i in 0..2_000u64 {
        a.send(i, Priority::Low).await.unwrap();
        let want = i + 1;
        tokio::time::timeout(TIMEOUT, async {
            while count.load(Ordering::SeqCst) < want {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("message {i} stranded"));
    }
    node.shutdown(TIMEOUT).await;
}
