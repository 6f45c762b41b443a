//! Anthropic's Messages API shapes: the request written from a
//! [`ProviderRequest`], the reply and error bodies read back.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::llm::error::ProviderError;
use crate::llm::http::truncate;
use crate::llm::types::{Message, ProviderRequest, ResponseFormat, Role, ToolCall, ToolChoice, ToolDef};

/// Anthropic's highest temperature: its range is 0 to 1 (OpenAI's is 0 to 2).
const MAX_TEMPERATURE_MILLI: u16 = 1000;

/// A `POST /messages` body.
#[derive(Debug, Serialize)]
pub(super) struct WireRequest {
    pub(super) model: String,
    pub(super) max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) system: Option<String>,
    pub(super) messages: Vec<Turn>,
    pub(super) temperature: f64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) tools: Vec<WireTool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) tool_choice: Option<Value>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(super) stream: bool,
}

/// One turn of the conversation.
#[derive(Debug, Serialize)]
pub(super) struct Turn {
    pub(super) role: &'static str,
    pub(super) content: Vec<Block>,
}

/// A content block of a turn.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum Block {
    Text { text: String },
    ToolUse { id: String, name: String, input: Value },
    ToolResult { tool_use_id: String, content: String },
}

/// A tool as Anthropic writes it.
#[derive(Debug, Serialize)]
pub(super) struct WireTool {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    input_schema: Value,
}

/// The request's body; [`ProviderError::InvalidRequest`] if it cannot be
/// written in Anthropic's shape (see the module documentation of
/// [`anthropic`](super) for each rule).
pub(super) fn request_body(request: &ProviderRequest, stream: bool) -> Result<WireRequest, ProviderError> {
    let mut system: Vec<&str> = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    for (i, m) in request.messages.iter().enumerate() {
        let (role, blocks) = match m.role {
            Role::System => {
                if !m.content.is_empty() {
                    system.push(&m.content);
                }
                continue;
            }
            Role::User => (
                "user",
                vec![Block::Text {
                    text: m.content.clone(),
                }],
            ),
            Role::Assistant => ("assistant", assistant_blocks(i, m)?),
            Role::Tool => {
                let id = m.tool_call_id.clone().ok_or_else(|| {
                    ProviderError::InvalidRequest(format!("message {i}: a tool result names no tool call"))
                })?;
                (
                    "user",
                    vec![Block::ToolResult {
                        tool_use_id: id,
                        content: m.content.clone(),
                    }],
                )
            }
        };
        match turns.last_mut() {
            // The API wants user and assistant turns to alternate: a turn
            // of the same role as the last joins it.
            Some(last) if last.role == role => last.content.extend(blocks),
            _ => turns.push(Turn { role, content: blocks }),
        }
    }
    for turn in &mut turns {
        tidy(turn);
    }
    let instruction = format_instruction(&request.response_format);
    let system = match (system.is_empty(), instruction) {
        (true, None) => None,
        (_, instruction) => Some(
            system
                .into_iter()
                .map(str::to_string)
                .chain(instruction)
                .collect::<Vec<_>>()
                .join("\n\n"),
        ),
    };
    Ok(WireRequest {
        model: request.model.clone(),
        max_tokens: request.max_tokens,
        system,
        messages: turns,
        temperature: f64::from(request.temperature_milli.min(MAX_TEMPERATURE_MILLI)) / 1000.0,
        tools: request.tools.iter().map(tool_to_wire).collect(),
        tool_choice: (!request.tools.is_empty()).then(|| choice_to_wire(&request.tool_choice)),
        stream,
    })
}

/// An assistant turn's text (if any) and its tool calls as `tool_use`
/// blocks, whose `input` is the parsed arguments object.
fn assistant_blocks(i: usize, m: &Message) -> Result<Vec<Block>, ProviderError> {
    let mut blocks = Vec::with_capacity(m.tool_calls.len() + 1);
    blocks.push(Block::Text {
        text: m.content.clone(),
    });
    for call in &m.tool_calls {
        blocks.push(Block::ToolUse {
            id: call.id.clone(),
            name: call.name.clone(),
            input: call_input(i, call)?,
        });
    }
    Ok(blocks)
}

/// A tool call's arguments as the JSON object Anthropic's `input` must be
/// (empty arguments are `{}`).
fn call_input(i: usize, call: &ToolCall) -> Result<Value, ProviderError> {
    if call.arguments.trim().is_empty() {
        return Ok(json!({}));
    }
    match serde_json::from_str::<Value>(&call.arguments) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(ProviderError::InvalidRequest(format!(
            "message {i}: the arguments of tool call `{}` are not a JSON object",
            call.id
        ))),
        Err(e) => Err(ProviderError::InvalidRequest(format!(
            "message {i}: the arguments of tool call `{}` are not JSON: {e}",
            call.id
        ))),
    }
}

/// Drops empty text blocks (the API refuses them) unless the turn would be
/// left empty, and puts a user turn's tool results before its text (the
/// API wants them first).
fn tidy(turn: &mut Turn) {
    let empty = |b: &Block| matches!(b, Block::Text { text } if text.is_empty());
    if turn.content.iter().any(|b| !empty(b)) {
        turn.content.retain(|b| !empty(b));
    } else {
        turn.content.truncate(1);
    }
    // A stable sort: tool results first, in their order, then the rest.
    turn.content.sort_by_key(|b| !matches!(b, Block::ToolResult { .. }));
}

/// The system instruction standing for a response format, which Anthropic
/// has no parameter for. The answer is not checked against it.
fn format_instruction(format: &ResponseFormat) -> Option<String> {
    match format {
        ResponseFormat::Text => None,
        ResponseFormat::JsonObject => {
            Some("Answer with a single JSON object and nothing else: no prose, no code fences.".to_string())
        }
        ResponseFormat::JsonSchema { name, schema, .. } => Some(format!(
            "Answer with a single JSON value and nothing else (no prose, no code fences) that matches \
             this JSON Schema, named `{name}`: {schema}"
        )),
    }
}

fn tool_to_wire(t: &ToolDef) -> WireTool {
    WireTool {
        name: t.name.clone(),
        description: t.description.clone(),
        input_schema: t.parameters.clone(),
    }
}

/// `tool_choice` in Anthropic's shape.
fn choice_to_wire(c: &ToolChoice) -> Value {
    match c {
        ToolChoice::Auto => json!({"type": "auto"}),
        ToolChoice::None => json!({"type": "none"}),
        ToolChoice::Required => json!({"type": "any"}),
        ToolChoice::Named(name) => json!({"type": "tool", "name": name}),
    }
}

/// A `stop_reason` as the gateway names it: `end_turn` and
/// `stop_sequence` are `stop`, `max_tokens` is `length`, `tool_use` is
/// `tool_calls`, `refusal` is `content_filter`; others pass unchanged.
pub(super) fn finish_reason(stop_reason: &str) -> String {
    match stop_reason {
        "end_turn" | "stop_sequence" => "stop",
        "max_tokens" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        other => other,
    }
    .to_string()
}

/// A reply's `usage`.
#[derive(Debug, Deserialize)]
pub(super) struct WireUsage {
    pub(super) input_tokens: Option<u64>,
    pub(super) output_tokens: Option<u64>,
    pub(super) cache_creation_input_tokens: Option<u64>,
    pub(super) cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    /// Every prompt token: Anthropic counts the tokens written to and read
    /// from its prompt cache apart from `input_tokens`.
    pub(super) fn prompt_tokens(&self) -> Option<u64> {
        self.input_tokens.map(|n| {
            n.saturating_add(self.cache_creation_input_tokens.unwrap_or(0))
                .saturating_add(self.cache_read_input_tokens.unwrap_or(0))
        })
    }
}

#[derive(Deserialize)]
struct WireResponse {
    content: Option<Vec<ReplyBlock>>,
    stop_reason: Option<String>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ReplyBlock {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    /// Blocks the gateway has no place for (`thinking`...).
    #[serde(other)]
    Other,
}

/// What a successful `POST /messages` reply says.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Reply {
    pub(super) content: String,
    pub(super) tool_calls: Vec<ToolCall>,
    pub(super) finish_reason: String,
    pub(super) input_tokens: u64,
    pub(super) output_tokens: u64,
}

/// Parses a successful reply: text blocks joined, `tool_use` blocks as
/// tool calls (their `input` serialised as the arguments).
pub(super) fn parse_message(body: &[u8]) -> Result<Reply, ProviderError> {
    let wire: WireResponse =
        serde_json::from_slice(body).map_err(|e| ProviderError::Malformed(format!("not a message: {e}")))?;
    let blocks = wire
        .content
        .ok_or_else(|| ProviderError::Malformed("message has no content".into()))?;
    let mut content = String::new();
    let mut tool_calls = Vec::new();
    for block in blocks {
        match block {
            ReplyBlock::Text { text } => content.push_str(&text),
            ReplyBlock::ToolUse { id, name, input } => tool_calls.push(ToolCall {
                id,
                name,
                arguments: input.to_string(),
            }),
            ReplyBlock::Other => {}
        }
    }
    let usage = wire
        .usage
        .ok_or_else(|| ProviderError::Malformed("message has no usage".into()))?;
    let (Some(input_tokens), Some(output_tokens)) = (usage.prompt_tokens(), usage.output_tokens) else {
        return Err(ProviderError::Malformed("usage lacks token counts".into()));
    };
    Ok(Reply {
        content,
        tool_calls,
        finish_reason: wire.stop_reason.as_deref().map(finish_reason).unwrap_or_default(),
        input_tokens,
        output_tokens,
    })
}

/// An error as Anthropic writes it: `{"type": "error", "error": {"type":
/// ..., "message": ...}}`.
#[derive(Debug, Deserialize)]
pub(super) struct WireError {
    #[serde(rename = "type")]
    pub(super) kind: Option<String>,
    pub(super) message: Option<String>,
}

#[derive(Deserialize)]
struct WireErrorBody {
    error: Option<WireError>,
}

/// The message of an error body (the raw text when it is not Anthropic's
/// error JSON).
pub(super) fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<WireErrorBody>(body)
        .ok()
        .and_then(|b| b.error)
        .and_then(|e| e.message)
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}

/// The context-window error `message` reports, if it is one: "prompt is
/// too long: 208310 tokens > 200000 maximum" (the figures when it gives
/// them, else 0).
pub(super) fn context_window_error(message: &str) -> Option<ProviderError> {
    if !message.contains("prompt is too long") {
        return None;
    }
    let figures: Vec<u64> = message
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse().ok())
        .collect();
    let (requested, limit) = match figures[..] {
        [requested, limit, ..] => (requested, limit),
        _ => (0, 0),
    };
    Some(ProviderError::ContextWindowExceeded { limit, requested })
}

/// An error of Anthropic's `kind` (as an error event or body names it)
/// when no HTTP status says more: overloaded is a 529 server error, a
/// rate limit is [`ProviderError::RateLimited`], credentials are refused,
/// invalid requests and unknown resources are rejected (a prompt too long
/// is [`ProviderError::ContextWindowExceeded`]), anything else is a server
/// error.
pub(super) fn error_of_kind(kind: &str, message: &str) -> ProviderError {
    let message_short = truncate(message);
    match kind {
        "overloaded_error" => ProviderError::Server {
            status: 529,
            message: message_short,
        },
        "rate_limit_error" => ProviderError::RateLimited {
            retry_after: None,
            snapshot: Default::default(),
        },
        "authentication_error" => ProviderError::Auth { status: 401 },
        "permission_error" => ProviderError::Auth { status: 403 },
        "invalid_request_error" => context_window_error(message).unwrap_or(ProviderError::Rejected {
            status: 400,
            message: message_short,
        }),
        "not_found_error" => ProviderError::Rejected {
            status: 404,
            message: message_short,
        },
        "request_too_large" => ProviderError::Rejected {
            status: 413,
            message: message_short,
        },
        "timeout_error" => ProviderError::Server {
            status: 504,
            message: message_short,
        },
        _ => ProviderError::Server {
            status: 500,
            message: message_short,
        },
    }
}
