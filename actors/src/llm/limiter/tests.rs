use std::time::Duration;

use proptest::prelude::*;

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Largest number of units in any half-open window `[t, t + w)` of a
/// sorted admission log.
fn max_in_any_window(log: &[(Duration, u64)], w: Duration) -> u64 {
    let mut best = 0;
    let mut sum = 0;
    let mut lo = 0;
    for hi in 0..log.len() {
        sum += log[hi].1;
        while log[hi].0 >= log[lo].0 + w {
            sum -= log[lo].1;
            lo += 1;
        }
        best = best.max(sum);
    }
    best
}

/// Drives a limit with `demand(i)`-sized requests as fast as it admits them,
/// jumping to the earliest admission time each time.
fn saturate(w: &mut WindowLimit, until: Duration, demand: impl Fn(u64) -> u64) -> Vec<(Duration, u64)> {
    let mut now = Duration::ZERO;
    let mut log = Vec::new();
    let mut i = 0;
    while now < until {
        let n = demand(i);
        let at = w.earliest(now, n).unwrap();
        if at > now {
            now = at;
            continue;
        }
        w.commit(now, n);
        log.push((now, n));
        i += 1;
    }
    log
}

#[test]
fn saturated_limit_never_exceeds_any_sliding_window_and_uses_it_fully() {
    let mut w = WindowLimit::new(100, MINUTE, 10).unwrap();
    let log = saturate(&mut w, Duration::from_secs(600), |_| 1);
    assert!(max_in_any_window(&log, MINUTE) <= 100);
    let total: u64 = log.iter().map(|e| e.1).sum();
    // 10 minutes at 100 per minute: at least 99 % used.
    assert!(total >= 990, "admitted {total}");
}

#[test]
fn gcra_spreads_a_backlog_after_the_burst() {
    let mut w = WindowLimit::new(60, MINUTE, 5).unwrap();
    for _ in 0..5 {
        assert!(w.admits(Duration::ZERO, 1));
        w.commit(Duration::ZERO, 1);
    }
    // The burst is spent: the next unit waits one emission interval (1 s).
    assert_eq!(w.earliest(Duration::ZERO, 1).unwrap(), ms(1000));
}

#[test]
fn refund_of_an_over_estimate_frees_capacity_at_once() {
    let mut w = WindowLimit::new(1000, MINUTE, 1000).unwrap();
    let seq = w.commit(Duration::ZERO, 900);
    assert!(!w.admits(Duration::ZERO, 200));
    w.adjust(seq, 900, 100);
    assert_eq!(w.in_window(Duration::ZERO), 100);
    assert!(w.admits(Duration::ZERO, 200));
}

#[test]
fn under_estimate_is_added_to_the_window() {
    let mut w = WindowLimit::new(1000, MINUTE, 1000).unwrap();
    let seq = w.commit(Duration::ZERO, 100);
    w.adjust(seq, 100, 400);
    assert_eq!(w.in_window(Duration::ZERO), 400);
}

#[test]
fn entries_leave_the_window_exactly_after_it() {
    let mut w = WindowLimit::new(2, MINUTE, 2).unwrap();
    w.commit(Duration::ZERO, 2);
    assert_eq!(w.earliest(ms(1), 1).unwrap(), MINUTE);
    assert_eq!(w.in_window(MINUTE - ms(1)), 2);
    assert_eq!(w.in_window(MINUTE), 0);
}

#[test]
fn resync_raises_usage_to_what_the_provider_reports() {
    let mut w = WindowLimit::new(100, MINUTE, 100).unwrap();
    w.commit(Duration::ZERO, 10);
    w.resync(Duration::ZERO, 40, None);
    assert_eq!(w.in_window(Duration::ZERO), 60);
    // A report showing less use than known changes nothing.
    w.resync(Duration::ZERO, 90, None);
    assert_eq!(w.in_window(Duration::ZERO), 60);
    // With the provider's own limit given, used = its limit - remaining.
    w.resync(Duration::ZERO, 100, Some(200));
    assert_eq!(w.in_window(Duration::ZERO), 100);
}

#[test]
fn a_request_larger_than_the_window_is_refused_with_a_typed_error() {
    let mut w = WindowLimit::new(100, MINUTE, 10).unwrap();
    assert!(matches!(
        w.earliest(Duration::ZERO, 101),
        Err(RateLimitError::TooLarge {
            requested: 101,
            limit: 100,
            ..
        })
    ));
    assert!(matches!(
        WindowLimit::new(0, MINUTE, 1),
        Err(RateLimitError::ZeroLimit { .. })
    ));
}

#[test]
fn absurd_actuals_fill_one_window_and_never_wedge_the_pacing() {
    let mut w = WindowLimit::new(1000, MINUTE, 100).unwrap();
    let a = w.commit(Duration::ZERO, 10);
    let b = w.commit(Duration::ZERO, 10);
    // A provider reports u64::MAX tokens for both calls.
    w.adjust(a, 10, u64::MAX);
    w.adjust(b, 10, u64::MAX);
    assert_eq!(w.in_window(Duration::ZERO), 2000);
    assert!(!w.admits(Duration::ZERO, 1));
    // The window is full until the entries leave it, and the pacing owes
    // at most one window per report: a unit fits again within minutes,
    // not centuries.
    let at = w.earliest(Duration::ZERO, 1).unwrap();
    assert!(at <= 3 * MINUTE, "next admission at {at:?}");
    assert!(w.admits(at, 1));
    w.commit(at, 1);
    assert_eq!(w.in_window(at), 1);
}

#[test]
fn the_largest_limit_and_request_neither_overflow_nor_wedge() {
    let mut w = WindowLimit::new(u64::MAX, MINUTE, u64::MAX).unwrap();
    assert!(w.admits(Duration::ZERO, u64::MAX));
    w.commit(Duration::ZERO, u64::MAX);
    assert_eq!(w.in_window(Duration::ZERO), u64::MAX);
    assert_eq!(w.earliest(Duration::ZERO, u64::MAX).unwrap(), MINUTE);
    assert_eq!(w.earliest(Duration::ZERO, 1).unwrap(), MINUTE);
    w.commit(MINUTE, u64::MAX);
    assert_eq!(w.earliest(MINUTE, u64::MAX).unwrap(), 2 * MINUTE);
    // Times far in the future saturate instead of overflowing.
    assert!(w.earliest(Duration::MAX, 1).is_ok());
}

#[test]
fn a_request_that_can_never_fit_is_refused_at_once_and_changes_nothing() {
    let limits = RateLimits::rpm_tpm(10, 1000);
    let mut set = LimitSet::new(&limits, 100).unwrap();
    set.commit(Duration::ZERO, Demand::call(100, 100));
    let before = set.earliest(Duration::ZERO, &Demand::call(500, 300)).unwrap();
    for demand in [
        Demand::call(u64::MAX, u64::MAX),
        Demand::call(u64::MAX, 0),
        Demand::call(600, 401),
    ] {
        assert!(matches!(
            set.earliest(Duration::ZERO, &demand),
            Err(RateLimitError::TooLarge { ref what, limit: 1000, .. }) if what == "tokens_per_minute"
        ));
    }
    assert_eq!(set.in_window(Duration::ZERO, Dimension::Tokens), Some(200));
    assert_eq!(set.in_window(Duration::ZERO, Dimension::Requests), Some(1));
    assert_eq!(set.earliest(Duration::ZERO, &Demand::call(500, 300)).unwrap(), before);
}

#[test]
fn limit_set_checks_every_dimension_and_settles_each() {
    let limits = RateLimits {
        requests_per_minute: Some(10),
        input_tokens_per_minute: Some(1000),
        output_tokens_per_minute: Some(500),
        tokens_per_minute: None,
    };
    let mut set = LimitSet::new(&limits, 100).unwrap();
    let g = set.commit(Duration::ZERO, Demand::call(600, 400));
    assert!(set.earliest(Duration::ZERO, &Demand::call(600, 10)).unwrap() > Duration::ZERO);
    set.settle(&g, &Demand::call(300, 50));
    assert_eq!(
        set.earliest(Duration::ZERO, &Demand::call(600, 400)).unwrap(),
        Duration::ZERO
    );
    assert!(matches!(
        set.earliest(Duration::ZERO, &Demand::call(10, 501)),
        Err(RateLimitError::TooLarge { ref what, .. }) if what == "output_tokens_per_minute"
    ));
    assert_eq!(set.usage_permille(Duration::ZERO), 300);
}

proptest! {
    /// The law: whatever the request sizes, refunds and pacing, no sliding
    /// window ever carries more than the limit.
    #[test]
    fn no_sliding_window_exceeds_the_limit(
        limit in 1u64..500,
        burst_pct in 1u64..100,
        sizes in proptest::collection::vec(1u64..50, 1..400),
        refunds in proptest::collection::vec(0u64..50, 1..400),
        gaps in proptest::collection::vec(0u64..3000, 1..400),
    ) {
        let burst = (limit * burst_pct / 100).max(1);
        let mut w = WindowLimit::new(limit, MINUTE, burst).unwrap();
        let mut now = Duration::ZERO;
        let mut log: Vec<(Duration, u64)> = Vec::new();
        for (i, size) in sizes.iter().enumerate() {
            let size = (*size).min(limit);
            now += ms(gaps[i % gaps.len()]);
            let at = w.earliest(now, size).unwrap();
            prop_assert!(at >= now);
            now = at;
            prop_assert!(w.admits(now, size));
            let seq = w.commit(now, size);
            let actual = size.saturating_sub(refunds[i % refunds.len()]);
            w.adjust(seq, size, actual);
            log.push((now, actual));
        }
        prop_assert!(max_in_any_window(&log, MINUTE) <= limit);
    }
}

#[test]
fn a_set_resyncs_only_counts_that_come_without_a_reset() {
    let mut set = LimitSet::new(&RateLimits::rpm_tpm(100, 1_000), 100).unwrap();
    let with_reset = RateLimitSnapshot {
        remaining_requests: Some(0),
        reset_requests: Some(Duration::from_secs(1)),
        remaining_tokens: Some(0),
        reset_tokens: Some(Duration::from_secs(1)),
        ..RateLimitSnapshot::default()
    };
    set.resync(Duration::ZERO, &with_reset);
    assert_eq!(set.in_window(Duration::ZERO, Dimension::Requests), Some(0));
    assert_eq!(set.in_window(Duration::ZERO, Dimension::Tokens), Some(0));
    let without = RateLimitSnapshot {
        remaining_requests: Some(40),
        remaining_tokens: Some(900),
        ..RateLimitSnapshot::default()
    };
    set.resync(Duration::ZERO, &without);
    assert_eq!(set.in_window(Duration::ZERO, Dimension::Requests), Some(60));
    assert_eq!(set.in_window(Duration::ZERO, Dimension::Tokens), Some(100));
}
