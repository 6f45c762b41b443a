//! A load that flaps (bursts shorter than the sustain duration, lulls
//! shorter than the stabilization window) changes nothing: the scaler
//! holds, saying why, rather than adding and removing workers in turn.

use crate::support::scaling;

use std::sync::atomic::Ordering;
use std::time::Duration;

use nexus_swarm::actors::scaler::{Decision, Hold};
use nexus_swarm::actors::swarm::Swarm;
use scaling::{Worker, changes, config, drain, drive, queue_spec, settle};
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn bursts_and_lulls_shorter_than_sustain_and_window_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let swarm = Swarm::start(config(dir.path(), 16_000)).await.unwrap();
    let (worker, handled) = Worker::new(100);
    let pool = swarm.spawn_pool("flappy", 3, worker).await.unwrap();
    let mut events = swarm.scaler().unwrap().subscribe();
    let spec = queue_spec(50, Duration::from_secs(60))
        .workers(2, 6)
        .cooldown(Duration::from_secs(60))
        .stabilization(Duration::from_secs(300));
    swarm.autoscale_with(&pool, spec).await.unwrap();
    let t0 = Instant::now();

    // Bursts of 25 s at 60 messages a second (three workers take 30), then
    // 35 s of nothing: the queue peaks near 750, drains within 25 s, and so
    // stays over 50 for under 50 s, short of the 60 s sustain.
    let load = drive(&pool, Duration::from_secs(40 * 60), |t| {
        if t.as_secs() % 60 < 25 { 60 } else { 0 }
    });
    let sent = load.await.unwrap();
    settle(&handled, sent).await;
    assert_eq!(handled.load(Ordering::SeqCst), sent);

    let events = drain(&mut events);
    assert!(events.len() >= 200, "{}", events.len());
    assert_eq!(changes(&events, t0), vec![], "no scaling either way");
    assert!(
        events.iter().any(|e| e.metrics.queue_length.is_some_and(|q| q > 500)),
        "the bursts did overload the pool"
    );
    let waited = events
        .iter()
        .filter(|e| matches!(e.decision, Decision::Hold(Hold::AwaitingSustain { .. })))
        .count();
    let stabilized = events
        .iter()
        .filter(|e| matches!(e.decision, Decision::Hold(Hold::Stabilizing { .. })))
        .count();
    assert!(
        waited >= 40 && stabilized >= 40,
        "held for the sustain {waited} and the window {stabilized} times"
    );
    assert_eq!(pool.size(), 3);
    swarm.shutdown(Duration::from_secs(5)).await;
}
