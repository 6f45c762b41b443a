//! [`Node`]: one node's supervision tree and the entry point for spawning
//! agents and pools.
//!
//! The `ChildSpec` of an agent or a pool closes its lanes when dropped (and
//! drops what they still hold). The supervisor holds the spec for as long
//! as it may (re)start the child, so the lanes close exactly when the child
//! is gone for good: it stopped, it exceeded its restart intensity, the
//! node escalated, or the tree was killed. From then on senders get
//! `Closed` rather than having messages admitted that nothing will ever
//! handle. A child's name is released at the same moment.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;
use ractor::{Actor, ActorCell, ActorRef, ActorStatus, SpawnErr};
use tokio::sync::{Mutex, broadcast};
use tokio::task::JoinHandle;

use crate::agent::Agent;
use crate::agent_ref::AgentRef;
use crate::config::{MailboxConfig, NexusConfig, SupervisionConfig};
use crate::error::{Error, SpawnError};
use crate::host::{AgentHost, HostMsg};
use crate::mailbox::Mailbox;
use crate::pool::{AgentPool, PoolMsg, PoolRef, PoolShared};
use crate::spawn::{OnGone, SpawnOptions};
use crate::spill::{SpillConfig, SpillQueue};
use crate::supervisor::{
    Adoption, ChildInfo, ChildSpec, Domains, EventSink, GiveUp, NameClaim, Names, NodeEvent, NodeExit, NodeSupervisor,
    NodeSupervisorArgs, Registry, RootMsg, Strategy, SubtreeKind, Supervised, Supervisor, SupervisorArgs,
    SupervisorMsg, spawn_error,
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
    root: ActorRef<RootMsg>,
    domains: Domains,
    /// Names of agents, pools and groups (one namespace).
    names: Names,
    /// Names of system actors: their own namespace, so that a router may
    /// share its pool's name.
    system_names: Names,
    events: EventSink,
    /// The root supervisor's task. An async mutex held while awaiting it, so
    /// that concurrent [`Node::wait`]s all wait for the end (with a plain
    /// take-and-await, every waiter but the first returned at once, while
    /// the node still ran).
    join: Mutex<Option<JoinHandle<()>>>,
    exit: Arc<OnceLock<NodeExit>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("data_dir", &self.config.node.data_dir)
            .finish()
    }
}

/// One agent under supervision. Dropping it (the agent is gone for good)
/// closes its lanes and releases its name.
struct AgentChild<A: Agent> {
    host: AgentHost<A>,
    claim: NameClaim,
    on_gone: Option<OnGone>,
}

impl<A: Agent> Drop for AgentChild<A> {
    fn drop(&mut self) {
        // Gone for good: nothing will handle what is left, so drop it now
        // (a waiting ask fails at once) rather than when the last handle goes.
        self.host.mailbox.discard();
        if let Some(hook) = &self.on_gone {
            hook.run();
        }
    }
}

impl<A: Agent> Supervised for AgentChild<A> {
    fn name(&self) -> &str {
        &self.claim.name
    }

    fn kind(&self) -> SubtreeKind {
        SubtreeKind::Agent
    }

    fn start(&self, supervisor: ActorCell, restarts: u32) -> BoxFuture<'static, Result<ActorCell, SpawnErr>> {
        let host = self.host.clone();
        Box::pin(async move {
            if restarts > 0 {
                host.mailbox
                    .counters
                    .restarts
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            let (r, _) = Actor::spawn_linked(None, host, restarts, supervisor).await?;
            Ok(r.get_cell())
        })
    }

    fn retire(&self, cell: &ActorCell) {
        // Already stopping if this fails; its termination is reported anyway.
        let _ = cell.send_message(HostMsg::Retire);
    }

    fn discard(&self) -> u64 {
        self.host.mailbox.discard()
    }
}

/// One pool under supervision. Dropping it closes every worker's lanes and
/// releases its name.
struct PoolChild<A: Agent> {
    pool: AgentPool<A>,
    claim: NameClaim,
    on_gone: Option<OnGone>,
}

impl<A: Agent> Drop for PoolChild<A> {
    fn drop(&mut self) {
        // As for an agent (see `AgentChild`'s drop).
        AgentPool::<A>::discard_all(&self.pool.shared);
        if let Some(hook) = &self.on_gone {
            hook.run();
        }
    }
}

impl<A: Agent> Supervised for PoolChild<A> {
    fn name(&self) -> &str {
        &self.claim.name
    }

    fn kind(&self) -> SubtreeKind {
        SubtreeKind::Pool
    }

    fn start(&self, supervisor: ActorCell, _restarts: u32) -> BoxFuture<'static, Result<ActorCell, SpawnErr>> {
        let pool = self.pool.clone();
        Box::pin(async move {
            let (r, _) = Actor::spawn_linked(None, pool, (), supervisor).await?;
            Ok(r.get_cell())
        })
    }

    fn retire(&self, cell: &ActorCell) {
        // Already stopping if this fails; its termination is reported anyway.
        let _ = cell.send_message(PoolMsg::Retire);
    }

    fn discard(&self) -> u64 {
        AgentPool::<A>::discard_all(&self.pool.shared)
    }
}

/// A group's supervisor under `agents`.
struct GroupChild {
    args: SupervisorArgs,
    claim: NameClaim,
    current: Arc<arc_swap::ArcSwapOption<ActorRef<SupervisorMsg>>>,
}

impl Supervised for GroupChild {
    fn name(&self) -> &str {
        &self.claim.name
    }

    fn kind(&self) -> SubtreeKind {
        SubtreeKind::Group
    }

    fn start(&self, supervisor: ActorCell, restarts: u32) -> BoxFuture<'static, Result<ActorCell, SpawnErr>> {
        let args = self.args.clone();
        let current = Arc::clone(&self.current);
        Box::pin(async move {
            if restarts > 0 {
                // A group's supervisor fails on its own only through a bug;
                // its members went with it, so it is reported as a stopped
                // subtree rather than restarted empty.
                return Err(SpawnErr::StartupFailed(
                    "a group supervisor that failed is not restarted without its members".into(),
                ));
            }
            let (r, _) = Actor::spawn_linked(None, Supervisor, args, supervisor).await?;
            current.store(Some(Arc::new(r.clone())));
            Ok(r.get_cell())
        })
    }

    fn retire(&self, cell: &ActorCell) {
        if let Some(group) = self.current.load_full() {
            let group = (*group).clone();
            // The group retires its members, then stops; its termination is
            // what the parent waits for.
            tokio::spawn(async move {
                let _ = ractor::call!(group, SupervisorMsg::Shutdown);
            });
        } else {
            cell.stop(Some("shutdown".into()));
        }
    }
}

/// A named group of agents that live and die together (one-for-all): when
/// one member fails every member is restarted, one restart intensity counts
/// the whole group, and past it the whole group stops as one subtree (one
/// [`NodeEvent::SubtreeStopped`]). Other subtrees are not affected.
#[derive(Clone)]
pub struct GroupRef {
    name: Arc<str>,
    supervisor: Arc<arc_swap::ArcSwapOption<ActorRef<SupervisorMsg>>>,
    registry: Arc<Registry>,
    names: Names,
    mailbox: MailboxConfig,
}

impl std::fmt::Debug for GroupRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupRef").field("name", &self.name).finish()
    }
}

impl GroupRef {
    /// The group's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Spawns an agent as a member of the group (names are unique across
    /// the node).
    pub async fn spawn_agent<A: Agent>(&self, name: &str, agent: A) -> Result<AgentRef<A::Msg>, SpawnError> {
        let supervisor = self
            .supervisor
            .load_full()
            .map(|s| (*s).clone())
            .ok_or(SpawnError::SupervisorGone)?;
        spawn_agent_under(
            &supervisor,
            &self.registry,
            &self.names,
            name,
            agent,
            SpawnOptions::new().mailbox(self.mailbox.clone()),
        )
        .await
    }

    /// The members and their restart counts.
    pub async fn children(&self) -> Vec<ChildInfo> {
        match self.supervisor.load_full() {
            Some(s) => ractor::call!(*s, SupervisorMsg::Children).unwrap_or_default(),
            None => Vec::new(),
        }
    }
}

/// Starts an agent linked to `supervisor` from the caller's task and hands
/// it over (see "Adoption" in [`crate::supervisor`]): a spawn does not
/// queue behind the supervisor.
///
/// `opts.mailbox` must be set. The on-gone hook runs if the spawn fails.
async fn spawn_agent_under<A: Agent>(
    supervisor: &ActorRef<SupervisorMsg>,
    registry: &Registry,
    names: &Names,
    name: &str,
    agent: A,
    opts: SpawnOptions,
) -> Result<AgentRef<A::Msg>, SpawnError> {
    let on_gone = opts.on_gone.clone();
    let result = spawn_agent_inner(supervisor, registry, names, name, agent, opts).await;
    if result.is_err()
        && let Some(hook) = on_gone
    {
        hook.run();
    }
    result
}

async fn spawn_agent_inner<A: Agent>(
    supervisor: &ActorRef<SupervisorMsg>,
    registry: &Registry,
    names: &Names,
    name: &str,
    agent: A,
    opts: SpawnOptions,
) -> Result<AgentRef<A::Msg>, SpawnError> {
    let SpawnOptions {
        mailbox,
        signals,
        on_gone,
    } = opts;
    let mailbox = mailbox.unwrap_or_default();
    mailbox.validate()?;
    if is_gone(supervisor) {
        return Err(SpawnError::SupervisorGone);
    }
    let claim = names.claim(name)?;
    let shared = Arc::new(Mailbox::new(Arc::clone(&claim.name), &mailbox));
    if let Some(signals) = signals {
        // Fresh mailbox: the cell is empty, so this cannot fail.
        let _ = shared.signals.set(signals);
    }
    let host = AgentHost {
        agent: Arc::new(agent),
        mailbox: Arc::clone(&shared),
        name: Arc::clone(&claim.name),
        worker: 0,
        drain_batch: mailbox.drain_batch,
        aging_after: mailbox.aging_after,
    };
    let spec = ChildSpec::from_child(Arc::new(AgentChild { host, claim, on_gone }));
    adopt(supervisor, registry, name, spec).await?;
    Ok(AgentRef::from_mailbox(shared))
}

/// Whether a supervisor has stopped or is stopping (a freshly spawned one
/// may still be `Starting` while its loop comes up).
fn is_gone(supervisor: &ActorRef<SupervisorMsg>) -> bool {
    supervisor.get_status() >= ActorStatus::Draining
}

/// Starts `spec` linked to `supervisor` and files it in the supervisor's
/// registry (see "Adoption" in [`crate::supervisor`]).
async fn adopt(
    supervisor: &ActorRef<SupervisorMsg>,
    registry: &Registry,
    name: &str,
    spec: ChildSpec,
) -> Result<(), SpawnError> {
    let cell = match spec.start(supervisor.get_cell(), 0).await {
        Ok(cell) => cell,
        Err(_) if is_gone(supervisor) => return Err(SpawnError::SupervisorGone),
        Err(e) => return Err(spawn_error(name, e)),
    };
    match registry.adopt(&cell, spec) {
        Adoption::Supervised => {}
        Adoption::Retire(spec) => spec.inner.retire(&cell),
        Adoption::Replay(spec) => {
            if supervisor.cast(SupervisorMsg::Adopt(cell.clone(), spec)).is_err() {
                // The supervisor stopped in between: nothing would supervise it.
                cell.stop(Some("supervisor gone".into()));
                return Err(SpawnError::SupervisorGone);
            }
        }
    }
    Ok(())
}

/// A system actor's spec with the node-wide claim on its name.
struct Claimed {
    inner: Arc<dyn Supervised>,
    claim: NameClaim,
}

impl Supervised for Claimed {
    fn name(&self) -> &str {
        &self.claim.name
    }

    fn kind(&self) -> SubtreeKind {
        self.inner.kind()
    }

    fn start(&self, supervisor: ActorCell, restarts: u32) -> BoxFuture<'static, Result<ActorCell, SpawnErr>> {
        self.inner.start(supervisor, restarts)
    }

    fn retire(&self, cell: &ActorCell) {
        self.inner.retire(cell)
    }

    fn discard(&self) -> u64 {
        self.inner.discard()
    }
}

impl Node {
    /// Validates the configuration and starts the supervision tree: the
    /// root, and under it the `system` and `agents` subtrees (see
    /// [`crate::supervisor`]).
    pub async fn start(config: NexusConfig) -> Result<Node, Error> {
        config.validate()?;
        let exit = Arc::new(OnceLock::new());
        let domains = Arc::new(OnceLock::new());
        let events = EventSink::default();
        let args = NodeSupervisorArgs {
            policy: config.supervision.clone(),
            exit: Arc::clone(&exit),
            domains: Arc::clone(&domains),
            events: events.clone(),
        };
        let start_error = |e: ractor::SpawnErr| SpawnError::Start {
            name: "node-supervisor".into(),
            reason: e.to_string(),
        };
        let (root, join) = Actor::spawn(None, NodeSupervisor, args).await.map_err(start_error)?;
        let domains = domains.get().cloned().ok_or(SpawnError::SupervisorGone)?;
        Ok(Node {
            config: Arc::new(config),
            root,
            domains,
            names: Names::default(),
            system_names: Names::default(),
            events,
            join: Mutex::new(Some(join)),
            exit,
        })
    }

    /// The node's configuration.
    pub fn config(&self) -> &NexusConfig {
        &self.config
    }

    /// The `system` subtree's supervisor cell, to link system actors under it.
    pub fn supervisor(&self) -> ActorCell {
        self.domains.system.get_cell()
    }

    /// Receives every [`NodeEvent`] from now on: subtrees that exceeded
    /// their restart intensity and were stopped, and the node's escalation.
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    /// Starts a system actor from its spec, supervised in the `system`
    /// subtree (one-for-one; past its restart intensity the node stops).
    /// Its name must be free among the node's system actors.
    pub async fn start_child(&self, spec: ChildSpec) -> Result<ActorCell, SpawnError> {
        let claim = self.system_names.claim(spec.name())?;
        let spec = ChildSpec::from_child(Arc::new(Claimed {
            inner: spec.inner,
            claim,
        }));
        ractor::call!(self.domains.system, SupervisorMsg::StartChild, spec).map_err(|_| SpawnError::SupervisorGone)?
    }

    /// The agents, pools and groups of the node and their restart counts.
    pub async fn children(&self) -> Vec<ChildInfo> {
        ractor::call!(self.domains.agents, SupervisorMsg::Children).unwrap_or_default()
    }

    /// The system actors of the node and their restart counts.
    pub async fn system_children(&self) -> Vec<ChildInfo> {
        ractor::call!(self.domains.system, SupervisorMsg::Children).unwrap_or_default()
    }

    /// Spawns one supervised agent, its own failure domain, with the node's
    /// mailbox configuration. Its name must be free on the node.
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
        self.spawn_agent_opts(name, agent, SpawnOptions::new().mailbox(mailbox))
            .await
    }

    /// Spawns one supervised agent with [`SpawnOptions`] (its mailbox
    /// configuration, else the node's; signals; an on-gone hook, which also
    /// runs if this fails).
    pub async fn spawn_agent_opts<A: Agent>(
        &self,
        name: &str,
        agent: A,
        mut opts: SpawnOptions,
    ) -> Result<AgentRef<A::Msg>, SpawnError> {
        if opts.mailbox.is_none() {
            opts.mailbox = Some(self.config.mailbox.clone());
        }
        spawn_agent_under(
            &self.domains.agents,
            &self.domains.agents_registry,
            &self.names,
            name,
            agent,
            opts,
        )
        .await
    }

    /// Starts a named group: agents spawned through the returned
    /// [`GroupRef`] live and die together (see there). The group's restart
    /// intensity is the node's `[supervision]`.
    pub async fn spawn_group(&self, name: &str) -> Result<GroupRef, SpawnError> {
        self.spawn_group_with(name, self.config.supervision.clone()).await
    }

    /// [`Node::spawn_group`] with its own restart intensity.
    pub async fn spawn_group_with(&self, name: &str, policy: SupervisionConfig) -> Result<GroupRef, SpawnError> {
        let claim = self.names.claim(name)?;
        let current = Arc::new(arc_swap::ArcSwapOption::empty());
        let registry = Arc::new(Registry::new(policy.clone()));
        let args = SupervisorArgs {
            name: Arc::clone(&claim.name),
            policy,
            strategy: Strategy::OneForAll,
            give_up: GiveUp::Escalate,
            events: self.events.clone(),
            registry: Arc::clone(&registry),
        };
        let group_name = Arc::clone(&claim.name);
        let spec = ChildSpec::from_child(Arc::new(GroupChild {
            args,
            claim,
            current: Arc::clone(&current),
        }));
        adopt(&self.domains.agents, &self.domains.agents_registry, name, spec).await?;
        Ok(GroupRef {
            name: group_name,
            supervisor: current,
            registry,
            names: self.names.clone(),
            mailbox: self.config.mailbox.clone(),
        })
    }

    /// Spawns a supervised pool of `size` workers, its own failure domain,
    /// with the node's mailbox configuration. Each worker has its own
    /// state. Its name must be free on the node.
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
        self.spawn_pool_opts(name, size, agent, SpawnOptions::new().mailbox(mailbox))
            .await
    }

    /// Spawns a supervised pool with [`SpawnOptions`] (its workers' mailbox
    /// configuration, else the node's; signals shared by every worker; an
    /// on-gone hook for the pool, which also runs if this fails).
    pub async fn spawn_pool_opts<A: Agent>(
        &self,
        name: &str,
        size: usize,
        agent: A,
        opts: SpawnOptions,
    ) -> Result<PoolRef<A::Msg>, SpawnError> {
        let on_gone = opts.on_gone.clone();
        let result = self.spawn_pool_inner(name, size, agent, opts, None).await;
        if result.is_err()
            && let Some(hook) = on_gone
        {
            hook.run();
        }
        result
    }

    /// Spawns a supervised pool (as [`Self::spawn_pool_opts`]) whose low
    /// lane spills to disk when every worker's low lane is full, instead of
    /// making senders wait (see [`crate::spill`]). Opening the spill first
    /// queues what an earlier process left in `spill.dir`, which the
    /// workers deliver before newer low messages. Fails with
    /// [`SpawnError::Spill`] if the directory is in use or damaged.
    ///
    /// ```
    /// use std::time::Duration;
    /// use nexus_swarm_runtime::prelude::*;
    /// use nexus_swarm_runtime::spill::SpillConfig;
    ///
    /// struct Logger;
    ///
    /// impl Agent for Logger {
    ///     type Msg = String;
    ///     type State = Vec<String>;
    ///
    ///     async fn init(&self, _ctx: &AgentContext<String>) -> Result<Vec<String>, HandlerError> {
    ///         Ok(Vec::new())
    ///     }
    ///
    ///     async fn handle(&self, _ctx: &AgentContext<String>, line: String, seen: &mut Vec<String>) -> Result<(), HandlerError> {
    ///         seen.push(line);
    ///         Ok(())
    ///     }
    /// }
    ///
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = std::env::temp_dir().join(format!("spill-node-doc-{}", std::process::id()));
    /// let node = Node::start(NexusConfig::default()).await?;
    /// let mailbox = MailboxConfig::default().with_capacity(2);
    /// let pool = node
    ///     .spawn_spilling_pool("logger", 1, Logger, SpawnOptions::new().mailbox(mailbox), SpillConfig::new(&dir))
    ///     .await?;
    /// for i in 0..10 {
    ///     // Never waits: past the lane's 2 slots, lines go to disk.
    ///     pool.try_send(format!("line {i}"), Priority::Low)?;
    /// }
    /// node.shutdown(Duration::from_secs(5)).await;
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok(()) }
    /// ```
    pub async fn spawn_spilling_pool<A: Agent>(
        &self,
        name: &str,
        size: usize,
        agent: A,
        opts: SpawnOptions,
        spill: SpillConfig,
    ) -> Result<PoolRef<A::Msg>, SpawnError>
    where
        A::Msg: serde::Serialize + serde::de::DeserializeOwned,
    {
        let on_gone = opts.on_gone.clone();
        let result = async {
            spill.validate()?;
            let queue = SpillQueue::open(&spill).map_err(|source| SpawnError::Spill {
                name: name.to_string(),
                source,
            })?;
            self.spawn_pool_inner(name, size, agent, opts, Some(Arc::new(queue)))
                .await
        }
        .await;
        if result.is_err()
            && let Some(hook) = on_gone
        {
            hook.run();
        }
        result
    }

    async fn spawn_pool_inner<A: Agent>(
        &self,
        name: &str,
        size: usize,
        agent: A,
        opts: SpawnOptions,
        spill: Option<Arc<SpillQueue<A::Msg>>>,
    ) -> Result<PoolRef<A::Msg>, SpawnError> {
        let SpawnOptions {
            mailbox,
            signals,
            on_gone,
        } = opts;
        let mailbox = mailbox.unwrap_or_else(|| self.config.mailbox.clone());
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
        if is_gone(&self.domains.agents) {
            return Err(SpawnError::SupervisorGone);
        }
        let claim = self.names.claim(name)?;
        let shared: Arc<PoolShared<A::Msg>> =
            AgentPool::<A>::new_shared(Arc::clone(&claim.name), mailbox, signals, spill);
        let pool = AgentPool {
            agent: Arc::new(agent),
            shared: Arc::clone(&shared),
            supervision: self.config.supervision.clone(),
            initial: size,
        };
        let spec = ChildSpec::from_child(Arc::new(PoolChild { pool, claim, on_gone }));
        adopt(&self.domains.agents, &self.domains.agents_registry, name, spec).await?;
        Ok(AgentPool::<A>::handle(shared))
    }

    /// Retires every agent, pool and group (they handle what they admitted),
    /// then every system actor, waits up to `timeout`, then stops the
    /// supervisor. Returns how the node ended.
    ///
    /// Agents still busy at the timeout are killed with the supervisor (a
    /// kill terminates the whole tree); what they had not handled is lost,
    /// which is what a timeout means.
    pub async fn shutdown(&self, timeout: Duration) -> NodeExit {
        self.shutdown_or(timeout, || ()).await
    }

    /// [`Node::shutdown`], running `at_timeout` when the graceful part timed
    /// out, just before the kill: what agents' lanes still hold then is
    /// what the kill drops, so this is where to count it.
    pub async fn shutdown_or(&self, timeout: Duration, at_timeout: impl FnOnce()) -> NodeExit {
        let graceful = tokio::time::timeout(timeout, async { ractor::call!(self.root, RootMsg::Shutdown) })
            .await
            .is_ok_and(|r| r.is_ok());
        // Records a shutdown unless the supervisor already recorded how it ended.
        let _ = self.exit.set(NodeExit::Shutdown);
        if !graceful {
            at_timeout();
            tracing::warn!(?timeout, "graceful shutdown timed out; killing the node");
            self.root.kill();
        }
        self.wait().await
    }

    /// Waits until the supervisor has stopped, and says how it ended.
    pub async fn wait(&self) -> NodeExit {
        let mut join = self.join.lock().await;
        if let Some(handle) = join.as_mut() {
            // A panic inside the supervisor task shows up as an escalation below.
            let _ = handle.await;
            // Only now: a wait cancelled above leaves the handle for the next.
            *join = None;
        }
        self.exit
            .get()
            .cloned()
            .unwrap_or_else(|| NodeExit::Escalated("node supervisor stopped unexpectedly".into()))
    }
}
