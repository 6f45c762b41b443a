//! Batching of provider calls: requests admitted for the same deployment
//! within `max_wait` of each other are sent together (up to `max_size`)
//! through [`LlmProvider::complete_batch`], which a provider with a batch
//! mode answers in one exchange. Each request has passed its rate limits
//! and spend reservation before it joins a batch.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::error::ProviderError;
use super::provider::{LlmProvider, ProviderResult};
use super::types::ProviderRequest;

type Slot = (ProviderRequest, oneshot::Sender<ProviderResult>);

#[derive(Debug, Default)]
struct Pending {
    slots: Vec<Slot>,
    generation: u64,
}

/// Groups calls per deployment.
#[derive(Debug, Clone)]
pub struct Batcher {
    max_size: usize,
    max_wait: Duration,
    // Per-deployment pending batches; held only to push or take a batch.
    pending: Arc<Mutex<HashMap<usize, Pending>>>,
}

impl Batcher {
    /// Batches of at most `max_size` (at least 1), sent at the latest
    /// `max_wait` after their first request.
    pub fn new(max_size: usize, max_wait: Duration) -> Self {
        Self {
            max_size: max_size.max(1),
            max_wait,
            pending: Arc::default(),
        }
    }

    /// Sends `request` to `provider` as part of `deployment`'s next batch.
    pub async fn submit(
        &self,
        deployment: usize,
        provider: Arc<dyn LlmProvider>,
        request: ProviderRequest,
    ) -> ProviderResult {
        let (tx, rx) = oneshot::channel();
        let (full, arm_timer) = {
            let mut pending = self.pending.lock();
            let p = pending.entry(deployment).or_default();
            p.slots.push((request, tx));
            if p.slots.len() >= self.max_size {
                p.generation += 1;
                (Some(std::mem::take(&mut p.slots)), None)
            } else if p.slots.len() == 1 {
                (None, Some(p.generation))
            } else {
                (None, None)
            }
        };
        if let Some(batch) = full {
            tokio::spawn(dispatch(Arc::clone(&provider), batch));
        }
        if let Some(generation) = arm_timer {
            let this = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(this.max_wait).await;
                let batch = {
                    let mut pending = this.pending.lock();
                    match pending.get_mut(&deployment) {
                        Some(p) if p.generation == generation && !p.slots.is_empty() => {
                            p.generation += 1;
                            Some(std::mem::take(&mut p.slots))
                        }
                        _ => None,
                    }
                };
                if let Some(batch) = batch {
                    dispatch(provider, batch).await;
                }
            });
        }
        rx.await
            .unwrap_or_else(|_| Err(ProviderError::Lost("its batch was dropped")))
    }
}

async fn dispatch(provider: Arc<dyn LlmProvider>, batch: Vec<Slot>) {
    let (requests, senders): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
    let n = requests.len();
    let mut results = provider.complete_batch(requests).await;
    results.resize_with(n, || {
        Err(ProviderError::Malformed("batch reply is missing an answer".into()))
    });
    for (tx, r) in senders.into_iter().zip(results) {
        let _ = tx.send(r); // a caller that timed out no longer wants it
    }
}

#[cfg(test)]
mod tests;
