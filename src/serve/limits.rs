//! A key's own rpm / tpm limits: the decision to admit a request now or
//! answer 429 with how long to wait, and the `x-ratelimit-*` figures.
//!
//! Each limit holds over every sliding minute (the gateway's
//! [`LimitSet`]: GCRA pacing with a burst of the whole limit, plus a
//! window log as the hard cap). A request reserves one request and its
//! prompt plus `max_tokens` before the call; once it ends the reservation
//! is replaced by the actual tokens (none for a cache hit or a failed
//! call), so an over-estimate is given back. A request that does not fit
//! *now* is refused at once with the time until it would fit: a front door
//! answers 429 rather than hold a connection open.
//!
//! Time is a [`Duration`] since an epoch the caller picks, so that this is
//! plain synchronous code tested without a runtime.

use std::time::Duration;

use nexus_swarm_actors::llm::limiter::{Demand, LimitSet, SetGrant};
use nexus_swarm_actors::llm::{RateLimitError, RateLimits};

/// The GCRA burst, in percent of each limit: a fresh key may send its
/// whole minute's allowance at once (the window log still caps every
/// sliding minute).
const BURST_PERCENT: u8 = 100;

/// A key's limits and what they hold now.
#[derive(Debug)]
pub struct KeyLimits {
    requests: Option<(u64, LimitSet)>,
    tokens: Option<(u64, LimitSet)>,
}

/// A reservation in a key's limits, to settle when the request ends.
#[derive(Debug)]
pub struct KeyGrant {
    requests: Option<SetGrant>,
    tokens: Option<SetGrant>,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitRefusal {
    /// It fits after `retry_after`.
    Later {
        /// How long until it fits (if nothing else is admitted meanwhile).
        retry_after: Duration,
        /// `"requests"` or `"tokens"`: the limit that refused.
        limit: &'static str,
    },
    /// It is larger than a whole minute's limit: it can never fit.
    TooLarge {
        /// The tokens asked for.
        requested: u64,
        /// The limit per minute.
        limit: u64,
    },
}

/// The figures of the `x-ratelimit-*` headers: per limit, the limit, what
/// is left in the current sliding minute, and the time until it is all
/// available again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateFigures {
    /// Requests: (limit, remaining, reset).
    pub requests: Option<(u64, u64, Duration)>,
    /// Tokens: (limit, remaining, reset).
    pub tokens: Option<(u64, u64, Duration)>,
}

fn set(limits: RateLimits) -> Option<LimitSet> {
    // A limit of at least 1 (the keys file refuses 0) always builds.
    LimitSet::new(&limits, BURST_PERCENT).ok()
}

impl KeyLimits {
    /// Limits of `rpm` requests and `tpm` tokens per sliding minute
    /// (`None`: unlimited; 0 is treated as 1).
    pub fn new(rpm: Option<u64>, tpm: Option<u64>) -> Self {
        let requests = rpm.map(|l| l.max(1)).and_then(|l| {
            set(RateLimits {
                requests_per_minute: Some(l),
                ..RateLimits::default()
            })
            .map(|s| (l, s))
        });
        let tokens = tpm.map(|l| l.max(1)).and_then(|l| {
            set(RateLimits {
                tokens_per_minute: Some(l),
                ..RateLimits::default()
            })
            .map(|s| (l, s))
        });
        Self { requests, tokens }
    }

    /// Admits one request of `tokens` (prompt plus `max_tokens`) at `now`,
    /// reserving it, or says when it would fit.
    pub fn admit(&mut self, now: Duration, tokens: u64) -> Result<KeyGrant, LimitRefusal> {
        let demand = Demand::call(tokens, 0);
        let mut at = now;
        let mut which = "requests";
        for (name, entry) in [("requests", &mut self.requests), ("tokens", &mut self.tokens)] {
            if let Some((_, s)) = entry {
                let t = s.earliest(now, &demand).map_err(|e| match e {
                    RateLimitError::TooLarge { requested, limit, .. } => LimitRefusal::TooLarge { requested, limit },
                    // A zero limit cannot be built (see `new`); refuse for good.
                    _ => LimitRefusal::TooLarge {
                        requested: tokens,
                        limit: 0,
                    },
                })?;
                if t > at {
                    at = t;
                    which = name;
                }
            }
        }
        if at > now {
            return Err(LimitRefusal::Later {
                retry_after: at - now,
                limit: which,
            });
        }
        Ok(KeyGrant {
            requests: self.requests.as_mut().map(|(_, s)| s.commit(now, demand)),
            tokens: self.tokens.as_mut().map(|(_, s)| s.commit(now, demand)),
        })
    }

    /// Replaces a reservation by the tokens the request actually used.
    pub fn settle(&mut self, grant: &KeyGrant, actual_tokens: u64) {
        let actual = Demand::call(actual_tokens, 0);
        if let (Some((_, s)), Some(g)) = (self.requests.as_mut(), grant.requests.as_ref()) {
            s.settle(g, &actual);
        }
        if let (Some((_, s)), Some(g)) = (self.tokens.as_mut(), grant.tokens.as_ref()) {
            s.settle(g, &actual);
        }
    }

    /// The header figures at `now`.
    pub fn figures(&mut self, now: Duration) -> RateFigures {
        fn of(entry: &mut Option<(u64, LimitSet)>, now: Duration, full: Demand) -> Option<(u64, u64, Duration)> {
            let (limit, s) = entry.as_mut()?;
            let used = s
                .in_window(now, nexus_swarm_actors::llm::limiter::Dimension::Requests)
                .or_else(|| s.in_window(now, nexus_swarm_actors::llm::limiter::Dimension::Tokens))
                .unwrap_or(0);
            // The whole limit fits once the window has emptied and the pacing caught up.
            let reset = s.earliest(now, &full).map_or(Duration::ZERO, |t| t.saturating_sub(now));
            Some((*limit, limit.saturating_sub(used), reset))
        }
        let rpm = self.requests.as_ref().map_or(0, |(l, _)| *l);
        let tpm = self.tokens.as_ref().map_or(0, |(l, _)| *l);
        RateFigures {
            requests: of(
                &mut self.requests,
                now,
                Demand {
                    requests: rpm,
                    ..Demand::default()
                },
            ),
            tokens: of(&mut self.tokens, now, Demand::call(tpm, 0)),
        }
    }
}
