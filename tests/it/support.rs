//! Helpers shared by the integration tests.

pub(crate) mod agents;
pub(crate) mod budget_gate;
pub(crate) mod cluster;
pub(crate) mod held_provider;
pub(crate) mod http;
pub(crate) mod ledger_fixture;
pub(crate) mod netns;
pub(crate) mod nexus_cli;
pub(crate) mod router;
pub(crate) mod scaling;
pub(crate) mod scripted_headers;
