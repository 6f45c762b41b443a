//! The actor around the core, on tokio's paused clock: ticks, alerts
//! published, watching, and a restart that keeps the history.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::broadcast::error::TryRecvError;

use super::*;

const TICK: Duration = Duration::from_secs(10);

/// A pool whose normal lane the test fills (in permille of its capacity).
struct Fake {
    name: &'static str,
    permille: Arc<AtomicU64>,
}

impl Watched for Fake {
    fn name(&self) -> &str {
        self.name
    }

    fn read(&self) -> Reading {
        Reading {
            workers: 1,
            depths: [0, self.permille.load(Ordering::SeqCst), 0],
            capacities: [1000, 1000, 1000],
            handled: 0,
            restarts: 0,
            errors: None,
            latency_us: None,
        }
    }
}

fn fake(name: &'static str) -> (Arc<dyn Watched>, Arc<AtomicU64>) {
    let permille = Arc::new(AtomicU64::new(0));
    let w = Fake {
        name,
        permille: Arc::clone(&permille),
    };
    (Arc::new(w), permille)
}

fn queue_kinds(rx: &mut broadcast::Receiver<AlertEvent>) -> Vec<AlertKind> {
    let mut out = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(e) if matches!(e.subject, Subject::Queue(_)) => out.push(e.kind),
            Ok(_) => {}
            Err(TryRecvError::Empty) => return out,
            Err(e) => panic!("alerts lost: {e}"),
        }
    }
}

async fn spawn(args: &MonitorArgs) -> ActorRef<MonitorMsg> {
    let (actor, _) = ractor::Actor::spawn(None, Monitor, args.clone()).await.unwrap();
    actor
}

#[tokio::test(start_paused = true)]
async fn each_tick_samples_and_publishes_the_queue_alert_changes() {
    let args = MonitorArgs::new(TICK, Thresholds::default(), 100, 10);
    let monitor = args.handle("m");
    let actor = spawn(&args).await;
    let mut alerts = monitor.subscribe();
    let (pool, fill) = fake("p");
    monitor.watch(pool).unwrap();
    let (again, _) = fake("p");
    assert_eq!(monitor.watch(again), Err(MonitorError::Duplicate("p".into())));

    // Nothing before the first interval.
    tokio::time::sleep(TICK - Duration::from_millis(1)).await;
    assert_eq!(monitor.samples_taken(), 0);
    fill.store(850, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2)).await;
    assert_eq!(monitor.samples_taken(), 1);
    assert_eq!(queue_kinds(&mut alerts), vec![AlertKind::Raised(Severity::Warning)]);

    // Below the threshold but not by the hysteresis: nothing; then clear.
    fill.store(780, Ordering::SeqCst);
    tokio::time::sleep(TICK).await;
    assert_eq!(queue_kinds(&mut alerts), vec![]);
    fill.store(100, Ordering::SeqCst);
    tokio::time::sleep(TICK).await;
    assert_eq!(
        queue_kinds(&mut alerts),
        vec![AlertKind::Cleared {
            from: Severity::Warning
        }]
    );
    assert_eq!(monitor.samples_taken(), 3);
    let latest = monitor.latest().unwrap();
    assert_eq!((latest.seq, latest.at), (2, 3 * TICK));
    assert_eq!(latest.pools[0].queue_permille, 100);

    // Unwatching a pool with a standing alert clears it.
    fill.store(990, Ordering::SeqCst);
    let sample = monitor.sample().await.unwrap();
    assert_eq!(sample.pools[0].queue_permille, 990);
    assert_eq!(queue_kinds(&mut alerts), vec![AlertKind::Raised(Severity::Action)]);
    assert!(monitor.unwatch("p"));
    assert!(!monitor.unwatch("p"));
    assert_eq!(
        queue_kinds(&mut alerts),
        vec![AlertKind::Cleared { from: Severity::Action }]
    );
    assert!(monitor.sample().await.unwrap().pools.is_empty());
    actor.stop(None);
}

#[tokio::test(start_paused = true)]
async fn a_restarted_monitor_goes_on_with_its_history() {
    let args = MonitorArgs::new(TICK, Thresholds::default(), 100, 10);
    let monitor = args.handle("m");
    let actor = spawn(&args).await;
    monitor.sample().await.unwrap();
    monitor.sample().await.unwrap();
    actor.stop(None);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(monitor.sample().await, Err(MonitorError::Unavailable));
    assert_eq!(monitor.history().len(), 2, "the history stays readable");

    let actor = spawn(&args).await;
    let s = monitor.sample().await.unwrap();
    assert_eq!(s.seq, 2, "numbering goes on");
    assert_eq!(monitor.history().len(), 3);
    actor.stop(None);
}
