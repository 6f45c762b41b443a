//! Cache: a repeated request is served from memory, then from disk after a
//! restart, and costs nothing: no spend in the budget, no usage recorded,
//! no provider call.

use crate::support::budget_gate;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use budget_gate::{BudgetGate, RecordingSink};
use nexus_swarm::actors::llm::{
    DeploymentSpec, LlmRequest, ModelCatalogue, ModelSpec, ResponseSource, SimulatedConfig, SimulatedProvider,
};
use nexus_swarm::actors::llm_gateway::{GatewayHandle, LlmGateway, LlmGatewayArgs, ProviderEntry};
use ractor::ActorRef;
use tokio::task::JoinHandle;

const TIMEOUT: Duration = Duration::from_secs(30);
const PRICES: (u64, u64) = (1_000_000, 4_000_000);

struct Running {
    gw: GatewayHandle,
    actor: ActorRef<nexus_swarm::actors::llm_gateway::LlmGatewayMsg>,
    join: JoinHandle<()>,
    sim: SimulatedProvider,
    budget: Arc<BudgetGate>,
    sink: Arc<RecordingSink>,
}

async fn start(dir: &Path) -> Running {
    let sim = SimulatedProvider::new("sim", SimulatedConfig::instant(4));
    let catalogue = ModelCatalogue::new(vec![
        ModelSpec::new("m", 8_000, PRICES.0, PRICES.1).deployment(DeploymentSpec::new("m@sim", "sim")),
    ])
    .unwrap();
    let budget = BudgetGate::new(1_000_000);
    let sink = RecordingSink::new([("m".to_string(), PRICES)]);
    let mut args = LlmGatewayArgs::new(catalogue, vec![ProviderEntry::new("sim", Arc::new(sim.clone()))])
        .gate(budget.clone())
        .sink(sink.clone());
    args.cache_dir = Some(dir.to_path_buf());
    let (gw, actor, join) = LlmGateway::spawn_unsupervised(args).await.unwrap();
    Running {
        gw,
        actor,
        join,
        sim,
        budget,
        sink,
    }
}

fn ask() -> LlmRequest {
    LlmRequest::user("What is the capital of France?")
        .max_tokens(32)
        .timeout(TIMEOUT)
}

#[tokio::test]
async fn repeated_request_is_served_from_memory_then_disk_after_restart_for_free() {
    let dir = tempfile::tempdir().unwrap();
    let first = start(dir.path()).await;
    let paid = first.gw.complete(ask()).await.unwrap();
    assert_eq!(paid.source, ResponseSource::Provider);
    assert!(paid.cost_micro_usd > 0);
    let spent = first.budget.spent();
    assert_eq!(spent, paid.cost_micro_usd);
    let records = first.sink.records().len();

    let again = first.gw.complete(ask()).await.unwrap();
    assert_eq!(again.source, ResponseSource::MemoryCache);
    assert_eq!(again.content, paid.content);
    assert_eq!(
        (again.cost_micro_usd, again.input_tokens, again.output_tokens),
        (0, 0, 0)
    );
    // Whitespace differences are the same request.
    let spaced = LlmRequest::user("  What is the   capital of France? ")
        .max_tokens(32)
        .timeout(TIMEOUT);
    assert_eq!(
        first.gw.complete(spaced).await.unwrap().source,
        ResponseSource::MemoryCache
    );
    assert_eq!(first.budget.spent(), spent, "a cache hit reserved or spent nothing");
    assert_eq!(first.sink.records().len(), records, "a cache hit recorded no usage");
    assert_eq!(first.sim.counters().requests, 1);
    let stats = first.gw.stats();
    assert_eq!((stats.cache.memory_hits, stats.cache.misses), (2, 1));

    // Restart: stop the actor, drop every handle, open the same directory.
    first.gw.flush_cache().await;
    first.actor.stop(None);
    first.join.await.unwrap();
    drop(first.gw);
    let second = start(dir.path()).await;
    let restored = second.gw.complete(ask()).await.unwrap();
    assert_eq!(restored.source, ResponseSource::DiskCache);
    assert_eq!(restored.content, paid.content);
    assert_eq!(restored.cost_micro_usd, 0);
    assert_eq!(second.sim.counters().requests, 0, "no provider call after the restart");
    assert_eq!(second.budget.spent(), 0);
    assert!(second.sink.records().is_empty());
    assert_eq!(second.gw.stats().cache.disk_hits, 1);
    // And it is back in memory.
    assert_eq!(
        second.gw.complete(ask()).await.unwrap().source,
        ResponseSource::MemoryCache
    );
    // A request marked not cacheable goes to the provider.
    let fresh = second.gw.complete(ask().cacheable(false)).await.unwrap();
    assert_eq!(fresh.source, ResponseSource::Provider);
    assert_eq!(second.sim.counters().requests, 1);
}
