//! [`SimulatedProvider`]: the embedded provider for examples and tests.
//!
//! It behaves like a hosted chat API, deterministically for a seed:
//!
//! - **latency** is log-normal (median and spread configurable; zero turns
//!   it off), the usual shape of API response times;
//! - **token counts**: the prompt is counted with the real tokenizer (the
//!   same count the gateway estimates); the completion length is drawn
//!   between a configurable share of `max_tokens` and `max_tokens`, from a
//!   hash of the seed and the prompt, so the same prompt gets the same
//!   answer; the content is that many single-token words;
//! - **its own limits**: requests and tokens per minute counted over a
//!   sliding 60 s window at the moment a request is received (prompt plus
//!   the completion it will produce); over a limit it answers like HTTP 429
//!   with the exact retry-after at which the request would fit;
//! - **faults**: server errors, hangs (timeouts) and garbled replies, each
//!   with a rate in permille;
//! - **a context window**: prompts plus `max_tokens` above it are refused;
//! - **tools and formats**: with tools it calls the one the tool choice
//!   asks for (the first under `auto`, unless the last turn is a tool's
//!   result) with arguments built from the tool's JSON Schema; a JSON
//!   response format gets JSON text (a value of the schema); it bills at
//!   most `max_tokens` for either;
//! - **streams**: a streamed answer comes word by word after the same
//!   latency (time to the first chunk), tool-call arguments in two pieces,
//!   then the finish reason and the usage.
//!
//! It counts every request it receives and every 429 it returns, and can
//! keep a log of accepted requests for tests that check windows.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::error::ProviderError;
use super::limiter::MINUTE;
use super::provider::{LlmProvider, ProviderResult};
use super::tokens::TokenCounter;
use super::types::{ProviderChunk, ProviderRequest, ProviderResponse, ProviderStream, RateLimitSnapshot};

mod shape;

/// Settings of a [`SimulatedProvider`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulatedConfig {
    /// Seed of every random draw. Default: 42.
    pub seed: u64,
    /// Median latency; zero answers at once. Default: 400 ms.
    #[serde(with = "humantime_serde")]
    pub latency_median: Duration,
    /// Log-normal sigma in thousandths (500 = 0.5). Default: 500.
    pub latency_sigma_milli: u32,
    /// Requests per sliding minute; `None` is unlimited. Default: none.
    pub requests_per_minute: Option<u64>,
    /// Prompt plus completion tokens per sliding minute. Default: none.
    pub tokens_per_minute: Option<u64>,
    /// Prompt plus `max_tokens` at most. Default: none (no check).
    pub context_window: Option<u64>,
    /// Completion length at least this share of `max_tokens`, in permille.
    /// Default: 250.
    pub output_min_permille: u32,
    /// Server errors (HTTP 500 alike), permille of requests. Default: 0.
    pub error_permille: u32,
    /// Hangs that never answer in time, permille. Default: 0.
    pub timeout_permille: u32,
    /// Garbled replies, permille. Default: 0.
    pub garbage_permille: u32,
    /// How long a hang lasts before it fails. Default: 10 min.
    #[serde(with = "humantime_serde")]
    pub hang: Duration,
    /// Keep a log of accepted requests (time, requests, tokens). Default: false.
    pub record_log: bool,
    /// Report what is left of its limits and when it resets on every reply
    /// (as the `x-ratelimit-*` headers do); off, replies carry no report,
    /// like a provider that sends none. Default: true.
    pub report_limits: bool,
}

impl Default for SimulatedConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            latency_median: Duration::from_millis(400),
            latency_sigma_milli: 500,
            requests_per_minute: None,
            tokens_per_minute: None,
            context_window: None,
            output_min_permille: 250,
            error_permille: 0,
            timeout_permille: 0,
            garbage_permille: 0,
            hang: Duration::from_secs(600),
            record_log: false,
            report_limits: true,
        }
    }
}

impl SimulatedConfig {
    /// Defaults with this seed and no latency.
    pub fn instant(seed: u64) -> Self {
        Self {
            seed,
            latency_median: Duration::ZERO,
            ..Self::default()
        }
    }

    /// Builder-style: its own rate limits.
    pub fn limits(mut self, rpm: Option<u64>, tpm: Option<u64>) -> Self {
        self.requests_per_minute = rpm;
        self.tokens_per_minute = tpm;
        self
    }
}

/// What a simulated provider has seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimulatedCounters {
    /// Requests received (every one, 429s included).
    pub requests: u64,
    /// 429s returned.
    pub rate_limited: u64,
    /// Successful completions.
    pub completed: u64,
    /// Faults injected (errors, hangs, garbage) and context refusals.
    pub failed: u64,
    /// Prompt tokens of accepted requests.
    pub input_tokens: u64,
    /// Completion tokens of successful requests.
    pub output_tokens: u64,
}

/// One accepted request in the log: when (since the provider was created),
/// and the tokens it counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptedCall {
    /// Time since the provider was created.
    pub at: Duration,
    /// Tokens counted against the tokens-per-minute limit.
    pub tokens: u64,
}

#[derive(Debug)]
struct Window {
    entries: VecDeque<(Instant, u64)>,
    tokens: u64,
}

#[derive(Debug)]
struct SimState {
    rng: StdRng,
    window: Window,
    log: Vec<AcceptedCall>,
}

/// A deterministic, rate-limited, fault-injecting chat provider.
#[derive(Debug, Clone)]
pub struct SimulatedProvider {
    inner: Arc<SimInner>,
}

#[derive(Debug)]
struct SimInner {
    name: String,
    config: SimulatedConfig,
    counter: TokenCounter,
    started: Instant,
    // One lock for the window and the rng: a request's admission and draws
    // happen together, which keeps them deterministic in arrival order.
    state: Mutex<SimState>,
    // Counters are read by tests and reports while requests run: atomics,
    // no ordering with other memory needed (Relaxed).
    requests: AtomicU64,
    rate_limited: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    input_tokens: AtomicU64,
    output_tokens: AtomicU64,
}

/// Single-token words the simulated completions are made of.
const WORDS: [&str; 16] = [
    " the", " data", " model", " agent", " task", " result", " shows", " that", " and", " with", " for", " is",
    " plan", " this", " on", " of",
];

struct Plan {
    delay: Duration,
    outcome: ProviderResult,
}

/// What a request is answered, before admission.
struct Completion {
    tokens: u64,
    text: String,
    tool_calls: Vec<super::types::ToolCall>,
    finish: &'static str,
}

impl SimulatedProvider {
    /// A provider named `name` with these settings.
    pub fn new(name: impl Into<String>, config: SimulatedConfig) -> Self {
        let rng = StdRng::seed_from_u64(config.seed);
        Self {
            inner: Arc::new(SimInner {
                name: name.into(),
                counter: TokenCounter::new(),
                started: Instant::now(),
                state: Mutex::new(SimState {
                    rng,
                    window: Window {
                        entries: VecDeque::new(),
                        tokens: 0,
                    },
                    log: Vec::new(),
                }),
                config,
                requests: AtomicU64::new(0),
                rate_limited: AtomicU64::new(0),
                completed: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                input_tokens: AtomicU64::new(0),
                output_tokens: AtomicU64::new(0),
            }),
        }
    }

    /// What it has seen so far.
    pub fn counters(&self) -> SimulatedCounters {
        let i = &self.inner;
        SimulatedCounters {
            requests: i.requests.load(Ordering::Relaxed),
            rate_limited: i.rate_limited.load(Ordering::Relaxed),
            completed: i.completed.load(Ordering::Relaxed),
            failed: i.failed.load(Ordering::Relaxed),
            input_tokens: i.input_tokens.load(Ordering::Relaxed),
            output_tokens: i.output_tokens.load(Ordering::Relaxed),
        }
    }

    /// The accepted calls, if `record_log` is on.
    pub fn accepted_log(&self) -> Vec<AcceptedCall> {
        self.inner.state.lock().log.clone()
    }

    /// The completion length and text for a request: a function of the
    /// seed and the request alone.
    fn completion(&self, req: &ProviderRequest) -> Completion {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.inner.config.seed.hash(&mut h);
        req.model.hash(&mut h);
        req.messages.hash(&mut h);
        req.max_tokens.hash(&mut h);
        let seed = h.finish();
        let mut rng = StdRng::seed_from_u64(seed);
        let max = u64::from(req.max_tokens).max(1);
        let min = (max * u64::from(self.inner.config.output_min_permille.min(1000)) / 1000).max(1);
        let n = rng.random_range(min..=max);
        let mut text = String::from("The");
        for _ in 1..n {
            text.push_str(WORDS[rng.random_range(0..WORDS.len())]);
        }
        let billed = |s: &str| self.inner.counter.count(s).clamp(1, max);
        if let Some(tool) = shape::tool_to_call(req) {
            let words: Vec<&str> = text.split_whitespace().collect();
            let call = shape::call(tool, seed, &words);
            return Completion {
                tokens: billed(&call.arguments),
                text: String::new(),
                tool_calls: vec![call],
                finish: "tool_calls",
            };
        }
        let (tokens, text) = match &req.response_format {
            super::types::ResponseFormat::Text => (n, text),
            format => {
                let shaped = shape::shaped(format, &text);
                (billed(&shaped), shaped)
            }
        };
        Completion {
            finish: if tokens == max { "length" } else { "stop" },
            tokens,
            text,
            tool_calls: Vec::new(),
        }
    }

    fn latency(&self, rng: &mut StdRng) -> Duration {
        let cfg = &self.inner.config;
        if cfg.latency_median.is_zero() {
            return Duration::ZERO;
        }
        // Box-Muller for a standard normal draw; floats only shape latency.
        let u1: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
        let u2: f64 = rng.random();
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        let sigma = f64::from(cfg.latency_sigma_milli) / 1000.0;
        let factor = (sigma * z).exp().min(100.0);
        cfg.latency_median.mul_f64(factor)
    }

    fn plan(&self, req: &ProviderRequest) -> Plan {
        let inner = &self.inner;
        let cfg = &inner.config;
        inner.requests.fetch_add(1, Ordering::Relaxed);
        let input = inner.counter.count_messages(&req.messages);
        if let Some(window) = cfg.context_window.filter(|w| input + u64::from(req.max_tokens) > *w) {
            inner.failed.fetch_add(1, Ordering::Relaxed);
            return Plan {
                delay: Duration::ZERO,
                outcome: Err(ProviderError::ContextWindowExceeded {
                    limit: window,
                    requested: input + u64::from(req.max_tokens),
                }),
            };
        }
        let Completion {
            tokens: output,
            text: content,
            tool_calls,
            finish,
        } = self.completion(req);
        let tokens = input + output;
        let now = Instant::now();
        let mut st = inner.state.lock();
        let w = &mut st.window;
        while let Some(&(at, t)) = w.entries.front() {
            if at + MINUTE <= now {
                w.tokens -= t;
                w.entries.pop_front();
            } else {
                break;
            }
        }
        // The earliest time this request would fit each limit.
        let mut retry_at: Option<Instant> = None;
        if let Some(rpm) = cfg.requests_per_minute.filter(|rpm| w.entries.len() as u64 >= *rpm) {
            retry_at = Some(if rpm == 0 {
                now + MINUTE
            } else {
                w.entries[w.entries.len() - rpm as usize].0 + MINUTE
            });
        }
        if let Some(tpm) = cfg.tokens_per_minute.filter(|tpm| w.tokens + tokens > *tpm) {
            let mut need = w.tokens + tokens - tpm;
            let mut at = now + MINUTE;
            for &(t_at, t) in &w.entries {
                if t >= need {
                    at = t_at + MINUTE;
                    break;
                }
                need -= t;
            }
            retry_at = Some(retry_at.map_or(at, |r| r.max(at)));
        }
        let report = cfg.report_limits;
        let snapshot = |w: &Window| {
            if !report {
                return RateLimitSnapshot::default();
            }
            RateLimitSnapshot {
                remaining_requests: cfg
                    .requests_per_minute
                    .map(|l| l.saturating_sub(w.entries.len() as u64)),
                remaining_tokens: cfg.tokens_per_minute.map(|l| l.saturating_sub(w.tokens)),
                reset_requests: w
                    .entries
                    .front()
                    .map(|(at, _)| (*at + MINUTE).saturating_duration_since(now)),
                reset_tokens: w
                    .entries
                    .front()
                    .map(|(at, _)| (*at + MINUTE).saturating_duration_since(now)),
                limit_requests: cfg.requests_per_minute,
                limit_tokens: cfg.tokens_per_minute,
            }
        };
        if let Some(at) = retry_at {
            inner.rate_limited.fetch_add(1, Ordering::Relaxed);
            return Plan {
                delay: Duration::ZERO,
                outcome: Err(ProviderError::RateLimited {
                    retry_after: Some(at.saturating_duration_since(now)),
                    snapshot: snapshot(w),
                }),
            };
        }
        w.entries.push_back((now, tokens));
        w.tokens += tokens;
        let snap = snapshot(w);
        if cfg.record_log {
            let at = now.saturating_duration_since(inner.started);
            st.log.push(AcceptedCall { at, tokens });
        }
        let delay = self.latency(&mut st.rng);
        let roll = st.rng.random_range(0..1000u32);
        drop(st);
        inner.input_tokens.fetch_add(input, Ordering::Relaxed);
        let fault = |p: u32| -> bool { roll < p };
        let outcome = if fault(cfg.error_permille) {
            Err(ProviderError::Server {
                status: 500,
                message: "simulated server error".into(),
            })
        } else if fault(cfg.error_permille + cfg.timeout_permille) {
            inner.failed.fetch_add(1, Ordering::Relaxed);
            return Plan {
                delay: cfg.hang,
                outcome: Err(ProviderError::Timeout(cfg.hang)),
            };
        } else if fault(cfg.error_permille + cfg.timeout_permille + cfg.garbage_permille) {
            Err(ProviderError::Malformed("simulated garbled reply: {\"choi".into()))
        } else {
            inner.completed.fetch_add(1, Ordering::Relaxed);
            inner.output_tokens.fetch_add(output, Ordering::Relaxed);
            return Plan {
                delay,
                outcome: Ok(ProviderResponse {
                    content,
                    input_tokens: input,
                    output_tokens: output,
                    finish_reason: finish.into(),
                    rate_limit: snap,
                    tool_calls,
                }),
            };
        };
        inner.failed.fetch_add(1, Ordering::Relaxed);
        Plan { delay, outcome }
    }
}

impl LlmProvider for SimulatedProvider {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn complete(&self, request: ProviderRequest) -> BoxFuture<'static, ProviderResult> {
        let plan = self.plan(&request);
        Box::pin(async move {
            if !plan.delay.is_zero() {
                tokio::time::sleep(plan.delay).await;
            }
            plan.outcome
        })
    }

    fn stream(&self, request: ProviderRequest) -> BoxFuture<'static, Result<ProviderStream, ProviderError>> {
        let plan = self.plan(&request);
        Box::pin(async move {
            if !plan.delay.is_zero() {
                tokio::time::sleep(plan.delay).await;
            }
            let resp = plan.outcome?;
            Ok(ProviderStream {
                rate_limit: resp.rate_limit,
                chunks: Box::pin(futures::stream::iter(pieces(resp).into_iter().map(Ok))),
            })
        })
    }

    /// A batch is admitted request by request (each counts against the
    /// limits) and answered together after the slowest draw.
    fn complete_batch(&self, requests: Vec<ProviderRequest>) -> BoxFuture<'static, Vec<ProviderResult>> {
        let plans: Vec<Plan> = requests.iter().map(|r| self.plan(r)).collect();
        Box::pin(async move {
            let delay = plans.iter().map(|p| p.delay).max().unwrap_or_default();
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            plans.into_iter().map(|p| p.outcome).collect()
        })
    }
}

/// A whole answer as stream chunks: its text word by word (each word
/// with the space before it), each tool call's arguments in two pieces,
/// the finish reason, the usage.
fn pieces(resp: ProviderResponse) -> Vec<ProviderChunk> {
    let mut out = Vec::new();
    let mut rest = resp.content.as_str();
    while !rest.is_empty() {
        // The next word ends where the one after it starts (at a space
        // after a non-space).
        let end = rest
            .char_indices()
            .skip_while(|(_, c)| c.is_whitespace())
            .find(|(_, c)| c.is_whitespace())
            .map_or(rest.len(), |(i, _)| i);
        out.push(ProviderChunk::Text(rest[..end].to_string()));
        rest = &rest[end..];
    }
    for (index, call) in (0u32..).zip(resp.tool_calls) {
        let mut half = call.arguments.len() / 2;
        while !call.arguments.is_char_boundary(half) {
            half -= 1;
        }
        let (a, b) = call.arguments.split_at(half);
        out.push(ProviderChunk::ToolCall {
            index,
            id: Some(call.id.clone()),
            name: Some(call.name.clone()),
            arguments: a.to_string(),
        });
        out.push(ProviderChunk::ToolCall {
            index,
            id: None,
            name: None,
            arguments: b.to_string(),
        });
    }
    out.push(ProviderChunk::Finish(resp.finish_reason));
    out.push(ProviderChunk::Usage {
        input_tokens: resp.input_tokens,
        output_tokens: resp.output_tokens,
    });
    out
}

#[cfg(test)]
mod tests;
