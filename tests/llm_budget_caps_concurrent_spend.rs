//! Budget: 1,000 concurrent requests against a hard budget worth 100 of
//! them end at or below the budget plus one request's worst case, because
//! every request reserves its worst-case cost before it is sent and settles
//! the actual cost after.

#[path = "support/budget_gate.rs"]
mod budget_gate;

use std::sync::Arc;
use std::time::Duration;

use budget_gate::{BudgetGate, RecordingSink};
use nexus_swarm::actors::llm::{
    DeploymentSpec, GatewayError, LlmRequest, ModelCatalogue, ModelSpec, RateLimits, SimulatedConfig, SimulatedProvider,
};
use nexus_swarm::actors::llm_gateway::{LlmGateway, LlmGatewayArgs, ProviderEntry};
use nexus_swarm::runtime::usage::SpendRefused;

const TIMEOUT: Duration = Duration::from_secs(60);
const PRICES: (u64, u64) = (2_500_000, 10_000_000);

#[tokio::test(start_paused = true)]
async fn a_thousand_concurrent_requests_stay_within_a_hundred_requests_budget() {
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
    let budget = BudgetGate::new(100 * worst);
    let sink = RecordingSink::new([("big".to_string(), PRICES)]);
    let args = args.gate(budget.clone()).sink(sink.clone());
    let (gw, _actor, _join) = LlmGateway::spawn(args).await.unwrap();

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
    let (mut ok, mut refused) = (0u64, 0u64);
    for c in calls {
        match c.await.unwrap() {
            Ok(r) => {
                ok += 1;
                assert!(r.cost_micro_usd <= worst);
            }
            Err(GatewayError::SpendRefused(SpendRefused::BudgetExceeded { limit, .. })) => {
                assert_eq!(limit, 100 * worst);
                refused += 1;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    let spent = budget.spent();
    assert!(
        spent <= budget.limit() + worst,
        "spent {spent} > budget {} + {worst}",
        budget.limit()
    );
    // Reserve-then-settle makes it tighter still: never above the budget.
    assert!(spent <= budget.limit());
    assert_eq!(ok + refused, 1000);
    assert!(ok >= 100, "the whole budget was usable: {ok} answered");
    assert_eq!(budget.open_holds(), 0, "every hold settled or released");
    assert_eq!(budget.reserved(), 0);
    // What the gateway charged is what the budget saw and what the sink priced.
    let stats = gw.stats();
    assert_eq!(stats.spent_micro_usd, spent);
    assert_eq!(stats.spend_refused, refused);
    assert_eq!(
        sim.counters().requests,
        ok,
        "refused requests never reached the provider"
    );
    let recorded: u64 = sink
        .records()
        .iter()
        .map(|r| {
            let price = if r.kind == nexus_swarm::runtime::resources::ResourceKind::InputTokens {
                PRICES.0
            } else {
                PRICES.1
            };
            r.amount * price
        })
        .sum::<u64>()
        .div_ceil(1_000_000);
    assert!(recorded <= spent, "the sink saw {recorded}, the budget {spent}");
}
