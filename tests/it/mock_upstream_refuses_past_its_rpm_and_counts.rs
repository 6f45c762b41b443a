//! The benchmark's mock upstream (`nexus mock-upstream`) answers at once
//! with fixed usage, refuses with 429 past its rpm limit, and counts both;
//! the load driver (`nexus front-door-load`) reports the same counts as the
//! mock saw, in closed and open loop.

#![allow(missing_docs)]

use std::time::Duration;

use nexus_swarm::cli::front_door_load::{LoadError, LoadPlan, Stop, drive};
use nexus_swarm::cli::mock_upstream::{MockOptions, MockStats, MockUpstream, ResetRequest};
use serde_json::{Value, json};

use crate::support::agents::TIMEOUT;

fn plan(addr: std::net::SocketAddr, concurrency: u64, stop: Stop) -> LoadPlan {
    LoadPlan {
        url: format!("http://{addr}/v1/chat/completions"),
        key: Some("sk-anything".into()),
        model: "m".into(),
        max_tokens: 10,
        concurrency,
        stop,
        rate: None,
        timeout: TIMEOUT,
    }
}

async fn stats(http: &reqwest::Client, addr: std::net::SocketAddr) -> MockStats {
    http.get(format!("http://{addr}/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn reset(http: &reqwest::Client, addr: std::net::SocketAddr, rpm: Option<u64>) {
    let resp = http
        .post(format!("http://{addr}/reset"))
        .json(&ResetRequest {
            requests_per_minute: rpm,
        })
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn the_mock_serves_its_limit_per_minute_then_answers_429_and_counts_both() {
    let options = MockOptions {
        requests_per_minute: Some(5),
        ..MockOptions::default()
    };
    let mock = MockUpstream::bind("127.0.0.1:0".parse().unwrap(), options)
        .await
        .unwrap();
    let addr = mock.local_addr();
    let http = reqwest::Client::builder().timeout(TIMEOUT).build().unwrap();

    // One answer, as a client sees it: fixed usage, the request's model.
    let resp = http
        .post(format!("http://{addr}/v1/chat/completions"))
        .json(&json!({"model": "gpt-x", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["model"], "gpt-x");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["usage"]["prompt_tokens"], 10);
    assert_eq!(body["usage"]["completion_tokens"], 10);
    assert_eq!(body["usage"]["total_tokens"], 20);

    // Eleven more from two workers: four fit the minute, seven are refused.
    let report = drive(&plan(addr, 2, Stop::Requests(11))).await.unwrap();
    assert_eq!(report.sent, 11);
    assert_eq!(report.ok, 4, "{report:?}");
    assert_eq!(report.rate_limited, 7, "{report:?}");
    assert_eq!(report.failed + report.other_status, 0, "{report:?}");
    assert!(report.latency_us.p50 > 0 && report.latency_us.p50 <= report.latency_us.p99);
    assert!(report.latency_us.p99 <= report.latency_us.max);
    let seen = stats(&http, addr).await;
    assert_eq!(
        seen,
        MockStats {
            served: 5,
            rate_limited: 7,
            requests_per_minute: Some(5)
        }
    );

    // A refusal says when to come back, in OpenAI's error shape.
    let refused = http
        .post(format!("http://{addr}/v1/chat/completions"))
        .json(&json!({"model": "gpt-x", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    let wait: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "retry-after {wait}");
    let err: Value = refused.json().await.unwrap();
    assert_eq!(err["error"]["code"], "rate_limit_exceeded");

    // Reset without a limit: counters zeroed, everything served, and the
    // driver's count matches the mock's.
    reset(&http, addr, None).await;
    let report = drive(&plan(addr, 4, Stop::After(Duration::from_millis(300))))
        .await
        .unwrap();
    assert!(report.ok > 4, "{report:?}");
    assert_eq!(report.ok, report.sent);
    assert!(report.ok_per_s > 0);
    let seen = stats(&http, addr).await;
    assert_eq!(seen.served, report.ok);
    assert_eq!(seen.rate_limited, 0);
    assert_eq!(seen.requests_per_minute, None);

    // Open loop: 40 requests per second for half a second offer 20, of
    // which the new limit of 3 serves 3.
    reset(&http, addr, Some(3)).await;
    let open = LoadPlan {
        rate: Some(40),
        ..plan(addr, 100, Stop::After(Duration::from_millis(500)))
    };
    let report = drive(&open).await.unwrap();
    assert_eq!(report.sent + report.not_sent, 20, "{report:?}");
    assert_eq!(report.not_sent, 0, "{report:?}");
    assert_eq!(report.ok, 3, "{report:?}");
    assert_eq!(report.rate_limited, 17, "{report:?}");
    let seen = stats(&http, addr).await;
    assert_eq!((seen.served, seen.rate_limited), (3, 17));

    mock.stop().await.unwrap();
}

#[tokio::test]
async fn a_plan_out_of_range_is_refused_naming_its_field() {
    let addr = "127.0.0.1:9".parse().unwrap();
    let cases = [
        (plan(addr, 0, Stop::Requests(1)), "concurrency"),
        (plan(addr, 1, Stop::Requests(0)), "requests"),
        (plan(addr, 1, Stop::After(Duration::ZERO)), "duration"),
        (
            LoadPlan {
                rate: Some(0),
                ..plan(addr, 1, Stop::After(Duration::from_secs(1)))
            },
            "rate",
        ),
        (
            LoadPlan {
                rate: Some(5),
                ..plan(addr, 1, Stop::Requests(3))
            },
            "requests",
        ),
    ];
    for (p, field) in cases {
        match drive(&p).await {
            Err(LoadError::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
}
