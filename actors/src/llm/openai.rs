//! [`OpenAiCompatible`]: chat completions over HTTP, for OpenAI and the
//! servers that speak its API (vLLM, Ollama, LiteLLM, llama.cpp...).
//!
//! - `POST {base_url}/chat/completions` with `model`, `messages` (tool
//!   calls and tool results included), `max_tokens`, `temperature`, and
//!   `tools`, `tool_choice`, `response_format` when the request has them;
//!   the reply's `choices[0].message.content` and `tool_calls`,
//!   `finish_reason` and `usage` are read, anything else missing or
//!   unparsable is [`ProviderError::Malformed`].
//! - Streams: the same request with `stream: true` and
//!   `stream_options.include_usage`; the server-sent events are read as
//!   they arrive (`data: {chunk}` lines until `data: [DONE]`), each delta
//!   becoming a [`ProviderChunk`]. A chunk that does not parse ends the
//!   stream with [`ProviderError::Malformed`].
//! - The API key is read from the environment variable named in the config
//!   (none for local servers) and sent as a bearer token.
//! - `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` are parsed on
//!   every reply (resets in OpenAI's `6m0s` / `1.5s` / `20ms` form) and
//!   handed to the gateway, which holds the deployment and its provider
//!   until a reported reset ([`learned`](super::learned)); on 429,
//!   `retry-after-ms` or `retry-after` (seconds) becomes the retry-after,
//!   else the reset of the exhausted window.
//! - Statuses map to typed errors: 429 rate limited, 401/403 auth, 5xx
//!   server, 400/413/422 `context_length_exceeded` context window, other 4xx
//!   rejected; timeouts and connection failures have their own variants.
//!   Nothing a server sends makes it panic.
//! - Connections: through an [`HttpPool`], which caps the requests in
//!   flight in all and per provider.

use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};

use super::error::ProviderError;
use super::http::{Endpoint, Permits, header_str, header_u64, secs_checked, transport_error, truncate};
use super::provider::{LlmProvider, ProviderResult};
use super::sse::{self, EventParser, Parsed};
use super::types::{ProviderChunk, ProviderRequest, ProviderResponse, ProviderStream, RateLimitSnapshot};

pub mod wire;

pub use super::http::{HttpPool, retry_after};
use wire::{WireToolCall, call_from_wire, call_to_wire, choice_to_wire, format_to_wire, tool_to_wire};

/// Settings of one OpenAI-compatible endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiConfig {
    /// The API root, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:8000/v1`.
    pub base_url: String,
    /// The environment variable holding the API key; none sends no key.
    /// Default: none.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Whole-request timeout. Default: 60 s (seed; `llm.timeout`).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Connection timeout. Default: 10 s.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

impl OpenAiConfig {
    /// An endpoint at `base_url` with the default timeouts and no key.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key_env: None,
            timeout: default_timeout(),
            connect_timeout: default_connect_timeout(),
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

/// An OpenAI-compatible chat-completions provider.
#[derive(Debug, Clone)]
pub struct OpenAiCompatible {
    endpoint: Endpoint,
}

impl OpenAiCompatible {
    /// A provider named `name` for the endpoint, with the key read from the
    /// process environment.
    pub fn new(name: impl Into<String>, config: &OpenAiConfig, pool: &HttpPool) -> Result<Self, ProviderError> {
        Self::with_env(name, config, pool, |var| std::env::var(var).ok())
    }

    /// As [`Self::new`], reading the key's variable through `env`.
    pub fn with_env(
        name: impl Into<String>,
        config: &OpenAiConfig,
        pool: &HttpPool,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ProviderError> {
        Ok(Self {
            endpoint: Endpoint::new(
                name.into(),
                &config.base_url,
                "chat/completions",
                config.api_key_env.as_ref(),
                config.timeout,
                pool,
                env,
            )?,
        })
    }

    /// Sends `request` (streamed or not) and answers with the reply once
    /// its status is known: a 2xx reply with its rate-limit report, every
    /// other status as its typed error. The two permits come back with
    /// the reply, to be held while its body is read.
    async fn send(
        &self,
        request: &ProviderRequest,
        stream: bool,
    ) -> Result<(reqwest::Response, RateLimitSnapshot, Permits), ProviderError> {
        // Both permits are held for the whole exchange.
        let permits = self.endpoint.acquire().await?;
        let body = WireRequest {
            model: &request.model,
            messages: request
                .messages
                .iter()
                .map(|m| WireMessage {
                    role: m.role.as_str(),
                    // An assistant turn that only called tools has no text.
                    content: (!m.content.is_empty() || m.tool_calls.is_empty()).then_some(m.content.as_str()),
                    tool_calls: m.tool_calls.iter().map(call_to_wire).collect(),
                    tool_call_id: m.tool_call_id.as_deref(),
                })
                .collect(),
            max_tokens: request.max_tokens,
            temperature: f64::from(request.temperature_milli) / 1000.0,
            tools: request.tools.iter().map(tool_to_wire).collect(),
            tool_choice: (!request.tools.is_empty()).then(|| choice_to_wire(&request.tool_choice)),
            response_format: (request.response_format != Default::default())
                .then(|| format_to_wire(&request.response_format)),
            stream,
            stream_options: stream.then_some(StreamOptions { include_usage: true }),
        };
        let mut builder = self.endpoint.pool.client.post(self.endpoint.url.clone()).json(&body);
        // A stream is bounded between chunks by the gateway, not as a whole.
        if !stream {
            builder = builder.timeout(self.endpoint.timeout);
        }
        if let Some(key) = &self.endpoint.api_key {
            builder = builder.bearer_auth(key);
        }
        let response = builder.send().await.map_err(|e| self.transport_error(e))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let snapshot = parse_rate_limit_headers(&headers);
        if (200..300).contains(&status) {
            return Ok((response, snapshot, permits));
        }
        let bytes = response.bytes().await.map_err(|e| self.transport_error(e))?;
        Err(status_error(status, &headers, &bytes, snapshot))
    }

    async fn call(self, request: ProviderRequest) -> ProviderResult {
        let (response, snapshot, permits) = self.send(&request, false).await?;
        let bytes = response.bytes().await.map_err(|e| self.transport_error(e))?;
        drop(permits);
        parse_completion(&bytes, snapshot)
    }

    async fn open_stream(self, request: ProviderRequest) -> Result<ProviderStream, ProviderError> {
        let (response, rate_limit, permits) = self.send(&request, true).await?;
        let chunks = sse::read_events(response, permits, self.endpoint.timeout, OpenAiEvents);
        Ok(ProviderStream { rate_limit, chunks })
    }

    fn transport_error(&self, e: reqwest::Error) -> ProviderError {
        transport_error(e, self.endpoint.timeout)
    }
}

impl LlmProvider for OpenAiCompatible {
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

/// OpenAI's events: `chat.completion.chunk`s until `[DONE]`; a body that
/// ends without `[DONE]` ends the answer where it stops.
struct OpenAiEvents;

impl EventParser for OpenAiEvents {
    fn event(&mut self, event: sse::Event) -> Result<Parsed, ProviderError> {
        match event {
            sse::Event::Done => Ok(Parsed {
                chunks: Vec::new(),
                end: true,
            }),
            sse::Event::Data(data) => Ok(Parsed {
                chunks: parse_stream_chunk(&data)?,
                end: false,
            }),
        }
    }

    fn ended_early(&mut self) -> Result<(), ProviderError> {
        Ok(())
    }
}

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    max_tokens: u32,
    temperature: f64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<wire::WireTool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'a str,
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<WireToolCall>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
}

#[derive(Deserialize)]
struct WireResponse {
    choices: Option<Vec<WireChoice>>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireChoice {
    message: Option<WireReplyMessage>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireReplyMessage {
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
}

#[derive(Deserialize)]
struct WireStreamChunk {
    #[serde(default)]
    choices: Vec<WireStreamChoice>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireStreamChoice {
    delta: Option<WireDelta>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireDelta {
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCallDelta>>,
}

#[derive(Deserialize)]
struct WireToolCallDelta {
    index: u32,
    id: Option<String>,
    function: Option<WireFunctionDelta>,
}

#[derive(Deserialize)]
struct WireFunctionDelta {
    name: Option<String>,
    arguments: Option<String>,
}

/// The chunks of one streamed `chat.completion.chunk` event.
pub fn parse_stream_chunk(data: &str) -> Result<Vec<ProviderChunk>, ProviderError> {
    let wire: WireStreamChunk = serde_json::from_str(data)
        .map_err(|e| ProviderError::Malformed(format!("not a completion chunk: {e}: {}", truncate(data))))?;
    let mut out = Vec::new();
    if let Some(choice) = wire.choices.into_iter().next() {
        if let Some(delta) = choice.delta {
            if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                out.push(ProviderChunk::Text(text));
            }
            for call in delta.tool_calls.unwrap_or_default() {
                let (name, arguments) = call.function.map_or((None, None), |f| (f.name, f.arguments));
                out.push(ProviderChunk::ToolCall {
                    index: call.index,
                    id: call.id,
                    name,
                    arguments: arguments.unwrap_or_default(),
                });
            }
        }
        if let Some(reason) = choice.finish_reason {
            out.push(ProviderChunk::Finish(reason));
        }
    }
    if let Some(usage) = wire.usage {
        let (Some(input_tokens), Some(output_tokens)) = (usage.prompt_tokens, usage.completion_tokens) else {
            return Err(ProviderError::Malformed("stream usage lacks token counts".into()));
        };
        out.push(ProviderChunk::Usage {
            input_tokens,
            output_tokens,
        });
    }
    Ok(out)
}

#[derive(Deserialize)]
struct WireUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct WireErrorBody {
    error: Option<WireError>,
}

#[derive(Deserialize)]
struct WireError {
    message: Option<String>,
    code: Option<serde_json::Value>,
}

/// Parses a successful chat-completion body.
pub fn parse_completion(body: &[u8], rate_limit: RateLimitSnapshot) -> ProviderResult {
    let wire: WireResponse =
        serde_json::from_slice(body).map_err(|e| ProviderError::Malformed(format!("not a completion: {e}")))?;
    let choice = wire
        .choices
        .and_then(|c| c.into_iter().next())
        .ok_or_else(|| ProviderError::Malformed("no choices".into()))?;
    let message = choice
        .message
        .ok_or_else(|| ProviderError::Malformed("choice has no message".into()))?;
    let tool_calls: Vec<_> = message
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .map(call_from_wire)
        .collect();
    // A turn that only calls tools may have no content.
    let content = match message.content {
        Some(c) => c,
        None if !tool_calls.is_empty() => String::new(),
        None => return Err(ProviderError::Malformed("choice has no message content".into())),
    };
    let usage = wire.usage.ok_or_else(|| ProviderError::Malformed("no usage".into()))?;
    let (Some(input_tokens), Some(output_tokens)) = (usage.prompt_tokens, usage.completion_tokens) else {
        return Err(ProviderError::Malformed("usage lacks token counts".into()));
    };
    Ok(ProviderResponse {
        content,
        input_tokens,
        output_tokens,
        finish_reason: choice.finish_reason.unwrap_or_default(),
        rate_limit,
        tool_calls,
    })
}

/// Maps a non-2xx reply to its typed error.
pub fn status_error(status: u16, headers: &HeaderMap, body: &[u8], snapshot: RateLimitSnapshot) -> ProviderError {
    let parsed: Option<WireError> = serde_json::from_slice::<WireErrorBody>(body).ok().and_then(|b| b.error);
    let message = parsed
        .as_ref()
        .and_then(|e| e.message.clone())
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let code = parsed
        .as_ref()
        .and_then(|e| e.code.as_ref())
        .map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_string))
        .unwrap_or_default();
    match status {
        429 => ProviderError::RateLimited {
            retry_after: retry_after(headers).or_else(|| {
                let exhausted_requests = snapshot.remaining_requests == Some(0);
                if exhausted_requests {
                    snapshot.reset_requests
                } else {
                    snapshot.reset_tokens.or(snapshot.reset_requests)
                }
            }),
            snapshot,
        },
        401 | 403 => ProviderError::Auth { status },
        400 | 413 | 422
            if code == "context_length_exceeded"
                || message.contains("maximum context length")
                || message.contains("context window") =>
        {
            ProviderError::ContextWindowExceeded { limit: 0, requested: 0 }
        }
        500..=599 => ProviderError::Server {
            status,
            message: truncate(&message),
        },
        _ => ProviderError::Rejected {
            status,
            message: truncate(&message),
        },
    }
}

/// The `x-ratelimit-*` headers of a reply.
pub fn parse_rate_limit_headers(headers: &HeaderMap) -> RateLimitSnapshot {
    RateLimitSnapshot {
        remaining_requests: header_u64(headers, "x-ratelimit-remaining-requests"),
        remaining_tokens: header_u64(headers, "x-ratelimit-remaining-tokens"),
        reset_requests: header_str(headers, "x-ratelimit-reset-requests").and_then(parse_reset),
        reset_tokens: header_str(headers, "x-ratelimit-reset-tokens").and_then(parse_reset),
        limit_requests: header_u64(headers, "x-ratelimit-limit-requests"),
        limit_tokens: header_u64(headers, "x-ratelimit-limit-tokens"),
    }
}

/// Parses a reset time such as `6m0s`, `1.5s`, `20ms`, `1h2m` or a bare
/// number of seconds. `None` for anything else.
pub fn parse_reset(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(secs) = text.parse::<f64>() {
        return secs_checked(secs);
    }
    let mut total = 0.0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        if num_end == 0 {
            return None;
        }
        let value: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_end] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * factor;
        rest = &rest[unit_end..];
    }
    secs_checked(total)
}

#[cfg(test)]
mod tests;
