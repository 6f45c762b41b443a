//! The steady load `nexus run` sends a pool itself (`[[run.pools]]
//! load_per_second`): real messages through the pool's lanes, handled by
//! its workers like any other, so that its counters, latencies, lane
//! depths and (for an `llm-caller` pool) the LLM spend move without an
//! outside client. For demonstrations, the dashboard and smoke tests.
//!
//! How many messages are due is decided by [`Pacer`], a plain type driven
//! by the elapsed time it is given (unit-tested without a runtime); the
//! task around it wakes every [`LOAD_TICK`], sends what is due with
//! `try_send` at normal priority and never waits for room: a message the
//! lanes cannot take now is counted as refused and not sent, so a pool
//! slower than its load shows full lanes rather than a growing backlog
//! outside them. Nobody waits for the answers (each reply is dropped as it
//! is sent). The task stops at shutdown ([`Load::stop`], before the pools
//! drain), when the pool closes, or when the [`Load`] is dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nexus_swarm_runtime::prelude::*;
use tokio::task::JoinHandle;

use super::agents::TextMsg;

/// How often the load task wakes to send what is due.
pub const LOAD_TICK: Duration = Duration::from_millis(20);

/// Messages due over time at a fixed rate, as a plain counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pacer {
    per_second: u32,
    /// Messages counted as due so far (sent, refused or skipped).
    counted: u64,
}

impl Pacer {
    /// A pacer of `per_second` messages a second (0: none).
    pub fn new(per_second: u32) -> Self {
        Self { per_second, counted: 0 }
    }

    /// The messages due at `elapsed` since the start and not yet counted.
    /// A caller that fell behind gets at most one second's worth: what is
    /// older is skipped, so a stalled task never bursts.
    pub fn due(&mut self, elapsed: Duration) -> u64 {
        let target = u64::try_from(u128::from(self.per_second) * elapsed.as_millis() / 1000).unwrap_or(u64::MAX);
        let due = target.saturating_sub(self.counted).min(u64::from(self.per_second));
        self.counted = self.counted.max(target);
        due
    }
}

/// What a load sent, shared by its task and its readers.
#[derive(Debug, Default)]
struct LoadCounts {
    // Atomics: written by the load task, read by `/status` without a lock;
    // plain counters that order nothing else.
    sent: AtomicU64,
    refused: AtomicU64,
}

/// A running load over one pool; stops when dropped.
#[derive(Debug)]
pub struct Load {
    per_second: u32,
    counts: Arc<LoadCounts>,
    task: JoinHandle<()>,
}

impl Load {
    /// Starts sending `per_second` messages a second to `pool` (in the
    /// current tokio runtime).
    pub fn start(pool: PoolRef<TextMsg>, per_second: u32) -> Self {
        let counts = Arc::new(LoadCounts::default());
        let task = tokio::spawn(run(pool, Pacer::new(per_second), Arc::clone(&counts)));
        Self {
            per_second,
            counts,
            task,
        }
    }

    /// Its rate, in messages a second.
    pub fn per_second(&self) -> u32 {
        self.per_second
    }

    /// Messages the pool admitted so far.
    pub fn sent(&self) -> u64 {
        self.counts.sent.load(Ordering::Relaxed)
    }

    /// Messages the pool's lanes had no room for (not sent).
    pub fn refused(&self) -> u64 {
        self.counts.refused.load(Ordering::Relaxed)
    }

    /// Stops sending (what was sent stays admitted).
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(pool: PoolRef<TextMsg>, mut pacer: Pacer, counts: Arc<LoadCounts>) {
    let start = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(LOAD_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq: u64 = 0;
    loop {
        tick.tick().await;
        for _ in 0..pacer.due(start.elapsed()) {
            // Nobody waits for the answer: the worker's reply is dropped.
            let (reply, _answer) = Reply::channel();
            match pool.try_send((format!("load {seq}"), reply), Priority::Normal) {
                Ok(()) => {
                    counts.sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(SendError::Closed(_)) => return,
                Err(_) => {
                    counts.refused.fetch_add(1, Ordering::Relaxed);
                }
            }
            seq += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Pacer;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_pacer_spreads_its_rate_over_time_and_counts_each_message_once() {
        let mut p = Pacer::new(50);
        let mut total = 0;
        for t in (20..=10_000).step_by(20) {
            total += p.due(ms(t));
        }
        assert_eq!(total, 500, "50 a second for 10 s");
        assert_eq!(p.due(ms(10_000)), 0, "nothing twice at the same instant");
        assert_eq!(p.due(ms(10_020)), 1);
    }

    #[test]
    fn a_pacer_that_fell_behind_sends_at_most_one_second_and_skips_the_rest() {
        let mut p = Pacer::new(100);
        assert_eq!(p.due(ms(100)), 10);
        assert_eq!(p.due(ms(5_100)), 100, "a 5 s stall is not a 500-message burst");
        assert_eq!(p.due(ms(5_200)), 10, "then the rate resumes");
    }

    #[test]
    fn a_zero_rate_sends_nothing_and_large_rates_do_not_overflow() {
        let mut none = Pacer::new(0);
        assert_eq!(none.due(ms(60_000)), 0);
        let mut big = Pacer::new(u32::MAX);
        assert_eq!(big.due(Duration::from_secs(u64::MAX / 2)), u64::from(u32::MAX));
    }
}
