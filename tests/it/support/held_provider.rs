//! A provider that holds every call open until the test answers it, so a
//! test decides exactly when each call ends and how.

#![allow(dead_code)] // each test file uses a subset

use std::sync::Arc;

use futures::future::BoxFuture;
use nexus_swarm::actors::llm::{LlmProvider, ProviderError, ProviderRequest, ProviderResponse, ProviderResult};
use parking_lot::Mutex;
use tokio::sync::oneshot;

/// Calls under way, by prompt (the last message's text).
#[derive(Debug, Default)]
pub(crate) struct HeldProvider {
    // One lock: a call is registered and counted together.
    held: Mutex<Vec<(String, oneshot::Sender<ProviderResult>)>>,
}

impl HeldProvider {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Prompts of the calls held open now whose caller still waits, in
    /// arrival order.
    pub(crate) fn held(&self) -> Vec<String> {
        let mut held = self.held.lock();
        held.retain(|(_, tx)| !tx.is_closed());
        held.iter().map(|(p, _)| p.clone()).collect()
    }

    /// Whether a call of this prompt is held open.
    pub(crate) fn holds(&self, prompt: &str) -> bool {
        self.held().iter().any(|p| p == prompt)
    }

    /// Ends the held call of `prompt` with `result`; false if there is none.
    pub(crate) fn answer(&self, prompt: &str, result: ProviderResult) -> bool {
        let mut held = self.held.lock();
        let Some(i) = held.iter().position(|(p, _)| p == prompt) else {
            return false;
        };
        held.remove(i).1.send(result).is_ok()
    }

    /// Ends the held call of `prompt` with a short answer.
    pub(crate) fn ok(&self, prompt: &str) -> bool {
        self.answer(
            prompt,
            Ok(ProviderResponse {
                content: format!("answer to {prompt}"),
                input_tokens: 10,
                output_tokens: 5,
                finish_reason: "stop".into(),
                rate_limit: Default::default(),
                tool_calls: Vec::new(),
            }),
        )
    }
}

impl LlmProvider for HeldProvider {
    fn name(&self) -> &str {
        "held"
    }

    fn complete(&self, request: ProviderRequest) -> BoxFuture<'static, ProviderResult> {
        let prompt = request.messages.last().map(|m| m.content.clone()).unwrap_or_default();
        let (tx, rx) = oneshot::channel();
        self.held.lock().push((prompt, tx));
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err(ProviderError::Lost("the test dropped the call")))
        })
    }
}

/// Runs other tasks until `cond` holds (time does not move meanwhile:
/// this task stays ready), or fails naming `what`.
pub(crate) async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..100_000 {
        if cond() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("never happened: {what}");
}
