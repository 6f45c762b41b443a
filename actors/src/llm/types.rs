//! The request and response types of the gateway and of providers.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use nexus_swarm_runtime::priority::Priority;
use nexus_swarm_runtime::usage::UsageMeta;
use serde::{Deserialize, Serialize};

/// Who wrote a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Instructions for the model.
    System,
    /// The user's turn.
    User,
    /// The model's turn.
    Assistant,
    /// A tool's result, answering one of the model's tool calls.
    Tool,
}

impl Role {
    /// The name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// Its text (empty for an assistant turn that only called tools).
    pub content: String,
    /// The tools an assistant turn called.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For a [`Role::Tool`] message: the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: Role::System,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    /// An assistant turn that called these tools.
    pub fn tool_calls(calls: Vec<ToolCall>) -> Self {
        Self {
            tool_calls: calls,
            ..Self::assistant("")
        }
    }

    /// A tool's result for the call `call_id`.
    pub fn tool_result(call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: Role::Tool,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: Some(call_id.into()),
        }
    }
}

/// A tool (function) the model may call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolDef {
    /// Its name (what a call names).
    pub name: String,
    /// What it does, for the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Its arguments as a JSON Schema object.
    pub parameters: serde_json::Value,
}

/// A call of a tool by the model.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ToolCall {
    /// The call's id; the tool's result names it.
    pub id: String,
    /// The tool called.
    pub name: String,
    /// Its arguments, a JSON object as text (as the model wrote it).
    pub arguments: String,
}

/// Whether and which tool the model must call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoice {
    /// The model decides (the default).
    #[default]
    Auto,
    /// No tool call.
    None,
    /// At least one tool call.
    Required,
    /// A call of this tool.
    Named(String),
}

/// The shape the answer's text must have.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Free text (the default).
    #[default]
    Text,
    /// Any JSON object.
    JsonObject,
    /// A JSON value matching this schema.
    JsonSchema {
        /// The schema's name.
        name: String,
        /// The JSON Schema.
        schema: serde_json::Value,
        /// Whether the provider must follow the schema exactly.
        strict: bool,
    },
}

/// Something a model can do, which a request may need (defined beside the
/// configuration, which declares models' capabilities).
pub use nexus_swarm_runtime::config::Capability;

/// Which model a request wants.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ModelChoice {
    /// This model (a catalogue name).
    Named(String),
    /// The cheapest catalogue model that has these capabilities and whose
    /// context window holds the request.
    Cheapest(BTreeSet<Capability>),
}

impl Default for ModelChoice {
    fn default() -> Self {
        ModelChoice::Cheapest(BTreeSet::new())
    }
}

/// A request to the gateway.
#[derive(Debug, Clone)]
pub struct LlmRequest {
    /// The conversation.
    pub messages: Vec<Message>,
    /// The model wanted.
    pub model: ModelChoice,
    /// Output tokens at most (the estimate reserved before the call).
    pub max_tokens: u32,
    /// Sampling temperature in thousandths (0 = greedy, 1000 = 1.0).
    pub temperature_milli: u16,
    /// Queue priority while waiting for rate-limit capacity.
    pub priority: Priority,
    /// The request's deadline, from submission: it waits for rate-limit
    /// capacity, retries and falls back only until then. A call already
    /// sent is not abandoned at the deadline (the provider counts it
    /// anyway); it is bounded by `llm.timeout`.
    pub timeout: Duration,
    /// Whether the response cache may answer (and store) this request.
    pub cacheable: bool,
    /// Who spends (budgets and quotas select by it).
    pub meta: UsageMeta,
    /// Tools the model may call.
    pub tools: Vec<ToolDef>,
    /// Whether and which tool it must call (with `tools`).
    pub tool_choice: ToolChoice,
    /// The shape of the answer's text.
    pub response_format: ResponseFormat,
}

impl LlmRequest {
    /// A request with defaults: cheapest chat model, 256 output tokens,
    /// temperature 0, normal priority, 60 s timeout, cacheable.
    pub fn new(messages: Vec<Message>) -> Self {
        Self {
            messages,
            model: ModelChoice::default(),
            max_tokens: 256,
            temperature_milli: 0,
            priority: Priority::Normal,
            timeout: Duration::from_secs(60),
            cacheable: true,
            meta: UsageMeta::default(),
            tools: Vec::new(),
            tool_choice: ToolChoice::Auto,
            response_format: ResponseFormat::Text,
        }
    }

    /// Builder-style: one user message.
    pub fn user(text: impl Into<String>) -> Self {
        Self::new(vec![Message::user(text)])
    }

    /// Builder-style: a named model.
    pub fn model(mut self, name: impl Into<String>) -> Self {
        self.model = ModelChoice::Named(name.into());
        self
    }

    /// Builder-style: the cheapest model with these capabilities.
    pub fn needs(mut self, caps: impl IntoIterator<Item = Capability>) -> Self {
        self.model = ModelChoice::Cheapest(caps.into_iter().collect());
        self
    }

    /// Builder-style: output tokens at most.
    pub fn max_tokens(mut self, n: u32) -> Self {
        self.max_tokens = n;
        self
    }

    /// Builder-style: priority.
    pub fn priority(mut self, p: Priority) -> Self {
        self.priority = p;
        self
    }

    /// Builder-style: overall timeout.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Builder-style: whether the cache may answer.
    pub fn cacheable(mut self, yes: bool) -> Self {
        self.cacheable = yes;
        self
    }

    /// Builder-style: usage metadata.
    pub fn meta(mut self, meta: UsageMeta) -> Self {
        self.meta = meta;
        self
    }

    /// Builder-style: tools the model may call.
    pub fn tools(mut self, tools: Vec<ToolDef>, choice: ToolChoice) -> Self {
        self.tools = tools;
        self.tool_choice = choice;
        self
    }

    /// Builder-style: the answer's shape.
    pub fn response_format(mut self, format: ResponseFormat) -> Self {
        self.response_format = format;
        self
    }
}

/// What the gateway answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmResponse {
    /// The completion text.
    pub content: String,
    /// The catalogue model that answered.
    pub model: String,
    /// The deployment that answered (empty for a cache hit).
    pub deployment: String,
    /// Prompt tokens billed (0 for a cache hit).
    pub input_tokens: u64,
    /// Completion tokens billed (0 for a cache hit).
    pub output_tokens: u64,
    /// Cost charged in micro-dollars (0 for a cache hit).
    pub cost_micro_usd: u64,
    /// Where the answer came from.
    pub source: ResponseSource,
    /// Provider calls made (retries and fallbacks included).
    pub attempts: u32,
    /// The tools the model called.
    pub tool_calls: Vec<ToolCall>,
    /// Why generation stopped (`stop`, `length`, `tool_calls`; `stop` for
    /// a cache hit; `cancelled` for a stream whose reader left, or whose
    /// provider sent no finish reason).
    pub finish_reason: String,
}

impl LlmResponse {
    /// The response as the chunks of a stream: its text, its tool calls,
    /// then [`LlmChunk::Done`] with itself (how a cache hit is streamed).
    pub fn chunks(&self) -> Vec<LlmChunk> {
        let mut out = Vec::with_capacity(self.tool_calls.len() + 2);
        if !self.content.is_empty() {
            out.push(LlmChunk::Text(self.content.clone()));
        }
        for (index, call) in (0u32..).zip(&self.tool_calls) {
            out.push(LlmChunk::ToolCall {
                index,
                id: Some(call.id.clone()),
                name: Some(call.name.clone()),
                arguments: call.arguments.clone(),
            });
        }
        out.push(LlmChunk::Done(self.clone()));
        out
    }
}

/// A piece of a streamed gateway answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LlmChunk {
    /// Text appended to the answer.
    Text(String),
    /// A piece of tool call `index` (see [`ProviderChunk::ToolCall`]).
    ToolCall {
        /// Which call of the answer (from 0).
        index: u32,
        /// The call's id, on its first piece.
        id: Option<String>,
        /// The tool's name, on its first piece.
        name: Option<String>,
        /// More of the arguments' text.
        arguments: String,
    },
    /// The end: the whole answer, settled (usage and cost included).
    Done(LlmResponse),
}

/// Who answers a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    /// The catalogue model.
    pub model: String,
    /// The deployment (empty for a cache hit).
    pub deployment: String,
    /// Time spent waiting for providers to accept the stream (every
    /// attempt), so a caller can tell its own time from theirs.
    pub provider_time: std::time::Duration,
}

/// Where a response came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseSource {
    /// A provider call.
    Provider,
    /// The in-memory cache.
    MemoryCache,
    /// The disk cache.
    DiskCache,
}

/// One call as a provider sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderRequest {
    /// The provider's own model name.
    pub model: String,
    /// The conversation.
    pub messages: Vec<Message>,
    /// Output tokens at most.
    pub max_tokens: u32,
    /// Temperature in thousandths.
    pub temperature_milli: u16,
    /// Tools the model may call.
    pub tools: Vec<ToolDef>,
    /// Whether and which tool it must call.
    pub tool_choice: ToolChoice,
    /// The shape of the answer's text.
    pub response_format: ResponseFormat,
}

/// What a provider said about its remaining rate-limit capacity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimitSnapshot {
    /// Requests left in the provider's window.
    pub remaining_requests: Option<u64>,
    /// Tokens left in the provider's window.
    pub remaining_tokens: Option<u64>,
    /// When the request window resets.
    pub reset_requests: Option<Duration>,
    /// When the token window resets.
    pub reset_tokens: Option<Duration>,
    /// The provider's request limit per window, if it said.
    pub limit_requests: Option<u64>,
    /// The provider's token limit per window, if it said.
    pub limit_tokens: Option<u64>,
}

impl RateLimitSnapshot {
    /// Whether any field was reported.
    pub fn is_empty(&self) -> bool {
        *self == RateLimitSnapshot::default()
    }
}

/// A provider's successful answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderResponse {
    /// The completion text.
    pub content: String,
    /// Prompt tokens billed.
    pub input_tokens: u64,
    /// Completion tokens billed.
    pub output_tokens: u64,
    /// Why generation stopped (`stop`, `length`, `tool_calls`...).
    pub finish_reason: String,
    /// Rate-limit headers of the reply, if any.
    pub rate_limit: RateLimitSnapshot,
    /// The tools the model called.
    pub tool_calls: Vec<ToolCall>,
}

/// A piece of a streamed provider answer, in the order the provider sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderChunk {
    /// Text appended to the answer.
    Text(String),
    /// A piece of tool call `index`: its first piece carries the id and
    /// the name, every piece some of the arguments' text.
    ToolCall {
        /// Which call of the answer (from 0).
        index: u32,
        /// The call's id, on its first piece.
        id: Option<String>,
        /// The tool's name, on its first piece.
        name: Option<String>,
        /// More of the arguments' text.
        arguments: String,
    },
    /// Why generation stopped.
    Finish(String),
    /// What the call was billed (a provider that sends no usage leaves
    /// the gateway to count it).
    Usage {
        /// Prompt tokens.
        input_tokens: u64,
        /// Completion tokens.
        output_tokens: u64,
    },
}

/// A streamed provider answer: the reply's rate-limit report (from its
/// headers) and its chunks.
pub struct ProviderStream {
    /// Rate-limit headers of the reply, if any.
    pub rate_limit: RateLimitSnapshot,
    /// The chunks; an error ends the stream.
    pub chunks: futures::stream::BoxStream<'static, Result<ProviderChunk, super::error::ProviderError>>,
}

impl fmt::Debug for ProviderStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderStream")
            .field("rate_limit", &self.rate_limit)
            .finish_non_exhaustive()
    }
}

impl ProviderStream {
    /// A whole answer as a stream: its text, its tool calls, why it
    /// stopped and its usage (for providers that cannot stream).
    pub fn from_response(resp: ProviderResponse) -> Self {
        let mut chunks = Vec::with_capacity(resp.tool_calls.len() + 3);
        if !resp.content.is_empty() {
            chunks.push(Ok(ProviderChunk::Text(resp.content)));
        }
        for (index, call) in (0u32..).zip(resp.tool_calls) {
            chunks.push(Ok(ProviderChunk::ToolCall {
                index,
                id: Some(call.id),
                name: Some(call.name),
                arguments: call.arguments,
            }));
        }
        chunks.push(Ok(ProviderChunk::Finish(resp.finish_reason)));
        chunks.push(Ok(ProviderChunk::Usage {
            input_tokens: resp.input_tokens,
            output_tokens: resp.output_tokens,
        }));
        Self {
            rate_limit: resp.rate_limit,
            chunks: Box::pin(futures::stream::iter(chunks)),
        }
    }
}
