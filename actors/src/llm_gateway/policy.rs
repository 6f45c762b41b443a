//! The pipeline's own decisions, in plain synchronous code: which model a
//! request tries next ([`FallbackChain`]) and what follows a failed call
//! ([`after_failure`]).

use std::collections::VecDeque;
use std::time::Duration;

use crate::llm::catalogue::ModelCatalogue;
use crate::llm::error::ProviderError;

/// The models a request may be served by, in the order they are tried.
///
/// The chain starts with the model chosen for the request. A model that
/// fails because the request does not fit its window puts its
/// `context_window_fallbacks` next, in order, ahead of anything queued; a
/// model that fails otherwise (or whose deployments all cool down) puts
/// its `fallbacks` last, in order. A model is tried once at most, so
/// fallbacks that name each other end.
#[derive(Debug)]
pub(super) struct FallbackChain<'a> {
    catalogue: &'a ModelCatalogue,
    queue: VecDeque<usize>,
    visited: Vec<bool>,
    tried: Vec<String>,
}

impl<'a> FallbackChain<'a> {
    /// A chain starting with `first` (an index into `catalogue`).
    pub(super) fn new(catalogue: &'a ModelCatalogue, first: usize) -> Self {
        Self {
            catalogue,
            queue: [first].into(),
            visited: vec![false; catalogue.models.len()],
            tried: Vec::new(),
        }
    }

    /// The next model to try, if any is left; it counts as tried.
    pub(super) fn next(&mut self) -> Option<usize> {
        while let Some(m) = self.queue.pop_front() {
            if !std::mem::replace(&mut self.visited[m], true) {
                self.tried.push(self.catalogue.models[m].name.clone());
                return Some(m);
            }
        }
        None
    }

    /// Whether the model [`Self::next`] gave last is a fallback.
    pub(super) fn is_fallback(&self) -> bool {
        self.tried.len() > 1
    }

    /// `model` cannot hold the request: its larger models go next.
    pub(super) fn too_large(&mut self, model: usize) {
        let spec = &self.catalogue.models[model];
        for f in spec.context_window_fallbacks.iter().rev() {
            if let Some(i) = self.catalogue.index_of(f) {
                self.queue.push_front(i);
            }
        }
    }

    /// `model` failed for good: its fallbacks join the end of the chain.
    pub(super) fn failed(&mut self, model: usize) {
        let spec = &self.catalogue.models[model];
        for f in &spec.fallbacks {
            if let Some(i) = self.catalogue.index_of(f) {
                self.queue.push_back(i);
            }
        }
    }

    /// The models tried so far, in order.
    pub(super) fn into_tried(self) -> Vec<String> {
        self.tried
    }
}

/// What follows a failed provider call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AfterFailure {
    /// Call the model again after this backoff.
    Retry(Duration),
    /// The model failed for good with this error.
    GiveUp,
    /// The request's deadline passed, or would before the retry.
    Deadline,
}

/// Decides at `now` what follows the failure `err` of attempt `retry` (0
/// for the first call) of a request due at `deadline`: a retry when the
/// error may pass, retries are left and the backoff (`delay`, asked only
/// then) ends before the deadline.
pub(super) fn after_failure(
    err: &ProviderError,
    retry: u32,
    max_retries: u32,
    now: Duration,
    deadline: Duration,
    delay: impl FnOnce() -> Duration,
) -> AfterFailure {
    if now >= deadline {
        return AfterFailure::Deadline;
    }
    if !err.is_retryable() || retry >= max_retries {
        return AfterFailure::GiveUp;
    }
    let delay = delay();
    if now.saturating_add(delay) >= deadline {
        AfterFailure::Deadline
    } else {
        AfterFailure::Retry(delay)
    }
}

#[cfg(test)]
mod tests;
