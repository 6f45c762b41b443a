//! Token-bucket admission for routers: a rate, a burst, and a policy per
//! priority for what happens when the bucket is empty.
//!
//! [`Gcra`] is the decision: the generic cell rate algorithm, the
//! token bucket written as one timestamp (the "theoretical arrival time",
//! TAT) in an `AtomicU64`, so that admitting is a clock read, a load and a
//! compare-and-swap, with no lock. It is plain synchronous code driven with
//! explicit times, tested without a runtime. [`Admission`] puts it on
//! tokio's clock (so paused-time tests drive it) and applies the policy of
//! each priority ([`AdmissionPolicy`]): `wait` up to the lane's timeout, or
//! `reject` at once with an [`AdmissionError`] saying when to retry.
//!
//! Over any window of length `t` starting with a full bucket, at most
//! `rate * t + burst` messages are admitted (the emission interval is
//! rounded up to whole nanoseconds, so never more).
//!
//! # Why not `governor`
//!
//! `governor` implements the same algorithm and was the first choice. Its
//! custom-clock seam works with tokio's paused time (a `Clock` whose
//! instants are `governor::nanos::Nanos` read from `tokio::time::Instant`),
//! but three needs of this module do not fit it:
//!
//! * [`RateControl::set_rate_factor`]: a budget throttles a router by scaling
//!   its rate while it runs. A `governor` quota is fixed when its limiter is
//!   built, and a limiter's state cannot be carried into a new one, so every
//!   change would hand out a fresh burst (or forget one that was spent).
//!   Here the rate is an atomic and a change rescales the bucket's level.
//! * Waiting: a waiting sender here *reserves* the next slot (the TAT moves
//!   past it in the same compare-and-swap) and sleeps until it, so waiters
//!   are served in order, exactly at the rate, and are never woken for
//!   nothing. `governor`'s `until_ready` re-polls after a `futures-timer`
//!   delay, which runs on the wall clock rather than tokio's (paused-time
//!   tests cannot drive it) and lets every waiter race for each new token.
//! * The wait limit: the policy needs "admitted now, after `d`, or not
//!   within the limit (retry after `d`)" from one atomic decision, so that
//!   a refused sender consumes nothing.
//!
//! The module is small: [`Gcra::acquire`] is the whole algorithm.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::config::{AdmissionConfig, AdmissionPolicies, AdmissionPolicy, ConfigError, MailboxConfig};
use crate::priority::Priority;
use crate::usage::RateControl;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// The rate factor that leaves the configured rate unchanged.
pub const FULL_RATE_PERMILLE: u32 = 1000;

/// Largest tolerance (`burst` x emission interval) a bucket may reach, in
/// nanoseconds, at the slowest rate it can be throttled to (1 permille of
/// the configured rate): 2^62 ns, about 146 years. Beyond it the tolerance
/// and the theoretical arrival time would approach `u64::MAX`, where
/// saturating arithmetic admits everything; such a burst is refused.
pub const MAX_TOLERANCE_NS: u64 = 1 << 62;

/// Why [`Gcra::acquire`] did not admit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// A token will be free after this many nanoseconds (if nobody else
    /// takes it): longer than the caller was willing to wait.
    After(u64),
    /// The rate is scaled to zero: nothing is admitted until it is raised.
    Suspended,
}

/// The generic cell rate algorithm over one atomic timestamp.
///
/// Times are nanoseconds since an epoch of the caller's choice (a full
/// bucket at time 0). With emission interval `T = 1 s / rate` and
/// tolerance `burst * T`, a request at `now` conforms once
/// `max(TAT, now) + T - burst * T <= now`; admitting it moves the TAT to
/// `max(TAT, now) + T`.
#[derive(Debug)]
pub struct Gcra {
    /// The theoretical arrival time of the next token after all admitted
    /// (and reserved) ones. An atomic, updated by compare-and-swap: many
    /// senders admit concurrently and none may wait on a lock.
    tat: AtomicU64,
    /// Nanoseconds per token at the current rate factor; 0 when suspended.
    /// An atomic so the rate can change while senders admit; read Relaxed
    /// (a sender racing a change uses the old rate once, which is fine).
    interval: AtomicU64,
    burst: u64,
    rate_per_sec: u32,
    /// Rate changes come from the control plane (budget throttling), rarely;
    /// a mutex serializes them so that the rescaling of the TAT and the new
    /// interval are applied as one step. Never taken on the admit path.
    control: Mutex<RateState>,
}

#[derive(Debug, Clone, Copy)]
struct RateState {
    permille: u32,
    /// The interval in force before a suspension (to rescale from on resume).
    last_interval: u64,
}

fn interval_for(rate_per_sec: u32, permille: u32) -> u64 {
    // ceil(1e9 * 1000 / (rate * permille)): rounding up never admits more
    // than the rate.
    let den = u128::from(rate_per_sec) * u128::from(permille);
    let num = NANOS_PER_SEC * u128::from(FULL_RATE_PERMILLE);
    u64::try_from(num.div_ceil(den)).unwrap_or(u64::MAX).max(1)
}

impl Gcra {
    /// A full bucket of `burst` tokens refilled at `rate_per_sec`. Both must
    /// be at least 1 (see [`check`](Self::check)).
    pub fn new(rate_per_sec: u32, burst: u32) -> Result<Self, ConfigError> {
        Self::check(rate_per_sec, burst)?;
        let interval = interval_for(rate_per_sec, FULL_RATE_PERMILLE);
        Ok(Self {
            tat: AtomicU64::new(0),
            interval: AtomicU64::new(interval),
            burst: u64::from(burst),
            rate_per_sec,
            control: Mutex::new(RateState {
                permille: FULL_RATE_PERMILLE,
                last_interval: interval,
            }),
        })
    }

    /// Whether [`new`](Self::new) accepts this rate and burst: both at
    /// least 1, and a tolerance (`burst` x emission interval) within
    /// [`MAX_TOLERANCE_NS`] even at the slowest rate factor, so that it
    /// never saturates. Errors name the `router.admission` field.
    pub fn check(rate_per_sec: u32, burst: u32) -> Result<(), ConfigError> {
        if rate_per_sec == 0 {
            return Err(ConfigError::Invalid {
                field: "router.admission.rate_per_sec".into(),
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        if burst == 0 {
            return Err(ConfigError::Invalid {
                field: "router.admission.burst".into(),
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        let slowest = interval_for(rate_per_sec, 1);
        if u128::from(burst) * u128::from(slowest) > u128::from(MAX_TOLERANCE_NS) {
            return Err(ConfigError::Invalid {
                field: "router.admission.burst".into(),
                value: burst.to_string(),
                reason: format!(
                    "a burst of {burst} at {rate_per_sec}/s throttled to 1 permille spans more than 2^62 ns; \
                     at most {} at this rate",
                    MAX_TOLERANCE_NS / slowest
                ),
            });
        }
        Ok(())
    }

    /// Takes a token at `now`, or reserves the next one if it is free within
    /// `max_wait` nanoseconds. `Ok(0)`: admitted now; `Ok(d)`: admitted at
    /// `now + d` (the caller waits `d`; the token is spent even if it gives
    /// up); `Err`: nothing was consumed.
    #[inline]
    pub fn acquire(&self, now: u64, max_wait: u64) -> Result<u64, Denied> {
        let t = self.interval.load(Ordering::Relaxed);
        if t == 0 {
            return Err(Denied::Suspended);
        }
        // At most MAX_TOLERANCE_NS (checked at construction for the
        // slowest interval), so it does not saturate.
        let tolerance = t.saturating_mul(self.burst);
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let next = tat.max(now).saturating_add(t);
            let wait = next.saturating_sub(tolerance).saturating_sub(now);
            if wait > max_wait {
                return Err(Denied::After(wait));
            }
            // Relaxed: the TAT is the only data the exchange protects.
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(wait),
                Err(actual) => tat = actual,
            }
        }
    }

    /// Scales the rate to `permille`/1000 of the configured one at `now`
    /// (0 suspends admission, 1000 restores the rate). The bucket keeps its
    /// level in tokens across the change: tokens owed at the old rate are
    /// owed at the new one.
    pub fn set_rate_factor(&self, permille: u32, now: u64) {
        let mut control = self.control.lock();
        if permille == 0 {
            let current = self.interval.swap(0, Ordering::Relaxed);
            if current != 0 {
                control.last_interval = current;
            }
            control.permille = 0;
            return;
        }
        let old = match self.interval.load(Ordering::Relaxed) {
            0 => control.last_interval,
            t => t,
        };
        let new = interval_for(self.rate_per_sec, permille);
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let owed = tat.saturating_sub(now);
            let scaled = u128::from(owed) * u128::from(new) / u128::from(old);
            let rescaled = if owed == 0 {
                tat
            } else {
                now.saturating_add(u64::try_from(scaled).unwrap_or(u64::MAX))
            };
            match self
                .tat
                .compare_exchange_weak(tat, rescaled, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(actual) => tat = actual,
            }
        }
        self.interval.store(new, Ordering::Relaxed);
        control.permille = permille;
        control.last_interval = new;
    }

    /// The current rate factor in permille.
    pub fn rate_factor(&self) -> u32 {
        self.control.lock().permille
    }

    /// Nanoseconds per token at the current factor (`None` when suspended).
    pub fn interval_ns(&self) -> Option<u64> {
        match self.interval.load(Ordering::Relaxed) {
            0 => None,
            t => Some(t),
        }
    }

    /// The bucket size in tokens.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// Tokens available at `now` (0 to `burst`).
    pub fn available(&self, now: u64) -> u64 {
        let Some(t) = self.interval_ns() else { return 0 };
        let owed = self.tat.load(Ordering::Relaxed).saturating_sub(now);
        self.burst.saturating_sub(owed.div_ceil(t))
    }
}

/// A message was not admitted by a router's token bucket. Nothing was
/// consumed; `retry_after` says when a token should be free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdmissionError {
    /// The bucket is empty and the priority's policy is `reject`.
    #[error("{priority} message rate-limited: retry after {retry_after:?}")]
    RateLimited {
        /// The message's priority.
        priority: Priority,
        /// When a token should be free.
        retry_after: Duration,
    },
    /// The policy is `wait`, but the next free token is further away than
    /// the longest wait allowed (the lane's timeout, or the caller's
    /// deadline if shorter).
    #[error("{priority} message would wait {retry_after:?} for admission, longer than the limit of {max_wait:?}")]
    WaitTooLong {
        /// The message's priority.
        priority: Priority,
        /// When a token should be free.
        retry_after: Duration,
        /// The longest wait allowed.
        max_wait: Duration,
    },
    /// The rate is scaled to zero (a budget stopped this router).
    #[error("{priority} message refused: admission is suspended")]
    Suspended {
        /// The message's priority.
        priority: Priority,
    },
}

impl AdmissionError {
    /// When to retry, if known (not while suspended).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AdmissionError::RateLimited { retry_after, .. } | AdmissionError::WaitTooLong { retry_after, .. } => {
                Some(*retry_after)
            }
            AdmissionError::Suspended { .. } => None,
        }
    }

    /// The priority of the refused message.
    pub fn priority(&self) -> Priority {
        match self {
            AdmissionError::RateLimited { priority, .. }
            | AdmissionError::WaitTooLong { priority, .. }
            | AdmissionError::Suspended { priority } => *priority,
        }
    }
}

/// Counters of one priority. Atomics: every sender updates them.
#[derive(Debug, Default)]
struct PriorityCounters {
    admitted: AtomicU64,
    rejected: AtomicU64,
    waited: AtomicU64,
}

/// What admission did for one priority, so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PriorityAdmission {
    /// Messages admitted (at once or after a wait).
    pub admitted: u64,
    /// Messages refused.
    pub rejected: u64,
    /// Messages admitted after waiting for a token.
    pub waited: u64,
}

/// A snapshot of an [`Admission`]'s counters and rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionMetrics {
    /// Per priority, indexed by [`Priority::index`].
    pub priorities: [PriorityAdmission; 3],
    /// The current rate factor (1000 = the configured rate).
    pub rate_factor_permille: u32,
    /// Tokens available now.
    pub available: u64,
}

impl AdmissionMetrics {
    /// The counters of one priority.
    pub fn priority(&self, p: Priority) -> PriorityAdmission {
        self.priorities[p.index()]
    }
}

/// A router's admission control: a [`Gcra`] on tokio's clock plus the
/// policy of each priority.
///
/// Lock-free on the admit path (a clock read, one compare-and-swap and a
/// counter increment). Implements [`RateControl`], through which budgets
/// throttle the router.
#[derive(Debug)]
pub struct Admission {
    /// `None` when admission is disabled in the configuration.
    gcra: Option<Gcra>,
    /// Time 0 of the bucket (it starts full).
    epoch: tokio::time::Instant,
    policies: AdmissionPolicies,
    /// The longest wait per priority: the lanes' send timeouts.
    max_wait: [Duration; 3],
    counters: [PriorityCounters; 3],
}

impl Admission {
    /// Admission from the router's configuration; waits are bounded by the
    /// lanes' timeouts in `mailbox`.
    pub fn new(cfg: &AdmissionConfig, mailbox: &MailboxConfig) -> Result<Self, ConfigError> {
        let gcra = if cfg.enabled {
            Some(Gcra::new(cfg.rate_per_sec, cfg.burst)?)
        } else {
            None
        };
        Ok(Self {
            gcra,
            epoch: tokio::time::Instant::now(),
            policies: cfg.policy,
            max_wait: Priority::ALL.map(|p| mailbox.lane(p).timeout),
            counters: Default::default(),
        })
    }

    #[inline]
    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Decides for one message of `priority` now, by its policy: `Ok(ZERO)`
    /// admitted now, `Ok(d)` admitted once `d` has passed (the caller must
    /// wait `d`; the slot is held for it), or refused. `cap` further bounds
    /// the wait (an ask's deadline).
    #[inline]
    pub fn reserve(&self, priority: Priority, cap: Option<Duration>) -> Result<Duration, AdmissionError> {
        let counters = &self.counters[priority.index()];
        let Some(gcra) = &self.gcra else {
            counters.admitted.fetch_add(1, Ordering::Relaxed);
            return Ok(Duration::ZERO);
        };
        let max_wait = match self.policies.get(priority) {
            AdmissionPolicy::Reject => Duration::ZERO,
            AdmissionPolicy::Wait => {
                let lane = self.max_wait[priority.index()];
                cap.map_or(lane, |c| c.min(lane))
            }
        };
        let max_wait_ns = u64::try_from(max_wait.as_nanos()).unwrap_or(u64::MAX);
        match gcra.acquire(self.now_ns(), max_wait_ns) {
            Ok(wait) => {
                counters.admitted.fetch_add(1, Ordering::Relaxed);
                if wait > 0 {
                    counters.waited.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Duration::from_nanos(wait))
            }
            Err(denied) => {
                counters.rejected.fetch_add(1, Ordering::Relaxed);
                Err(self.refusal(priority, denied, max_wait))
            }
        }
    }

    /// Admits now or refuses, whatever the policy (for `try_send`).
    #[inline]
    pub fn try_admit(&self, priority: Priority) -> Result<(), AdmissionError> {
        let counters = &self.counters[priority.index()];
        let Some(gcra) = &self.gcra else {
            counters.admitted.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        };
        match gcra.acquire(self.now_ns(), 0) {
            Ok(_) => {
                counters.admitted.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(denied) => {
                counters.rejected.fetch_add(1, Ordering::Relaxed);
                Err(self.refusal(priority, denied, Duration::ZERO))
            }
        }
    }

    /// Admits one message by its priority's policy, waiting if needed.
    pub async fn admit(&self, priority: Priority) -> Result<(), AdmissionError> {
        self.admit_within(priority, None).await
    }

    /// Like [`admit`](Self::admit), with the wait also bounded by `cap`.
    pub async fn admit_within(&self, priority: Priority, cap: Option<Duration>) -> Result<(), AdmissionError> {
        let wait = self.reserve(priority, cap)?;
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }

    fn refusal(&self, priority: Priority, denied: Denied, max_wait: Duration) -> AdmissionError {
        match denied {
            Denied::Suspended => AdmissionError::Suspended { priority },
            Denied::After(ns) => {
                let retry_after = Duration::from_nanos(ns);
                match self.policies.get(priority) {
                    AdmissionPolicy::Wait if !max_wait.is_zero() => AdmissionError::WaitTooLong {
                        priority,
                        retry_after,
                        max_wait,
                    },
                    _ => AdmissionError::RateLimited { priority, retry_after },
                }
            }
        }
    }

    /// Whether a token bucket is applied at all.
    pub fn is_enabled(&self) -> bool {
        self.gcra.is_some()
    }

    /// The counters and the current rate.
    pub fn metrics(&self) -> AdmissionMetrics {
        let priorities = Priority::ALL.map(|p| {
            let c = &self.counters[p.index()];
            PriorityAdmission {
                admitted: c.admitted.load(Ordering::Relaxed),
                rejected: c.rejected.load(Ordering::Relaxed),
                waited: c.waited.load(Ordering::Relaxed),
            }
        });
        let (rate_factor_permille, available) = match &self.gcra {
            Some(g) => (g.rate_factor(), g.available(self.now_ns())),
            None => (FULL_RATE_PERMILLE, u64::MAX),
        };
        AdmissionMetrics {
            priorities,
            rate_factor_permille,
            available,
        }
    }
}

impl RateControl for Admission {
    fn set_rate_factor(&self, permille: u32) {
        if let Some(gcra) = &self.gcra {
            gcra.set_rate_factor(permille, self.now_ns());
        }
    }
}

#[cfg(test)]
mod tests;
