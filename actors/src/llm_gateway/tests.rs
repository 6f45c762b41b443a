//! The gateway actor under a node's supervisor: a restart after a panic
//! leaves exactly one admission task, and the handle keeps working.

use std::sync::Arc;
use std::time::Duration;

use nexus_swarm_runtime::config::NexusConfig;
use nexus_swarm_runtime::node::Node;
use tokio::task::AbortHandle;

use super::{GatewayHandle, LlmGateway, LlmGatewayArgs, ProviderEntry};
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
