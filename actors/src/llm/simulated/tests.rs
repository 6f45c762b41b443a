use std::time::Duration;

use super::*;
use crate::llm::types::Message;

fn req(text: &str, max_tokens: u32) -> ProviderRequest {
    ProviderRequest {
        model: "sim-small".into(),
        messages: vec![Message::user(text)],
        max_tokens,
        temperature_milli: 0,
        ..ProviderRequest::default()
    }
}

#[tokio::test(start_paused = true)]
async fn same_seed_same_answers_and_token_counts_follow_the_request() {
    let a = SimulatedProvider::new("a", SimulatedConfig::instant(7));
    let b = SimulatedProvider::new("b", SimulatedConfig::instant(7));
    let ra = a.complete(req("summarise the report", 64)).await.unwrap();
    let rb = b.complete(req("summarise the report", 64)).await.unwrap();
    assert_eq!(ra, rb);
    let counter = TokenCounter::new();
    assert_eq!(
        ra.input_tokens,
        counter.count_messages(&[Message::user("summarise the report")])
    );
    assert!((16..=64).contains(&ra.output_tokens), "{}", ra.output_tokens);
    assert_eq!(counter.count(&ra.content), ra.output_tokens);
    let c = SimulatedProvider::new("c", SimulatedConfig::instant(8));
    let other: Vec<u64> = futures::future::join_all((0..8).map(|i| c.complete(req(&format!("q{i}"), 64))))
        .await
        .into_iter()
        .map(|r| r.unwrap().output_tokens)
        .collect();
    assert!(other.iter().any(|n| *n != other[0]), "lengths vary with the prompt");
}

#[tokio::test(start_paused = true)]
async fn over_its_rpm_it_answers_429_with_the_exact_retry_after() {
    let p = SimulatedProvider::new("p", SimulatedConfig::instant(1).limits(Some(3), None));
    for _ in 0..3 {
        p.complete(req("hi", 4)).await.unwrap();
        tokio::time::advance(Duration::from_secs(10)).await;
    }
    // Requests at 0, 10, 20 s; now 30 s: the first leaves the window at 60 s.
    match p.complete(req("hi", 4)).await {
        Err(ProviderError::RateLimited { retry_after, snapshot }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(30)));
            assert_eq!(snapshot.remaining_requests, Some(0));
        }
        other => panic!("expected 429, got {other:?}"),
    }
    tokio::time::advance(Duration::from_secs(30)).await;
    let ok = p.complete(req("hi", 4)).await.unwrap();
    assert_eq!(ok.rate_limit.remaining_requests, Some(0));
    let c = p.counters();
    assert_eq!((c.requests, c.rate_limited, c.completed), (5, 1, 4));
}

#[tokio::test(start_paused = true)]
async fn over_its_tpm_it_answers_429() {
    let mut cfg = SimulatedConfig::instant(1).limits(None, Some(100));
    cfg.output_min_permille = 1000;
    let p = SimulatedProvider::new("p", cfg);
    // "hello there": 2 tokens + 4 per message + 3 priming = 9; output exactly 40.
    for _ in 0..2 {
        let r = p.complete(req("hello there", 40)).await.unwrap();
        assert_eq!((r.input_tokens, r.output_tokens), (9, 40));
    }
    assert!(matches!(
        p.complete(req("hello there", 40)).await,
        Err(ProviderError::RateLimited { retry_after: Some(d), .. }) if d == MINUTE
    ));
    assert_eq!(p.counters().rate_limited, 1);
    assert_eq!(p.counters().input_tokens + p.counters().output_tokens, 98);
}

#[tokio::test(start_paused = true)]
async fn context_window_and_faults_are_typed_errors() {
    let mut cfg = SimulatedConfig::instant(3);
    cfg.context_window = Some(50);
    let p = SimulatedProvider::new("p", cfg);
    assert!(matches!(
        p.complete(req("hi", 100)).await,
        Err(ProviderError::ContextWindowExceeded { limit: 50, .. })
    ));

    let mut cfg = SimulatedConfig::instant(3);
    cfg.error_permille = 300;
    cfg.garbage_permille = 300;
    let p = SimulatedProvider::new("p", cfg);
    let (mut server, mut garbage, mut ok) = (0, 0, 0);
    for i in 0..1000 {
        match p.complete(req(&format!("q{i}"), 8)).await {
            Ok(_) => ok += 1,
            Err(ProviderError::Server { status: 500, .. }) => server += 1,
            Err(ProviderError::Malformed(_)) => garbage += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!((230..370).contains(&server), "{server}");
    assert!((230..370).contains(&garbage), "{garbage}");
    assert_eq!(ok + server + garbage, 1000);
    assert_eq!(p.counters().failed, server + garbage);
}

#[tokio::test(start_paused = true)]
async fn a_hang_lasts_until_its_timeout() {
    let mut cfg = SimulatedConfig::instant(3);
    cfg.timeout_permille = 1000;
    cfg.hang = Duration::from_secs(5);
    let p = SimulatedProvider::new("p", cfg);
    let start = Instant::now();
    assert_eq!(
        p.complete(req("x", 4)).await,
        Err(ProviderError::Timeout(Duration::from_secs(5)))
    );
    assert_eq!(start.elapsed(), Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn latency_is_log_normal_around_its_median() {
    let mut cfg = SimulatedConfig::instant(9);
    cfg.latency_median = Duration::from_millis(400);
    cfg.latency_sigma_milli = 500;
    let p = SimulatedProvider::new("p", cfg);
    let mut lat = Vec::new();
    for i in 0..400 {
        let t = Instant::now();
        p.complete(req(&format!("{i}"), 4)).await.unwrap();
        lat.push(t.elapsed());
    }
    lat.sort();
    let median = lat[200];
    assert!(
        median > Duration::from_millis(340) && median < Duration::from_millis(470),
        "{median:?}"
    );
    // Right-skewed: the p95 is much further above the median than the p5 below it.
    assert!(lat[380] - median > median - lat[20]);
}

#[tokio::test(start_paused = true)]
async fn a_batch_counts_each_request_and_answers_together() {
    let p = SimulatedProvider::new("p", SimulatedConfig::instant(2).limits(Some(2), None));
    let out = p.complete_batch(vec![req("a", 4), req("b", 4), req("c", 4)]).await;
    assert!(out[0].is_ok() && out[1].is_ok());
    assert!(matches!(out[2], Err(ProviderError::RateLimited { .. })));
    assert_eq!(p.counters().requests, 3);
}
