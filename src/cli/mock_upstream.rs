//! `nexus mock-upstream` (hidden): a local OpenAI-compatible upstream for
//! benchmarks of the front door against other gateways. It answers
//! `POST /v1/chat/completions` at once with a fixed completion and fixed
//! usage ([`MockOptions::prompt_tokens`], [`MockOptions::completion_tokens`]),
//! holds itself to an optional requests-per-minute limit over a sliding
//! minute ([`RpmWindow`]) answering 429 past it, and counts what it served
//! and what it refused.
//!
//! # Routes
//!
//! - `POST /v1/chat/completions` (and `/chat/completions`): 200 with a
//!   `chat.completion` naming the request's `model`, or 429 with an
//!   OpenAI-shaped `rate_limit_exceeded` error and `retry-after` (whole
//!   seconds until the oldest request leaves the window).
//! - `GET /stats`: `{"served": N, "rate_limited": N, "requests_per_minute": R|null}`.
//! - `POST /reset` with `{"requests_per_minute": R|null}`: zeroes both
//!   counters, empties the window and sets the limit (absent or null: none).
//!
//! The rpm decision is plain synchronous code driven by an explicit clock
//! ([`RpmWindow::admit`]), unit-tested without a server; the server is a
//! thin axum shell around it, tested over HTTP in
//! `tests/it/mock_upstream_refuses_past_its_rpm_and_counts.rs`.

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Args;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The length of the rpm window: one minute.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Requests per sliding minute, decided from the arrival times of the
/// requests admitted in the last minute. `limit: None` admits everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpmWindow {
    limit: Option<u64>,
    /// Arrival times (since the mock's epoch) of the admitted requests
    /// younger than [`WINDOW`], oldest first; at most `limit` of them.
    admitted: VecDeque<Duration>,
}

impl RpmWindow {
    /// A window admitting at most `limit` requests in any minute
    /// (`None`: no limit; `Some(0)` refuses everything).
    pub fn new(limit: Option<u64>) -> Self {
        Self {
            limit,
            admitted: VecDeque::new(),
        }
    }

    /// The limit.
    pub fn limit(&self) -> Option<u64> {
        self.limit
    }

    /// Admits a request arriving at `now` (time since the mock's epoch,
    /// never decreasing between calls) if fewer than the limit were
    /// admitted in the minute before it: `Ok(())`, or `Err(wait)` with the
    /// time until the oldest admitted request leaves the window.
    pub fn admit(&mut self, now: Duration) -> Result<(), Duration> {
        let Some(limit) = self.limit else {
            return Ok(());
        };
        while let Some(&oldest) = self.admitted.front() {
            if now.saturating_sub(oldest) >= WINDOW {
                self.admitted.pop_front();
            } else {
                break;
            }
        }
        if (self.admitted.len() as u64) < limit {
            self.admitted.push_back(now);
            return Ok(());
        }
        let wait = self
            .admitted
            .front()
            .map_or(WINDOW, |&oldest| (oldest + WINDOW).saturating_sub(now));
        Err(wait)
    }
}

/// What the mock answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MockOptions {
    /// Requests per sliding minute before 429. Default: none.
    pub requests_per_minute: Option<u64>,
    /// `usage.prompt_tokens` of every answer. Default: 10, what OpenAI's
    /// formula counts for `nexus front-door-load`'s one short message
    /// (3 tokens of text, 4 per message, 3 for the reply's priming).
    pub prompt_tokens: u64,
    /// `usage.completion_tokens` of every answer. Default: 10.
    pub completion_tokens: u64,
}

impl Default for MockOptions {
    fn default() -> Self {
        Self {
            requests_per_minute: None,
            prompt_tokens: 10,
            completion_tokens: 10,
        }
    }
}

/// The counters `GET /stats` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MockStats {
    /// Completions answered with 200 since the start or the last reset.
    pub served: u64,
    /// Requests answered with 429.
    pub rate_limited: u64,
    /// The limit in force.
    pub requests_per_minute: Option<u64>,
}

/// The body of `POST /reset`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetRequest {
    /// The new limit; absent or null: none.
    #[serde(default)]
    pub requests_per_minute: Option<u64>,
}

#[derive(Debug)]
struct Mock {
    epoch: Instant,
    /// A plain mutex: the decision is a few instructions on one deque, and
    /// every request must see the arrivals before it, so the window and its
    /// limit change together.
    window: Mutex<RpmWindow>,
    served: AtomicU64,
    rate_limited: AtomicU64,
    next_id: AtomicU64,
    prompt_tokens: u64,
    completion_tokens: u64,
}

#[derive(Debug, Deserialize)]
struct ChatRequest {
    #[serde(default)]
    model: String,
}

async fn chat(State(mock): State<Arc<Mock>>, body: axum::body::Bytes) -> Response {
    let now = mock.epoch.elapsed();
    let decision = mock.window.lock().admit(now);
    if let Err(wait) = decision {
        mock.rate_limited.fetch_add(1, Ordering::Relaxed);
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut resp = (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({"error": {
                "message": "Rate limit reached for requests",
                "type": "requests",
                "param": null,
                "code": "rate_limit_exceeded"
            }})),
        )
            .into_response();
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        return resp;
    }
    let model = serde_json::from_slice::<ChatRequest>(&body)
        .map(|r| r.model)
        .unwrap_or_default();
    mock.served.fetch_add(1, Ordering::Relaxed);
    let id = mock.next_id.fetch_add(1, Ordering::Relaxed);
    let (p, c) = (mock.prompt_tokens, mock.completion_tokens);
    Json(json!({
        "id": format!("chatcmpl-mock-{id}"),
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
    }))
    .into_response()
}

async fn stats(State(mock): State<Arc<Mock>>) -> Json<MockStats> {
    Json(MockStats {
        served: mock.served.load(Ordering::Relaxed),
        rate_limited: mock.rate_limited.load(Ordering::Relaxed),
        requests_per_minute: mock.window.lock().limit(),
    })
}

async fn reset(State(mock): State<Arc<Mock>>, Json(req): Json<ResetRequest>) -> Json<MockStats> {
    let mut window = mock.window.lock();
    *window = RpmWindow::new(req.requests_per_minute);
    mock.served.store(0, Ordering::Relaxed);
    mock.rate_limited.store(0, Ordering::Relaxed);
    Json(MockStats {
        served: 0,
        rate_limited: 0,
        requests_per_minute: window.limit(),
    })
}

/// A running mock upstream; [`MockUpstream::stop`] stops it.
#[derive(Debug)]
pub struct MockUpstream {
    server: crate::serve::task::ServerTask,
}

impl MockUpstream {
    /// Binds `addr` (port 0 picks a free one) and serves.
    pub async fn bind(addr: SocketAddr, options: MockOptions) -> std::io::Result<Self> {
        let mock = Arc::new(Mock {
            epoch: Instant::now(),
            window: Mutex::new(RpmWindow::new(options.requests_per_minute)),
            served: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            next_id: AtomicU64::new(0),
            prompt_tokens: options.prompt_tokens,
            completion_tokens: options.completion_tokens,
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/chat/completions", post(chat))
            .route("/stats", get(stats))
            .route("/reset", post(reset))
            .with_state(mock);
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        Ok(Self {
            server: crate::serve::task::ServerTask::spawn(listener, addr, app),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Stops accepting, lets requests under way finish, and returns.
    pub async fn stop(self) -> std::io::Result<()> {
        self.server.stop().await
    }
}

/// `nexus mock-upstream ...`
#[derive(Debug, Args)]
pub struct MockUpstreamArgs {
    /// Where to listen (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Requests per sliding minute before it answers 429 (default: no limit;
    /// `POST /reset` changes it).
    #[arg(long)]
    pub rpm: Option<u64>,
    /// `usage.prompt_tokens` of every answer.
    #[arg(long, default_value_t = 10)]
    pub prompt_tokens: u64,
    /// `usage.completion_tokens` of every answer.
    #[arg(long, default_value_t = 10)]
    pub completion_tokens: u64,
}

/// Serves until SIGINT or SIGTERM, printing
/// `mock-upstream: listening on http://ADDR` once bound.
pub fn run(args: MockUpstreamArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let options = MockOptions {
            requests_per_minute: args.rpm,
            prompt_tokens: args.prompt_tokens,
            completion_tokens: args.completion_tokens,
        };
        let server = MockUpstream::bind(args.listen, options).await?;
        println!("mock-upstream: listening on http://{}", server.local_addr());
        std::io::stdout().flush()?;
        crate::serve::interrupted().await;
        server.stop().await?;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
