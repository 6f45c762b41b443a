//! The time a request spends in provider calls, so that the front door can
//! say how much time it added itself (`x-nexus-added-us`).
//!
//! Every provider is wrapped in a [`Timed`] provider. A request's handler
//! runs the gateway call inside [`measure`], which sets a task-local
//! counter; the gateway runs its pipeline on the caller's task, so when it
//! calls a provider the wrapper finds the counter and adds the call's wall
//! time to it (retries and fallbacks included, however the call's future is
//! later polled). A call made off the caller's task (a batch sent by the
//! batcher) finds no counter and is not subtracted: the added time is then
//! over-stated, never under-stated.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use nexus_swarm_actors::llm::types::{ProviderRequest, ProviderStream};
use nexus_swarm_actors::llm::{LlmProvider, ProviderError, ProviderResult};
use tokio::time::Instant;

tokio::task_local! {
    static PROVIDER_NANOS: Arc<AtomicU64>;
}

/// A provider whose calls are timed into the caller's [`measure`] scope.
#[derive(Debug)]
pub struct Timed {
    inner: Arc<dyn LlmProvider>,
}

impl Timed {
    /// Wraps a provider.
    pub fn wrap(inner: Arc<dyn LlmProvider>) -> Arc<dyn LlmProvider> {
        Arc::new(Self { inner })
    }
}

fn add_to(counter: Option<Arc<AtomicU64>>, started: Instant) {
    if let Some(c) = counter {
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        c.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl LlmProvider for Timed {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn complete(&self, request: ProviderRequest) -> BoxFuture<'static, ProviderResult> {
        let counter = PROVIDER_NANOS.try_with(Arc::clone).ok();
        let call = self.inner.complete(request);
        Box::pin(async move {
            let started = Instant::now();
            let out = call.await;
            add_to(counter, started);
            out
        })
    }

    /// A stream is opened on the gateway's own task, outside any
    /// [`measure`] scope: the gateway reports the time it waited for the
    /// provider itself ([`StreamInfo::provider_time`](nexus_swarm_actors::llm::types::StreamInfo)).
    fn stream(&self, request: ProviderRequest) -> BoxFuture<'static, Result<ProviderStream, ProviderError>> {
        self.inner.stream(request)
    }

    fn complete_batch(&self, requests: Vec<ProviderRequest>) -> BoxFuture<'static, Vec<ProviderResult>> {
        let counter = PROVIDER_NANOS.try_with(Arc::clone).ok();
        let call = self.inner.complete_batch(requests);
        Box::pin(async move {
            let started = Instant::now();
            let out = call.await;
            add_to(counter, started);
            out
        })
    }
}

/// Runs `fut` with a provider-time counter; returns its output and the
/// time spent in provider calls made from it.
pub async fn measure<F: Future>(fut: F) -> (F::Output, Duration) {
    let counter = Arc::new(AtomicU64::new(0));
    // Relaxed: a plain sum, read after every call it counts was awaited
    // to its end inside `fut`.
    let out = PROVIDER_NANOS.scope(counter.clone(), fut).await;
    (out, Duration::from_nanos(counter.load(Ordering::Relaxed)))
}
