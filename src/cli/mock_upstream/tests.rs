use std::time::Duration;

use proptest::prelude::*;

use super::{RpmWindow, WINDOW};

const S: Duration = Duration::from_secs(1);

#[test]
fn admits_the_limit_then_refuses_until_the_oldest_leaves_the_minute() {
    let mut w = RpmWindow::new(Some(3));
    assert_eq!(w.admit(Duration::ZERO), Ok(()));
    assert_eq!(w.admit(10 * S), Ok(()));
    assert_eq!(w.admit(20 * S), Ok(()));
    // The fourth in the same minute waits for the first to be a minute old.
    assert_eq!(w.admit(30 * S), Err(30 * S));
    assert_eq!(w.admit(59 * S), Err(S));
    assert_eq!(w.admit(60 * S), Ok(()));
    // Full again: the second leaves at 70 s.
    assert_eq!(w.admit(61 * S), Err(9 * S));
    assert_eq!(w.admit(70 * S), Ok(()));
}

#[test]
fn no_limit_admits_everything_and_zero_refuses_everything() {
    let mut open = RpmWindow::new(None);
    for i in 0..10_000 {
        assert_eq!(open.admit(Duration::from_micros(i)), Ok(()));
    }
    let mut shut = RpmWindow::new(Some(0));
    assert_eq!(shut.admit(Duration::ZERO), Err(WINDOW));
    assert_eq!(shut.admit(WINDOW * 2), Err(WINDOW));
}

proptest! {
    /// In every minute-long span, at most `limit` requests are admitted,
    /// and a request is refused only when `limit` were admitted in the
    /// minute before it.
    #[test]
    fn never_more_than_the_limit_in_any_minute(
        limit in 1u64..20,
        gaps in prop::collection::vec(0u64..5_000, 1..400),
    ) {
        let mut w = RpmWindow::new(Some(limit));
        let mut now = Duration::ZERO;
        let mut admitted: Vec<Duration> = Vec::new();
        for gap in gaps {
            now += Duration::from_millis(gap);
            let in_last_minute = admitted.iter().filter(|&&t| now - t < WINDOW).count() as u64;
            match w.admit(now) {
                Ok(()) => {
                    prop_assert!(in_last_minute < limit);
                    admitted.push(now);
                }
                Err(wait) => {
                    prop_assert_eq!(in_last_minute, limit);
                    prop_assert!(wait > Duration::ZERO && wait <= WINDOW);
                }
            }
        }
    }
}
