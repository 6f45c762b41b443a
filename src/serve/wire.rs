//! OpenAI's chat-completions wire format: the request parsed into an
//! [`LlmRequest`], the [`LlmResponse`] written back, and errors in
//! OpenAI's `{"error": {...}}` shape with the status OpenAI uses.
//!
//! Read from a request: `model` (a catalogue name; required), `messages`
//! (`system`, `developer` (as system), `user` and `assistant` turns, with
//! text content as a string or as `text` parts), `max_tokens` or
//! `max_completion_tokens` (default: the model's `max_output_tokens`),
//! `temperature` (0 to 2), `user` (recorded as the usage label `user`),
//! `n` (1 only) and `stream` (refused: not served yet). Other fields are
//! accepted and ignored, as OpenAI-compatible servers commonly do.

use std::time::Duration;

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
}

#[derive(Debug, Deserialize)]
struct WireMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
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
pub fn parse_request(body: &[u8], catalogue: &ModelCatalogue, meta: UsageMeta) -> Result<LlmRequest, ApiError> {
    let req: ChatRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(None, format!("the body is not a valid chat-completions request: {e}")))?;
    if req.stream {
        return Err(ApiError::bad_request(
            Some("stream"),
            "`stream: true` is not supported by this server yet; send the request without it",
        ));
    }
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
            "assistant" => Message::assistant(text),
            other => {
                return Err(ApiError::bad_request(
                    Some("messages"),
                    format!("messages[{i}]: role `{other}` is not supported (system, developer, user, assistant)"),
                ));
            }
        });
    }
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
        .meta(meta);
    request.temperature_milli = temperature_milli;
    Ok(request)
}

/// An answer in OpenAI's `chat.completion` shape.
pub fn completion_body(id: &str, created_secs: u64, max_tokens: u32, answer: &LlmResponse) -> Value {
    let finish = if answer.output_tokens >= u64::from(max_tokens) {
        "length"
    } else {
        "stop"
    };
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created_secs,
        "model": answer.model,
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": answer.content },
            "logprobs": null,
            "finish_reason": finish,
        }],
        "usage": {
            "prompt_tokens": answer.input_tokens,
            "completion_tokens": answer.output_tokens,
            "total_tokens": answer.input_tokens + answer.output_tokens,
        },
    })
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
        GatewayError::Exhausted { .. } => ApiError::status(502, "api_error", message).with_code("upstream_error"),
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
