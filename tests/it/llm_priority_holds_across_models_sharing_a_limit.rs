//! Priority holds across every model that shares a provider's limits: when
//! the provider's limit binds, the next call released for it is the
//! highest-priority one among all its models, even when a smaller
//! low-priority call of another model would fit first; within a priority
//! the oldest goes first, whichever model it is for. A model on another
//! provider is not held back by it.

use crate::support::scripted_headers as scripted;

use std::sync::Arc;
use std::time::Duration;

use nexus_swarm::actors::llm::{DeploymentSpec, LlmRequest, ModelCatalogue, ModelSpec, RateLimits};
use nexus_swarm::actors::llm_gateway::{GatewayHandle, LlmGateway, LlmGatewayArgs, ProviderEntry};
use nexus_swarm::runtime::priority::Priority;
use scripted::Scripted;
use tokio::task::JoinHandle;
use tokio::time::Instant;

const TIMEOUT: Duration = Duration::from_secs(900);

/// Models `a` and `b` at provider `p` (limited to `limits`, the whole limit
/// as burst), model `c` at an unlimited provider `q`.
async fn gateway(p: &Scripted, q: &Scripted, limits: RateLimits) -> GatewayHandle {
    let catalogue = ModelCatalogue::new(vec![
        ModelSpec::new("a", 8_000, 1, 1).deployment(DeploymentSpec::new("a@p", "p")),
        ModelSpec::new("b", 8_000, 1, 1).deployment(DeploymentSpec::new("b@p", "p")),
        ModelSpec::new("c", 8_000, 1, 1).deployment(DeploymentSpec::new("c@q", "q")),
    ])
    .unwrap();
    let mut args = LlmGatewayArgs::new(
        catalogue,
        vec![
            ProviderEntry::new("p", Arc::new(p.clone())).limits(limits),
            ProviderEntry::new("q", Arc::new(q.clone())).limits(RateLimits::unlimited()),
        ],
    );
    args.cache.enabled = false;
    args.llm.burst_percent = 100;
    let (gw, _actor, _join) = LlmGateway::spawn_unsupervised(args).await.unwrap();
    gw
}

/// Starts a call and lets it reach the queue before returning.
async fn start(gw: &GatewayHandle, model: &str, priority: Priority, max_tokens: u32) -> JoinHandle<Instant> {
    let gw = gw.clone();
    let req = LlmRequest::user(format!("{model} {priority:?} {max_tokens}"))
        .model(model)
        .priority(priority)
        .max_tokens(max_tokens)
        .timeout(TIMEOUT);
    let task = tokio::spawn(async move {
        gw.complete(req).await.unwrap();
        Instant::now()
    });
    tokio::time::sleep(Duration::from_millis(1)).await;
    task
}

#[tokio::test(start_paused = true)]
async fn a_small_low_priority_call_of_another_model_does_not_pass_a_high_one() {
    let (p, q) = (Scripted::new(), Scripted::new());
    let gw = gateway(
        &p,
        &q,
        RateLimits {
            tokens_per_minute: Some(1_000),
            ..RateLimits::default()
        },
    )
    .await;
    let t0 = Instant::now();
    // About 505 tokens of the provider's 1,000 a minute are used.
    gw.complete(LlmRequest::user("fill").model("a").max_tokens(500).timeout(TIMEOUT))
        .await
        .unwrap();
    // A high-priority call of model b needs about 605: it waits for the window.
    let high = start(&gw, "b", Priority::High, 600).await;
    // Low-priority calls of model a need about 105 each: they would fit now.
    let mut lows = Vec::new();
    for _ in 0..3 {
        lows.push(start(&gw, "a", Priority::Low, 100).await);
    }
    // A call of a model at another provider is not held back.
    let other = start(&gw, "c", Priority::Low, 100).await;
    assert!(other.await.unwrap() - t0 < Duration::from_millis(10));
    let high_at = high.await.unwrap();
    assert!(high_at - t0 >= Duration::from_secs(60), "{:?}", high_at - t0);
    for low in lows {
        let low_at = low.await.unwrap();
        assert!(
            low_at >= high_at,
            "a low call went {:?} before the high one",
            high_at - low_at
        );
    }
    let order: Vec<u32> = p.calls().iter().map(|(m, _)| if m == "b" { 1 } else { 0 }).collect();
    assert_eq!(order, vec![0, 1, 0, 0, 0]);
}

#[tokio::test(start_paused = true)]
async fn within_a_priority_the_oldest_call_goes_first_whatever_its_model() {
    let (p, q) = (Scripted::new(), Scripted::new());
    let gw = gateway(
        &p,
        &q,
        RateLimits {
            requests_per_minute: Some(1),
            ..RateLimits::default()
        },
    )
    .await;
    gw.complete(LlmRequest::user("fill").model("a").timeout(TIMEOUT))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for model in ["a", "b", "a", "b"] {
        tasks.push(start(&gw, model, Priority::Normal, 10).await);
    }
    for t in tasks {
        t.await.unwrap();
    }
    let order: Vec<String> = p.calls().into_iter().map(|(m, _)| m).collect();
    assert_eq!(order, vec!["a", "a", "b", "a", "b"]);
    let gaps: Vec<Duration> = p.calls().windows(2).map(|w| w[1].1 - w[0].1).collect();
    assert!(gaps.iter().all(|g| *g == Duration::from_secs(60)), "{gaps:?}");
}

#[tokio::test(start_paused = true)]
async fn a_high_priority_call_of_another_model_overtakes_queued_low_ones() {
    let (p, q) = (Scripted::new(), Scripted::new());
    let gw = gateway(
        &p,
        &q,
        RateLimits {
            requests_per_minute: Some(1),
            ..RateLimits::default()
        },
    )
    .await;
    gw.complete(LlmRequest::user("fill").model("a").timeout(TIMEOUT))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..3 {
        tasks.push(start(&gw, "a", Priority::Low, 10).await);
    }
    tasks.push(start(&gw, "b", Priority::High, 10).await);
    tasks.push(start(&gw, "a", Priority::Normal, 10).await);
    for t in tasks {
        t.await.unwrap();
    }
    // fill, then b (high), then the normal a, then the three low a.
    assert_eq!(
        p.prompts(),
        vec!["fill", "b High 10", "a Normal 10", "a Low 10", "a Low 10", "a Low 10"]
    );
}
