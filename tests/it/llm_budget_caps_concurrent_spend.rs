//! Budget: 1,000 concurrent requests against a hard budget worth 100 of
//! them, in the real cost ledger (durable, in a temporary directory), end
//! at or below the budget plus one request's worst case, because every
//! request reserves its worst-case cost before it is sent and settles the
//! actual cost after; and what the ledger commits is exactly what the
//! answered requests report they cost.

use std::sync::Arc;
use std::time::Duration;

use nexus_swarm::actors::cost_ledger::{
    Budget, BudgetAction, BudgetPeriod, CostLedger, CostLedgerArgs, LedgerOptions, ModelRates, TimeRange,
};
use nexus_swarm::actors::llm::{
    DeploymentSpec, GatewayError, LlmRequest, ModelCatalogue, ModelSpec, RateLimits, SimulatedConfig, SimulatedProvider,
};
use nexus_swarm::actors::llm_gateway::{LlmGateway, LlmGatewayArgs, ProviderEntry};
use nexus_swarm::runtime::resources::ResourceKind;
use nexus_swarm::runtime::usage::SpendRefused;

const TIMEOUT: Duration = Duration::from_secs(60);
/// $0.27 / $1.10 per million tokens: fractions of a micro-dollar per token
/// on both sides, so the records of a call are rounded up each.
const PRICES: (u64, u64) = (270_000, 1_100_000);

#[tokio::test(start_paused = true)]
async fn a_thousand_concurrent_requests_stay_within_a_hundred_requests_budget() {
    let dir = tempfile::tempdir().unwrap();
    let (_ledger_actor, ledger) =
        CostLedger::spawn_unsupervised(CostLedgerArgs::open(LedgerOptions::new(dir.path())).await.unwrap())
            .await
            .unwrap();
    ledger
        .set_model_price("big", ModelRates::new(PRICES.0, PRICES.1, 0).unwrap())
        .await
        .unwrap();

    let sim = SimulatedProvider::new("sim", SimulatedConfig::default());
    let catalogue = ModelCatalogue::new(vec![
        ModelSpec::new("big", 128_000, PRICES.0, PRICES.1).deployment(DeploymentSpec::new("big@sim", "sim")),
    ])
    .unwrap();
    let max_tokens = 500u32;
    let prompt = "Plan the next step of the research task in detail.";
    let probe = LlmRequest::user(format!("{prompt} #999")).max_tokens(max_tokens);
    let mut args = LlmGatewayArgs::new(
        catalogue.clone(),
        vec![ProviderEntry::new("sim", Arc::new(sim.clone())).limits(RateLimits::unlimited())],
    );
    args.cache.enabled = false;
    // The worst case of one request: its prompt and every output token.
    let input = {
        let (_g, h) = LlmGateway::build(args.clone()).unwrap();
        h.count_tokens(&probe.messages)
    };
    let worst = catalogue.models[0].worst_cost(input, u64::from(max_tokens));
    let limit = 100 * worst;
    ledger
        .put_budget(Budget::new("hard", limit, BudgetPeriod::Daily, BudgetAction::Halt))
        .await
        .unwrap();
    let args = args.gate(Arc::new(ledger.budgets())).sink(Arc::new(ledger.clone()));
    let (gw, _actor, _join) = LlmGateway::spawn_unsupervised(args).await.unwrap();

    let calls: Vec<_> = (0..1000)
        .map(|i| {
            let gw = gw.clone();
            tokio::spawn(async move {
                gw.complete(
                    LlmRequest::user(format!("{prompt} #{i}"))
                        .max_tokens(max_tokens)
                        .timeout(TIMEOUT),
                )
                .await
            })
        })
        .collect();
    let (mut ok, mut refused, mut answered_cost) = (0u64, 0u64, 0u64);
    for c in calls {
        match c.await.unwrap() {
            Ok(r) => {
                ok += 1;
                assert!(r.cost_micro_usd <= worst);
                answered_cost += r.cost_micro_usd;
            }
            Err(GatewayError::SpendRefused(SpendRefused::BudgetExceeded { limit: l, .. })) => {
                assert_eq!(l, limit);
                refused += 1;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(ok + refused, 1000);
    assert!(ok >= 100, "the whole budget was usable: {ok} answered");

    // The committed records: every answered call's usage, durable.
    let records = ledger.records(TimeRange::all()).await.unwrap();
    let spent: u64 = records.iter().map(|r| r.cost_micro_usd).sum();
    assert!(spent > 0);
    assert!(spent <= limit + worst, "spent {spent} > budget {limit} + {worst}");
    // Reserve-then-settle makes it tighter still: never above the budget.
    assert!(spent <= limit, "spent {spent} > budget {limit}");
    assert_eq!(
        spent, answered_cost,
        "the ledger committed exactly what the answered requests cost"
    );
    let input_records = records.iter().filter(|r| r.kind == ResourceKind::InputTokens).count() as u64;
    assert_eq!(input_records, ok, "one prompt record per answered request");

    // The budget counts the same committed spend, and nothing is left held.
    let status = ledger.budget_status("hard").unwrap();
    assert_eq!(status.spent_micro_usd, spent);
    assert_eq!(status.inflight_micro_usd, 0);
    assert_eq!(status.reserved_micro_usd, 0);
    assert!(status.halted);
    assert_eq!(ledger.budgets().holds(), 0, "every hold settled or released");

    // What the gateway charged is what the ledger committed.
    let stats = gw.stats();
    assert_eq!(stats.spent_micro_usd, spent);
    assert_eq!(stats.sink_errors, 0);
    assert_eq!(stats.spend_refused, refused);
    assert_eq!(
        sim.counters().requests,
        ok,
        "refused requests never reached the provider"
    );
}
