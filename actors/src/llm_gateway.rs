//! [`LlmGateway`]: the actor in front of every LLM call, and
//! [`LlmGatewayHandle`], the cloneable handle agents call it through.
//!
//! # Per request, in order
//!
//! 1. **Cache**: a hit (memory, then disk) answers at once and costs
//!    nothing: no spend is reserved, no usage recorded.
//! 2. **Model choice**: the named model, or the cheapest catalogue model
//!    with the capabilities asked for whose window holds the prompt
//!    (counted with the tokenizer) plus `max_tokens`.
//! 3. **Spend reservation**: the worst-case cost (the model's priciest
//!    deployment at `max_tokens`) and tokens are reserved with every
//!    [`SpendGate`] (budgets, quotas), waiting up to the deadline where a
//!    gate is full only of other requests' holds in flight; one refusal
//!    refuses the request with [`GatewayError::SpendRefused`] and releases
//!    the others.
//! 4. **Rate limits**: the estimated request and tokens are reserved in the
//!    provider's and the deployment's limits ([`limiter`]: GCRA pacing and
//!    a sliding-window cap, so every 60 s window holds), and must fit what
//!    the provider's replies taught both of them ([`learned`]: a reported
//!    `remaining: 0` holds the deployment and its provider until the
//!    reported reset, with or without configured limits). A deployment is
//!    chosen by the routing strategy among those not cooling down; if none
//!    fits now, the request waits in a priority queue ([`admission`]) until
//!    one does or its deadline passes. The [`dispatch`]er releases waiters
//!    by priority, then age, across every model that shares a provider.
//! 5. **Batching** (optional): calls to the same deployment are grouped.
//!    A batch is sent up to `llm.batch.max_wait` after its first request
//!    was admitted, so with batching on the limits count over
//!    60 s + `max_wait`: every 60 s of sends stays within them.
//! 6. **The call**, under `llm.timeout`. Errors that may pass (429, 5xx,
//!    timeouts, garbled replies) are retried with exponential backoff and
//!    full jitter, waiting at least the provider's retry-after, which also
//!    holds back the deployment for every caller (others go to another
//!    deployment of the model if one is free). Each retry re-enters step 4.
//! 7. **Fallback**: when a model fails for good, its `fallbacks` are tried in
//!    order; when the request exceeds its context window, its
//!    `context_window_fallbacks` (larger models) first. Each model gets its
//!    own reservation in step 3.
//! 8. **Settle**: the limits get the actual tokens (over-estimates refunded;
//!    the provider's remaining-headers are learned, or resynchronise them
//!    when they come without a reset), the gates get
//!    the actual cost, the [`UsageSink`] records the tokens (awaited until
//!    committed), the cache stores the answer.
//!
//! A deployment that fails `llm.allowed_fails` times in a row is taken out
//! of picks for `llm.cooldown`.
//!
//! # Planes
//!
//! The pipeline runs on the caller's task through the handle (the data
//! plane): no request queues behind the actor. Shared state is one short
//! critical section ([`parking_lot::Mutex`]) over the [`dispatch`]er (the
//! limits, learned holds, deployment health and the wait queue), which must
//! change together for a multi-limit admission to be atomic. The actor owns the task that admits
//! waiting requests when capacity frees and answers control messages
//! (stats, cache flush, and completions for callers that only hold an
//! `ActorRef`).
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use nexus_swarm_actors::llm::{DeploymentSpec, LlmRequest, ModelCatalogue, ModelSpec, SimulatedConfig, SimulatedProvider};
//! use nexus_swarm_actors::llm_gateway::{LlmGateway, LlmGatewayArgs, ProviderEntry};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sim = SimulatedProvider::new("sim", SimulatedConfig::instant(7));
//! let catalogue = ModelCatalogue::new(vec![
//!     // $0.15 / $0.60 per million tokens, in micro-dollars per million.
//!     ModelSpec::new("small", 8_000, 150_000, 600_000).deployment(DeploymentSpec::new("small@sim", "sim")),
//! ])?;
//! let args = LlmGatewayArgs::new(catalogue, vec![ProviderEntry::new("sim", Arc::new(sim))]);
//! let (gateway, _actor, _join) = LlmGateway::spawn(args).await?;
//! let answer = gateway.complete(LlmRequest::user("Plan the survey.").max_tokens(64)).await?;
//! assert_eq!(answer.model, "small");
//! assert!(answer.cost_micro_usd > 0);
//! let again = gateway.complete(LlmRequest::user("Plan the survey.").max_tokens(64)).await?;
//! assert_eq!(again.cost_micro_usd, 0); // served by the cache
//! # Ok(()) }
//! ```
//!
//! [`limiter`]: crate::llm::limiter
//! [`learned`]: crate::llm::learned
//! [`admission`]: crate::llm::admission
//! [`dispatch`]: crate::llm::dispatch

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use nexus_swarm_runtime::config::{CacheConfig, LlmConfig, NexusConfig};
use nexus_swarm_runtime::resources::{ResourceKind, ResourceVector};
use nexus_swarm_runtime::usage::{SpendGate, SpendHold, SpendRefused, UsageMeta, UsageRecord, UsageSink};
use parking_lot::Mutex;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::llm::backoff::Backoff;
use crate::llm::batch::Batcher;
use crate::llm::cache::{CacheKey, CacheStats, CacheTier, CachedResponse, ResponseCache};
use crate::llm::catalogue::{ModelCatalogue, cost_micro_usd};
use crate::llm::dispatch::{Dispatcher, DispatcherArgs, Grant, Job, Route};
use crate::llm::error::{CatalogueError, GatewayBuildError, GatewayError, ProviderError};
use crate::llm::limiter::{Demand, LimitSet, MINUTE, RateLimits};
use crate::llm::provider::LlmProvider;
use crate::llm::tokens::TokenCounter;
use crate::llm::types::{LlmRequest, LlmResponse, ProviderRequest, ProviderResponse, ResponseSource};

/// A provider the gateway may call, with its own limits.
#[derive(Debug, Clone)]
pub struct ProviderEntry {
    /// The id deployments name it by.
    pub id: String,
    /// The provider.
    pub provider: Arc<dyn LlmProvider>,
    /// Its limits; `None` takes `llm.requests_per_minute`,
    /// `llm.tokens_per_minute` and the optional input/output limits.
    pub limits: Option<RateLimits>,
}

impl ProviderEntry {
    /// A provider with the configured default limits.
    pub fn new(id: impl Into<String>, provider: Arc<dyn LlmProvider>) -> Self {
        Self {
            id: id.into(),
            provider,
            limits: None,
        }
    }

    /// Builder-style: its own limits.
    pub fn limits(mut self, limits: RateLimits) -> Self {
        self.limits = Some(limits);
        self
    }
}

/// The provider limits that `llm.*_per_minute` configure (0 = none for the
/// input/output ones).
pub fn default_provider_limits(llm: &LlmConfig) -> RateLimits {
    let opt = |v: u32| (v > 0).then_some(u64::from(v));
    RateLimits {
        requests_per_minute: opt(llm.requests_per_minute),
        input_tokens_per_minute: opt(llm.input_tokens_per_minute),
        output_tokens_per_minute: opt(llm.output_tokens_per_minute),
        tokens_per_minute: opt(llm.tokens_per_minute),
    }
}

/// Everything the gateway is built from.
#[derive(Clone)]
pub struct LlmGatewayArgs {
    /// Limits, retries, timeouts, batching, routing, cooldown.
    pub llm: LlmConfig,
    /// The response cache.
    pub cache: CacheConfig,
    /// Where the disk cache lives; `None` keeps the cache in memory only.
    pub cache_dir: Option<PathBuf>,
    /// The models.
    pub catalogue: ModelCatalogue,
    /// The providers deployments name.
    pub providers: Vec<ProviderEntry>,
    /// Budgets and quotas reserved before each call.
    pub gates: Vec<Arc<dyn SpendGate>>,
    /// Where actual usage is recorded.
    pub sink: Option<Arc<dyn UsageSink>>,
    /// Seed of routing shuffles and backoff jitter.
    pub seed: u64,
}

impl std::fmt::Debug for LlmGatewayArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmGatewayArgs")
            .field("llm", &self.llm)
            .field("cache", &self.cache)
            .field("cache_dir", &self.cache_dir)
            .field("models", &self.catalogue.models.len())
            .field("providers", &self.providers.iter().map(|p| &p.id).collect::<Vec<_>>())
            .field("gates", &self.gates.len())
            .field("sink", &self.sink.is_some())
            .finish()
    }
}

impl LlmGatewayArgs {
    /// Default configuration, memory-only cache, no gates, no sink.
    pub fn new(catalogue: ModelCatalogue, providers: Vec<ProviderEntry>) -> Self {
        Self {
            llm: LlmConfig::default(),
            cache: CacheConfig::default(),
            cache_dir: None,
            catalogue,
            providers,
            gates: Vec::new(),
            sink: None,
            seed: 0,
        }
    }

    /// The node's `llm` and `cache` sections, with the disk cache under
    /// `<node.data_dir>/llm-cache`.
    pub fn from_config(config: &NexusConfig, catalogue: ModelCatalogue, providers: Vec<ProviderEntry>) -> Self {
        Self {
            llm: config.llm.clone(),
            cache: config.cache.clone(),
            cache_dir: Some(config.node.data_dir.join("llm-cache")),
            ..Self::new(catalogue, providers)
        }
    }

    /// Builder-style: adds a spend gate.
    pub fn gate(mut self, gate: Arc<dyn SpendGate>) -> Self {
        self.gates.push(gate);
        self
    }

    /// Builder-style: the usage sink.
    pub fn sink(mut self, sink: Arc<dyn UsageSink>) -> Self {
        self.sink = Some(sink);
        self
    }
}

/// Counts of what the gateway did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GatewayStats {
    /// Requests submitted.
    pub requests: u64,
    /// Requests answered (cache hits included).
    pub completed: u64,
    /// Requests that ended in an error.
    pub failed: u64,
    /// Provider calls made (retries included).
    pub provider_calls: u64,
    /// Retries after a failed call.
    pub retries: u64,
    /// Switches to a fallback model.
    pub fallbacks: u64,
    /// 429s received from providers.
    pub provider_429s: u64,
    /// Requests refused by a spend gate.
    pub spend_refused: u64,
    /// Requests whose deadline passed.
    pub deadline_exceeded: u64,
    /// Requests refused because the wait queue was full.
    pub overloaded: u64,
    /// Cooldowns started.
    pub cooldowns: u64,
    /// Usage records the sink failed to commit.
    pub sink_errors: u64,
    /// Cost of the answered calls, micro-dollars (catalogue prices).
    pub spent_micro_usd: u64,
    /// The most one answered call cost, micro-dollars.
    pub worst_request_micro_usd: u64,
    /// Requests waiting for rate-limit capacity now.
    pub queued: u64,
    /// Provider calls under way now (every deployment).
    pub in_flight: u64,
    /// The response cache.
    pub cache: CacheStats,
}

#[derive(Debug, Default)]
struct Counters {
    // Statistics only: Relaxed atomics, nothing is ordered by them.
    requests: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    provider_calls: AtomicU64,
    retries: AtomicU64,
    fallbacks: AtomicU64,
    provider_429s: AtomicU64,
    spend_refused: AtomicU64,
    deadline_exceeded: AtomicU64,
    overloaded: AtomicU64,
    cooldowns: AtomicU64,
    sink_errors: AtomicU64,
    spent: AtomicU64,
    worst: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

#[derive(Debug)]
struct ProviderRt {
    id: String,
    provider: Arc<dyn LlmProvider>,
}

#[derive(Debug)]
struct DeploymentRt {
    id: String,
    provider: usize,
    upstream: String,
    input_price: u64,
    output_price: u64,
}

/// How a waiting caller is handed its admission.
type Caller = oneshot::Sender<Result<Grant, GatewayError>>;

/// The shared state of a gateway (data plane).
struct Core {
    llm: LlmConfig,
    catalogue: ModelCatalogue,
    deployments: Vec<DeploymentRt>,
    providers: Vec<ProviderRt>,
    cache: ResponseCache,
    gates: Vec<Arc<dyn SpendGate>>,
    sink: Option<Arc<dyn UsageSink>>,
    counter: TokenCounter,
    backoff: Backoff,
    batcher: Option<Batcher>,
    epoch: Instant,
    // Limits, learned holds, health and the wait queue change together (a
    // multi-limit admission is atomic); critical sections are short and
    // never await.
    sched: Mutex<Dispatcher<Caller>>,
    // Wakes the admission task when capacity may have freed.
    wake: Notify,
    // Whether the actor (and so the admission task) runs; SeqCst so a
    // request never queues after the stop was seen by the actor.
    running: AtomicBool,
    stats: Counters,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("models", &self.catalogue.models.len())
            .field("deployments", &self.deployments.len())
            .field("providers", &self.providers.len())
            .field("gates", &self.gates.len())
            .field("sink", &self.sink.is_some())
            .field("running", &self.running)
            .finish()
    }
}

/// The spend holds of one model attempt. Released when dropped unless
/// settled, so a caller that stops waiting (a timeout, a `select!`) leaves
/// nothing reserved with the gates.
struct Holds<'a> {
    gates: &'a [Arc<dyn SpendGate>],
    // One per gate, in the gates' order.
    holds: Vec<SpendHold>,
}

impl Holds<'_> {
    /// Replaces every hold by the actual amounts.
    fn settle(mut self, actual: &ResourceVector) {
        for (g, h) in self.gates.iter().zip(std::mem::take(&mut self.holds)) {
            g.settle(h, actual);
        }
    }
}

impl Drop for Holds<'_> {
    fn drop(&mut self) {
        for (g, h) in self.gates.iter().zip(self.holds.drain(..)) {
            g.release(h);
        }
    }
}

/// A request waiting in the admission queue. If the caller stops waiting,
/// a grant already sent to it is given back (a grant sent later finds the
/// channel closed and is given back by the scan).
struct Waiting<'a> {
    core: &'a Core,
    rx: oneshot::Receiver<Result<Grant, GatewayError>>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.rx.close();
        if let Ok(Ok(grant)) = self.rx.try_recv() {
            self.core.cancel(grant);
        }
    }
}

/// A grant whose call may be under way. Finished by [`Core::finish`]; if
/// the caller stops waiting first, it is abandoned on drop
/// ([`Core::abandon`]) so the deployment's in-flight count is not leaked.
struct InFlight<'a> {
    core: &'a Core,
    deployment: usize,
    // `None` once finished.
    grant: Option<Grant>,
}

impl InFlight<'_> {
    fn finish(mut self, outcome: &Result<ProviderResponse, ProviderError>, latency: Duration) {
        if let Some(grant) = self.grant.take() {
            self.core.finish(grant, outcome, latency);
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(grant) = self.grant.take() {
            self.core.abandon(grant);
        }
    }
}

enum ModelFailure {
    /// Every deployment of the model is cooling down.
    NoDeployment,
    /// The model failed for good with this provider error.
    Provider(ProviderError),
    /// The request cannot go on (deadline, overload, stop, too large).
    Fatal(GatewayError),
}

struct Ctx<'a> {
    req: &'a LlmRequest,
    input: u64,
    deadline: Duration,
    attempts: u32,
}

impl Core {
    fn build(args: LlmGatewayArgs) -> Result<Self, GatewayBuildError> {
        args.catalogue.validate()?;
        // A batched request reaches the provider up to `max_wait` after its
        // admission; counting over 60 s + `max_wait` keeps every minute of
        // sends (which the provider counts) within the limits.
        let window = if args.llm.batch.enabled {
            MINUTE.saturating_add(args.llm.batch.max_wait)
        } else {
            MINUTE
        };
        let mut providers = Vec::new();
        let mut provider_limits = Vec::new();
        for p in &args.providers {
            if providers.iter().any(|x: &ProviderRt| x.id == p.id) {
                return Err(GatewayBuildError::DuplicateProvider(p.id.clone()));
            }
            let limits = p.limits.unwrap_or_else(|| default_provider_limits(&args.llm));
            provider_limits.push(LimitSet::with_window(&limits, args.llm.burst_percent, window)?);
            providers.push(ProviderRt {
                id: p.id.clone(),
                provider: Arc::clone(&p.provider),
            });
        }
        let mut deployments = Vec::new();
        let mut routes = Vec::new();
        for (model, m) in args.catalogue.models.iter().enumerate() {
            for d in &m.deployments {
                let provider = providers.iter().position(|p| p.id == d.provider).ok_or_else(|| {
                    CatalogueError::UnknownProvider {
                        model: m.name.clone(),
                        provider: d.provider.clone(),
                    }
                })?;
                let (input_price, output_price) = m.prices_of(d);
                routes.push(Route {
                    model,
                    provider,
                    weight: d.weight,
                    input_price,
                    output_price,
                    limits: LimitSet::with_window(&d.limits, args.llm.burst_percent, window)?,
                });
                deployments.push(DeploymentRt {
                    id: d.id.clone(),
                    provider,
                    upstream: d.upstream_model.clone().unwrap_or_else(|| m.name.clone()),
                    input_price,
                    output_price,
                });
            }
        }
        let cache = ResponseCache::open(&args.cache, args.cache_dir.as_deref())?;
        let batcher = args
            .llm
            .batch
            .enabled
            .then(|| Batcher::new(args.llm.batch.max_size as usize, args.llm.batch.max_wait));
        let models = args.catalogue.models.iter().map(|m| m.name.clone()).collect();
        let dispatcher = Dispatcher::new(DispatcherArgs {
            seed: args.seed,
            ..DispatcherArgs::new(&args.llm, models, provider_limits, routes)
        });
        Ok(Self {
            backoff: Backoff::new(args.llm.retry.base_backoff, args.llm.retry.max_backoff),
            sched: Mutex::new(dispatcher),
            llm: args.llm,
            catalogue: args.catalogue,
            deployments,
            providers,
            cache,
            gates: args.gates,
            sink: args.sink,
            counter: TokenCounter::new(),
            batcher,
            epoch: Instant::now(),
            wake: Notify::new(),
            running: AtomicBool::new(false),
            stats: Counters::default(),
        })
    }

    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn instant(&self, at: Duration) -> Instant {
        self.epoch + at
    }

    async fn acquire(&self, model: usize, demand: Demand, ctx: &Ctx<'_>) -> Result<Grant, GatewayError> {
        let rx = {
            let mut s = self.sched.lock();
            let now = self.now();
            if let Some(result) = s.try_admit_new(now, model, ctx.req.priority, demand) {
                return result;
            }
            let (tx, rx) = oneshot::channel();
            if s.enqueue(ctx.req.priority, model, ctx.deadline, Job { demand, caller: tx })
                .is_err()
            {
                bump(&self.stats.overloaded);
                return Err(GatewayError::Overloaded { queued: s.queued() });
            }
            rx
        };
        // From here on, dropping this (the deadline, or the caller giving
        // up) gives back a grant that was already made.
        let mut waiting = Waiting { core: self, rx };
        self.wake.notify_one();
        match tokio::time::timeout_at(self.instant(ctx.deadline), &mut waiting.rx).await {
            Ok(Ok(Err(GatewayError::DeadlineExceeded(_)))) => Err(GatewayError::DeadlineExceeded(ctx.req.timeout)),
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(GatewayError::Stopped),
            Err(_) => Err(GatewayError::DeadlineExceeded(ctx.req.timeout)),
        }
    }

    /// Admits waiting requests that fit now; returns when to look again.
    fn scan(&self) -> Option<Duration> {
        let scan = {
            let mut s = self.sched.lock();
            let now = self.now();
            s.scan(now, |tx| tx.is_closed())
        };
        for (w, grant) in scan.admitted {
            if let Err(Ok(grant)) = w.payload.caller.send(Ok(grant)) {
                self.cancel(grant);
            }
        }
        for (w, e) in scan.refused {
            let _ = w.payload.caller.send(Err(e)); // the caller may have left
        }
        // Answer expired waiters rather than dropping their channels, which
        // their callers would read as the gateway having stopped.
        for w in scan.expired {
            let _ = w
                .payload
                .caller
                .send(Err(GatewayError::DeadlineExceeded(Duration::ZERO))); // the caller may have left
        }
        scan.next
    }

    /// Gives back a grant whose call never happened.
    fn cancel(&self, grant: Grant) {
        self.sched.lock().cancel(grant);
        self.wake.notify_one();
    }

    /// Gives up a grant whose call may have reached the provider (its
    /// caller stopped waiting): the deployment no longer counts it in
    /// flight, and its whole estimate stays in the limits, as for a timeout,
    /// since the provider may count the call anyway.
    fn abandon(&self, grant: Grant) {
        self.sched.lock().abandon(grant);
        self.wake.notify_one();
    }

    /// Settles a grant after its call.
    fn finish(&self, grant: Grant, outcome: &Result<ProviderResponse, ProviderError>, latency: Duration) {
        let d = grant.deployment();
        let done = {
            let mut s = self.sched.lock();
            let now = self.now();
            s.finish(now, grant, outcome, latency)
        };
        if done.rate_limited {
            bump(&self.stats.provider_429s);
        }
        if done.cooled_down {
            bump(&self.stats.cooldowns);
            if let Err(e) = outcome {
                tracing::warn!(deployment = %self.deployments[d].id, error = %e, cooldown = ?self.llm.cooldown, "deployment cooling down");
            }
        }
        self.wake.notify_one();
    }

    async fn call_once(&self, model: usize, ctx: &mut Ctx<'_>) -> Result<(ProviderResponse, usize), ModelFailure> {
        let req = ctx.req;
        let demand = Demand::call(ctx.input, u64::from(req.max_tokens));
        let mut retry = 0u32;
        let mut last: Option<ProviderError> = None;
        loop {
            let grant = match self.acquire(model, demand, ctx).await {
                Ok(g) => InFlight {
                    core: self,
                    deployment: g.deployment(),
                    grant: Some(g),
                },
                // Its deployments cooled down while it was retrying: the
                // model failed with its last error.
                Err(GatewayError::NoDeployment(_)) => {
                    return Err(last.map_or(ModelFailure::NoDeployment, ModelFailure::Provider));
                }
                Err(GatewayError::DeadlineExceeded(_)) => {
                    return Err(ModelFailure::Fatal(GatewayError::DeadlineExceeded(req.timeout)));
                }
                Err(e) => return Err(ModelFailure::Fatal(e)),
            };
            let d = grant.deployment;
            let dep = &self.deployments[d];
            let provider = Arc::clone(&self.providers[dep.provider].provider);
            let preq = ProviderRequest {
                model: dep.upstream.clone(),
                messages: req.messages.clone(),
                max_tokens: req.max_tokens,
                temperature_milli: req.temperature_milli,
            };
            ctx.attempts += 1;
            bump(&self.stats.provider_calls);
            let started = Instant::now();
            let limit = self.llm.timeout;
            let call = async {
                match &self.batcher {
                    Some(b) => b.submit(d, provider, preq).await,
                    None => provider.complete(preq).await,
                }
            };
            let outcome = tokio::time::timeout(limit, call)
                .await
                .unwrap_or(Err(ProviderError::Timeout(limit)));
            grant.finish(&outcome, started.elapsed());
            let err = match outcome {
                Ok(resp) => return Ok((resp, d)),
                Err(e) => e,
            };
            tracing::debug!(deployment = %dep.id, error = %err, retry, "provider call failed");
            if self.now() >= ctx.deadline {
                return Err(ModelFailure::Fatal(GatewayError::DeadlineExceeded(req.timeout)));
            }
            if !err.is_retryable() || retry >= self.llm.retry.max_retries {
                return Err(ModelFailure::Provider(err));
            }
            let delay = {
                let mut s = self.sched.lock();
                self.backoff.delay(retry, err.retry_after(), s.rng())
            };
            if self.now() + delay >= ctx.deadline {
                return Err(ModelFailure::Fatal(GatewayError::DeadlineExceeded(req.timeout)));
            }
            retry += 1;
            bump(&self.stats.retries);
            last = Some(err);
            tokio::time::sleep(delay).await;
        }
    }

    /// Reserves `estimate` with every gate, or none (a refusal drops, and
    /// so releases, the holds made before it). A gate may wait, up to the
    /// request's `deadline`, for other requests' holds to settle.
    async fn reserve(
        &self,
        meta: &UsageMeta,
        estimate: &ResourceVector,
        deadline: Duration,
    ) -> Result<Holds<'_>, SpendRefused> {
        let until = self.instant(deadline);
        let mut holds = Holds {
            gates: &self.gates,
            holds: Vec::with_capacity(self.gates.len()),
        };
        for gate in &self.gates {
            holds.holds.push(gate.reserve_until(meta, estimate, until).await?);
        }
        Ok(holds)
    }

    async fn complete(&self, req: LlmRequest) -> Result<LlmResponse, GatewayError> {
        bump(&self.stats.requests);
        let result = self.pipeline(&req).await;
        match &result {
            Ok(_) => bump(&self.stats.completed),
            Err(e) => {
                bump(&self.stats.failed);
                match e {
                    GatewayError::SpendRefused(_) => bump(&self.stats.spend_refused),
                    GatewayError::DeadlineExceeded(_) => bump(&self.stats.deadline_exceeded),
                    _ => {}
                }
            }
        }
        result
    }

    async fn pipeline(&self, req: &LlmRequest) -> Result<LlmResponse, GatewayError> {
        if !self.running.load(Ordering::SeqCst) {
            return Err(GatewayError::Stopped);
        }
        if req.messages.is_empty() {
            return Err(GatewayError::InvalidRequest("no messages".into()));
        }
        if req.max_tokens == 0 {
            return Err(GatewayError::InvalidRequest("max_tokens must be at least 1".into()));
        }
        if req.timeout.is_zero() {
            return Err(GatewayError::InvalidRequest("timeout must be longer than zero".into()));
        }
        if req.temperature_milli > 2000 {
            return Err(GatewayError::InvalidRequest(format!(
                "temperature_milli {} is above 2000",
                req.temperature_milli
            )));
        }
        let deadline = self.now() + req.timeout;
        // 1. Cache.
        let key = (req.cacheable && self.cache.is_enabled())
            .then(|| CacheKey::new(&req.model, &req.messages, req.max_tokens, req.temperature_milli));
        if let Some((hit, tier)) = key.as_ref().and_then(|k| self.cache.get(k)) {
            return Ok(LlmResponse {
                content: hit.content.clone(),
                model: hit.model.clone(),
                deployment: String::new(),
                input_tokens: 0,
                output_tokens: 0,
                cost_micro_usd: 0,
                source: match tier {
                    CacheTier::Memory => ResponseSource::MemoryCache,
                    CacheTier::Disk => ResponseSource::DiskCache,
                },
                attempts: 0,
            });
        }
        // 2. Model choice.
        let input = self.counter.count_messages(&req.messages);
        let max_out = u64::from(req.max_tokens);
        let first = self.catalogue.choose(&req.model, input, max_out)?;
        let mut ctx = Ctx {
            req,
            input,
            deadline,
            attempts: 0,
        };
        let mut queue: std::collections::VecDeque<usize> = [first].into();
        let mut visited = vec![false; self.catalogue.models.len()];
        let mut tried = Vec::new();
        let mut last: Option<ProviderError> = None;
        let mut cooling = Vec::new();
        while let Some(m) = queue.pop_front() {
            if std::mem::replace(&mut visited[m], true) {
                continue;
            }
            if !tried.is_empty() {
                bump(&self.stats.fallbacks);
            }
            let spec = &self.catalogue.models[m];
            tried.push(spec.name.clone());
            let enqueue_general = |queue: &mut std::collections::VecDeque<usize>| {
                for f in &spec.fallbacks {
                    if let Some(i) = self.catalogue.index_of(f) {
                        queue.push_back(i);
                    }
                }
            };
            let enqueue_context = |queue: &mut std::collections::VecDeque<usize>| {
                for f in spec.context_window_fallbacks.iter().rev() {
                    if let Some(i) = self.catalogue.index_of(f) {
                        queue.push_front(i);
                    }
                }
            };
            if !spec.fits(input, max_out) {
                last = Some(ProviderError::ContextWindowExceeded {
                    limit: spec.context_window,
                    requested: input + max_out,
                });
                enqueue_context(&mut queue);
                continue;
            }
            // 3. Spend reservation.
            let estimate = ResourceVector::new()
                .with(ResourceKind::LlmRequests, 1)
                .with(ResourceKind::InputTokens, input)
                .with(ResourceKind::OutputTokens, max_out)
                .with(ResourceKind::Cost, spec.worst_cost(input, max_out));
            // Spend and usage belong to the model that serves the request,
            // priced at its prices: a fallback's own name replaces whatever
            // model the caller's metadata named.
            let mut meta = req.meta.clone();
            meta.model = Some(spec.name.clone());
            let holds = self.reserve(&meta, &estimate, ctx.deadline).await?;
            // 4-6. Rate limits, batching, the call with retries.
            match self.call_once(m, &mut ctx).await {
                Ok((resp, d)) => return Ok(self.settle(key, &meta, holds, m, d, resp, ctx.attempts).await),
                Err(failure) => {
                    drop(holds); // released: nothing was spent
                    match failure {
                        ModelFailure::Fatal(e) => return Err(e),
                        ModelFailure::NoDeployment => {
                            cooling.push(spec.name.clone());
                            enqueue_general(&mut queue);
                        }
                        ModelFailure::Provider(e) => {
                            if matches!(e, ProviderError::ContextWindowExceeded { .. }) {
                                enqueue_context(&mut queue);
                            } else {
                                enqueue_general(&mut queue);
                            }
                            last = Some(e);
                        }
                    }
                }
            }
        }
        match last {
            Some(last) => Err(GatewayError::Exhausted { tried, last }),
            None => Err(GatewayError::NoDeployment(cooling)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn settle(
        &self,
        key: Option<CacheKey>,
        meta: &UsageMeta,
        holds: Holds<'_>,
        model: usize,
        d: usize,
        resp: ProviderResponse,
        attempts: u32,
    ) -> LlmResponse {
        let dep = &self.deployments[d];
        let cost = cost_micro_usd(resp.input_tokens, resp.output_tokens, dep.input_price, dep.output_price);
        let actual = ResourceVector::new()
            .with(ResourceKind::LlmRequests, 1)
            .with(ResourceKind::InputTokens, resp.input_tokens)
            .with(ResourceKind::OutputTokens, resp.output_tokens)
            .with(ResourceKind::Cost, cost);
        holds.settle(&actual);
        self.stats.spent.fetch_add(cost, Ordering::Relaxed);
        self.stats.worst.fetch_max(cost, Ordering::Relaxed);
        let model_name = self.catalogue.models[model].name.clone();
        if let Some(sink) = &self.sink {
            // The same metadata the holds were reserved with: the ledger
            // matches settled holds to their records by it, so a record with
            // extra labels would be counted twice until the hold expired.
            // A kind with no tokens (an empty completion) gets no record: the
            // ledger refuses zero amounts as bad input, and would then refuse
            // the whole batch, leaving the prompt tokens uncharged.
            let records: Vec<UsageRecord> = [
                (ResourceKind::InputTokens, resp.input_tokens),
                (ResourceKind::OutputTokens, resp.output_tokens),
            ]
            .into_iter()
            .filter(|(_, amount)| *amount > 0)
            .map(|(kind, amount)| UsageRecord {
                kind,
                amount,
                meta: meta.clone(),
            })
            .collect();
            if let Err(e) = sink.record(records).await {
                bump(&self.stats.sink_errors);
                tracing::warn!(error = %e, deployment = %dep.id, "usage not recorded");
            }
        }
        if let Some(k) = key {
            self.cache.insert(
                k,
                CachedResponse {
                    content: resp.content.clone(),
                    model: model_name.clone(),
                },
            );
        }
        LlmResponse {
            content: resp.content,
            model: model_name,
            deployment: dep.id.clone(),
            input_tokens: resp.input_tokens,
            output_tokens: resp.output_tokens,
            cost_micro_usd: cost,
            source: ResponseSource::Provider,
            attempts,
        }
    }

    fn stats(&self) -> GatewayStats {
        let c = &self.stats;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (queued, in_flight) = {
            let s = self.sched.lock();
            (s.queued() as u64, s.in_flight())
        };
        GatewayStats {
            requests: l(&c.requests),
            completed: l(&c.completed),
            failed: l(&c.failed),
            provider_calls: l(&c.provider_calls),
            retries: l(&c.retries),
            fallbacks: l(&c.fallbacks),
            provider_429s: l(&c.provider_429s),
            spend_refused: l(&c.spend_refused),
            deadline_exceeded: l(&c.deadline_exceeded),
            overloaded: l(&c.overloaded),
            cooldowns: l(&c.cooldowns),
            sink_errors: l(&c.sink_errors),
            spent_micro_usd: l(&c.spent),
            worst_request_micro_usd: l(&c.worst),
            queued,
            in_flight,
            cache: self.cache.stats(),
        }
    }
}

async fn admission_loop(core: Arc<Core>) {
    loop {
        let next = core.scan();
        match next {
            Some(t) => {
                tokio::select! {
                    _ = core.wake.notified() => {}
                    _ = tokio::time::sleep_until(core.instant(t)) => {}
                }
            }
            None => core.wake.notified().await,
        }
    }
}

/// The cloneable data-plane handle: requests run on the caller's task.
#[derive(Debug, Clone)]
pub struct LlmGatewayHandle {
    core: Arc<Core>,
}

impl LlmGatewayHandle {
    /// Runs a request through the whole pipeline.
    pub async fn complete(&self, request: LlmRequest) -> Result<LlmResponse, GatewayError> {
        self.core.complete(request).await
    }

    /// Counts so far.
    pub fn stats(&self) -> GatewayStats {
        self.core.stats()
    }

    /// Waits until every cached answer so far is on disk.
    pub async fn flush_cache(&self) {
        self.core.cache.flush().await;
    }

    /// Prompt tokens of a conversation, as the gateway estimates them.
    pub fn count_tokens(&self, messages: &[crate::llm::Message]) -> u64 {
        self.core.counter.count_messages(messages)
    }

    /// The catalogue the gateway was built with.
    pub fn catalogue(&self) -> &ModelCatalogue {
        &self.core.catalogue
    }

    /// Whether the actor (and so the admission of waiting requests) runs.
    pub fn is_running(&self) -> bool {
        self.core.running.load(Ordering::SeqCst)
    }
}

/// The gateway actor. `self` is its configuration: the shared core, which
/// outlives restarts so that limits and reservations are never forgotten.
#[derive(Debug, Clone)]
pub struct LlmGateway {
    core: Arc<Core>,
}

/// The actor's state: the task that admits waiting requests.
#[derive(Debug)]
pub struct LlmGatewayState {
    admission: JoinHandle<()>,
}

/// Messages of the gateway actor.
#[derive(Debug)]
pub enum LlmGatewayMsg {
    /// Runs a request (on its own task) and replies with the result.
    Complete(Box<LlmRequest>, RpcReplyPort<Result<LlmResponse, GatewayError>>),
    /// Replies with the counts so far.
    Stats(RpcReplyPort<GatewayStats>),
    /// Replies once the cache's disk tier has every answer so far.
    FlushCache(RpcReplyPort<()>),
}

impl ractor::Message for LlmGatewayMsg {}

impl LlmGateway {
    /// Builds the gateway and its handle (not started yet: start the actor
    /// with [`Self::spawn`], or under a supervisor with
    /// `ChildSpec::for_actor(name, gateway, ())`).
    pub fn build(args: LlmGatewayArgs) -> Result<(LlmGateway, LlmGatewayHandle), GatewayBuildError> {
        let core = Arc::new(Core::build(args)?);
        Ok((
            LlmGateway {
                core: Arc::clone(&core),
            },
            LlmGatewayHandle { core },
        ))
    }

    /// Builds and starts an unsupervised gateway.
    pub async fn spawn(
        args: LlmGatewayArgs,
    ) -> Result<(LlmGatewayHandle, ActorRef<LlmGatewayMsg>, JoinHandle<()>), GatewayBuildError> {
        let (gateway, handle) = Self::build(args)?;
        let (actor, join) = Actor::spawn(None, gateway, ())
            .await
            .map_err(|e| GatewayBuildError::Spawn(e.to_string()))?;
        Ok((handle, actor, join))
    }
}

impl Actor for LlmGateway {
    type Msg = LlmGatewayMsg;
    type State = LlmGatewayState;
    type Arguments = ();

    async fn pre_start(&self, _me: ActorRef<Self::Msg>, _args: ()) -> Result<Self::State, ActorProcessingErr> {
        self.core.running.store(true, Ordering::SeqCst);
        let admission = tokio::spawn(admission_loop(Arc::clone(&self.core)));
        Ok(LlmGatewayState { admission })
    }

    #[tracing::instrument(skip_all, name = "llm_gateway")]
    async fn handle(
        &self,
        _me: ActorRef<Self::Msg>,
        msg: Self::Msg,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            LlmGatewayMsg::Complete(req, reply) => {
                let core = Arc::clone(&self.core);
                tokio::spawn(async move {
                    let result = core.complete(*req).await;
                    let _ = reply.send(result); // the caller may have stopped waiting
                });
            }
            LlmGatewayMsg::Stats(reply) => {
                let _ = reply.send(self.core.stats()); // the caller may have stopped waiting
            }
            LlmGatewayMsg::FlushCache(reply) => {
                let core = Arc::clone(&self.core);
                tokio::spawn(async move {
                    core.cache.flush().await;
                    let _ = reply.send(()); // the caller may have stopped waiting
                });
            }
        }
        Ok(())
    }

    async fn post_stop(&self, _me: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        self.core.running.store(false, Ordering::SeqCst);
        state.admission.abort();
        // Wait for the task to be gone so that it no longer holds the core
        // (and the cache's files) once the actor has stopped.
        let _ = (&mut state.admission).await; // cancelled on purpose
        // Waiters are answered `Stopped` (their senders are dropped); their
        // grants were never made, so nothing is held.
        let drained = self.core.sched.lock().drain();
        drop(drained);
        Ok(())
    }
}
