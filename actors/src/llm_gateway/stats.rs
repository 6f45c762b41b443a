//! What the gateway counts: [`GatewayStats`] and the counters behind it.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::llm::cache::CacheStats;
use crate::llm::error::GatewayError;

use super::shared::Core;

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
    /// Requests whose deadline passed (waiting for rate-limit capacity,
    /// for a slot of their agent, or between retries).
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
    /// Requests that had to wait for a slot of their agent
    /// (`llm.max_concurrent_per_agent`), so far.
    pub agent_waits: u64,
    /// Requests holding a slot of their agent now, every agent together
    /// (requests whose metadata names no agent hold none).
    pub agent_in_flight: u64,
    /// Requests waiting for a slot of their agent now, every agent
    /// together.
    pub agent_waiting: u64,
    /// The response cache.
    pub cache: CacheStats,
}

/// The running counts.
#[derive(Debug, Default)]
pub(super) struct Counters {
    // Statistics only: Relaxed atomics, nothing is ordered by them.
    pub(super) requests: AtomicU64,
    pub(super) completed: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) provider_calls: AtomicU64,
    pub(super) retries: AtomicU64,
    pub(super) fallbacks: AtomicU64,
    pub(super) provider_429s: AtomicU64,
    pub(super) spend_refused: AtomicU64,
    pub(super) deadline_exceeded: AtomicU64,
    pub(super) overloaded: AtomicU64,
    pub(super) cooldowns: AtomicU64,
    pub(super) sink_errors: AtomicU64,
    pub(super) agent_waits: AtomicU64,
    pub(super) spent: AtomicU64,
    pub(super) worst: AtomicU64,
}

/// Adds one to a counter.
pub(super) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    /// Counts how a request ended.
    pub(super) fn ended<T>(&self, result: &Result<T, GatewayError>) {
        match result {
            Ok(_) => bump(&self.completed),
            Err(e) => {
                bump(&self.failed);
                match e {
                    GatewayError::SpendRefused(_) => bump(&self.spend_refused),
                    GatewayError::DeadlineExceeded(_) | GatewayError::AgentBusy { .. } => {
                        bump(&self.deadline_exceeded);
                    }
                    _ => {}
                }
            }
        }
    }

    /// Counts an answered call's cost.
    pub(super) fn spent(&self, cost: u64) {
        self.spent.fetch_add(cost, Ordering::Relaxed);
        self.worst.fetch_max(cost, Ordering::Relaxed);
    }
}

impl Core {
    /// The counts so far, with the queues' and caches' state now.
    pub(super) fn stats(&self) -> GatewayStats {
        let c = &self.stats;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (queued, in_flight) = {
            let s = self.sched.lock();
            (s.queued() as u64, s.in_flight())
        };
        let (agent_in_flight, agent_waiting) = {
            let s = self.slots.lock();
            (s.in_flight(), s.waiting() as u64)
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
            agent_waits: l(&c.agent_waits),
            agent_in_flight,
            agent_waiting,
            cache: self.cache.stats(),
        }
    }
}
