//! `llm.max_concurrent_per_agent`: an agent (tenant, workflow, agent of the
//! request's usage metadata) has at most that many gateway requests under
//! way. One more waits, first come first served, until one of them ends
//! (answered, failed or dropped by its caller) while other agents' calls go
//! on; past its own deadline it gets `AgentBusy` and takes no slot.
//! Requests that name no agent are not bounded per agent.

use crate::support::held_provider;

use std::sync::Arc;
use std::time::Duration;

use held_provider::{HeldProvider, until};
use nexus_swarm::actors::llm::{
    AgentLoad, DeploymentSpec, GatewayError, LlmRequest, LlmResponse, ModelCatalogue, ModelSpec, ProviderError,
    RateLimits,
};
use nexus_swarm::actors::llm_gateway::{GatewayHandle, LlmGateway, LlmGatewayArgs, ProviderEntry};
use nexus_swarm::runtime::usage::UsageMeta;
use tokio::task::JoinHandle;

/// Longer than any test runs: calls end when the test answers them.
const LONG: Duration = Duration::from_secs(3600);

async fn gateway(held: &Arc<HeldProvider>) -> GatewayHandle {
    let catalogue = ModelCatalogue::new(vec![
        ModelSpec::new("m", 16_000, 1_000_000, 1_000_000).deployment(DeploymentSpec::new("m@held", "held")),
    ])
    .unwrap();
    let provider: Arc<HeldProvider> = Arc::clone(held);
    let mut args = LlmGatewayArgs::new(
        catalogue,
        vec![ProviderEntry::new("held", provider).limits(RateLimits::unlimited())],
    );
    args.cache.enabled = false;
    args.llm.timeout = LONG;
    args.llm.max_concurrent_per_agent = 2;
    let (gw, _actor, _join) = LlmGateway::spawn_unsupervised(args).await.unwrap();
    gw
}

fn agent(name: &str) -> UsageMeta {
    UsageMeta::default().tenant("acme").workflow("survey").agent(name)
}

/// Starts a request whose prompt is `prompt` (how the provider knows it).
fn call(
    gw: &GatewayHandle,
    meta: UsageMeta,
    prompt: &str,
    timeout: Duration,
) -> JoinHandle<Result<LlmResponse, GatewayError>> {
    let gw = gw.clone();
    let req = LlmRequest::user(prompt).max_tokens(16).timeout(timeout).meta(meta);
    tokio::spawn(async move { gw.complete(req).await })
}

fn load(in_flight: u32, waiting: usize) -> AgentLoad {
    AgentLoad { in_flight, waiting }
}

#[tokio::test(start_paused = true)]
async fn a_third_call_waits_for_one_of_the_agents_two_while_others_proceed() {
    let held = HeldProvider::new();
    let gw = gateway(&held).await;
    let a = agent("a");

    let a1 = call(&gw, a.clone(), "a1", LONG);
    let a2 = call(&gw, a.clone(), "a2", LONG);
    until("a1 and a2 reach the provider", || held.holds("a1") && held.holds("a2")).await;
    let a3 = call(&gw, a.clone(), "a3", LONG);
    until("a3 waits for a slot", || gw.agent_load(&a).waiting == 1).await;

    // Another agent, and a request that names no agent, are not held back.
    let b1 = call(&gw, agent("b"), "b1", LONG);
    let anonymous: Vec<_> = (0..3)
        .map(|i| call(&gw, UsageMeta::default().tenant("acme"), &format!("n{i}"), LONG))
        .collect();
    until("b1 and the unnamed calls reach the provider", || {
        held.holds("b1") && (0..3).all(|i| held.holds(&format!("n{i}")))
    })
    .await;
    // The same agent name in another tenant is another agent.
    let other_tenant = call(
        &gw,
        UsageMeta::default().tenant("other").agent("a"),
        "a-elsewhere",
        LONG,
    );
    until("the other tenant's agent proceeds", || held.holds("a-elsewhere")).await;

    assert!(!held.holds("a3"), "the agent's third call must not reach the provider");
    assert_eq!(gw.agent_load(&a), load(2, 1));
    assert_eq!(gw.agent_load(&agent("b")), load(1, 0));
    assert_eq!(gw.agent_load(&UsageMeta::default()), load(0, 0), "no agent, no bound");
    let stats = gw.stats();
    assert_eq!(
        (stats.agent_in_flight, stats.agent_waiting, stats.agent_waits),
        (4, 1, 1)
    );

    // One of the first two ends: the third goes at once.
    assert!(held.ok("a2"));
    assert_eq!(a2.await.unwrap().unwrap().content, "answer to a2");
    until("a3 reaches the provider", || held.holds("a3")).await;
    assert_eq!(gw.agent_load(&a), load(2, 0));

    for p in ["a1", "a3", "b1", "n0", "n1", "n2", "a-elsewhere"] {
        assert!(held.ok(p), "{p} was held");
    }
    for c in [a1, a3, b1, other_tenant].into_iter().chain(anonymous) {
        c.await.unwrap().unwrap();
    }
    assert_eq!(gw.agent_load(&a), load(0, 0));
    let stats = gw.stats();
    assert_eq!(
        (stats.agent_in_flight, stats.agent_waiting, stats.agent_waits),
        (0, 0, 1)
    );
    assert_eq!(stats.completed, 8);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_past_its_deadline_gets_agent_busy_and_takes_no_slot() {
    let held = HeldProvider::new();
    let gw = gateway(&held).await;
    let a = agent("a");

    let a1 = call(&gw, a.clone(), "a1", LONG);
    let a2 = call(&gw, a.clone(), "a2", LONG);
    until("a1 and a2 reach the provider", || held.holds("a1") && held.holds("a2")).await;

    // Nothing ends within its 5 s: the clock runs to its deadline.
    let started = tokio::time::Instant::now();
    let late = call(&gw, a.clone(), "late", Duration::from_secs(5)).await.unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(6),
        "it waited for its whole timeout and no longer: {waited:?}"
    );
    match late {
        Err(GatewayError::AgentBusy { agent, limit, timeout }) => {
            assert_eq!(agent, "acme/survey/a");
            assert_eq!(limit, 2);
            assert_eq!(timeout, Duration::from_secs(5));
        }
        other => panic!("a waiter past its deadline must get AgentBusy, got {other:?}"),
    }
    assert!(!held.holds("late"), "it was never sent");
    assert_eq!(gw.agent_load(&a), load(2, 0), "it left the queue and took nothing");
    let stats = gw.stats();
    assert_eq!((stats.deadline_exceeded, stats.failed), (1, 1));

    // The slot a1 frees goes to a new call, not to the expired one: the
    // agent is at 1 + 1, and a further call waits again.
    assert!(held.ok("a1"));
    a1.await.unwrap().unwrap();
    assert_eq!(gw.agent_load(&a), load(1, 0));
    let a3 = call(&gw, a.clone(), "a3", LONG);
    until("a3 reaches the provider without waiting", || held.holds("a3")).await;
    assert_eq!(gw.stats().agent_waits, 1, "only the expired call had to wait");
    let a4 = call(&gw, a.clone(), "a4", LONG);
    until("a4 waits", || gw.agent_load(&a) == load(2, 1)).await;

    assert!(held.ok("a2") && held.ok("a3"));
    until("a4 reaches the provider", || held.holds("a4")).await;
    assert!(held.ok("a4"));
    for c in [a2, a3, a4] {
        c.await.unwrap().unwrap();
    }
    assert_eq!(gw.agent_load(&a), load(0, 0));
}

#[tokio::test(start_paused = true)]
async fn slots_come_back_on_provider_errors_and_dropped_calls() {
    let held = HeldProvider::new();
    let gw = gateway(&held).await;
    let a = agent("a");

    let a1 = call(&gw, a.clone(), "a1", LONG);
    let a2 = call(&gw, a.clone(), "a2", LONG);
    until("a1 and a2 reach the provider", || held.holds("a1") && held.holds("a2")).await;
    let a3 = call(&gw, a.clone(), "a3", LONG);
    until("a3 waits", || gw.agent_load(&a) == load(2, 1)).await;

    // A provider error (not retried) ends a1: its slot goes to a3.
    let refused = ProviderError::Rejected {
        status: 400,
        message: "bad request".into(),
    };
    assert!(held.answer("a1", Err(refused.clone())));
    match a1.await.unwrap() {
        Err(GatewayError::Exhausted { last, .. }) => assert_eq!(last, refused),
        other => panic!("a1 must fail with the provider's error, got {other:?}"),
    }
    until("a3 reaches the provider", || held.holds("a3")).await;
    assert_eq!(gw.agent_load(&a), load(2, 0));

    // A caller that drops its call in flight gives its slot back.
    let a4 = call(&gw, a.clone(), "a4", LONG);
    until("a4 waits", || gw.agent_load(&a) == load(2, 1)).await;
    a2.abort();
    assert!(a2.await.unwrap_err().is_cancelled());
    until("a4 reaches the provider", || held.holds("a4")).await;
    assert!(!held.holds("a2"), "the dropped call was abandoned");
    assert_eq!(gw.agent_load(&a), load(2, 0));

    // A caller that drops its call while it waits leaves the queue and
    // takes nothing: the next slot freed goes unused.
    let a5 = call(&gw, a.clone(), "a5", LONG);
    until("a5 waits", || gw.agent_load(&a) == load(2, 1)).await;
    a5.abort();
    assert!(a5.await.unwrap_err().is_cancelled());
    assert_eq!(gw.agent_load(&a), load(2, 0));
    assert!(held.ok("a3"));
    a3.await.unwrap().unwrap();
    assert_eq!(gw.agent_load(&a), load(1, 0));
    assert!(!held.holds("a5"));

    assert!(held.ok("a4"));
    a4.await.unwrap().unwrap();
    let stats = gw.stats();
    assert_eq!(gw.agent_load(&a), load(0, 0));
    assert_eq!((stats.agent_in_flight, stats.agent_waiting), (0, 0));
    assert_eq!(stats.in_flight, 0, "no provider call is counted in flight");
}
