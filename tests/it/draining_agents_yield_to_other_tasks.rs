//! A draining agent yields to tokio: lane pops use no task budget, so
//! without a budget check per message an agent with a deep backlog would
//! hold its worker thread until the backlog is gone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use nexus_swarm::prelude::*;
use tokio::sync::oneshot;

const TIMEOUT: Duration = Duration::from_secs(30);
const BACKLOG: u64 = 20_000;

struct Sampler {
    ticks: Arc<AtomicU64>,
    report: std::sync::Mutex<Option<oneshot::Sender<(u64, u64)>>>,
}

impl Agent for Sampler {
    type Msg = u64;
    type State = u64;

    async fn init(&self, _: &AgentContext<u64>) -> Result<u64, HandlerError> {
        Ok(0)
    }

    async fn handle(&self, _: &AgentContext<u64>, id: u64, first_tick: &mut u64) -> Result<(), HandlerError> {
        // No await point in here: the handler itself never yields.
        if id == 0 {
            *first_tick = self.ticks.load(Ordering::SeqCst);
        }
        if id == BACKLOG - 1 {
            if let Some(tx) = self.report.lock().unwrap().take() {
                let _ = tx.send((*first_tick, self.ticks.load(Ordering::SeqCst)));
            }
        }
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn another_task_runs_while_an_agent_drains_a_deep_backlog() {
    let mut cfg = NexusConfig::default();
    cfg.mailbox.normal.capacity = BACKLOG as usize;
    // One wake-up drains everything: the only yield points are per message.
    cfg.mailbox.drain_batch = 1 << 20;
    let node = Node::start(cfg).await.unwrap();
    let ticks = Arc::new(AtomicU64::new(0));
    let (tx, rx) = oneshot::channel();
    let a = node
        .spawn_agent(
            "sampler",
            Sampler {
                ticks: Arc::clone(&ticks),
                report: std::sync::Mutex::new(Some(tx)),
            },
        )
        .await
        .unwrap();
    // Fill the lane without yielding: the agent cannot start before we await.
    for id in 0..BACKLOG {
        a.try_send(id, Priority::Normal).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let ticker = {
        let (ticks, stop) = (Arc::clone(&ticks), Arc::clone(&stop));
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                ticks.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
            }
        })
    };
    let (first, last) = tokio::time::timeout(TIMEOUT, rx).await.unwrap().unwrap();
    stop.store(true, Ordering::SeqCst);
    ticker.await.unwrap();
    assert!(
        last > first,
        "the ticker never ran while {BACKLOG} messages were drained (ticks {first} -> {last})"
    );
    node.shutdown(TIMEOUT).await;
}
