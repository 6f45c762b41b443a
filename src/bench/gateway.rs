//! The LLM gateway's own cost per request, measured as `cargo bench
//! --bench gateway` measures it: a simulated provider that answers at once
//! (zero latency, no limits binding, cache off so every request runs the
//! whole pipeline: token count, model choice, spend reservation, rate-limit
//! admission, call, settle), sequential requests, each timed through the
//! gateway and as a direct provider call; the added time is the difference
//! of the two distributions' percentiles.

use std::sync::Arc;
use std::time::Instant;

use nexus_swarm_actors::llm::{
    DeploymentSpec, LlmProvider, LlmRequest, ModelCatalogue, ModelSpec, ProviderRequest, RateLimits, SimulatedConfig,
    SimulatedProvider,
};
use nexus_swarm_actors::llm_gateway::{LlmGateway, LlmGatewayArgs, ProviderEntry};

fn request(i: u64) -> LlmRequest {
    LlmRequest::user(format!("Summarise finding number {i} of the survey in one line."))
        .max_tokens(32)
        .cacheable(false)
}

/// Added latency in microseconds at the median and the 99th percentile,
/// over `samples` requests after `samples / 10` warm-up requests.
pub(crate) async fn overhead_us(samples: u64) -> anyhow::Result<(f64, f64)> {
    let sim = SimulatedProvider::new("sim", SimulatedConfig::instant(1));
    let unlimited = RateLimits::rpm_tpm(1_000_000_000, 1_000_000_000_000);
    let catalogue = ModelCatalogue::new(vec![
        ModelSpec::new("m", 128_000, 150_000, 600_000)
            .deployment(DeploymentSpec::new("m@sim", "sim").limits(unlimited)),
    ])?;
    let mut args = LlmGatewayArgs::new(
        catalogue,
        vec![ProviderEntry::new("sim", Arc::new(sim.clone())).limits(unlimited)],
    );
    args.cache.enabled = false;
    args.llm.max_concurrent = 10_000;
    let (gw, actor, join) = LlmGateway::spawn_unsupervised(args).await?;
    let warmup = (samples / 10).max(1);
    for i in 0..warmup {
        gw.complete(request(i)).await?;
    }
    let (mut through, mut direct) = (super::histogram(), super::histogram());
    for i in 0..samples {
        let req = request(warmup + i);
        let preq = ProviderRequest {
            model: "m".into(),
            messages: req.messages.clone(),
            max_tokens: req.max_tokens,
            temperature_milli: 0,
            ..ProviderRequest::default()
        };
        let t = Instant::now();
        sim.complete(preq).await?;
        super::record(&mut direct, t.elapsed());
        let t = Instant::now();
        gw.complete(req).await?;
        super::record(&mut through, t.elapsed());
    }
    actor.stop(None);
    join.await?;
    let added = |q: f64| (through.value_at_quantile(q) as f64 - direct.value_at_quantile(q) as f64) / 1e3;
    Ok((added(0.5), added(0.99)))
}
