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
}

impl Role {
    /// The name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
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
    /// Its text.
    pub content: String,
}

impl Message {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: Role::System,
            content: content.into(),
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
        }
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: content.into(),
        }
    }
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRequest {
    /// The provider's own model name.
    pub model: String,
    /// The conversation.
    pub messages: Vec<Message>,
    /// Output tokens at most.
    pub max_tokens: u32,
    /// Temperature in thousandths.
    pub temperature_milli: u16,
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
    /// Why generation stopped (`stop`, `length`...).
    pub finish_reason: String,
    /// Rate-limit headers of the reply, if any.
    pub rate_limit: RateLimitSnapshot,
}
