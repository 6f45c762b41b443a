//! [`AgentRef`]: the cloneable, backpressured handle to an agent.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::error::{AskError, SendError};
use crate::host::HostMsg;
use crate::mailbox::Mailbox;
use crate::priority::Priority;
use crate::spawn::Preemption;

/// A handle to one agent's lanes. Cheap to clone (one `Arc`), `Send` and
/// `Sync`; it stays valid across restarts of the agent, because the lanes
/// outlive the hosting actor.
///
/// * [`try_send`](Self::try_send) fails fast with `Full(msg)`;
/// * [`send`](Self::send) waits for room up to the lane's timeout (seed
///   defaults: high 10 s, normal 30 s, low 60 s), then gives `Timeout(msg)`;
/// * [`ask`](Self::ask) sends a request carrying a [`Reply`] and waits for
///   the answer until a deadline.
pub struct AgentRef<M> {
    pub(crate) mailbox: Arc<Mailbox<M>>,
}

impl<M> Clone for AgentRef<M> {
    fn clone(&self) -> Self {
        Self {
            mailbox: Arc::clone(&self.mailbox),
        }
    }
}

impl<M> std::fmt::Debug for AgentRef<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AgentRef").field(&self.mailbox.name).finish()
    }
}

impl<M> PartialEq for AgentRef<M> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.mailbox, &other.mailbox)
    }
}

impl<M> Eq for AgentRef<M> {}

impl<M: Send + 'static> AgentRef<M> {
    pub(crate) fn from_mailbox(mailbox: Arc<Mailbox<M>>) -> Self {
        Self { mailbox }
    }

    /// The agent's name.
    pub fn name(&self) -> &str {
        &self.mailbox.name
    }

    /// Admits `msg` to the lane of `priority` now, or gives it back with
    /// `Full` (lane at capacity) or `Closed` (agent retiring or stopped).
    #[inline]
    pub fn try_send(&self, msg: M, priority: Priority) -> Result<(), SendError<M>> {
        self.mailbox.try_push(msg, priority)
    }

    /// Admits `msg`, waiting for room up to the lane's configured timeout.
    pub async fn send(&self, msg: M, priority: Priority) -> Result<(), SendError<M>> {
        let timeout = self.mailbox.timeout(priority);
        self.mailbox.push(msg, priority, timeout).await
    }

    /// Admits `msg`, waiting for room up to `timeout`.
    pub async fn send_timeout(&self, msg: M, priority: Priority, timeout: Duration) -> Result<(), SendError<M>> {
        self.mailbox.push(msg, priority, timeout).await
    }

    /// Sends the request built by `make` around a fresh [`Reply`] and waits
    /// for the answer. `deadline` bounds the whole exchange, admission
    /// included. A request still queued when the deadline passes is handled
    /// later, but its reply is discarded; agents can check
    /// [`Reply::is_closed`] to skip such work.
    ///
    /// A zero `deadline` is refused up front with
    /// [`AskError::Deadline`]: no answer can arrive within no time, so the
    /// request is not admitted at all (and `make` is not called), rather
    /// than admitted as work whose reply would be thrown away.
    ///
    /// If the agent stops for good while the request waits in its lanes
    /// (it exceeded its restart intensity, see
    /// [`crate::supervisor`]), the request is dropped and the ask fails at
    /// once with [`AskError::NoReply`].
    pub async fn ask<R, F>(&self, make: F, priority: Priority, deadline: Duration) -> Result<R, AskError>
    where
        F: FnOnce(Reply<R>) -> M,
    {
        if deadline.is_zero() {
            return Err(AskError::Deadline(deadline));
        }
        let (tx, rx) = oneshot::channel();
        let msg = make(Reply { tx });
        let exchange = async {
            self.mailbox.push(msg, priority, deadline).await?;
            rx.await.map_err(|_| AskError::NoReply)
        };
        match tokio::time::timeout(deadline, exchange).await {
            Ok(result) => result,
            Err(_) => Err(AskError::Deadline(deadline)),
        }
    }

    /// Messages admitted to a lane and not yet taken by the agent.
    pub fn depth(&self, priority: Priority) -> usize {
        self.mailbox.depth(priority)
    }

    /// Depth of every lane: `[high, normal, low]`.
    pub fn depths(&self) -> [usize; 3] {
        self.mailbox.depths()
    }

    /// Capacity of a lane.
    pub fn capacity(&self, priority: Priority) -> usize {
        self.mailbox.capacity(priority)
    }

    /// The agent's handler statistics, created on the first call; `None`
    /// for an agent spawned without signals (through a bare node rather
    /// than a resource manager), whose handler time is not measured.
    pub fn handler_stats(&self) -> Option<Arc<crate::spawn::HandlerStats>> {
        self.mailbox.signals.get().map(|s| s.handler_stats())
    }

    /// Messages the agent has handled so far.
    pub fn handled(&self) -> u64 {
        self.mailbox.counters.handled.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Times the agent has been restarted.
    pub fn restarts(&self) -> u32 {
        self.mailbox
            .counters
            .restarts
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Probes the hosting actor: `true` if it answered within `timeout`.
    /// The probe is answered between drain batches, so an agent whose
    /// handler is stuck (or that is down and not yet restarted) fails it.
    pub async fn ping(&self, timeout: Duration) -> bool {
        let Some(actor) = self.mailbox.current_actor() else {
            return false;
        };
        matches!(
            actor.call(HostMsg::Ping, Some(timeout)).await,
            Ok(ractor::rpc::CallResult::Success(()))
        )
    }

    /// Whether the agent has stopped admitting messages.
    pub fn is_closed(&self) -> bool {
        self.mailbox.is_closed()
    }

    /// Stops the agent for good, gracefully: it admits nothing more
    /// (senders get `Closed`), handles every message already admitted, runs
    /// `on_stop` and stops; it is not restarted. Returns at once; an agent
    /// restarting at this moment retires as soon as it is up again.
    pub fn stop(&self) {
        self.mailbox.close();
        if let Some(actor) = self.mailbox.current_actor() {
            // Already stopping if this fails: nothing more to do.
            let _ = actor.cast(HostMsg::Retire);
        }
    }

    /// Gives the agent a preemption notice: from now on its context's
    /// [`preemption`](crate::agent::AgentContext::preemption) returns it, and
    /// its [`on_preempt`](crate::agent::Agent::on_preempt) runs between
    /// messages. Stopping it after the grace period is the caller's part
    /// (a resource manager does both). `false` if it already had a notice
    /// (the first one stands).
    pub fn preempt(&self, notice: Preemption) -> bool {
        let signals = self.mailbox.signals.get_or_init(Default::default);
        if !signals.preempt(notice) {
            return false;
        }
        if let Some(actor) = self.mailbox.current_actor() {
            // Stopped or restarting if this fails; a restarted agent hears
            // of the notice on start.
            let _ = actor.cast(HostMsg::Preempted);
        }
        true
    }
}

/// The answering end of an [`AgentRef::ask`].
pub struct Reply<T> {
    tx: oneshot::Sender<T>,
}

impl<T> std::fmt::Debug for Reply<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply").field("closed", &self.tx.is_closed()).finish()
    }
}

impl<T> Reply<T> {
    /// A reply port and the receiver its answer arrives on, for callers that
    /// build requests themselves.
    pub fn channel() -> (Reply<T>, oneshot::Receiver<T>) {
        let (tx, rx) = oneshot::channel();
        (Reply { tx }, rx)
    }

    /// Answers. If the asker has given up (deadline passed), the answer is
    /// dropped: nobody is left to receive it, which is the asker's choice.
    pub fn send(self, value: T) {
        let _ = self.tx.send(value);
    }

    /// Whether the asker has given up waiting.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}
