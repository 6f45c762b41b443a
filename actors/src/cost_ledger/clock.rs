//! Wall-clock time for the ledger, injectable so that period rollover is
//! tested without waiting.
//!
//! Records, budget periods and reports use microseconds since the Unix epoch
//! (UTC). [`SystemClock`] reads the OS clock; [`ManualClock`] is set by hand;
//! [`TokioClock`] follows tokio's clock from a fixed start, so a test with
//! `#[tokio::test(start_paused = true)]` rolls a period with
//! `tokio::time::advance`.

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::error::LedgerError;

/// Microseconds in one second.
pub const MICROS_PER_SEC: u64 = 1_000_000;

/// A source of wall-clock time in microseconds since the Unix epoch.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Now, in microseconds since the Unix epoch (UTC).
    fn now_us(&self) -> u64;
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_us(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock {
    // An atomic, not a lock: read on every reservation from any thread,
    // written only by the test driving it.
    now_us: AtomicU64,
}

impl ManualClock {
    /// A clock reading `now_us`.
    pub fn new(now_us: u64) -> Self {
        Self {
            now_us: AtomicU64::new(now_us),
        }
    }

    /// Sets the time.
    pub fn set(&self, now_us: u64) {
        self.now_us.store(now_us, Ordering::SeqCst);
    }

    /// Moves the time forward.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_micros()).unwrap_or(u64::MAX);
        self.now_us.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_us(&self) -> u64 {
        self.now_us.load(Ordering::SeqCst)
    }
}

/// Wall time that follows tokio's clock (and so its paused test clock) from
/// a fixed starting point.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    start_us: u64,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock reading `start_us` now and moving with `tokio::time`.
    pub fn starting_at(start_us: u64) -> Self {
        Self {
            start_us,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now_us(&self) -> u64 {
        let elapsed = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.start_us.saturating_add(elapsed)
    }
}

/// Days since 1970-01-01 of a civil (proleptic Gregorian) date.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    // Howard Hinnant's algorithm.
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month 1-12, day 1-31) of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Microseconds in one day.
pub const MICROS_PER_DAY: u64 = 86_400 * MICROS_PER_SEC;

/// The start of the UTC day holding `at_us`.
pub fn day_start(at_us: u64) -> u64 {
    at_us - at_us % MICROS_PER_DAY
}

/// `YYYY-MM-DD` of the UTC day holding `at_us`.
pub fn format_day(at_us: u64) -> String {
    let (y, m, d) = civil_from_days((at_us / MICROS_PER_DAY) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The last microsecond RFC 3339 can write: 9999-12-31T23:59:59.999999Z
/// (its years have four digits).
pub const MAX_RFC3339_US: u64 = 253_402_300_800 * MICROS_PER_SEC - 1;

/// RFC 3339 text (UTC, second precision) of `at_us`, or
/// [`LedgerError::TimeOutOfRange`] past the year 9999.
pub fn format_rfc3339(at_us: u64) -> Result<String, LedgerError> {
    if at_us > MAX_RFC3339_US {
        return Err(LedgerError::TimeOutOfRange { at_us });
    }
    let secs = at_us / MICROS_PER_SEC;
    let time = UNIX_EPOCH
        .checked_add(Duration::from_secs(secs))
        .ok_or(LedgerError::TimeOutOfRange { at_us })?;
    // Below the year 10000 the formatter cannot fail; `write!` keeps that
    // a value, not an assumption.
    let mut out = String::new();
    write!(out, "{}", humantime::format_rfc3339_seconds(time)).map_err(|_| LedgerError::TimeOutOfRange { at_us })?;
    Ok(out)
}
