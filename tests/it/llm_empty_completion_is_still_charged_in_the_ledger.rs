//! An empty completion (no output tokens) still costs its prompt: the
//! gateway records the prompt tokens in the ledger and records no
//! zero-amount usage, which the ledger would refuse as bad input (and with
//! it the whole call's usage).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use nexus_swarm::actors::cost_ledger::{
    Budget, BudgetAction, BudgetPeriod, CostLedger, CostLedgerArgs, LedgerHandle, LedgerOptions, ModelRates, TimeRange,
};
use nexus_swarm::actors::llm::{
    DeploymentSpec, LlmProvider, LlmRequest, ModelCatalogue, ModelSpec, ProviderRequest, ProviderResponse,
    ProviderResult, RateLimits,
};
use nexus_swarm::actors::llm_gateway::{GatewayHandle, LlmGateway, LlmGatewayArgs, ProviderEntry};
use nexus_swarm::runtime::resources::ResourceKind;

const TIMEOUT: Duration = Duration::from_secs(30);
const PRICES: (u64, u64) = (1_250_000, 3_750_000);
const PROMPT_TOKENS: u64 = 37;

/// A provider that bills a fixed prompt and answers with the number of
/// completion tokens the request's `max_tokens` names minus one: a request
/// for one token gets an empty completion.
#[derive(Debug)]
struct Terse;

impl LlmProvider for Terse {
    fn name(&self) -> &str {
        "terse"
    }

    fn complete(&self, request: ProviderRequest) -> BoxFuture<'static, ProviderResult> {
        let output = u64::from(request.max_tokens) - 1;
        Box::pin(async move {
            Ok(ProviderResponse {
                content: " ok".repeat(output as usize),
                input_tokens: PROMPT_TOKENS,
                output_tokens: output,
                finish_reason: "stop".into(),
                rate_limit: Default::default(),
                tool_calls: Vec::new(),
            })
        })
    }
}

async fn start(dir: &std::path::Path) -> (GatewayHandle, LedgerHandle) {
    let (_actor, ledger) = CostLedger::spawn_unsupervised(CostLedgerArgs::open(LedgerOptions::new(dir)).await.unwrap())
        .await
        .unwrap();
    ledger
        .set_model_price("m", ModelRates::new(PRICES.0, PRICES.1, 0).unwrap())
        .await
        .unwrap();
    ledger
        .put_budget(Budget::new("hard", 1_000_000, BudgetPeriod::Daily, BudgetAction::Halt))
        .await
        .unwrap();
    let catalogue = ModelCatalogue::new(vec![
        ModelSpec::new("m", 8_000, PRICES.0, PRICES.1).deployment(DeploymentSpec::new("m@terse", "terse")),
    ])
    .unwrap();
    let mut args = LlmGatewayArgs::new(
        catalogue,
        vec![ProviderEntry::new("terse", Arc::new(Terse)).limits(RateLimits::unlimited())],
    )
    .gate(Arc::new(ledger.budgets()))
    .sink(Arc::new(ledger.clone()));
    args.cache.enabled = false;
    let (gw, _actor, _join) = LlmGateway::spawn_unsupervised(args).await.unwrap();
    (gw, ledger)
}

#[tokio::test]
async fn an_empty_completion_is_charged_for_its_prompt_and_records_no_zero_amount() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, ledger) = start(dir.path()).await;

    let empty = gw
        .complete(LlmRequest::user("Say nothing.").max_tokens(1).timeout(TIMEOUT))
        .await
        .unwrap();
    assert_eq!(empty.content, "");
    assert_eq!(empty.output_tokens, 0);
    assert_eq!(empty.input_tokens, PROMPT_TOKENS);
    // 37 tokens at 1.25 micro-dollars: 46.25, rounded up.
    assert_eq!(empty.cost_micro_usd, 47);

    let records = ledger.records(TimeRange::all()).await.unwrap();
    assert_eq!(gw.stats().sink_errors, 0, "the ledger accepted the usage");
    assert_eq!(records.len(), 1, "one record, for the prompt: {records:?}");
    assert_eq!(records[0].kind, ResourceKind::InputTokens);
    assert_eq!(records[0].amount, PROMPT_TOKENS);
    assert_eq!(records[0].cost_micro_usd, empty.cost_micro_usd);
    assert_eq!(records[0].meta.scope.model.as_deref(), Some("m"));
    let status = ledger.budget_status("hard").unwrap();
    assert_eq!(status.spent_micro_usd, empty.cost_micro_usd);
    assert_eq!(status.inflight_micro_usd, 0);

    // A completion with output still records both kinds, and the ledger
    // charges what the response reports.
    let full = gw
        .complete(LlmRequest::user("Say a little.").max_tokens(4).timeout(TIMEOUT))
        .await
        .unwrap();
    assert_eq!(full.output_tokens, 3);
    let records = ledger.records(TimeRange::all()).await.unwrap();
    assert_eq!(records.len(), 3);
    assert!(records.iter().all(|r| r.amount > 0));
    let committed: u64 = records.iter().map(|r| r.cost_micro_usd).sum();
    assert_eq!(committed, empty.cost_micro_usd + full.cost_micro_usd);
    assert_eq!(ledger.budget_status("hard").unwrap().spent_micro_usd, committed);
}
