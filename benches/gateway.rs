//! The LLM gateway's own cost per request, with a simulated provider that
//! answers at once (zero latency, no limits binding, cache off so every
//! request runs the whole pipeline: token count, model choice, spend
//! reservation, rate-limit admission, call, settle).
//!
//! Prints the added latency per request (p50/p99 in microseconds: the
//! gateway's time minus a direct provider call's), and requests/s through
//! the gateway with 64 concurrent callers, then runs the criterion bench.
//!
//! ```text
//! cargo bench --bench gateway
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use hdrhistogram::Histogram;
use nexus_swarm::actors::llm::{
    DeploymentSpec, LlmProvider, LlmRequest, ModelCatalogue, ModelSpec, ProviderRequest, RateLimits, SimulatedConfig,
    SimulatedProvider,
};
use nexus_swarm::actors::llm_gateway::{GatewayHandle, LlmGateway, LlmGatewayArgs, ProviderEntry};

const WARMUP: u64 = 2_000;
const SAMPLES: u64 = 20_000;
const CONCURRENCY: u64 = 64;
const THROUGHPUT_REQUESTS: u64 = 100_000;

fn request(i: u64) -> LlmRequest {
    LlmRequest::user(format!("Summarise finding number {i} of the survey in one line."))
        .max_tokens(32)
        .cacheable(false)
}

async fn build(sim: &SimulatedProvider) -> GatewayHandle {
    let catalogue = ModelCatalogue::new(vec![ModelSpec::new("m", 128_000, 150_000, 600_000).deployment(
        DeploymentSpec::new("m@sim", "sim").limits(RateLimits::rpm_tpm(1_000_000_000, 1_000_000_000_000)),
    )])
    .expect("catalogue");
    let mut args = LlmGatewayArgs::new(
        catalogue,
        vec![
            ProviderEntry::new("sim", Arc::new(sim.clone()))
                .limits(RateLimits::rpm_tpm(1_000_000_000, 1_000_000_000_000)),
        ],
    );
    args.cache.enabled = false;
    args.llm.max_concurrent = 10_000;
    let (gw, _actor, _join) = LlmGateway::spawn_unsupervised(args).await.expect("gateway");
    gw
}

fn percentiles(h: &Histogram<u64>) -> (f64, f64) {
    (
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
    )
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let sim = SimulatedProvider::new("sim", SimulatedConfig::instant(1));
    let gw = rt.block_on(build(&sim));

    // Sequential latency: through the gateway, and the provider alone.
    let (gateway_ns, direct_ns) = rt.block_on(async {
        let mut through = Histogram::<u64>::new(3).expect("histogram");
        let mut direct = Histogram::<u64>::new(3).expect("histogram");
        for i in 0..WARMUP {
            gw.complete(request(i)).await.expect("warm-up request");
        }
        for i in 0..SAMPLES {
            let req = request(WARMUP + i);
            let preq = ProviderRequest {
                model: "m".into(),
                messages: req.messages.clone(),
                max_tokens: req.max_tokens,
                temperature_milli: 0,
                ..ProviderRequest::default()
            };
            let t = Instant::now();
            sim.complete(preq).await.expect("direct call");
            direct.record(t.elapsed().as_nanos() as u64).expect("record");
            let t = Instant::now();
            gw.complete(req).await.expect("request");
            through.record(t.elapsed().as_nanos() as u64).expect("record");
        }
        (through, direct)
    });
    let (g50, g99) = percentiles(&gateway_ns);
    let (d50, d99) = percentiles(&direct_ns);
    println!("gateway request latency (simulated provider, zero latency): p50 {g50:.1} us, p99 {g99:.1} us");
    println!("direct provider call:                                       p50 {d50:.1} us, p99 {d99:.1} us");
    println!(
        "gateway added latency per request:                          p50 {:.1} us, p99 {:.1} us",
        g50 - d50,
        g99 - d99
    );

    // Throughput with concurrent callers.
    let elapsed = rt.block_on(async {
        let start = Instant::now();
        let per_task = THROUGHPUT_REQUESTS / CONCURRENCY;
        let tasks: Vec<_> = (0..CONCURRENCY)
            .map(|t| {
                let gw = gw.clone();
                tokio::spawn(async move {
                    for i in 0..per_task {
                        gw.complete(request(1_000_000 + t * per_task + i))
                            .await
                            .expect("request");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task");
        }
        start.elapsed()
    });
    let done = (THROUGHPUT_REQUESTS / CONCURRENCY) * CONCURRENCY;
    println!(
        "throughput: {done} requests with {CONCURRENCY} concurrent callers in {:.2} s = {:.0} requests/s",
        elapsed.as_secs_f64(),
        done as f64 / elapsed.as_secs_f64()
    );

    let mut c = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(5));
    let mut i = 0u64;
    c.bench_function("gateway_complete_zero_latency_provider", |b| {
        b.to_async(&rt).iter(|| {
            i += 1;
            let gw = gw.clone();
            let req = request(10_000_000 + i);
            async move { gw.complete(req).await.expect("request") }
        })
    });
    c.final_summary();
}
