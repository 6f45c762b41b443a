//! Nexus Swarm: an actor-based multi-agent runtime with resource management
//! built in. This facade re-exports the runtime and the system actors and
//! hosts the `nexus` command-line tool.
//!
//! # Layout
//!
//! | crate / module | what it holds |
//! |---|---|
//! | [`runtime`] (`nexus-swarm-runtime`) | agents, lanes, supervision, pools, config |
//! | [`actors`] (`nexus-swarm-actors`) | router, scheduler, quotas, ledger, gateway |
//! | [`prelude`] | the names needed to write and run agents |
//! | [`bench`](mod@bench) | the load benchmark behind `nexus bench` and `cargo bench --bench swarm` |
//! | [`cli`] | the `nexus` command line |
//! | [`serve`] | `nexus serve`: the OpenAI-compatible front door to the LLM gateway |
//! | [`ops`] | `nexus run`'s pools, HTTP status and admin API, audit log |
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use nexus_swarm::prelude::*;
//!
//! struct Greeter;
//!
//! impl Agent for Greeter {
//!     type Msg = (String, Reply<String>);
//!     type State = u64;
//!
//!     async fn init(&self, _ctx: &AgentContext<Self::Msg>) -> Result<u64, HandlerError> {
//!         Ok(0)
//!     }
//!
//!     async fn handle(&self, _ctx: &AgentContext<Self::Msg>, (who, reply): Self::Msg, greeted: &mut u64) -> Result<(), HandlerError> {
//!         *greeted += 1;
//!         reply.send(format!("hello {who} (#{greeted})"));
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Node::start(NexusConfig::default()).await?;
//! let greeter = node.spawn_agent("greeter", Greeter).await?;
//! let text = greeter.ask(|r| ("ada".to_string(), r), Priority::Normal, Duration::from_secs(1)).await?;
//! assert_eq!(text, "hello ada (#1)");
//! node.shutdown(Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```

pub use nexus_swarm_actors as actors;
pub use nexus_swarm_runtime as runtime;

pub mod bench;
pub mod cli;
pub mod ops;
pub mod serve;

/// Everything needed to write and run agents.
pub mod prelude {
    pub use nexus_swarm_actors::llm::{LlmRequest, LlmResponse};
    pub use nexus_swarm_actors::swarm::{AdmissionStatus, AgentLlm, Identity, Swarm, SwarmContext, SwarmError};
    pub use nexus_swarm_runtime::prelude::*;
}

/// The README's code blocks, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
