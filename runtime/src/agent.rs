//! The [`Agent`] trait: what a user implements to write an agent.

use std::future::Future;
use std::sync::Arc;

use crate::agent_ref::AgentRef;
use crate::error::HandlerError;
use crate::resources::ResourceProfile;
use crate::spawn::Preemption;

/// An agent: a typed message handler with private state, hosted by the
/// runtime as a supervised `ractor` actor behind bounded priority lanes.
///
/// `self` is the agent's read-only configuration, shared by every worker of
/// a pool and kept across restarts; mutable data belongs in
/// [`Agent::State`], which [`Agent::init`] builds afresh on every (re)start.
///
/// A handler that returns an error or panics fails the agent: its
/// supervisor restarts it (a new `State` from `init`) and the messages
/// already admitted to its lanes are handled by the new instance. Only the
/// message being handled when the failure happened is not retried.
///
/// ```
/// use nexus_swarm_runtime::prelude::*;
///
/// struct Counter;
///
/// enum CounterMsg {
///     Add(u64),
///     Get(Reply<u64>),
/// }
///
/// impl Agent for Counter {
///     type Msg = CounterMsg;
///     type State = u64;
///
///     async fn init(&self, _ctx: &AgentContext<CounterMsg>) -> Result<u64, HandlerError> {
///         Ok(0)
///     }
///
///     async fn handle(
///         &self,
///         _ctx: &AgentContext<CounterMsg>,
///         msg: CounterMsg,
///         total: &mut u64,
///     ) -> Result<(), HandlerError> {
///         match msg {
///             CounterMsg::Add(n) => *total += n,
///             CounterMsg::Get(reply) => reply.send(*total),
///         }
///         Ok(())
///     }
/// }
/// ```
pub trait Agent: Send + Sync + Sized + 'static {
    /// The messages this agent handles. Needs no ractor traits: messages
    /// travel through the runtime's lanes, not a ractor mailbox.
    type Msg: Send + 'static;

    /// Mutable state, built by [`Agent::init`] on every (re)start.
    type State: Send + 'static;

    /// The resources this agent declares: requests, limits and QoS class.
    /// Default: best-effort, nothing requested.
    fn profile(&self) -> ResourceProfile {
        ResourceProfile::best_effort()
    }

    /// Builds the state when the agent starts or restarts.
    fn init(&self, ctx: &AgentContext<Self::Msg>) -> impl Future<Output = Result<Self::State, HandlerError>> + Send;

    /// Handles one message.
    fn handle(
        &self,
        ctx: &AgentContext<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// Called when the agent is preempted: the resources it holds were
    /// taken for a more important agent, and it will be stopped once
    /// `notice.grace` has passed. Runs between messages, with the state, so
    /// the agent can hand back or finish what it admitted (the messages
    /// already in its lanes are still handled before it stops). Also called
    /// on a worker restarted after the notice. Default: nothing.
    fn on_preempt(
        &self,
        ctx: &AgentContext<Self::Msg>,
        state: &mut Self::State,
        notice: &Preemption,
    ) -> impl Future<Output = ()> + Send {
        let _ = (ctx, state, notice);
        async {}
    }

    /// Called once when the agent stops normally (not after a failure).
    fn on_stop(&self, ctx: &AgentContext<Self::Msg>, state: &mut Self::State) -> impl Future<Output = ()> + Send {
        let _ = (ctx, state);
        async {}
    }
}

/// What an agent knows about itself while it runs.
pub struct AgentContext<M> {
    pub(crate) name: Arc<str>,
    pub(crate) worker: usize,
    pub(crate) restarts: u32,
    pub(crate) myself: AgentRef<M>,
}

impl<M> std::fmt::Debug for AgentContext<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentContext")
            .field("name", &self.name)
            .field("worker", &self.worker)
            .field("restarts", &self.restarts)
            .finish()
    }
}

impl<M: Send + 'static> AgentContext<M> {
    /// The agent's name (a pool's workers share the pool's name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The worker index within its pool (0 for a single agent).
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// How many times this agent has been restarted.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// A handle to this agent's own lanes (to send itself messages).
    pub fn myself(&self) -> &AgentRef<M> {
        &self.myself
    }

    /// The value of type `T` attached at spawn (see
    /// [`crate::spawn::Extensions`]), if any.
    pub fn extension<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.myself.mailbox.signals.get()?.extensions().get::<T>()
    }

    /// The preemption notice, once the agent has one: it will be stopped
    /// when the notice's grace period has passed.
    pub fn preemption(&self) -> Option<&Preemption> {
        self.myself.mailbox.signals.get()?.preemption()
    }
}
