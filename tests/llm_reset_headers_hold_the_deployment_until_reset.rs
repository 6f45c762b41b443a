//! A reply's `x-ratelimit-remaining-{tokens,requests}: 0` with its
//! `x-ratelimit-reset-*` (`6m0s`, `1m30.5s`, `1s`, `20ms`) holds the
//! deployment and every other model of its provider until the reset, and
//! not longer: with limits configured on the provider entry, on the
//! deployment, or nowhere at all. A deployment of the same model at
//! another provider keeps serving. Replies are read through the HTTP
//! provider's own header parsing, on paused time.

#[path = "support/scripted_headers.rs"]
mod scripted;

use std::time::Duration;

use nexus_swarm::actors::llm::LlmRequest;
use scripted::{LimitsAt, Reply, Scripted, gateway};
use tokio::time::Instant;

const TIMEOUT: Duration = Duration::from_secs(900);
const LEVELS: [LimitsAt; 3] = [LimitsAt::Provider, LimitsAt::Deployment, LimitsAt::Nowhere];

fn req(model: &str) -> LlmRequest {
    LlmRequest::user("hello").model(model).max_tokens(5).timeout(TIMEOUT)
}

/// After a reply with `headers`, calls of the same model and of the other
/// model of the provider reach it exactly `hold` later (within a
/// millisecond), at every level limits may be configured at.
async fn holds_both_models_for(headers: &[(&'static str, &'static str)], hold: Duration) {
    for at in LEVELS {
        let p = Scripted::new();
        p.script("a", [Reply::ok(headers)]);
        let gw = gateway(&p, at, None, 0).await;
        gw.complete(req("a")).await.unwrap();
        let t0 = p.calls_of("a")[0];
        let (same, other) = tokio::join!(gw.complete(req("a")), gw.complete(req("b")));
        same.unwrap();
        other.unwrap();
        for (model, arrived) in [("a", p.calls_of("a")[1]), ("b", p.calls_of("b")[0])] {
            let waited = arrived - t0;
            assert!(
                waited >= hold && waited <= hold + Duration::from_millis(1),
                "{at:?}, {headers:?}: model {model} reached the provider after {waited:?}, not {hold:?}"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn no_tokens_left_for_six_minutes_holds_the_provider_six_minutes() {
    holds_both_models_for(
        &[("x-ratelimit-remaining-tokens", "0"), ("x-ratelimit-reset-tokens", "6m0s")],
        Duration::from_secs(360),
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn no_requests_left_holds_until_the_requests_reset() {
    holds_both_models_for(
        &[("x-ratelimit-remaining-requests", "0"), ("x-ratelimit-reset-requests", "1m30.5s")],
        Duration::from_millis(90_500),
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn second_and_millisecond_resets_hold_exactly_that_long() {
    holds_both_models_for(
        &[("x-ratelimit-remaining-tokens", "0"), ("x-ratelimit-reset-tokens", "1s")],
        Duration::from_secs(1),
    )
    .await;
    holds_both_models_for(
        &[("x-ratelimit-remaining-requests", "0"), ("x-ratelimit-reset-requests", "20ms")],
        Duration::from_millis(20),
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn capacity_left_holds_nothing() {
    for at in LEVELS {
        let p = Scripted::new();
        p.script(
            "a",
            [Reply::ok(&[
                ("x-ratelimit-remaining-requests", "41"),
                ("x-ratelimit-reset-requests", "1m30s"),
                ("x-ratelimit-remaining-tokens", "90000"),
                ("x-ratelimit-reset-tokens", "6m0s"),
            ])],
        );
        let gw = gateway(&p, at, None, 0).await;
        gw.complete(req("a")).await.unwrap();
        let start = Instant::now();
        gw.complete(req("a")).await.unwrap();
        gw.complete(req("b")).await.unwrap();
        assert_eq!(start.elapsed(), Duration::ZERO, "{at:?}");
        assert_eq!(p.calls().len(), 3);
    }
}

#[tokio::test(start_paused = true)]
async fn the_allowance_a_reply_reports_is_counted_down_until_its_reset() {
    // Two requests left for 30 s: two more go at once, the third waits.
    for at in LEVELS {
        let p = Scripted::new();
        p.script(
            "a",
            [Reply::ok(&[
                ("x-ratelimit-remaining-requests", "2"),
                ("x-ratelimit-reset-requests", "30s"),
            ])],
        );
        let gw = gateway(&p, at, None, 0).await;
        gw.complete(req("a")).await.unwrap();
        let t0 = p.calls_of("a")[0];
        let (x, y, z) = tokio::join!(gw.complete(req("b")), gw.complete(req("b")), gw.complete(req("b")));
        for r in [x, y, z] {
            r.unwrap();
        }
        let waited: Vec<Duration> = p.calls_of("b").into_iter().map(|t| t - t0).collect();
        assert_eq!(
            waited,
            vec![Duration::ZERO, Duration::ZERO, Duration::from_secs(30)],
            "{at:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn another_provider_serves_the_model_while_its_provider_is_held() {
    for at in LEVELS {
        let p = Scripted::new();
        let q = Scripted::new();
        p.script(
            "a",
            [Reply::ok(&[("x-ratelimit-remaining-tokens", "0"), ("x-ratelimit-reset-tokens", "6m0s")])],
        );
        let gw = gateway(&p, at, Some(&q), 0).await;
        // Route until a call has reached p (routing shuffles).
        while p.calls().is_empty() {
            gw.complete(req("a")).await.unwrap();
        }
        let start = Instant::now();
        for _ in 0..5 {
            let r = gw.complete(req("a")).await.unwrap();
            assert_eq!(r.deployment, "a@q", "{at:?}");
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "{at:?}");
        assert_eq!(p.calls().len(), 1, "{at:?}");
    }
}
