//! Once the load drops, the scaler removes workers only after the
//! stabilization window has seen nothing but lower recommendations, one
//! per cooldown, down to the minimum; the retired workers drain what they
//! admitted, so every message sent is handled, and the node gets their
//! CPU back.

use crate::support::scaling;

use std::sync::atomic::Ordering;
use std::time::Duration;

use nexus_swarm::actors::scaler::{Decision, Hold};
use nexus_swarm::actors::swarm::{AGENT_POOL, Swarm};
use nexus_swarm::runtime::resources::ResourceKind::Cpu;
use scaling::{Worker, changes, config, drain, drive, queue_spec, settle};
use tokio::time::Instant;

const WINDOW: Duration = Duration::from_secs(300);
const COOLDOWN: Duration = Duration::from_secs(120);

async fn free_cpu(swarm: &Swarm) -> u64 {
    let pools = swarm.scheduler().pools().await.unwrap();
    pools
        .iter()
        .find(|p| p.id.as_str() == AGENT_POOL)
        .unwrap()
        .available
        .get(&Cpu)
}

#[tokio::test(start_paused = true)]
async fn scale_in_waits_for_the_window_and_every_message_sent_is_handled() {
    let dir = tempfile::tempdir().unwrap();
    let swarm = Swarm::start(config(dir.path(), 8_000)).await.unwrap();
    let (worker, handled) = Worker::new(1000);
    let pool = swarm.spawn_pool("elastic", 2, worker).await.unwrap();
    let mut events = swarm.scaler().unwrap().subscribe();
    let spec = queue_spec(50, Duration::from_secs(30))
        .workers(2, 5)
        .cooldown(COOLDOWN)
        .stabilization(WINDOW);
    swarm.autoscale_with(&pool, spec).await.unwrap();
    let t0 = Instant::now();

    // Ten minutes of 80 messages a second (more than 5 workers take), then
    // ten minutes of 5 a second (less than one worker takes).
    let high = Duration::from_secs(600);
    let load = drive(&pool, Duration::from_secs(1200), move |t| if t < high { 80 } else { 5 });
    let sent = load.await.unwrap();
    // Then nothing, long enough for the last scale-ins.
    tokio::time::sleep(Duration::from_secs(900)).await;
    settle(&handled, sent).await;
    assert_eq!(
        handled.load(Ordering::SeqCst),
        sent,
        "every admitted message is handled"
    );
    assert!(sent > 20_000, "{sent}");

    let events = drain(&mut events);
    let c = changes(&events, t0);
    let outs: Vec<_> = c.iter().filter(|(_, from, to)| to > from).collect();
    let ins: Vec<_> = c.iter().filter(|(_, from, to)| to < from).collect();
    assert_eq!(outs.iter().map(|c| c.2).max(), Some(5), "{c:?}");
    assert_eq!(
        ins.iter().map(|&&(_, from, to)| (from, to)).collect::<Vec<_>>(),
        vec![(5, 4), (4, 3), (3, 2)],
        "{c:?}"
    );
    assert!(
        outs.iter().all(|o| o.0 < high),
        "no scale-out once the load is low: {c:?}"
    );
    // The backlog drains after the drop; the last recommendation of 5 comes
    // then, and the first scale-in a whole window later.
    let last_high = events
        .iter()
        .filter(|e| e.metrics.queue_length.is_some_and(|q| q > 50))
        .map(|e| e.at - t0)
        .max()
        .unwrap();
    assert!(last_high >= high, "{last_high:?}");
    assert!(
        ins[0].0 >= last_high + WINDOW,
        "scaled in at {:?}, last high {last_high:?}",
        ins[0].0
    );
    for pair in c.windows(2) {
        assert!(pair[1].0 - pair[0].0 >= COOLDOWN, "inside the cooldown: {c:?}");
    }
    assert!(
        events
            .iter()
            .any(|e| matches!(e.decision, Decision::Hold(Hold::Stabilizing { .. })))
    );
    assert_eq!(pool.size(), 2);
    // The retired workers' CPU requests are back: 2 workers of 1000 held.
    assert_eq!(free_cpu(&swarm).await, 6_000);
    swarm.shutdown(Duration::from_secs(5)).await;
}
