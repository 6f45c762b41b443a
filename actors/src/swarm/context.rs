//! What an agent spawned through a [`Swarm`](super::Swarm) finds in its
//! context: who it is, and an LLM client that says so on every call.

use nexus_swarm_runtime::agent::AgentContext;
use nexus_swarm_runtime::scope::Scope;
use nexus_swarm_runtime::usage::UsageMeta;

use crate::llm::{GatewayError, LlmRequest, LlmResponse};
use crate::llm_gateway::GatewayHandle;

/// Whom an agent's usage is charged to: its tenant, workflow and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The tenant (customer, team). Default: `"default"`.
    pub tenant: String,
    /// The workflow within the tenant. Default: none.
    pub workflow: Option<String>,
    /// The agent's (or pool's) name.
    pub agent: String,
}

impl Identity {
    /// The tenant a swarm charges agents to when the spawn names none.
    pub const DEFAULT_TENANT: &'static str = "default";

    /// `agent` of the default tenant, in no workflow.
    pub fn new(agent: impl Into<String>) -> Self {
        Self {
            tenant: Self::DEFAULT_TENANT.to_string(),
            workflow: None,
            agent: agent.into(),
        }
    }

    /// Builder-style: the tenant.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = tenant.into();
        self
    }

    /// Builder-style: the workflow.
    pub fn workflow(mut self, workflow: impl Into<String>) -> Self {
        self.workflow = Some(workflow.into());
        self
    }

    /// The [`Scope`] this identity spends in (no model): what a budget or
    /// a quota for exactly this agent selects.
    pub fn scope(&self) -> Scope {
        Scope {
            tenant: Some(self.tenant.clone()),
            workflow: self.workflow.clone(),
            agent: Some(self.agent.clone()),
            model: None,
        }
    }

    /// Stamps `meta` with this identity (tenant, workflow, agent), keeping
    /// its model and labels.
    pub fn stamp(&self, meta: &mut UsageMeta) {
        let model = meta.scope.model.take();
        meta.scope = Scope { model, ..self.scope() };
    }
}

/// An agent's LLM client: the swarm's gateway, with every request stamped
/// with the agent's [`Identity`] (so its usage lands in the ledger, its
/// budgets and quotas are charged, and `llm.max_concurrent_per_agent`
/// bounds its calls, without the agent passing who it is).
#[derive(Debug, Clone)]
pub struct AgentLlm {
    gateway: GatewayHandle,
    identity: Identity,
}

impl AgentLlm {
    pub(crate) fn new(gateway: GatewayHandle, identity: Identity) -> Self {
        Self { gateway, identity }
    }

    /// Runs `request` through the gateway as this agent (any tenant,
    /// workflow or agent already in its `meta` is replaced).
    pub async fn complete(&self, mut request: LlmRequest) -> Result<LlmResponse, GatewayError> {
        self.identity.stamp(&mut request.meta);
        self.gateway.complete(request).await
    }

    /// Whom calls are charged to.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The gateway itself (its stats and catalogue).
    pub fn gateway(&self) -> &GatewayHandle {
        &self.gateway
    }
}

/// The agent was not spawned through a swarm with an LLM gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no LLM gateway: spawn the agent through a Swarm whose configuration declares LLM providers and models")]
pub struct NoLlm;

/// What a swarm adds to an agent's context.
///
/// ```no_run
/// use nexus_swarm_actors::swarm::SwarmContext;
/// use nexus_swarm_actors::llm::LlmRequest;
/// use nexus_swarm_runtime::prelude::*;
///
/// struct Writer;
///
/// impl Agent for Writer {
///     type Msg = (String, Reply<String>);
///     type State = ();
///
///     async fn init(&self, _ctx: &AgentContext<Self::Msg>) -> Result<(), HandlerError> {
///         Ok(())
///     }
///
///     async fn handle(&self, ctx: &AgentContext<Self::Msg>, (topic, reply): Self::Msg, _: &mut ()) -> Result<(), HandlerError> {
///         let answer = ctx.llm()?.complete(LlmRequest::user(topic)).await?;
///         reply.send(answer.content);
///         Ok(())
///     }
/// }
/// ```
pub trait SwarmContext {
    /// The agent's LLM client, or [`NoLlm`] when the swarm has no gateway.
    fn llm(&self) -> Result<&AgentLlm, NoLlm>;

    /// Whom the agent's usage is charged to (`None` outside a swarm).
    fn identity(&self) -> Option<&Identity>;
}

impl<M: Send + 'static> SwarmContext for AgentContext<M> {
    fn llm(&self) -> Result<&AgentLlm, NoLlm> {
        self.extension::<AgentLlm>().ok_or(NoLlm)
    }

    fn identity(&self) -> Option<&Identity> {
        self.extension::<Identity>()
    }
}
