//! A pool's queue that crosses the warning threshold, hovers around it
//! (dipping below it, never by the hysteresis) and then drains gives one
//! alert raised and one cleared, seen by a subscriber and in the counts.

use crate::support::scaling;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use nexus_swarm::actors::monitor::{AlertEvent, AlertKind, Severity, Subject};
use nexus_swarm::actors::swarm::Swarm;
use scaling::{Worker, config, drive, settle};
use tokio::sync::broadcast;

/// Lane capacity per worker: two workers hold 200 in their normal lanes,
/// so 160 queued is the warning threshold (80 %), 150 the hysteresis floor.
const LANE: usize = 100;

fn queue_events(rx: &mut broadcast::Receiver<AlertEvent>, pool: &str) -> Vec<AlertEvent> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        if e.subject == Subject::Queue(Arc::from(pool)) {
            out.push(e);
        }
    }
    out
}

#[tokio::test(start_paused = true)]
async fn a_queue_hovering_at_the_threshold_raises_once_and_clears_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), 16_000);
    config.scaling.enabled = false;
    config.mailbox.normal.capacity = LANE;
    let swarm = Swarm::start(config).await.unwrap();
    let monitor = swarm.monitor().expect("the monitor starts by default").clone();
    assert_eq!(monitor.interval(), Duration::from_secs(10), "the default interval");
    let mut alerts = monitor.subscribe();

    // Two workers take 10 messages a second each: 20 a second in all.
    let (worker, handled) = Worker::new(100);
    let pool = swarm.spawn_pool("hover", 2, worker).await.unwrap();

    // 30 a second for 16 s fills the lanes to 160 (80 %); then, 600 ms at
    // a time, +6, -6, -6, +6 for two minutes: about 154..=166 queued, 77 %
    // to 83 %, above and below the threshold, never below the floor (a
    // 2.4 s cycle, so 10 s samples see every phase); then nothing, and the
    // pool drains.
    const RAMP_MS: u128 = 16_000;
    let load = drive(&pool, Duration::from_secs(136), |t| {
        let ms = t.as_millis();
        if ms < RAMP_MS {
            return 30;
        }
        match (ms - RAMP_MS) / 600 % 4 {
            0 | 3 => 30,
            _ => 10,
        }
    });
    let sent = load.await.unwrap();
    settle(&handled, sent).await;
    assert_eq!(handled.load(Ordering::SeqCst), sent);
    tokio::time::sleep(Duration::from_secs(30)).await;

    let events = queue_events(&mut alerts, "hover");
    let kinds: Vec<AlertKind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![
            AlertKind::Raised(Severity::Warning),
            AlertKind::Cleared {
                from: Severity::Warning
            }
        ],
        "{events:?}"
    );
    // The hover did cross the threshold both ways while the alert stood.
    let hover: Vec<u32> = monitor
        .history()
        .iter()
        .filter(|s| s.at > events[0].at && s.at < events[1].at)
        .filter_map(|s| s.pools.iter().find(|p| &*p.name == "hover").map(|p| p.queue_permille))
        .collect();
    assert!(hover.len() >= 8, "{hover:?}");
    assert!(
        hover.iter().any(|&v| v < 800) && hover.iter().any(|&v| v >= 800),
        "{hover:?}"
    );
    assert!(hover.iter().all(|&v| v >= 750), "{hover:?}");

    let (raised, cleared) = monitor.alert_counts();
    assert!(raised >= 1 && cleared >= 1, "{raised} {cleared}");
    assert!(
        monitor
            .active_alerts()
            .iter()
            .all(|(s, _)| !matches!(s, Subject::Queue(_)))
    );
    swarm.shutdown(Duration::from_secs(5)).await;
}
