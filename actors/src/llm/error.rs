//! Typed errors of the LLM layer, one enum per concern.

use std::time::Duration;

use nexus_swarm_runtime::config::ConfigError;
use nexus_swarm_runtime::error::SpawnError;
use nexus_swarm_runtime::priority::Priority;
use nexus_swarm_runtime::usage::SpendRefused;

use super::types::RateLimitSnapshot;
use crate::error::Cause;

/// A provider call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// HTTP 429 or the simulated equivalent: over the provider's rate limit.
    #[error("rate limited by provider (retry after {retry_after:?})")]
    RateLimited {
        /// How long the provider asked to wait, if it said.
        retry_after: Option<Duration>,
        /// The rate-limit headers of the reply.
        snapshot: RateLimitSnapshot,
    },
    /// HTTP 5xx: the provider failed.
    #[error("provider server error {status}: {message}")]
    Server {
        /// The HTTP status.
        status: u16,
        /// The provider's message (truncated).
        message: String,
    },
    /// No answer within the timeout.
    #[error("provider did not answer within {0:?}")]
    Timeout(Duration),
    /// The prompt and the requested output do not fit the model's window.
    #[error("context window exceeded: {requested} tokens requested, window {limit}")]
    ContextWindowExceeded {
        /// The model's context window in tokens (0 when the provider did not say).
        limit: u64,
        /// Prompt plus maximum output, in tokens (0 when unknown).
        requested: u64,
    },
    /// The reply could not be understood (bad JSON, missing fields, garbage).
    #[error("malformed provider reply: {0}")]
    Malformed(String),
    /// The request was refused as invalid (HTTP 4xx other than 401/403/429).
    #[error("request refused by provider {status}: {message}")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The provider's message (truncated).
        message: String,
    },
    /// The request cannot be written in the provider's API (tool-call
    /// arguments that are not a JSON object, a tool result answering no
    /// call...), so it was not sent.
    #[error("request cannot be sent to the provider: {0}")]
    InvalidRequest(String),
    /// The credentials were refused (HTTP 401/403).
    #[error("provider refused the credentials ({status})")]
    Auth {
        /// The HTTP status.
        status: u16,
    },
    /// The connection failed (refused, reset, TLS).
    #[error("connection to provider failed: {0}")]
    Connect(#[source] Cause),
    /// The call was lost inside the gateway before it reached the provider
    /// (its batch was dropped, its connection pool closed).
    #[error("provider call lost before it was sent: {0}")]
    Lost(&'static str),
    /// The provider's `base_url` is not an http(s) URL.
    #[error("provider base_url `{url}` is not an http(s) URL{}", reason.map(|r| format!(": {r}")).unwrap_or_default())]
    BadBaseUrl {
        /// The configured URL.
        url: String,
        /// Why it does not parse (`None`: it parses, with another scheme).
        #[source]
        reason: Option<url::ParseError>,
    },
    /// The environment variable the provider's key is read from is unset
    /// or empty.
    #[error("provider API key variable {var} is not set")]
    MissingKey {
        /// The variable's name.
        var: String,
    },
    /// The HTTP client could not be built (TLS backend).
    #[error("HTTP client could not be built: {0}")]
    HttpClient(#[source] Cause),
}

impl ProviderError {
    /// Whether retrying the same request later may succeed (429, 5xx,
    /// timeouts, broken connections, garbled replies).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ProviderError::RateLimited { .. }
                | ProviderError::Server { .. }
                | ProviderError::Timeout(_)
                | ProviderError::Connect(_)
                | ProviderError::Lost(_)
                | ProviderError::Malformed(_)
        )
    }

    /// Whether the failure says the deployment is unhealthy (counts towards
    /// its cooldown). Rate limits and the request's own faults do not.
    pub fn counts_against_deployment(&self) -> bool {
        matches!(
            self,
            ProviderError::Server { .. }
                | ProviderError::Timeout(_)
                | ProviderError::Connect(_)
                | ProviderError::Malformed(_)
                | ProviderError::Auth { .. }
                | ProviderError::BadBaseUrl { .. }
                | ProviderError::MissingKey { .. }
                | ProviderError::HttpClient(_)
        )
    }

    /// The retry-after the provider asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// A rate limit could not be set up or can never admit a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimitError {
    /// A limit of zero admits nothing.
    #[error("rate limit {what} must be at least 1")]
    ZeroLimit {
        /// Which limit.
        what: String,
    },
    /// The request alone is larger than the whole window's limit.
    #[error("{what}: request of {requested} exceeds the limit of {limit} per window")]
    TooLarge {
        /// Which limit.
        what: String,
        /// The request's amount.
        requested: u64,
        /// The limit per window.
        limit: u64,
    },
}

/// The model catalogue is inconsistent, or a request names what it lacks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogueError {
    /// No model of that name.
    #[error("unknown model `{0}`")]
    UnknownModel(String),
    /// No deployment / provider of that name.
    #[error("model `{model}` names unknown provider `{provider}`")]
    UnknownProvider {
        /// The model.
        model: String,
        /// The provider id it names.
        provider: String,
    },
    /// No catalogue model has the capabilities and window asked for.
    #[error("no model has capabilities {capabilities} and a window of {tokens} tokens")]
    NoModelFits {
        /// The capabilities, comma-separated.
        capabilities: String,
        /// Prompt plus maximum output.
        tokens: u64,
    },
    /// A model has no deployment.
    #[error("model `{0}` has no deployment")]
    NoDeployment(String),
    /// A name is used twice.
    #[error("duplicate name `{0}` in the catalogue")]
    Duplicate(String),
    /// A fallback names an unknown model.
    #[error("model `{model}` falls back to unknown model `{fallback}`")]
    UnknownFallback {
        /// The model.
        model: String,
        /// The fallback it names.
        fallback: String,
    },
    /// A value is out of range.
    #[error("invalid catalogue value for {field}: {reason}")]
    Invalid {
        /// The offending field.
        field: String,
        /// Why.
        reason: String,
    },
}

/// The response cache failed (disk tier).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The disk store failed to open or write.
    #[error("cache store: {0}")]
    Store(#[source] Box<redb::Error>),
    /// The cache directory could not be created.
    #[error("cache directory {path}: {source}")]
    Io {
        /// The directory.
        path: std::path::PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// A gateway request failed. Every variant leaves no spend held.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The request is malformed (no messages, zero output tokens...).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The model could not be chosen.
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
    /// A budget or quota refused the estimated spend.
    #[error("spend refused: {0}")]
    SpendRefused(#[from] SpendRefused),
    /// The request can never pass a rate limit (larger than a window).
    #[error(transparent)]
    RateLimit(#[from] RateLimitError),
    /// The waiting queue is full.
    #[error("gateway overloaded: {queued} requests waiting")]
    Overloaded {
        /// Requests already waiting.
        queued: usize,
    },
    /// The request's timeout passed before it completed.
    #[error("deadline passed after {0:?}")]
    DeadlineExceeded(Duration),
    /// The request's timeout passed while it waited for one of its agent's
    /// calls to finish (`llm.max_concurrent_per_agent`); it took no slot
    /// and reserved nothing.
    #[error("deadline passed after {timeout:?} waiting behind agent `{agent}`'s {limit} calls in flight")]
    AgentBusy {
        /// The agent (`tenant/workflow/agent`, the parts named).
        agent: String,
        /// Calls per agent at most.
        limit: u32,
        /// The request's timeout.
        timeout: Duration,
    },
    /// Every model of the chain failed; the last provider error.
    #[error("all models failed (tried {tried:?}); last error: {last}")]
    Exhausted {
        /// The models tried, in order.
        tried: Vec<String>,
        /// The last provider error.
        last: ProviderError,
    },
    /// The gateway refuses requests of this priority while pressure is
    /// high (a `[pressure]` response, `reject_low_priority`).
    #[error("{priority:?}-priority requests are refused under pressure")]
    Shed {
        /// The request's priority.
        priority: Priority,
    },
    /// Every deployment of every model of the chain is cooling down.
    #[error("no deployment available for {0:?} (all cooling down)")]
    NoDeployment(Vec<String>),
    /// A stream failed after it had begun (no retry or fallback then:
    /// part of the answer was delivered). What was delivered is charged.
    #[error("the stream from {model} broke after it began: {error}")]
    StreamBroken {
        /// The catalogue model that was streaming.
        model: String,
        /// The provider's error.
        error: ProviderError,
    },
    /// The caller stopped waiting for a stream before it began; whatever
    /// the request held was released.
    #[error("the caller left before the stream began")]
    Cancelled,
    /// The gateway has stopped.
    #[error("gateway stopped")]
    Stopped,
}

/// The gateway could not be built from its arguments.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayBuildError {
    /// The catalogue is inconsistent or names an unknown provider.
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
    /// A rate limit is invalid.
    #[error(transparent)]
    RateLimit(#[from] RateLimitError),
    /// The cache could not be opened.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// A configuration value is out of range (the gateway's arguments
    /// need not have passed `NexusConfig::validate`).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Two providers share an id.
    #[error("duplicate provider id `{0}`")]
    DuplicateProvider(String),
    /// The node could not start the gateway under its supervisor.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// An `openai_compatible` or `anthropic` provider's `api_key_env` names an
    /// environment variable that is not set, or is empty.
    #[error(
        "provider `{provider}`: the environment variable `{var}` named by its api_key_env is not set (or is empty); \
         set it to the API key"
    )]
    MissingApiKey {
        /// The provider's id.
        provider: String,
        /// The variable's name.
        var: String,
    },
    /// A provider could not be built from its configuration (e.g. a base
    /// URL the HTTP client refuses).
    #[error("provider `{provider}`: {source}")]
    Provider {
        /// The provider's id.
        provider: String,
        /// Why (boxed: it is the largest of the errors).
        source: Box<ProviderError>,
    },
    /// The configuration declares no model, so there is nothing to serve.
    #[error("no LLM model is configured: declare [[llm.models]] and the [[llm.providers]] they are deployed on")]
    NoModels,
    /// The gateway actor (unsupervised) failed to start.
    #[error("gateway actor failed to start: {0}")]
    Actor(#[from] ractor::SpawnErr),
}
