//! Cancellation: callers that stop waiting for a gateway request (a
//! timeout around `complete`, a `select!`) while it waits for rate-limit
//! capacity, waits for its batch or is in flight leave nothing behind: the
//! budget's reservation returns to zero, no call counts as in flight, and
//! the whole budget is usable again at once.

use crate::support::budget_gate;

use std::sync::Arc;
use std::time::Duration;

use budget_gate::BudgetGate;
use nexus_swarm::actors::llm::{
    DeploymentSpec, LlmRequest, ModelCatalogue, ModelSpec, RateLimits, SimulatedConfig, SimulatedProvider,
};
use nexus_swarm::actors::llm_gateway::{LlmGateway, LlmGatewayArgs, ProviderEntry};

const TIMEOUT: Duration = Duration::from_secs(600);
const REQUESTS: usize = 20;
const MAX_TOKENS: u32 = 200;
/// Every provider call takes this long (no jitter).
const LATENCY: Duration = Duration::from_secs(10);
/// Callers give up after this: mid-flight for the calls that started, in
/// the queue for the others.
const PATIENCE: Duration = Duration::from_secs(3);

fn request(i: usize) -> LlmRequest {
    LlmRequest::user(format!("Summarise chapter {i} of the report."))
        .max_tokens(MAX_TOKENS)
        .timeout(TIMEOUT)
}

async fn cancel_everything_then_use_the_whole_budget(batching: bool) {
    let mut sim_cfg = SimulatedConfig::instant(3);
    sim_cfg.latency_median = LATENCY;
    sim_cfg.latency_sigma_milli = 0;
    let sim = SimulatedProvider::new("sim", sim_cfg);
    let catalogue = ModelCatalogue::new(vec![
        ModelSpec::new("m", 128_000, 2_500_000, 10_000_000).deployment(DeploymentSpec::new("m@sim", "sim")),
    ])
    .unwrap();
    // 60 requests a minute with a burst of 6: six start at once, the rest
    // are paced one a second and queue meanwhile.
    let mut args = LlmGatewayArgs::new(
        catalogue.clone(),
        vec![ProviderEntry::new("sim", Arc::new(sim.clone())).limits(RateLimits::rpm_tpm(60, 1_000_000))],
    );
    args.cache.enabled = false;
    args.llm.max_concurrent = 1_000;
    args.llm.batch.enabled = batching;
    args.llm.batch.max_size = 4;
    args.llm.batch.max_wait = Duration::from_millis(1500);
    // A budget of exactly the twenty requests' worst cases.
    let limit: u64 = {
        let (_g, h) = LlmGateway::build(args.clone()).unwrap();
        (0..REQUESTS)
            .map(|i| catalogue.models[0].worst_cost(h.count_tokens(&request(i).messages), u64::from(MAX_TOKENS)))
            .sum()
    };
    let budget = BudgetGate::new(limit);
    let (gw, _actor, _join) = LlmGateway::spawn_unsupervised(args.gate(budget.clone())).await.unwrap();

    let callers: Vec<_> = (0..REQUESTS)
        .map(|i| {
            let gw = gw.clone();
            tokio::spawn(async move { tokio::time::timeout(PATIENCE, gw.complete(request(i))).await })
        })
        .collect();
    for c in callers {
        assert!(c.await.unwrap().is_err(), "every caller gave up before its answer");
    }
    let sent = sim.counters().requests;
    assert!(
        sent >= 6 && sent < REQUESTS as u64,
        "{sent} calls were sent, the rest queued"
    );

    assert_eq!(budget.reserved(), 0, "cancelled requests still hold budget");
    assert_eq!(budget.open_holds(), 0);
    assert_eq!(budget.spent(), 0);
    let stats = gw.stats();
    assert_eq!(stats.in_flight, 0, "{stats:?}");

    // The whole budget is usable again: the same twenty requests, all
    // reserved at once, are all answered.
    let callers: Vec<_> = (0..REQUESTS)
        .map(|i| {
            let gw = gw.clone();
            tokio::spawn(async move { gw.complete(request(i)).await })
        })
        .collect();
    for c in callers {
        c.await
            .unwrap()
            .expect("the released budget admits every request again");
    }
    assert_eq!(budget.reserved(), 0);
    assert_eq!(budget.open_holds(), 0);
    assert_eq!(gw.stats().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn requests_cancelled_in_the_queue_or_in_flight_release_their_holds() {
    cancel_everything_then_use_the_whole_budget(false).await;
}

#[tokio::test(start_paused = true)]
async fn requests_cancelled_while_batched_release_their_holds() {
    cancel_everything_then_use_the_whole_budget(true).await;
}
