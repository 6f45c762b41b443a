//! [`AnthropicMessages`]: Anthropic's Messages API over HTTP
//! (`POST {base_url}/messages`, `base_url` such as
//! `https://api.anthropic.com/v1`).
//!
//! # Request
//!
//! Headers `x-api-key` (read from the environment variable the config
//! names; none sends no key, for local proxies), `anthropic-version:
//! 2023-06-01` and `content-type: application/json`. The body:
//!
//! - `system`: the system messages' text, joined by blank lines, wherever
//!   they stand in the conversation (the API has no system turns).
//! - `messages`: user and assistant turns. An assistant turn's tool calls
//!   are `tool_use` blocks whose `input` is the call's arguments parsed
//!   (empty arguments are `{}`; arguments that are not a JSON object are
//!   [`ProviderError::InvalidRequest`], and nothing is sent). A
//!   [`Role::Tool`](super::types::Role::Tool) result is a `tool_result`
//!   block in a user turn (one naming no call is `InvalidRequest`).
//!   Consecutive messages of the same side join one turn, since the API
//!   wants the turns to alternate: consecutive tool results make one user
//!   turn, and a user message right after them joins it, after the results
//!   (the API wants tool results first). Empty text blocks are dropped.
//! - `max_tokens` (the API requires it) and `temperature`, **clamped** to
//!   Anthropic's range of 0 to 1: a request written for OpenAI's 0 to 2
//!   (one that falls back from an OpenAI model, say) is sent at 1.0
//!   rather than refused.
//! - `tools` as `{name, description, input_schema}`, and `tool_choice`
//!   (only with tools): auto → `{"type": "auto"}`, required → `any`, none
//!   → `none`, a named tool → `{"type": "tool", "name": ...}`.
//! - Response formats: the Messages API has no JSON mode. A JSON object or
//!   JSON schema format is asked for in words, as a last paragraph of
//!   `system` ("Answer with a single JSON object and nothing else", with
//!   the schema written out); the answer is **not** checked against it, so
//!   a caller that needs valid JSON still parses and validates it.
//!
//! # Reply
//!
//! Text blocks are joined into the content; `tool_use` blocks become tool
//! calls (`input` serialised as the arguments); other blocks (`thinking`)
//! are skipped. `stop_reason` `end_turn` and `stop_sequence` are `stop`,
//! `max_tokens` is `length`, `tool_use` is `tool_calls`, `refusal` is
//! `content_filter`. Prompt tokens are `input_tokens` plus any prompt-cache
//! tokens the reply reports. A streamed reply (`stream: true`) is read as
//! its server-sent events arrive (the table in the `stream` module).
//!
//! # Rate limits and errors
//!
//! Every reply's `anthropic-ratelimit-requests-{limit,remaining,reset}` and
//! `anthropic-ratelimit-tokens-*` headers (else the tighter of the
//! `input-tokens-*` and `output-tokens-*` ones, by what remains) are read
//! into the same [`RateLimitSnapshot`] as OpenAI's, the resets (RFC 3339
//! instants) as the time from now (0 if past), so the gateway holds the
//! deployment and its provider until a reported reset
//! ([`learned`](super::learned)). On 429 the retry-after is `retry-after`
//! (seconds), else the reset of the exhausted window. Statuses: 429 rate
//! limited; 529 (overloaded) and other 5xx server errors (retried, and
//! counted towards the deployment's cooldown, so a fallback serves);
//! 401/403 auth; a 400 `invalid_request_error` saying "prompt is too long"
//! [`ProviderError::ContextWindowExceeded`] (with its figures); other 4xx
//! rejected. An `error` event in a stream is typed by its error type the
//! same way. Nothing a server sends makes it panic.

use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};

use super::error::ProviderError;
use super::http::{Endpoint, HttpPool, Permits, header_str, header_u64, retry_after, transport_error, truncate};
use super::provider::{LlmProvider, ProviderResult};
use super::sse;
use super::types::{ProviderRequest, ProviderResponse, ProviderStream, RateLimitSnapshot};

mod stream;
mod wire;

/// The API version sent as `anthropic-version`.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Settings of one Anthropic Messages endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnthropicConfig {
    /// The API root, e.g. `https://api.anthropic.com/v1`.
    pub base_url: String,
    /// The environment variable holding the API key (e.g.
    /// `ANTHROPIC_API_KEY`); none sends no key. Default: none.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Whole-request timeout of a call that is not streamed. Default: 60 s
    /// (seed; `llm.timeout`).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(60)
}

impl AnthropicConfig {
    /// An endpoint at `base_url` with the default timeout and no key.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key_env: None,
            timeout: default_timeout(),
        }
    }

    /// Builder-style: the key's environment variable.
    pub fn api_key_env(mut self, var: impl Into<String>) -> Self {
        self.api_key_env = Some(var.into());
        self
    }

    /// Builder-style: the request timeout.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }
}

/// An Anthropic Messages API provider.
#[derive(Debug, Clone)]
pub struct AnthropicMessages {
    endpoint: Endpoint,
}

impl AnthropicMessages {
    /// A provider named `name` for the endpoint, with the key read from the
    /// process environment.
    pub fn new(name: impl Into<String>, config: &AnthropicConfig, pool: &HttpPool) -> Result<Self, ProviderError> {
        Self::with_env(name, config, pool, |var| std::env::var(var).ok())
    }

    /// As [`Self::new`], reading the key's variable through `env`.
    pub fn with_env(
        name: impl Into<String>,
        config: &AnthropicConfig,
        pool: &HttpPool,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ProviderError> {
        Ok(Self {
            endpoint: Endpoint::new(
                name.into(),
                &config.base_url,
                "messages",
                config.api_key_env.as_ref(),
                config.timeout,
                pool,
                env,
            )?,
        })
    }

    /// Sends `request` (streamed or not) and answers with the reply once
    /// its status is known: a 2xx reply with its rate-limit report, every
    /// other status as its typed error. The permits come back with the
    /// reply, to be held while its body is read.
    async fn send(
        &self,
        request: &ProviderRequest,
        stream: bool,
    ) -> Result<(reqwest::Response, RateLimitSnapshot, Permits), ProviderError> {
        // Written before a permit is taken: a request that cannot be
        // written waits for nothing.
        let body = wire::request_body(request, stream)?;
        let permits = self.endpoint.acquire().await?;
        let mut builder = self
            .endpoint
            .pool
            .client
            .post(self.endpoint.url.clone())
            .header("anthropic-version", ANTHROPIC_VERSION)
            .json(&body);
        // A stream is bounded between chunks by the gateway, not as a whole.
        if !stream {
            builder = builder.timeout(self.endpoint.timeout);
        }
        if let Some(key) = &self.endpoint.api_key {
            builder = builder.header("x-api-key", key);
        }
        let response = builder
            .send()
            .await
            .map_err(|e| transport_error(e, self.endpoint.timeout))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let snapshot = parse_rate_limit_headers(&headers, SystemTime::now());
        if (200..300).contains(&status) {
            return Ok((response, snapshot, permits));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| transport_error(e, self.endpoint.timeout))?;
        Err(status_error(status, &headers, &bytes, snapshot))
    }

    async fn call(self, request: ProviderRequest) -> ProviderResult {
        let (response, rate_limit, permits) = self.send(&request, false).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| transport_error(e, self.endpoint.timeout))?;
        drop(permits);
        let reply = wire::parse_message(&bytes)?;
        Ok(ProviderResponse {
            content: reply.content,
            input_tokens: reply.input_tokens,
            output_tokens: reply.output_tokens,
            finish_reason: reply.finish_reason,
            rate_limit,
            tool_calls: reply.tool_calls,
        })
    }

    async fn open_stream(self, request: ProviderRequest) -> Result<ProviderStream, ProviderError> {
        let (response, rate_limit, permits) = self.send(&request, true).await?;
        Ok(ProviderStream {
            rate_limit,
            chunks: sse::read_events(
                response,
                permits,
                self.endpoint.timeout,
                stream::AnthropicEvents::default(),
            ),
        })
    }
}

impl LlmProvider for AnthropicMessages {
    fn name(&self) -> &str {
        &self.endpoint.name
    }

    fn complete(&self, request: ProviderRequest) -> BoxFuture<'static, ProviderResult> {
        Box::pin(self.clone().call(request))
    }

    fn stream(&self, request: ProviderRequest) -> BoxFuture<'static, Result<ProviderStream, ProviderError>> {
        Box::pin(self.clone().open_stream(request))
    }
}

/// Maps a non-2xx reply to its typed error (see the module documentation).
pub fn status_error(status: u16, headers: &HeaderMap, body: &[u8], snapshot: RateLimitSnapshot) -> ProviderError {
    let message = wire::error_message(body);
    match status {
        429 => ProviderError::RateLimited {
            retry_after: retry_after(headers).or_else(|| {
                if snapshot.remaining_requests == Some(0) {
                    snapshot.reset_requests
                } else {
                    snapshot.reset_tokens.or(snapshot.reset_requests)
                }
            }),
            snapshot,
        },
        401 | 403 => ProviderError::Auth { status },
        500..=599 => ProviderError::Server {
            status,
            message: truncate(&message),
        },
        _ => wire::context_window_error(&message).unwrap_or_else(|| ProviderError::Rejected {
            status,
            message: truncate(&message),
        }),
    }
}

/// One family of `anthropic-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, Default)]
struct Family {
    limit: Option<u64>,
    remaining: Option<u64>,
    reset: Option<Duration>,
}

impl Family {
    fn read(headers: &HeaderMap, name: &str, now: SystemTime) -> Self {
        let at = |part: &str| format!("anthropic-ratelimit-{name}-{part}");
        Family {
            limit: header_u64(headers, &at("limit")),
            remaining: header_u64(headers, &at("remaining")),
            reset: header_str(headers, &at("reset")).and_then(|t| reset_in(t, now)),
        }
    }

    fn is_empty(&self) -> bool {
        self.limit.is_none() && self.remaining.is_none() && self.reset.is_none()
    }
}

/// The `anthropic-ratelimit-*` headers of a reply received at `now`.
/// Tokens: the `tokens-*` family if the reply has it, else whichever of
/// `input-tokens-*` and `output-tokens-*` has less remaining (the later
/// reset on a tie), since the snapshot has one token window.
pub fn parse_rate_limit_headers(headers: &HeaderMap, now: SystemTime) -> RateLimitSnapshot {
    let requests = Family::read(headers, "requests", now);
    let total = Family::read(headers, "tokens", now);
    let tokens = if total.is_empty() {
        let input = Family::read(headers, "input-tokens", now);
        let output = Family::read(headers, "output-tokens", now);
        match (input.remaining, output.remaining) {
            (Some(i), Some(o)) if o < i || (o == i && output.reset > input.reset) => output,
            (None, Some(_)) => output,
            (Some(_), _) => input,
            (None, None) if input.is_empty() => output,
            (None, None) => input,
        }
    } else {
        total
    };
    RateLimitSnapshot {
        remaining_requests: requests.remaining,
        remaining_tokens: tokens.remaining,
        reset_requests: requests.reset,
        reset_tokens: tokens.reset,
        limit_requests: requests.limit,
        limit_tokens: tokens.limit,
    }
}

/// The time from `now` until the RFC 3339 instant `text`
/// (`2026-03-01T12:00:30Z`, fractions of a second and `+hh:mm` offsets
/// included): zero if it has passed, `None` if it does not parse or lies
/// more than a day ahead (a clock that far off is not to be trusted).
pub fn reset_in(text: &str, now: SystemTime) -> Option<Duration> {
    let at = parse_rfc3339(text.trim())?;
    let wait = at.duration_since(now).unwrap_or(Duration::ZERO);
    (wait <= Duration::from_secs(86_400)).then_some(wait)
}

/// An RFC 3339 instant with `Z` or a numeric offset.
fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    if text.ends_with(['Z', 'z']) {
        return humantime::parse_rfc3339(&text.replace('z', "Z")).ok();
    }
    // `...+hh:mm` / `...-hh:mm`: the local time, shifted back by the offset.
    let split = text.len().checked_sub(6)?;
    let (local, offset) = (text.get(..split)?, text.get(split..)?);
    let sign = match offset.as_bytes()[0] {
        b'+' => 1i64,
        b'-' => -1,
        _ => return None,
    };
    let (hours, minutes) = offset[1..].split_once(':')?;
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    let (hours, minutes): (u64, u64) = (hours.parse().ok()?, minutes.parse().ok()?);
    if hours > 23 || minutes > 59 {
        return None;
    }
    let shift = Duration::from_secs(hours * 3600 + minutes * 60);
    let local = humantime::parse_rfc3339(&format!("{local}Z")).ok()?;
    if sign > 0 {
        local.checked_sub(shift)
    } else {
        local.checked_add(shift)
    }
}

#[cfg(test)]
mod tests;
