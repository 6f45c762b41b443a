use std::time::Duration;

use super::*;
use crate::llm::catalogue::{DeploymentSpec, ModelSpec};
use crate::llm::types::RateLimitSnapshot;

fn model(name: &str) -> ModelSpec {
    ModelSpec::new(name, 8_000, 1, 1).deployment(DeploymentSpec::new(format!("{name}@p"), "p"))
}

fn names(catalogue: &ModelCatalogue, chain: &mut FallbackChain<'_>) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(m) = chain.next() {
        out.push(catalogue.models[m].name.clone());
        chain.failed(m);
    }
    out
}

#[test]
fn fallbacks_are_tried_in_order_once_each_even_in_a_cycle() {
    let catalogue = ModelCatalogue::new(vec![
        model("a").fallbacks(["b", "c"]),
        model("b").fallbacks(["a", "d"]),
        model("c").fallbacks(["b"]),
        model("d"),
    ])
    .unwrap();
    let mut chain = FallbackChain::new(&catalogue, 0);
    assert_eq!(names(&catalogue, &mut chain), ["a", "b", "c", "d"]);
    assert_eq!(chain.into_tried(), ["a", "b", "c", "d"]);
}

#[test]
fn a_request_too_large_goes_to_the_larger_models_first() {
    let catalogue = ModelCatalogue::new(vec![
        model("a").fallbacks(["b", "c"]),
        model("b").fallbacks(["c"]).context_fallbacks(["big", "bigger"]),
        model("c"),
        model("big"),
        model("bigger"),
    ])
    .unwrap();
    let mut chain = FallbackChain::new(&catalogue, 0);
    assert_eq!(chain.next(), Some(0));
    assert!(!chain.is_fallback());
    chain.failed(0); // queued: b, c
    assert_eq!(chain.next(), Some(1));
    assert!(chain.is_fallback());
    chain.too_large(1); // big and bigger go ahead of c, in their order
    assert_eq!(chain.next(), Some(3));
    assert_eq!(chain.next(), Some(4));
    assert_eq!(chain.next(), Some(2));
    assert_eq!(chain.next(), None);
    assert_eq!(chain.into_tried(), ["a", "b", "big", "bigger", "c"]);
}

#[test]
fn a_model_without_fallbacks_ends_the_chain() {
    let catalogue = ModelCatalogue::new(vec![model("only")]).unwrap();
    let mut chain = FallbackChain::new(&catalogue, 0);
    assert_eq!(chain.next(), Some(0));
    chain.failed(0);
    chain.too_large(0);
    assert_eq!(chain.next(), None);
    assert_eq!(chain.into_tried(), ["only"]);
}

fn s(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

fn server() -> ProviderError {
    ProviderError::Server {
        status: 503,
        message: "busy".into(),
    }
}

#[test]
fn a_passing_error_is_retried_while_retries_and_time_are_left() {
    assert_eq!(
        after_failure(&server(), 0, 3, s(1), s(60), || s(2)),
        AfterFailure::Retry(s(2))
    );
    assert_eq!(
        after_failure(&server(), 2, 3, s(1), s(60), || s(2)),
        AfterFailure::Retry(s(2))
    );
    assert_eq!(
        after_failure(&server(), 3, 3, s(1), s(60), || s(2)),
        AfterFailure::GiveUp
    );
}

#[test]
fn an_error_that_cannot_pass_gives_up_at_once() {
    let auth = ProviderError::Auth { status: 401 };
    let asked = std::cell::Cell::new(false);
    let delay = || {
        asked.set(true);
        s(1)
    };
    assert_eq!(after_failure(&auth, 0, 3, s(1), s(60), delay), AfterFailure::GiveUp);
    assert!(!asked.get(), "no backoff is drawn for a call that is not retried");
}

#[test]
fn a_retry_that_would_end_past_the_deadline_is_a_deadline() {
    let limited = ProviderError::RateLimited {
        retry_after: Some(s(30)),
        snapshot: RateLimitSnapshot::default(),
    };
    assert_eq!(
        after_failure(&limited, 0, 3, s(40), s(60), || s(30)),
        AfterFailure::Deadline
    );
    assert_eq!(
        after_failure(&limited, 0, 3, s(20), s(60), || s(30)),
        AfterFailure::Retry(s(30))
    );
    // Already late: a deadline, even for an error that could not pass.
    assert_eq!(
        after_failure(&ProviderError::Auth { status: 403 }, 0, 3, s(60), s(60), || s(1)),
        AfterFailure::Deadline
    );
}
