//! [`Core`]: the state every caller of a gateway shares, and how it is
//! built from [`LlmGatewayArgs`].

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use nexus_swarm_runtime::config::{ConfigError, LlmConfig};
use nexus_swarm_runtime::usage::{SpendGate, UsageSink};
use parking_lot::Mutex;
use ractor::ActorRef;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::llm::agent_slots::AgentSlots;
use crate::llm::backoff::Backoff;
use crate::llm::batch::Batcher;
use crate::llm::cache::ResponseCache;
use crate::llm::catalogue::ModelCatalogue;
use crate::llm::dispatch::{Dispatcher, DispatcherArgs, Grant, Route};
use crate::llm::error::{CatalogueError, GatewayBuildError, GatewayError};
use crate::llm::limiter::{LimitSet, MINUTE};
use crate::llm::provider::LlmProvider;
use crate::llm::tokens::TokenCounter;

use super::stats::Counters;
use super::{LlmGatewayArgs, LlmGatewayMsg, default_provider_limits};

#[derive(Debug)]
pub(super) struct ProviderRt {
    pub(super) id: String,
    pub(super) provider: Arc<dyn LlmProvider>,
}

#[derive(Debug)]
pub(super) struct DeploymentRt {
    pub(super) id: String,
    pub(super) provider: usize,
    pub(super) upstream: String,
    pub(super) input_price: u64,
    pub(super) output_price: u64,
}

/// How a caller waiting for rate-limit capacity is handed its admission.
pub(super) type Caller = oneshot::Sender<Result<Grant, GatewayError>>;

/// How a caller waiting for a slot of its agent is handed the slot.
pub(super) type SlotCaller = oneshot::Sender<()>;

/// The shared state of a gateway (data plane).
pub(super) struct Core {
    pub(super) llm: LlmConfig,
    pub(super) catalogue: ModelCatalogue,
    pub(super) deployments: Vec<DeploymentRt>,
    pub(super) providers: Vec<ProviderRt>,
    pub(super) cache: ResponseCache,
    pub(super) gates: Vec<Arc<dyn SpendGate>>,
    pub(super) sink: Option<Arc<dyn UsageSink>>,
    pub(super) counter: TokenCounter,
    pub(super) backoff: Backoff,
    pub(super) batcher: Option<Batcher>,
    epoch: Instant,
    // Limits, learned holds, health and the wait queue change together (a
    // multi-limit admission is atomic); critical sections are short and
    // never await.
    pub(super) sched: Mutex<Dispatcher<Caller>>,
    // Per-agent slots: a lock of their own, since they change on other
    // events (a request's start and end, not each call) and must not
    // queue behind the dispatcher; critical sections are short and never
    // await.
    pub(super) slots: Mutex<AgentSlots<SlotCaller>>,
    // Wakes the admission task when capacity may have freed.
    pub(super) wake: Notify,
    // Whether the actor (and so the admission task) runs; SeqCst so a
    // request never queues after the stop was seen by the actor.
    pub(super) running: AtomicBool,
    // The admission task of the running actor. Here, not in the actor's
    // state, so that an actor restarted after a panic (no `post_stop` ran)
    // can abort its predecessor's task. A plain mutex: taken when the
    // actor starts and stops, never on a request.
    pub(super) admission: Mutex<Option<JoinHandle<()>>>,
    // The running actor, for the handle's calls to it. ArcSwapOption: the
    // actor stores itself when it (re)starts and clears itself when it stops.
    pub(super) actor: ArcSwapOption<ActorRef<LlmGatewayMsg>>,
    pub(super) stats: Counters,
    // Whether low-priority requests are refused (a pressure response).
    pub(super) reject_low: AtomicBool,
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

impl Core {
    pub(super) fn build(args: LlmGatewayArgs) -> Result<Self, GatewayBuildError> {
        args.catalogue.validate()?;
        let per_agent = NonZeroU32::new(args.llm.max_concurrent_per_agent).ok_or_else(|| ConfigError::Invalid {
            field: "llm.max_concurrent_per_agent".into(),
            value: "0".into(),
            reason: "must be at least 1".into(),
        })?;
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
            slots: Mutex::new(AgentSlots::new(per_agent)),
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
            admission: Mutex::new(None),
            actor: ArcSwapOption::empty(),
            stats: Counters::default(),
            reject_low: AtomicBool::new(false),
        })
    }

    /// The gateway's clock: time since it was built, which the dispatcher
    /// and the agent slots count in.
    pub(super) fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// The instant of a time on the gateway's clock.
    pub(super) fn instant(&self, at: Duration) -> Instant {
        self.epoch + at
    }
}
