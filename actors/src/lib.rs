//! Nexus Swarm system actors, built on `nexus-swarm-runtime`: each owns one
//! kind of state (control plane) and publishes snapshots that cloneable
//! handles read lock-free (data plane).
//!
//! # One pattern
//!
//! Every system actor starts the same way: `X::start(&node, name, args)`
//! runs it supervised in the node's `system` subtree and returns its handle
//! (`XHandle`). The arguments hold the actor's shared state (and the slot
//! where the running instance stores itself), so an actor restarted after
//! a failure resumes that state and every handle reaches the new instance.
//! `X::spawn_unsupervised` starts one that no supervisor restarts, for
//! tests and tools.
//!
//! # Layout
//!
//! One actor per module, named after it; decisions live in plain synchronous
//! types beside the actor so that they are tested without a runtime.
//!
//! | module | actor / handle | what it owns |
//! |---|---|---|
//! | [`cluster_member`] | [`ClusterMember`](cluster_member::ClusterMember) / [`ClusterHandle`](cluster_member::ClusterHandle) | this node in the cluster: heartbeats, membership, the ring of nodes, the `ractor_cluster` node server and redialing |
//! | [`cluster_pool`] | [`PoolProxy`](cluster_pool::PoolProxy) / [`ClusterPool`](cluster_pool::ClusterPool) | an agent pool reachable cluster-wide by key: its `pg` groups, the ring of its hosts, typed (bincode) messages to peers, none encoded locally |
//! | [`cost_ledger`] | [`CostLedger`] / [`LedgerHandle`] | usage records, budgets, reports |
//! | [`llm_gateway`] (+ [`llm`]) | [`LlmGateway`] / [`GatewayHandle`] | providers, rate limits, cache, retries, model choice |
//! | [`router`] | [`Router`] / [`RouterHandle`] | members, weights, health, admission |
//! | [`quota_keeper`] | [`QuotaKeeper`] / [`QuotaHandle`] | hierarchical quotas, periods, borrowing; the spend gate |
//! | [`scheduler`] | [`Scheduler`] / [`SchedulerHandle`] | resource pools, reservations, strategies, QoS preemption |
//! | [`scaler`] | [`Scaler`](scaler::Scaler) / [`ScalerHandle`](scaler::ScalerHandle) | scaling groups over agent pools: triggers, cooldown, stabilization |
//! | [`monitor`] | [`Monitor`](monitor::Monitor) / [`MonitorHandle`](monitor::MonitorHandle) | system, process and pool metrics, alerts with hysteresis, history, exports |
//! | [`perf_profile`] | (no actor: sync analysis) | performance profiles: knee, bottleneck, recommendations; the scaler's cap |
//! | [`pressure`] | [`PressureDetector`](pressure::PressureDetector) / [`PressureHandle`](pressure::PressureHandle) | pressure levels, trends, anomalies, forecasts |
//! | [`virtual_agents`] | [`VirtualAgents`] / [`VirtualAgentsHandle`] | agents addressed by key: activation on demand, passivation to snapshots when idle |
//!
//! Each module has its error enum; [`Error`] wraps them all.
//!
//! # Features
//!
//! - `fault-injection` (off): each handle gets a hidden `inject_panic`
//!   that makes its actor's handler panic, as a bug would, so that tests
//!   can watch the supervisor restart it. Killing an actor does not do:
//!   the supervisor takes a kill for a stop and does not restart it.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use nexus_swarm_actors::{CostLedger, CostLedgerArgs, LedgerOptions, QuotaKeeper, QuotaKeeperArgs, QuotaSpec};
//! use nexus_swarm_runtime::prelude::*;
//! use nexus_swarm_runtime::usage::UsageMeta;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let mut config = NexusConfig::default();
//! config.node.data_dir = dir.path().to_path_buf();
//! let node = Node::start(config).await?;
//!
//! let specs = vec![QuotaSpec::root("requests", ResourceKind::LlmRequests, 100)];
//! let quotas = QuotaKeeper::start(&node, "quota-keeper", QuotaKeeperArgs::default().with_quotas(specs)?).await?;
//! let args = CostLedgerArgs::open(LedgerOptions::from_config(node.config())).await?;
//! let ledger = CostLedger::start(&node, "cost-ledger", args).await?;
//!
//! let _charge = quotas.try_consume("requests", 1)?;
//! let ack = ledger.track_usage(ResourceKind::Cost, 250, UsageMeta::default().tenant("acme")).await?;
//! assert_eq!(ack.cost_micro_usd, 250);
//! assert_eq!(node.system_children().await.len(), 2);
//! node.shutdown(Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```

pub mod cluster_member;
pub mod cluster_pool;
pub mod cost_ledger;
mod error;
pub mod llm;
pub mod llm_gateway;
pub mod monitor;
mod named;
pub mod perf_profile;
pub mod pressure;
pub mod quota_keeper;
pub mod router;
pub mod scaler;
pub mod scheduler;
pub mod startup;
pub mod swarm;
mod trend;
pub mod virtual_agents;

pub use cost_ledger::{BudgetHandle, CostLedger, CostLedgerArgs, LedgerError, LedgerHandle, LedgerOptions};
pub use error::{Cause, Error};
pub use llm::{GatewayBuildError, GatewayError, ProviderError};
pub use llm_gateway::{GatewayHandle, LlmGateway, LlmGatewayArgs, ProviderEntry};
pub use nexus_swarm_runtime::scope::Scope;
pub use quota_keeper::{QuotaError, QuotaHandle, QuotaKeeper, QuotaKeeperArgs, QuotaSpec};
pub use router::{RouteAskError, Router, RouterArgs, RouterError, RouterHandle};
pub use scheduler::{Scheduler, SchedulerArgs, SchedulerError, SchedulerHandle};
pub use swarm::{AdmissionStatus, AgentLlm, Identity, Swarm, SwarmContext, SwarmError};
pub use virtual_agents::{VirtualAgent, VirtualAgents, VirtualAgentsArgs, VirtualAgentsConfig, VirtualAgentsHandle};
