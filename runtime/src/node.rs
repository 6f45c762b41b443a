//! [`Node`]: one node's supervision tree and the entry point for spawning
//! agents and pools.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use ractor::{Actor, ActorCell, ActorRef};
use tokio::task::JoinHandle;

use crate::agent::Agent;
use crate::agent_ref::AgentRef;
use crate::config::{MailboxConfig, NexusConfig};
use crate::error::{Error, SpawnError};
use crate::host::{AgentHost, HostMsg};
use crate::mailbox::Mailbox;
use crate::pool::{AgentPool, PoolMsg, PoolRef};
use crate::supervisor::{
    ChildInfo, ChildSpec, NodeExit, NodeSupervisor, NodeSupervisorArgs, RetireFn, StartFn, SupervisorMsg,
};

/// A running node: a [`NodeSupervisor`] and the configuration it was
/// started with.
///
/// ```
/// use nexus_swarm_runtime::prelude::*;
/// # struct Echo;
/// # impl Agent for Echo {
/// #     type Msg = Reply<&'static str>;
/// #     type State = ();
/// #     async fn init(&self, _: &AgentContext<Self::Msg>) -> Result<(), HandlerError> { Ok(()) }
/// #     async fn handle(&self, _: &AgentContext<Self::Msg>, r: Self::Msg, _: &mut ()) -> Result<(), HandlerError> {
/// #         r.send("pong");
/// #         Ok(())
/// #     }
/// # }
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let node = Node::start(NexusConfig::default()).await?;
/// let echo = node.spawn_agent("echo", Echo).await?;
/// let answer = echo.ask(|r| r, Priority::High, std::time::Duration::from_secs(1)).await?;
/// assert_eq!(answer, "pong");
/// node.shutdown(std::time::Duration::from_secs(5)).await;
/// # Ok(()) }
/// ```
pub struct Node {
    config: Arc<NexusConfig>,
    supervisor: ActorRef<SupervisorMsg>,
    join: Mutex<Option<JoinHandle<()>>>,
    exit: Arc<OnceLock<NodeExit>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("name", &self.config.node.name).finish()
    }
}

impl Node {
    /// Validates the configuration and starts the node supervisor.
    pub async fn start(config: NexusConfig) -> Result<Node, Error> {
        config.validate()?;
        let exit = Arc::new(OnceLock::new());
        let args = NodeSupervisorArgs {
            policy: config.supervision.clone(),
            exit: Arc::clone(&exit),
        };
        let (supervisor, join) = Actor::spawn(None, NodeSupervisor, args)
            .await
            .map_err(|e| SpawnError::Start {
                name: "node-supervisor".into(),
                reason: e.to_string(),
            })?;
        Ok(Node {
            config: Arc::new(config),
            supervisor,
            join: Mutex::new(Some(join)),
            exit,
        })
    }

    /// The node's configuration.
    pub fn config(&self) -> &NexusConfig {
        &self.config
    }

    /// The supervisor's cell, to link system actors under it.
    pub fn supervisor(&self) -> ActorCell {
        self.supervisor.get_cell()
    }

    /// Starts a supervised child from its spec.
    pub async fn start_child(&self, spec: ChildSpec) -> Result<ActorCell, SpawnError> {
        ractor::call!(self.supervisor, SupervisorMsg::StartChild, spec).map_err(|_| SpawnError::SupervisorGone)?
    }

    /// The supervised children and their restart counts.
    pub async fn children(&self) -> Vec<ChildInfo> {
        ractor::call!(self.supervisor, SupervisorMsg::Children).unwrap_or_default()
    }

    /// Spawns one supervised agent with the node's mailbox configuration.
    pub async fn spawn_agent<A: Agent>(&self, name: &str, agent: A) -> Result<AgentRef<A::Msg>, SpawnError> {
        self.spawn_agent_with(name, agent, self.config.mailbox.clone()).await
    }

    /// Spawns one supervised agent with its own mailbox configuration.
    pub async fn spawn_agent_with<A: Agent>(
        &self,
        name: &str,
        agent: A,
        mailbox: MailboxConfig,
    ) -> Result<AgentRef<A::Msg>, SpawnError> {
        mailbox.validate()?;
        let shared = Arc::new(Mailbox::new(name, &mailbox));
        let host = AgentHost {
            agent: Arc::new(agent),
            mailbox: Arc::clone(&shared),
            name: name.into(),
            worker: 0,
            drain_batch: mailbox.drain_batch,
            aging_after: mailbox.aging_after,
        };
        let start: StartFn = Arc::new(move |sup: ActorCell, restarts: u32| {
            let host = host.clone();
            Box::pin(async move {
                if restarts > 0 {
                    host.mailbox
                        .counters
                        .restarts
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                let (r, _) = Actor::spawn_linked(None, host, restarts, sup).await?;
                Ok(r.get_cell())
            })
        });
        let retire: RetireFn = Arc::new(|cell: &ActorCell| {
            // Already stopping if this fails; its termination is reported anyway.
            let _ = cell.send_message(HostMsg::Retire);
        });
        self.start_child(ChildSpec {
            name: name.to_string(),
            start,
            retire,
        })
        .await?;
        Ok(AgentRef::from_mailbox(shared))
    }

    /// Spawns a supervised pool of `size` workers with the node's mailbox
    /// configuration.
    pub async fn spawn_pool<A: Agent>(&self, name: &str, size: usize, agent: A) -> Result<PoolRef<A::Msg>, SpawnError> {
        self.spawn_pool_with(name, size, agent, self.config.mailbox.clone())
            .await
    }

    /// Spawns a supervised pool with its own mailbox configuration.
    pub async fn spawn_pool_with<A: Agent>(
        &self,
        name: &str,
        size: usize,
        agent: A,
        mailbox: MailboxConfig,
    ) -> Result<PoolRef<A::Msg>, SpawnError> {
        mailbox.validate()?;
        if size == 0 || size > crate::pool::MAX_POOL_SIZE {
            return Err(SpawnError::Start {
                name: name.to_string(),
                reason: format!(
                    "pool size must be between 1 and {}, got {size}",
                    crate::pool::MAX_POOL_SIZE
                ),
            });
        }
        let shared = AgentPool::<A>::new_shared(name, mailbox);
        let pool = AgentPool {
            agent: Arc::new(agent),
            shared: Arc::clone(&shared),
            supervision: self.config.supervision.clone(),
            initial: size,
        };
        let retire: RetireFn = Arc::new(|cell: &ActorCell| {
            // Already stopping if this fails; its termination is reported anyway.
            let _ = cell.send_message(PoolMsg::Retire);
        });
        let spec = ChildSpec {
            retire,
            ..ChildSpec::for_actor(name, pool, ())
        };
        self.start_child(spec).await?;
        Ok(AgentPool::<A>::handle(shared))
    }

    /// Retires every child (agents handle what they admitted), waits up to
    /// `timeout`, then stops the supervisor. Returns how the node ended.
    ///
    /// Agents still busy at the timeout are killed with the supervisor (a
    /// kill terminates the whole tree); what they had not handled is lost,
    /// which is what a timeout means.
    pub async fn shutdown(&self, timeout: Duration) -> NodeExit {
        let graceful = tokio::time::timeout(timeout, async {
            ractor::call!(self.supervisor, SupervisorMsg::Shutdown)
        })
        .await
        .is_ok_and(|r| r.is_ok());
        // Records a shutdown unless the supervisor already recorded how it ended.
        let _ = self.exit.set(NodeExit::Shutdown);
        if graceful {
            self.supervisor.stop(Some("shutdown".into()));
        } else {
            tracing::warn!(?timeout, "graceful shutdown timed out; killing the node");
            self.supervisor.kill();
        }
        self.wait().await
    }

    /// Waits until the supervisor has stopped, and says how it ended.
    pub async fn wait(&self) -> NodeExit {
        let join = self.join.lock().take();
        if let Some(join) = join {
            // A panic inside the supervisor task shows up as an escalation below.
            let _ = join.await;
        }
        self.exit
            .get()
            .cloned()
            .unwrap_or_else(|| NodeExit::Escalated("node supervisor stopped unexpectedly".into()))
    }
}
