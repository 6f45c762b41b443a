//! The seeds' scenario through the product's real path.
//!
//! Every request is one step of a conversation and goes the way a user's
//! would: a routed message ([`Router`] admission and round-robin pick over
//! a pool of agents' bounded lanes), then, in the agent, a quota charge
//! through the [`QuotaHandle`] of a quota keeper running under the node
//! (agent > tenant > system, per minute; its usage written to the temporary
//! directory every second, as a configured keeper does), an LLM call through the
//! [`LlmGateway`] (token count, model choice, spend reservation against the
//! ledger's budget, rate-limit admission, the call, settlement) to a
//! [`SimulatedProvider`] that answers at once, and the usage committed in
//! the durable [`CostLedger`] (redb, in a temporary directory) before the
//! gateway returns. The reply goes back to the conversation.
//!
//! Nothing is stubbed: the only thing simulated is the provider, with zero
//! latency, so the figures are the node's own cost per request. The LLM
//! scenario of `nexus bench` and the load scenarios (`--scenario`) both run
//! on this pipeline.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::actors::Scope;
use hdrhistogram::Histogram;
use nexus_swarm_actors::cost_ledger::{
    Budget, BudgetAction, BudgetPeriod, CostLedger, CostLedgerArgs, LedgerHandle, LedgerOptions, ModelRates,
};
use nexus_swarm_actors::llm::{
    DeploymentSpec, GatewayError, LlmRequest, ModelCatalogue, ModelSpec, RateLimits, SimulatedConfig, SimulatedProvider,
};
use nexus_swarm_actors::llm_gateway::{GatewayHandle, LlmGateway, LlmGatewayArgs, ProviderEntry};
use nexus_swarm_actors::quota_keeper::{
    MAX_QUOTA_AMOUNT, QuotaClock, QuotaError, QuotaHandle, QuotaKeeper, QuotaKeeperArgs, QuotaSpec,
};
use nexus_swarm_actors::router::{RouteError, Router, RouterHandle};
use nexus_swarm_runtime::config::{RouterConfig, RoutingStrategyKind, SupervisionConfig};
use nexus_swarm_runtime::error::SendErrorKind;
use nexus_swarm_runtime::prelude::*;
use nexus_swarm_runtime::resources::ResourceKind;
use nexus_swarm_runtime::usage::UsageMeta;
use tokio::sync::oneshot;

/// The tenant every conversation belongs to (quota tree and budget scope).
const TENANT: &str = "bench";
/// The one model of the catalogue.
const MODEL: &str = "swift-small";
/// Provider and deployment limits far above any rate the node reaches: the
/// benchmark measures the node, not a provider's quota.
const UNLIMITED_RPM: u64 = 1_000_000_000;
const UNLIMITED_TPM: u64 = 1_000_000_000_000;

/// How long after [`Pipeline::stop_at`] an LLM call under way gives up.
const STOP_GRACE: Duration = Duration::from_millis(250);

/// Why a step that reached an agent failed.
#[derive(Debug)]
pub(crate) enum StepFailure {
    /// The quota charge was refused.
    Quota(QuotaError),
    /// The gateway refused or failed the LLM call.
    Gateway(GatewayError),
    /// The run's stop time ([`Pipeline::stop_at`]) had passed.
    Stopped,
}

impl std::fmt::Display for StepFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepFailure::Quota(e) => write!(f, "quota charge refused: {e}"),
            StepFailure::Gateway(e) => write!(f, "LLM call failed: {e}"),
            StepFailure::Stopped => f.write_str("the run had stopped"),
        }
    }
}

/// What a step's reply carries.
pub(crate) type StepOutcome = Result<(), StepFailure>;

/// One step of a conversation.
#[derive(Debug)]
pub(crate) struct Step {
    conversation: u64,
    turn: u64,
    reply: Reply<StepOutcome>,
}

/// Panic message of an injected fault (the soak scenario's), recognised by
/// its quiet panic hook.
pub(crate) const INJECTED_FAULT: &str = "injected fault (nexus bench soak)";

/// A conversation agent: charges its quota, asks the LLM, answers.
#[derive(Debug)]
struct ConversationAgent {
    quotas: QuotaHandle,
    gateway: GatewayHandle,
    /// Quota name per worker index (built once; charges go by name).
    quota_names: Arc<[String]>,
    /// While set, every worker panics on its next message (soak's fault).
    /// Atomic: read by every worker on every message, set by the driver.
    fault: Arc<AtomicBool>,
    /// When set, steps after it fail at once and LLM calls give up at it.
    /// A `OnceLock`: set once by the driver, read without a lock by every worker.
    stop_at: Arc<OnceLock<Instant>>,
}

impl Agent for ConversationAgent {
    type Msg = Step;
    type State = ();

    async fn init(&self, _ctx: &AgentContext<Step>) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn handle(&self, ctx: &AgentContext<Step>, step: Step, _: &mut ()) -> Result<(), HandlerError> {
        if self.fault.load(Ordering::Relaxed) {
            std::panic::panic_any(INJECTED_FAULT);
        }
        let name = &self.quota_names[ctx.worker() % self.quota_names.len()];
        let left = self
            .stop_at
            .get()
            .map(|stop| stop.saturating_duration_since(Instant::now()));
        if left.is_some_and(|left| left.is_zero()) {
            step.reply.send(Err(StepFailure::Stopped));
            return Ok(());
        }
        let outcome = match super::micro::charge(&self.quotas, name, 1) {
            Err(e) => Err(StepFailure::Quota(e)),
            Ok(()) => {
                let meta = UsageMeta::default()
                    .tenant(TENANT)
                    .workflow("conversation")
                    .agent(name.clone());
                let request = LlmRequest::user(format!(
                    "Conversation {}, turn {}: what should we check next?",
                    step.conversation, step.turn
                ))
                .max_tokens(16)
                .cacheable(false)
                .meta(meta);
                // Past the stop time by a grace, so that the driver, which
                // stops counting at the stop time, never sees this timeout.
                let request = match left {
                    Some(left) => request.timeout(left + STOP_GRACE),
                    None => request,
                };
                self.gateway
                    .complete(request)
                    .await
                    .map(|_| ())
                    .map_err(StepFailure::Gateway)
            }
        };
        step.reply.send(outcome);
        Ok(())
    }
}

/// How to build a pipeline.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PipelineConfig {
    /// Agents in the pool behind the router.
    pub(crate) agents: usize,
    /// Router admission: messages per second.
    pub(crate) admission_rate: u32,
    /// Router admission: burst.
    pub(crate) admission_burst: u32,
    /// Capacity of each agent's normal lane.
    pub(crate) lane_capacity: usize,
    /// The simulated provider's median latency (zero: answers at once).
    pub(crate) provider_latency: Duration,
    /// The gateway's requests-per-minute limit on the provider (`None`: far
    /// above any rate the node reaches).
    pub(crate) requests_per_minute: Option<u64>,
    /// The gateway's rate-limit burst, percent of each limit.
    pub(crate) burst_percent: u8,
    /// The tenant's daily budget, micro-dollars (`None`: one the run cannot reach).
    pub(crate) budget_micro_usd: Option<u64>,
}

impl PipelineConfig {
    /// `agents` agents, admission far above any rate offered (every step
    /// pays for the decision, none waits), the seeds' lane capacity.
    pub(crate) fn unthrottled(agents: usize) -> Self {
        Self {
            agents,
            admission_rate: 1_000_000_000,
            admission_burst: 1_000_000,
            lane_capacity: MailboxConfig::default().lane(Priority::Normal).capacity,
            provider_latency: Duration::ZERO,
            requests_per_minute: None,
            burst_percent: NexusConfig::default().llm.burst_percent,
            budget_micro_usd: None,
        }
    }
}

/// A temporary directory removed on drop.
#[derive(Debug)]
pub(super) struct TempDir(pub(super) PathBuf);

impl TempDir {
    pub(super) fn new() -> anyhow::Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("nexus-bench-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path)?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Best effort: a leftover directory in the temp dir harms nothing.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Why an open-loop submission was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shed {
    /// The router's admission refused it (typed `AdmissionError`).
    Admission,
    /// The picked agent's lane was full (typed `SendError::Full`).
    LaneFull,
    /// Anything else (no member, closed lane).
    Other,
}

/// The whole real path, running.
#[derive(Debug)]
pub(crate) struct Pipeline {
    node: Node,
    pool: PoolRef<Step>,
    router: RouterHandle<Step>,
    gateway: GatewayHandle,
    ledger: LedgerHandle,
    fault: Arc<AtomicBool>,
    stop_at: Arc<OnceLock<Instant>>,
    lane_capacity: usize,
    next_turn: AtomicU64,
    _dir: TempDir,
}

impl Pipeline {
    /// Starts a node, a quota keeper, the ledger, the gateway, the agents
    /// and the router.
    pub(crate) async fn start(cfg: PipelineConfig) -> anyhow::Result<Self> {
        let dir = TempDir::new()?;
        let mut node_cfg = NexusConfig {
            mailbox: MailboxConfig::default().with_capacity(cfg.lane_capacity),
            // The soak's injected fault restarts agents thousands of times
            // a second for seconds; the node must not give up on them.
            supervision: SupervisionConfig {
                max_restarts: 1_000_000,
                within: Duration::from_secs(30),
            },
            ..NexusConfig::default()
        };
        node_cfg.node.data_dir = dir.0.clone();
        let node = Node::start(node_cfg).await?;

        let quota_names: Arc<[String]> = (0..cfg.agents).map(|i| format!("agent-{i}")).collect();
        let minute = Duration::from_secs(60);
        let mut specs = vec![
            QuotaSpec::root("system", ResourceKind::LlmRequests, MAX_QUOTA_AMOUNT).period(minute),
            QuotaSpec::child(TENANT, "system", ResourceKind::LlmRequests, MAX_QUOTA_AMOUNT).period(minute),
        ];
        for name in quota_names.iter() {
            specs.push(
                QuotaSpec::child(name.as_str(), TENANT, ResourceKind::LlmRequests, MAX_QUOTA_AMOUNT).period(minute),
            );
        }
        let quotas = QuotaKeeper::start(
            &node,
            "quotas",
            // Durable, as a configured keeper is: usage written every second.
            QuotaKeeperArgs::open(QuotaClock::tokio(), &dir.0)?.with_quotas(specs)?,
        )
        .await?;

        let ledger =
            CostLedger::start(&node, "ledger", CostLedgerArgs::open(LedgerOptions::new(&dir.0)).await?).await?;
        ledger
            .set_model_price(MODEL, ModelRates::new(500_000, 1_500_000, 0)?)
            .await?;
        // A budget the run cannot reach: every request pays for the
        // reservation and the settlement, none is refused by it.
        let budget = Budget::new(
            "bench-daily",
            cfg.budget_micro_usd.unwrap_or(1_000_000_000_000),
            BudgetPeriod::Daily,
            BudgetAction::Halt,
        )
        .scope(Scope::all().tenant(TENANT));
        ledger.put_budget(budget).await?;

        let unlimited = RateLimits::rpm_tpm(UNLIMITED_RPM, UNLIMITED_TPM);
        let catalogue = ModelCatalogue::new(vec![
            ModelSpec::new(MODEL, 16_000, 500_000, 1_500_000)
                .deployment(DeploymentSpec::new("swift-small@sim", "sim").limits(unlimited)),
        ])?;
        let sim = SimulatedProvider::new(
            "sim",
            SimulatedConfig {
                latency_median: cfg.provider_latency,
                ..SimulatedConfig::instant(7)
            },
        );
        let provider_limits = match cfg.requests_per_minute {
            Some(rpm) => RateLimits::rpm_tpm(rpm, UNLIMITED_TPM),
            None => unlimited,
        };
        let mut args = LlmGatewayArgs::new(
            catalogue,
            vec![ProviderEntry::new("sim", Arc::new(sim)).limits(provider_limits)],
        )
        .gate(Arc::new(ledger.budgets()))
        .sink(Arc::new(ledger.clone()));
        // Every prompt is new: the cache would only grow.
        args.cache.enabled = false;
        args.llm.max_concurrent = 100_000;
        args.llm.burst_percent = cfg.burst_percent;
        let gateway = LlmGateway::start(&node, "gateway", args).await?;

        let fault = Arc::new(AtomicBool::new(false));
        let stop_at = Arc::new(OnceLock::new());
        let agent = ConversationAgent {
            quotas,
            gateway: gateway.clone(),
            quota_names,
            fault: Arc::clone(&fault),
            stop_at: Arc::clone(&stop_at),
        };
        let pool = node.spawn_pool("conversations", cfg.agents, agent).await?;
        let mut router_cfg = RouterConfig {
            strategy: RoutingStrategyKind::RoundRobin,
            ..RouterConfig::default()
        };
        router_cfg.admission.rate_per_sec = cfg.admission_rate;
        router_cfg.admission.burst = cfg.admission_burst;
        let router = Router::start(&node, "conversations", router_cfg).await?;
        router.add_pool(&pool).await?;
        Ok(Self {
            node,
            pool,
            router,
            gateway,
            ledger,
            fault,
            stop_at,
            lane_capacity: cfg.lane_capacity,
            next_turn: AtomicU64::new(0),
            _dir: dir,
        })
    }

    /// One step, routed as an ask (waits for admission and lane room).
    pub(crate) async fn ask(&self, conversation: u64, deadline: Duration) -> anyhow::Result<StepOutcome> {
        let turn = self.next_turn.fetch_add(1, Ordering::Relaxed);
        self.router
            .ask(
                |reply| Step {
                    conversation,
                    turn,
                    reply,
                },
                Priority::Normal,
                None,
                deadline,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// One step, offered without waiting: admitted (the receiver gets its
    /// outcome, or is dropped if the agent failed) or shed.
    pub(crate) fn try_submit(&self, conversation: u64) -> Result<oneshot::Receiver<StepOutcome>, Shed> {
        let turn = self.next_turn.fetch_add(1, Ordering::Relaxed);
        let (reply, rx) = Reply::channel();
        let step = Step {
            conversation,
            turn,
            reply,
        };
        match self.router.try_send(step, Priority::Normal, None) {
            Ok(_) => Ok(rx),
            Err(RouteError::Admission { .. }) => Err(Shed::Admission),
            Err(RouteError::Send { error, .. }) if error.kind() == SendErrorKind::Full => Err(Shed::LaneFull),
            Err(_) => Err(Shed::Other),
        }
    }

    /// The deepest normal lane of any agent now.
    pub(crate) fn max_lane_depth(&self) -> usize {
        self.pool
            .members()
            .iter()
            .map(|a| a.depth(Priority::Normal))
            .max()
            .unwrap_or(0)
    }

    /// Messages queued in every agent's normal lane together, and the deepest lane.
    pub(crate) fn lane_depths(&self) -> (usize, usize) {
        self.pool.members().iter().fold((0, 0), |(sum, max), a| {
            let d = a.depth(Priority::Normal);
            (sum + d, max.max(d))
        })
    }

    /// The gateway's counters now.
    pub(crate) fn gateway_stats(&self) -> nexus_swarm_actors::llm_gateway::GatewayStats {
        self.gateway.stats()
    }

    /// Each agent's normal-lane capacity.
    pub(crate) fn lane_capacity(&self) -> usize {
        self.lane_capacity
    }

    /// From `at` on, steps fail at once with [`StepFailure::Stopped`] and
    /// LLM calls under way give up shortly after it, so a run ends on time and its
    /// shutdown has little to drain. Only the first call counts.
    pub(crate) fn stop_at(&self, at: Instant) {
        // A second stop time is ignored on purpose: the first one stands.
        let _ = self.stop_at.set(at);
    }

    /// Starts or ends the injected fault (every worker panics on each message).
    pub(crate) fn set_fault(&self, on: bool) {
        self.fault.store(on, Ordering::Relaxed);
    }

    /// Fails unless every completed LLM call's usage was committed in the ledger.
    pub(crate) fn check_ledger(&self) -> anyhow::Result<u64> {
        let stats = self.gateway.stats();
        anyhow::ensure!(
            stats.sink_errors == 0,
            "{} usage records were not committed in the ledger",
            stats.sink_errors
        );
        let status = self.ledger.budget_status("bench-daily")?;
        anyhow::ensure!(
            stats.completed == 0 || status.spent_micro_usd > 0,
            "the ledger recorded no spend for {} completed calls",
            stats.completed
        );
        Ok(stats.completed)
    }

    /// Stops everything and removes the data directory. The node's
    /// shutdown retires the agents, then the system actors, and returns
    /// once they have stopped: the ledger has committed what it queued.
    pub(crate) async fn shutdown(self) {
        self.node.shutdown(Duration::from_secs(30)).await;
    }
}

/// What a closed loop measured.
#[derive(Debug)]
pub(crate) struct ClosedLoop {
    /// Steps completed per second.
    pub(crate) rate: f64,
    /// Latency of each step.
    pub(crate) latency: Histogram<u64>,
    /// Steps that failed.
    pub(crate) errors: u64,
    /// Why the first failed step failed.
    pub(crate) first_error: Option<String>,
}

/// `conversations` concurrent conversations, each a closed loop of steps
/// (the next starts when the previous is answered), for `duration`.
pub(crate) async fn closed_loop(
    p: &Arc<Pipeline>,
    conversations: usize,
    duration: Duration,
) -> anyhow::Result<ClosedLoop> {
    let started = Instant::now();
    let end = started + duration;
    let tasks: Vec<_> = (0..conversations as u64)
        .map(|conversation| {
            let p = Arc::clone(p);
            tokio::spawn(async move {
                let mut hist = super::histogram();
                let (mut done, mut errors, mut first_error) = (0u64, 0u64, None);
                while Instant::now() < end {
                    let t = Instant::now();
                    let failure = match p.ask(conversation, Duration::from_secs(30)).await {
                        Ok(Ok(())) => {
                            super::record(&mut hist, t.elapsed());
                            done += 1;
                            continue;
                        }
                        Ok(Err(e)) => e.to_string(),
                        Err(e) => e.to_string(),
                    };
                    errors += 1;
                    first_error.get_or_insert(failure);
                }
                (done, errors, first_error, hist)
            })
        })
        .collect();
    let mut latency = super::histogram();
    let (mut done, mut errors, mut first_error) = (0, 0, None);
    for t in tasks {
        let (d, e, first, h) = t.await?;
        done += d;
        errors += e;
        first_error = first_error.or(first);
        latency.add(&h)?;
    }
    let rate = done as f64 / started.elapsed().as_secs_f64();
    Ok(ClosedLoop {
        rate,
        latency,
        errors,
        first_error,
    })
}

/// Warms the pipeline (tokenizer tables, first allocations, the ledger's
/// first commits) with one step per agent, all at once.
pub(crate) async fn warm_up(p: &Arc<Pipeline>, agents: usize) -> anyhow::Result<()> {
    let steps = (0..agents as u64).map(|i| p.ask(i, Duration::from_secs(30)));
    for outcome in futures::future::join_all(steps).await {
        if let Err(e) = outcome? {
            anyhow::bail!("warm-up step failed: {e}");
        }
    }
    Ok(())
}

/// The seeds' scenario: `agents` agents, `conversations` concurrent
/// conversations, for `duration`. Fails if any step failed or any usage
/// went unrecorded.
pub(crate) async fn llm_scenario(
    agents: usize,
    conversations: usize,
    duration: Duration,
) -> anyhow::Result<ClosedLoop> {
    let p = Arc::new(Pipeline::start(PipelineConfig::unthrottled(agents)).await?);
    warm_up(&p, agents).await?;
    let result = closed_loop(&p, conversations, duration).await?;
    anyhow::ensure!(
        result.errors == 0,
        "{} conversation steps failed, the first: {}",
        result.errors,
        result.first_error.as_deref().unwrap_or("?")
    );
    p.check_ledger()?;
    if let Ok(p) = Arc::try_unwrap(p) {
        p.shutdown().await;
    }
    Ok(result)
}
