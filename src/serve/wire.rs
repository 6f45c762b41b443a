//! OpenAI's chat-completions wire format: the request parsed into an
//! [`LlmRequest`], the [`LlmResponse`] written back, and errors in
//! OpenAI's `{"error": {...}}` shape with the status OpenAI uses.
//!
//! Read from a request: `model` (a catalogue name; required), `messages`
//! (`system`, `developer` (as system), `user`, `assistant` (with its
//! `tool_calls`) and `tool` (with its `tool_call_id`) turns, with text
//! content as a string or as `text` parts), `max_tokens` or
//! `max_completion_tokens` (default: the model's `max_output_tokens`),
//! `temperature` (0 to 2), `user` (recorded as the usage label `user`),
//! `n` (1 only), `tools` (functions), `tool_choice`, `response_format`
//! (`text`, `json_object`, `json_schema`), `stream` and
//! `stream_options.include_usage`. Other fields are accepted and ignored,
//! as OpenAI-compatible servers commonly do.

use std::time::Duration;

use nexus_swarm_actors::llm::openai::wire::{
    WireTool, WireToolCall, call_from_wire, call_to_wire, choice_from_wire, format_from_wire, tool_from_wire,
};
use nexus_swarm_actors::llm::types::{LlmChunk, ToolChoice};
use nexus_swarm_actors::llm::{
    CatalogueError, GatewayError, LlmRequest, LlmResponse, Message, ModelCatalogue, ProviderError, RateLimitError,
};
use nexus_swarm_runtime::usage::{SpendRefused, UsageMeta};
use serde::Deserialize;
use serde_json::{Value, json};

/// An error answered in OpenAI's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: u16,
    /// `error.message`.
    pub message: String,
    /// `error.type`: `invalid_request_error`, `authentication_error`,
    /// `rate_limit_error`, `insufficient_quota`, `api_error`...
    pub kind: &'static str,
    /// `error.param`: the offending request field, if any.
    pub param: Option<&'static str>,
    /// `error.code`.
    pub code: Option<&'static str>,
    /// For 429 and 503: how long to wait before retrying.
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// A 400 about `param`.
    pub fn bad_request(param: Option<&'static str>, message: impl Into<String>) -> Self {
        Self {
            status: 400,
            message: message.into(),
            kind: "invalid_request_error",
            param,
            code: None,
            retry_after: None,
        }
    }

    /// A 401: no key, or not one of ours.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self {
            status: 401,
            message: message.into(),
            kind: "invalid_request_error",
            param: None,
            code: Some("invalid_api_key"),
            retry_after: None,
        }
    }

    fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    fn status(status: u16, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            retry_after: None,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

/// The parts of a chat-completions request Nexus reads.
#[derive(Debug, Deserialize)]
struct ChatRequest {
    model: Option<String>,
    messages: Option<Vec<WireMessage>>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    temperature: Option<f64>,
    user: Option<String>,
    n: Option<u64>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    tools: Option<Vec<WireTool>>,
    tool_choice: Option<Value>,
    response_format: Option<Value>,
}

/// What a streaming caller asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct StreamOptions {
    /// A last chunk with the usage (`stream_options.include_usage`).
    #[serde(default)]
    pub include_usage: bool,
}

/// A parsed chat-completions request.
#[derive(Debug)]
pub struct Parsed {
    /// The gateway request.
    pub request: LlmRequest,
    /// `Some` for `stream: true`.
    pub stream: Option<StreamOptions>,
}

#[derive(Debug, Deserialize)]
struct WireMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
    #[serde(default)]
    tool_call_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

/// The longest `user` value recorded.
const MAX_USER_LEN: usize = 128;

fn text_of(content: Option<Content>, index: usize) -> Result<String, ApiError> {
    match content {
        None => Ok(String::new()),
        Some(Content::Text(t)) => Ok(t),
        Some(Content::Parts(parts)) => {
            let mut out = String::new();
            for p in parts {
                match (p.kind.as_str(), p.text) {
                    ("text", Some(t)) => out.push_str(&t),
                    (kind, _) => {
                        return Err(ApiError::bad_request(
                            Some("messages"),
                            format!("messages[{index}]: content part of type `{kind}` is not supported (text only)"),
                        ));
                    }
                }
            }
            Ok(out)
        }
    }
}

/// A chat-completions body parsed into a gateway request charged to
/// `meta`, checked against the catalogue.
pub fn parse_request(body: &[u8], catalogue: &ModelCatalogue, meta: UsageMeta) -> Result<Parsed, ApiError> {
    let req: ChatRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(None, format!("the body is not a valid chat-completions request: {e}")))?;
    let stream = req.stream.then(|| req.stream_options.unwrap_or_default());
    if req.n.is_some_and(|n| n != 1) {
        return Err(ApiError::bad_request(Some("n"), "only n = 1 is supported"));
    }
    let model_name = req
        .model
        .ok_or_else(|| ApiError::bad_request(Some("model"), "you must provide a model parameter"))?;
    let model = catalogue.get(&model_name).map_err(|_| {
        ApiError::status(
            404,
            "invalid_request_error",
            format!("The model `{model_name}` does not exist"),
        )
        .with_code("model_not_found")
    })?;
    let wire = req
        .messages
        .ok_or_else(|| ApiError::bad_request(Some("messages"), "you must provide messages"))?;
    if wire.is_empty() {
        return Err(ApiError::bad_request(Some("messages"), "messages must not be empty"));
    }
    let mut messages = Vec::with_capacity(wire.len());
    for (i, m) in wire.into_iter().enumerate() {
        let text = text_of(m.content, i)?;
        messages.push(match m.role.as_str() {
            "system" | "developer" => Message::system(text),
            "user" => Message::user(text),
            "assistant" => Message {
                tool_calls: m
                    .tool_calls
                    .unwrap_or_default()
                    .into_iter()
                    .map(call_from_wire)
                    .collect(),
                ..Message::assistant(text)
            },
            "tool" => {
                let id = m.tool_call_id.filter(|id| !id.is_empty()).ok_or_else(|| {
                    ApiError::bad_request(
                        Some("messages"),
                        format!("messages[{i}]: a `tool` message needs the `tool_call_id` it answers"),
                    )
                })?;
                Message::tool_result(id, text)
            }
            other => {
                return Err(ApiError::bad_request(
                    Some("messages"),
                    format!(
                        "messages[{i}]: role `{other}` is not supported (system, developer, user, assistant, tool)"
                    ),
                ));
            }
        });
    }
    let tools = req
        .tools
        .unwrap_or_default()
        .into_iter()
        .map(tool_from_wire)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::bad_request(Some("tools"), e))?;
    let tool_choice = match &req.tool_choice {
        None => ToolChoice::Auto,
        Some(v) => choice_from_wire(v).map_err(|e| ApiError::bad_request(Some("tool_choice"), e))?,
    };
    if let ToolChoice::Named(name) = &tool_choice
        && !tools.iter().any(|t| &t.name == name)
    {
        return Err(ApiError::bad_request(
            Some("tool_choice"),
            format!("tool_choice names `{name}`, which is not one of the request's tools"),
        ));
    }
    let response_format = match &req.response_format {
        None => Default::default(),
        Some(v) => format_from_wire(v).map_err(|e| ApiError::bad_request(Some("response_format"), e))?,
    };
    let max_tokens = match req.max_completion_tokens.or(req.max_tokens) {
        None => model.max_output_tokens,
        Some(0) => {
            return Err(ApiError::bad_request(
                Some("max_tokens"),
                "max_tokens must be at least 1",
            ));
        }
        Some(n) if n > model.max_output_tokens => {
            return Err(ApiError::bad_request(
                Some("max_tokens"),
                format!(
                    "max_tokens is too large: {n}. This model supports at most {} completion tokens",
                    model.max_output_tokens
                ),
            ));
        }
        Some(n) => n,
    };
    let temperature_milli = match req.temperature {
        None => 1000,
        Some(t) if t.is_finite() && (0.0..=2.0).contains(&t) => (t * 1000.0).round() as u16,
        Some(t) => {
            return Err(ApiError::bad_request(
                Some("temperature"),
                format!("temperature must be between 0 and 2, not {t}"),
            ));
        }
    };
    let mut meta = meta.model(model.name.clone());
    if let Some(user) = req.user.filter(|u| !u.is_empty()) {
        if user.len() > MAX_USER_LEN || user.chars().any(|c| c.is_control() || c == ',' || c == '=') {
            return Err(ApiError::bad_request(
                Some("user"),
                format!("user must be at most {MAX_USER_LEN} printable characters, without `,` or `=`"),
            ));
        }
        meta = meta.label("user", user);
    }
    let mut request = LlmRequest::new(messages)
        .model(model.name.clone())
        .max_tokens(u32::try_from(max_tokens).unwrap_or(u32::MAX))
        // Sampled answers differ by design: only greedy ones are cached.
        .cacheable(temperature_milli == 0)
        .meta(meta)
        .tools(tools, tool_choice)
        .response_format(response_format);
    request.temperature_milli = temperature_milli;
    Ok(Parsed { request, stream })
}

/// An answer in OpenAI's `chat.completion` shape.
pub fn completion_body(id: &str, created_secs: u64, max_tokens: u32, answer: &LlmResponse) -> Value {
    let mut message = json!({ "role": "assistant", "content": answer.content });
    if !answer.tool_calls.is_empty() {
        let calls: Vec<WireToolCall> = answer.tool_calls.iter().map(call_to_wire).collect();
        message["tool_calls"] = json!(calls);
        if answer.content.is_empty() {
            message["content"] = Value::Null;
        }
    }
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created_secs,
        "model": answer.model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(answer, max_tokens),
        }],
        "usage": usage_body(answer),
    })
}

/// The provider's finish reason; when it gave none, `length` if the answer
/// used every allowed token, else `stop`.
fn finish_reason(answer: &LlmResponse, max_tokens: u32) -> &str {
    if !answer.finish_reason.is_empty() {
        return &answer.finish_reason;
    }
    if answer.output_tokens >= u64::from(max_tokens) {
        "length"
    } else {
        "stop"
    }
}

fn usage_body(answer: &LlmResponse) -> Value {
    json!({
        "prompt_tokens": answer.input_tokens,
        "completion_tokens": answer.output_tokens,
        "total_tokens": answer.input_tokens + answer.output_tokens,
    })
}

/// One `chat.completion.chunk` of a stream, as an SSE event.
pub fn chunk_event(
    id: &str,
    created_secs: u64,
    model: &str,
    delta: Value,
    finish: Option<&str>,
    usage: bool,
) -> String {
    let mut chunk = json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created_secs,
        "model": model,
        "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }],
    });
    if usage {
        chunk["usage"] = Value::Null;
    }
    format!("data: {chunk}\n\n")
}

/// The events a gateway chunk becomes (the first chunk's delta carries the
/// role; [`LlmChunk::Done`] becomes the finish chunk, the usage chunk when
/// asked for, and `[DONE]`).
pub fn stream_events(
    id: &str,
    created_secs: u64,
    model: &str,
    chunk: &LlmChunk,
    first: bool,
    max_tokens: u32,
    options: StreamOptions,
) -> String {
    let usage = options.include_usage;
    let mut delta = match chunk {
        LlmChunk::Text(t) => json!({ "content": t }),
        LlmChunk::ToolCall {
            index,
            id: call_id,
            name,
            arguments,
        } => {
            let mut call = json!({ "index": index, "function": { "arguments": arguments } });
            if let Some(call_id) = call_id {
                call["id"] = json!(call_id);
                call["type"] = json!("function");
            }
            if let Some(name) = name {
                call["function"]["name"] = json!(name);
            }
            json!({ "tool_calls": [call] })
        }
        LlmChunk::Done(answer) => {
            let mut out = String::new();
            if first {
                out.push_str(&chunk_event(
                    id,
                    created_secs,
                    model,
                    json!({"role": "assistant", "content": ""}),
                    None,
                    usage,
                ));
            }
            let finish = finish_reason(answer, max_tokens);
            out.push_str(&chunk_event(id, created_secs, model, json!({}), Some(finish), usage));
            if usage {
                let last = json!({
                    "id": id,
                    "object": "chat.completion.chunk",
                    "created": created_secs,
                    "model": model,
                    "choices": [],
                    "usage": usage_body(answer),
                });
                out.push_str(&format!("data: {last}\n\n"));
            }
            out.push_str("data: [DONE]\n\n");
            return out;
        }
    };
    if first {
        delta["role"] = json!("assistant");
    }
    chunk_event(id, created_secs, model, delta, None, usage)
}

/// An error in the middle of a stream, as an SSE event in OpenAI's error
/// shape (the `openai` clients raise it).
pub fn stream_error_event(err: &ApiError) -> String {
    format!("data: {}\n\n", err.body())
}

/// The `/v1/models` list of a catalogue.
pub fn models_body(catalogue: &ModelCatalogue) -> Value {
    let data: Vec<Value> = catalogue
        .models
        .iter()
        .map(|m| json!({ "id": m.name, "object": "model", "created": 0, "owned_by": "nexus" }))
        .collect();
    json!({ "object": "list", "data": data })
}

/// A gateway error as OpenAI would answer it.
pub fn gateway_error(e: &GatewayError) -> ApiError {
    let message = e.to_string();
    match e {
        GatewayError::InvalidRequest(_) => ApiError::bad_request(None, message),
        GatewayError::Catalogue(CatalogueError::UnknownModel(_)) => {
            ApiError::status(404, "invalid_request_error", message).with_code("model_not_found")
        }
        GatewayError::Catalogue(_) | GatewayError::RateLimit(RateLimitError::TooLarge { .. }) => {
            ApiError::bad_request(None, message)
        }
        GatewayError::SpendRefused(SpendRefused::BudgetExceeded { .. } | SpendRefused::QuotaExceeded { .. }) => {
            ApiError::status(
                429,
                "insufficient_quota",
                format!("You exceeded your current quota: {message}"),
            )
            .with_code("insufficient_quota")
        }
        GatewayError::SpendRefused(SpendRefused::HoldsInFlight { .. }) | GatewayError::AgentBusy { .. } => {
            let mut err = ApiError::status(429, "rate_limit_error", message).with_code("rate_limit_exceeded");
            err.retry_after = Some(Duration::from_secs(1));
            err
        }
        GatewayError::Overloaded { .. } | GatewayError::NoDeployment(_) | GatewayError::Shed { .. } => {
            let mut err = ApiError::status(503, "api_error", message).with_code("overloaded");
            err.retry_after = Some(Duration::from_secs(1));
            err
        }
        GatewayError::DeadlineExceeded(_) => ApiError::status(504, "api_error", message).with_code("timeout"),
        GatewayError::Exhausted {
            last: ProviderError::Rejected { status, .. },
            ..
        } if *status == 400 => ApiError::bad_request(None, message),
        GatewayError::Exhausted {
            last: ProviderError::InvalidRequest(_),
            ..
        } => ApiError::bad_request(None, message),
        GatewayError::Exhausted { .. } | GatewayError::StreamBroken { .. } => {
            ApiError::status(502, "api_error", message).with_code("upstream_error")
        }
        _ => ApiError::status(503, "api_error", message).with_code("unavailable"),
    }
}

/// A duration as OpenAI writes `x-ratelimit-reset-*`: `"0s"`, `"250ms"`,
/// `"1.5s"`, `"6m0s"`.
pub fn format_reset(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        "0s".into()
    } else if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        let s = format!("{:.3}", d.as_secs_f64());
        let s = s.trim_end_matches('0').trim_end_matches('.');
        format!("{s}s")
    } else {
        let secs = d.as_secs();
        format!("{}m{}s", secs / 60, secs % 60)
    }
}
