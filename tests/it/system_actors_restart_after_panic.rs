//! Every system actor started with `X::start(&node, name, args)` is
//! restarted by the node's supervisor when its handler panics, and nothing
//! it was trusted with is lost: while a workload tracks usage in the
//! ledger, charges a quota and calls the LLM gateway (whose usage goes to
//! the ledger), the quota keeper, the scheduler, the ledger and the gateway
//! panic in turn. Each is restarted once; the handles taken before the
//! panics keep working, for the workload and for control-plane calls; every
//! record the ledger acknowledged is in it afterwards, every gateway call's
//! cost is recorded, the scheduler still holds its allocation, and the
//! quota's usage is whole (in memory, and in its store after the node
//! stops). In a `Swarm`, the same four and the scaler, the pressure
//! detector, the monitor and a router declared in configuration panic in
//! turn: the swarm keeps admitting agents and charging their calls, the
//! router keeps its members, the scaler its groups, the monitor its history
//! and watched pools.
//!
//! The panics come from the actors crate's `fault-injection` feature (on
//! for these tests): killing an actor would not do, since the supervisor
//! takes a kill for a stop and does not restart the actor.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nexus_swarm::actors::cost_ledger::{Budget, BudgetAction, BudgetPeriod, ModelRates, TimeRange};
use nexus_swarm::actors::llm::{
    DeploymentSpec, LlmRequest, ModelCatalogue, ModelSpec, RateLimits, SimulatedConfig, SimulatedProvider,
};
use nexus_swarm::actors::scheduler::{Decision, Notifier, RequestId, ResourceRequest};
use nexus_swarm::actors::{
    CostLedger, CostLedgerArgs, GatewayHandle, LedgerHandle, LedgerOptions, LlmGateway, LlmGatewayArgs, ProviderEntry,
    QuotaHandle, QuotaKeeper, QuotaKeeperArgs, Scheduler, SchedulerArgs, SchedulerHandle,
};
use nexus_swarm::runtime::config::DeclaredRouter;
use nexus_swarm::runtime::prelude::*;
use nexus_swarm::runtime::usage::UsageMeta;
use tokio::sync::watch;

const TIMEOUT: Duration = Duration::from_secs(30);
/// 1 micro-dollar per token in and out, in the catalogue and the ledger
/// alike, so the gateway's reported cost and the ledger's are exact.
const PRICE: u64 = 1_000_000;
/// Rounds of work done between two panics (and after the last one).
const ROUNDS_BETWEEN: u64 = 5;

const CONFIG: &str = r#"
[[scheduler.pools]]
name = "cpu"
capacity = { cpu = 4000 }

[[quotas.quotas]]
id = "work"
kind = "llm_requests"
limit = 1000000
"#;

/// What the workload did: every acknowledged record, every quota charge,
/// every gateway answer's cost.
#[derive(Debug, Default)]
struct Done {
    acked: Vec<(u64, u64)>,
    charges: u64,
    calls: u64,
    gateway_cost: u64,
}

/// One round after another until `stop`: a tracked usage, a quota charge
/// and an LLM call, each of which must succeed, restarts or not. Rounds
/// are counted on `progress`.
async fn workload(
    ledger: LedgerHandle,
    quotas: QuotaHandle,
    gateway: GatewayHandle,
    stop: Arc<AtomicBool>,
    progress: watch::Sender<u64>,
) -> Done {
    let mut done = Done::default();
    let mut round = 0;
    while !stop.load(Ordering::Acquire) {
        let amount = 1 + round % 7;
        let ack = ledger
            .track_usage(ResourceKind::Cost, amount, UsageMeta::default().tenant("acme"))
            .await
            .unwrap_or_else(|e| panic!("round {round}: tracking failed: {e}"));
        done.acked.push((ack.id, amount));

        // The receipt is dropped: the charge stays.
        let _ = quotas
            .try_consume("work", 1)
            .unwrap_or_else(|e| panic!("round {round}: charge failed: {e}"));
        done.charges += 1;

        let answer = gateway
            .complete(
                LlmRequest::user(format!("Question {round}: what changed?"))
                    .max_tokens(16)
                    .timeout(TIMEOUT),
            )
            .await
            .unwrap_or_else(|e| panic!("round {round}: LLM call failed: {e}"));
        done.calls += 1;
        done.gateway_cost += answer.cost_micro_usd;

        round += 1;
        progress.send_replace(round);
    }
    done
}

async fn restarts_of(node: &Node, name: &str) -> u32 {
    node.system_children()
        .await
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("{name} is not a system child"))
        .restarts
}

/// Waits until the supervisor reports `name` restarted once. A probe: each
/// look is a round trip to the `system` supervisor.
async fn restarted(node: &Node, name: &str) {
    tokio::time::timeout(TIMEOUT, async {
        while restarts_of(node, name).await == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{name} was not restarted"));
}

/// Waits until the workload has done `rounds` more rounds.
async fn more_rounds(progress: &mut watch::Receiver<u64>, rounds: u64) {
    let target = *progress.borrow() + rounds;
    tokio::time::timeout(TIMEOUT, progress.wait_for(|n| *n >= target))
        .await
        .expect("the workload goes on")
        .expect("the workload is running");
}

fn allocated(d: Decision) {
    assert!(matches!(d, Decision::Allocated(_)), "{d:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_actors_restart_after_panic_and_lose_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = NexusConfig::from_toml_str(CONFIG).unwrap();
    config.node.data_dir = dir.path().to_path_buf();
    let node = Node::start(config.clone()).await.unwrap();

    let quotas = QuotaKeeper::start(&node, "quota-keeper", QuotaKeeperArgs::from_config(&config).unwrap())
        .await
        .unwrap();
    let scheduler: SchedulerHandle = Scheduler::start(
        &node,
        "scheduler",
        SchedulerArgs::from_config(&config.scheduler).unwrap(),
    )
    .await
    .unwrap();
    let ledger_args = CostLedgerArgs::open(LedgerOptions::from_config(&config)).await.unwrap();
    let ledger = CostLedger::start(&node, "cost-ledger", ledger_args).await.unwrap();
    ledger
        .set_model_price("m", ModelRates::new(PRICE, PRICE, 0).unwrap())
        .await
        .unwrap();
    let catalogue = ModelCatalogue::new(vec![
        ModelSpec::new("m", 8_000, PRICE, PRICE).deployment(DeploymentSpec::new("m@sim", "sim")),
    ])
    .unwrap();
    let sim = SimulatedProvider::new("sim", SimulatedConfig::instant(11));
    let mut gateway_args = LlmGatewayArgs::from_config_with_catalogue(
        &config,
        catalogue,
        vec![ProviderEntry::new("sim", Arc::new(sim)).limits(RateLimits::unlimited())],
    )
    .sink(Arc::new(ledger.clone()));
    // Every call reaches the provider and is recorded.
    gateway_args.cache.enabled = false;
    let gateway = LlmGateway::start(&node, "llm-gateway", gateway_args).await.unwrap();

    let cpu = |m| ResourceVector::new().with(ResourceKind::Cpu, m);
    allocated(
        scheduler
            .request(ResourceRequest::new(1, "batch", cpu(1000)), Notifier::ignore())
            .await
            .unwrap(),
    );

    let stop = Arc::new(AtomicBool::new(false));
    let (progress_tx, mut progress) = watch::channel(0);
    let work = tokio::spawn(workload(
        ledger.clone(),
        quotas.clone(),
        gateway.clone(),
        Arc::clone(&stop),
        progress_tx,
    ));
    more_rounds(&mut progress, ROUNDS_BETWEEN).await;

    // The quota keeper: the tree and its counters outlive it.
    let used_before = quotas.report("work").unwrap().current;
    quotas.inject_panic().unwrap();
    restarted(&node, "quota-keeper").await;
    assert!(
        quotas.report("work").unwrap().current >= used_before,
        "usage was not reset"
    );
    assert_eq!(quotas.adjust("work", 2_000_000).await, Ok(1_000_000));
    more_rounds(&mut progress, ROUNDS_BETWEEN).await;

    // The scheduler: its allocation is still held, and it takes requests.
    scheduler.inject_panic().unwrap();
    restarted(&node, "scheduler").await;
    let held: Vec<RequestId> = scheduler.allocations().await.unwrap().iter().map(|a| a.id).collect();
    assert_eq!(held, [RequestId(1)]);
    allocated(
        scheduler
            .request(ResourceRequest::new(2, "api", cpu(3000)), Notifier::ignore())
            .await
            .unwrap(),
    );
    assert_eq!(scheduler.release(RequestId(2), "api").await.unwrap(), cpu(3000));
    more_rounds(&mut progress, ROUNDS_BETWEEN).await;

    // The ledger: same store, budgets and writer.
    ledger.inject_panic().unwrap();
    restarted(&node, "cost-ledger").await;
    ledger
        .put_budget(Budget::new("daily", 1 << 40, BudgetPeriod::Daily, BudgetAction::Alert))
        .await
        .unwrap();
    assert!(ledger.budget_status("daily").unwrap().spent_micro_usd > 0);
    more_rounds(&mut progress, ROUNDS_BETWEEN).await;

    // The gateway: one admission task, the same limits and counters.
    let completed_before = gateway.stats().completed;
    gateway.inject_panic().unwrap();
    restarted(&node, "llm-gateway").await;
    assert!(gateway.is_running());
    more_rounds(&mut progress, ROUNDS_BETWEEN).await;
    assert!(gateway.stats().completed > completed_before);

    stop.store(true, Ordering::Release);
    let done = tokio::time::timeout(TIMEOUT, work).await.unwrap().unwrap();
    assert!(done.calls >= 5 * ROUNDS_BETWEEN);

    // Each restarted exactly once; none gave up.
    for child in node.system_children().await {
        assert_eq!(child.restarts, 1, "{}", child.name);
    }

    // Every acknowledged record is in the ledger, once, at its cost.
    let records = ledger.records(TimeRange::all()).await.unwrap();
    let stored: HashSet<u64> = records.iter().map(|r| r.id).collect();
    assert_eq!(stored.len(), records.len(), "two records share an id");
    for (id, _) in &done.acked {
        assert!(stored.contains(id), "acknowledged record {id} is missing");
    }
    let tracked: u64 = records
        .iter()
        .filter(|r| r.meta.scope.tenant.as_deref() == Some("acme"))
        .map(|r| r.cost_micro_usd)
        .sum();
    assert_eq!(tracked, done.acked.iter().map(|(_, amount)| amount).sum::<u64>());
    // Every gateway call's usage, across the ledger's and the gateway's
    // restarts, was recorded at the cost the gateway answered with.
    let recorded: u64 = records
        .iter()
        .filter(|r| r.meta.scope.model.as_deref() == Some("m"))
        .map(|r| r.cost_micro_usd)
        .sum();
    assert_eq!(recorded, done.gateway_cost);
    assert_eq!(gateway.stats().sink_errors, 0);

    // The quota's usage is whole: every charge, none reset.
    assert_eq!(quotas.report("work").unwrap().current, done.charges);
    assert_eq!(node.shutdown(TIMEOUT).await, NodeExit::Shutdown);

    // The restarted keeper wrote it when the node stopped: a new keeper on
    // the same directory resumes it.
    drop((quotas, scheduler, ledger, gateway, node));
    let again = QuotaKeeperArgs::from_config(&config).unwrap();
    assert_eq!(again.handle().report("work").unwrap().current, done.charges);
}

/// The system child whose name ends with `suffix`.
async fn system_child(node: &Node, suffix: &str) -> String {
    node.system_children()
        .await
        .into_iter()
        .map(|c| c.name)
        .find(|n| n.ends_with(suffix))
        .unwrap_or_else(|| panic!("no system child named *{suffix}"))
}

/// Declares one CPU, answers pings.
struct Pinger;

impl Agent for Pinger {
    type Msg = Reply<u32>;
    type State = ();

    fn profile(&self) -> ResourceProfile {
        ResourceProfile::guaranteed(ResourceVector::new().with(ResourceKind::Cpu, 1000))
    }

    async fn init(&self, _: &AgentContext<Reply<u32>>) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn handle(&self, ctx: &AgentContext<Reply<u32>>, reply: Reply<u32>, _: &mut ()) -> Result<(), HandlerError> {
        reply.send(ctx.restarts());
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swarm_keeps_admitting_and_charging_while_its_system_actors_restart() {
    use nexus_swarm::actors::swarm::{AGENT_POOL, Swarm};

    let dir = tempfile::tempdir().unwrap();
    let mut config = NexusConfig::from_toml_str(CONFIG).unwrap();
    config.node.data_dir = dir.path().to_path_buf();
    config.node.capacity = [("cpu".to_string(), 4000)].into();
    config.scaling.min_workers = 1;
    config.routers.push(DeclaredRouter {
        name: "pingers-router".into(),
        pool: "pingers".into(),
        strategy: None,
        virtual_nodes: None,
    });
    let catalogue = ModelCatalogue::new(vec![
        ModelSpec::new("m", 8_000, PRICE, PRICE).deployment(DeploymentSpec::new("m@sim", "sim")),
    ])
    .unwrap();
    let sim = SimulatedProvider::new("sim", SimulatedConfig::instant(3));
    let swarm = Swarm::builder(config)
        .llm(
            catalogue,
            vec![ProviderEntry::new("sim", Arc::new(sim)).limits(RateLimits::unlimited())],
        )
        .start()
        .await
        .unwrap();
    let first = swarm.spawn_agent("first", Pinger).await.unwrap();
    // Distinct prompts: a repeated one would be served from the cache, free.
    let call = |prompt: &str| {
        swarm.gateway().unwrap().complete(
            LlmRequest::user(prompt)
                .max_tokens(8)
                .meta(UsageMeta::default().tenant("acme").agent("first")),
        )
    };
    call("before").await.unwrap();

    swarm.quotas().inject_panic().unwrap();
    restarted(swarm.node(), &system_child(swarm.node(), ".quota-keeper").await).await;
    swarm.scheduler().inject_panic().unwrap();
    restarted(swarm.node(), &system_child(swarm.node(), ".scheduler").await).await;
    // The scheduler kept the agent's allocation and admits the next one.
    let second = swarm.spawn_agent("second", Pinger).await.unwrap();
    let pools = swarm.scheduler().pools().await.unwrap();
    let agents = pools.iter().find(|p| p.id.as_str() == AGENT_POOL).unwrap();
    assert_eq!(agents.available.get(&ResourceKind::Cpu), 2000);

    // A pool behind a declared router, scaled by the scaler (which feeds
    // the pressure detector): the three restart and keep what they knew.
    let pool = swarm.spawn_pool("pingers", 1, Pinger).await.unwrap();
    swarm.autoscale(&pool).await.unwrap();
    let router = swarm.router::<Reply<u32>>("pingers-router").unwrap();
    router.inject_panic().unwrap();
    restarted(swarm.node(), "pingers-router").await;
    assert_eq!(router.members().len(), 1);
    let routed = router.ask(|r| r, Priority::Normal, None, TIMEOUT).await.unwrap();
    assert_eq!(routed, 0);
    let scaler = swarm.scaler().unwrap();
    scaler.inject_panic().unwrap();
    restarted(swarm.node(), &system_child(swarm.node(), ".scaler").await).await;
    let groups = scaler.groups().await.unwrap();
    assert_eq!(groups.iter().map(|g| g.name.as_ref()).collect::<Vec<_>>(), ["pingers"]);
    let pressure = swarm.pressure().unwrap();
    assert!(pressure.inject_panic());
    restarted(swarm.node(), &system_child(swarm.node(), ".pressure").await).await;
    assert!(
        pressure.report().await.is_some(),
        "the detector answers after its restart"
    );
    let monitor = swarm.monitor().unwrap();
    let before = monitor.sample().await.unwrap();
    monitor.inject_panic().unwrap();
    restarted(swarm.node(), &system_child(swarm.node(), ".monitor").await).await;
    let after = monitor.sample().await.unwrap();
    assert!(monitor.history().len() >= 2, "the history survives the restart");
    assert!(after.seq > before.seq);
    assert!(
        after.pools.iter().any(|p| &*p.name == "pingers"),
        "still watching the pool"
    );

    swarm.ledger().inject_panic().unwrap();
    restarted(swarm.node(), &system_child(swarm.node(), ".cost-ledger").await).await;
    swarm.gateway().unwrap().inject_panic().unwrap();
    restarted(swarm.node(), &system_child(swarm.node(), ".llm-gateway").await).await;
    call("after").await.unwrap();

    for agent in [&first, &second] {
        assert_eq!(agent.ask(|r| r, Priority::Normal, TIMEOUT).await.unwrap(), 0);
    }
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let records = swarm.ledger().records(TimeRange::all()).await.unwrap();
        let calls = records
            .iter()
            .filter(|r| r.meta.scope.agent.as_deref() == Some("first"))
            .count();
        // Two calls, each an input and an output record.
        if calls == 4 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "records: {records:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Each panicked once and was restarted once.
    let children = swarm.node().system_children().await;
    assert_eq!(children.len(), 8, "{children:?}");
    for child in children {
        assert_eq!(child.restarts, 1, "{}", child.name);
    }
    swarm.shutdown(TIMEOUT).await;
}
