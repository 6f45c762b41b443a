//! Usage recommendations for agents' declared CPU requests, in the manner
//! of Kubernetes' vertical pod autoscaler's recommender: every CPU window
//! (see [`super::cpu`]) adds the agent's use per worker to a histogram with
//! exponentially growing buckets, older windows weighing less (their weight
//! halves every [`HALF_LIFE`]); the recommended request is the 90th
//! percentile plus a [`MARGIN_PERCENT`] safety margin, with the 50th as the
//! lower bound and the 95th plus the margin as the upper. Recommendations
//! are reported ([`Swarm::recommendations`](super::Swarm::recommendations)),
//! never applied.
//!
//! Memory is not recommended: the runtime measures handler time per agent,
//! not the memory an agent's state holds.

use std::time::Duration;

/// Smallest bucket's upper bound, in millicores.
const FIRST_BUCKET: f64 = 1.0;
/// Each bucket is this much wider than the one before (5 %, as the VPA's).
const GROWTH: f64 = 1.05;
/// Buckets: up to about 2 x 10^6 millicores (two thousand cores).
const BUCKETS: usize = 300;
/// The weight of a window halves every this long (the VPA's default: 24 h).
pub const HALF_LIFE: Duration = Duration::from_secs(24 * 3600);
/// Added on top of the percentile (the VPA's default: 15 %).
pub const MARGIN_PERCENT: u64 = 15;
/// Windows observed before a recommendation is given.
pub const MIN_SAMPLES: u64 = 10;

/// A recommendation for one agent or pool (per worker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recommendation {
    /// The agent's or pool's name.
    pub name: String,
    /// Its workers now.
    pub workers: u64,
    /// The CPU request its profile declares per worker, in millicores.
    pub declared_millicores: u64,
    /// The request to declare: the 90th percentile of its use per worker
    /// plus the margin.
    pub target_millicores: u64,
    /// Below this the request is surely too small: the median use.
    pub lower_millicores: u64,
    /// Above this the request is surely too large: the 95th percentile
    /// plus the margin.
    pub upper_millicores: u64,
    /// Windows observed.
    pub samples: u64,
}

impl Recommendation {
    /// Whether the declared request lies outside `lower..=upper`.
    pub fn is_off(&self) -> bool {
        self.declared_millicores < self.lower_millicores || self.declared_millicores > self.upper_millicores
    }
}

/// A decaying histogram of CPU use per worker, one per admitted agent.
/// Allocated up to the highest bucket used, so an idle agent's is empty.
#[derive(Debug, Default)]
pub(crate) struct UsageHistogram {
    /// Weight per bucket, scaled by `scale` (to decay without touching
    /// every bucket: new samples weigh more instead).
    weights: Vec<f64>,
    /// The weight a sample taken now carries.
    scale: f64,
    samples: u64,
}

impl UsageHistogram {
    /// Adds one window's use, `millicores` per worker, `elapsed` after the
    /// previous window.
    pub(crate) fn add(&mut self, millicores: u64, elapsed: Duration) {
        if self.scale == 0.0 {
            self.scale = 1.0;
        } else {
            self.scale *= 2f64.powf(elapsed.as_secs_f64() / HALF_LIFE.as_secs_f64());
        }
        if self.scale > 1e100 {
            // Renormalise before the weights overflow.
            for w in &mut self.weights {
                *w /= self.scale;
            }
            self.scale = 1.0;
        }
        let bucket = bucket_of(millicores);
        if self.weights.len() <= bucket {
            self.weights.resize(bucket + 1, 0.0);
        }
        self.weights[bucket] += self.scale;
        self.samples += 1;
    }

    /// The upper bound of the bucket holding the `p`-th percentile (0..=100).
    pub(crate) fn percentile(&self, p: u64) -> u64 {
        let total: f64 = self.weights.iter().sum();
        if total == 0.0 {
            return 0;
        }
        let wanted = total * (p.min(100) as f64) / 100.0;
        let mut seen = 0.0;
        for (i, w) in self.weights.iter().enumerate() {
            seen += w;
            if seen >= wanted && *w > 0.0 {
                return upper_bound(i);
            }
        }
        upper_bound(self.weights.len().saturating_sub(1))
    }

    /// The recommendation, once [`MIN_SAMPLES`] windows were seen.
    pub(crate) fn recommend(&self, name: &str, workers: u64, declared_millicores: u64) -> Option<Recommendation> {
        if self.samples < MIN_SAMPLES {
            return None;
        }
        let margin = |v: u64| v.saturating_add(v.saturating_mul(MARGIN_PERCENT).div_ceil(100));
        Some(Recommendation {
            name: name.to_string(),
            workers,
            declared_millicores,
            target_millicores: margin(self.percentile(90)),
            lower_millicores: self.percentile(50),
            upper_millicores: margin(self.percentile(95)),
            samples: self.samples,
        })
    }
}

/// The bucket of a use: 0 for up to [`FIRST_BUCKET`], then one per 5 %.
fn bucket_of(millicores: u64) -> usize {
    if millicores as f64 <= FIRST_BUCKET {
        return 0;
    }
    let b = ((millicores as f64 / FIRST_BUCKET).ln() / GROWTH.ln()).ceil() as usize;
    b.min(BUCKETS - 1)
}

/// The largest use a bucket holds (rounded up to a whole millicore).
fn upper_bound(bucket: usize) -> u64 {
    (FIRST_BUCKET * GROWTH.powi(i32::try_from(bucket).unwrap_or(i32::MAX))).ceil() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(1);

    #[test]
    fn buckets_hold_their_values_within_five_percent() {
        for v in [2u64, 10, 99, 250, 1000, 12_345, 1_000_000] {
            let ub = upper_bound(bucket_of(v));
            assert!(ub >= v && ub as f64 <= (v as f64) * GROWTH + 1.0, "{v} -> {ub}");
        }
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn the_target_is_the_90th_percentile_plus_the_margin() {
        let mut h = UsageHistogram::default();
        // 90 windows at 200 m, 10 at 800 m: p90 is 200 m, p95 800 m.
        for i in 0..100 {
            h.add(if i % 10 == 0 { 800 } else { 200 }, WINDOW);
        }
        let r = h.recommend("a", 2, 1000).unwrap();
        let p90 = upper_bound(bucket_of(200));
        assert_eq!(r.target_millicores, p90 + (p90 * 15).div_ceil(100));
        assert_eq!(r.lower_millicores, p90);
        let p95 = upper_bound(bucket_of(800));
        assert_eq!(r.upper_millicores, p95 + (p95 * 15).div_ceil(100));
        assert!(r.is_off(), "declaring 1000 m for a use of 200 m is too much");
        assert_eq!(r.samples, 100);
    }

    #[test]
    fn nothing_is_recommended_from_too_few_windows_and_idle_agents_hold_nothing() {
        let mut h = UsageHistogram::default();
        for _ in 0..MIN_SAMPLES - 1 {
            h.add(0, WINDOW);
        }
        assert_eq!(h.recommend("a", 1, 100), None);
        assert_eq!(h.weights.len(), 1, "idle windows fill the first bucket only");
        h.add(0, WINDOW);
        assert_eq!(h.recommend("a", 1, 100).unwrap().target_millicores, 2);
    }

    #[test]
    fn old_windows_weigh_less_than_new_ones() {
        let mut h = UsageHistogram::default();
        for _ in 0..100 {
            h.add(1000, WINDOW);
        }
        // Two half-lives later, 30 windows at 100 m outweigh the 100 old ones
        // (each old one now weighs a quarter).
        h.add(100, HALF_LIFE * 2);
        for _ in 0..29 {
            h.add(100, WINDOW);
        }
        assert_eq!(h.percentile(50), upper_bound(bucket_of(100)));
    }
}
