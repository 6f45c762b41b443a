use std::time::Duration;

use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;

#[test]
fn ceiling_doubles_then_caps() {
    let b = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    assert_eq!(b.ceiling(0), Duration::from_millis(500));
    assert_eq!(b.ceiling(1), Duration::from_secs(1));
    assert_eq!(b.ceiling(3), Duration::from_secs(4));
    assert_eq!(b.ceiling(10), Duration::from_secs(30));
    assert_eq!(b.ceiling(200), Duration::from_secs(30));
}

#[test]
fn retry_after_is_honoured_even_above_the_cap() {
    let b = Backoff::new(Duration::from_millis(10), Duration::from_millis(100));
    let mut rng = StdRng::seed_from_u64(7);
    for attempt in 0..5 {
        let d = b.delay(attempt, Some(Duration::from_secs(2)), &mut rng);
        assert_eq!(d, Duration::from_secs(2));
    }
}

#[test]
fn jitter_spreads_over_the_whole_range() {
    let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    let mut rng = StdRng::seed_from_u64(1);
    let delays: Vec<Duration> = (0..200).map(|_| b.delay(2, None, &mut rng)).collect();
    assert!(delays.iter().any(|d| *d < Duration::from_millis(100)));
    assert!(delays.iter().any(|d| *d > Duration::from_millis(300)));
}

proptest! {
    #[test]
    fn delay_stays_within_jitter_range_or_retry_after(
        attempt in 0u32..64, seed in any::<u64>(), ra in proptest::option::of(0u64..100_000)
    ) {
        let b = Backoff::new(Duration::from_millis(50), Duration::from_secs(20));
        let mut rng = StdRng::seed_from_u64(seed);
        let ra = ra.map(Duration::from_millis);
        let d = b.delay(attempt, ra, &mut rng);
        prop_assert!(d <= b.ceiling(attempt).max(ra.unwrap_or_default()));
        prop_assert!(d >= ra.unwrap_or_default());
    }
}
