//! The gateway's streams and tool calls: a stream assembles to the answer
//! the same request gets whole and is charged once; tool calls come whole
//! and in pieces; a reader that stops reading holds the provider back (a
//! bounded channel, not a growing buffer), and a dropped stream is charged
//! for what the provider produced until then, its hold released; and a
//! stream holds its agent's slot until it is settled.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use nexus_swarm::actors::cost_ledger::{
    Budget, BudgetAction, BudgetPeriod, CostLedger, CostLedgerArgs, LedgerHandle, LedgerOptions, ModelRates, TimeRange,
};
use nexus_swarm::actors::llm::types::{
    LlmChunk, ProviderChunk, ProviderStream, ResponseFormat, ToolCall, ToolChoice, ToolDef,
};
use nexus_swarm::actors::llm::{
    DeploymentSpec, GatewayError, LlmProvider, LlmRequest, Message, ModelCatalogue, ModelSpec, ProviderError,
    ProviderRequest, ProviderResult, RateLimits, SimulatedConfig, SimulatedProvider,
};
use nexus_swarm::actors::llm_gateway::{GatewayHandle, LlmGateway, LlmGatewayArgs, LlmStream, ProviderEntry};
use nexus_swarm::runtime::resources::ResourceKind;
use nexus_swarm::runtime::usage::UsageMeta;
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(30);
const PRICES: (u64, u64) = (1_000_000, 2_000_000);

async fn start(dir: &std::path::Path, provider: Arc<dyn LlmProvider>) -> (GatewayHandle, LedgerHandle) {
    start_with(dir, provider, 8).await
}

async fn start_with(
    dir: &std::path::Path,
    provider: Arc<dyn LlmProvider>,
    per_agent: u32,
) -> (GatewayHandle, LedgerHandle) {
    let (_actor, ledger) = CostLedger::spawn_unsupervised(CostLedgerArgs::open(LedgerOptions::new(dir)).await.unwrap())
        .await
        .unwrap();
    ledger
        .set_model_price("m", ModelRates::new(PRICES.0, PRICES.1, 0).unwrap())
        .await
        .unwrap();
    ledger
        .put_budget(Budget::new("hard", 10_000_000, BudgetPeriod::Daily, BudgetAction::Halt))
        .await
        .unwrap();
    let catalogue = ModelCatalogue::new(vec![
        ModelSpec::new("m", 100_000, PRICES.0, PRICES.1).deployment(DeploymentSpec::new("m@p", "p")),
    ])
    .unwrap();
    let mut args = LlmGatewayArgs::new(
        catalogue,
        vec![ProviderEntry::new("p", provider).limits(RateLimits::unlimited())],
    )
    .gate(Arc::new(ledger.budgets()))
    .sink(Arc::new(ledger.clone()));
    args.cache.enabled = false;
    args.llm.max_concurrent_per_agent = per_agent;
    let (gw, _actor, _join) = LlmGateway::spawn_unsupervised(args).await.unwrap();
    (gw, ledger)
}

/// Reads a stream to its end: the text, the tool calls assembled from
/// their pieces, the number of pieces of each kind, and the settled answer.
async fn drain(
    mut s: LlmStream,
) -> (
    String,
    Vec<ToolCall>,
    usize,
    usize,
    nexus_swarm::actors::llm::LlmResponse,
) {
    let (mut text, mut calls, mut texts, mut pieces) = (String::new(), Vec::<ToolCall>::new(), 0, 0);
    while let Some(chunk) = s.next().await {
        match chunk.expect("no error mid-stream") {
            LlmChunk::Text(t) => {
                texts += 1;
                text.push_str(&t);
            }
            LlmChunk::ToolCall {
                index,
                id,
                name,
                arguments,
            } => {
                pieces += 1;
                if index as usize == calls.len() {
                    calls.push(ToolCall {
                        id: id.unwrap_or_default(),
                        name: name.unwrap_or_default(),
                        arguments: String::new(),
                    });
                }
                calls[index as usize].arguments.push_str(&arguments);
            }
            LlmChunk::Done(resp) => {
                assert!(s.next().await.is_none(), "nothing after Done");
                return (text, calls, texts, pieces, resp);
            }
        }
    }
    panic!("the stream ended without Done");
}

#[tokio::test]
async fn a_stream_assembles_to_the_whole_answer_and_is_charged_once() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Arc::new(SimulatedProvider::new("p", SimulatedConfig::instant(3)));
    let (gw, ledger) = start(dir.path(), sim).await;
    let req = || LlmRequest::user("Plan the survey.").max_tokens(40).timeout(TIMEOUT);
    let whole = gw.complete(req()).await.unwrap();
    let stream = gw.stream(req()).await.unwrap();
    assert_eq!(stream.info().model, "m");
    assert_eq!(stream.info().deployment, "m@p");
    let (text, calls, texts, _, done) = drain(stream).await;
    assert_eq!(text, whole.content);
    assert!(calls.is_empty());
    assert!(texts > 1, "word by word, not one piece");
    assert_eq!(done.content, whole.content);
    assert_eq!(
        (done.input_tokens, done.output_tokens),
        (whole.input_tokens, whole.output_tokens)
    );
    assert_eq!(done.cost_micro_usd, whole.cost_micro_usd);
    let charged: u64 = ledger
        .records(TimeRange::all())
        .await
        .unwrap()
        .iter()
        .map(|r| r.cost_micro_usd)
        .sum();
    assert_eq!(charged, whole.cost_micro_usd + done.cost_micro_usd);
    let budget = ledger.budget_status("hard").unwrap();
    assert_eq!((budget.spent_micro_usd, budget.inflight_micro_usd), (charged, 0));
}

fn weather() -> ToolDef {
    ToolDef {
        name: "weather".into(),
        description: Some("The forecast for a city.".into()),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    }
}

#[tokio::test]
async fn tool_calls_come_whole_and_in_pieces_and_a_tool_result_gets_text() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Arc::new(SimulatedProvider::new("p", SimulatedConfig::instant(5)));
    let (gw, _ledger) = start(dir.path(), sim).await;
    let ask = || {
        LlmRequest::user("Weather in Oslo?")
            .max_tokens(64)
            .timeout(TIMEOUT)
            .tools(vec![weather()], ToolChoice::Auto)
    };
    let whole = gw.complete(ask()).await.unwrap();
    assert_eq!(whole.finish_reason, "tool_calls");
    assert_eq!(whole.tool_calls.len(), 1);
    let call = &whole.tool_calls[0];
    assert_eq!(call.name, "weather");
    let args: serde_json::Value = serde_json::from_str(&call.arguments).unwrap();
    assert!(args["city"].is_string(), "{args}");
    assert!(whole.output_tokens > 0 && whole.output_tokens <= 64);

    let (text, calls, _, pieces, done) = drain(gw.stream(ask()).await.unwrap()).await;
    assert_eq!(text, "");
    assert_eq!(calls, whole.tool_calls);
    assert_eq!(done.tool_calls, whole.tool_calls);
    assert!(pieces >= 2, "the arguments come in pieces");

    // The tool's result goes back; the model answers in text.
    let mut followup = ask();
    followup.messages.push(Message::tool_calls(whole.tool_calls.clone()));
    followup
        .messages
        .push(Message::tool_result(call.id.clone(), "sunny, 21 C"));
    let answer = gw.complete(followup).await.unwrap();
    assert!(answer.tool_calls.is_empty());
    assert!(!answer.content.is_empty());

    // A JSON schema format gets JSON that has the schema's fields.
    let shaped = gw
        .complete(
            LlmRequest::user("Forecast?")
                .max_tokens(64)
                .timeout(TIMEOUT)
                .response_format(ResponseFormat::JsonSchema {
                    name: "forecast".into(),
                    schema: weather().parameters,
                    strict: true,
                }),
        )
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&shaped.content).unwrap();
    assert!(v["city"].is_string(), "{v}");
}

/// Streams up to a million one-token words, counting each one produced.
#[derive(Debug, Default)]
struct Firehose {
    produced: Arc<AtomicU64>,
}

const FIREHOSE: u64 = 1_000_000;

impl LlmProvider for Firehose {
    fn name(&self) -> &str {
        "firehose"
    }

    fn complete(&self, _request: ProviderRequest) -> BoxFuture<'static, ProviderResult> {
        Box::pin(async { Err(ProviderError::Lost("streams only")) })
    }

    fn stream(&self, _request: ProviderRequest) -> BoxFuture<'static, Result<ProviderStream, ProviderError>> {
        let produced = Arc::clone(&self.produced);
        Box::pin(async move {
            let words = futures::stream::iter(0..FIREHOSE).map(move |_| {
                produced.fetch_add(1, Ordering::SeqCst);
                Ok(ProviderChunk::Text(" data".into()))
            });
            Ok(ProviderStream {
                rate_limit: Default::default(),
                chunks: Box::pin(words),
            })
        })
    }
}

use futures::StreamExt;

#[tokio::test]
async fn a_slow_reader_holds_the_provider_back_and_a_dropped_stream_is_charged_for_what_was_produced() {
    let dir = tempfile::tempdir().unwrap();
    let hose = Firehose::default();
    let produced = Arc::clone(&hose.produced);
    let (gw, ledger) = start(dir.path(), Arc::new(hose)).await;
    let mut stream = gw
        .stream(LlmRequest::user("Go on.").max_tokens(64_000).timeout(TIMEOUT))
        .await
        .unwrap();
    for _ in 0..3 {
        assert!(matches!(stream.next().await, Some(Ok(LlmChunk::Text(_)))));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ahead = produced.load(Ordering::SeqCst);
    // The channel's bound (16) and the pieces in hand, not the million.
    assert!(
        ahead <= 3 + 16 + 2,
        "the provider ran {ahead} words ahead of a reader that took 3"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(ahead, produced.load(Ordering::SeqCst), "and it stays held");

    drop(stream);
    // The drop is settled on what was produced, and the hold released.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let output = loop {
        let records = ledger.records(TimeRange::all()).await.unwrap();
        if let Some(r) = records.iter().find(|r| r.kind == ResourceKind::OutputTokens) {
            break r.amount;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dropped stream was never charged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let produced = produced.load(Ordering::SeqCst);
    assert_eq!(output, produced, "one token per word produced");
    assert!(produced < FIREHOSE);
    let budget = ledger.budget_status("hard").unwrap();
    assert_eq!(budget.inflight_micro_usd, 0, "the 64,000-token hold is released");
    assert!(budget.spent_micro_usd > 0);
    assert_eq!(gw.stats().completed + gw.stats().failed, 1);
}

#[tokio::test]
async fn a_stream_holds_its_agents_slot_until_it_is_settled() {
    let dir = tempfile::tempdir().unwrap();
    let hose = Firehose::default();
    let produced = Arc::clone(&hose.produced);
    let (gw, _ledger) = start_with(dir.path(), Arc::new(hose), 1).await;
    let meta = UsageMeta::default().tenant("acme").workflow("w").agent("writer");
    let ask = |timeout: Duration| {
        LlmRequest::user("Go on.")
            .max_tokens(1_000)
            .timeout(timeout)
            .meta(meta.clone())
    };
    let mut stream = gw.stream(ask(TIMEOUT)).await.unwrap();
    assert!(matches!(stream.next().await, Some(Ok(LlmChunk::Text(_)))));
    // The agent's one slot is the stream's while it runs.
    match gw.stream(ask(Duration::from_millis(100))).await {
        Err(GatewayError::AgentBusy { limit: 1, .. }) => {}
        other => panic!("expected AgentBusy, got {:?}", other.map(|s| s.info().clone())),
    }
    // A caller that gives up while waiting for the slot leaves nothing
    // behind: its request does not take the slot later, nor read a stream
    // nobody will read.
    assert!(
        tokio::time::timeout(Duration::from_millis(100), gw.stream(ask(TIMEOUT)))
            .await
            .is_err()
    );
    drop(stream);
    // Settled on the drop, the slot is free again for the next caller.
    let mut next = tokio::time::timeout(Duration::from_secs(5), gw.stream(ask(TIMEOUT)))
        .await
        .expect("the slot is free: the abandoned waiter did not take it")
        .unwrap();
    assert!(matches!(next.next().await, Some(Ok(LlmChunk::Text(_)))));
    drop(next);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let read = produced.load(Ordering::SeqCst);
    assert!(read < 1_000, "{read} words were read of streams nobody reads");
    let stats = gw.stats();
    assert_eq!(stats.requests, 4);
    assert_eq!(stats.completed + stats.failed, 4, "every request ended: {stats:?}");
}
