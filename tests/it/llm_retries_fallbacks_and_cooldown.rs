//! Retries and fallbacks: a 429's retry-after is honoured, a failing model
//! falls back along its chain, a context-window error falls back to the
//! larger model, and a deployment in cooldown receives nothing.

use std::sync::Arc;
use std::time::Duration;

use nexus_swarm::actors::llm::{
    DeploymentSpec, GatewayError, LlmRequest, ModelCatalogue, ModelSpec, ProviderError, RateLimits, SimulatedConfig,
    SimulatedProvider,
};
use nexus_swarm::actors::llm_gateway::{GatewayHandle, LlmGateway, LlmGatewayArgs, ProviderEntry};
use tokio::time::Instant;

const TIMEOUT: Duration = Duration::from_secs(120);

fn failing(seed: u64) -> SimulatedConfig {
    let mut c = SimulatedConfig::instant(seed);
    c.error_permille = 1000;
    c
}

async fn gateway(models: Vec<ModelSpec>, sims: &[(&str, &SimulatedProvider)]) -> GatewayHandle {
    let providers = sims
        .iter()
        .map(|(id, s)| ProviderEntry::new(*id, Arc::new((*s).clone())).limits(RateLimits::unlimited()))
        .collect();
    let mut args = LlmGatewayArgs::new(ModelCatalogue::new(models).unwrap(), providers);
    args.cache.enabled = false;
    args.llm.retry.base_backoff = Duration::from_millis(100);
    args.llm.retry.max_backoff = Duration::from_secs(1);
    args.seed = 5;
    let (gw, _actor, _join) = LlmGateway::spawn_unsupervised(args).await.unwrap();
    gw
}

#[tokio::test(start_paused = true)]
async fn a_429_retry_after_is_honoured() {
    // The provider allows 2 requests a minute; the gateway is told nothing
    // of it (no limits configured, no remaining-count headers), so the
    // third call meets a 429 with a retry-after of 60 s.
    let mut cfg = SimulatedConfig::instant(1).limits(Some(2), None);
    cfg.report_limits = false;
    let sim = SimulatedProvider::new("sim", cfg);
    let gw = gateway(
        vec![ModelSpec::new("m", 8_000, 1, 1).deployment(DeploymentSpec::new("m@sim", "sim"))],
        &[("sim", &sim)],
    )
    .await;
    for i in 0..2 {
        gw.complete(LlmRequest::user(format!("q{i}")).timeout(TIMEOUT))
            .await
            .unwrap();
    }
    let start = Instant::now();
    let r = gw.complete(LlmRequest::user("q2").timeout(TIMEOUT)).await.unwrap();
    assert!(
        start.elapsed() >= Duration::from_secs(60),
        "retried after {:?}",
        start.elapsed()
    );
    assert!(
        start.elapsed() < Duration::from_secs(62),
        "no needless wait: {:?}",
        start.elapsed()
    );
    assert_eq!(r.attempts, 2);
    assert_eq!(sim.counters().rate_limited, 1);
    assert_eq!(gw.stats().provider_429s, 1);
    assert_eq!(gw.stats().retries, 1);
}

#[tokio::test(start_paused = true)]
async fn a_failing_model_falls_back_along_its_chain() {
    let a = SimulatedProvider::new("a", failing(1));
    let b = SimulatedProvider::new("b", failing(2));
    let c = SimulatedProvider::new("c", SimulatedConfig::instant(3));
    let gw = gateway(
        vec![
            ModelSpec::new("first", 8_000, 1, 1)
                .fallbacks(["second", "third"])
                .deployment(DeploymentSpec::new("first@a", "a")),
            ModelSpec::new("second", 8_000, 1, 1).deployment(DeploymentSpec::new("second@b", "b")),
            ModelSpec::new("third", 8_000, 1, 1).deployment(DeploymentSpec::new("third@c", "c")),
        ],
        &[("a", &a), ("b", &b), ("c", &c)],
    )
    .await;
    let r = gw
        .complete(LlmRequest::user("hello").model("first").timeout(TIMEOUT))
        .await
        .unwrap();
    assert_eq!(r.model, "third");
    // Each failing model got its first try and retries until its only
    // deployment cooled down (3 failures in a row), then the next was tried.
    assert_eq!(
        (a.counters().requests, b.counters().requests, c.counters().requests),
        (3, 3, 1)
    );
    assert_eq!(r.attempts, 7);
    assert_eq!(gw.stats().retries, 6);
    assert_eq!(gw.stats().fallbacks, 2);

    // With no model left, the error names the chain and the last failure.
    let gw2 = gateway(
        vec![ModelSpec::new("only", 8_000, 1, 1).deployment(DeploymentSpec::new("only@a", "a"))],
        &[("a", &a)],
    )
    .await;
    match gw2.complete(LlmRequest::user("x").model("only").timeout(TIMEOUT)).await {
        Err(GatewayError::Exhausted { tried, last }) => {
            assert_eq!(tried, vec!["only".to_string()]);
            assert!(matches!(last, ProviderError::Server { status: 500, .. }));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_context_window_error_falls_back_to_the_larger_model() {
    // The small deployment's real window is 40 tokens although the
    // catalogue believes 8,000: the provider's error drives the fallback.
    let mut small_cfg = SimulatedConfig::instant(1);
    small_cfg.context_window = Some(40);
    let small = SimulatedProvider::new("small", small_cfg);
    let other = SimulatedProvider::new("other", SimulatedConfig::instant(2));
    let large = SimulatedProvider::new("large", SimulatedConfig::instant(3));
    let gw = gateway(
        vec![
            ModelSpec::new("small", 8_000, 1, 1)
                .fallbacks(["other"])
                .context_fallbacks(["large"])
                .deployment(DeploymentSpec::new("small@s", "small")),
            ModelSpec::new("other", 8_000, 1, 1).deployment(DeploymentSpec::new("other@o", "other")),
            ModelSpec::new("large", 128_000, 5, 5).deployment(DeploymentSpec::new("large@l", "large")),
        ],
        &[("small", &small), ("other", &other), ("large", &large)],
    )
    .await;
    let r = gw
        .complete(
            LlmRequest::user("a question")
                .model("small")
                .max_tokens(64)
                .timeout(TIMEOUT),
        )
        .await
        .unwrap();
    assert_eq!(r.model, "large");
    assert_eq!(small.counters().requests, 1, "a window error is not retried");
    assert_eq!(
        other.counters().requests,
        0,
        "the general chain is not used for window errors"
    );

    // A prompt the catalogue already knows is too large skips the small model.
    let long = "word ".repeat(9_000);
    let r = gw
        .complete(LlmRequest::user(long).model("small").max_tokens(64).timeout(TIMEOUT))
        .await
        .unwrap();
    assert_eq!(r.model, "large");
    assert_eq!(small.counters().requests, 1);
}

#[tokio::test(start_paused = true)]
async fn a_deployment_in_cooldown_receives_nothing() {
    let broken = SimulatedProvider::new("broken", failing(1));
    let healthy = SimulatedProvider::new("healthy", SimulatedConfig::instant(2));
    let gw = gateway(
        vec![
            ModelSpec::new("m", 8_000, 1, 1)
                .deployment(DeploymentSpec::new("m@broken", "broken"))
                .deployment(DeploymentSpec::new("m@healthy", "healthy")),
        ],
        &[("broken", &broken), ("healthy", &healthy)],
    )
    .await;
    let mut i = 0;
    while gw.stats().cooldowns == 0 {
        gw.complete(LlmRequest::user(format!("q{i}")).timeout(TIMEOUT))
            .await
            .unwrap();
        i += 1;
        assert!(i < 100, "the broken deployment never cooled down");
    }
    // Three failures in a row (llm.allowed_fails) started the cooldown.
    assert_eq!(broken.counters().requests, 3);
    let cooling_from = Instant::now();
    let seen = broken.counters().requests;
    for j in 0..50 {
        let r = gw
            .complete(LlmRequest::user(format!("c{j}")).timeout(TIMEOUT))
            .await
            .unwrap();
        assert_eq!(r.deployment, "m@healthy");
        assert_eq!(r.attempts, 1);
    }
    assert!(cooling_from.elapsed() < Duration::from_secs(30));
    assert_eq!(
        broken.counters().requests,
        seen,
        "a deployment in cooldown received a request"
    );
    // After the cooldown (30 s) it is picked again.
    tokio::time::advance(Duration::from_secs(31)).await;
    for j in 0..20 {
        gw.complete(LlmRequest::user(format!("after{j}")).timeout(TIMEOUT))
            .await
            .unwrap();
    }
    assert!(broken.counters().requests > seen);
}
