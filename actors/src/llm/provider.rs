//! The provider seam: anything that answers chat completions.

use std::fmt;

use futures::future::BoxFuture;

use super::error::ProviderError;
use super::types::{ProviderRequest, ProviderResponse, ProviderStream};

/// The result of one provider call.
pub type ProviderResult = Result<ProviderResponse, ProviderError>;

/// A chat-completion backend (a simulated one, or an HTTP API).
///
/// Calls return `'static` futures so that the gateway can drop them at a
/// timeout and run them on any task.
pub trait LlmProvider: Send + Sync + fmt::Debug + 'static {
    /// A short name for logs and metrics.
    fn name(&self) -> &str;

    /// One chat completion.
    fn complete(&self, request: ProviderRequest) -> BoxFuture<'static, ProviderResult>;

    /// One chat completion, streamed: resolves when the provider has
    /// accepted the call (a refusal, such as a 429, is an error here),
    /// then yields its chunks as they come. The default answers the whole
    /// completion as one piece, for providers that cannot stream.
    fn stream(&self, request: ProviderRequest) -> BoxFuture<'static, Result<ProviderStream, ProviderError>> {
        let call = self.complete(request);
        Box::pin(async move { call.await.map(ProviderStream::from_response) })
    }

    /// Several completions sent together; one result per request, in order.
    /// The default sends them concurrently; a provider with a real batch
    /// mode overrides it.
    fn complete_batch(&self, requests: Vec<ProviderRequest>) -> BoxFuture<'static, Vec<ProviderResult>> {
        let calls: Vec<_> = requests.into_iter().map(|r| self.complete(r)).collect();
        Box::pin(futures::future::join_all(calls))
    }
}
