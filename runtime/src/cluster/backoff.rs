//! [`Backoff`]: exponential waits between reconnection attempts.

use std::time::Duration;

/// Waits that double after each failure, from `min` up to `max`, and start
/// over after a success. No jitter: the peers a node dials are few and
/// distinct, so there is no herd to spread.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Waits from `min` to `max` (`max` is raised to `min` if below it).
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            next: min,
        }
    }

    /// The wait before the next attempt, after one more failure.
    pub fn failed(&mut self) -> Duration {
        let wait = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        wait
    }

    /// An attempt succeeded: the next failure waits `min` again.
    pub fn succeeded(&mut self) {
        self.next = self.min;
    }
}
