use std::path::Path;

use super::*;

/// A point at `size` doing `tps` tasks/s, nothing saturated.
fn point(size: u32, rpm: Option<u64>, tps: u64) -> Point {
    Point {
        size,
        requests_per_minute: rpm,
        completed: tps * 2,
        failed: 0,
        throughput_milli: tps * 1000,
        p50_us: 50_000,
        p95_us: 80_000,
        p99_us: 90_000,
        cost_per_task_micro_usd: 12,
        evidence: Evidence {
            lane_capacity: 1000,
            cpu_permille: Some(300),
            ..Evidence::default()
        },
    }
}

#[test]
fn a_curve_with_a_known_knee_gives_that_knee() {
    // +100/worker, +100/worker, then +5/worker (5 % of the first): knee at 4.
    let points = vec![
        point(1, None, 100),
        point(2, None, 200),
        point(4, None, 400),
        point(8, None, 420),
    ];
    let profile = PerfProfile::analyse(points, 1000).unwrap();
    assert_eq!(profile.curves[0].knee, 4);
    assert_eq!(profile.best_size, 4);
    assert!(matches!(
        profile.recommendations[0],
        Recommendation::CapWorkers {
            size: 4,
            largest_size: 8,
            ..
        }
    ));
}

#[test]
fn the_knee_rule_is_strictly_below_the_fraction() {
    // The last step gains exactly 10 % of the first: not below, no knee.
    let at_fraction = vec![point(1, None, 100), point(2, None, 200), point(3, None, 210)];
    assert_eq!(knee(&at_fraction, 100), 3);
    // One task/s less is below it.
    let below = vec![point(1, None, 100), point(2, None, 200), point(3, None, 209)];
    assert_eq!(knee(&below, 100), 2);
    // A stricter fraction (5 %) keeps the third worker.
    assert_eq!(knee(&below, 50), 3);
}

#[test]
fn sizes_unsorted_and_unevenly_spaced_are_judged_per_worker() {
    // 1 -> 2: +100/worker; 2 -> 10: +80 total = +10/worker (10 %): not below.
    let points = vec![point(10, None, 280), point(1, None, 100), point(2, None, 200)];
    let profile = PerfProfile::analyse(points, 1000).unwrap();
    assert_eq!(profile.points.iter().map(|p| p.size).collect::<Vec<_>>(), [1, 2, 10]);
    assert_eq!(profile.curves[0].knee, 10);
    assert_eq!(
        profile.recommendations,
        [Recommendation::MeasureLarger { largest_size: 10 }]
    );
}

#[test]
fn no_first_gain_or_a_drop_puts_the_knee_early() {
    assert_eq!(knee(&[point(1, None, 100), point(2, None, 90)], 100), 1);
    assert_eq!(knee(&[point(1, None, 100), point(2, None, 100)], 100), 1);
    // Growth, then a drop.
    assert_eq!(
        knee(&[point(1, None, 100), point(2, None, 200), point(4, None, 150)], 100),
        2
    );
    assert_eq!(knee(&[point(3, None, 100)], 100), 3);
}

#[test]
fn a_rate_limit_bound_run_names_the_limit() {
    // 600 rpm = 10 tasks/s: the workers reach it at 4 and requests wait.
    let mut points = vec![
        point(1, Some(600), 3),
        point(2, Some(600), 6),
        point(4, Some(600), 10),
        point(8, Some(600), 10),
    ];
    points[3].evidence.rate_limit_waiting_milli = 4_500;
    let profile = PerfProfile::analyse(points, 1000).unwrap();
    let curve = &profile.curves[0];
    assert_eq!(curve.knee, 4);
    assert_eq!(
        curve.bottleneck,
        Bottleneck::RateLimit {
            requests_per_minute: 600,
            waiting_milli: 4_500
        }
    );
    assert!(profile.recommendations.contains(&Recommendation::RaiseRateLimit {
        requests_per_minute: 600
    }));
    assert!(
        profile
            .recommendations
            .iter()
            .any(|r| r.to_string().contains("600 requests/min"))
    );
}

#[test]
fn reaching_ninety_percent_of_the_limit_counts_without_waiters() {
    // 600 rpm = 10/s; 9 tasks/s is 90 %.
    let at = point(4, Some(600), 9);
    assert!(matches!(Bottleneck::of(&at), Bottleneck::RateLimit { .. }));
    let mut below = point(4, Some(600), 8);
    below.throughput_milli = 8_999;
    assert_eq!(Bottleneck::of(&below), Bottleneck::None);
}

#[test]
fn a_budget_bound_run_names_the_budget_first() {
    let mut p = point(4, Some(600), 10);
    p.evidence.budget_refusals = 37;
    p.evidence.rate_limit_waiting_milli = 9_000;
    p.evidence.cpu_permille = Some(990);
    assert_eq!(Bottleneck::of(&p), Bottleneck::Budget { refusals: 37 });
    let profile = PerfProfile::analyse(vec![point(2, Some(600), 5), p], 1000).unwrap();
    assert!(profile.recommendations.contains(&Recommendation::RaiseBudget {
        refusals: 37,
        cost_per_task_micro_usd: 12
    }));
}

#[test]
fn cpu_lane_and_pool_rules_in_order() {
    let mut p = point(4, None, 100);
    p.evidence.queued_per_worker_milli = 1_000;
    assert_eq!(
        Bottleneck::of(&p),
        Bottleneck::Pool {
            queued_per_worker_milli: 1_000
        }
    );
    p.evidence.max_lane_depth_milli = 500_000;
    assert!(matches!(Bottleneck::of(&p), Bottleneck::Lane { capacity: 1000, .. }));
    p.evidence.cpu_permille = Some(900);
    assert_eq!(Bottleneck::of(&p), Bottleneck::Cpu { cpu_permille: 900 });
    p.evidence.cpu_permille = None;
    assert!(matches!(Bottleneck::of(&p), Bottleneck::Lane { .. }));
    p.evidence.max_lane_depth_milli = 499_999;
    p.evidence.queued_per_worker_milli = 999;
    assert_eq!(Bottleneck::of(&p), Bottleneck::None);
}

#[test]
fn each_amount_has_its_own_curve_and_the_best_size_is_the_largest_knee() {
    let points = vec![
        point(1, Some(600), 5),
        point(2, Some(600), 10),
        point(4, Some(600), 10),
        point(1, Some(6000), 5),
        point(2, Some(6000), 10),
        point(4, Some(6000), 20),
    ];
    let profile = PerfProfile::analyse(points, 1000).unwrap();
    let knees: Vec<_> = profile.curves.iter().map(|c| (c.requests_per_minute, c.knee)).collect();
    assert_eq!(knees, [(Some(600), 2), (Some(6000), 4)]);
    assert_eq!(profile.best_size, 4);
}

#[test]
fn bad_points_are_refused_by_name() {
    let err = |points: Vec<Point>| PerfProfile::analyse(points, 1).unwrap_err().to_string();
    assert!(err(vec![]).contains("no points"));
    assert!(err(vec![point(0, None, 1)]).contains("size 0"));
    assert!(err(vec![point(2, None, 1), point(2, None, 3)]).contains("size 2 is measured twice"));
    let e = PerfProfile::analyse_with(vec![point(1, None, 1)], 1, 1000).unwrap_err();
    assert!(e.to_string().contains("knee_fraction_permille 1000"));
}

#[test]
fn a_profile_round_trips_and_damage_is_typed() {
    let profile = PerfProfile::analyse(vec![point(1, None, 100), point(2, None, 150)], 500).unwrap();
    let path = Path::new("p.json");
    let text = profile.to_json();
    assert_eq!(PerfProfile::from_json(&text, path).unwrap(), profile);

    let truncated = &text[..text.len() / 2];
    assert!(matches!(
        PerfProfile::from_json(truncated, path),
        Err(PerfProfileError::Damaged { .. })
    ));
    let future = text.replacen("\"format\": 1", "\"format\": 9", 1);
    assert!(matches!(
        PerfProfile::from_json(&future, path),
        Err(PerfProfileError::UnsupportedFormat { found: 9, .. })
    ));
    let zero = text.replacen("\"best_size\": 2", "\"best_size\": 0", 1);
    assert!(matches!(
        PerfProfile::from_json(&zero, path),
        Err(PerfProfileError::Invalid(_))
    ));
    let missing = PerfProfile::load(Path::new("/nonexistent/profile.json")).unwrap_err();
    assert!(matches!(missing, PerfProfileError::Io { .. }), "{missing}");
}

#[test]
fn rates_print_with_one_decimal() {
    assert_eq!(Rate(12_345).to_string(), "12.3");
    assert_eq!(Rate(12_350).to_string(), "12.4");
    assert_eq!(Rate(0).to_string(), "0.0");
}
