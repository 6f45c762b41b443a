//! A 429's retry-after (`retry-after` in seconds, `retry-after-ms`) holds
//! back the deployment that got it for every caller, not only the request
//! that got it: callers arriving during it wait until it ends, whether
//! limits are configured on the provider entry, on the deployment or
//! nowhere. A deployment of the same model at another provider serves them
//! meanwhile, and other models of the provider are not held.

use crate::support::scripted_headers as scripted;

use std::time::Duration;

use nexus_swarm::actors::llm::{GatewayError, LlmRequest, ProviderError};
use scripted::{LimitsAt, Reply, Scripted, gateway};
use tokio::time::Instant;

const TIMEOUT: Duration = Duration::from_secs(300);
const LEVELS: [LimitsAt; 3] = [LimitsAt::Provider, LimitsAt::Deployment, LimitsAt::Nowhere];

fn req(model: &str) -> LlmRequest {
    LlmRequest::user("hello").model(model).max_tokens(5).timeout(TIMEOUT)
}

/// Model `a` gets a 429 with `headers` (no retries: the caller gets the
/// error); a second caller arriving during the hold reaches the provider
/// exactly `hold` after the 429. Model `b` of the same provider is served
/// at once unless the headers said the provider itself has nothing left.
async fn holds_every_caller(headers: &'static [(&'static str, &'static str)], hold: Duration, provider_held: bool) {
    for at in LEVELS {
        let p = Scripted::new();
        p.script("a", [Reply::too_many(headers)]);
        let gw = gateway(&p, at, None, 0).await;
        match gw.complete(req("a")).await {
            Err(GatewayError::Exhausted {
                last: ProviderError::RateLimited { retry_after, .. },
                ..
            }) => assert_eq!(retry_after, Some(hold)),
            other => panic!("{at:?}: {other:?}"),
        }
        let t0 = p.calls_of("a")[0];
        tokio::time::sleep(hold / 4).await;
        let (second, other) = tokio::join!(gw.complete(req("a")), async {
            let started = Instant::now();
            gw.complete(req("b")).await.map(|_| started.elapsed())
        });
        second.unwrap();
        let b_waited = other.unwrap();
        if provider_held {
            assert_eq!(
                b_waited,
                hold - hold / 4,
                "{at:?}: model b was not held with its provider"
            );
        } else {
            assert_eq!(b_waited, Duration::ZERO, "{at:?}: model b was held");
        }
        let waited = p.calls_of("a")[1] - t0;
        assert!(
            waited >= hold && waited <= hold + Duration::from_millis(1),
            "{at:?}: the second caller reached the provider after {waited:?}, not {hold:?}"
        );
        assert_eq!(gw.stats().provider_429s, 1);
    }
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_in_seconds_holds_every_caller_of_the_deployment() {
    holds_every_caller(&[("retry-after", "20")], Duration::from_secs(20), false).await;
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_in_milliseconds_holds_every_caller_of_the_deployment() {
    holds_every_caller(&[("retry-after-ms", "150")], Duration::from_millis(150), false).await;
}

#[tokio::test(start_paused = true)]
async fn a_429_without_retry_after_holds_the_deployment_and_provider_until_the_reported_reset() {
    holds_every_caller(
        &[
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "1s"),
        ],
        Duration::from_secs(1),
        true,
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn callers_during_a_retry_after_go_to_a_free_deployment_of_the_model() {
    for at in LEVELS {
        let p = Scripted::new();
        let q = Scripted::new();
        p.script("a", [Reply::too_many(&[("retry-after", "30")])]);
        let gw = gateway(&p, at, Some(&q), 0).await;
        // Route until the 429 has come back from p (routing shuffles).
        while p.calls().is_empty() {
            let _ = gw.complete(req("a")).await;
        }
        let start = Instant::now();
        for _ in 0..5 {
            let r = gw.complete(req("a")).await.unwrap();
            assert_eq!(r.deployment, "a@q", "{at:?}");
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "{at:?}");
        assert_eq!(p.calls().len(), 1, "{at:?}: p was called during its retry-after");
    }
}

#[tokio::test(start_paused = true)]
async fn the_request_that_got_the_429_retries_after_it_and_succeeds() {
    for at in LEVELS {
        let p = Scripted::new();
        p.script("a", [Reply::too_many(&[("retry-after", "5")])]);
        let gw = gateway(&p, at, None, 2).await;
        let start = Instant::now();
        let r = gw.complete(req("a")).await.unwrap();
        assert_eq!(r.attempts, 2, "{at:?}");
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_secs(5) && waited < Duration::from_secs(6),
            "{at:?}: {waited:?}"
        );
    }
}
