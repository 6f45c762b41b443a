//! What a provider's replies teach about its limits: holds until an
//! instant, kept per deployment and per provider whatever limits are
//! configured (none included).
//!
//! The configured limits ([`limiter`](super::limiter)) pace what the
//! gateway sends; the provider's own count is the truth they approximate.
//! Its replies say how much is left and when that resets
//! (`x-ratelimit-remaining-*` / `x-ratelimit-reset-*`), and a 429 says how
//! long to wait (`retry-after`). A [`Learned`] record keeps both, for each
//! deployment and each provider, and the dispatcher honours it for every
//! caller:
//!
//! - **Allowances**: a reply reporting `remaining` requests (or tokens)
//!   with a reset `r` says "at most `remaining` more until `now + r`". The
//!   allowance is counted down by each admission against it, and a request
//!   that does not fit what is left is held until the reset, after which
//!   the allowance no longer applies. A later reply replaces it: it
//!   usually knows more, and when replies overtake each other the next one
//!   corrects the figure again. `remaining: 0` with `reset: 6m0s` therefore holds everything
//!   for six minutes, not for one window of the configured limits. A
//!   remaining count with no reset teaches no allowance (there is no
//!   instant to hold until); the configured limits still resynchronise
//!   from it.
//! - **Holds**: [`Learned::hold_until`] admits nothing before an instant (a
//!   429's retry-after holds back the deployment that got it).
//!
//! Admissions are never refunded here (a cancelled call's allowance stays
//! spent): erring towards holding is safe, and the next reply says what is
//! really left.
//!
//! Time is a [`Duration`] since the caller's epoch, as in the limiter:
//! plain synchronous code, tested without a runtime.

use std::time::Duration;

use super::limiter::{Demand, Dimension};
use super::types::RateLimitSnapshot;

/// At most `remaining` units more until `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    /// Units left.
    pub remaining: u64,
    /// When the provider's window resets (time since the epoch).
    pub until: Duration,
}

impl Allowance {
    /// When `units` fit: `now` if they do, else the reset.
    fn earliest(&self, now: Duration, units: u64) -> Duration {
        if now >= self.until || units <= self.remaining {
            now
        } else {
            self.until
        }
    }
}

/// What one key (a deployment or a provider) has learned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Learned {
    held_until: Duration,
    requests: Option<Allowance>,
    tokens: Option<Allowance>,
}

impl Learned {
    /// Nothing learned.
    pub fn new() -> Self {
        Self::default()
    }

    /// Admits nothing before `until` (never shortens an earlier hold).
    pub fn hold_until(&mut self, until: Duration) {
        self.held_until = self.held_until.max(until);
    }

    /// Takes in a reply's rate-limit report received at `now`.
    pub fn learn(&mut self, now: Duration, snap: &RateLimitSnapshot) {
        if let (Some(remaining), Some(reset)) = (snap.remaining_requests, snap.reset_requests) {
            self.requests = Some(Allowance {
                remaining,
                until: now.saturating_add(reset),
            });
        }
        if let (Some(remaining), Some(reset)) = (snap.remaining_tokens, snap.reset_tokens) {
            self.tokens = Some(Allowance {
                remaining,
                until: now.saturating_add(reset),
            });
        }
    }

    /// The earliest time at or after `now` at which `demand` may be sent.
    pub fn earliest(&self, now: Duration, demand: &Demand) -> Duration {
        let mut at = now.max(self.held_until);
        if let Some(a) = &self.requests {
            at = at.max(a.earliest(now, demand.amount(Dimension::Requests)));
        }
        if let Some(a) = &self.tokens {
            at = at.max(a.earliest(now, demand.amount(Dimension::Tokens)));
        }
        at
    }

    /// Counts `demand`, admitted at `now`, against the allowances.
    pub fn commit(&mut self, now: Duration, demand: &Demand) {
        for (a, units) in [
            (&mut self.requests, demand.amount(Dimension::Requests)),
            (&mut self.tokens, demand.amount(Dimension::Tokens)),
        ] {
            match a {
                Some(x) if now >= x.until => *a = None,
                Some(x) => x.remaining = x.remaining.saturating_sub(units),
                None => {}
            }
        }
    }

    /// The requests allowance, if one applies.
    pub fn requests(&self) -> Option<Allowance> {
        self.requests
    }

    /// The tokens allowance, if one applies.
    pub fn tokens(&self) -> Option<Allowance> {
        self.tokens
    }
}

#[cfg(test)]
mod tests;
