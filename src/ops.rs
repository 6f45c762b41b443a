//! Operating a swarm: what `nexus run` starts over [`Swarm`](crate::actors::swarm::Swarm)
//! (pools of the agent types the binary knows), its HTTP server (status,
//! Prometheus metrics, health, an admin API with bearer-token roles) and
//! the audit log of every admin call.
//!
//! # Layout
//!
//! | file | what it holds |
//! |---|---|
//! | `ops/agents.rs` | the agent types of `[[run.pools]]`, [`agents::SpawnedPool`] |
//! | `ops/load.rs` | the steady load of `load_per_second`, [`load::Pacer`] |
//! | `ops/http.rs` | the axum routes, [`http::OpsState`], [`http::ApiError`] |
//! | `ops/history.rs` | the series of `GET /status/history`, [`history::Trail`] |
//! | `ops/dashboard.html` | the page `GET /` serves (inline HTML, CSS and JS) |
//! | `ops/tokens.rs` | the tokens file, roles, [`tokens::hash_token`] |
//! | `ops/shutdown.rs` | how `nexus run` judges its shutdown (the exit code) |
//! | `ops/state.rs` | the versioned state document of export and import |
//! | `ops/audit.rs` | the checksummed, synced audit log and its reader |
//! | `ops/mcp.rs` | `nexus mcp`: the MCP tools bridged to the HTTP API, [`mcp::BridgeError`] |

pub mod agents;
pub mod audit;
pub mod history;
pub mod http;
pub mod load;
pub mod mcp;
pub mod shutdown;
pub mod state;
pub mod tokens;
