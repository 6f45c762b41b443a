use std::time::Duration;

use super::*;
use crate::llm::simulated::{SimulatedConfig, SimulatedProvider};
use crate::llm::types::Message;

fn req(i: usize) -> ProviderRequest {
    ProviderRequest {
        model: "m".into(),
        messages: vec![Message::user(format!("q{i}"))],
        max_tokens: 8,
        temperature_milli: 0,
        ..ProviderRequest::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_full_batch_goes_at_once_and_a_partial_one_after_max_wait() {
    let mut cfg = SimulatedConfig::instant(1);
    cfg.latency_median = Duration::from_millis(100);
    cfg.latency_sigma_milli = 0;
    let sim = SimulatedProvider::new("sim", cfg);
    let provider: Arc<dyn LlmProvider> = Arc::new(sim.clone());
    let b = Batcher::new(4, Duration::from_millis(50));
    let start = tokio::time::Instant::now();
    let full = futures::future::join_all((0..4).map(|i| b.submit(0, Arc::clone(&provider), req(i)))).await;
    assert!(full.iter().all(Result::is_ok));
    // One latency draw for the whole batch, no waiting for more.
    assert_eq!(start.elapsed(), Duration::from_millis(100));

    let start = tokio::time::Instant::now();
    let partial = futures::future::join_all((0..2).map(|i| b.submit(0, Arc::clone(&provider), req(10 + i)))).await;
    assert!(partial.iter().all(Result::is_ok));
    assert_eq!(start.elapsed(), Duration::from_millis(150));
    assert_eq!(sim.counters().requests, 6);
}
