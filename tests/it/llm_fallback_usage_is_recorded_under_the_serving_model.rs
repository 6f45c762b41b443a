//! Fallback accounting: when a request falls back to another model, its
//! spend reservation, its usage records and their prices belong to the
//! model that served it, even when the caller's metadata named the model
//! it asked for.

use crate::support::budget_gate;

use std::sync::Arc;
use std::time::Duration;

use budget_gate::{BudgetGate, RecordingSink};
use nexus_swarm::actors::llm::{
    DeploymentSpec, LlmRequest, ModelCatalogue, ModelSpec, RateLimits, SimulatedConfig, SimulatedProvider,
};
use nexus_swarm::actors::llm_gateway::{LlmGateway, LlmGatewayArgs, ProviderEntry};
use nexus_swarm::runtime::resources::ResourceKind;
use nexus_swarm::runtime::usage::UsageMeta;

const TIMEOUT: Duration = Duration::from_secs(120);
/// Micro-dollars per million (input, output) tokens.
const BIG: (u64, u64) = (5_000_000, 15_000_000);
const SMALL: (u64, u64) = (150_000, 600_000);

#[tokio::test(start_paused = true)]
async fn a_fallback_is_recorded_and_priced_under_the_model_that_served_it() {
    let mut failing = SimulatedConfig::instant(1);
    failing.error_permille = 1000;
    let a = SimulatedProvider::new("a", failing);
    let b = SimulatedProvider::new("b", SimulatedConfig::instant(2));
    let catalogue = ModelCatalogue::new(vec![
        ModelSpec::new("big", 8_000, BIG.0, BIG.1)
            .fallbacks(["small"])
            .deployment(DeploymentSpec::new("big@a", "a")),
        ModelSpec::new("small", 8_000, SMALL.0, SMALL.1).deployment(DeploymentSpec::new("small@b", "b")),
    ])
    .unwrap();
    let providers = [("a", &a), ("b", &b)]
        .into_iter()
        .map(|(id, s)| ProviderEntry::new(id, Arc::new(s.clone())).limits(RateLimits::unlimited()))
        .collect();
    let mut args = LlmGatewayArgs::new(catalogue, providers);
    args.cache.enabled = false;
    args.llm.retry.max_retries = 0;
    let sink = RecordingSink::new([("big".to_string(), BIG), ("small".to_string(), SMALL)]);
    let budget = BudgetGate::new(u64::MAX / 2);
    let args = args.gate(budget.clone()).sink(sink.clone());
    let (gw, _actor, _join) = LlmGateway::spawn_unsupervised(args).await.unwrap();

    // The caller names the model it asks for in its metadata too.
    let meta = UsageMeta::default().tenant("acme").model("big");
    let r = gw
        .complete(
            LlmRequest::user("Compare the two drafts.")
                .model("big")
                .meta(meta)
                .timeout(TIMEOUT),
        )
        .await
        .unwrap();
    assert_eq!(r.model, "small");
    assert_eq!(gw.stats().fallbacks, 1);
    let expected_cost = (u128::from(r.input_tokens) * u128::from(SMALL.0)
        + u128::from(r.output_tokens) * u128::from(SMALL.1))
    .div_ceil(1_000_000) as u64;
    assert_eq!(r.cost_micro_usd, expected_cost);

    let records = sink.records();
    assert_eq!(records.len(), 2, "{records:?}");
    for rec in &records {
        assert_eq!(rec.meta.scope.model.as_deref(), Some("small"), "{rec:?}");
        assert_eq!(rec.meta.scope.tenant.as_deref(), Some("acme"));
    }
    let amount = |kind: ResourceKind| records.iter().find(|r| r.kind == kind).map(|r| r.amount);
    assert_eq!(amount(ResourceKind::InputTokens), Some(r.input_tokens));
    assert_eq!(amount(ResourceKind::OutputTokens), Some(r.output_tokens));
    // The gate settled the served model's cost; the failed attempt's hold
    // was released.
    assert_eq!(budget.spent(), r.cost_micro_usd);
    assert_eq!(budget.open_holds(), 0);
}
