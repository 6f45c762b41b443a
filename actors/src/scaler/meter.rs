//! [`Observation`]s (a group's counters at one instant) turned into the
//! [`Metrics`] a policy judges, by differences between two ticks.

use std::time::Duration;

use tokio::time::Instant;

use super::policy::Metrics;

/// What a scaling group reports at one instant: sizes and running totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Observation {
    /// Workers taking messages.
    pub workers: u32,
    /// Messages admitted and not yet taken, every worker's lanes together.
    pub queued: u64,
    /// Messages handled so far (a running total; a drop, as when retired
    /// workers leave the count, makes one tick report no queue wait).
    pub handled: u64,
    /// Handler time so far, every worker together (`None`: not measured).
    pub busy: Option<Duration>,
    /// What CPU use is a share of, in millicores: the group's CPU limit,
    /// else its requests (`None` or 0: no CPU metric).
    pub cpu_capacity_millicores: Option<u64>,
    /// Memory use in permille of the group's limit, if it has one.
    pub memory_permille: Option<u64>,
}

/// Turns a group's successive observations into metrics.
///
/// - queue length: the observation's `queued`;
/// - queue wait, by Little's law: `queued x elapsed / handled in elapsed`
///   (a queue that nothing drained counts as if one message had been
///   handled, so a stalled queue reads as a long wait, not none); `None`
///   on the first observation or when the handled total went down;
/// - CPU: handler time in the interval over the interval's length, in
///   permille of the CPU capacity; `None` without both.
#[derive(Debug, Clone, Default)]
pub struct Meter {
    last: Option<(Instant, Observation)>,
}

impl Meter {
    /// The metrics of `now`'s observation against the previous one.
    pub fn metrics(&mut self, now: Instant, o: &Observation) -> Metrics {
        let previous = self.last.replace((now, *o));
        let mut m = Metrics {
            queue_length: Some(o.queued),
            memory_permille: o.memory_permille,
            ..Metrics::default()
        };
        let Some((then, before)) = previous else {
            return m;
        };
        let elapsed = now.saturating_duration_since(then);
        let elapsed_ns = elapsed.as_nanos();
        if elapsed_ns == 0 {
            return m;
        }
        if o.handled >= before.handled {
            m.queue_wait = Some(if o.queued == 0 {
                Duration::ZERO
            } else {
                let drained = u128::from((o.handled - before.handled).max(1));
                let ns = u128::from(o.queued) * elapsed_ns / drained;
                Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
            });
        }
        if let (Some(busy), Some(was), Some(capacity @ 1..)) = (o.busy, before.busy, o.cpu_capacity_millicores) {
            let used_ns = busy.saturating_sub(was).as_nanos();
            // permille of capacity = used millicores x 1000 / capacity,
            // used millicores = used_ns x 1000 / elapsed_ns.
            let permille = used_ns * 1_000_000 / (elapsed_ns * u128::from(capacity));
            m.cpu_permille = Some(u64::try_from(permille).unwrap_or(u64::MAX));
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(queued: u64, handled: u64, busy_ms: u64) -> Observation {
        Observation {
            workers: 2,
            queued,
            handled,
            busy: Some(Duration::from_millis(busy_ms)),
            cpu_capacity_millicores: Some(2000),
            memory_permille: None,
        }
    }

    #[test]
    fn wait_follows_littles_law_and_cpu_is_busy_time_over_capacity() {
        let t0 = Instant::now();
        let mut m = Meter::default();
        let first = m.metrics(t0, &obs(50, 0, 0));
        assert_eq!(first.queue_length, Some(50));
        assert_eq!((first.queue_wait, first.cpu_permille), (None, None), "no interval yet");

        // 100 handled in 10 s (10 per second) with 300 queued: a 30 s wait.
        // 15 s of handler time in 10 s is 1500 millicores, 750 permille of 2000.
        let m2 = m.metrics(t0 + Duration::from_secs(10), &obs(300, 100, 15_000));
        assert_eq!(m2.queue_wait, Some(Duration::from_secs(30)));
        assert_eq!(m2.cpu_permille, Some(750));

        // Nothing handled in 10 s with 7 queued: counted as one handled.
        let m3 = m.metrics(t0 + Duration::from_secs(20), &obs(7, 100, 15_000));
        assert_eq!(m3.queue_wait, Some(Duration::from_secs(70)));
        assert_eq!(m3.cpu_permille, Some(0));

        // An empty queue waits for nothing.
        let m4 = m.metrics(t0 + Duration::from_secs(30), &obs(0, 107, 15_000));
        assert_eq!(m4.queue_wait, Some(Duration::ZERO));

        // Retired workers took their counts with them: no wait this tick.
        let m5 = m.metrics(t0 + Duration::from_secs(40), &obs(9, 20, 15_000));
        assert_eq!(m5.queue_wait, None);
        assert_eq!(m5.queue_length, Some(9));
    }

    #[test]
    fn no_capacity_or_no_busy_time_means_no_cpu_metric() {
        let t0 = Instant::now();
        let mut m = Meter::default();
        let mut o = obs(0, 0, 0);
        o.cpu_capacity_millicores = Some(0);
        m.metrics(t0, &o);
        o.busy = Some(Duration::from_secs(5));
        assert_eq!(m.metrics(t0 + Duration::from_secs(1), &o).cpu_permille, None);
        o.cpu_capacity_millicores = Some(1000);
        o.busy = None;
        assert_eq!(m.metrics(t0 + Duration::from_secs(2), &o).cpu_permille, None);
    }
}
