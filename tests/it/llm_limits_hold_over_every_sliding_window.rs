//! Limit accuracy: with ten times more demand than the limits allow for six
//! simulated minutes, the simulated provider (which counts over a sliding
//! 60 s window, like the real ones) never answers 429, no sliding 60 s
//! window carries more than the limit, and the gateway uses at least 95 %
//! of what the limits allow, in requests when requests bind and in tokens
//! when tokens bind. With batching on, a batch reaches the provider up to
//! `max_wait` after its requests were admitted; the limits still hold over
//! every sliding window of what the provider receives.

use std::sync::Arc;
use std::time::Duration;

use nexus_swarm::actors::llm::limiter::MINUTE;
use nexus_swarm::actors::llm::simulated::AcceptedCall;
use nexus_swarm::actors::llm::{
    DeploymentSpec, GatewayError, LlmRequest, ModelCatalogue, ModelSpec, RateLimits, SimulatedConfig, SimulatedProvider,
};
use nexus_swarm::actors::llm_gateway::{LlmGateway, LlmGatewayArgs, ProviderEntry};

const TIMEOUT: Duration = Duration::from_secs(30);
const RUN: Duration = Duration::from_secs(6 * 60);

/// Largest (requests, tokens) in any half-open window `[t, t + 60 s)`.
fn max_window(log: &[AcceptedCall]) -> (u64, u64) {
    let (mut best_r, mut best_t, mut sum_t, mut lo) = (0u64, 0u64, 0u64, 0usize);
    for hi in 0..log.len() {
        sum_t += log[hi].tokens;
        while log[hi].at >= log[lo].at + MINUTE {
            sum_t -= log[lo].tokens;
            lo += 1;
        }
        best_r = best_r.max((hi - lo + 1) as u64);
        best_t = best_t.max(sum_t);
    }
    (best_r, best_t)
}

/// (requests, tokens) accepted in each calendar minute of the run.
fn per_minute(log: &[AcceptedCall]) -> Vec<(u64, u64)> {
    let minutes = (RUN.as_secs() / 60) as usize;
    let mut out = vec![(0, 0); minutes];
    for c in log {
        let m = (c.at.as_secs() / 60) as usize;
        if m < minutes {
            out[m].0 += 1;
            out[m].1 += c.tokens;
        }
    }
    out
}

struct Outcome {
    log: Vec<AcceptedCall>,
    provider_429s: u64,
    submitted: u64,
}

/// Drives `rpm * 10` requests per minute of `max_tokens` output at a
/// gateway and a provider that both have limits `rpm` / `tpm`.
async fn run(rpm: u64, tpm: u64, max_tokens: u32, prompt_words: usize, batch: Option<(u32, Duration)>) -> Outcome {
    let mut sim_cfg = SimulatedConfig::instant(11).limits(Some(rpm), Some(tpm));
    sim_cfg.latency_median = Duration::from_millis(300);
    sim_cfg.record_log = true;
    let sim = SimulatedProvider::new("sim", sim_cfg);
    let catalogue = ModelCatalogue::new(vec![
        ModelSpec::new("sim-model", 128_000, 150_000, 600_000).deployment(DeploymentSpec::new("sim-model@sim", "sim")),
    ])
    .unwrap();
    let mut args = LlmGatewayArgs::new(
        catalogue,
        vec![ProviderEntry::new("sim", Arc::new(sim.clone())).limits(RateLimits::rpm_tpm(rpm, tpm))],
    );
    args.cache.enabled = false;
    args.llm.max_concurrent = 2_000;
    if let Some((max_size, max_wait)) = batch {
        args.llm.batch.enabled = true;
        args.llm.batch.max_size = max_size;
        args.llm.batch.max_wait = max_wait;
    }
    let (gw, _actor, _join) = LlmGateway::spawn_unsupervised(args).await.unwrap();

    let demand_per_sec = rpm * 10 / 60;
    let interval = Duration::from_secs(1) / demand_per_sec as u32;
    let filler = "data ".repeat(prompt_words);
    let mut tasks = Vec::new();
    let start = tokio::time::Instant::now();
    let mut i = 0u64;
    while start.elapsed() < RUN {
        let gw = gw.clone();
        let req = LlmRequest::user(format!("task {i}: {filler}"))
            .max_tokens(max_tokens)
            .timeout(TIMEOUT);
        tasks.push(tokio::spawn(async move { gw.complete(req).await }));
        i += 1;
        tokio::time::sleep(interval).await;
    }
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) | Err(GatewayError::DeadlineExceeded(_)) | Err(GatewayError::Overloaded { .. }) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    let stats = gw.stats();
    assert_eq!(stats.provider_429s, 0, "{stats:?}");
    Outcome {
        log: sim.accepted_log(),
        provider_429s: sim.counters().rate_limited,
        submitted: i,
    }
}

#[tokio::test(start_paused = true)]
async fn request_bound_load_uses_95_percent_of_rpm_without_a_429() {
    let (rpm, tpm) = (600, 60_000);
    // Short prompts and outputs: about 30 tokens a call, so requests bind.
    let out = run(rpm, tpm, 20, 2, None).await;
    assert_eq!(out.provider_429s, 0);
    assert!(out.submitted >= rpm * 10 * 6 - 10);
    let (max_r, max_t) = max_window(&out.log);
    eprintln!(
        "max sliding window: {max_r} requests, {max_t} tokens; per minute: {:?}",
        per_minute(&out.log)
    );
    assert!(max_r <= rpm, "a sliding window carried {max_r} requests > {rpm}");
    assert!(max_t <= tpm, "a sliding window carried {max_t} tokens > {tpm}");
    for (minute, (r, _)) in per_minute(&out.log).into_iter().enumerate() {
        assert!(r * 100 >= rpm * 95, "minute {minute}: {r} requests < 95 % of {rpm}");
    }
}

#[tokio::test(start_paused = true)]
async fn token_bound_load_uses_95_percent_of_tpm_without_a_429() {
    let (rpm, tpm) = (600, 30_000);
    // Up to 200 output tokens, a quarter to all of it used: tokens bind,
    // and every over-estimate is refunded on settle.
    let out = run(rpm, tpm, 200, 12, None).await;
    assert_eq!(out.provider_429s, 0);
    let (max_r, max_t) = max_window(&out.log);
    eprintln!(
        "max sliding window: {max_r} requests, {max_t} tokens; per minute: {:?}",
        per_minute(&out.log)
    );
    assert!(max_r <= rpm, "a sliding window carried {max_r} requests > {rpm}");
    assert!(max_t <= tpm, "a sliding window carried {max_t} tokens > {tpm}");
    for (minute, (_, t)) in per_minute(&out.log).into_iter().enumerate() {
        assert!(t * 100 >= tpm * 95, "minute {minute}: {t} tokens < 95 % of {tpm}");
    }
}

#[tokio::test(start_paused = true)]
async fn batched_request_bound_load_stays_within_rpm_without_a_429() {
    let (rpm, tpm) = (600, 60_000);
    let out = run(rpm, tpm, 20, 2, Some((20, Duration::from_secs(1)))).await;
    assert_eq!(out.provider_429s, 0);
    let (max_r, max_t) = max_window(&out.log);
    eprintln!(
        "max sliding window: {max_r} requests, {max_t} tokens; per minute: {:?}",
        per_minute(&out.log)
    );
    assert!(max_r <= rpm, "a sliding window carried {max_r} requests > {rpm}");
    assert!(max_t <= tpm, "a sliding window carried {max_t} tokens > {tpm}");
    // Counting over 61 s costs under 2 % of the limit.
    for (minute, (r, _)) in per_minute(&out.log).into_iter().enumerate() {
        assert!(r * 100 >= rpm * 95, "minute {minute}: {r} requests < 95 % of {rpm}");
    }
}

/// A lone request's batch waits the whole `max_wait` before it is sent; a
/// full batch admitted a minute after that request is sent at once. The
/// gateway's minute no longer holds the lone request, the provider's still
/// does: the limits must count over 60 s + `max_wait`.
#[tokio::test(start_paused = true)]
async fn a_late_batch_and_a_full_one_never_overfill_a_provider_minute() {
    let rpm = 10;
    let mut sim_cfg = SimulatedConfig::instant(5).limits(Some(rpm), None);
    sim_cfg.record_log = true;
    let sim = SimulatedProvider::new("sim", sim_cfg);
    let catalogue = ModelCatalogue::new(vec![
        ModelSpec::new("sim-model", 128_000, 150_000, 600_000).deployment(DeploymentSpec::new("sim-model@sim", "sim")),
    ])
    .unwrap();
    let limits = RateLimits {
        requests_per_minute: Some(rpm),
        ..RateLimits::unlimited()
    };
    let mut args = LlmGatewayArgs::new(
        catalogue,
        vec![ProviderEntry::new("sim", Arc::new(sim.clone())).limits(limits)],
    );
    args.cache.enabled = false;
    args.llm.burst_percent = 100;
    args.llm.batch.enabled = true;
    args.llm.batch.max_size = rpm as u32;
    args.llm.batch.max_wait = Duration::from_secs(30);
    let (gw, _actor, _join) = LlmGateway::spawn_unsupervised(args).await.unwrap();

    let ask = |text: String| {
        let gw = gw.clone();
        tokio::spawn(async move {
            gw.complete(LlmRequest::user(text).max_tokens(20).timeout(TIMEOUT * 10))
                .await
        })
    };
    let lone = ask("alone".to_string());
    tokio::time::sleep(MINUTE).await;
    let burst: Vec<_> = (0..rpm).map(|i| ask(format!("burst {i}"))).collect();
    lone.await.unwrap().unwrap();
    for b in burst {
        b.await.unwrap().unwrap();
    }
    let log = sim.accepted_log();
    assert_eq!(log.len() as u64, rpm + 1);
    let (max_r, _) = max_window(&log);
    assert!(
        max_r <= rpm,
        "a provider minute carried {max_r} requests > {rpm}: {log:?}"
    );
    assert_eq!(sim.counters().rate_limited, 0);
    assert_eq!(gw.stats().provider_429s, 0);
}
