//! [`Error`]: any error of the system actors, for callers that start and
//! drive several of them and propagate with `?`. Each concern keeps its own
//! typed enum (matched where the caller handles it); this one only wraps
//! them, so the cause is never turned into text.

use std::fmt;
use std::sync::Arc;

use nexus_swarm_runtime::config::ConfigError;
use nexus_swarm_runtime::error::SpawnError;

use crate::cost_ledger::LedgerError;
use crate::llm::error::{GatewayBuildError, GatewayError, ProviderError};
use crate::quota_keeper::QuotaError;
use crate::router::{RouteAskError, RouterError};
use crate::scheduler::SchedulerError;

/// An error of one of the system actors (or of starting one).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A cost-ledger operation failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A quota operation failed (including the quota store).
    #[error(transparent)]
    Quota(#[from] QuotaError),
    /// A scheduler operation was refused.
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
    /// A router's control-plane call was refused.
    #[error(transparent)]
    Router(#[from] RouterError),
    /// A request/reply through a router failed.
    #[error(transparent)]
    RouteAsk(#[from] RouteAskError),
    /// An LLM request failed.
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    /// The LLM gateway could not be built or started.
    #[error(transparent)]
    GatewayBuild(#[from] GatewayBuildError),
    /// An LLM provider could not be set up or called.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// A system actor could not be started under its node.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// A configuration section is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A swarm could not start, or an agent was not admitted.
    #[error(transparent)]
    Swarm(#[from] crate::swarm::SwarmError),
    /// A performance profile could not be read or analysed.
    #[error(transparent)]
    PerfProfile(#[from] crate::perf_profile::PerfProfileError),
    /// A message to a virtual agent was not handled.
    #[error(transparent)]
    VirtualAgent(#[from] crate::virtual_agents::HandleError),
    /// A virtual agents' snapshot store could not be opened or used.
    #[error(transparent)]
    SnapshotStore(#[from] crate::virtual_agents::StoreError),
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn each_concern_converts_and_keeps_its_cause() {
        let e: Error = LedgerError::Unavailable.into();
        assert!(matches!(e, Error::Ledger(LedgerError::Unavailable)));
        assert_eq!(e.to_string(), LedgerError::Unavailable.to_string());

        let e: Error = QuotaError::Unavailable.into();
        assert!(matches!(e, Error::Quota(QuotaError::Unavailable)));
        let e: Error = SchedulerError::Unavailable.into();
        assert!(matches!(e, Error::Scheduler(SchedulerError::Unavailable)));
        let e: Error = GatewayError::Stopped.into();
        assert!(matches!(e, Error::Gateway(GatewayError::Stopped)));

        // A start failure keeps ractor's error as its source, not as text
        // (transparent: the wrapper's source is the build error's).
        let build: GatewayBuildError = ractor::SpawnErr::ActorAlreadyStarted.into();
        let e: Error = build.into();
        let source = e.source().expect("ractor's error");
        assert!(source.downcast_ref::<ractor::SpawnErr>().is_some());

        let e: Error = SpawnError::SupervisorGone.into();
        assert!(matches!(e, Error::Spawn(SpawnError::SupervisorGone)));

        let e: Error = crate::virtual_agents::HandleError::Unavailable.into();
        assert!(matches!(
            e,
            Error::VirtualAgent(crate::virtual_agents::HandleError::Unavailable)
        ));
        let e: Error = crate::virtual_agents::StoreError::Panicked("x".into()).into();
        assert!(matches!(e, Error::SnapshotStore(_)));
    }
}

/// The underlying error of a failure, kept whole (never turned into text)
/// and shared: an error that is handed to several callers (every caller of
/// a failed ledger batch, every request of a failed provider batch) is
/// cloned, so its cause is behind an `Arc`. Two causes are equal when they
/// are the same error.
#[derive(Debug, Clone)]
pub struct Cause(Arc<dyn std::error::Error + Send + Sync>);

impl Cause {
    /// Wraps `error`.
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(error))
    }

    /// The error, to downcast or inspect.
    pub fn get(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Cause {}
