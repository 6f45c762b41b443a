//! [`Notifier`]: how the scheduler tells a requester about its request
//! after the first answer.

use std::fmt;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::model::SchedulerEvent;

/// Delivers a requester's [`SchedulerEvent`]s. Called by the scheduler actor
/// outside its lock; it must not block (send, don't wait).
#[derive(Clone)]
pub struct Notifier(Arc<dyn Fn(SchedulerEvent) + Send + Sync>);

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Notifier(..)")
    }
}

impl Notifier {
    /// A notifier that calls `f`.
    pub fn new(f: impl Fn(SchedulerEvent) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// A notifier and the receiver of its events. The channel is unbounded
    /// but carries at most two events per request (its outcome, then a
    /// preemption), so it is bounded by the requests its owner makes.
    pub fn channel() -> (Self, mpsc::UnboundedReceiver<SchedulerEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        // A receiver that was dropped no longer cares: ignored on purpose.
        (Self::new(move |e| drop(tx.send(e))), rx)
    }

    /// A notifier that drops every event (for requests that cannot wait
    /// and holders that are never preempted, such as guaranteed ones).
    pub fn ignore() -> Self {
        Self::new(|_| {})
    }

    /// Delivers one event.
    pub fn notify(&self, event: SchedulerEvent) {
        (self.0)(event)
    }
}
