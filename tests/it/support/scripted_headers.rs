//! A provider whose replies carry scripted HTTP statuses and headers, read
//! through the OpenAI-compatible provider's own header and status parsing
//! (`parse_rate_limit_headers`, `status_error`), so that gateway tests can
//! run on paused time with exactly the headers a real server sends. Every
//! call is logged with the (paused) instant it reached the provider.

#![allow(dead_code)] // each test file uses a subset

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use futures::future::BoxFuture;
use nexus_swarm::actors::llm::openai::{parse_rate_limit_headers, status_error};
use nexus_swarm::actors::llm::{
    DeploymentSpec, LlmProvider, ModelCatalogue, ModelSpec, ProviderRequest, ProviderResponse, ProviderResult,
    RateLimits,
};
use nexus_swarm::actors::llm_gateway::{GatewayHandle, LlmGateway, LlmGatewayArgs, ProviderEntry};
use parking_lot::Mutex;
use tokio::time::Instant;

/// One scripted reply: a status and its headers.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    /// HTTP status; 200 answers a completion of 5 prompt tokens and the
    /// whole `max_tokens`.
    pub(crate) status: u16,
    /// Headers, by name.
    pub(crate) headers: Vec<(&'static str, &'static str)>,
}

impl Reply {
    /// A 200 with these headers.
    pub(crate) fn ok(headers: &[(&'static str, &'static str)]) -> Self {
        Self {
            status: 200,
            headers: headers.to_vec(),
        }
    }

    /// A 429 with these headers.
    pub(crate) fn too_many(headers: &[(&'static str, &'static str)]) -> Self {
        Self {
            status: 429,
            headers: headers.to_vec(),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    // Per upstream model: replies still to give (then plain 200s).
    scripts: HashMap<String, VecDeque<Reply>>,
    // (upstream model, when the call arrived).
    calls: Vec<(String, Instant)>,
    // The last message of each call, in arrival order.
    prompts: Vec<String>,
}

/// The scripted provider (cheap to clone; clones share the script and log).
#[derive(Debug, Clone, Default)]
pub(crate) struct Scripted {
    state: Arc<Mutex<State>>,
}

impl Scripted {
    /// A provider with no script: every call is a plain 200.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Queues replies for calls of `model` (the upstream model name).
    pub(crate) fn script(&self, model: &str, replies: impl IntoIterator<Item = Reply>) {
        self.state
            .lock()
            .scripts
            .entry(model.to_string())
            .or_default()
            .extend(replies);
    }

    /// Every call so far: (upstream model, arrival).
    pub(crate) fn calls(&self) -> Vec<(String, Instant)> {
        self.state.lock().calls.clone()
    }

    /// The last message of every call so far, in arrival order.
    pub(crate) fn prompts(&self) -> Vec<String> {
        self.state.lock().prompts.clone()
    }

    /// Arrivals of calls of `model`.
    pub(crate) fn calls_of(&self, model: &str) -> Vec<Instant> {
        self.calls()
            .into_iter()
            .filter(|(m, _)| m == model)
            .map(|(_, t)| t)
            .collect()
    }
}

impl LlmProvider for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }

    fn complete(&self, request: ProviderRequest) -> BoxFuture<'static, ProviderResult> {
        let max_tokens = request.max_tokens;
        let reply = {
            let mut s = self.state.lock();
            s.calls.push((request.model.clone(), Instant::now()));
            s.prompts
                .push(request.messages.last().map(|m| m.content.clone()).unwrap_or_default());
            s.scripts.get_mut(&request.model).and_then(VecDeque::pop_front)
        }
        .unwrap_or_else(|| Reply::ok(&[]));
        let mut headers = HeaderMap::new();
        for (name, value) in &reply.headers {
            headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        let snapshot = parse_rate_limit_headers(&headers);
        let result = if reply.status == 200 {
            Ok(ProviderResponse {
                content: "done".into(),
                input_tokens: 5,
                output_tokens: u64::from(max_tokens),
                finish_reason: "stop".into(),
                rate_limit: snapshot,
                tool_calls: Vec::new(),
            })
        } else {
            Err(status_error(reply.status, &headers, b"{}", snapshot))
        };
        Box::pin(async move { result })
    }
}

/// Where a test configures its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LimitsAt {
    /// On the provider entry (the common setup).
    Provider,
    /// On each deployment.
    Deployment,
    /// Nowhere: the gateway knows only what replies teach it.
    Nowhere,
}

/// Generous limits that never bind in these tests.
pub(crate) fn generous() -> RateLimits {
    RateLimits::rpm_tpm(10_000, 10_000_000)
}

/// A gateway over one scripted provider `p` serving models `a` and `b`
/// (deployments `a@p`, `b@p`), plus, if `spare` is given, a second
/// deployment of `a` at another provider `q` (`a@q`, upstream model
/// `a-spare`). No cache, no retries unless `retries`.
pub(crate) async fn gateway(p: &Scripted, at: LimitsAt, spare: Option<&Scripted>, retries: u32) -> GatewayHandle {
    let own = |spec: DeploymentSpec| match at {
        LimitsAt::Deployment => spec.limits(generous()),
        _ => spec,
    };
    let mut a = ModelSpec::new("a", 8_000, 1, 1).deployment(own(DeploymentSpec::new("a@p", "p")));
    let mut providers = vec![provider_entry("p", p, at)];
    if let Some(q) = spare {
        a = a.deployment(own(DeploymentSpec::new("a@q", "q").upstream("a-spare")));
        providers.push(provider_entry("q", q, at));
    }
    let b = ModelSpec::new("b", 8_000, 1, 1).deployment(own(DeploymentSpec::new("b@p", "p")));
    let catalogue = ModelCatalogue::new(vec![a, b]).unwrap();
    let mut args = LlmGatewayArgs::new(catalogue, providers);
    args.cache.enabled = false;
    args.llm.retry.max_retries = retries;
    args.llm.retry.base_backoff = Duration::from_millis(10);
    args.llm.retry.max_backoff = Duration::from_millis(20);
    let (gw, _actor, _join) = LlmGateway::spawn_unsupervised(args).await.unwrap();
    gw
}

fn provider_entry(id: &str, p: &Scripted, at: LimitsAt) -> ProviderEntry {
    let entry = ProviderEntry::new(id, Arc::new(p.clone()));
    match at {
        LimitsAt::Provider => entry.limits(generous()),
        LimitsAt::Deployment | LimitsAt::Nowhere => entry.limits(RateLimits::unlimited()),
    }
}
