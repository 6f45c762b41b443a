//! Deployment routing within a model group, and the cooldown that takes a
//! failing deployment out of picks.
//!
//! A strategy does not pick one deployment: it *orders* the available ones,
//! and the gateway takes the first whose rate limits admit the request now.
//! So a strategy's favourite that is at its limit does not stall a request
//! that another deployment could serve.

use std::time::Duration;

pub use nexus_swarm_runtime::config::DeploymentRouting;
use rand::Rng;
use rand::seq::SliceRandom;

/// What a strategy knows about one available deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// The caller's index of the deployment.
    pub index: usize,
    /// Weight for weighted shuffle (at least 1).
    pub weight: u32,
    /// Requests in flight on it.
    pub in_flight: u64,
    /// Smoothed latency of its recent successes (`None` before the first).
    pub latency_micros: Option<u64>,
    /// Use of its busiest rate limit in the current window, in permille.
    pub usage_permille: u64,
    /// This request's cost on it, in micro-dollars.
    pub cost_micro_usd: u64,
}

/// Orders candidates by a strategy; ties are broken at random (seeded by
/// the caller's `rng`) so that equal deployments share the load.
pub fn order(strategy: DeploymentRouting, candidates: &[Candidate], rng: &mut impl Rng) -> Vec<usize> {
    let mut c: Vec<Candidate> = candidates.to_vec();
    c.shuffle(rng);
    match strategy {
        DeploymentRouting::WeightedShuffle => {
            // Efraimidis-Spirakis: key u^(1/w), largest first, is a weighted
            // random permutation (floats only for randomness, not amounts).
            let mut keyed: Vec<(f64, usize)> = c
                .iter()
                .map(|d| {
                    let u: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
                    (u.powf(1.0 / f64::from(d.weight.max(1))), d.index)
                })
                .collect();
            keyed.sort_by(|a, b| b.0.total_cmp(&a.0));
            return keyed.into_iter().map(|(_, i)| i).collect();
        }
        DeploymentRouting::LeastBusy => c.sort_by_key(|d| d.in_flight),
        // Untried deployments (no latency yet) go first so they get measured.
        DeploymentRouting::LowestLatency => c.sort_by_key(|d| d.latency_micros.unwrap_or(0)),
        DeploymentRouting::LowestUsage => c.sort_by_key(|d| d.usage_permille),
        DeploymentRouting::LowestCost => c.sort_by_key(|d| d.cost_micro_usd),
    }
    c.into_iter().map(|d| d.index).collect()
}

/// Health of one deployment: consecutive failures, cooldown and latency.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeploymentHealth {
    consecutive_failures: u32,
    cooldown_until: Option<Duration>,
    latency_micros: Option<u64>,
    /// Requests in flight.
    pub in_flight: u64,
}

impl DeploymentHealth {
    /// Whether it may be picked at `now`.
    pub fn available(&self, now: Duration) -> bool {
        self.cooldown_until.is_none_or(|until| now >= until)
    }

    /// When its cooldown ends, if it is cooling down at `now`.
    pub fn cooling_until(&self, now: Duration) -> Option<Duration> {
        self.cooldown_until.filter(|until| *until > now)
    }

    /// A success: failures reset, latency folded into the average
    /// (exponentially weighted, 1/8 per sample).
    pub fn on_success(&mut self, latency: Duration) {
        self.consecutive_failures = 0;
        let sample = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_micros = Some(match self.latency_micros {
            None => sample,
            Some(avg) => avg - avg / 8 + sample / 8,
        });
    }

    /// A failure that counts against the deployment. After `allowed_fails`
    /// in a row it cools down until `now + cooldown`; returns whether this
    /// failure started a cooldown.
    pub fn on_failure(&mut self, now: Duration, allowed_fails: u32, cooldown: Duration) -> bool {
        self.consecutive_failures += 1;
        if self.consecutive_failures >= allowed_fails && self.available(now) {
            self.cooldown_until = Some(now + cooldown);
            self.consecutive_failures = 0;
            return true;
        }
        false
    }

    /// Smoothed latency of recent successes.
    pub fn latency_micros(&self) -> Option<u64> {
        self.latency_micros
    }
}

#[cfg(test)]
mod tests;
