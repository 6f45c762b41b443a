use std::time::Duration;

use super::*;

fn s(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

fn snap(
    remaining_requests: Option<u64>,
    reset_requests: Option<Duration>,
    remaining_tokens: Option<u64>,
    reset_tokens: Option<Duration>,
) -> RateLimitSnapshot {
    RateLimitSnapshot {
        remaining_requests,
        remaining_tokens,
        reset_requests,
        reset_tokens,
        ..RateLimitSnapshot::default()
    }
}

#[test]
fn nothing_learned_admits_at_once() {
    let l = Learned::new();
    assert_eq!(l.earliest(s(5), &Demand::call(1_000, 1_000)), s(5));
}

#[test]
fn no_tokens_left_holds_until_the_reset_and_not_a_moment_longer() {
    let mut l = Learned::new();
    l.learn(s(10), &snap(None, None, Some(0), Some(Duration::from_secs(360))));
    let d = Demand::call(10, 10);
    assert_eq!(l.earliest(s(10), &d), s(370));
    assert_eq!(l.earliest(s(200), &d), s(370));
    assert_eq!(l.earliest(s(370), &d), s(370));
    assert_eq!(l.earliest(s(371), &d), s(371));
}

#[test]
fn no_requests_left_holds_until_the_requests_reset() {
    let mut l = Learned::new();
    l.learn(s(0), &snap(Some(0), Some(Duration::from_millis(20)), None, None));
    assert_eq!(l.earliest(s(0), &Demand::call(1, 1)), Duration::from_millis(20));
}

#[test]
fn an_allowance_is_counted_down_by_admissions() {
    let mut l = Learned::new();
    l.learn(s(0), &snap(Some(2), Some(s(30)), Some(100), Some(s(40))));
    let d = Demand::call(30, 20);
    assert_eq!(l.earliest(s(1), &d), s(1));
    l.commit(s(1), &d);
    assert_eq!(l.requests().map(|a| a.remaining), Some(1));
    assert_eq!(l.tokens().map(|a| a.remaining), Some(50));
    assert_eq!(l.earliest(s(2), &d), s(2));
    l.commit(s(2), &d);
    // No request left (until 30 s), and no token left (until 40 s).
    assert_eq!(l.earliest(s(3), &Demand::call(0, 0)), s(30));
    assert_eq!(l.earliest(s(3), &d), s(40));
    // A request larger than what is left waits for the reset.
    let mut big = Learned::new();
    big.learn(s(0), &snap(None, None, Some(100), Some(s(9))));
    assert_eq!(big.earliest(s(0), &Demand::call(80, 40)), s(9));
    assert_eq!(big.earliest(s(0), &Demand::call(80, 20)), s(0));
}

#[test]
fn an_expired_allowance_is_forgotten_and_a_new_report_replaces_the_old() {
    let mut l = Learned::new();
    l.learn(s(0), &snap(Some(0), Some(s(5)), None, None));
    l.commit(s(6), &Demand::call(1, 1));
    assert_eq!(l.requests(), None);
    l.learn(s(6), &snap(Some(0), Some(s(5)), None, None));
    l.learn(s(7), &snap(Some(3), Some(s(5)), None, None));
    assert_eq!(l.earliest(s(7), &Demand::call(1, 1)), s(7));
}

#[test]
fn a_remaining_count_without_a_reset_teaches_no_allowance() {
    let mut l = Learned::new();
    l.learn(s(0), &snap(Some(0), None, Some(0), None));
    assert_eq!(l, Learned::new());
}

#[test]
fn a_hold_is_never_shortened() {
    let mut l = Learned::new();
    l.hold_until(s(20));
    l.hold_until(s(10));
    assert_eq!(l.earliest(s(0), &Demand::call(1, 1)), s(20));
    assert_eq!(l.earliest(s(25), &Demand::call(1, 1)), s(25));
}
