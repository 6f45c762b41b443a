use std::time::Duration;

use tokio::time::Instant;

use super::*;

const EVERY: Duration = Duration::from_secs(10);

/// A deterministic wobble of at most 3 permille.
fn wobble(i: u32) -> i64 {
    [0, 3, -2, 1, -3, 2, -1][(i % 7) as usize]
}

/// Feeds `values` to `resource` every [`EVERY`] from `t0`; every change.
fn feed(
    core: &mut PressureCore,
    resource: &str,
    t0: Instant,
    values: &[u32],
) -> (Vec<ResourcePressure>, Vec<LevelChange>) {
    let mut reports = Vec::new();
    let mut changes = Vec::new();
    for (i, &v) in values.iter().enumerate() {
        let (r, c) = core.observe(resource, t0 + EVERY * i as u32, v);
        reports.push(r);
        changes.extend(c);
    }
    (reports, changes)
}

fn levels(changes: &[LevelChange]) -> Vec<(Option<&str>, Level, Level)> {
    changes.iter().map(|c| (c.resource.as_deref(), c.from, c.to)).collect()
}

#[test]
fn levels_rise_at_once_and_fall_only_past_the_hysteresis() {
    let t0 = Instant::now();
    let mut core = PressureCore::new(PressureSpec::default());
    let (_, changes) = feed(&mut core, "cpu", t0, &[700, 810, 790, 760, 751, 749]);
    assert_eq!(
        levels(&changes),
        vec![
            (Some("cpu"), Level::Normal, Level::Moderate),
            (None, Level::Normal, Level::Moderate),
            (Some("cpu"), Level::Moderate, Level::Normal),
            (None, Level::Moderate, Level::Normal),
        ],
        "790, 760 and 751 are within 5 % of the 80 % threshold; 749 is not"
    );
    // A jump crosses several thresholds as one change; the way down is
    // one change per level left.
    let (_, changes) = feed(&mut core, "cpu", t0 + EVERY * 6, &[960, 930, 899, 849, 10]);
    assert_eq!(
        levels(&changes)
            .into_iter()
            .filter(|c| c.0.is_some())
            .map(|c| (c.1, c.2))
            .collect::<Vec<_>>(),
        vec![
            (Level::Normal, Level::Critical),
            (Level::Critical, Level::High),
            (Level::High, Level::Moderate),
            (Level::Moderate, Level::Normal),
        ]
    );
}

#[test]
fn a_utilization_hovering_at_a_threshold_changes_the_level_once() {
    let t0 = Instant::now();
    let mut core = PressureCore::new(PressureSpec::default());
    let hovering: Vec<u32> = (0..200).map(|i| if i % 2 == 0 { 905 } else { 895 }).collect();
    let (reports, changes) = feed(&mut core, "memory", t0, &hovering);
    assert_eq!(
        levels(&changes),
        vec![
            (Some("memory"), Level::Normal, Level::High),
            (None, Level::Normal, Level::High)
        ]
    );
    assert!(reports.iter().all(|r| r.level == Level::High));
}

#[test]
fn a_rising_series_has_a_positive_trend_and_a_forecast_within_one_percent() {
    let t0 = Instant::now();
    let mut core = PressureCore::new(PressureSpec::default());
    // From 40 %, 20 permille a minute (one every 3 s), sampled every 10 s
    // for 10 minutes, with a wobble of up to 3 permille.
    let series: Vec<u32> = (0..=60u32)
        .map(|i| (400 + i64::from(i) * 20 * 10 / 60 + wobble(i)) as u32)
        .collect();
    let (reports, _) = feed(&mut core, "cpu", t0, &series);
    let last = reports.last().unwrap();
    let trend = last.trend.expect("a trend over the window");
    assert_eq!(trend.direction, Direction::Rising);
    assert!((19..=21).contains(&trend.slope_per_minute), "{trend:?}");
    // Five minutes on from the last sample (at 10 minutes, 600 permille on
    // the line): 700 on the line, to within 10 permille (1 %).
    let forecast = last.forecast.expect("a forecast");
    assert_eq!(forecast.at, t0 + EVERY * 60 + Duration::from_secs(300));
    assert!(forecast.utilization.abs_diff(700) <= 10, "{forecast:?}");
    assert_eq!(forecast.level, Level::Normal);
    // A steady rise is a trend, not a string of anomalies.
    assert!(reports.iter().all(|r| r.anomaly.is_none()), "{reports:?}");

    // Falling and flat series.
    let falling: Vec<u32> = (0..30u32).map(|i| 900 - i * 5).collect();
    let (reports, _) = feed(&mut core, "disk", t0, &falling);
    let trend = reports.last().unwrap().trend.unwrap();
    assert_eq!((trend.direction, trend.slope_per_minute), (Direction::Falling, -30));
    let flat: Vec<u32> = (0..30u32).map(|i| (500 + wobble(i)) as u32).collect();
    let (reports, _) = feed(&mut core, "net", t0, &flat);
    assert_eq!(reports.last().unwrap().trend.unwrap().direction, Direction::Flat);
}

#[test]
fn a_forecast_reaching_a_threshold_names_the_level() {
    let t0 = Instant::now();
    let mut core = PressureCore::new(PressureSpec::default());
    // 60 permille a minute from 500: at 800 after 5 minutes, 1100 on the
    // line 5 minutes later.
    let series: Vec<u32> = (0..=30u32).map(|i| 500 + i * 10).collect();
    let (reports, _) = feed(&mut core, "cpu", t0, &series);
    let last = reports.last().unwrap();
    assert_eq!(last.level, Level::Moderate);
    let forecast = last.forecast.unwrap();
    assert_eq!(forecast.utilization, 1100);
    assert_eq!(forecast.level, Level::Critical);
}

#[test]
fn a_spike_is_an_anomaly_and_the_samples_around_it_are_not() {
    let t0 = Instant::now();
    let mut core = PressureCore::new(PressureSpec::default());
    let mut series: Vec<u32> = (0..20u32).map(|i| (500 + wobble(i)) as u32).collect();
    series.push(800);
    series.extend((21..30u32).map(|i| (500 + wobble(i)) as u32));
    let (reports, _) = feed(&mut core, "cpu", t0, &series);
    let flagged: Vec<(usize, Anomaly)> = reports
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.anomaly.map(|a| (i, a)))
        .collect();
    assert_eq!(flagged.len(), 1, "{flagged:?}");
    let (at, anomaly) = flagged[0];
    assert_eq!(at, 20);
    assert_eq!(anomaly.value, 800);
    assert!(anomaly.median.abs_diff(500) <= 3, "{anomaly:?}");
    assert!(anomaly.z_milli > 3500, "{anomaly:?}");
    // A dip is one too, with a negative score.
    let (r, _) = core.observe("cpu", t0 + EVERY * 30, 100);
    assert!(r.anomaly.is_some_and(|a| a.z_milli < -3500), "{r:?}");
    // Too few samples to judge: nothing is flagged.
    let (r, _) = core.observe("fresh", t0, 10);
    assert_eq!(r.anomaly, None);
    let (r, _) = core.observe("fresh", t0 + EVERY, 990);
    assert_eq!(r.anomaly, None);
}

#[test]
fn the_overall_level_is_the_highest_and_forgetting_a_resource_lowers_it() {
    let t0 = Instant::now();
    let mut core = PressureCore::new(PressureSpec::default());
    core.observe("a", t0, 820);
    let (_, changes) = core.observe("b", t0, 970);
    assert_eq!(levels(&changes)[1], (None, Level::Moderate, Level::Critical));
    assert_eq!(core.overall(), Level::Critical);
    let change = core.forget("b", t0).expect("the overall level falls");
    assert_eq!((change.from, change.to), (Level::Critical, Level::Moderate));
    assert_eq!(core.forget("nothing", t0), None);
    assert_eq!(
        core.levels().into_iter().collect::<Vec<_>>(),
        vec![("a".to_string(), Level::Moderate)]
    );
}

#[test]
fn the_window_keeps_only_recent_samples() {
    let t0 = Instant::now();
    let spec = PressureSpec {
        window: Duration::from_secs(60),
        ..PressureSpec::default()
    };
    let mut core = PressureCore::new(spec);
    // A long flat history at 200, then a minute rising 10 a sample: the
    // trend is the minute's, not diluted by the history.
    let mut series: Vec<u32> = vec![200; 100];
    series.extend((1..=6u32).map(|i| 200 + i * 10));
    let (reports, _) = feed(&mut core, "cpu", t0, &series);
    let trend = reports.last().unwrap().trend.unwrap();
    assert!(trend.slope_per_minute >= 50, "{trend:?}");
}

#[tokio::test(start_paused = true)]
async fn the_detector_publishes_level_changes_and_anomalies_and_reports() {
    let args = PressureArgs::new(PressureSpec::default());
    let events = args.events.clone();
    ractor::Actor::spawn(Some("pressure-test".to_string()), PressureDetector, args)
        .await
        .expect("detector starts");
    let handle = PressureHandle {
        name: Arc::from("pressure-test"),
        events,
    };
    let mut rx = handle.subscribe();
    for i in 0..12u32 {
        assert!(handle.observe("pool/cpu", (300 + wobble(i)) as u32));
        tokio::time::advance(EVERY).await;
    }
    handle.observe("pool/cpu", 960);
    let report = handle.report().await.expect("running");
    assert_eq!(report.overall, Level::Critical);
    assert_eq!(report.resources.len(), 1);
    assert_eq!(report.resources[0].1.utilization, 960);

    let mut seen = Vec::new();
    while let Ok(e) = rx.try_recv() {
        seen.push(e);
    }
    assert!(
        matches!(&seen[0], PressureEvent::Anomaly { resource, anomaly, .. } if resource == "pool/cpu" && anomaly.value == 960),
        "{seen:?}"
    );
    let changes: Vec<_> = seen
        .iter()
        .filter_map(|e| match e {
            PressureEvent::Level(c) => Some((c.resource.clone(), c.to)),
            _ => None,
        })
        .collect();
    assert_eq!(
        changes,
        vec![(Some("pool/cpu".to_string()), Level::Critical), (None, Level::Critical)]
    );
    assert!(handle.forget("pool/cpu"));
    assert_eq!(handle.report().await.unwrap().overall, Level::Normal);
}

/// Records every action applied, in order.
#[derive(Debug, Default)]
struct Recorder(parking_lot::Mutex<Vec<(PressureAction, bool)>>);

impl PressureResponder for Recorder {
    fn apply(&self, action: PressureAction, engaged: bool) -> ResponseOutcome {
        self.0.lock().push((action, engaged));
        ResponseOutcome::Applied(format!("{action} {engaged}"))
    }
}

#[tokio::test(start_paused = true)]
async fn responses_engage_once_at_their_level_and_release_below_it_with_hysteresis() {
    let recorder = Arc::new(Recorder::default());
    let rules = vec![
        PressureResponse {
            at: PressureLevel::High,
            resource: Some("memory".into()),
            action: PressureAction::ShrinkCaches,
        },
        PressureResponse {
            at: PressureLevel::Critical,
            resource: None,
            action: PressureAction::RejectLowPriority,
        },
    ];
    let args = PressureArgs::new(PressureSpec::default())
        .responses(rules)
        .responder(recorder.clone());
    let events = args.events.clone();
    ractor::Actor::spawn(Some("pressure-responses-test".to_string()), PressureDetector, args)
        .await
        .expect("detector starts");
    let handle = PressureHandle {
        name: Arc::from("pressure-responses-test"),
        events,
    };
    let mut rx = handle.subscribe();
    // Memory rises through high (one engagement), hovers within the
    // hysteresis (nothing), CPU goes critical (the overall response), then
    // both fall back.
    for permille in [500, 850, 920, 930, 880, 910] {
        handle.observe("system/memory", permille);
        tokio::time::advance(EVERY).await;
    }
    assert_eq!(handle.report().await.unwrap().engaged, [PressureAction::ShrinkCaches]);
    handle.observe("system/cpu", 970);
    handle.observe("system/memory", 840);
    handle.observe("system/cpu", 600);
    let report = handle.report().await.unwrap();
    assert!(report.engaged.is_empty(), "{report:?}");
    assert_eq!(
        *recorder.0.lock(),
        [
            (PressureAction::ShrinkCaches, true),
            (PressureAction::RejectLowPriority, true),
            (PressureAction::ShrinkCaches, false),
            (PressureAction::RejectLowPriority, false),
        ]
    );
    let mut published = Vec::new();
    while let Ok(e) = rx.try_recv() {
        if let PressureEvent::Response {
            action,
            engaged,
            outcome,
            cause,
        } = e
        {
            assert!(matches!(outcome, ResponseOutcome::Applied(_)));
            published.push((action, engaged, cause.to));
        }
    }
    assert_eq!(
        published,
        [
            (PressureAction::ShrinkCaches, true, Level::High),
            (PressureAction::RejectLowPriority, true, Level::Critical),
            (PressureAction::ShrinkCaches, false, Level::Moderate),
            (PressureAction::RejectLowPriority, false, Level::Moderate),
        ]
    );
}

#[tokio::test]
async fn forgetting_a_resource_releases_what_it_engaged() {
    let recorder = Arc::new(Recorder::default());
    let rules = vec![PressureResponse {
        at: PressureLevel::High,
        resource: Some("memory".into()),
        action: PressureAction::ShedBestEffort,
    }];
    let args = PressureArgs::new(PressureSpec::default())
        .responses(rules)
        .responder(recorder.clone());
    let events = args.events.clone();
    ractor::Actor::spawn(Some("pressure-forget-test".to_string()), PressureDetector, args)
        .await
        .expect("detector starts");
    let handle = PressureHandle {
        name: Arc::from("pressure-forget-test"),
        events,
    };
    handle.observe("workers/memory", 990);
    assert_eq!(handle.report().await.unwrap().engaged, [PressureAction::ShedBestEffort]);
    handle.forget("workers/memory");
    assert!(handle.report().await.unwrap().engaged.is_empty());
    assert_eq!(
        *recorder.0.lock(),
        [
            (PressureAction::ShedBestEffort, true),
            (PressureAction::ShedBestEffort, false)
        ]
    );
}
