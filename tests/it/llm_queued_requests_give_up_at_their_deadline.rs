//! Requests waiting for rate-limit capacity give up at their deadline with
//! `DeadlineExceeded` (never "gateway stopped"), and are not sent.

use std::sync::Arc;
use std::time::Duration;

use nexus_swarm::actors::llm::{
    DeploymentSpec, GatewayError, LlmRequest, ModelCatalogue, ModelSpec, RateLimits, SimulatedConfig, SimulatedProvider,
};
use nexus_swarm::actors::llm_gateway::{LlmGateway, LlmGatewayArgs, ProviderEntry};

#[tokio::test(start_paused = true)]
async fn waiters_past_their_deadline_are_told_so_and_never_sent() {
    let sim = SimulatedProvider::new("sim", SimulatedConfig::instant(1));
    let catalogue = ModelCatalogue::new(vec![
        ModelSpec::new("m", 16_000, 1_000_000, 1_000_000).deployment(DeploymentSpec::new("m@sim", "sim")),
    ])
    .unwrap();
    // Two requests a minute: the third and later must wait about 30 s each.
    let mut args = LlmGatewayArgs::new(
        catalogue,
        vec![ProviderEntry::new("sim", Arc::new(sim.clone())).limits(RateLimits::rpm_tpm(2, 1_000_000))],
    );
    args.cache.enabled = false;
    let (gw, _actor, _join) = LlmGateway::spawn_unsupervised(args).await.unwrap();

    let calls: Vec<_> = (0..12)
        .map(|i| {
            let gw = gw.clone();
            tokio::spawn(async move {
                gw.complete(
                    LlmRequest::user(format!("question {i}"))
                        .max_tokens(16)
                        .timeout(Duration::from_secs(5)),
                )
                .await
            })
        })
        .collect();
    let mut ok = 0;
    for c in calls {
        match c.await.unwrap() {
            Ok(_) => ok += 1,
            Err(GatewayError::DeadlineExceeded(d)) => assert_eq!(d, Duration::from_secs(5)),
            Err(e) => panic!("a waiter past its deadline must get DeadlineExceeded, got {e:?}"),
        }
    }
    assert!((1..=3).contains(&ok), "only what the limit allows was answered: {ok}");
    assert_eq!(sim.counters().requests, ok, "expired waiters were never sent");
    assert_eq!(gw.stats().deadline_exceeded, 12 - ok);
}
