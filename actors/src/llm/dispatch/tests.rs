use std::time::Duration;

use nexus_swarm_runtime::config::LlmConfig;
use nexus_swarm_runtime::priority::Priority;

use super::*;
use crate::llm::limiter::RateLimits;
use crate::llm::types::RateLimitSnapshot;

fn s(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

fn set(limits: RateLimits) -> LimitSet {
    // A burst of the whole limit: pacing aside, the window decides.
    LimitSet::new(&limits, 100).unwrap()
}

/// `providers` limits; `routes` as (model, provider, own limits).
fn dispatcher(models: usize, providers: &[RateLimits], routes: &[(usize, usize, RateLimits)]) -> Dispatcher<u32> {
    let routes = routes
        .iter()
        .map(|&(model, provider, limits)| Route {
            model,
            provider,
            weight: 1,
            input_price: 1,
            output_price: 1,
            limits: set(limits),
        })
        .collect();
    Dispatcher::new(DispatcherArgs::new(
        &LlmConfig::default(),
        (0..models).map(|m| format!("m{m}")).collect(),
        providers.iter().map(|l| set(*l)).collect(),
        routes,
    ))
}

fn rpm(n: u64) -> RateLimits {
    RateLimits {
        requests_per_minute: Some(n),
        ..RateLimits::default()
    }
}

fn tpm(n: u64) -> RateLimits {
    RateLimits {
        tokens_per_minute: Some(n),
        ..RateLimits::default()
    }
}

fn admit(d: &mut Dispatcher<u32>, now: Duration, model: usize, demand: Demand) -> Grant {
    match d.try_admit_new(now, model, Priority::Normal, demand) {
        Some(Ok(g)) => g,
        other => panic!("not admitted: {other:?}"),
    }
}

fn job(id: u32, demand: Demand) -> Job<u32> {
    Job { demand, caller: id }
}

fn admitted(scan: &Scan<Job<u32>, Grant, GatewayError>) -> Vec<u32> {
    scan.admitted.iter().map(|(w, _)| w.payload.caller).collect()
}

fn ok(snapshot: RateLimitSnapshot) -> Result<ProviderResponse, ProviderError> {
    Ok(ProviderResponse {
        content: "ok".into(),
        input_tokens: 1,
        output_tokens: 1,
        finish_reason: "stop".into(),
        rate_limit: snapshot,
        tool_calls: Vec::new(),
    })
}

#[test]
fn a_provider_limit_releases_the_highest_priority_among_all_its_models() {
    // Two models on one provider with room for 2 requests a minute.
    let mut d = dispatcher(
        2,
        &[rpm(2)],
        &[(0, 0, RateLimits::default()), (1, 0, RateLimits::default())],
    );
    let one = Demand::call(1, 1);
    let _a = admit(&mut d, s(0), 0, one);
    let _b = admit(&mut d, s(0), 0, one);
    // Full: low-priority calls of model 0 queue first, then a high one of model 1.
    for id in 1..=3 {
        assert!(d.try_admit_new(s(1), 0, Priority::Low, one).is_none());
        d.enqueue(Priority::Low, 0, s(600), job(id, one)).unwrap();
    }
    assert!(d.try_admit_new(s(1), 1, Priority::High, one).is_none());
    d.enqueue(Priority::High, 1, s(600), job(9, one)).unwrap();
    let scan = d.scan(s(1), |_| false);
    assert!(scan.admitted.is_empty());
    assert_eq!(scan.next, Some(s(60)));
    // When the window frees two places, the high call of the other model
    // goes first, then the oldest low one.
    let scan = d.scan(s(60), |_| false);
    assert_eq!(admitted(&scan), vec![9, 1]);
}

#[test]
fn a_smaller_low_priority_call_does_not_pass_a_high_one_held_by_the_shared_limit() {
    // 100 tokens a minute at the provider; model 1 wants 80, model 0 wants 10.
    let mut d = dispatcher(
        2,
        &[tpm(100)],
        &[(0, 0, RateLimits::default()), (1, 0, RateLimits::default())],
    );
    let _g = admit(&mut d, s(0), 0, Demand::call(30, 30));
    d.enqueue(Priority::High, 1, s(600), job(1, Demand::call(40, 40)))
        .unwrap();
    d.enqueue(Priority::Low, 0, s(600), job(2, Demand::call(5, 5))).unwrap();
    // 40 tokens are free: the small low call would fit, the high one does not.
    let scan = d.scan(s(1), |_| false);
    assert!(
        scan.admitted.is_empty(),
        "the low call took capacity the high one waits for"
    );
    assert_eq!(d.queued(), 2);
    // A new low call does not jump the queue either.
    assert!(d.try_admit_new(s(2), 0, Priority::Low, Demand::call(1, 1)).is_none());
    let scan = d.scan(s(60), |_| false);
    assert_eq!(admitted(&scan), vec![1, 2]);
}

#[test]
fn within_a_priority_the_oldest_call_of_any_model_goes_first() {
    let mut d = dispatcher(
        2,
        &[rpm(1)],
        &[(0, 0, RateLimits::default()), (1, 0, RateLimits::default())],
    );
    let one = Demand::call(1, 1);
    let _g = admit(&mut d, s(0), 0, one);
    // Model 0's queue was created first, but 101 (model 1) arrived before 102.
    d.enqueue(Priority::Normal, 0, s(600), job(100, one)).unwrap();
    d.enqueue(Priority::Normal, 1, s(600), job(101, one)).unwrap();
    d.enqueue(Priority::Normal, 0, s(600), job(102, one)).unwrap();
    let mut order = Vec::new();
    for minute in 1..=3 {
        order.extend(admitted(&d.scan(s(60 * minute), |_| false)));
    }
    assert_eq!(order, vec![100, 101, 102]);
}

#[test]
fn a_waiter_held_only_by_its_own_deployment_does_not_hold_back_the_provider() {
    // Model 0's deployment has its own limit of 1 rpm; the provider has room.
    let mut d = dispatcher(2, &[rpm(100)], &[(0, 0, rpm(1)), (1, 0, RateLimits::default())]);
    let one = Demand::call(1, 1);
    let _g = admit(&mut d, s(0), 0, one);
    d.enqueue(Priority::High, 0, s(600), job(1, one)).unwrap();
    d.enqueue(Priority::Low, 1, s(600), job(2, one)).unwrap();
    let scan = d.scan(s(1), |_| false);
    assert_eq!(admitted(&scan), vec![2]);
    assert_eq!(scan.next, Some(s(60)));
}

#[test]
fn a_held_provider_does_not_hold_back_another_provider() {
    let mut d = dispatcher(
        2,
        &[rpm(1), rpm(100)],
        &[(0, 0, RateLimits::default()), (1, 1, RateLimits::default())],
    );
    let one = Demand::call(1, 1);
    let _g = admit(&mut d, s(0), 0, one);
    d.enqueue(Priority::High, 0, s(600), job(1, one)).unwrap();
    d.enqueue(Priority::Low, 1, s(600), job(2, one)).unwrap();
    assert_eq!(admitted(&d.scan(s(1), |_| false)), vec![2]);
}

fn exhausted_tokens(reset: Duration) -> RateLimitSnapshot {
    RateLimitSnapshot {
        remaining_tokens: Some(0),
        reset_tokens: Some(reset),
        ..RateLimitSnapshot::default()
    }
}

/// A reply reporting no tokens left until 6 minutes from now holds the
/// deployment and every other model of its provider until then, at every
/// level limits may be configured at.
fn reset_holds_provider_and_deployment(provider: RateLimits, own: RateLimits) {
    let mut d = dispatcher(
        2,
        &[provider, RateLimits::default()],
        &[(0, 0, own), (1, 0, own), (1, 1, own)],
    );
    let one = Demand::call(1, 1);
    let g = admit(&mut d, s(0), 0, one);
    assert_eq!(
        d.finish(s(1), g, &ok(exhausted_tokens(s(360))), s(1)),
        Finished::default()
    );
    assert!(d.try_admit_new(s(2), 0, Priority::Normal, one).is_none());
    assert_eq!(d.earliest_on(s(2), 0, &one), Some(s(361)));
    // Model 1's deployment at the same provider is held too; its deployment
    // at the other provider is free, so model 1 goes there.
    assert_eq!(d.earliest_on(s(2), 1, &one), Some(s(361)));
    let g1 = admit(&mut d, s(2), 1, one);
    assert_eq!(g1.deployment(), 2);
    assert!(d.try_admit_new(s(359), 0, Priority::Normal, one).is_none());
    assert_eq!(admit(&mut d, s(361), 0, one).deployment(), 0);
}

#[test]
fn a_reset_holds_the_provider_when_limits_are_on_the_provider() {
    reset_holds_provider_and_deployment(rpm(1_000), RateLimits::default());
}

#[test]
fn a_reset_holds_the_provider_when_limits_are_on_the_deployment() {
    reset_holds_provider_and_deployment(RateLimits::default(), rpm(1_000));
}

#[test]
fn a_reset_holds_the_provider_with_no_limits_configured() {
    reset_holds_provider_and_deployment(RateLimits::default(), RateLimits::default());
}

#[test]
fn a_retry_after_holds_the_deployment_for_every_caller_and_others_take_over() {
    // Model 0 has deployments 0 and 1 at two providers, no limits anywhere.
    let mut d = dispatcher(
        1,
        &[RateLimits::default(), RateLimits::default()],
        &[(0, 0, RateLimits::default()), (0, 1, RateLimits::default())],
    );
    let one = Demand::call(1, 1);
    let mut g = admit(&mut d, s(0), 0, one);
    while g.deployment() != 0 {
        d.cancel(g);
        g = admit(&mut d, s(0), 0, one);
    }
    let limited = Err(ProviderError::RateLimited {
        retry_after: Some(s(20)),
        snapshot: RateLimitSnapshot::default(),
    });
    let done = d.finish(s(1), g, &limited, s(1));
    assert!(done.rate_limited);
    assert_eq!(d.earliest_on(s(2), 0, &one), Some(s(21)));
    // Every new call goes to deployment 1 during the retry-after.
    for _ in 0..20 {
        let g = admit(&mut d, s(2), 0, one);
        assert_eq!(g.deployment(), 1);
    }
    // The other provider is not held.
    assert_eq!(d.earliest_on(s(2), 1, &one), Some(s(2)));
    assert_eq!(d.earliest_on(s(21), 0, &one), Some(s(21)));
}

#[test]
fn a_retry_after_on_the_only_deployment_queues_every_caller_until_it_ends() {
    let mut d = dispatcher(1, &[RateLimits::default()], &[(0, 0, RateLimits::default())]);
    let one = Demand::call(1, 1);
    let g = admit(&mut d, s(0), 0, one);
    let limited = Err(ProviderError::RateLimited {
        retry_after: Some(s(2)),
        snapshot: RateLimitSnapshot::default(),
    });
    d.finish(s(1), g, &limited, s(1));
    assert!(d.try_admit_new(s(1), 0, Priority::High, one).is_none());
    d.enqueue(Priority::High, 0, s(600), job(1, one)).unwrap();
    let scan = d.scan(s(2), |_| false);
    assert!(scan.admitted.is_empty());
    assert_eq!(scan.next, Some(s(3)));
    assert_eq!(admitted(&d.scan(s(3), |_| false)), vec![1]);
}

#[test]
fn learned_allowances_are_counted_down_across_callers() {
    let mut d = dispatcher(1, &[RateLimits::default()], &[(0, 0, RateLimits::default())]);
    let one = Demand::call(1, 1);
    let g = admit(&mut d, s(0), 0, one);
    let snap = RateLimitSnapshot {
        remaining_requests: Some(2),
        reset_requests: Some(s(10)),
        ..RateLimitSnapshot::default()
    };
    d.finish(s(0), g, &ok(snap), s(0));
    let _a = admit(&mut d, s(1), 0, one);
    let _b = admit(&mut d, s(1), 0, one);
    assert!(d.try_admit_new(s(1), 0, Priority::Normal, one).is_none());
    assert_eq!(d.earliest_on(s(1), 0, &one), Some(s(10)));
}

#[test]
fn every_deployment_cooling_down_refuses_and_a_cancel_gives_everything_back() {
    let mut d = dispatcher(1, &[rpm(1)], &[(0, 0, RateLimits::default())]);
    let one = Demand::call(1, 1);
    let g = admit(&mut d, s(0), 0, one);
    assert_eq!(d.in_flight(), 1);
    d.cancel(g);
    assert_eq!(d.in_flight(), 0);
    // The cancelled call gave its place back.
    let g = admit(&mut d, s(0), 0, one);
    let fail = Err(ProviderError::Server {
        status: 500,
        message: "down".into(),
    });
    // Three failures in a row (the default) start a cooldown.
    assert!(!d.finish(s(0), g, &fail, s(0)).cooled_down);
    let g = admit(&mut d, s(60), 0, one);
    assert!(!d.finish(s(60), g, &fail, s(0)).cooled_down);
    let g = admit(&mut d, s(120), 0, one);
    assert!(d.finish(s(120), g, &fail, s(0)).cooled_down);
    assert!(matches!(
        d.try_admit_new(s(121), 0, Priority::Normal, one),
        Some(Err(GatewayError::NoDeployment(_)))
    ));
}
