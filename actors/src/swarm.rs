//! [`Swarm`]: a node with every system actor started from configuration
//! and supervised, and agents whose declared resources are admitted,
//! charged and held to their limits.
//!
//! # What starts
//!
//! [`Swarm::start`] validates the configuration, starts the node's
//! supervision tree and, as supervised children of its `system` subtree,
//! the quota keeper (`[quotas]`, usage in `<data_dir>/quotas.redb`), the
//! scheduler (`[scheduler]`, plus the pool [`AGENT_POOL`] holding the
//! node's capacity, `node.capacity`), the cost ledger (`[ledger]`,
//! `<data_dir>/ledger.redb`) and, when LLM providers and models are given
//! in code ([`SwarmBuilder::llm`]) or declared in configuration
//! (`[[llm.providers]]`, `[[llm.models]]`), the LLM gateway, which reserves
//! against the ledger's budgets and the quotas before each call and records
//! usage in the ledger, priced from the same catalogue; and, unless
//! `pressure.enabled` is false, the pressure detector ([`crate::pressure`]),
//! fed with the machine's CPU and memory use by the monitor and with every
//! scaling group's by the scaler, which applies the `[pressure]` section's
//! automated responses (by default, under high memory pressure, the
//! gateway's memory cache is emptied and best-effort pools scale in
//! first; see [`Swarm::pressure`]); unless `scaling.enabled` is false, the
//! scaler ([`Swarm::autoscale`] registers a pool with it; see
//! [`crate::scaler`]); unless `monitor.enabled` is false, the monitor
//! ([`Swarm::monitor`]), which watches every pool spawned through the swarm
//! ([`crate::monitor`]). The
//! routers the configuration declares (`[[routers]]`) start when their pool
//! is spawned through the swarm, and follow its resizes
//! ([`Swarm::router`]). A system actor
//! that fails is restarted by its supervisor with its state, and every
//! handle to it keeps working.
//!
//! # Admission
//!
//! Spawning through the swarm reads the agent's
//! [`profile`](nexus_swarm_runtime::agent::Agent::profile):
//!
//! - **Requests** (per worker) are asked of the scheduler in the agent
//!   pool, with the profile's QoS class. A pool's workers are asked for
//!   together, all or nothing (a pool of 8 that fits only 5 is not
//!   started); [`Swarm::resize_pool`] asks for the difference or gives it
//!   back. A profile with no requests needs no admission.
//! - **What does not fit** is refused at once with
//!   [`SwarmError::NotAdmitted`] (what is short, what is free, who holds it),
//!   or, with `node.admission_wait` above zero, waits up to that long; while
//!   it waits [`Swarm::admission`] says why.
//! - **Release**: the allocation is given back when the agent is gone for
//!   good (stopped, given up on by its supervisor, or torn down with the
//!   node), never on a restart.
//! - **Preemption**: a guaranteed agent that needs room takes it from
//!   best-effort agents (then the burst of burstable ones), as the
//!   scheduler decides. A preempted agent gets a
//!   [`Preemption`](nexus_swarm_runtime::spawn::Preemption) notice (its
//!   context's `preemption()`, its `on_preempt` hook) and is stopped after
//!   `node.preemption_grace`, handling what it had admitted first.
//! - **Limits**: an agent's LLM calls through its context
//!   ([`SwarmContext::llm`]) carry its [`Identity`] into the gateway, the
//!   quotas, the budgets and the ledger; `llm.max_concurrent_per_agent`
//!   bounds them. Its handler time is measured and exposed as millicores
//!   ([`Swarm::usage`]); an agent over its profile's CPU limit for a
//!   sustained period is throttled (see [`cpu`]).
//!
//! # Layout
//!
//! | file | what it holds |
//! |---|---|
//! | `swarm.rs` | [`Swarm`], [`SwarmBuilder`], [`SwarmError`], spawning |
//! | `swarm/admission.rs` | the table of admitted agents, statuses, shortfalls |
//! | `swarm/context.rs` | [`Identity`], [`AgentLlm`], [`SwarmContext`] |
//! | `swarm/cpu.rs` | CPU accounting and throttling decisions |
//! | `swarm/recommend.rs` | CPU request recommendations from observed use |
//! | `swarm/routers.rs` | routers declared in configuration, started over their pools |
//! | `swarm/responder.rs` | how the `[pressure]` responses act on the gateway and the scaler |

mod admission;
mod context;
pub mod cpu;
pub mod recommend;
mod responder;
mod routers;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use nexus_swarm_runtime::agent::Agent;
use nexus_swarm_runtime::agent_ref::AgentRef;
use nexus_swarm_runtime::config::NexusConfig;
use nexus_swarm_runtime::error::{PoolError, SpawnError};
use nexus_swarm_runtime::node::Node;
use nexus_swarm_runtime::pool::PoolRef;
use nexus_swarm_runtime::resources::{QosClass, ResourceKind, ResourceProfile, ResourceVector};
use nexus_swarm_runtime::spawn::{AgentSignals, Extensions, SpawnOptions};
use nexus_swarm_runtime::spill::SpillConfig;
use nexus_swarm_runtime::supervisor::NodeExit;
use nexus_swarm_runtime::usage::SpendGate;
use parking_lot::Mutex;
use tokio::sync::oneshot;
use tokio::time::Instant;

pub use admission::{AdmissionStatus, Holder, Refusal, Shortfall};
pub use context::{AgentLlm, Identity, NoLlm, SwarmContext};
pub use recommend::Recommendation;

use crate::cost_ledger::{CostLedger, CostLedgerArgs, LedgerError, LedgerHandle, LedgerOptions};
use crate::llm::{GatewayBuildError, ModelCatalogue};
use crate::llm_gateway::{GatewayHandle, LlmGateway, LlmGatewayArgs, ProviderEntry};
use crate::monitor::{Monitor, MonitorArgs, MonitorHandle};
use crate::perf_profile::{PerfProfile, PerfProfileError};
use crate::pressure::{PressureArgs, PressureDetector, PressureHandle};
use crate::quota_keeper::{QuotaError, QuotaHandle, QuotaKeeper, QuotaKeeperArgs};
use crate::router::{RouterError, RouterHandle};
use crate::scaler::{GroupSpec, Scaler, ScalerArgs, ScalerError, ScalerHandle, SwarmPool};
use crate::scheduler::{
    Decision, Notifier, PoolId, PoolSpec, RejectReason, RequestId, ResourceRequest, Scheduler, SchedulerArgs,
    SchedulerError, SchedulerEvent, SchedulerHandle,
};
use admission::{Control, Entry, Table};
use responder::SwarmResponder;
use routers::Routers;

/// The scheduler pool agents' requests are admitted in: the node's
/// capacity (`node.capacity`, else what the machine has).
pub const AGENT_POOL: &str = "agents";

/// Why a swarm could not start or an agent could not be spawned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SwarmError {
    /// The configuration is invalid, or the node's supervision tree did not start.
    #[error("the node did not start: {0}")]
    Node(Box<nexus_swarm_runtime::error::Error>),
    /// A system actor or an agent could not be started.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// The quota keeper refused its configuration or store.
    #[error("quota keeper: {0}")]
    Quota(#[from] QuotaError),
    /// The scheduler refused a request or its configuration.
    #[error("scheduler: {0}")]
    Scheduler(#[from] SchedulerError),
    /// The ledger could not open its store.
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    /// The LLM gateway could not be built.
    #[error("LLM gateway: {0}")]
    Gateway(Box<GatewayBuildError>),
    /// A pool could not be resized.
    #[error("pool: {0}")]
    Pool(#[from] PoolError),
    /// The scaler refused a scaling group.
    #[error("scaler: {0}")]
    Scaler(#[from] ScalerError),
    /// `scaling.profile` names a performance profile that cannot be read.
    #[error(transparent)]
    PerfProfile(#[from] PerfProfileError),
    /// Auto-scaling is off (`scaling.enabled = false`): no scaler runs.
    #[error("auto-scaling is disabled (scaling.enabled = false)")]
    ScalingDisabled,
    /// The agent's requests were not admitted.
    #[error("agent {name} was not admitted: {refusal}")]
    NotAdmitted {
        /// The agent's (or pool's) name.
        name: String,
        /// Why, with what is short and who holds it.
        refusal: Refusal,
    },
    /// The agent's profile is not one the scheduler can take (e.g. a
    /// guaranteed profile whose limits differ from its requests).
    #[error("agent {name} declares an invalid profile: {reason}")]
    InvalidProfile {
        /// The agent's (or pool's) name.
        name: String,
        /// Why.
        reason: String,
    },
    /// No agent or pool of that name was spawned through this swarm.
    #[error("no agent or pool named {0} in this swarm")]
    Unknown(String),
    /// No router of that name is declared in the configuration.
    #[error("no router named {0} is declared (`[[routers]]`)")]
    UnknownRouter(String),
    /// The router is declared, but its pool has not been spawned through
    /// this swarm yet.
    #[error("router {name} starts when its pool {pool} is spawned through the swarm")]
    RouterNotStarted {
        /// The router.
        name: String,
        /// The pool it routes to.
        pool: String,
    },
    /// The router routes messages of another type than the one asked for
    /// (or its pool was spawned again with another message type).
    #[error("router {0} routes another message type")]
    RouterMessageType(String),
    /// A declared router refused a change of its members.
    #[error("router: {0}")]
    Router(#[from] RouterError),
}

impl From<GatewayBuildError> for SwarmError {
    fn from(e: GatewayBuildError) -> Self {
        SwarmError::Gateway(Box::new(e))
    }
}

impl From<nexus_swarm_runtime::error::Error> for SwarmError {
    fn from(e: nexus_swarm_runtime::error::Error) -> Self {
        SwarmError::Node(Box::new(e))
    }
}

/// How [`Swarm::start`] builds the swarm; [`Swarm::builder`] makes one.
pub struct SwarmBuilder {
    config: NexusConfig,
    llm: Option<(ModelCatalogue, Vec<ProviderEntry>)>,
    gateway_seed: u64,
    gates: Vec<Arc<dyn SpendGate>>,
}

impl std::fmt::Debug for SwarmBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwarmBuilder")
            .field("data_dir", &self.config.node.data_dir)
            .field("llm", &self.llm.as_ref().map(|(c, p)| (c.models.len(), p.len())))
            .finish()
    }
}

impl SwarmBuilder {
    /// The LLM gateway's models and providers given in code (a simulated
    /// provider in a test, a provider of your own), with the `[llm]` and
    /// `[cache]` sections' settings.
    pub fn llm(mut self, catalogue: ModelCatalogue, providers: Vec<ProviderEntry>) -> Self {
        self.llm = Some((catalogue, providers));
        self
    }

    /// One more gate every LLM call must pass, after the ledger's budgets
    /// and the quotas (`nexus node` adds a cluster-wide limit's gate).
    /// Without LLM providers there is no call to gate, and it is unused.
    pub fn gate(mut self, gate: Arc<dyn SpendGate>) -> Self {
        self.gates.push(gate);
        self
    }

    /// The seed of the gateway's routing shuffles and backoff jitter
    /// (default 0), for runs that repeat exactly.
    pub fn gateway_seed(mut self, seed: u64) -> Self {
        self.gateway_seed = seed;
        self
    }

    /// Starts the swarm.
    pub async fn start(self) -> Result<Swarm, SwarmError> {
        Swarm::start_with(self).await
    }
}

/// Names of a swarm's system actors (unique among the swarms of a process,
/// so that logs tell them apart).
fn system_name(swarm: u64, actor: &str) -> String {
    format!("swarm-{swarm}.{actor}")
}

static NEXT_SWARM: AtomicU64 = AtomicU64::new(1);

/// The system actors [`Swarm::start_actors`] started.
type Started = (
    QuotaHandle,
    SchedulerHandle,
    LedgerHandle,
    Option<GatewayHandle>,
    Option<PressureHandle>,
    Option<ScalerHandle>,
);

struct Inner {
    node: Node,
    quotas: QuotaHandle,
    scheduler: SchedulerHandle,
    ledger: LedgerHandle,
    gateway: Option<GatewayHandle>,
    pressure: Option<PressureHandle>,
    scaler: Option<ScalerHandle>,
    monitor: Option<MonitorHandle>,
    table: Mutex<Table>,
    next_request: AtomicU64,
    admission_wait: Duration,
    grace: Duration,
    routers: Routers,
}

/// A node with its system actors, admitting agents by their profiles (see
/// the module docs). Cheap to clone.
#[derive(Clone)]
pub struct Swarm {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Swarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Swarm")
            .field("node", &self.inner.node)
            .field("gateway", &self.inner.gateway.is_some())
            .finish()
    }
}

impl Swarm {
    /// Starts a swarm from `config` (see the module docs for what starts).
    pub async fn start(config: NexusConfig) -> Result<Swarm, SwarmError> {
        Self::builder(config).start().await
    }

    /// A builder, to give LLM providers in code.
    pub fn builder(config: NexusConfig) -> SwarmBuilder {
        SwarmBuilder {
            config,
            llm: None,
            gateway_seed: 0,
            gates: Vec::new(),
        }
    }

    async fn start_with(builder: SwarmBuilder) -> Result<Swarm, SwarmError> {
        let SwarmBuilder {
            config,
            llm,
            gateway_seed,
            gates,
        } = builder;
        let id = NEXT_SWARM.fetch_add(1, Ordering::Relaxed);
        // Opened before the node starts, so a bad store or section is an
        // error here and nothing is left running.
        let quota_args = QuotaKeeperArgs::from_config(&config)?;
        let scheduler_args = SchedulerArgs::from_config(&config.scheduler)?;
        let ledger_args = CostLedgerArgs::open(LedgerOptions::from_config(&config)).await?;
        let capacity = config.node.resolved_capacity();
        let (admission_wait, grace) = (config.node.admission_wait, config.node.preemption_grace);
        let routers = Routers::new(&config);
        // Providers and models given in code, else those the configuration
        // declares (built here, so a missing API key variable is an error
        // before anything starts), else no gateway.
        let llm = match llm {
            Some((catalogue, providers)) => Some(LlmGatewayArgs::from_config_with_catalogue(
                &config, catalogue, providers,
            )),
            None if !config.llm.models.is_empty() || !config.llm.providers.is_empty() => {
                Some(LlmGatewayArgs::from_config(&config)?)
            }
            None => None,
        }
        .map(|mut args| {
            args.seed = gateway_seed;
            // Put after the ledger's and the quotas' gates by start_actors.
            args.gates.extend(gates);
            args
        });
        let node = Node::start(config.clone()).await?;
        let started = Self::start_actors(
            &node,
            id,
            &config,
            llm,
            quota_args,
            scheduler_args,
            ledger_args,
            capacity,
        )
        .await;
        let (quotas, scheduler, ledger, gateway, pressure, scaler) = match started {
            Ok(actors) => actors,
            Err(e) => {
                node.shutdown(Duration::from_secs(5)).await;
                return Err(e);
            }
        };
        // Last, so a failure above leaves no monitor to stop.
        let monitor = if config.monitor.enabled {
            let mut args = MonitorArgs::from_config(&config.monitor);
            if let Some(p) = &pressure {
                args = args.pressure(p.clone());
            }
            match Monitor::start(&node, &system_name(id, "monitor"), args).await {
                Ok(m) => Some(m),
                Err(e) => {
                    node.shutdown(Duration::from_secs(5)).await;
                    return Err(e.into());
                }
            }
        } else {
            None
        };
        let swarm = Swarm {
            inner: Arc::new(Inner {
                node,
                monitor,
                quotas,
                scheduler,
                ledger,
                gateway,
                pressure,
                scaler,
                table: Mutex::new(Table::default()),
                next_request: AtomicU64::new(1),
                admission_wait,
                grace,
                routers,
            }),
        };
        swarm.watch_cpu();
        Ok(swarm)
    }

    #[allow(clippy::too_many_arguments)]
    async fn start_actors(
        node: &Node,
        id: u64,
        config: &NexusConfig,
        llm: Option<LlmGatewayArgs>,
        quota_args: QuotaKeeperArgs,
        scheduler_args: SchedulerArgs,
        ledger_args: CostLedgerArgs,
        capacity: ResourceVector,
    ) -> Result<Started, SwarmError> {
        let quotas = QuotaKeeper::start(node, &system_name(id, "quota-keeper"), quota_args).await?;
        let scheduler = Scheduler::start(node, &system_name(id, "scheduler"), scheduler_args).await?;
        scheduler.register_pool(PoolSpec::new(AGENT_POOL, capacity)).await?;
        let ledger = CostLedger::start(node, &system_name(id, "cost-ledger"), ledger_args).await?;
        let gateway = match llm {
            Some(mut args) => {
                // One price book: the ledger prices usage by the catalogue's prices.
                ledger.use_catalogue_prices(&args.catalogue).await?;
                let extra = std::mem::take(&mut args.gates);
                let mut args = args
                    .gate(Arc::new(ledger.budgets()))
                    .gate(Arc::new(quotas.clone()))
                    .sink(Arc::new(ledger.clone()));
                for gate in extra {
                    args = args.gate(gate);
                }
                Some(LlmGateway::start(node, &system_name(id, "llm-gateway"), args).await?)
            }
            None => None,
        };
        let responder = SwarmResponder::new(gateway.clone());
        let pressure = if config.pressure.enabled {
            let args = PressureArgs::from_config(&config.pressure).responder(responder.clone());
            Some(PressureDetector::start(node, &system_name(id, "pressure"), args).await?)
        } else {
            None
        };
        let scaler = if config.scaling.enabled {
            let mut args = ScalerArgs::from_config(&config.scaling);
            if let Some(p) = &pressure {
                args = args.pressure(p.clone());
            }
            if let Some(path) = &config.scaling.profile {
                args = args.max_from_profile(&PerfProfile::load(path)?);
            }
            let scaler = Scaler::start(node, &system_name(id, "scaler"), args).await?;
            // Set once, before any sample could engage a response.
            let _ = responder.scaler.set(scaler.clone());
            Some(scaler)
        } else {
            None
        };
        Ok((quotas, scheduler, ledger, gateway, pressure, scaler))
    }

    /// The node (its supervision tree, events, plain spawns).
    pub fn node(&self) -> &Node {
        &self.inner.node
    }

    /// The quota keeper.
    pub fn quotas(&self) -> &QuotaHandle {
        &self.inner.quotas
    }

    /// The scheduler.
    pub fn scheduler(&self) -> &SchedulerHandle {
        &self.inner.scheduler
    }

    /// The cost ledger.
    pub fn ledger(&self) -> &LedgerHandle {
        &self.inner.ledger
    }

    /// The LLM gateway, when the swarm has providers and models.
    pub fn gateway(&self) -> Option<&GatewayHandle> {
        self.inner.gateway.as_ref()
    }

    /// The scaler, unless `scaling.enabled` is false.
    pub fn scaler(&self) -> Option<&ScalerHandle> {
        self.inner.scaler.as_ref()
    }

    /// The pressure detector, unless `pressure.enabled` is false: fed by
    /// the monitor (the machine's CPU and memory) and the scaler (each
    /// group's), it applies the `[pressure]` responses.
    pub fn pressure(&self) -> Option<&PressureHandle> {
        self.inner.pressure.as_ref()
    }

    /// The monitor, unless `monitor.enabled` is false. It watches every
    /// pool spawned through the swarm.
    pub fn monitor(&self) -> Option<&MonitorHandle> {
        self.inner.monitor.as_ref()
    }

    /// Scales `pool` (spawned through this swarm) by its load with the
    /// `[scaling]` section's policy; see [`Swarm::autoscale_with`].
    pub async fn autoscale<M: Send + 'static>(&self, pool: &PoolRef<M>) -> Result<(), SwarmError> {
        let spec = self.scaler().ok_or(SwarmError::ScalingDisabled)?.defaults().clone();
        self.autoscale_with(pool, spec).await
    }

    /// Scales `pool` (spawned through this swarm) by its load with `spec`:
    /// each scale-out is admitted as [`Swarm::resize_pool`] admits a
    /// growth, so it never exceeds the node's capacity.
    pub async fn autoscale_with<M: Send + 'static>(
        &self,
        pool: &PoolRef<M>,
        spec: GroupSpec,
    ) -> Result<(), SwarmError> {
        let scaler = self.scaler().ok_or(SwarmError::ScalingDisabled)?;
        if !self.inner.table.lock().entries.contains_key(pool.name()) {
            return Err(SwarmError::Unknown(pool.name().to_string()));
        }
        Ok(scaler.register(SwarmPool::new(self, pool.clone()), spec).await?)
    }

    /// A reference that does not keep the swarm alive (held by its own
    /// system actors, such as the scaler's groups).
    pub fn downgrade(&self) -> WeakSwarm {
        WeakSwarm(Arc::downgrade(&self.inner))
    }

    /// Spawns an agent of the default tenant, admitting its profile's
    /// requests first (see the module docs).
    pub async fn spawn_agent<A: Agent>(&self, name: &str, agent: A) -> Result<AgentRef<A::Msg>, SwarmError> {
        self.spawn_agent_as(Identity::new(name), agent).await
    }

    /// Spawns an agent charged to `identity` (its tenant and workflow; its
    /// `agent` is the agent's name).
    pub async fn spawn_agent_as<A: Agent>(&self, identity: Identity, agent: A) -> Result<AgentRef<A::Msg>, SwarmError> {
        let name = identity.agent.clone();
        let profile = agent.profile();
        let (opts, signals) = self.admit(&identity, &profile, 1).await?;
        let agent_ref = self.inner.node.spawn_agent_opts(&name, agent, opts).await?;
        let (preempt_ref, stop_ref) = (agent_ref.clone(), agent_ref.clone());
        self.attach(
            &name,
            &signals,
            Control {
                preempt: Box::new(move |notice| {
                    preempt_ref.preempt(notice);
                }),
                stop: Arc::new(move || stop_ref.stop()),
            },
        );
        Ok(agent_ref)
    }

    /// Spawns a pool of `size` workers of the default tenant, admitting
    /// `size` times its profile's requests all or nothing.
    pub async fn spawn_pool<A: Agent>(&self, name: &str, size: usize, agent: A) -> Result<PoolRef<A::Msg>, SwarmError> {
        self.spawn_pool_as(Identity::new(name), size, agent).await
    }

    /// [`Swarm::spawn_pool`] charged to `identity`.
    pub async fn spawn_pool_as<A: Agent>(
        &self,
        identity: Identity,
        size: usize,
        agent: A,
    ) -> Result<PoolRef<A::Msg>, SwarmError> {
        let name = identity.agent.clone();
        let workers = u64::try_from(size).unwrap_or(u64::MAX);
        let profile = agent.profile();
        let (opts, signals) = self.admit(&identity, &profile, workers).await?;
        let pool = self.inner.node.spawn_pool_opts(&name, size, agent, opts).await?;
        self.pool_spawned(&name, &signals, pool).await
    }

    /// [`Swarm::spawn_pool`] whose low lanes spill to disk when full
    /// (see [`nexus_swarm_runtime::spill`]): low-priority messages past the
    /// workers' lanes go to a durable FIFO in `spill.dir` instead of making
    /// senders wait, and are delivered in order, across restarts, once per
    /// acknowledged handling. The message type must be serde-encodable.
    pub async fn spawn_spilling_pool<A: Agent>(
        &self,
        name: &str,
        size: usize,
        agent: A,
        spill: SpillConfig,
    ) -> Result<PoolRef<A::Msg>, SwarmError>
    where
        A::Msg: serde::Serialize + serde::de::DeserializeOwned,
    {
        self.spawn_spilling_pool_as(Identity::new(name), size, agent, spill)
            .await
    }

    /// [`Swarm::spawn_spilling_pool`] charged to `identity`.
    pub async fn spawn_spilling_pool_as<A: Agent>(
        &self,
        identity: Identity,
        size: usize,
        agent: A,
        spill: SpillConfig,
    ) -> Result<PoolRef<A::Msg>, SwarmError>
    where
        A::Msg: serde::Serialize + serde::de::DeserializeOwned,
    {
        let name = identity.agent.clone();
        let workers = u64::try_from(size).unwrap_or(u64::MAX);
        let profile = agent.profile();
        let (opts, signals) = self.admit(&identity, &profile, workers).await?;
        let pool = self
            .inner
            .node
            .spawn_spilling_pool(&name, size, agent, opts, spill)
            .await?;
        self.pool_spawned(&name, &signals, pool).await
    }

    /// What follows a pool's spawn: the monitor watches it, its control is
    /// attached to its admission, and the routers declared over it start.
    async fn pool_spawned<M: Send + 'static>(
        &self,
        name: &str,
        signals: &Arc<AgentSignals>,
        pool: PoolRef<M>,
    ) -> Result<PoolRef<M>, SwarmError> {
        if let Some(monitor) = &self.inner.monitor {
            // The swarm refused a taken name above, so the monitor has none
            // of this name: a refusal here cannot happen and is ignored.
            let _ = monitor.watch_pool(&pool);
        }
        let (preempt_ref, stop_ref) = (pool.clone(), pool.clone());
        self.attach(
            name,
            signals,
            Control {
                preempt: Box::new(move |notice| {
                    preempt_ref.preempt(notice);
                }),
                // Gone already if this fails: nothing to stop.
                stop: Arc::new(move || drop(stop_ref.stop())),
            },
        );
        if let Err(e) = self.inner.routers.pool_spawned(&self.inner.node, &pool).await {
            // Spawned whole or not at all: a declared router that cannot
            // start takes the pool down with it (its allocation is given back).
            let _ = pool.stop();
            return Err(e);
        }
        Ok(pool)
    }

    /// The router declared as `name` in the configuration (`[[routers]]`),
    /// started when its pool was spawned through this swarm; `M` is the
    /// pool's message type.
    pub fn router<M: Send + 'static>(&self, name: &str) -> Result<RouterHandle<M>, SwarmError> {
        self.inner.routers.get(name)
    }

    /// Resizes a pool spawned through this swarm: growing asks the
    /// scheduler for the new workers' requests first (all or nothing,
    /// refused as a spawn would be, without waiting), shrinking gives them
    /// back once the retired workers are done.
    ///
    /// Routers declared over the pool (`[[routers]]`) follow: new workers
    /// become members, retired ones leave.
    pub async fn resize_pool<M: Send + 'static>(&self, pool: &PoolRef<M>, size: usize) -> Result<usize, SwarmError> {
        let resized = self.resize_admitted(pool, size).await?;
        self.inner.routers.pool_resized(pool.name()).await?;
        Ok(resized)
    }

    async fn resize_admitted<M: Send + 'static>(&self, pool: &PoolRef<M>, size: usize) -> Result<usize, SwarmError> {
        let name = pool.name().to_string();
        let (per_worker, workers, qos, tenant) = {
            let table = self.inner.table.lock();
            let e = table
                .entries
                .get(name.as_str())
                .ok_or_else(|| SwarmError::Unknown(name.clone()))?;
            (e.per_worker.clone(), e.workers, e.qos, e.tenant.clone())
        };
        let target = u64::try_from(size).unwrap_or(u64::MAX);
        if per_worker.is_empty() || target == workers {
            // Nothing requested per worker: nothing to admit.
            let resized = pool.resize(size).await?;
            if let Some(e) = self.inner.table.lock().entries.get_mut(name.as_str()) {
                e.workers = target;
            }
            return Ok(resized);
        }
        if target > workers {
            let more = scaled(&per_worker, target - workers, &name)?;
            let id = RequestId(self.inner.next_request.fetch_add(1, Ordering::Relaxed));
            let key: Arc<str> = Arc::from(name.as_str());
            self.inner.table.lock().by_request.insert(id, Arc::clone(&key));
            let req = ResourceRequest::new(id.0, name.as_str(), more.clone())
                .tenant(tenant.as_str())
                .pool(AGENT_POOL)
                .qos(qos);
            let decision = self.inner.scheduler.request(req, self.notifier(&key)).await;
            let refusal = match decision {
                Ok(Decision::Allocated(_)) => None,
                Ok(Decision::Rejected { reason, .. }) => Some(Ok(reason)),
                // Never reserved: the request has no deadline.
                Ok(Decision::Reserved { .. }) => Some(Ok(RejectReason::Insufficient)),
                Err(e) => Some(Err(e)),
            };
            if let Some(refusal) = refusal {
                self.inner.table.lock().by_request.remove(&id);
                return Err(match refusal {
                    Ok(reason) => self.refused(&name, &more, &reason).await,
                    Err(e) => e.into(),
                });
            }
            let resized = pool.resize(size).await;
            let kept = resized.is_ok() && {
                let mut table = self.inner.table.lock();
                match table.entries.get_mut(name.as_str()) {
                    Some(e) => {
                        e.allocs.push((id, target - workers));
                        e.workers = target;
                        e.granted = e.granted.checked_add(&more).unwrap_or_else(|_| e.granted.clone());
                        true
                    }
                    None => false,
                }
            };
            if !kept {
                self.inner.table.lock().by_request.remove(&id);
                // Refused growth or a pool gone meanwhile: give it back.
                let _ = self.inner.scheduler.release(id, name.as_str()).await;
            }
            return Ok(resized?);
        }
        let resized = pool.resize(size).await?;
        self.give_back(&name, workers - target).await?;
        Ok(resized)
    }

    /// Gives back `workers` workers' requests of the pool `name`, newest
    /// allocations first.
    async fn give_back(&self, name: &str, mut workers: u64) -> Result<(), SwarmError> {
        while workers > 0 {
            let (id, covers, per_worker) = {
                let table = self.inner.table.lock();
                let Some(e) = table.entries.get(name) else {
                    return Ok(());
                };
                let Some(&(id, covers)) = e.allocs.last() else {
                    return Ok(());
                };
                (id, covers, e.per_worker.clone())
            };
            let n = covers.min(workers);
            let part = scaled(&per_worker, n, name)?;
            match self.inner.scheduler.release_part(id, name, part.clone()).await {
                // Preempted whole meanwhile: nothing left to give back.
                Ok(_) | Err(SchedulerError::NotHeld(_)) => {}
                Err(e) => return Err(e.into()),
            }
            let mut table = self.inner.table.lock();
            let Some(e) = table.entries.get_mut(name) else {
                return Ok(());
            };
            e.workers = e.workers.saturating_sub(n);
            e.granted = e.granted.saturating_sub(&part);
            if n == covers {
                e.allocs.pop();
                table.by_request.remove(&id);
            } else if let Some(last) = e.allocs.last_mut() {
                last.1 -= n;
            }
            workers -= n;
        }
        Ok(())
    }

    /// Where `name` (an agent or a pool spawned through this swarm) stands:
    /// waiting (with what is short and who holds it), admitted, or
    /// preempted. `None` for a name the swarm does not know (never spawned
    /// through it, or gone for good).
    pub async fn admission(&self, name: &str) -> Option<AdmissionStatus> {
        let (requested, deadline) = {
            let table = self.inner.table.lock();
            let e = table.entries.get(name)?;
            if let Some(status) = e.status() {
                return Some(status);
            }
            (scaled(&e.per_worker, e.workers, name).ok()?, e.waiting_until?)
        };
        let (shortfall, holders) = self.explain(&requested).await;
        Some(AdmissionStatus::Waiting {
            requested,
            shortfall,
            holders,
            deadline,
        })
    }

    /// An agent's CPU use: millicores in the last window against its
    /// profile's limit (every worker of a pool together), and whether it is
    /// throttled. `None` for a name the swarm does not know.
    pub fn usage(&self, name: &str) -> Option<AgentUsage> {
        let table = self.inner.table.lock();
        let e = table.entries.get(name)?;
        Some(AgentUsage {
            busy: e.signals.busy(),
            cpu_millicores: e.cpu.millicores,
            cpu_limit_millicores: e.cpu_limit(),
            cpu_request_millicores: e.per_worker.get(&ResourceKind::Cpu).saturating_mul(e.workers),
            throttled: e.cpu.throttled,
            qos: e.qos,
        })
    }

    /// The recommended CPU request of `name` (an agent or pool spawned
    /// through this swarm) from its use so far, per worker; `None` before
    /// [`recommend::MIN_SAMPLES`] one-second windows. Reported, never applied.
    pub fn recommendation(&self, name: &str) -> Option<Recommendation> {
        let table = self.inner.table.lock();
        let e = table.entries.get(name)?;
        e.usage.recommend(name, e.workers, e.per_worker.get(&ResourceKind::Cpu))
    }

    /// Every agent's and pool's recommendation (see
    /// [`Swarm::recommendation`]), by name.
    pub fn recommendations(&self) -> Vec<Recommendation> {
        let table = self.inner.table.lock();
        let mut out: Vec<Recommendation> = table
            .entries
            .iter()
            .filter_map(|(name, e)| e.usage.recommend(name, e.workers, e.per_worker.get(&ResourceKind::Cpu)))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Retires every agent, then the system actors (see [`Node::shutdown`]).
    pub async fn shutdown(&self, timeout: Duration) -> NodeExit {
        self.inner.node.shutdown(timeout).await
    }

    /// [`Swarm::shutdown`], running `at_timeout` just before a timed-out
    /// shutdown kills what still runs (see [`Node::shutdown_or`]).
    pub async fn shutdown_or(&self, timeout: Duration, at_timeout: impl FnOnce()) -> NodeExit {
        self.inner.node.shutdown_or(timeout, at_timeout).await
    }

    /// Asks the scheduler for `workers` times the profile's requests; on
    /// success, the spawn options that release them when the agent is gone.
    async fn admit(
        &self,
        identity: &Identity,
        profile: &ResourceProfile,
        workers: u64,
    ) -> Result<(SpawnOptions, Arc<AgentSignals>), SwarmError> {
        let name = identity.agent.as_str();
        let mut extensions = Extensions::new().with(identity.clone());
        if let Some(gateway) = &self.inner.gateway {
            extensions.insert(AgentLlm::new(gateway.clone(), identity.clone()));
        }
        let signals = Arc::new(AgentSignals::new(extensions));
        let requested = scaled(&profile.requests, workers, name)?;
        let cpu_limit_per_worker = profile.limits.get(&ResourceKind::Cpu);
        let mut entry = Entry {
            allocs: Vec::new(),
            tenant: identity.tenant.clone(),
            per_worker: profile.requests.clone(),
            workers,
            qos: profile.qos,
            granted: ResourceVector::new(),
            waiting_until: None,
            waiter: None,
            control: None,
            pending: None,
            preempted: None,
            signals: Arc::clone(&signals),
            cpu_limit_per_worker,
            cpu: Default::default(),
            usage: Default::default(),
        };
        let key: Arc<str> = Arc::from(name);
        if requested.is_empty() {
            self.file(&key, entry)?;
            return Ok((self.spawn_options(&key, &signals), signals));
        }
        // Made before the first wait: if this spawn is abandoned (its future
        // dropped) while it waits, dropping them forgets the entry and gives
        // back whatever the scheduler holds or reserves for it.
        let id = RequestId(self.inner.next_request.fetch_add(1, Ordering::Relaxed));
        let mut req = ResourceRequest::new(id.0, name, requested.clone())
            .tenant(identity.tenant.as_str())
            .pool(AGENT_POOL)
            .qos(profile.qos);
        if profile.qos == QosClass::Burstable && workers == 1 && !profile.limits.is_empty() {
            req.limits = Some(profile.limits.clone());
        }
        let deadline = (!self.inner.admission_wait.is_zero()).then(|| Instant::now() + self.inner.admission_wait);
        if let Some(d) = deadline {
            req = req.deadline(d);
        }
        let (tx, rx) = oneshot::channel();
        entry.allocs.push((id, workers));
        entry.waiter = Some(tx);
        entry.waiting_until = deadline;
        self.file(&key, entry)?;
        self.inner.table.lock().by_request.insert(id, Arc::clone(&key));
        let opts = self.spawn_options(&key, &signals);
        let decision = match self.inner.scheduler.request(req, self.notifier(&key)).await {
            Ok(d) => d,
            Err(e) => {
                self.inner.table.lock().remove(name);
                return Err(match e {
                    SchedulerError::InvalidLimits(_) | SchedulerError::EmptyRequest(_) => SwarmError::InvalidProfile {
                        name: name.to_string(),
                        reason: e.to_string(),
                    },
                    other => other.into(),
                });
            }
        };
        let granted = match decision {
            Decision::Allocated(grant) => grant.resources,
            Decision::Rejected { reason, .. } => {
                self.inner.table.lock().remove(name);
                return Err(self.refused(name, &requested, &reason).await);
            }
            Decision::Reserved { .. } => match rx.await {
                Ok(SchedulerEvent::Allocated(grant)) => grant.resources,
                _ => {
                    self.inner.table.lock().remove(name);
                    return Err(self.refused(name, &requested, &RejectReason::Insufficient).await);
                }
            },
        };
        if let Some(e) = self.inner.table.lock().entries.get_mut(name) {
            e.granted = granted;
            e.waiting_until = None;
            e.waiter = None;
        }
        Ok((opts, signals))
    }

    /// Files a new entry; a name already in the table is a duplicate spawn.
    fn file(&self, key: &Arc<str>, entry: Entry) -> Result<(), SwarmError> {
        let mut table = self.inner.table.lock();
        if table.entries.contains_key(key) {
            return Err(SpawnError::NameTaken { name: key.to_string() }.into());
        }
        table.entries.insert(Arc::clone(key), entry);
        Ok(())
    }

    /// The agent is up: reachable for preemption from now on.
    fn attach(&self, name: &str, signals: &Arc<AgentSignals>, control: Control) {
        let pending = {
            let mut table = self.inner.table.lock();
            let Some(e) = table.entries.get_mut(name) else {
                // Gone already (stopped at once): nothing to attach to.
                return;
            };
            debug_assert!(Arc::ptr_eq(&e.signals, signals));
            let pending = e.pending.take();
            if let Some(notice) = &pending {
                (control.preempt)(notice.clone());
            }
            let stop = Arc::clone(&control.stop);
            e.control = Some(control);
            pending.map(|n| (n, stop))
        };
        if let Some((notice, stop)) = pending {
            stop_after(notice.grace, stop);
        }
    }

    fn spawn_options(&self, key: &Arc<str>, signals: &Arc<AgentSignals>) -> SpawnOptions {
        let weak = Arc::downgrade(&self.inner);
        let key = Arc::clone(key);
        SpawnOptions::new()
            .signals(Arc::clone(signals))
            .on_gone(move || gone(&weak, &key))
    }

    fn notifier(&self, key: &Arc<str>) -> Notifier {
        let weak = Arc::downgrade(&self.inner);
        let key = Arc::clone(key);
        Notifier::new(move |event| {
            let Some(inner) = weak.upgrade() else { return };
            let action = inner.table.lock().on_event(&key, event, inner.grace, Instant::now());
            if let Some((notice, stop)) = action {
                tracing::info!(agent = %key, by = %notice.by, grace = ?notice.grace, "agent preempted");
                stop_after(notice.grace, stop);
            }
        })
    }

    /// The refusal for `requested` of `name`, explained from the
    /// scheduler's view now.
    async fn refused(&self, name: &str, requested: &ResourceVector, reason: &RejectReason) -> SwarmError {
        let refusal = match reason {
            RejectReason::NeverFits => {
                let pools = self.inner.scheduler.pools().await.unwrap_or_default();
                let shortfall = pools
                    .iter()
                    .find(|p| p.id == PoolId::new(AGENT_POOL))
                    .map(|p| admission::shortfall(requested, p, true))
                    .unwrap_or_default();
                Refusal::NeverFits { shortfall }
            }
            RejectReason::QueueFull { .. } => Refusal::QueueFull,
            _ => {
                let (shortfall, holders) = self.explain(requested).await;
                Refusal::Insufficient { shortfall, holders }
            }
        };
        SwarmError::NotAdmitted {
            name: name.to_string(),
            refusal,
        }
    }

    /// What of `requested` is short in the agent pool now, and who holds it.
    async fn explain(&self, requested: &ResourceVector) -> (Vec<Shortfall>, Vec<Holder>) {
        let (Ok(pools), Ok(allocations)) = (
            self.inner.scheduler.pools().await,
            self.inner.scheduler.allocations().await,
        ) else {
            return (Vec::new(), Vec::new());
        };
        let Some(pool) = pools.iter().find(|p| p.id == PoolId::new(AGENT_POOL)) else {
            return (Vec::new(), Vec::new());
        };
        let short = admission::shortfall(requested, pool, false);
        let table = self.inner.table.lock();
        let holders = admission::holders(&allocations, pool, &short, |id| table.name_of(id));
        (short, holders)
    }

    /// Samples every agent's CPU use each [`cpu::WINDOW`] while the swarm lives.
    fn watch_cpu(&self) {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(cpu::WINDOW);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let now = Instant::now();
                let mut table = inner.table.lock();
                for (name, e) in table.entries.iter_mut() {
                    e.cpu.last_window = None;
                    let changed = e.cpu.sample(e.signals.busy(), now, e.cpu_limit());
                    if let Some(window) = e.cpu.last_window {
                        e.usage.add(e.cpu.millicores / e.workers.max(1), window);
                    }
                    if changed {
                        e.signals.set_throttled(e.cpu.throttled);
                        tracing::info!(agent = %name, millicores = e.cpu.millicores, limit = e.cpu_limit(),
                            throttled = e.cpu.throttled, "agent CPU throttle changed");
                    }
                }
            }
        });
    }
}

/// A [`Swarm`] that is not kept alive by this reference ([`Swarm::downgrade`]).
#[derive(Clone)]
pub struct WeakSwarm(Weak<Inner>);

impl std::fmt::Debug for WeakSwarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WeakSwarm")
    }
}

impl WeakSwarm {
    /// The swarm, if it still exists.
    pub fn upgrade(&self) -> Option<Swarm> {
        self.0.upgrade().map(|inner| Swarm { inner })
    }
}

/// An agent's CPU use (see [`Swarm::usage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentUsage {
    /// Handler time so far (every worker together).
    pub busy: Duration,
    /// Millicores used in the last window.
    pub cpu_millicores: u64,
    /// Its profile's CPU limit, every worker together (0 = none).
    pub cpu_limit_millicores: u64,
    /// Its profile's CPU requests, every worker together (0 = none).
    pub cpu_request_millicores: u64,
    /// Whether it is throttled (over its limit for a sustained period).
    pub throttled: bool,
    /// Its profile's QoS class.
    pub qos: QosClass,
}

/// `v` times `n`, or an invalid profile if that overflows.
fn scaled(v: &ResourceVector, n: u64, name: &str) -> Result<ResourceVector, SwarmError> {
    v.iter()
        .map(|(k, a)| a.checked_mul(n).map(|t| (k.clone(), t)))
        .collect::<Option<ResourceVector>>()
        .ok_or_else(|| SwarmError::InvalidProfile {
            name: name.to_string(),
            reason: format!("requests times {n} workers overflow u64"),
        })
}

/// Stops an agent once `grace` has passed.
fn stop_after(grace: Duration, stop: Arc<dyn Fn() + Send + Sync>) {
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            tokio::time::sleep(grace).await;
            stop();
        });
    }
}

/// The agent is gone for good: forget it and give its resources back.
fn gone(inner: &Weak<Inner>, key: &str) {
    let Some(inner) = inner.upgrade() else { return };
    if let Some(monitor) = &inner.monitor {
        monitor.unwatch(key);
    }
    let Some(entry) = inner.table.lock().remove(key) else {
        return;
    };
    let held: Vec<RequestId> = entry.allocs.iter().map(|(id, _)| *id).collect();
    if held.is_empty() {
        return;
    }
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let scheduler = inner.scheduler.clone();
    let name = key.to_string();
    rt.spawn(async move {
        for id in held {
            give_back(&scheduler, id, &name).await;
        }
    });
}

/// Withdraws `id` if it still waits, else releases it. A scheduler that
/// is unavailable for longer than a restart takes (a second) has stopped
/// with the swarm, and its allocations with it: nothing is left to give back.
async fn give_back(scheduler: &SchedulerHandle, id: RequestId, name: &str) {
    for _ in 0..20 {
        // A spawn abandoned while it waited leaves a reservation: withdrawn
        // first, so that it cannot be served after the release below.
        let outcome = match scheduler.cancel(id, name).await {
            Ok(()) => return,
            Err(SchedulerError::NotWaiting(_)) => scheduler.release(id, name).await.map(drop),
            Err(e) => Err(e),
        };
        match outcome {
            // Preempted whole: the scheduler already took it back.
            Ok(()) | Err(SchedulerError::NotHeld(_)) => return,
            Err(SchedulerError::Unavailable) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => {
                tracing::warn!(agent = %name, request = %id, error = %e, "giving back an agent's resources failed");
                return;
            }
        }
    }
    tracing::debug!(agent = %name, request = %id, "the scheduler has stopped; nothing to give back");
}
