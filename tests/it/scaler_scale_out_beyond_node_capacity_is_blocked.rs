//! A scale-out asks the scheduler for the new workers' requests: when the
//! node's capacity cannot admit them, the decision is a "not admitted"
//! hold naming what is short, the pool keeps its size, no cooldown starts
//! (it is asked again at every tick), and it scales once room appears.

use crate::support::scaling;

use std::time::Duration;

use nexus_swarm::actors::scaler::{Decision, Hold};
use nexus_swarm::actors::swarm::{Refusal, Swarm};
use nexus_swarm::runtime::resources::ResourceKind::Cpu;
use scaling::{INTERVAL, Worker, changes, config, drain, drive, queue_spec};
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn a_scale_out_the_node_cannot_admit_is_blocked_and_the_pool_keeps_its_size() {
    let dir = tempfile::tempdir().unwrap();
    // Four CPUs: one held by another agent, room for three workers of one CPU.
    let swarm = Swarm::start(config(dir.path(), 4_000)).await.unwrap();
    let other = swarm.spawn_agent("other", Worker::new(1000).0).await.unwrap();
    let (worker, _handled) = Worker::new(1000);
    let pool = swarm.spawn_pool("greedy", 2, worker).await.unwrap();
    let scaler = swarm.scaler().unwrap();
    let mut events = scaler.subscribe();
    let spec = queue_spec(50, Duration::ZERO).workers(2, 6).cooldown(Duration::ZERO);
    swarm.autoscale_with(&pool, spec).await.unwrap();
    let t0 = Instant::now();

    let load = drive(&pool, Duration::from_secs(120), |_| 60);
    load.await.unwrap();
    let during = drain(&mut events);
    assert_eq!(
        changes(&during, t0).iter().map(|c| (c.1, c.2)).collect::<Vec<_>>(),
        vec![(2, 3)],
        "the third worker fits, the fourth does not"
    );
    let blocked: Vec<_> = during
        .iter()
        .filter_map(|e| match &e.decision {
            Decision::Hold(Hold::NotAdmitted { to, refusal }) => Some((e.workers, *to, refusal.clone())),
            _ => None,
        })
        .collect();
    assert!(blocked.len() >= 5, "asked again at every tick: {blocked:?}");
    for (workers, to, refusal) in &blocked {
        assert_eq!((*workers, *to), (3, 4));
        let Refusal::Insufficient { shortfall, .. } = refusal else {
            panic!("{refusal:?}")
        };
        assert!(shortfall.iter().any(|s| s.kind == Cpu), "{shortfall:?}");
    }
    assert_eq!(pool.size(), 3);
    let status = scaler.groups().await.unwrap();
    assert_eq!(status[0].cooldown_until, None, "a refusal starts no cooldown");

    // The other agent stops and gives its CPU back: the next tick scales out.
    other.stop();
    let more = drive(&pool, INTERVAL * 3, |_| 60);
    more.await.unwrap();
    let after = drain(&mut events);
    let c = changes(&after, t0);
    assert_eq!(
        c.iter().map(|c| (c.1, c.2)).collect::<Vec<_>>(),
        vec![(3, 4)],
        "{after:?}"
    );
    assert!(c[0].0 <= Duration::from_secs(120) + INTERVAL * 2, "{c:?}");
    assert_eq!(pool.size(), 4);
    swarm.shutdown(Duration::from_secs(5)).await;
}
