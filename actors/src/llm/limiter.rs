//! Rate limits that hold over every sliding window, with reservation,
//! refund and resynchronisation.
//!
//! Each limit ("at most `L` units per 60 s") is enforced by two checks
//! that must both pass:
//!
//! - **GCRA** (the generic cell rate algorithm) paces admissions at `L`
//!   per window: a theoretical arrival time (TAT) advances by `n * W / L`
//!   per `n` units admitted, and a request is admitted when the new TAT is
//!   at most `burst * W / L` ahead of now. This spreads a backlog evenly
//!   instead of releasing a whole minute's worth at once.
//! - A **window log** of the units admitted in the last `W` is the hard
//!   cap: a request is admitted only if the units in `(now - W, now]` plus
//!   its own stay at most `L`. GCRA alone allows `L + burst` in a window;
//!   with the log, *every* sliding window of length `W` carries at most `L`,
//!   which is what a provider that counts over a sliding minute checks.
//!
//! A request reserves its *estimated* units before the call
//! ([`WindowLimit::commit`]); once the actual figures are known the
//! reservation is adjusted ([`WindowLimit::adjust`]): over-estimates are
//! refunded to both the TAT and the log. When a provider reports how much it
//! has left ([`WindowLimit::resync`]), usage it counted that the log does
//! not know about (another client of the same key, a restart) is added.
//!
//! Why not `governor`: it has no way to give back an over-estimate, to
//! raise usage from a provider's headers, or to bound a sliding window
//! exactly; all three are the point here.
//!
//! Time is a [`Duration`] since an arbitrary epoch chosen by the caller, so
//! that everything here is plain synchronous code tested without a runtime.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::RateLimitError;
use super::types::RateLimitSnapshot;

/// The window every limit is counted over.
pub const MINUTE: Duration = Duration::from_secs(60);

/// One limit: at most `limit` units in every sliding window of `window`.
#[derive(Debug, Clone)]
pub struct WindowLimit {
    limit: u64,
    window_nanos: u128,
    burst: u64,
    /// Theoretical arrival time, scaled by `limit` (nanoseconds * limit) so
    /// that one unit advances it by exactly `window_nanos`.
    tat_scaled: u128,
    log: VecDeque<LogEntry>,
    /// The sum of the log's units: `u128` so that no number of entries of
    /// at most `limit` units each overflows it.
    in_window: u128,
    next_seq: u64,
}

#[derive(Debug, Clone, Copy)]
struct LogEntry {
    seq: u64,
    at: Duration,
    units: u64,
}

impl WindowLimit {
    /// A limit of `limit` units per `window`, paced by GCRA with `burst`
    /// units admitted at once after idleness (at least 1).
    pub fn new(limit: u64, window: Duration, burst: u64) -> Result<Self, RateLimitError> {
        if limit == 0 {
            return Err(RateLimitError::ZeroLimit { what: "limit".into() });
        }
        if window.is_zero() {
            return Err(RateLimitError::ZeroLimit { what: "window".into() });
        }
        Ok(Self {
            limit,
            window_nanos: window.as_nanos(),
            burst: burst.clamp(1, limit),
            tat_scaled: 0,
            log: VecDeque::new(),
            in_window: 0,
            next_seq: 0,
        })
    }

    /// The limit per window.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Units counted in the window ending at `now` (`u64::MAX` at most).
    pub fn in_window(&mut self, now: Duration) -> u64 {
        self.evict(now);
        u64::try_from(self.in_window).unwrap_or(u64::MAX)
    }

    fn evict(&mut self, now: Duration) {
        let window = Duration::from_nanos(u64::try_from(self.window_nanos).unwrap_or(u64::MAX));
        while let Some(front) = self.log.front() {
            // An entry at `at` counts in windows (now - W, now], i.e. until
            // `at + W` (exclusive).
            if front.at.saturating_add(window) <= now {
                self.in_window -= u128::from(front.units);
                self.log.pop_front();
            } else {
                break;
            }
        }
    }

    fn now_scaled(&self, now: Duration) -> u128 {
        now.as_nanos().saturating_mul(u128::from(self.limit))
    }

    /// The earliest time at or after `now` at which `units` could be
    /// admitted, given what is admitted so far. `Ok(now)` means now.
    /// A later commit or refund moves it; callers re-check.
    pub fn earliest(&mut self, now: Duration, units: u64) -> Result<Duration, RateLimitError> {
        if units > self.limit {
            return Err(RateLimitError::TooLarge {
                what: "request".into(),
                requested: units,
                limit: self.limit,
            });
        }
        self.evict(now);
        let mut at = now;
        // GCRA pacing.
        let now_s = self.now_scaled(now);
        let new_tat = self
            .tat_scaled
            .max(now_s)
            .saturating_add(u128::from(units) * self.window_nanos);
        let allowance = u128::from(self.burst.max(units)) * self.window_nanos;
        if new_tat - now_s > allowance {
            let when_scaled = new_tat - allowance;
            let nanos = when_scaled.div_ceil(u128::from(self.limit));
            at = at.max(nanos_to_duration(nanos));
        }
        // Sliding-window cap.
        let limit = u128::from(self.limit);
        if self.in_window + u128::from(units) > limit {
            let mut need = self.in_window + u128::from(units) - limit;
            let window = nanos_to_duration(self.window_nanos);
            for e in &self.log {
                if u128::from(e.units) >= need {
                    at = at.max(e.at.saturating_add(window));
                    need = 0;
                    break;
                }
                need -= u128::from(e.units);
            }
            debug_assert_eq!(need, 0, "a request no larger than the limit always fits eventually");
        }
        Ok(at)
    }

    /// Whether `units` can be admitted at `now`.
    pub fn admits(&mut self, now: Duration, units: u64) -> bool {
        matches!(self.earliest(now, units), Ok(t) if t <= now)
    }

    /// Records `units` as admitted at `now` (after [`Self::earliest`] said
    /// so) and returns the reservation's sequence number for [`Self::adjust`].
    /// More than the limit counts as the limit: the window is full either
    /// way.
    pub fn commit(&mut self, now: Duration, units: u64) -> u64 {
        self.evict(now);
        let units = units.min(self.limit);
        let now_s = self.now_scaled(now);
        self.tat_scaled = self
            .tat_scaled
            .max(now_s)
            .saturating_add(u128::from(units) * self.window_nanos);
        let seq = self.next_seq;
        self.next_seq += 1;
        // Keep the log ordered by time even if a caller's clock stepped back.
        let at = self.log.back().map_or(now, |b| b.at.max(now));
        self.log.push_back(LogEntry { seq, at, units });
        self.in_window += u128::from(units);
        seq
    }

    /// Replaces reservation `seq` of `reserved` units by `actual` units:
    /// refunds an over-estimate, adds an under-estimate.
    ///
    /// Both figures count as the limit at most, like [`Self::commit`]: an
    /// absurd actual (a provider reporting `u64::MAX` tokens) fills the
    /// window and delays pacing by one window, and never pushes the pacing
    /// out for ages or overflows the count.
    pub fn adjust(&mut self, seq: u64, reserved: u64, actual: u64) {
        let reserved = reserved.min(self.limit);
        let actual = actual.min(self.limit);
        if actual < reserved {
            let refund = u128::from(reserved - actual) * self.window_nanos;
            self.tat_scaled = self.tat_scaled.saturating_sub(refund);
        } else {
            let extra = u128::from(actual - reserved) * self.window_nanos;
            self.tat_scaled = self.tat_scaled.saturating_add(extra);
        }
        if let Ok(i) = self.log.binary_search_by_key(&seq, |e| e.seq) {
            let e = &mut self.log[i];
            self.in_window = self.in_window - u128::from(e.units) + u128::from(actual);
            e.units = actual;
        }
    }

    /// Raises the count to what the provider says it has seen:
    /// `provider_limit - remaining` units used in its window (our own limit
    /// when it did not say). Never lowers the count.
    pub fn resync(&mut self, now: Duration, remaining: u64, provider_limit: Option<u64>) {
        self.evict(now);
        let used = u128::from(provider_limit.unwrap_or(self.limit).saturating_sub(remaining));
        if used > self.in_window {
            // `commit` counts the limit at most.
            let missing = u64::try_from(used - self.in_window).unwrap_or(u64::MAX);
            let _seq = self.commit(now, missing);
        }
    }
}

fn nanos_to_duration(n: u128) -> Duration {
    Duration::from_nanos(u64::try_from(n).unwrap_or(u64::MAX))
}

/// The dimensions a request is limited in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dimension {
    /// Requests.
    Requests,
    /// Prompt tokens.
    InputTokens,
    /// Completion tokens.
    OutputTokens,
    /// Prompt plus completion tokens.
    Tokens,
}

impl Dimension {
    /// A name for errors and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Dimension::Requests => "requests_per_minute",
            Dimension::InputTokens => "input_tokens_per_minute",
            Dimension::OutputTokens => "output_tokens_per_minute",
            Dimension::Tokens => "tokens_per_minute",
        }
    }
}

/// What one request consumes, per dimension.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Demand {
    /// Requests (1 per call).
    pub requests: u64,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
}

impl Demand {
    /// One call of `input` prompt tokens and `output` completion tokens.
    pub fn call(input: u64, output: u64) -> Self {
        Self {
            requests: 1,
            input_tokens: input,
            output_tokens: output,
        }
    }

    /// The amount in one dimension.
    pub fn amount(&self, dim: Dimension) -> u64 {
        match dim {
            Dimension::Requests => self.requests,
            Dimension::InputTokens => self.input_tokens,
            Dimension::OutputTokens => self.output_tokens,
            Dimension::Tokens => self.input_tokens.saturating_add(self.output_tokens),
        }
    }
}

/// Limits per minute in each dimension; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    /// Requests per minute.
    pub requests_per_minute: Option<u64>,
    /// Prompt tokens per minute.
    pub input_tokens_per_minute: Option<u64>,
    /// Completion tokens per minute.
    pub output_tokens_per_minute: Option<u64>,
    /// Prompt plus completion tokens per minute.
    pub tokens_per_minute: Option<u64>,
}

impl RateLimits {
    /// No limit at all.
    pub fn unlimited() -> Self {
        Self::default()
    }

    /// Requests and total tokens per minute.
    pub fn rpm_tpm(rpm: u64, tpm: u64) -> Self {
        Self {
            requests_per_minute: Some(rpm),
            tokens_per_minute: Some(tpm),
            ..Self::default()
        }
    }

    fn entries(&self) -> impl Iterator<Item = (Dimension, u64)> {
        [
            (Dimension::Requests, self.requests_per_minute),
            (Dimension::InputTokens, self.input_tokens_per_minute),
            (Dimension::OutputTokens, self.output_tokens_per_minute),
            (Dimension::Tokens, self.tokens_per_minute),
        ]
        .into_iter()
        .filter_map(|(d, l)| l.map(|l| (d, l)))
    }
}

/// Every limit of one key (a provider, or a model at a provider).
#[derive(Debug, Clone)]
pub struct LimitSet {
    dims: Vec<(Dimension, WindowLimit)>,
}

/// A reservation in a [`LimitSet`]: the sequence number per dimension and
/// the demand reserved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetGrant {
    seqs: Vec<(Dimension, u64)>,
    reserved: Demand,
}

impl SetGrant {
    /// What was reserved.
    pub fn reserved(&self) -> Demand {
        self.reserved
    }
}

impl LimitSet {
    /// Limits per [`MINUTE`] with a GCRA burst of `burst_percent` % of each
    /// limit (at least one unit).
    pub fn new(limits: &RateLimits, burst_percent: u8) -> Result<Self, RateLimitError> {
        Self::with_window(limits, burst_percent, MINUTE)
    }

    /// The per-minute `limits` counted over a longer `window` (at least
    /// [`MINUTE`]): at most the limit in every `window`.
    ///
    /// A caller that sends an admitted request up to `d` after its
    /// admission (a batch waiting to fill) counts over `MINUTE + d`: any
    /// minute of sends then holds requests admitted within `MINUTE + d`, so
    /// the provider's minute never carries more than the limit.
    pub fn with_window(limits: &RateLimits, burst_percent: u8, window: Duration) -> Result<Self, RateLimitError> {
        let window = window.max(MINUTE);
        let mut dims = Vec::new();
        for (dim, limit) in limits.entries() {
            let burst = (limit.saturating_mul(u64::from(burst_percent)) / 100).max(1);
            let w = WindowLimit::new(limit, window, burst).map_err(|_| RateLimitError::ZeroLimit {
                what: dim.name().into(),
            })?;
            dims.push((dim, w));
        }
        Ok(Self { dims })
    }

    /// Whether nothing is limited.
    pub fn is_unlimited(&self) -> bool {
        self.dims.is_empty()
    }

    /// The earliest time `demand` fits every dimension (`now` if it does).
    pub fn earliest(&mut self, now: Duration, demand: &Demand) -> Result<Duration, RateLimitError> {
        let mut at = now;
        for (dim, w) in &mut self.dims {
            let t = w.earliest(now, demand.amount(*dim)).map_err(|e| match e {
                RateLimitError::TooLarge { requested, limit, .. } => RateLimitError::TooLarge {
                    what: dim.name().into(),
                    requested,
                    limit,
                },
                other => other,
            })?;
            at = at.max(t);
        }
        Ok(at)
    }

    /// Reserves `demand` at `now` in every dimension.
    pub fn commit(&mut self, now: Duration, demand: Demand) -> SetGrant {
        let seqs = self
            .dims
            .iter_mut()
            .map(|(dim, w)| (*dim, w.commit(now, demand.amount(*dim))))
            .collect();
        SetGrant { seqs, reserved: demand }
    }

    /// Replaces a reservation by the actual demand (refund or top-up).
    pub fn settle(&mut self, grant: &SetGrant, actual: &Demand) {
        for (dim, seq) in &grant.seqs {
            if let Some((_, w)) = self.dims.iter_mut().find(|(d, _)| d == dim) {
                w.adjust(*seq, grant.reserved.amount(*dim), actual.amount(*dim));
            }
        }
    }

    /// Applies a provider's remaining-capacity report.
    ///
    /// A count that comes with its reset time is left out: the gateway's
    /// [`Learned`](super::learned::Learned) allowance holds exactly until
    /// that reset, whereas usage added here would count for a whole window
    /// (too long for a `1s` reset, too short for a `6m0s` one).
    pub fn resync(&mut self, now: Duration, snap: &RateLimitSnapshot) {
        for (dim, w) in &mut self.dims {
            match dim {
                Dimension::Requests => {
                    if let (Some(rem), None) = (snap.remaining_requests, snap.reset_requests) {
                        w.resync(now, rem, snap.limit_requests);
                    }
                }
                Dimension::Tokens => {
                    if let (Some(rem), None) = (snap.remaining_tokens, snap.reset_tokens) {
                        w.resync(now, rem, snap.limit_tokens);
                    }
                }
                Dimension::InputTokens | Dimension::OutputTokens => {}
            }
        }
    }

    /// Usage of the busiest dimension in permille of its limit.
    pub fn usage_permille(&mut self, now: Duration) -> u64 {
        self.dims
            .iter_mut()
            .map(|(_, w)| w.in_window(now) * 1000 / w.limit())
            .max()
            .unwrap_or(0)
    }

    /// Units in the current window of a dimension, if it is limited.
    pub fn in_window(&mut self, now: Duration, dim: Dimension) -> Option<u64> {
        self.dims
            .iter_mut()
            .find(|(d, _)| *d == dim)
            .map(|(_, w)| w.in_window(now))
    }
}

#[cfg(test)]
mod tests;
