//! Exponential backoff with full jitter that honours a provider's
//! retry-after.
//!
//! Attempt `k` (0-based) waits a uniformly random time in
//! `[0, min(max, base * 2^k)]` ("full jitter", which spreads retries of many
//! clients best), but never less than the retry-after the provider asked
//! for, even when that is longer than `max`.

use std::time::Duration;

use rand::Rng;

/// The backoff policy of retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
}

impl Backoff {
    /// Backoff doubling from `base` up to `max` (`max` is raised to `base`
    /// if lower).
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max: max.max(base),
        }
    }

    /// The ceiling of attempt `attempt`'s jitter: `min(max, base * 2^attempt)`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base.checked_mul(factor).unwrap_or(self.max).min(self.max)
    }

    /// How long to wait before retry number `attempt` (0 = the first retry).
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>, rng: &mut impl Rng) -> Duration {
        let cap = u64::try_from(self.ceiling(attempt).as_nanos()).unwrap_or(u64::MAX);
        let jitter = Duration::from_nanos(rng.random_range(0..=cap));
        jitter.max(retry_after.unwrap_or(Duration::ZERO))
    }
}

#[cfg(test)]
mod tests;
