//! The LLM layer under the [`LlmGateway`](crate::llm_gateway::LlmGateway):
//! providers and the plain synchronous decisions the gateway makes.
//!
//! # Layout
//!
//! | module | what it holds |
//! |---|---|
//! | [`types`] | requests, responses, messages, capabilities |
//! | [`error`] | `ProviderError`, `GatewayError`, `RateLimitError`, `CatalogueError`, `CacheError` |
//! | [`provider`] | the `LlmProvider` trait |
//! | [`simulated`] | `SimulatedProvider`: seeded, rate-limited, fault-injecting |
//! | [`openai`] | `OpenAiCompatible`: chat completions over HTTP |
//! | [`anthropic`] | `AnthropicMessages`: Anthropic's Messages API over HTTP |
//! | `http`, `sse` | what both HTTP providers share: [`HttpPool`], headers, server-sent events |
//! | [`limiter`] | GCRA + sliding-window limits with refund and resync |
//! | [`backoff`] | exponential backoff with full jitter honouring retry-after |
//! | [`catalogue`] | models, prices, deployments, fallbacks; model choice |
//! | [`routing`] | deployment ordering strategies and cooldown |
//! | [`admission`] | the priority queue of requests waiting for rate-limit capacity |
//! | [`agent_slots`] | per-agent concurrency: slots of `llm.max_concurrent_per_agent`, handed on first come first served |
//! | [`dispatch`] | which waiting call goes next, and where: limits, learned holds, priority across shared limits |
//! | [`learned`] | what providers' replies teach: allowances and holds until an instant |
//! | [`batch`] | grouping of calls to one deployment |
//! | [`cache`] | the response cache: memory (moka) and disk (redb) tiers |
//! | [`tokens`] | token counting (tiktoken) and context pruning |

pub mod admission;
pub mod agent_slots;
pub mod anthropic;
pub mod backoff;
pub mod batch;
pub mod cache;
pub mod catalogue;
pub mod dispatch;
pub mod error;
mod http;
pub mod learned;
pub mod limiter;
pub mod openai;
pub mod provider;
pub mod routing;
pub mod simulated;
mod sse;
pub mod tokens;
pub mod types;

pub use agent_slots::{AgentKey, AgentLoad};
pub use catalogue::{DeploymentSpec, ModelCatalogue, ModelSpec};
pub use error::{CacheError, CatalogueError, GatewayBuildError, GatewayError, ProviderError, RateLimitError};
pub use http::HttpPool;
pub use limiter::RateLimits;
pub use provider::{LlmProvider, ProviderResult};
pub use simulated::{SimulatedConfig, SimulatedProvider};
pub use types::{
    Capability, LlmRequest, LlmResponse, Message, ModelChoice, ProviderRequest, ProviderResponse, ResponseSource, Role,
};
