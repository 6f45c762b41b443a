//! Agents and configurations shared by the router tests.

#![allow(dead_code)] // each test file uses a part of this module

use std::sync::Arc;

use nexus_swarm::actors::router::{Router, RouterHandle};
use nexus_swarm::runtime::config::{RouterConfig, RoutingStrategyKind};
use nexus_swarm::runtime::prelude::*;
use tokio::sync::{Notify, oneshot};

/// What a [`Probe`] understands.
pub(crate) enum Msg {
    /// Counted.
    Hit,
    /// Answers how many hits it has handled.
    Count(Reply<u64>),
    /// Answers its own worker name at once.
    Name(Reply<String>),
    /// Keeps the reply port without answering, until `ReleaseHeld`.
    Hold(Reply<u64>),
    /// Answers every held request (with the number of hits).
    ReleaseHeld,
    /// Says it started, then blocks the agent until `release` is notified:
    /// the agent takes nothing else and answers no health check meanwhile.
    Stall {
        /// Told once the agent is blocked.
        started: oneshot::Sender<()>,
        /// Unblocks it.
        release: Arc<Notify>,
    },
}

/// A test agent: counts hits, holds or answers requests, stalls on demand.
pub(crate) struct Probe;

/// A probe's state.
#[derive(Default)]
pub(crate) struct ProbeState {
    hits: u64,
    held: Vec<Reply<u64>>,
}

impl Agent for Probe {
    type Msg = Msg;
    type State = ProbeState;

    async fn init(&self, _ctx: &AgentContext<Msg>) -> Result<ProbeState, HandlerError> {
        Ok(ProbeState::default())
    }

    async fn handle(&self, ctx: &AgentContext<Msg>, msg: Msg, state: &mut ProbeState) -> Result<(), HandlerError> {
        match msg {
            Msg::Hit => state.hits += 1,
            Msg::Count(reply) => reply.send(state.hits),
            Msg::Name(reply) => reply.send(format!("{}[{}]", ctx.name(), ctx.worker())),
            Msg::Hold(reply) => state.held.push(reply),
            Msg::ReleaseHeld => {
                for reply in state.held.drain(..) {
                    reply.send(state.hits);
                }
            }
            Msg::Stall { started, release } => {
                // The test may have stopped waiting for the signal; the stall stands.
                let _ = started.send(());
                release.notified().await;
            }
        }
        Ok(())
    }
}

/// A router configuration with `strategy` and admission off (strategy tests
/// send more than a burst without waiting for tokens).
pub(crate) fn strategy_config(strategy: RoutingStrategyKind) -> RouterConfig {
    let mut cfg = RouterConfig {
        strategy,
        ..RouterConfig::default()
    };
    cfg.admission.enabled = false;
    cfg
}

/// A node, a pool of `n` probes and a router over them (weight 1 each).
pub(crate) async fn router_over_pool(
    strategy: RoutingStrategyKind,
    n: usize,
) -> (Node, PoolRef<Msg>, RouterHandle<Msg>) {
    let node = Node::start(NexusConfig::default()).await.unwrap();
    let pool = node.spawn_pool("probes", n, Probe).await.unwrap();
    let router = Router::start(&node, "router", strategy_config(strategy)).await.unwrap();
    router.add_pool(&pool).await.unwrap();
    (node, pool, router)
}

/// Blocks an agent in a handler; returns what unblocks it.
pub(crate) async fn stall(agent: &AgentRef<Msg>) -> Arc<Notify> {
    let release = Arc::new(Notify::new());
    let (started, is_stalled) = oneshot::channel();
    agent
        .try_send(
            Msg::Stall {
                started,
                release: Arc::clone(&release),
            },
            Priority::High,
        )
        .unwrap();
    is_stalled.await.unwrap();
    release
}

/// Hits the agent has handled (everything sent before at normal priority
/// has been handled when this returns: lanes are FIFO).
pub(crate) async fn hits(agent: &AgentRef<Msg>) -> u64 {
    agent
        .ask(Msg::Count, Priority::Normal, std::time::Duration::from_secs(5))
        .await
        .unwrap()
}
