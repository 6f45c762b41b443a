use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{Semaphore, broadcast};
use tokio::time::Instant;

use super::*;
use crate::swarm::Refusal;

const TIMEOUT: Duration = Duration::from_secs(3600);
const TICK: Duration = Duration::from_secs(10);

#[derive(Default)]
struct FakeState {
    workers: u32,
    queued: u64,
    /// Growth above this is not admitted.
    admits_up_to: Option<u32>,
    gone: bool,
    resizes: Vec<u32>,
}

/// A group whose load the test sets and whose resizes it records.
#[derive(Clone)]
struct Fake {
    name: &'static str,
    state: Arc<Mutex<FakeState>>,
    /// When set, each resize waits for a permit.
    gate: Option<Arc<Semaphore>>,
}

impl Fake {
    fn new(name: &'static str, workers: u32, queued: u64) -> Self {
        let state = FakeState {
            workers,
            queued,
            ..FakeState::default()
        };
        Self {
            name,
            state: Arc::new(Mutex::new(state)),
            gate: None,
        }
    }
}

impl ScaledGroup for Fake {
    fn name(&self) -> &str {
        self.name
    }

    fn observe(&self) -> Observation {
        let s = self.state.lock();
        Observation {
            workers: s.workers,
            queued: s.queued,
            ..Observation::default()
        }
    }

    fn resize(&self, workers: u32) -> futures::future::BoxFuture<'static, Result<u32, SwarmError>> {
        let (state, gate, name) = (Arc::clone(&self.state), self.gate.clone(), self.name);
        Box::pin(async move {
            if let Some(gate) = gate {
                gate.acquire().await.expect("gate open").forget();
            }
            let mut s = state.lock();
            if s.gone {
                return Err(SwarmError::Unknown(name.into()));
            }
            if s.admits_up_to.is_some_and(|max| workers > max) {
                return Err(SwarmError::NotAdmitted {
                    name: name.into(),
                    refusal: Refusal::QueueFull,
                });
            }
            s.resizes.push(workers);
            s.workers = workers;
            Ok(workers)
        })
    }
}

/// Queue length alone: over 100 for 30 s scales out.
fn spec() -> GroupSpec {
    GroupSpec::default()
        .workers(2, 4)
        .cooldown(Duration::from_secs(60))
        .trigger(Metric::Cpu, None)
        .trigger(Metric::Memory, None)
        .trigger(Metric::QueueWait, None)
        .trigger(
            Metric::QueueLength,
            Some(Trigger {
                threshold: 100,
                sustain: Duration::from_secs(30),
            }),
        )
}

async fn scaler(name: &str) -> ScalerHandle {
    let args = ScalerArgs::new(TICK, spec());
    let shared = Arc::clone(&args.shared);
    ractor::Actor::spawn(Some(name.to_string()), Scaler, args)
        .await
        .expect("scaler starts");
    ScalerHandle {
        name: Arc::from(name),
        shared,
    }
}

async fn next(rx: &mut broadcast::Receiver<ScalingEvent>) -> ScalingEvent {
    tokio::time::timeout(TIMEOUT, rx.recv())
        .await
        .expect("an event in time")
        .expect("no event lost")
}

#[tokio::test(start_paused = true)]
async fn a_sustained_queue_scales_out_then_the_cooldown_holds() {
    let scaler = scaler("scaler-test-sustain").await;
    let mut rx = scaler.subscribe();
    let fake = Fake::new("g", 2, 500);
    let t0 = Instant::now();
    scaler.register(fake.clone(), spec()).await.unwrap();

    // Ticks at 10, 20, 30 s wait for the 30 s sustain (over since 10 s).
    for i in 1..=3u32 {
        let e = next(&mut rx).await;
        assert_eq!(e.at - t0, TICK * i);
        assert!(
            matches!(
                e.decision,
                Decision::Hold(Hold::AwaitingSustain {
                    metric: Metric::QueueLength,
                    ..
                })
            ),
            "{e:?}"
        );
        assert_eq!(e.metrics.queue_length, Some(500));
    }
    let e = next(&mut rx).await;
    assert_eq!(e.at - t0, TICK * 4);
    assert!(matches!(e.decision, Decision::ScaleOut { from: 2, to: 3, .. }), "{e:?}");
    assert_eq!(fake.state.lock().resizes, vec![3]);

    // Still loaded: held by the 60 s cooldown, then out again, up to max.
    for _ in 0..5 {
        let e = next(&mut rx).await;
        assert!(matches!(e.decision, Decision::Hold(Hold::Cooldown { .. })), "{e:?}");
    }
    let e = next(&mut rx).await;
    assert!(matches!(e.decision, Decision::ScaleOut { from: 3, to: 4, .. }), "{e:?}");
    let status = scaler.groups().await.unwrap();
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].workers, 4);
    assert!(status[0].cooldown_until.is_some());
    assert_eq!(status[0].last.as_ref(), Some(&e));
}

#[tokio::test(start_paused = true)]
async fn a_scale_out_not_admitted_keeps_the_size_and_starts_no_cooldown() {
    let scaler = scaler("scaler-test-refused").await;
    let mut rx = scaler.subscribe();
    let fake = Fake::new("g", 2, 500);
    fake.state.lock().admits_up_to = Some(2);
    let spec = spec().trigger(
        Metric::QueueLength,
        Some(Trigger {
            threshold: 100,
            sustain: Duration::ZERO,
        }),
    );
    scaler.register(fake.clone(), spec).await.unwrap();
    for _ in 0..3 {
        let e = next(&mut rx).await;
        assert_eq!(
            e.decision,
            Decision::Hold(Hold::NotAdmitted {
                to: 3,
                refusal: Refusal::QueueFull
            })
        );
    }
    assert_eq!(fake.state.lock().workers, 2);
    let status = scaler.groups().await.unwrap();
    assert_eq!(status[0].cooldown_until, None, "nothing changed, so no cooldown");
    // Room appears: the next tick scales out.
    fake.state.lock().admits_up_to = None;
    let e = next(&mut rx).await;
    assert!(matches!(e.decision, Decision::ScaleOut { from: 2, to: 3, .. }), "{e:?}");
}

#[tokio::test(start_paused = true)]
async fn a_resize_under_way_holds_the_group_and_a_gone_group_is_forgotten() {
    let scaler = scaler("scaler-test-gone").await;
    let mut rx = scaler.subscribe();
    let mut fake = Fake::new("g", 1, 0);
    let gate = Arc::new(Semaphore::new(0));
    fake.gate = Some(Arc::clone(&gate));
    scaler.register(fake.clone(), spec()).await.unwrap();
    // Below min: resized at the first tick, which waits on the gate.
    for _ in 0..2 {
        let e = next(&mut rx).await;
        assert_eq!(e.decision, Decision::Hold(Hold::InProgress));
    }
    assert_eq!(scaler.groups().await.unwrap()[0].resizing, Some(2));
    gate.add_permits(1);
    let e = next(&mut rx).await;
    assert_eq!(
        e.decision,
        Decision::ScaleOut {
            from: 1,
            to: 2,
            reason: Reason::BelowMin { min: 2 }
        }
    );
    // The pool goes away; the next resize finds it gone.
    {
        let mut s = fake.state.lock();
        s.gone = true;
        s.workers = 0;
    }
    gate.add_permits(1);
    loop {
        let e = next(&mut rx).await;
        if e.decision == Decision::Hold(Hold::Gone) {
            break;
        }
        assert!(matches!(e.decision, Decision::Hold(Hold::InProgress)), "{e:?}");
    }
    assert!(scaler.groups().await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn invalid_specs_and_duplicate_names_are_refused() {
    let scaler = scaler("scaler-test-refusals").await;
    let err = scaler
        .register(Fake::new("g", 2, 0), spec().workers(5, 4))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ScalerError::InvalidSpec { group, field, .. } if group == "g" && field == "min"),
        "{err}"
    );
    scaler.register(Fake::new("g", 2, 0), spec()).await.unwrap();
    assert_eq!(
        scaler.register(Fake::new("g", 2, 0), spec()).await.unwrap_err(),
        ScalerError::Duplicate("g".into())
    );
    assert!(scaler.unregister("g").await.unwrap());
    assert!(!scaler.unregister("g").await.unwrap());
}

/// A profile whose knee is at `best` workers (+100/worker up to it, flat after).
fn profile_with_knee(best: u32) -> crate::perf_profile::PerfProfile {
    use crate::perf_profile::{Evidence, PerfProfile, Point};
    let points = [1, best, 2 * best]
        .into_iter()
        .map(|size| Point {
            size,
            requests_per_minute: None,
            completed: 1,
            failed: 0,
            throughput_milli: u64::from(size.min(best)) * 100_000,
            p50_us: 1,
            p95_us: 1,
            p99_us: 1,
            cost_per_task_micro_usd: 1,
            evidence: Evidence::default(),
        })
        .collect();
    PerfProfile::analyse(points, 1000).expect("a valid profile")
}

#[tokio::test(start_paused = true)]
async fn a_profiles_best_size_caps_a_group_that_would_grow_past_it() {
    let profile = profile_with_knee(3);
    assert_eq!(profile.best_size, 3);
    let args = ScalerArgs::new(TICK, spec()).max_from_profile(&profile);
    assert_eq!(args.max_cap(), Some(3));
    let shared = Arc::clone(&args.shared);
    assert_eq!(shared.defaults.max, 3, "the defaults' max of 4 is capped");
    ractor::Actor::spawn(Some("scaler-test-profile-cap".to_string()), Scaler, args)
        .await
        .expect("scaler starts");
    let scaler = ScalerHandle {
        name: Arc::from("scaler-test-profile-cap"),
        shared,
    };
    let mut rx = scaler.subscribe();
    // The group's own spec allows 8 and its load asks for far more.
    let fake = Fake::new("g", 1, 100_000);
    let own = spec().workers(1, 8).cooldown(Duration::ZERO).trigger(
        Metric::QueueLength,
        Some(Trigger {
            threshold: 100,
            sustain: Duration::ZERO,
        }),
    );
    scaler.register(fake.clone(), own).await.unwrap();
    assert_eq!(scaler.groups().await.unwrap()[0].spec.max, 3);
    let mut at_max = 0;
    for _ in 0..20 {
        let e = next(&mut rx).await;
        assert!(e.workers <= 3, "{e:?}");
        if let Decision::Hold(Hold::AtMax { desired }) = e.decision {
            assert!(desired > 3);
            at_max += 1;
        }
    }
    assert_eq!(fake.state.lock().resizes, vec![2, 3], "grew to the cap and no further");
    assert!(at_max >= 10, "held at the cap: {at_max}");
    // A second profile can only lower the cap.
    let lower = ScalerArgs::new(TICK, spec())
        .max_from_profile(&profile)
        .max_from_profile(&profile_with_knee(2));
    assert_eq!(lower.max_cap(), Some(2));
    let higher = ScalerArgs::new(TICK, spec())
        .max_from_profile(&profile_with_knee(2))
        .max_from_profile(&profile);
    assert_eq!(higher.max_cap(), Some(2));
}
