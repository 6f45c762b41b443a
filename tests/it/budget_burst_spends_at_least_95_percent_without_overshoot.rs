//! A burst against a hard budget spends what the budget allows: 1,000
//! requests arriving within 2 s, each with a worst case of 1 to 3 % of a
//! 1,000,000 micro-dollar budget, through the real gateway (simulated
//! provider, actual cost at or below the worst case) and the real cost
//! ledger. A request held back only by other requests' worst-case holds in
//! flight waits for them to settle instead of being refused (and halting
//! the budget), so the burst spends at least 95 % of the budget and never
//! more than all of it; the requests that can never fit (settled spend plus
//! their worst case over the limit) are refused at once with the typed
//! `BudgetExceeded`, before they reach the provider.

use std::sync::Arc;
use std::time::Duration;

use nexus_swarm::actors::cost_ledger::{
    Budget, BudgetAction, BudgetPeriod, CostLedger, CostLedgerArgs, LedgerOptions, MICROS_PER_SEC, ModelRates,
    TimeRange, TokioClock,
};
use nexus_swarm::actors::llm::{
    DeploymentSpec, GatewayError, LlmRequest, ModelCatalogue, ModelSpec, RateLimits, SimulatedConfig, SimulatedProvider,
};
use nexus_swarm::actors::llm_gateway::{LlmGateway, LlmGatewayArgs, ProviderEntry};
use nexus_swarm::runtime::usage::SpendRefused;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

/// The hard budget: $1.
const LIMIT: u64 = 1_000_000;
const REQUESTS: u64 = 1_000;
/// Every request arrives within this.
const BURST: Duration = Duration::from_secs(2);
/// Each request's deadline: long enough for the holds ahead of it to settle.
const DEADLINE: Duration = Duration::from_secs(120);
/// $1 per million prompt tokens, $100 per million completion tokens: a
/// completion of 100 to 299 tokens is worth 1 to 3 % of the budget.
const PRICES: (u64, u64) = (1_000_000, 100_000_000);
const MODEL: &str = "burst";
/// 2024-02-29T12:00:00Z: the daily budget's period holds the whole run.
const START_US: u64 = (1_709_164_800 + 12 * 3600) * MICROS_PER_SEC;

fn request(i: u64, max_tokens: u32) -> LlmRequest {
    LlmRequest::user(format!("Summarise finding #{i} of the audit."))
        .model(MODEL)
        .max_tokens(max_tokens)
        .timeout(DEADLINE)
}

#[tokio::test(start_paused = true)]
async fn a_burst_spends_at_least_95_percent_of_a_hard_budget_without_overshoot() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(TokioClock::starting_at(START_US));
    let (_ledger_actor, ledger) = CostLedger::spawn_unsupervised(
        CostLedgerArgs::open(LedgerOptions::new(dir.path()).clock(clock))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    ledger
        .set_model_price(MODEL, ModelRates::new(PRICES.0, PRICES.1, 0).unwrap())
        .await
        .unwrap();
    ledger
        .put_budget(Budget::new("hard", LIMIT, BudgetPeriod::Daily, BudgetAction::Halt))
        .await
        .unwrap();

    // Completions of 25 to 100 % of max_tokens: actual cost at or below the
    // worst case, which the gateway reserves.
    let sim = SimulatedProvider::new("sim", SimulatedConfig::default());
    let catalogue = ModelCatalogue::new(vec![
        ModelSpec::new(MODEL, 128_000, PRICES.0, PRICES.1).deployment(DeploymentSpec::new("burst@sim", "sim")),
    ])
    .unwrap();
    let mut args = LlmGatewayArgs::new(
        catalogue.clone(),
        vec![ProviderEntry::new("sim", Arc::new(sim.clone())).limits(RateLimits::unlimited())],
    );
    args.cache.enabled = false;
    let args = args.gate(Arc::new(ledger.budgets())).sink(Arc::new(ledger.clone()));
    let (gw, _actor, _join) = LlmGateway::spawn_unsupervised(args).await.unwrap();

    // The burst: arrival times spread over 2 s, worst cases of 1 to 3 %.
    let mut rng = StdRng::seed_from_u64(11);
    let start = Instant::now();
    let mut calls = Vec::new();
    for i in 0..REQUESTS {
        let max_tokens = rng.random_range(100..300u32);
        let req = request(i, max_tokens);
        let worst = catalogue.models[0].worst_cost(gw.count_tokens(&req.messages), u64::from(max_tokens));
        assert!(
            (LIMIT / 100..=3 * LIMIT / 100).contains(&worst),
            "worst case {worst} is 1 to 3 % of the budget"
        );
        let at = start + BURST * u32::try_from(i).unwrap() / u32::try_from(REQUESTS).unwrap();
        let gw = gw.clone();
        calls.push(tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            (worst, gw.complete(req).await)
        }));
    }
    let (mut ok, mut refused, mut answered_cost) = (0u64, 0u64, 0u64);
    for c in calls {
        match c.await.unwrap() {
            (worst, Ok(r)) => {
                assert!(
                    r.cost_micro_usd <= worst,
                    "actual {} over worst {worst}",
                    r.cost_micro_usd
                );
                ok += 1;
                answered_cost += r.cost_micro_usd;
            }
            (_, Err(GatewayError::SpendRefused(SpendRefused::BudgetExceeded { limit, .. }))) => {
                assert_eq!(limit, LIMIT);
                refused += 1;
            }
            (_, Err(e)) => panic!("only refusals by the budget are expected, got {e}"),
        }
    }
    assert_eq!(ok + refused, REQUESTS);

    // What the ledger committed: at least 95 % of the budget, never over.
    let records = ledger.records(TimeRange::all()).await.unwrap();
    let spent: u64 = records.iter().map(|r| r.cost_micro_usd).sum();
    assert!(
        spent >= LIMIT * 95 / 100,
        "spent {spent} of {LIMIT}: {ok} answered, {refused} refused"
    );
    assert!(spent <= LIMIT, "overshoot: spent {spent} > budget {LIMIT}");
    assert_eq!(spent, answered_cost, "the ledger committed what the answers cost");

    // Halted only because settled spend left no room, and nothing is left
    // held or waiting.
    let status = ledger.budget_status("hard").unwrap();
    assert_eq!(status.spent_micro_usd, spent);
    assert!(status.halted);
    assert_eq!(
        (status.inflight_micro_usd, status.reserved_micro_usd, status.waiting),
        (0, 0, 0)
    );
    assert_eq!((ledger.budgets().holds(), ledger.budgets().waiting()), (0, 0));
    assert_eq!(
        sim.counters().requests,
        ok,
        "refused requests never reached the provider"
    );
    let stats = gw.stats();
    assert_eq!((stats.spend_refused, stats.sink_errors), (refused, 0));

    // A request that can never fit now is refused at once, with the typed
    // error, even with a long deadline.
    let before = Instant::now();
    let err = gw.complete(request(REQUESTS, 100)).await.unwrap_err();
    assert!(
        matches!(
            err,
            GatewayError::SpendRefused(SpendRefused::BudgetExceeded { limit: LIMIT, .. })
        ),
        "{err}"
    );
    assert_eq!(Instant::now(), before, "refused without waiting");
}

#[tokio::test(start_paused = true)]
async fn a_request_whose_worst_case_exceeds_the_whole_budget_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(TokioClock::starting_at(START_US));
    let (_ledger_actor, ledger) = CostLedger::spawn_unsupervised(
        CostLedgerArgs::open(LedgerOptions::new(dir.path()).clock(clock))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    ledger
        .set_model_price(MODEL, ModelRates::new(PRICES.0, PRICES.1, 0).unwrap())
        .await
        .unwrap();
    ledger
        .put_budget(Budget::new("hard", LIMIT, BudgetPeriod::Daily, BudgetAction::Halt))
        .await
        .unwrap();
    let sim = SimulatedProvider::new("sim", SimulatedConfig::default());
    let catalogue = ModelCatalogue::new(vec![
        ModelSpec::new(MODEL, 128_000, PRICES.0, PRICES.1).deployment(DeploymentSpec::new("burst@sim", "sim")),
    ])
    .unwrap();
    let args = LlmGatewayArgs::new(
        catalogue,
        vec![ProviderEntry::new("sim", Arc::new(sim.clone())).limits(RateLimits::unlimited())],
    )
    .gate(Arc::new(ledger.budgets()))
    .sink(Arc::new(ledger.clone()));
    let (gw, _actor, _join) = LlmGateway::spawn_unsupervised(args).await.unwrap();

    // 10,001 completion tokens at 100 micro-dollars: over the whole budget.
    let before = Instant::now();
    let err = gw.complete(request(0, 10_001)).await.unwrap_err();
    match err {
        GatewayError::SpendRefused(SpendRefused::BudgetExceeded {
            budget,
            limit,
            spent,
            reserved,
            requested,
        }) => {
            assert_eq!((budget.as_str(), limit, spent, reserved), ("hard", LIMIT, 0, 0));
            assert!(requested > LIMIT);
        }
        e => panic!("expected BudgetExceeded, got {e}"),
    }
    assert_eq!(Instant::now(), before, "refused without waiting");
    assert_eq!(sim.counters().requests, 0);
    assert_eq!(ledger.budgets().waiting(), 0);
}
