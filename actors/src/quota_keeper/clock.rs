//! The time source of quota periods.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Where quota periods read the time: tokio's clock (so paused test time
/// and `tokio::time::advance` drive period resets) or a manual clock for
/// tests without a runtime. Read as nanoseconds since the clock's origin.
#[derive(Clone)]
pub struct QuotaClock(Source);

#[derive(Clone)]
enum Source {
    Tokio(tokio::time::Instant),
    // Shared with its `ManualClock`; a plain counter because only tests
    // move it, and readers need no ordering with other memory.
    Manual(Arc<AtomicU64>),
}

impl QuotaClock {
    /// Tokio's clock, with its origin now. Follows paused time in tests.
    pub fn tokio() -> Self {
        Self(Source::Tokio(tokio::time::Instant::now()))
    }

    /// A clock that moves only when its [`ManualClock`] is advanced.
    pub fn manual() -> (Self, ManualClock) {
        let t = Arc::new(AtomicU64::new(0));
        (Self(Source::Manual(Arc::clone(&t))), ManualClock(t))
    }

    /// Nanoseconds since the origin (saturating after 584 years).
    #[inline]
    pub fn now_nanos(&self) -> u64 {
        match &self.0 {
            Source::Tokio(origin) => u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX),
            Source::Manual(t) => t.load(Ordering::Relaxed),
        }
    }
}

impl Default for QuotaClock {
    fn default() -> Self {
        Self::tokio()
    }
}

impl fmt::Debug for QuotaClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Source::Tokio(_) => f.write_str("QuotaClock::Tokio"),
            Source::Manual(t) => write!(f, "QuotaClock::Manual({}ns)", t.load(Ordering::Relaxed)),
        }
    }
}

/// The hand of a manual [`QuotaClock`].
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.0.fetch_add(nanos, Ordering::Relaxed);
    }
}
