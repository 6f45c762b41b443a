//! An agent spawned through a `Swarm` calls the LLM through its context
//! (`ctx.llm()`): its calls carry its tenant, workflow and name into the
//! gateway without the agent passing them, so `llm.max_concurrent_per_agent
//! = 2` holds its third concurrent call back, and its usage lands in the
//! ledger under its own identity.

use crate::support::held_provider;

use std::sync::Arc;
use std::time::Duration;

use held_provider::HeldProvider;
use nexus_swarm::actors::cost_ledger::{Field, ReportQuery, TimeRange};
use nexus_swarm::actors::llm::{DeploymentSpec, LlmRequest, ModelCatalogue, ModelSpec, RateLimits};
use nexus_swarm::actors::llm_gateway::ProviderEntry;
use nexus_swarm::actors::swarm::{Identity, NoLlm, Swarm, SwarmContext};
use nexus_swarm::prelude::*;
use nexus_swarm::runtime::usage::UsageMeta;

const WAIT: Duration = Duration::from_secs(20);

/// Asks the LLM the prompt it is sent, through its context.
struct Writer;

impl Agent for Writer {
    type Msg = (String, Reply<Result<String, String>>);
    type State = ();

    async fn init(&self, _ctx: &AgentContext<Self::Msg>) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn handle(
        &self,
        ctx: &AgentContext<Self::Msg>,
        (prompt, reply): Self::Msg,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        let answer = ctx.llm()?.complete(LlmRequest::user(prompt).max_tokens(16)).await;
        reply.send(answer.map(|a| a.content).map_err(|e| e.to_string()));
        Ok(())
    }
}

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn an_agents_calls_are_bounded_and_charged_to_it_without_it_saying_who_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = NexusConfig::default();
    config.node.data_dir = dir.path().to_path_buf();
    config.llm.max_concurrent_per_agent = 2;
    config.llm.timeout = Duration::from_secs(60);
    config.cache.enabled = false;
    let held = HeldProvider::new();
    let catalogue = ModelCatalogue::new(vec![
        ModelSpec::new("m", 16_000, 1_000_000, 2_000_000).deployment(DeploymentSpec::new("m@held", "held")),
    ])
    .unwrap();
    let provider: Arc<HeldProvider> = Arc::clone(&held);
    let swarm = Swarm::builder(config)
        .llm(
            catalogue,
            vec![ProviderEntry::new("held", provider).limits(RateLimits::unlimited())],
        )
        .start()
        .await
        .unwrap();

    // Three workers share the pool's identity: one agent, three handlers.
    let who = Identity::new("writers").tenant("acme").workflow("survey");
    let pool = swarm.spawn_pool_as(who, 3, Writer).await.unwrap();
    let asks: Vec<_> = (0..3)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.ask(|r| (format!("q{i}"), r), Priority::Normal, WAIT).await })
        })
        .collect();
    let gateway = swarm.gateway().unwrap().clone();
    let meta = UsageMeta::default().tenant("acme").workflow("survey").agent("writers");
    until("two calls reach the provider and the third waits", || {
        let load = gateway.agent_load(&meta);
        held.held().len() == 2 && load.in_flight == 2 && load.waiting == 1
    })
    .await;
    let first = held.held()[0].clone();
    assert!(held.ok(&first));
    until("the third call goes out once one ends", || held.held().len() == 2).await;
    for prompt in held.held() {
        assert!(held.ok(&prompt));
    }
    for ask in asks {
        let answer = ask.await.unwrap().unwrap().unwrap();
        assert!(answer.starts_with("answer to q"), "{answer}");
    }

    // Every call is in the ledger under the agent's own tenant / workflow / name.
    let query = ReportQuery::new(TimeRange::all())
        .filter(Scope::all().tenant("acme").workflow("survey").agent("writers"))
        .group_by(vec![Field::Agent, Field::Kind]);
    let mut report = swarm.ledger().report(query.clone()).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let records_of = |report: &nexus_swarm::actors::cost_ledger::Report, kind: &str| {
        report
            .rows
            .iter()
            .find(|r| r.key == ["writers", kind])
            .map(|r| (r.records, r.amounts[kind]))
    };
    while records_of(&report, "output_tokens") != Some((3, 15)) {
        assert!(tokio::time::Instant::now() < deadline, "ledger rows: {:?}", report.rows);
        tokio::time::sleep(Duration::from_millis(20)).await;
        report = swarm.ledger().report(query.clone()).await.unwrap();
    }
    // One record per call and kind: 3 calls of 10 input and 5 output tokens,
    // priced from the catalogue: 3 x (10 x $1/M + 5 x $2/M) = 60 micro-dollars.
    assert_eq!(records_of(&report, "input_tokens"), Some((3, 30)));
    assert_eq!(report.total_cost_micro_usd, 60, "{report:?}");
    swarm.shutdown(WAIT).await;
}

#[tokio::test]
async fn outside_a_swarm_with_a_gateway_the_context_says_there_is_no_llm() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = NexusConfig::default();
    config.node.data_dir = dir.path().to_path_buf();
    let swarm = Swarm::start(config).await.unwrap();
    assert!(swarm.gateway().is_none());
    let writer = swarm.spawn_agent("w", Writer).await.unwrap();
    // The handler fails with `NoLlm`: the agent restarts, the ask gets no reply.
    let err = writer
        .ask(|r| ("q".to_string(), r), Priority::Normal, Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(matches!(err, AskError::NoReply), "{err}");
    assert!(NoLlm.to_string().contains("no LLM gateway"));
    swarm.shutdown(WAIT).await;
}
