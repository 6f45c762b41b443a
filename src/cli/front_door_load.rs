//! `nexus front-door-load` (hidden): drives chat completions at an
//! OpenAI-compatible endpoint (`nexus serve`, another gateway, or the
//! upstream itself) and prints one JSON line ([`LoadReport`]): requests
//! sent, answers by status, successful requests per second and the latency
//! percentiles of the successful ones.
//!
//! Two shapes of load ([`LoadPlan`]):
//!
//! - closed loop (no `--rate`): `--concurrency` workers, each sending its
//!   next request as soon as the last is answered, over one kept-alive
//!   connection each, until `--duration` has passed or `--requests` were
//!   sent;
//! - open loop (`--rate N`): N requests per second are started on a fixed
//!   schedule for `--duration`, whether or not earlier ones were answered,
//!   at most `--concurrency` in flight (a request whose turn comes with all
//!   of them busy is counted in `not_sent`), then the driver waits for those
//!   in flight (each bounded by `--timeout`).
//!
//! Each request is `{"model": M, "messages": [one short user message],
//! "max_tokens": T}`. Latency is measured from just before the request is
//! written to the end of its body, in microseconds.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Highest latency the histogram records: 10 minutes (higher is clamped).
const MAX_LATENCY_US: u64 = 600_000_000;

/// When a load run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Stop starting requests once this much time has passed.
    After(Duration),
    /// Stop once this many requests were started.
    Requests(u64),
}

/// What to send, where, and how hard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadPlan {
    /// The full URL of the completions route
    /// (`http://127.0.0.1:8787/v1/chat/completions`).
    pub url: String,
    /// Sent as `Authorization: Bearer KEY` when given.
    pub key: Option<String>,
    /// The request's `model`.
    pub model: String,
    /// The request's `max_tokens`.
    pub max_tokens: u64,
    /// Workers (closed loop) or requests in flight at most (open loop); at least 1.
    pub concurrency: u64,
    /// When to stop.
    pub stop: Stop,
    /// Open loop: requests started per second; `None`: closed loop.
    pub rate: Option<u64>,
    /// Each request gives up after this long (counted in `failed`).
    pub timeout: Duration,
}

/// Latency percentiles of the successful requests, in microseconds (all 0
/// when none succeeded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyUs {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Slowest.
    pub max: u64,
}

/// What a load run measured, printed as one JSON line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadReport {
    /// Requests started.
    pub sent: u64,
    /// Answered 200.
    pub ok: u64,
    /// Answered 429.
    pub rate_limited: u64,
    /// Answered with any other status.
    pub other_status: u64,
    /// No answer: connection error or timeout.
    pub failed: u64,
    /// Open loop: turns skipped because `concurrency` requests were in flight.
    pub not_sent: u64,
    /// From the first request to the last answer, in microseconds.
    pub elapsed_us: u64,
    /// `ok` per second of `elapsed_us`, rounded down.
    pub ok_per_s: u64,
    /// Latency of the `ok` requests.
    pub latency_us: LatencyUs,
}

/// Why a load run could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// A plan field is out of range.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

#[derive(Debug, Default)]
struct Tally {
    sent: AtomicU64,
    ok: AtomicU64,
    rate_limited: AtomicU64,
    other_status: AtomicU64,
    failed: AtomicU64,
    not_sent: AtomicU64,
}

struct Sender {
    client: reqwest::Client,
    url: String,
    key: Option<String>,
    /// The request body, built once and shared by every request.
    body: axum::body::Bytes,
    tally: Tally,
}

impl Sender {
    /// Sends one request; records its outcome and, if 200, its latency.
    async fn one(&self, hist: &mut Histogram<u64>) {
        self.tally.sent.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let mut req = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(self.body.clone());
        if let Some(key) = &self.key {
            req = req.bearer_auth(key);
        }
        let outcome = match req.send().await {
            Ok(resp) => {
                let status = resp.status();
                // The whole body is read so the connection is reused.
                match resp.bytes().await {
                    Ok(_) => Some(status),
                    Err(_) => None,
                }
            }
            Err(_) => None,
        };
        let counter = match outcome {
            Some(s) if s == reqwest::StatusCode::OK => {
                let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                hist.saturating_record(us.clamp(1, MAX_LATENCY_US));
                &self.tally.ok
            }
            Some(s) if s == reqwest::StatusCode::TOO_MANY_REQUESTS => &self.tally.rate_limited,
            Some(_) => &self.tally.other_status,
            None => &self.tally.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("constant bounds: 1 us to 10 min, 3 digits")
}

impl LoadPlan {
    /// Checks the ranges a run needs.
    pub fn validate(&self) -> Result<(), LoadError> {
        let bad = |field, reason| Err(LoadError::Invalid { field, reason });
        if self.concurrency == 0 {
            return bad("concurrency", "must be at least 1");
        }
        if self.rate == Some(0) {
            return bad("rate", "must be at least 1 request per second");
        }
        match self.stop {
            Stop::After(d) if d.is_zero() => bad("duration", "must be more than 0"),
            Stop::Requests(0) => bad("requests", "must be at least 1"),
            Stop::Requests(_) if self.rate.is_some() => bad("requests", "an open loop (rate) runs for a duration"),
            _ => Ok(()),
        }
    }
}

/// Runs `plan` and reports what it measured.
pub async fn drive(plan: &LoadPlan) -> Result<LoadReport, LoadError> {
    plan.validate()?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(usize::try_from(plan.concurrency).unwrap_or(usize::MAX))
        .tcp_nodelay(true)
        .timeout(plan.timeout)
        .build()?;
    let body = serde_json::json!({
        "model": plan.model,
        "messages": [{"role": "user", "content": "Say ok."}],
        "max_tokens": plan.max_tokens,
    });
    let sender = Arc::new(Sender {
        client,
        url: plan.url.clone(),
        key: plan.key.clone(),
        body: serde_json::to_vec(&body).unwrap_or_default().into(),
        tally: Tally::default(),
    });
    let started = Instant::now();
    let hist = match plan.rate {
        None => closed_loop(plan, &sender, started).await,
        Some(rate) => open_loop(plan, rate, &sender, started).await,
    };
    let elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX).max(1);
    let t = &sender.tally;
    let ok = t.ok.load(Ordering::Relaxed);
    let latency_us = if hist.is_empty() {
        LatencyUs::default()
    } else {
        LatencyUs {
            p50: hist.value_at_quantile(0.50),
            p90: hist.value_at_quantile(0.90),
            p99: hist.value_at_quantile(0.99),
            max: hist.max(),
        }
    };
    Ok(LoadReport {
        sent: t.sent.load(Ordering::Relaxed),
        ok,
        rate_limited: t.rate_limited.load(Ordering::Relaxed),
        other_status: t.other_status.load(Ordering::Relaxed),
        failed: t.failed.load(Ordering::Relaxed),
        not_sent: t.not_sent.load(Ordering::Relaxed),
        elapsed_us,
        ok_per_s: u64::try_from(u128::from(ok) * 1_000_000 / u128::from(elapsed_us)).unwrap_or(u64::MAX),
        latency_us,
    })
}

async fn closed_loop(plan: &LoadPlan, sender: &Arc<Sender>, started: Instant) -> Histogram<u64> {
    // Requests still to start, for `Stop::Requests`; one shared counter so
    // that exactly that many are sent whatever the workers' speeds.
    let remaining = Arc::new(AtomicU64::new(match plan.stop {
        Stop::Requests(n) => n,
        Stop::After(_) => u64::MAX,
    }));
    let deadline = match plan.stop {
        Stop::After(d) => Some(started + d),
        Stop::Requests(_) => None,
    };
    let mut workers = JoinSet::new();
    for _ in 0..plan.concurrency {
        let sender = sender.clone();
        let remaining = remaining.clone();
        workers.spawn(async move {
            let mut hist = histogram();
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let took = remaining.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
                if took.is_err() {
                    break;
                }
                sender.one(&mut hist).await;
            }
            hist
        });
    }
    let mut all = histogram();
    while let Some(done) = workers.join_next().await {
        if let Ok(h) = done {
            // Both histograms have the same bounds, so adding cannot fail.
            let _ = all.add(h);
        }
    }
    all
}

async fn open_loop(plan: &LoadPlan, rate: u64, sender: &Arc<Sender>, started: Instant) -> Histogram<u64> {
    let duration = match plan.stop {
        Stop::After(d) => d,
        // Refused by `validate`.
        Stop::Requests(_) => Duration::ZERO,
    };
    let in_flight = Arc::new(Semaphore::new(
        usize::try_from(plan.concurrency)
            .unwrap_or(Semaphore::MAX_PERMITS)
            .min(Semaphore::MAX_PERMITS),
    ));
    // Shared by the request tasks: each records once, at its end.
    let hist = Arc::new(Mutex::new(histogram()));
    let mut tasks = JoinSet::new();
    let mut turn: u64 = 0;
    loop {
        // Turn n starts n / rate seconds after the start.
        let at = Duration::from_nanos(
            u64::try_from(u128::from(turn) * 1_000_000_000 / u128::from(rate)).unwrap_or(u64::MAX),
        );
        if at >= duration {
            break;
        }
        tokio::time::sleep_until((started + at).into()).await;
        turn += 1;
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            sender.tally.not_sent.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let sender = sender.clone();
        let hist = hist.clone();
        tasks.spawn(async move {
            let mut own = histogram();
            sender.one(&mut own).await;
            let _ = hist.lock().add(own);
            drop(permit);
        });
    }
    while tasks.join_next().await.is_some() {}
    hist.lock().clone()
}

/// `nexus front-door-load ...`
#[derive(Debug, Args)]
pub struct FrontDoorLoadArgs {
    /// The completions URL (`http://HOST:PORT/v1/chat/completions`).
    #[arg(long)]
    pub url: String,
    /// The API key, sent as a bearer token (default: none).
    #[arg(long)]
    pub key: Option<String>,
    /// The request's `model`.
    #[arg(long)]
    pub model: String,
    /// The request's `max_tokens`.
    #[arg(long, default_value_t = 10)]
    pub max_tokens: u64,
    /// Workers (closed loop), or requests in flight at most (open loop).
    #[arg(long, default_value_t = 1)]
    pub concurrency: u64,
    /// How long to start requests for (e.g. `10s`).
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "requests")]
    pub duration: Option<Duration>,
    /// Closed loop only: stop after this many requests.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Open loop: requests started per second.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Each request gives up after this long.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    pub timeout: Duration,
}

/// Runs the load and prints its [`LoadReport`] as one JSON line.
pub fn run(args: FrontDoorLoadArgs) -> anyhow::Result<ExitCode> {
    let stop = match (args.duration, args.requests) {
        (Some(d), None) => Stop::After(d),
        (None, Some(n)) => Stop::Requests(n),
        _ => anyhow::bail!("give --duration or --requests"),
    };
    let plan = LoadPlan {
        url: args.url,
        key: args.key,
        model: args.model,
        max_tokens: args.max_tokens,
        concurrency: args.concurrency,
        stop,
        rate: args.rate,
        timeout: args.timeout,
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let report = rt.block_on(drive(&plan))?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(ExitCode::SUCCESS)
}
