use std::time::Duration;

use nexus_swarm_runtime::config::LlmConfig;
use reqwest::header::{HeaderMap, HeaderValue};

use super::*;

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, HeaderValue::from_static(v));
    }
    h
}

#[test]
fn reset_times_in_openai_form_parse() {
    assert_eq!(parse_reset("6m0s"), Some(Duration::from_secs(360)));
    assert_eq!(parse_reset("1.5s"), Some(Duration::from_millis(1500)));
    assert_eq!(parse_reset("20ms"), Some(Duration::from_millis(20)));
    assert_eq!(parse_reset("1h2m3s"), Some(Duration::from_secs(3723)));
    assert_eq!(parse_reset("7"), Some(Duration::from_secs(7)));
    for bad in ["", "abc", "5x", "s", "-3", "1e400"] {
        assert_eq!(parse_reset(bad), None, "{bad}");
    }
}

#[test]
fn rate_limit_headers_parse_and_bad_values_are_ignored() {
    let h = headers(&[
        ("x-ratelimit-limit-requests", "3500"),
        ("x-ratelimit-remaining-requests", "3499"),
        ("x-ratelimit-remaining-tokens", "89000"),
        ("x-ratelimit-reset-requests", "17ms"),
        ("x-ratelimit-reset-tokens", "not-a-time"),
        ("x-ratelimit-limit-tokens", "-5"),
    ]);
    let s = parse_rate_limit_headers(&h);
    assert_eq!(s.limit_requests, Some(3500));
    assert_eq!(s.remaining_requests, Some(3499));
    assert_eq!(s.remaining_tokens, Some(89_000));
    assert_eq!(s.reset_requests, Some(Duration::from_millis(17)));
    assert_eq!(s.reset_tokens, None);
    assert_eq!(s.limit_tokens, None);
}

#[test]
fn retry_after_prefers_milliseconds_and_refuses_nonsense() {
    assert_eq!(
        retry_after(&headers(&[("retry-after", "2"), ("retry-after-ms", "1500")])),
        Some(Duration::from_millis(1500))
    );
    assert_eq!(
        retry_after(&headers(&[("retry-after", "3")])),
        Some(Duration::from_secs(3))
    );
    assert_eq!(
        retry_after(&headers(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")])),
        None
    );
    assert_eq!(retry_after(&headers(&[("retry-after", "-1")])), None);
}

#[test]
fn statuses_map_to_typed_errors() {
    let none = RateLimitSnapshot::default();
    let h = HeaderMap::new();
    assert!(matches!(
        status_error(429, &headers(&[("retry-after", "1")]), b"", none),
        ProviderError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(1)
    ));
    let reset = RateLimitSnapshot {
        remaining_tokens: Some(0),
        reset_tokens: Some(Duration::from_secs(4)),
        ..RateLimitSnapshot::default()
    };
    assert!(matches!(
        status_error(429, &h, b"", reset),
        ProviderError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(4)
    ));
    assert_eq!(status_error(401, &h, b"", none), ProviderError::Auth { status: 401 });
    let ctx = br#"{"error":{"message":"This model's maximum context length is 8192 tokens","code":"context_length_exceeded"}}"#;
    assert!(matches!(
        status_error(400, &h, ctx, none),
        ProviderError::ContextWindowExceeded { .. }
    ));
    assert!(matches!(
        status_error(503, &h, b"<html>down</html>", none),
        ProviderError::Server { status: 503, .. }
    ));
    assert!(matches!(
        status_error(404, &h, &[0xff, 0xfe], none),
        ProviderError::Rejected { status: 404, .. }
    ));
    let long = vec![b'x'; 10_000];
    match status_error(500, &h, &long, none) {
        ProviderError::Server { message, .. } => assert!(message.len() < 300),
        other => panic!("{other:?}"),
    }
}

#[test]
fn completions_parse_and_malformed_bodies_are_typed_errors() {
    let ok = br#"{"choices":[{"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],
                 "usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}"#;
    let r = parse_completion(ok, RateLimitSnapshot::default()).unwrap();
    assert_eq!((r.content.as_str(), r.input_tokens, r.output_tokens), ("hi", 12, 3));
    for bad in [
        &b"not json"[..],
        br#"{"choices":[]}"#,
        br#"{"choices":[{"message":{}}],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#,
        br#"{"choices":[{"message":{"content":"x"}}]}"#,
        br#"{"choices":[{"message":{"content":"x"}}],"usage":{"prompt_tokens":-1,"completion_tokens":1}}"#,
        br#"[1,2,3]"#,
        b"",
    ] {
        assert!(
            matches!(
                parse_completion(bad, RateLimitSnapshot::default()),
                Err(ProviderError::Malformed(_))
            ),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn misconfiguration_is_a_typed_error() {
    let pool = HttpPool::new(&LlmConfig::default()).unwrap();
    let missing = OpenAiConfig::new("http://127.0.0.1:1/v1").api_key_env("NEXUS_TEST_SURELY_UNSET_KEY");
    assert!(matches!(
        OpenAiCompatible::with_env("p", &missing, &pool, |_| None),
        Err(ProviderError::MissingKey { var }) if var == "NEXUS_TEST_SURELY_UNSET_KEY"
    ));
    assert!(matches!(
        OpenAiCompatible::new("p", &OpenAiConfig::new("ftp://x"), &pool),
        Err(ProviderError::BadBaseUrl { reason: None, .. })
    ));
    assert!(matches!(
        OpenAiCompatible::new("p", &OpenAiConfig::new("not a url"), &pool),
        Err(ProviderError::BadBaseUrl { reason: Some(_), .. })
    ));
    let with_key = OpenAiCompatible::with_env("p", &missing, &pool, |_| Some("sk-test-secret".into())).unwrap();
    assert_eq!(with_key.name(), "p");
    let printed = format!("{with_key:?}");
    assert!(
        !printed.contains("sk-test-secret"),
        "the key stays out of logs: {printed}"
    );
    assert!(printed.contains("(set)"));
}
