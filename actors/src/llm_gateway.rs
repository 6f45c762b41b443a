//! [`LlmGateway`]: the actor in front of every LLM call, and
//! [`GatewayHandle`], the cloneable handle agents call it through.
//!
//! # Per request, in order
//!
//! 1. **Cache**: a hit (memory, then disk) answers at once and costs
//!    nothing: no spend is reserved, no usage recorded, no agent slot
//!    taken.
//! 2. **Agent slot**: a request whose [`UsageMeta`] names an agent takes
//!    one of that agent's `llm.max_concurrent_per_agent` slots (the agent
//!    is its tenant, workflow and agent) and holds it until the request
//!    ends, however it ends (answer, error, or the caller dropping it).
//!    With every slot taken it waits, first come first served per agent,
//!    until one of the agent's requests ends; past its deadline it gives
//!    up with [`GatewayError::AgentBusy`], holding nothing
//!    ([`agent_slots`]). A request that names no agent is not bounded per
//!    agent.
//! 3. **Model choice**: the named model, or the cheapest catalogue model
//!    with the capabilities asked for whose window holds the prompt
//!    (counted with the tokenizer) plus `max_tokens`.
//! 4. **Spend reservation**: the worst-case cost (the model's priciest
//!    deployment at `max_tokens`) and tokens are reserved with every
//!    [`SpendGate`] (budgets, quotas), waiting up to the deadline where a
//!    gate is full only of other requests' holds in flight; one refusal
//!    refuses the request with [`GatewayError::SpendRefused`] and releases
//!    the others.
//! 5. **Rate limits**: the estimated request and tokens are reserved in the
//!    provider's and the deployment's limits ([`limiter`]: GCRA pacing and
//!    a sliding-window cap, so every 60 s window holds), and must fit what
//!    the provider's replies taught both of them ([`learned`]: a reported
//!    `remaining: 0` holds the deployment and its provider until the
//!    reported reset, with or without configured limits). A deployment is
//!    chosen by the routing strategy among those not cooling down; if none
//!    fits now, the request waits in a priority queue ([`admission`]) until
//!    one does or its deadline passes. The [`dispatch`]er releases waiters
//!    by priority, then age, across every model that shares a provider.
//! 6. **Batching** (optional): calls to the same deployment are grouped.
//!    A batch is sent up to `llm.batch.max_wait` after its first request
//!    was admitted, so with batching on the limits count over
//!    60 s + `max_wait`: every 60 s of sends stays within them.
//! 7. **The call**, under `llm.timeout`. Errors that may pass (429, 5xx,
//!    timeouts, garbled replies) are retried with exponential backoff and
//!    full jitter, waiting at least the provider's retry-after, which also
//!    holds back the deployment for every caller (others go to another
//!    deployment of the model if one is free). Each retry re-enters step 5.
//! 8. **Fallback**: when a model fails for good, its `fallbacks` are tried in
//!    order; when the request exceeds its context window, its
//!    `context_window_fallbacks` (larger models) first. Each model gets its
//!    own reservation in step 4.
//! 9. **Settle**: the limits get the actual tokens (over-estimates refunded;
//!    the provider's remaining-headers are learned, or resynchronise them
//!    when they come without a reset), the gates get
//!    the actual cost, the [`UsageSink`] records the tokens (awaited until
//!    committed), the cache stores the answer; then the agent slot is
//!    released.
//!
//! A deployment that fails `llm.allowed_fails` times in a row is taken out
//! of picks for `llm.cooldown`.
//!
//! # Streams
//!
//! [`GatewayHandle::stream`] runs steps 1 to 8 the same way (a cache hit
//! streams as one chunk; retries and fallbacks happen only before the
//! provider accepts the stream, since after that part of the answer has
//! been delivered) and answers with an [`LlmStream`] once the stream has
//! begun, so every refusal is an ordinary error. A task of its own then
//! forwards the provider's chunks through a channel of 16: a reader that
//! does not keep up leaves the provider stream unpolled. Step 9 runs when
//! the stream ends, breaks ([`GatewayError::StreamBroken`]) or is dropped:
//! on the provider's final usage, or on what it produced until then,
//! counted with the tokenizer. The rate limits count the same final usage.
//! Each chunk must come within `llm.timeout` of the one before.
//!
//! # Planes
//!
//! The pipeline runs on the caller's task through the handle (the data
//! plane): no request queues behind the actor. Shared state is two short
//! critical sections ([`parking_lot::Mutex`]): the [`dispatch`]er (the
//! limits, learned holds, deployment health and the wait queue), which must
//! change together for a multi-limit admission to be atomic, and the
//! [`agent_slots`]. The actor owns the task that admits
//! waiting requests when capacity frees and answers control messages
//! (stats, cache flush, and completions for callers that only hold an
//! `ActorRef`).
//!
//! # Supervision
//!
//! [`LlmGateway::start`] runs the actor in a node's `system` subtree. The
//! shared state (limits, holds, the queue, the cache, agent slots) is the
//! actor's configuration, not its state, so a gateway restarted after a
//! failure keeps all of it and every [`GatewayHandle`] goes on working.
//! The admission task's handle lives in the shared state too: ractor runs
//! no `post_stop` after a panic, so the restarted actor aborts its
//! predecessor's task (if still running) before starting its own, and
//! there is never more than one. The task holds nothing across an await
//! (an admission is one synchronous step), so aborting it loses no grant.
//! Requests under way run on their callers' tasks and are not disturbed.
//!
//! # Layout
//!
//! | file | what it holds |
//! |---|---|
//! | `llm_gateway.rs` | the actor, its handle and arguments |
//! | `llm_gateway/from_config.rs` | the arguments built from `[[llm.providers]]` and `[[llm.models]]` |
//! | `llm_gateway/shared.rs` | the state every caller shares, built from the arguments |
//! | `llm_gateway/pipeline.rs` | the request pipeline (steps 1 to 9), and streams |
//! | `llm_gateway/policy.rs` | the pipeline's decisions: fallback order, retry or give up |
//! | `llm_gateway/grants.rs` | rate-limit grants from the [`dispatch`]er, and the admission task |
//! | `llm_gateway/per_agent.rs` | agent slots: the wait, and the release guard |
//! | `llm_gateway/stats.rs` | [`GatewayStats`] and its counters |
//! | `llm_gateway/tests.rs` | the actor under a supervisor: restarts |
//!
//! The decisions themselves are synchronous types in [`crate::llm`], tested
//! on an explicit clock: [`dispatch`], [`admission`], [`limiter`],
//! [`learned`], [`agent_slots`].
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
//! // Under a node: `LlmGateway::start(&node, "llm-gateway", args)`.
//! let (gateway, _actor, _join) = LlmGateway::spawn_unsupervised(args).await?;
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
//! [`agent_slots`]: crate::llm::agent_slots

mod from_config;
mod grants;
mod per_agent;
mod pipeline;
mod policy;
mod shared;
mod stats;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use nexus_swarm_runtime::config::{CacheConfig, LlmConfig, NexusConfig};
use nexus_swarm_runtime::node::Node;
use nexus_swarm_runtime::supervisor::ChildSpec;
use nexus_swarm_runtime::usage::{SpendGate, UsageMeta, UsageSink};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::task::JoinHandle;

use crate::llm::agent_slots::AgentKey;
pub use crate::llm::agent_slots::AgentLoad;
use crate::llm::catalogue::ModelCatalogue;
use crate::llm::error::{GatewayBuildError, GatewayError};
use crate::llm::limiter::RateLimits;
use crate::llm::provider::LlmProvider;
use crate::llm::types::{LlmRequest, LlmResponse};
use grants::admission_loop;
pub use pipeline::LlmStream;
use shared::Core;
pub use stats::GatewayStats;

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
    /// `<node.data_dir>/llm-cache`, serving the models of `catalogue` on
    /// `providers` built in code (`llm.providers` and `llm.models` are not
    /// read; [`Self::from_config`] builds both from them).
    pub fn from_config_with_catalogue(
        config: &NexusConfig,
        catalogue: ModelCatalogue,
        providers: Vec<ProviderEntry>,
    ) -> Self {
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

/// The cloneable data-plane handle: requests run on the caller's task. It
/// shares the gateway's state with the actor, so it keeps working across a
/// supervisor's restart of the actor.
#[derive(Debug, Clone)]
pub struct GatewayHandle {
    core: Arc<Core>,
}

/// A request with its prompt counted (messages and tool definitions), as
/// [`GatewayHandle::count`] made it: a caller that needs the count before
/// the call (a front door's tokens-per-minute admission) hands it on with
/// [`GatewayHandle::complete_counted`] or [`GatewayHandle::stream_counted`],
/// and the gateway does not count the same prompt again. The request
/// cannot be changed once counted, so the count always matches it.
#[derive(Debug)]
pub struct CountedRequest {
    request: LlmRequest,
    input_tokens: u64,
}

impl CountedRequest {
    /// The prompt's tokens: its messages and its tool definitions.
    pub fn input_tokens(&self) -> u64 {
        self.input_tokens
    }

    /// The request counted.
    pub fn request(&self) -> &LlmRequest {
        &self.request
    }

    /// The request back, its count dropped.
    pub fn into_request(self) -> LlmRequest {
        self.request
    }
}

impl GatewayHandle {
    /// Runs a request through the whole pipeline.
    pub async fn complete(&self, request: LlmRequest) -> Result<LlmResponse, GatewayError> {
        self.core.complete(request, None).await
    }

    /// Counts `request`'s prompt as the pipeline would (its messages and its
    /// tool definitions).
    pub fn count(&self, request: LlmRequest) -> CountedRequest {
        let input_tokens = self.core.count_input(&request);
        CountedRequest { request, input_tokens }
    }

    /// [`GatewayHandle::complete`] for a request counted already.
    pub async fn complete_counted(&self, counted: CountedRequest) -> Result<LlmResponse, GatewayError> {
        self.core.complete(counted.request, Some(counted.input_tokens)).await
    }

    /// [`GatewayHandle::stream`] for a request counted already.
    pub async fn stream_counted(&self, counted: CountedRequest) -> Result<LlmStream, GatewayError> {
        self.core.stream(counted.request, Some(counted.input_tokens)).await
    }

    /// Runs `request` through the same pipeline as [`GatewayHandle::complete`]
    /// (cache, agent slot, model choice, reservation, rate limits, retries
    /// and fallbacks until the provider accepts the stream) and answers
    /// with its chunks as the provider sends them, through a bounded
    /// channel: a reader that does not keep up slows the provider stream.
    /// The spend is settled when the stream ends, breaks or is dropped
    /// (then on what was produced so far), and the rate limits count its
    /// final usage. A cache hit streams as one chunk.
    pub async fn stream(&self, request: LlmRequest) -> Result<LlmStream, GatewayError> {
        self.core.stream(request, None).await
    }

    /// Counts so far.
    pub fn stats(&self) -> GatewayStats {
        self.core.stats()
    }

    /// The requests under way and waiting of the agent `meta` names (its
    /// tenant, workflow and agent), as bounded by
    /// `llm.max_concurrent_per_agent`; zero when `meta` names no agent.
    pub fn agent_load(&self, meta: &UsageMeta) -> AgentLoad {
        AgentKey::of(meta).map_or_else(AgentLoad::default, |k| self.core.slots.lock().load(&k))
    }

    /// Empties the in-memory response cache (the disk tier keeps
    /// answering); answers the bytes freed. A pressure response
    /// (`shrink_caches`).
    pub fn shrink_cache(&self) -> u64 {
        self.core.cache.shrink_memory()
    }

    /// Refuses (`true`) or accepts again (`false`) new low-priority
    /// requests with [`GatewayError::Shed`]; requests already queued or
    /// running go on. A pressure response (`reject_low_priority`).
    pub fn reject_low_priority(&self, reject: bool) {
        self.core.reject_low.store(reject, Ordering::Relaxed);
    }

    /// Whether new low-priority requests are refused.
    pub fn rejects_low_priority(&self) -> bool {
        self.core.reject_low.load(Ordering::Relaxed)
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

    /// Makes the gateway actor panic in its handler, as a bug would, so
    /// that a test can watch its supervisor restart it. Only with the
    /// `fault-injection` feature.
    #[cfg(any(test, feature = "fault-injection"))]
    #[doc(hidden)]
    // The handle's own error type, as `complete` returns; a test hook.
    #[allow(clippy::result_large_err)]
    pub fn inject_panic(&self) -> Result<(), GatewayError> {
        let actor = self.core.actor.load_full().ok_or(GatewayError::Stopped)?;
        actor
            .cast(LlmGatewayMsg::InjectPanic)
            .map_err(|_| GatewayError::Stopped)
    }
}

/// The gateway actor. `self` is its configuration: the shared core, which
/// outlives restarts so that limits and reservations are never forgotten.
#[derive(Debug, Clone)]
pub struct LlmGateway {
    core: Arc<Core>,
}

/// The actor's state. Empty: what the actor owns (the admission task)
/// is kept in the shared state, where a restarted actor finds it.
#[derive(Debug)]
pub struct LlmGatewayState {
    _private: (),
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
    /// Panics in the handler (supervision tests only; the
    /// `fault-injection` feature).
    #[cfg(any(test, feature = "fault-injection"))]
    #[doc(hidden)]
    InjectPanic,
}

impl ractor::Message for LlmGatewayMsg {}

impl LlmGateway {
    /// Builds the gateway and its handle without starting the actor (until
    /// it starts, requests are refused with [`GatewayError::Stopped`]).
    pub fn build(args: LlmGatewayArgs) -> Result<(LlmGateway, GatewayHandle), GatewayBuildError> {
        let core = Arc::new(Core::build(args)?);
        Ok((
            LlmGateway {
                core: Arc::clone(&core),
            },
            GatewayHandle { core },
        ))
    }

    /// Builds the gateway and starts it under `node`'s supervisor, in its
    /// `system` subtree, as `name` (unique among the node's system
    /// actors); returns a handle that keeps working across restarts (see
    /// "Supervision" in the module docs).
    pub async fn start(node: &Node, name: &str, args: LlmGatewayArgs) -> Result<GatewayHandle, GatewayBuildError> {
        let (gateway, handle) = Self::build(args)?;
        node.start_child(gateway.child_spec(name)).await?;
        Ok(handle)
    }

    /// A supervisor child spec for this gateway named `name`; every
    /// restart shares the same state.
    pub fn child_spec(self, name: &str) -> ChildSpec {
        ChildSpec::for_actor(name, self, ())
    }

    /// Builds and starts a gateway that no supervisor restarts (tests,
    /// benchmarks that own it for one run).
    pub async fn spawn_unsupervised(
        args: LlmGatewayArgs,
    ) -> Result<(GatewayHandle, ActorRef<LlmGatewayMsg>, JoinHandle<()>), GatewayBuildError> {
        let (gateway, handle) = Self::build(args)?;
        let (actor, join) = Actor::spawn(None, gateway, ()).await?;
        Ok((handle, actor, join))
    }
}

impl Actor for LlmGateway {
    type Msg = LlmGatewayMsg;
    type State = LlmGatewayState;
    type Arguments = ();

    async fn pre_start(&self, me: ActorRef<Self::Msg>, _args: ()) -> Result<Self::State, ActorProcessingErr> {
        {
            let mut admission = self.core.admission.lock();
            // A predecessor that failed ran no `post_stop`: its task may
            // still run. One admission task at a time.
            if let Some(old) = admission.take() {
                old.abort();
            }
            self.core.running.store(true, Ordering::SeqCst);
            *admission = Some(tokio::spawn(admission_loop(Arc::clone(&self.core))));
        }
        self.core.actor.store(Some(Arc::new(me)));
        Ok(LlmGatewayState { _private: () })
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
                    let result = core.complete(*req, None).await;
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
            #[cfg(any(test, feature = "fault-injection"))]
            LlmGatewayMsg::InjectPanic => panic!("fault injected into the LLM gateway"),
        }
        Ok(())
    }

    async fn post_stop(&self, me: ActorRef<Self::Msg>, _state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        self.core.running.store(false, Ordering::SeqCst);
        if self
            .core
            .actor
            .load()
            .as_ref()
            .is_some_and(|a| a.get_id() == me.get_id())
        {
            self.core.actor.store(None);
        }
        let admission = self.core.admission.lock().take();
        if let Some(admission) = admission {
            admission.abort();
            // Wait for the task to be gone so that it no longer holds the
            // core (and the cache's files) once the actor has stopped.
            let _ = admission.await; // cancelled on purpose
        }
        // Waiters are answered `Stopped` (their senders are dropped); their
        // grants were never made, so nothing is held.
        let drained = self.core.sched.lock().drain();
        drop(drained);
        Ok(())
    }
}
