//! A pool under a load it cannot keep up with is scaled out by the swarm's
//! scaler only once the queue has stayed over its threshold for the
//! sustain duration, one worker per decision, never twice inside the
//! cooldown and never past the maximum (where it holds, saying so); each
//! tick's CPU utilization reaches the pressure detector. With
//! `scaling.enabled = false` no scaler runs and `Swarm::autoscale` says so.

use crate::support::scaling;

use std::time::Duration;

use nexus_swarm::actors::scaler::{Decision, Hold, Metric, Reason};
use nexus_swarm::actors::swarm::{Swarm, SwarmError};
use scaling::{INTERVAL, Worker, changes, config, drain, drive, queue_spec};
use tokio::time::Instant;

const SUSTAIN: Duration = Duration::from_secs(60);
const COOLDOWN: Duration = Duration::from_secs(180);

#[tokio::test(start_paused = true)]
async fn scale_out_waits_for_the_sustain_and_the_cooldown_and_stops_at_max() {
    let dir = tempfile::tempdir().unwrap();
    let swarm = Swarm::start(config(dir.path(), 16_000)).await.unwrap();
    let (worker, _handled) = Worker::new(100);
    let pool = swarm.spawn_pool("busy", 2, worker).await.unwrap();
    let scaler = swarm.scaler().expect("the scaler starts by default");
    let mut events = scaler.subscribe();
    let spec = queue_spec(50, SUSTAIN).workers(2, 4).cooldown(COOLDOWN);
    swarm.autoscale_with(&pool, spec).await.unwrap();
    let t0 = Instant::now();

    // 60 messages a second against 20 a second for two workers (10 each):
    // the queue grows whatever the size up to 4 workers.
    let load = drive(&pool, Duration::from_secs(20 * 60), |_| 60);
    load.await.unwrap();
    let events = drain(&mut events);
    assert!(events.len() >= 100, "a decision per tick: {}", events.len());

    // The queue crosses 50 at some tick: from there, one sustain of waiting.
    let over = events
        .iter()
        .find(|e| e.metrics.queue_length.is_some_and(|q| q >= 50))
        .expect("the queue crosses its threshold");
    let c = changes(&events, t0);
    assert_eq!(
        c.iter().map(|&(_, from, to)| (from, to)).collect::<Vec<_>>(),
        vec![(2, 3), (3, 4)],
        "one worker at a time, up to max: {c:?}"
    );
    let first = c[0].0;
    assert!(
        first >= (over.at - t0) + SUSTAIN,
        "scaled at {first:?}, over since {:?}",
        over.at - t0
    );
    assert!(first < (over.at - t0) + SUSTAIN + 2 * INTERVAL, "scaled at {first:?}");
    assert!(c[1].0 - c[0].0 >= COOLDOWN, "inside the cooldown: {c:?}");
    for e in &events {
        if let Decision::ScaleOut { reason, .. } = &e.decision {
            assert!(
                matches!(reason, Reason::Metric { metric: Metric::QueueLength, threshold: 50, value, .. } if *value >= 50),
                "{reason:?}"
            );
        }
    }
    // Before the first scale-out it waited for the sustain; between the two,
    // it held for the cooldown; at the end it holds at max.
    let before_first: Vec<_> = events.iter().filter(|e| e.at > over.at && e.at - t0 < first).collect();
    assert!(!before_first.is_empty());
    assert!(
        before_first.iter().all(|e| matches!(
            e.decision,
            Decision::Hold(Hold::AwaitingSustain {
                metric: Metric::QueueLength,
                ..
            })
        )),
        "{before_first:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e.decision, Decision::Hold(Hold::Cooldown { .. })))
    );
    assert!(
        matches!(events.last().unwrap().decision, Decision::Hold(Hold::AtMax { .. })),
        "{:?}",
        events.last()
    );
    assert!(events.iter().all(|e| (2..=4).contains(&e.workers)));
    assert_eq!(pool.size(), 4);
    // Each tick also gave the pool's CPU use to the pressure detector.
    let pressure = swarm.pressure().expect("started from [pressure]");
    let report = pressure.report().await.expect("the detector runs");
    assert!(report.resources.iter().any(|(r, _)| r == "busy/cpu"), "{report:?}");
    swarm.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn with_scaling_disabled_no_scaler_runs_and_autoscale_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), 16_000);
    config.scaling.enabled = false;
    let swarm = Swarm::start(config).await.unwrap();
    assert!(swarm.scaler().is_none());
    // The pressure detector has its own section (the monitor feeds it).
    assert!(swarm.pressure().is_some());
    let pool = swarm.spawn_pool("fixed", 2, Worker::new(100).0).await.unwrap();
    let err = swarm.autoscale(&pool).await.unwrap_err();
    assert!(matches!(err, SwarmError::ScalingDisabled), "{err}");
    swarm.shutdown(Duration::from_secs(5)).await;

    // Enabled, a pool the swarm did not spawn is refused by name.
    let dir = tempfile::tempdir().unwrap();
    let swarm = Swarm::start(scaling::config(dir.path(), 16_000)).await.unwrap();
    let stranger = swarm
        .node()
        .spawn_pool("stranger", 2, Worker::new(100).0)
        .await
        .unwrap();
    let err = swarm.autoscale(&stranger).await.unwrap_err();
    assert!(matches!(&err, SwarmError::Unknown(name) if name == "stranger"), "{err}");
    swarm.shutdown(Duration::from_secs(5)).await;
}
