//! [`SmoothWeighted`]: nginx's smooth weighted round-robin, precomputed.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{MAX_WEIGHT_SCHEDULE_WORK, RoutingError, RoutingKey, RoutingStrategy};

/// Smooth weighted round-robin, the algorithm of nginx's upstream module.
///
/// Each member has a weight `w` and a running `current` (starting at 0).
/// For each pick, every member's `current` grows by its weight, the member
/// with the highest `current` is picked (the first one on ties) and its
/// `current` drops by the sum `W` of all weights. After `W` picks every
/// `current` is back to 0, so the sequence repeats with period `W`, and in
/// each period member `i` is picked exactly `w_i` times. Picks are spread
/// out, not bunched: weights 5, 1, 1 give `a a b a c a a`, not
/// `a a a a a b c`.
///
/// The sequence depends only on the weights, so it is computed once, when
/// the router's actor builds the snapshot (weights are first divided by
/// their gcd, which leaves the sequence unchanged and shortens the period),
/// and a pick is an atomic add and an index: no lock on the data plane.
#[derive(Debug)]
pub struct SmoothWeighted {
    members: usize,
    /// One cycle of member indices.
    schedule: Box<[u32]>,
    /// Position in the cycle; shared by every handle. Relaxed: it orders
    /// nothing but itself.
    cursor: AtomicUsize,
}

impl SmoothWeighted {
    /// The schedule for these weights (member `i` has `weights[i]`).
    ///
    /// Errors, changing nothing: a zero weight, or a cycle so long that
    /// precomputing it would cost more than [`MAX_WEIGHT_SCHEDULE_WORK`].
    pub fn new(weights: &[u32]) -> Result<Self, RoutingError> {
        let (reduced, cycle) = reduce(weights)?;
        let schedule = nginx_sequence(&reduced, cycle);
        Ok(Self {
            members: weights.len(),
            schedule: schedule.into_boxed_slice(),
            cursor: AtomicUsize::new(0),
        })
    }

    /// One cycle of picks (member indices).
    pub fn cycle(&self) -> &[u32] {
        &self.schedule
    }

    /// Whether [`new`](Self::new) accepts these weights, without building
    /// the schedule: the same errors, at the cost of a gcd and a sum.
    pub fn check(weights: &[u32]) -> Result<(), RoutingError> {
        cycle_of(weights).map(|_| ())
    }
}

/// The weights divided by their gcd and the cycle's length, or why the
/// weights are refused.
fn reduce(weights: &[u32]) -> Result<(Vec<u64>, usize), RoutingError> {
    let (g, cycle) = cycle_of(weights)?;
    let reduced = weights.iter().map(|&w| u64::from(w) / g).collect();
    // The cycle is at most MAX_WEIGHT_SCHEDULE_WORK, far below usize::MAX.
    Ok((reduced, usize::try_from(cycle).unwrap_or(usize::MAX)))
}

/// The weights' gcd (at least 1) and cycle length (sum of the reduced
/// weights), checked: no zero weight, and a schedule within
/// [`MAX_WEIGHT_SCHEDULE_WORK`]. The sum saturates rather than overflow,
/// and a saturated sum is refused as too long.
fn cycle_of(weights: &[u32]) -> Result<(u64, u64), RoutingError> {
    if let Some(member) = weights.iter().position(|&w| w == 0) {
        return Err(RoutingError::ZeroWeight { member });
    }
    let g = weights.iter().fold(0u64, |g, &w| gcd(g, u64::from(w))).max(1);
    let cycle = weights
        .iter()
        .fold(0u64, |sum, &w| sum.saturating_add(u64::from(w) / g));
    let members = u64::try_from(weights.len()).unwrap_or(u64::MAX);
    if cycle.saturating_mul(members) > MAX_WEIGHT_SCHEDULE_WORK {
        return Err(RoutingError::WeightCycleTooLong {
            cycle,
            members: weights.len(),
            max: MAX_WEIGHT_SCHEDULE_WORK,
        });
    }
    Ok((g, cycle))
}

/// `picks` steps of the nginx algorithm over `weights`.
fn nginx_sequence(weights: &[u64], picks: usize) -> Vec<u32> {
    let total: i64 = weights.iter().map(|&w| w as i64).sum();
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(picks);
    for _ in 0..picks {
        for (c, &w) in current.iter_mut().zip(weights) {
            *c += w as i64;
        }
        let best = argmax_first(&current);
        current[best] -= total;
        out.push(best as u32);
    }
    out
}

/// Index of the first maximum.
fn argmax_first(values: &[i64]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate().skip(1) {
        if v > values[best] {
            best = i;
        }
    }
    best
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl RoutingStrategy for SmoothWeighted {
    #[inline]
    fn pick(&self, _key: Option<&RoutingKey>) -> Option<usize> {
        if self.schedule.is_empty() {
            return None;
        }
        let at = self.cursor.fetch_add(1, Ordering::Relaxed) % self.schedule.len();
        Some(self.schedule[at] as usize)
    }

    fn len(&self) -> usize {
        self.members
    }
}
