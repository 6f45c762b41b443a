//! The Nexus Swarm substrate: agents, backpressured priority lanes,
//! supervision, pools, the resource model and configuration.
//!
//! An [`Agent`](agent::Agent) is a typed message handler with private state.
//! The runtime hosts each one as a supervised `ractor` actor, and puts three
//! bounded priority lanes in front of it ([`mailbox`]): senders wait, fail
//! fast or time out instead of growing an unbounded backlog, and high
//! priority traffic overtakes a flood of normal messages.
//!
//! # Layout
//!
//! | module | what it holds |
//! |---|---|
//! | [`agent`] | the `Agent` trait and `AgentContext` |
//! | [`agent_ref`] | `AgentRef`, the backpressured handle; `Reply` for asks |
//! | [`mailbox`] | the lane protocol and `DrainPolicy` (priorities with aging) |
//! | [`host`] | the ractor actor that hosts an agent and drains its lanes |
//! | [`supervisor`] | failure domains: `system` and `agents` subtrees, per-subtree `RestartIntensity`, `NodeEvent` |
//! | [`pool`] | `AgentPool`/`PoolRef`: N workers behind one handle, resizable |
//! | [`node`] | `Node`: starts the supervision tree, spawns agents, pools and groups |
//! | [`config`] | the TOML configuration with the seeds' defaults |
//! | [`resources`] | integer resource vectors, QoS classes, profiles |
//! | [`priority`] | the three priorities |
//! | [`routing`] | routing strategies and the consistent-hash ring |
//! | [`cluster`] | the cluster's decisions: `ClusterRing` (owner node of a key, bounded loads), `FailureDetector`, the wire `envelope`, reconnect `Backoff` |
//! | [`spill`] | disk spill for a pool's low lane: `SpillConfig`, the durable FIFO `SpillStore` |
//! | [`spawn`] | `SpawnOptions`: extensions, signals (busy time, throttling, preemption), on-gone hooks |
//! | [`admission`] | token-bucket (GCRA) admission for routers |
//! | [`error`] | typed errors per concern |
//! | [`telemetry`] | `tracing` set-up for binaries |
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use nexus_swarm_runtime::prelude::*;
//!
//! struct Doubler;
//!
//! impl Agent for Doubler {
//!     type Msg = (u64, Reply<u64>);
//!     type State = ();
//!
//!     async fn init(&self, _ctx: &AgentContext<Self::Msg>) -> Result<(), HandlerError> {
//!         Ok(())
//!     }
//!
//!     async fn handle(&self, _ctx: &AgentContext<Self::Msg>, (n, reply): Self::Msg, _: &mut ()) -> Result<(), HandlerError> {
//!         reply.send(n * 2);
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Node::start(NexusConfig::default()).await?;
//! let pool = node.spawn_pool("doublers", 4, Doubler).await?;
//! let four = pool.ask(|r| (2, r), Priority::Normal, Duration::from_secs(1)).await?;
//! assert_eq!(four, 4);
//! node.shutdown(Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```

pub mod admission;
pub mod agent;
pub mod agent_ref;
pub mod cluster;
pub mod config;
pub mod error;
pub mod host;
pub mod mailbox;
pub mod node;
pub mod pool;
pub mod priority;
pub mod resources;
pub mod routing;
pub mod scope;
pub mod spawn;
pub mod spill;
pub mod supervisor;
pub mod telemetry;
pub mod usage;

/// The names a user needs to write and run agents.
pub mod prelude {
    pub use crate::agent::{Agent, AgentContext};
    pub use crate::agent_ref::{AgentRef, Reply};
    pub use crate::config::{MailboxConfig, NexusConfig};
    pub use crate::error::{AskError, Error, HandlerError, PoolError, SendError, SpawnError};
    pub use crate::node::{GroupRef, Node};
    pub use crate::pool::PoolRef;
    pub use crate::priority::Priority;
    pub use crate::resources::{QosClass, ResourceKind, ResourceProfile, ResourceVector};
    pub use crate::scope::Scope;
    pub use crate::spawn::{Extensions, Preemption, SpawnOptions};
    pub use crate::supervisor::{NodeEvent, NodeExit, SubtreeKind, SubtreeStopped};
}
