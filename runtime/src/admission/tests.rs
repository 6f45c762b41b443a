use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::config::{AdmissionConfig, AdmissionPolicies, AdmissionPolicy, MailboxConfig};

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;

/// Takes every token available at `now`.
fn drain(g: &Gcra, now: u64) -> u64 {
    let mut n = 0;
    while g.acquire(now, 0).is_ok() {
        n += 1;
    }
    n
}

#[test]
fn a_full_bucket_gives_its_burst_then_one_token_per_interval() {
    let g = Gcra::new(1000, 100).unwrap();
    assert_eq!(g.interval_ns(), Some(MS));
    assert_eq!(drain(&g, 0), 100);
    assert_eq!(g.acquire(0, 0), Err(Denied::After(MS)));
    assert_eq!(drain(&g, MS - 1), 0);
    assert_eq!(drain(&g, MS), 1);
    assert_eq!(drain(&g, 10 * MS), 9);
    // Idle for a long time: the bucket refills to its burst, no more.
    assert_eq!(drain(&g, 10 * SEC), 100);
}

#[test]
fn bad_rate_or_burst_is_refused_naming_the_field() {
    assert_eq!(Gcra::new(0, 1).unwrap_err().field(), "router.admission.rate_per_sec");
    assert_eq!(Gcra::new(1, 0).unwrap_err().field(), "router.admission.burst");
}

#[test]
fn a_burst_whose_tolerance_would_overflow_is_refused_naming_the_field() {
    // At 1/s throttled to 1 permille a token takes 1000 s: u32::MAX of them
    // span far more than u64 nanoseconds.
    let err = Gcra::new(1, u32::MAX).unwrap_err();
    assert_eq!(err.field(), "router.admission.burst");
    let most = MAX_TOLERANCE_NS / (1000 * SEC);
    let most = u32::try_from(most).unwrap();
    assert!(Gcra::new(1, most + 1).is_err());
    // The largest accepted burst keeps an exact bucket at the slowest rate.
    let g = Gcra::new(1, most).unwrap();
    g.set_rate_factor(1, 0);
    assert_eq!(g.interval_ns(), Some(1000 * SEC));
    assert_eq!(g.available(0), u64::from(most));
    assert_eq!(g.acquire(0, 0), Ok(0));
    assert_eq!(g.available(0), u64::from(most) - 1);
    // Any u32 burst is fine at the default rate.
    assert!(Gcra::new(1000, u32::MAX).is_ok());
    // The configuration check says so too.
    let err = crate::config::NexusConfig::from_toml_str("[router.admission]\nrate_per_sec = 1\nburst = 4294967295\n")
        .unwrap_err();
    assert_eq!(err.field(), "router.admission.burst");
}

#[test]
fn a_refusal_consumes_nothing() {
    let g = Gcra::new(10, 1).unwrap();
    assert!(g.acquire(0, 0).is_ok());
    for _ in 0..1000 {
        assert!(g.acquire(1, 0).is_err());
    }
    // The next token is exactly one interval after the first.
    assert_eq!(g.acquire(100 * MS, 0), Ok(0));
}

#[test]
fn waiters_reserve_consecutive_slots() {
    let g = Gcra::new(1000, 2).unwrap();
    assert_eq!(g.acquire(0, SEC), Ok(0));
    assert_eq!(g.acquire(0, SEC), Ok(0));
    assert_eq!(g.acquire(0, SEC), Ok(MS));
    assert_eq!(g.acquire(0, SEC), Ok(2 * MS));
    // Not willing to wait 3 ms: refused, and told when to retry.
    assert_eq!(g.acquire(0, 2 * MS), Err(Denied::After(3 * MS)));
    assert_eq!(g.acquire(0, SEC), Ok(3 * MS));
}

#[test]
fn a_rate_factor_scales_the_rate_and_keeps_the_bucket_level() {
    let g = Gcra::new(1000, 10).unwrap();
    assert_eq!(drain(&g, 0), 10);
    g.set_rate_factor(500, 0);
    assert_eq!(g.rate_factor(), 500);
    assert_eq!(g.interval_ns(), Some(2 * MS));
    // Empty before the change, still empty after it: no fresh burst.
    assert_eq!(drain(&g, 0), 0);
    assert_eq!(drain(&g, 2 * MS), 1);
    assert_eq!(drain(&g, 3 * MS), 0);
    assert_eq!(drain(&g, 4 * MS), 1);
    g.set_rate_factor(FULL_RATE_PERMILLE, 4 * MS);
    assert_eq!(drain(&g, 5 * MS), 1);
}

#[test]
fn a_zero_factor_suspends_until_raised() {
    let g = Gcra::new(1000, 5).unwrap();
    assert_eq!(drain(&g, 0), 5);
    g.set_rate_factor(0, 0);
    assert_eq!(g.acquire(10 * SEC, SEC), Err(Denied::Suspended));
    assert_eq!(g.interval_ns(), None);
    g.set_rate_factor(1000, 10 * SEC);
    assert_eq!(drain(&g, 10 * SEC), 5);
}

proptest! {
    /// The law: over [0, t] starting full, at most floor(t / T) + burst
    /// tokens, with T the interval, however the requests are spread.
    #[test]
    fn never_more_than_rate_times_t_plus_burst(
        rate in 1u32..5000,
        burst in 1u32..200,
        gaps in prop::collection::vec(0u64..5 * MS, 1..400),
        greedy in any::<bool>(),
    ) {
        let g = Gcra::new(rate, burst).unwrap();
        let t_ns = g.interval_ns().unwrap();
        let mut now = 0;
        let mut admitted = 0u64;
        for gap in gaps {
            now += gap;
            admitted += if greedy { drain(&g, now) } else { u64::from(g.acquire(now, 0).is_ok()) };
            prop_assert!(admitted <= now / t_ns + u64::from(burst));
        }
    }

    /// And the bound is reached: a sender that takes every token as soon as
    /// it is due gets exactly floor(t / T) + burst.
    #[test]
    fn a_greedy_sender_gets_exactly_rate_times_t_plus_burst(rate in 1u32..5000, burst in 1u32..200, steps in 0u64..400) {
        let g = Gcra::new(rate, burst).unwrap();
        let t_ns = g.interval_ns().unwrap();
        let mut admitted = 0u64;
        for k in 0..=steps {
            admitted += drain(&g, k * t_ns);
            prop_assert_eq!(admitted, k + u64::from(burst));
        }
    }

    /// Reservations respect the same law at the times they are granted for.
    #[test]
    fn reservations_never_exceed_the_rate(rate in 1u32..5000, burst in 1u32..50, n in 1usize..300) {
        let g = Gcra::new(rate, burst).unwrap();
        let t_ns = g.interval_ns().unwrap();
        let mut times: Vec<u64> = (0..n).map(|_| g.acquire(0, u64::MAX).unwrap()).collect();
        times.sort_unstable();
        for (i, &at) in times.iter().enumerate() {
            prop_assert!((i as u64 + 1) <= at / t_ns + u64::from(burst), "token {} at {}", i, at);
        }
    }
}

fn config(policy: AdmissionPolicy) -> AdmissionConfig {
    AdmissionConfig {
        enabled: true,
        rate_per_sec: 1000,
        burst: 100,
        policy: AdmissionPolicies {
            high: policy,
            normal: policy,
            low: policy,
        },
    }
}

#[tokio::test(start_paused = true)]
async fn admits_rate_times_t_plus_burst_over_paused_time_and_no_more() {
    let admission = Admission::new(&config(AdmissionPolicy::Reject), &MailboxConfig::default()).unwrap();
    let step = Duration::from_micros(250);
    let window = Duration::from_secs(2);
    let mut admitted = 0u64;
    let mut elapsed = Duration::ZERO;
    loop {
        while admission.try_admit(Priority::Normal).is_ok() {
            admitted += 1;
        }
        if elapsed >= window {
            break;
        }
        tokio::time::advance(step).await;
        elapsed += step;
    }
    assert_eq!(admitted, 1000 * 2 + 100);
    let m = admission.metrics();
    assert_eq!(m.priority(Priority::Normal).admitted, 2100);
    assert!(m.priority(Priority::Normal).rejected > 0);
}

#[tokio::test(start_paused = true)]
async fn reject_policy_says_when_to_retry() {
    let admission = Admission::new(&config(AdmissionPolicy::Reject), &MailboxConfig::default()).unwrap();
    for _ in 0..100 {
        admission.admit(Priority::Low).await.unwrap();
    }
    let err = admission.admit(Priority::Low).await.unwrap_err();
    assert_eq!(
        err,
        AdmissionError::RateLimited {
            priority: Priority::Low,
            retry_after: Duration::from_millis(1)
        }
    );
    assert_eq!(err.retry_after(), Some(Duration::from_millis(1)));
    tokio::time::advance(err.retry_after().unwrap()).await;
    admission.admit(Priority::Low).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn wait_policy_waits_for_its_slot_up_to_the_lane_timeout() {
    let mut mailbox = MailboxConfig::default();
    mailbox.high.timeout = Duration::from_millis(50);
    let admission = Admission::new(&config(AdmissionPolicy::Wait), &mailbox).unwrap();
    for _ in 0..100 {
        admission.try_admit(Priority::High).unwrap();
    }
    let start = tokio::time::Instant::now();
    admission.admit(Priority::High).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(1));
    // Reserve the slots of the next 50 ms: the one after would wait longer than the lane timeout.
    for _ in 0..50 {
        assert!(admission.reserve(Priority::High, None).is_ok());
    }
    let err = admission.admit(Priority::High).await.unwrap_err();
    assert!(
        matches!(err, AdmissionError::WaitTooLong { max_wait, .. } if max_wait == Duration::from_millis(50)),
        "{err:?}"
    );
    // A caller's deadline shortens the wait further.
    let err = admission
        .admit_within(Priority::Normal, Some(Duration::from_millis(10)))
        .await
        .unwrap_err();
    assert!(matches!(err, AdmissionError::WaitTooLong { .. }), "{err:?}");
    let m = admission.metrics().priority(Priority::High);
    assert_eq!((m.admitted, m.waited, m.rejected), (151, 51, 1));
}

#[tokio::test(start_paused = true)]
async fn rate_control_throttles_and_restores() {
    let admission = Admission::new(&config(AdmissionPolicy::Reject), &MailboxConfig::default()).unwrap();
    while admission.try_admit(Priority::Normal).is_ok() {}
    RateControl::set_rate_factor(&admission, 100);
    assert_eq!(admission.metrics().rate_factor_permille, 100);
    tokio::time::advance(Duration::from_secs(1)).await;
    let mut n = 0;
    while admission.try_admit(Priority::Normal).is_ok() {
        n += 1;
    }
    assert_eq!(n, 100, "a tenth of the rate for one second");
    RateControl::set_rate_factor(&admission, 0);
    assert!(matches!(
        admission.try_admit(Priority::High),
        Err(AdmissionError::Suspended {
            priority: Priority::High
        })
    ));
    RateControl::set_rate_factor(&admission, 1000);
    tokio::time::advance(Duration::from_millis(10)).await;
    let mut n = 0;
    while admission.try_admit(Priority::Normal).is_ok() {
        n += 1;
    }
    assert_eq!(n, 10);
}

#[tokio::test(start_paused = true)]
async fn disabled_admission_admits_everything() {
    let cfg = AdmissionConfig {
        enabled: false,
        ..AdmissionConfig::default()
    };
    let admission = Admission::new(&cfg, &MailboxConfig::default()).unwrap();
    for _ in 0..10_000 {
        admission.try_admit(Priority::Low).unwrap();
    }
    assert!(!admission.is_enabled());
    assert_eq!(admission.metrics().priority(Priority::Low).admitted, 10_000);
}
