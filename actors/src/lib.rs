//! Nexus Swarm system actors, built on `nexus-swarm-runtime`: each owns one
//! kind of state (control plane) and publishes snapshots that cloneable
//! handles read lock-free (data plane).
//!
//! # Layout
//!
//! One actor per module, named after it; decisions live in plain synchronous
//! types beside the actor so that they are tested without a runtime.

mod named;
pub mod quota_keeper;
pub mod scheduler;
