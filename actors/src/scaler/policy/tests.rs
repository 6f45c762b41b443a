use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;

use super::*;

const TICK: Duration = Duration::from_secs(10);
const MIN: Duration = Duration::from_secs(60);

/// The seeds' policy judged by CPU alone.
fn cpu_only() -> GroupSpec {
    GroupSpec::default()
        .trigger(Metric::Memory, None)
        .trigger(Metric::QueueLength, None)
        .trigger(Metric::QueueWait, None)
}

fn cpu(permille: u64) -> Metrics {
    Metrics {
        cpu_permille: Some(permille),
        ..Metrics::default()
    }
}

fn sample(at: Instant, workers: u32, metrics: Metrics) -> Sample {
    Sample { at, workers, metrics }
}

/// Drives a policy tick by tick, applying every scaling decision at once;
/// returns each tick's (time offset, workers after, decision).
fn run(
    policy: &mut GroupPolicy,
    t0: Instant,
    mut workers: u32,
    ticks: u32,
    load: impl Fn(Duration, u32) -> Metrics,
) -> Vec<(Duration, u32, Decision)> {
    let mut out = Vec::new();
    for i in 0..ticks {
        let offset = TICK * i;
        let at = t0 + offset;
        let d = policy.decide(&sample(at, workers, load(offset, workers)));
        if let Some(to) = d.target() {
            workers = to;
            policy.scaled(at);
        }
        out.push((offset, workers, d));
    }
    out
}

fn changes(log: &[(Duration, u32, Decision)]) -> Vec<(Duration, u32)> {
    log.iter()
        .filter(|(_, _, d)| d.target().is_some())
        .map(|(t, w, _)| (*t, *w))
        .collect()
}

#[test]
fn the_proportional_rule_rounds_up_and_ignores_what_is_within_tolerance() {
    // 2 workers at 1500 of 750: twice the target, twice the workers.
    assert_eq!(proportional(2, 1500, 750, 100), 4);
    // 80 % of a 75 % target is within 10 %: no change.
    assert_eq!(proportional(2, 800, 750, 100), 2);
    // The tolerance's edge is inside; one permille past it is not.
    assert_eq!(proportional(2, 825, 750, 100), 2);
    assert_eq!(proportional(2, 826, 750, 100), 3);
    assert_eq!(proportional(4, 300, 750, 100), 2);
    assert_eq!(proportional(3, 0, 1000, 100), 0);
    // No tolerance: any excess asks for one more.
    assert_eq!(proportional(10, 1001, 1000, 0), 11);
    // Huge values saturate instead of overflowing.
    assert_eq!(proportional(u32::MAX, u64::MAX, 1, 0), u32::MAX);
}

#[test]
fn a_scale_out_waits_for_the_trigger_to_be_sustained() {
    let t0 = Instant::now();
    let mut p = GroupPolicy::new(cpu_only());
    // CPU at 90 % of the pool from t0: the trigger (75 % for 5 min) needs 5 minutes.
    let log = run(&mut p, t0, 2, 32, |_, _| cpu(900));
    for (t, w, d) in &log[..30] {
        assert_eq!(*w, 2, "at {t:?}");
        assert!(
            matches!(d, Decision::Hold(Hold::AwaitingSustain { metric: Metric::Cpu, since, desired: 3, .. }) if *since == t0),
            "at {t:?}: {d:?}"
        );
    }
    let (t, w, d) = &log[30];
    assert_eq!((*t, *w), (5 * MIN, 3));
    assert_eq!(
        d,
        &Decision::ScaleOut {
            from: 2,
            to: 3,
            reason: Reason::Metric {
                metric: Metric::Cpu,
                value: 900,
                threshold: 750,
                desired: 3
            }
        }
    );
}

#[test]
fn one_dip_below_the_threshold_restarts_the_sustain_clock() {
    let t0 = Instant::now();
    let mut p = GroupPolicy::new(cpu_only());
    // High for 4 minutes, one tick at 50 %, high again.
    let dip = 4 * MIN;
    let log = run(&mut p, t0, 2, 60, |t, _| if t == dip { cpu(500) } else { cpu(900) });
    assert_eq!(changes(&log), vec![(dip + TICK + 5 * MIN, 3)]);
}

#[test]
fn no_second_change_inside_the_cooldown_and_never_above_max() {
    let t0 = Instant::now();
    let spec = cpu_only().workers(2, 4).cooldown(10 * MIN);
    let mut p = GroupPolicy::new(spec);
    // Overloaded whatever the size: it wants more every tick.
    let log = run(&mut p, t0, 2, 6 * 60, |_, _| cpu(2000));
    assert_eq!(
        changes(&log),
        vec![(5 * MIN, 3), (15 * MIN, 4)],
        "one worker per decision, a cooldown apart, up to max"
    );
    let cooling = &log[(5 * MIN + TICK).as_secs() as usize / 10].2;
    assert!(
        matches!(cooling, Decision::Hold(Hold::Cooldown { until, desired: 4 }) if *until == t0 + 15 * MIN),
        "{cooling:?}"
    );
    assert!(log.iter().all(|(_, w, _)| (2..=4).contains(w)));
    let last = &log.last().unwrap().2;
    assert!(matches!(last, Decision::Hold(Hold::AtMax { desired: 11 })), "{last:?}");
}

#[test]
fn a_larger_step_adds_up_to_what_the_rule_asks_for() {
    let t0 = Instant::now();
    let mut p = GroupPolicy::new(cpu_only().step(5));
    let d = run(&mut p, t0, 2, 31, |_, _| cpu(1500)).pop().unwrap().2;
    // 2 x 1500 / 750 = 4: the step of 5 is not all used.
    assert!(matches!(d, Decision::ScaleOut { from: 2, to: 4, .. }), "{d:?}");
}

#[test]
fn scale_in_waits_for_a_whole_window_of_lower_recommendations_then_the_cooldown() {
    let t0 = Instant::now();
    let spec = cpu_only().workers(2, 10).stabilization(5 * MIN).cooldown(10 * MIN);
    let mut p = GroupPolicy::new(spec);
    // Idle from the start at 5 workers.
    let log = run(&mut p, t0, 5, 40 * 6, |_, _| cpu(0));
    assert!(matches!(
        log[0].2,
        Decision::Hold(Hold::Stabilizing { desired: 2, highest: 5 })
    ));
    assert_eq!(
        changes(&log),
        vec![(5 * MIN, 4), (15 * MIN, 3), (25 * MIN, 2)],
        "a window observed first, then one worker per cooldown"
    );
    let last = &log.last().unwrap().2;
    assert!(matches!(last, Decision::Hold(Hold::AtMin { desired: 0 })), "{last:?}");
}

#[test]
fn scale_in_goes_only_as_low_as_the_window_s_highest_recommendation() {
    let t0 = Instant::now();
    let spec = cpu_only().workers(1, 10).step(10).cooldown(Duration::ZERO);
    let mut p = GroupPolicy::new(spec);
    // 8 workers at 60 % for 6 minutes (a load 7 workers carry at 69 %,
    // within tolerance of 75 %), then idle (recommends 1).
    let log = run(&mut p, t0, 8, 20 * 6, |t, w| {
        if t < 6 * MIN { cpu(4800 / u64::from(w)) } else { cpu(0) }
    });
    // At 5 minutes the window holds only 7s: down to 7. Once idle, the
    // last 7 (at 5:50) must leave the window before it goes to 1.
    assert_eq!(changes(&log), vec![(5 * MIN, 7), (11 * MIN, 1)], "{log:#?}");
}

#[test]
fn a_flapping_load_changes_nothing() {
    let t0 = Instant::now();
    let mut p = GroupPolicy::new(cpu_only());
    // Two minutes at 95 %, two minutes at 30 %, for two hours, at 3 workers:
    // the highs never last the 5-minute sustain, the lows never fill the
    // 5-minute window.
    let log = run(&mut p, t0, 3, 12 * 60, |t, _| {
        if (t.as_secs() / 120) % 2 == 0 {
            cpu(950)
        } else {
            cpu(300)
        }
    });
    assert_eq!(changes(&log), vec![]);
    assert!(
        log.iter()
            .any(|(_, _, d)| matches!(d, Decision::Hold(Hold::AwaitingSustain { .. })))
    );
    assert!(
        log.iter()
            .any(|(_, _, d)| matches!(d, Decision::Hold(Hold::Stabilizing { .. })))
    );
}

#[test]
fn a_flapping_load_that_scales_out_never_scales_back_in_between_peaks() {
    let t0 = Instant::now();
    let spec = cpu_only().cooldown(Duration::from_secs(120));
    let mut p = GroupPolicy::new(spec);
    // Six minutes high, four minutes idle: each peak lasts the sustain,
    // no trough lasts the window.
    let log = run(&mut p, t0, 2, 12 * 60, |t, w| {
        if (t.as_secs() / 60) % 10 < 6 {
            // Each worker can take 1 / 4 of the load: 4 workers reach 75 %.
            cpu(3000 / u64::from(w))
        } else {
            cpu(0)
        }
    });
    let c = changes(&log);
    assert!(!c.is_empty());
    assert!(
        c.windows(2).all(|p| p[1].1 > p[0].1),
        "only ever up, never back down: {c:?}"
    );
}

#[test]
fn sizes_outside_the_bounds_are_corrected_at_once() {
    let t0 = Instant::now();
    let mut p = GroupPolicy::new(cpu_only().workers(2, 6));
    p.scaled(t0);
    assert_eq!(
        p.decide(&sample(t0, 1, cpu(0))),
        Decision::ScaleOut {
            from: 1,
            to: 2,
            reason: Reason::BelowMin { min: 2 }
        },
        "a bound is kept even inside the cooldown"
    );
    assert_eq!(
        p.decide(&sample(t0, 9, cpu(0))),
        Decision::ScaleIn {
            from: 9,
            to: 6,
            reason: Reason::AboveMax { max: 6 }
        }
    );
}

#[test]
fn unreported_metrics_are_skipped_and_no_metric_holds() {
    let t0 = Instant::now();
    let mut p = GroupPolicy::new(GroupSpec::default());
    assert_eq!(
        p.decide(&sample(t0, 2, Metrics::default())),
        Decision::Hold(Hold::NoMetrics)
    );
    // Memory is not reported: the queue alone decides.
    let queue = Metrics {
        queue_length: Some(3000),
        queue_wait: Some(Duration::from_secs(1)),
        ..Metrics::default()
    };
    let log = run(&mut p, t0, 2, 7, |_, _| queue);
    assert!(
        matches!(
            log[6].2,
            Decision::ScaleOut {
                from: 2,
                to: 3,
                reason: Reason::Metric {
                    metric: Metric::QueueLength,
                    desired: 6,
                    ..
                }
            }
        ),
        "{:?}",
        log[6].2
    );
    // A metric reported but not used by the spec is ignored.
    let mut p = GroupPolicy::new(cpu_only());
    let mem = Metrics {
        memory_permille: Some(990),
        ..Metrics::default()
    };
    assert_eq!(p.decide(&sample(t0, 2, mem)), Decision::Hold(Hold::NoMetrics));
}

#[test]
fn queue_wait_is_judged_in_milliseconds() {
    let t0 = Instant::now();
    let spec = GroupSpec::default().trigger(
        Metric::QueueWait,
        Some(Trigger {
            threshold: 30_000,
            sustain: Duration::ZERO,
        }),
    );
    let mut p = GroupPolicy::new(spec);
    let waiting = Metrics {
        queue_wait: Some(Duration::from_secs(45)),
        ..Metrics::default()
    };
    let d = p.decide(&sample(t0, 4, waiting));
    assert!(
        matches!(
            d,
            Decision::ScaleOut {
                from: 4,
                to: 5,
                reason: Reason::Metric {
                    metric: Metric::QueueWait,
                    value: 45_000,
                    threshold: 30_000,
                    desired: 6
                }
            }
        ),
        "{d:?}"
    );
}

#[test]
fn specs_no_group_can_follow_are_refused_naming_the_field() {
    let field = |spec: GroupSpec| match spec.validate("g") {
        Err(ScalerError::InvalidSpec { field, .. }) => field,
        other => panic!("{other:?}"),
    };
    assert_eq!(field(GroupSpec::default().workers(0, 3)), "min");
    assert_eq!(field(GroupSpec::default().workers(4, 3)), "min");
    assert_eq!(field(GroupSpec::default().workers(1, MAX_SCALING_WORKERS + 1)), "max");
    assert_eq!(field(GroupSpec::default().step(0)), "step");
    let tolerant = GroupSpec {
        tolerance_permille: 1000,
        ..GroupSpec::default()
    };
    assert_eq!(field(tolerant), "tolerance_permille");
    let zero = Trigger {
        threshold: 0,
        sustain: Duration::ZERO,
    };
    assert_eq!(
        field(GroupSpec::default().trigger(Metric::QueueLength, Some(zero))),
        "queue_length.threshold"
    );
    GroupSpec::default().validate("g").unwrap();
}

#[test]
fn the_config_defaults_are_the_seeds() {
    let s = GroupSpec::default();
    assert_eq!((s.min, s.max, s.step), (2, 10, 1));
    assert_eq!(s.cooldown, 10 * MIN);
    assert_eq!(s.tolerance_permille, 100);
    assert_eq!(
        s.cpu,
        Some(Trigger {
            threshold: 750,
            sustain: 5 * MIN
        })
    );
    assert_eq!(
        s.memory,
        Some(Trigger {
            threshold: 800,
            sustain: 5 * MIN
        })
    );
    assert_eq!(s.queue_length.map(|t| t.threshold), Some(1000));
    assert_eq!(s.queue_wait.map(|t| t.threshold), Some(30_000));
}

proptest! {
    /// Whatever the load, a group that starts within its bounds stays
    /// within them, changes by at most `step` at a time, and never changes
    /// twice within the cooldown.
    #[test]
    fn bounds_step_and_cooldown_hold_for_any_load(
        loads in proptest::collection::vec((0u64..3000, 0u64..5000), 1..400),
        min in 1u32..4,
        span in 0u32..8,
        step in 1u32..4,
        cooldown_ticks in 0u32..40,
        start in 0u32..12,
    ) {
        let max = min + span;
        let workers = start.clamp(min, max);
        let cooldown = TICK * cooldown_ticks;
        let spec = GroupSpec::default().workers(min, max).step(step).cooldown(cooldown);
        let mut p = GroupPolicy::new(spec);
        let t0 = Instant::now();
        let log = run(&mut p, t0, workers, loads.len() as u32, |t, _| {
            let (c, q) = loads[(t.as_secs() / 10) as usize];
            Metrics { cpu_permille: Some(c), queue_length: Some(q), ..Metrics::default() }
        });
        let mut before = workers;
        let mut last: Option<Duration> = None;
        for (t, w, d) in &log {
            prop_assert!((min..=max).contains(w), "{w} outside {min}..={max}");
            if d.target().is_some() {
                prop_assert!(w.abs_diff(before) <= step);
                if let Some(l) = last {
                    prop_assert!(*t - l >= cooldown, "changes at {l:?} and {t:?}");
                }
                last = Some(*t);
            }
            before = *w;
        }
    }
}

/// Queue length alone, 1000 for 30 s, no cooldown, 1..=10 workers.
fn queue_only() -> GroupSpec {
    GroupSpec::default()
        .trigger(Metric::Cpu, None)
        .trigger(Metric::Memory, None)
        .trigger(Metric::QueueWait, None)
        .trigger(
            Metric::QueueLength,
            Some(Trigger {
                threshold: 1000,
                sustain: Duration::from_secs(30),
            }),
        )
        .workers(1, 10)
        .cooldown(Duration::ZERO)
}

fn queued(n: u64) -> Metrics {
    Metrics {
        queue_length: Some(n),
        ..Metrics::default()
    }
}

const PREDICT: Prediction = Prediction {
    horizon: Duration::from_secs(300),
    window: Duration::from_secs(600),
};

#[test]
fn a_rising_queue_scales_out_on_its_forecast_before_it_reaches_the_threshold() {
    // 100 more queued messages every tick (600 a minute): the line is at
    // the threshold 5 minutes ahead from the third sample on.
    let load = |t: Duration, _| queued(100 + 10 * t.as_secs());
    let t0 = Instant::now();
    let predictive = run(
        &mut GroupPolicy::new(queue_only().predictive(Some(PREDICT))),
        t0,
        1,
        13,
        load,
    );
    let reactive = run(&mut GroupPolicy::new(queue_only()), t0, 1, 13, load);

    let (at, _, first) = predictive.iter().find(|(_, _, d)| d.target().is_some()).unwrap();
    // Forecast over the threshold from the third sample (20 s), sustained 30 s.
    assert_eq!(*at, Duration::from_secs(50));
    let Decision::ScaleOut {
        reason:
            Reason::Forecast {
                metric,
                value,
                forecast,
                threshold,
                ..
            },
        ..
    } = first
    else {
        panic!("scaled out for another reason: {first:?}");
    };
    assert_eq!((*metric, *value, *threshold), (Metric::QueueLength, 600, 1000));
    assert_eq!(*forecast, 600 + 3000, "the line 5 minutes ahead");

    // On the metric alone: 1000 reached at 90 s, sustained at 120 s.
    let (at, _, first) = reactive.iter().find(|(_, _, d)| d.target().is_some()).unwrap();
    assert_eq!(*at, Duration::from_secs(120));
    assert!(matches!(
        first,
        Decision::ScaleOut {
            reason: Reason::Metric { .. },
            ..
        }
    ));
}

#[test]
fn a_forecast_never_scales_a_group_in_sooner() {
    // A queue draining from far above the threshold: the falling line is
    // ignored, so both policies decide alike, tick for tick.
    let load = |t: Duration, _| queued(6000u64.saturating_sub(50 * t.as_secs()));
    let t0 = Instant::now();
    let spec = queue_only().stabilization(Duration::from_secs(60));
    let predictive = run(
        &mut GroupPolicy::new(spec.clone().predictive(Some(PREDICT))),
        t0,
        8,
        30,
        load,
    );
    let reactive = run(&mut GroupPolicy::new(spec), t0, 8, 30, load);
    assert_eq!(predictive, reactive);
    assert!(
        changes(&reactive).iter().any(|&(_, w)| w < 8),
        "the group shrinks: {reactive:?}"
    );
}

#[test]
fn too_few_samples_give_no_forecast() {
    let mut h = VecDeque::new();
    let t0 = Instant::now();
    assert_eq!(forecast(&mut h, t0, 10, PREDICT), None);
    assert_eq!(forecast(&mut h, t0 + TICK, 20, PREDICT), None);
    assert_eq!(forecast(&mut h, t0 + TICK * 2, 30, PREDICT), Some(30 + 300));
    // Samples older than the window are dropped.
    assert_eq!(forecast(&mut h, t0 + PREDICT.window + TICK * 3, 30, PREDICT), None);
    assert_eq!(h.len(), 1);
}
