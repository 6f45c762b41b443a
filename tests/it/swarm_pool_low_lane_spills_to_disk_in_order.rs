//! A pool spawned through the swarm with a spill directory: while its one
//! worker is held, low-priority messages past its lane go to disk instead
//! of making the sender wait, and once the worker is released every one
//! of them is handled, once and in the order sent, and nothing is left on
//! disk. The pool is admitted like any other (its requests are charged).

use std::sync::Arc;
use std::time::Duration;

use nexus_swarm::actors::swarm::Swarm;
use nexus_swarm::prelude::*;
use nexus_swarm::runtime::spill::SpillConfig;
use parking_lot::Mutex;
use tokio::sync::Semaphore;

const SENT: u64 = 200;

/// Handles numbers in order, each after taking a permit of the gate.
struct Gated {
    gate: Arc<Semaphore>,
    seen: Arc<Mutex<Vec<u64>>>,
}

impl Agent for Gated {
    type Msg = u64;
    type State = ();

    fn profile(&self) -> ResourceProfile {
        ResourceProfile::guaranteed(ResourceVector::new().with(ResourceKind::Cpu, 500))
    }

    async fn init(&self, _ctx: &AgentContext<u64>) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn handle(&self, _ctx: &AgentContext<u64>, n: u64, _: &mut ()) -> Result<(), HandlerError> {
        self.gate.acquire().await.expect("the gate stays open").forget();
        self.seen.lock().push(n);
        Ok(())
    }
}

#[tokio::test]
async fn low_messages_past_the_lane_spill_and_are_handled_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = NexusConfig::default();
    config.node.data_dir = dir.path().join("data");
    config.mailbox.low.capacity = 4;
    let swarm = Swarm::start(config).await.unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let agent = Gated {
        gate: Arc::clone(&gate),
        seen: Arc::clone(&seen),
    };
    let spill = SpillConfig::new(dir.path().join("spill"));
    let pool = swarm.spawn_spilling_pool("gated", 1, agent, spill).await.unwrap();
    assert!(swarm.usage("gated").is_some(), "admitted like any pool");

    for n in 0..SENT {
        // Never waits: a full lane spills.
        tokio::time::timeout(Duration::from_secs(5), pool.send(n, Priority::Low))
            .await
            .expect("a full low lane spills instead of making the sender wait")
            .expect("accepted");
    }
    let stats = pool.spill_stats().expect("a spilling pool");
    assert!(stats.spilled >= SENT - 8, "most went to disk: {stats:?}");
    assert!(stats.on_disk > 0);

    gate.add_permits(usize::try_from(SENT).unwrap());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.lock().len() < SENT as usize {
        assert!(
            tokio::time::Instant::now() < deadline,
            "handled {} of {SENT}",
            seen.lock().len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(*seen.lock(), (0..SENT).collect::<Vec<_>>(), "once each, in order");
    let stats = pool.spill_stats().unwrap();
    assert_eq!(stats.on_disk, 0, "{stats:?}");
    assert_eq!(stats.unspilled, stats.spilled);
    swarm.shutdown(Duration::from_secs(5)).await;
}
