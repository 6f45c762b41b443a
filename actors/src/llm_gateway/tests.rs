//! The gateway actor under a node's supervisor: a restart after a panic
//! leaves exactly one admission task, and the handle keeps working.

use std::sync::Arc;
use std::time::Duration;

use nexus_swarm_runtime::config::NexusConfig;
use nexus_swarm_runtime::node::Node;
use tokio::task::AbortHandle;

use super::{GatewayHandle, LlmGateway, LlmGatewayArgs, ProviderEntry};
use crate::llm::types::{ToolChoice, ToolDef};
use crate::llm::{
    DeploymentSpec, LlmRequest, ModelCatalogue, ModelSpec, RateLimits, SimulatedConfig, SimulatedProvider,
};

const TIMEOUT: Duration = Duration::from_secs(10);

fn args() -> LlmGatewayArgs {
    let catalogue = ModelCatalogue::new(vec![
        ModelSpec::new("m", 8_000, 1_000, 1_000).deployment(DeploymentSpec::new("m@sim", "sim")),
    ])
    .unwrap();
    let sim = SimulatedProvider::new("sim", SimulatedConfig::instant(3));
    let mut args = LlmGatewayArgs::new(
        catalogue,
        vec![ProviderEntry::new("sim", Arc::new(sim)).limits(RateLimits::unlimited())],
    );
    args.cache.enabled = false;
    args
}

fn admission_task(gateway: &GatewayHandle) -> AbortHandle {
    gateway
        .core
        .admission
        .lock()
        .as_ref()
        .expect("an admission task")
        .abort_handle()
}

#[tokio::test]
async fn a_gateway_restarted_after_a_panic_runs_one_admission_task() {
    let node = Node::start(NexusConfig::default()).await.unwrap();
    let gateway = LlmGateway::start(&node, "gateway", args()).await.unwrap();
    gateway
        .complete(LlmRequest::user("before").max_tokens(8))
        .await
        .unwrap();
    let first = admission_task(&gateway);

    gateway.inject_panic().unwrap();
    tokio::time::timeout(TIMEOUT, async {
        while node.system_children().await[0].restarts == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the gateway is restarted");
    let second = admission_task(&gateway);
    assert_ne!(second.id(), first.id());
    // The predecessor's task is aborted, not left running beside the new one.
    tokio::time::timeout(TIMEOUT, async {
        while !first.is_finished() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the old admission task ends");
    assert!(!second.is_finished());

    assert!(gateway.is_running());
    let answer = gateway.complete(LlmRequest::user("after").max_tokens(8)).await.unwrap();
    assert_eq!(answer.model, "m");
    assert_eq!(gateway.stats().completed, 2);

    node.shutdown(TIMEOUT).await;
    assert!(second.is_finished(), "a clean stop ends the admission task");
    assert!(!gateway.is_running());
}

/// A request counted once by the caller runs as it would uncounted: the
/// count takes in the tool definitions, and model choice goes by it (a
/// prompt whose tools push it past the window is refused either way, with
/// the same figure).
#[tokio::test]
async fn a_counted_request_is_counted_with_its_tools_and_chosen_by_that_count() {
    let node = Node::start(NexusConfig::default()).await.unwrap();
    let gateway = LlmGateway::start(&node, "gateway", args()).await.unwrap();
    let plain = LlmRequest::user("what is the weather in Lisbon?");
    let messages = gateway.count_tokens(&plain.messages);
    let tool = ToolDef {
        name: "weather".into(),
        description: Some("Looks the weather up for a city. ".repeat(60)),
        parameters: serde_json::json!({"type": "object", "properties": {"city": {"type": "string"}}}),
    };
    let with_tools = |max_tokens: u32| {
        plain
            .clone()
            .tools(vec![tool.clone()], ToolChoice::Auto)
            .max_tokens(max_tokens)
    };
    let counted = gateway.count(with_tools(8));
    assert_eq!(gateway.count(plain.clone().max_tokens(8)).input_tokens(), messages);
    let tools = counted.input_tokens() - messages;
    assert!(tools > 300, "the tool definitions are counted: {tools}");

    // Fits the 8,000-token window on its messages alone, not with its tools.
    let max_tokens = u32::try_from(8_000 - messages - tools / 2).unwrap();
    let uncounted = gateway.complete(with_tools(max_tokens)).await.unwrap_err();
    let counted = gateway
        .complete_counted(gateway.count(with_tools(max_tokens)))
        .await
        .unwrap_err();
    assert_eq!(counted.to_string(), uncounted.to_string());
    assert!(
        counted
            .to_string()
            .contains(&(messages + tools + u64::from(max_tokens)).to_string()),
        "{counted}"
    );

    // And within the window it is answered as the uncounted request is.
    let answer = gateway.complete_counted(gateway.count(with_tools(8))).await.unwrap();
    let same = gateway.complete(with_tools(8)).await.unwrap();
    assert_eq!((answer.model, answer.input_tokens), (same.model, same.input_tokens));
    node.shutdown(TIMEOUT).await;
}
