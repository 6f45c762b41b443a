//! The agent types `nexus run` knows ([`RunAgentKind`]) and the pools it
//! spawned of them, behind one type the HTTP server reads and resizes.

use std::sync::Arc;

use nexus_swarm_actors::llm::LlmRequest;
use nexus_swarm_actors::swarm::{Swarm, SwarmContext, SwarmError};
use nexus_swarm_runtime::config::{RunAgentKind, RunPool};
use nexus_swarm_runtime::prelude::*;

use super::load::Load;

/// What every `nexus run` agent takes: a text and where to send the answer.
pub type TextMsg = (String, Reply<String>);

/// [`RunAgentKind::Echo`]: replies with the text it is sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Echo;

impl Agent for Echo {
    type Msg = TextMsg;
    type State = ();

    async fn init(&self, _ctx: &AgentContext<Self::Msg>) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn handle(
        &self,
        _ctx: &AgentContext<Self::Msg>,
        (text, reply): Self::Msg,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        reply.send(text);
        Ok(())
    }
}

/// [`RunAgentKind::LlmCaller`]: sends the text it is sent to the swarm's
/// LLM gateway as its own call and replies with the completion.
#[derive(Debug, Clone, Copy, Default)]
pub struct LlmCaller;

impl Agent for LlmCaller {
    type Msg = TextMsg;
    type State = ();

    async fn init(&self, _ctx: &AgentContext<Self::Msg>) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn handle(
        &self,
        ctx: &AgentContext<Self::Msg>,
        (text, reply): Self::Msg,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        let answer = ctx.llm()?.complete(LlmRequest::user(text)).await?;
        reply.send(answer.content);
        Ok(())
    }
}

/// A pool `nexus run` spawned from a `[[run.pools]]` entry.
#[derive(Debug, Clone)]
pub struct SpawnedPool {
    /// Its agent type.
    pub kind: RunAgentKind,
    /// The pool (every kind takes [`TextMsg`]).
    pub pool: PoolRef<TextMsg>,
    /// The steady load `nexus run` sends it (`load_per_second` above 0).
    pub load: Option<Arc<Load>>,
}

impl SpawnedPool {
    /// Spawns `entry`'s pool through `swarm` (admitted by its profile;
    /// routers declared over it start with it). An `llm-caller` pool needs
    /// the swarm's gateway: without one it is refused here rather than
    /// failing on every message. A `load_per_second` above 0 starts its
    /// [`Load`] (in the current tokio runtime).
    pub async fn spawn(swarm: &Swarm, entry: &RunPool) -> Result<Self, SpawnPoolError> {
        let size = entry.size as usize;
        let pool = match entry.agent {
            RunAgentKind::Echo => swarm.spawn_pool(&entry.name, size, Echo).await?,
            RunAgentKind::LlmCaller => {
                if swarm.gateway().is_none() {
                    return Err(SpawnPoolError::NoGateway(entry.name.clone()));
                }
                swarm.spawn_pool(&entry.name, size, LlmCaller).await?
            }
        };
        let load = (entry.load_per_second > 0).then(|| Arc::new(Load::start(pool.clone(), entry.load_per_second)));
        Ok(Self {
            kind: entry.agent,
            pool,
            load,
        })
    }

    /// Stops its load, if it has one (shutdown: what was sent stays admitted).
    pub fn stop_load(&self) {
        if let Some(load) = &self.load {
            load.stop();
        }
    }

    /// Resizes the pool through `swarm` (admitted as a spawn is); returns
    /// the new size.
    pub async fn resize(&self, swarm: &Swarm, size: usize) -> Result<usize, SwarmError> {
        swarm.resize_pool(&self.pool, size).await
    }

    /// Messages admitted and not yet taken, over every lane.
    pub fn queued(&self) -> usize {
        self.pool.depths().iter().sum()
    }
}

/// Why a `[[run.pools]]` entry was not spawned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnPoolError {
    /// The swarm refused it (not admitted, invalid profile, a duplicate name).
    #[error(transparent)]
    Swarm(#[from] SwarmError),
    /// An `llm-caller` pool in a swarm without LLM providers and models.
    #[error("pool {0}: agent \"llm-caller\" needs [[llm.providers]] and [[llm.models]]")]
    NoGateway(String),
}
