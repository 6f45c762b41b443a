//! Nexus Swarm system actors, built on `nexus-swarm-runtime`: each owns one
//! kind of state (control plane) and publishes snapshots that cloneable
//! handles read lock-free (data plane).
//!
//! # Layout
//!
//! One actor per module, named after it; decisions live in plain synchronous
//! types beside the actor so that they are tested without a runtime.
//!
//! | module | actor | what it owns |
//! |---|---|---|
//! | [`cost_ledger`] | `CostLedger` | usage records, budgets, reports |
//! | [`llm_gateway`] (+ [`llm`]) | `LlmGateway` / `LlmGatewayHandle` | providers, rate limits, cache, retries, model choice |
//! | [`router`] | `Router` / `RouterHandle` | members, weights, health, admission |
//! | [`quota_keeper`] | `QuotaKeeper` / `QuotaHandle` | hierarchical quotas, periods, borrowing; the spend gate |
//! | [`scheduler`] | `Scheduler` | resource pools, reservations, strategies, QoS preemption |
//! | [`scaler`] | `Scaler` / `ScalerHandle` | scaling groups over agent pools: triggers, cooldown, stabilization |
//! | [`pressure`] | `PressureDetector` / `PressureHandle` | pressure levels, trends, anomalies, forecasts |

pub mod cost_ledger;
pub mod llm;
pub mod llm_gateway;
mod named;
pub mod pressure;
pub mod quota_keeper;
pub mod router;
pub mod scaler;
pub mod scheduler;
pub mod swarm;
