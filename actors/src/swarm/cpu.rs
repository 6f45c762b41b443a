//! CPU accounting: an agent's handler time per window, as millicores, held
//! against the CPU limit of its profile.
//!
//! Every [`WINDOW`] the swarm samples each agent's handler time (measured by
//! the runtime per message, see `nexus_swarm_runtime::spawn::AgentSignals`).
//! Used millicores = handler time in the window x 1000 / window length. An
//! agent over its limit for [`SUSTAIN`] windows in a row is throttled: it
//! yields to every other runnable task after each message, so its lanes are
//! drained after others' instead of starving them. It is released from the
//! throttle after the first window at or under its limit.

use std::time::Duration;

use tokio::time::Instant;

/// How often agents' CPU use is sampled.
pub const WINDOW: Duration = Duration::from_secs(1);

/// Windows in a row over the limit before an agent is throttled.
pub const SUSTAIN: u32 = 3;

/// One agent's CPU samples.
#[derive(Debug, Default)]
pub(crate) struct CpuMeter {
    last: Option<(Instant, Duration)>,
    over: u32,
    /// Millicores used in the last window.
    pub(crate) millicores: u64,
    /// Whether the agent is throttled.
    pub(crate) throttled: bool,
    /// The length of the last window measured, once one was.
    pub(crate) last_window: Option<Duration>,
}

impl CpuMeter {
    /// Takes a sample: `busy` is the agent's handler time so far. Returns
    /// whether the throttle changed (the caller applies it).
    pub(crate) fn sample(&mut self, busy: Duration, now: Instant, limit_millicores: u64) -> bool {
        let Some((at, before)) = self.last.replace((now, busy)) else {
            return false;
        };
        let wall = now.saturating_duration_since(at).as_nanos();
        if wall == 0 {
            return false;
        }
        self.last_window = Some(now.saturating_duration_since(at));
        let used = busy.saturating_sub(before).as_nanos();
        self.millicores = u64::try_from(used.saturating_mul(1000) / wall).unwrap_or(u64::MAX);
        if limit_millicores == 0 {
            return false;
        }
        let was = self.throttled;
        if self.millicores > limit_millicores {
            self.over = self.over.saturating_add(1);
            if self.over >= SUSTAIN {
                self.throttled = true;
            }
        } else {
            self.over = 0;
            self.throttled = false;
        }
        was != self.throttled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millicores_are_busy_time_over_wall_time() {
        let t0 = Instant::now();
        let mut m = CpuMeter::default();
        assert!(!m.sample(Duration::ZERO, t0, 0));
        // 250 ms busy in one second: 250 millicores.
        m.sample(Duration::from_millis(250), t0 + WINDOW, 0);
        assert_eq!(m.millicores, 250);
        // Two workers busy the whole time: 2000 millicores.
        m.sample(Duration::from_millis(2250), t0 + 2 * WINDOW, 0);
        assert_eq!(m.millicores, 2000);
        assert!(!m.throttled, "no limit, no throttle");
    }

    #[test]
    fn only_a_sustained_excess_throttles_and_one_good_window_releases() {
        let t0 = Instant::now();
        let mut m = CpuMeter::default();
        let mut busy = Duration::ZERO;
        m.sample(busy, t0, 500);
        let mut changes = Vec::new();
        // 900 millicores against a limit of 500, window after window.
        for i in 1..=4u32 {
            busy += Duration::from_millis(900);
            changes.push(m.sample(busy, t0 + WINDOW * i, 500));
        }
        assert_eq!(changes, vec![false, false, true, false]);
        assert!(m.throttled);
        // One window at 100 millicores releases it.
        busy += Duration::from_millis(100);
        assert!(m.sample(busy, t0 + WINDOW * 5, 500));
        assert!(!m.throttled);
        // A single spike does not throttle.
        busy += Duration::from_millis(900);
        assert!(!m.sample(busy, t0 + WINDOW * 6, 500));
        busy += Duration::from_millis(100);
        m.sample(busy, t0 + WINDOW * 7, 500);
        busy += Duration::from_millis(900);
        m.sample(busy, t0 + WINDOW * 8, 500);
        assert!(!m.throttled);
    }
}
