//! The time source of quota periods.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Where quota periods read the time: tokio's clock (so paused test time
/// and `tokio::time::advance` drive period resets) or a manual clock for
/// tests without a runtime. Read as nanoseconds since the UNIX epoch for
/// tokio's clock, since the clock was made for a manual one.
///
/// Periods are counted on this clock, and stored usage
/// ([`QuotaTable::open`](super::QuotaTable::open)) is stored with its
/// period's start on it, so a restarted process finds the period it is in
/// by the wall clock: tokio's clock reads the wall clock once, when it is
/// made, and then advances by tokio's monotonic clock (a wall-clock step
/// while a process runs moves no period boundary of that process).
#[derive(Clone)]
pub struct QuotaClock(Source);

#[derive(Clone)]
enum Source {
    Tokio {
        origin: tokio::time::Instant,
        /// The wall clock at `origin`, in nanoseconds since the UNIX epoch.
        epoch: u64,
    },
    // Shared with its `ManualClock`; a plain counter because only tests
    // move it, and readers need no ordering with other memory.
    Manual(Arc<AtomicU64>),
}

impl QuotaClock {
    /// Tokio's clock, reading the wall clock now. Follows paused time in
    /// tests.
    pub fn tokio() -> Self {
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        Self(Source::Tokio {
            origin: tokio::time::Instant::now(),
            epoch,
        })
    }

    /// A clock at 0 that moves only when its [`ManualClock`] is advanced.
    pub fn manual() -> (Self, ManualClock) {
        let t = Arc::new(AtomicU64::new(0));
        (Self(Source::Manual(Arc::clone(&t))), ManualClock(t))
    }

    /// Nanoseconds since the UNIX epoch (tokio's clock; saturating in the
    /// year 2554) or since a manual clock was made.
    #[inline]
    pub fn now_nanos(&self) -> u64 {
        match &self.0 {
            Source::Tokio { origin, epoch } => {
                let elapsed = u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
                epoch.saturating_add(elapsed)
            }
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
            Source::Tokio { .. } => f.write_str("QuotaClock::Tokio"),
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
