//! Handler time per agent is measured and held against the CPU limit of its
//! profile: an agent that uses more than its limit for a sustained period
//! (three one-second windows) is throttled, and released after a window
//! within it. An agent without a CPU limit is measured but never throttled.
//! From ten windows on, each has a recommended CPU request from its use.

use std::time::{Duration, Instant};

use nexus_swarm::prelude::*;
use nexus_swarm::runtime::resources::ResourceKind::Cpu;

/// Spins for `work` on every message: pure CPU.
struct Spinner {
    limit: Option<u64>,
    work: Duration,
}

impl Agent for Spinner {
    type Msg = ();
    type State = ();

    fn profile(&self) -> ResourceProfile {
        match self.limit {
            Some(limit) => ResourceProfile::burstable(
                ResourceVector::new().with(Cpu, 50),
                ResourceVector::new().with(Cpu, limit),
            ),
            None => ResourceProfile::best_effort(),
        }
    }

    async fn init(&self, _ctx: &AgentContext<()>) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn handle(&self, _ctx: &AgentContext<()>, _: (), _: &mut ()) -> Result<(), HandlerError> {
        let start = Instant::now();
        while start.elapsed() < self.work {
            std::hint::spin_loop();
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sustained_excess_throttles_and_a_quiet_window_releases() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = NexusConfig::default();
    config.node.data_dir = dir.path().to_path_buf();
    let swarm = Swarm::start(config).await.unwrap();
    let work = Duration::from_millis(5);
    let hot = swarm
        .spawn_agent("hot", Spinner { limit: Some(200), work })
        .await
        .unwrap();
    let free = swarm.spawn_agent("free", Spinner { limit: None, work }).await.unwrap();

    // Keep both busy (about 1000 millicores each) until the hot one is throttled.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        for _ in 0..10 {
            let _ = hot.try_send((), Priority::Normal);
            let _ = free.try_send((), Priority::Normal);
        }
        if swarm.usage("hot").unwrap().throttled {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never throttled: {:?}",
            swarm.usage("hot")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let hot_usage = swarm.usage("hot").unwrap();
    assert!(hot_usage.cpu_millicores > 200, "{hot_usage:?}");
    assert_eq!(hot_usage.cpu_limit_millicores, 200);
    assert!(hot_usage.busy >= Duration::from_secs(2), "{hot_usage:?}");
    let free_usage = swarm.usage("free").unwrap();
    assert!(!free_usage.throttled, "no limit, no throttle: {free_usage:?}");
    assert!(free_usage.busy > Duration::ZERO);

    // Idle: the next window is within the limit and releases it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while swarm.usage("hot").unwrap().throttled {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never released: {:?}",
            swarm.usage("hot")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(swarm.usage("nobody").is_none());

    // Ten windows in, each has a recommended request from its use per
    // worker: well above the 50 m the hot one declares (its busy windows are
    // more than a tenth of all), reported and not applied.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let hot_rec = loop {
        if let Some(r) = swarm.recommendation("hot") {
            break r;
        }
        assert!(tokio::time::Instant::now() < deadline, "no recommendation");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (hot_rec.name.as_str(), hot_rec.workers, hot_rec.declared_millicores),
        ("hot", 1, 50)
    );
    assert!(hot_rec.samples >= 10);
    assert!(hot_rec.target_millicores > 200, "{hot_rec:?}");
    assert!(
        hot_rec.lower_millicores <= hot_rec.target_millicores && hot_rec.target_millicores <= hot_rec.upper_millicores
    );
    assert!(
        hot_rec.target_millicores > 4 * hot_rec.declared_millicores,
        "{hot_rec:?}"
    );
    assert_eq!(swarm.usage("hot").unwrap().cpu_request_millicores, 50, "not applied");
    // "free" was spawned beside "hot" and is sampled by the same meter, but
    // may be a window behind: wait for its recommendation too.
    let names = loop {
        let names: Vec<String> = swarm.recommendations().into_iter().map(|r| r.name).collect();
        if names.len() >= 2 || tokio::time::Instant::now() >= deadline {
            break names;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(names, ["free", "hot"]);
    swarm.shutdown(Duration::from_secs(20)).await;
}
