//! Rate-limit admission through the [`Dispatcher`](crate::llm::dispatch::Dispatcher):
//! a call asks for a [`Grant`] (at once, or after waiting in the queue),
//! and gives it back after the call ([`InFlight::finish`]), unused
//! ([`Core::cancel`]) or abandoned ([`Core::abandon`]). The decisions are
//! the dispatcher's; this module moves grants between it and the callers,
//! and runs the task that admits waiters when capacity frees.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::llm::dispatch::{Grant, Job};
use crate::llm::error::{GatewayError, ProviderError};
use crate::llm::limiter::Demand;
use crate::llm::types::{LlmRequest, ProviderResponse};

use super::shared::Core;
use super::stats::bump;

/// A request waiting in the admission queue. If the caller stops waiting,
/// a grant already sent to it is given back (a grant sent later finds the
/// channel closed and is given back by the scan).
struct Waiting<'a> {
    core: &'a Core,
    rx: oneshot::Receiver<Result<Grant, GatewayError>>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.rx.close();
        if let Ok(Ok(grant)) = self.rx.try_recv() {
            self.core.cancel(grant);
        }
    }
}

/// A grant whose call may be under way. Finished by [`Self::finish`]; if
/// the caller stops waiting first, it is abandoned on drop
/// ([`Core::abandon`]) so the deployment's in-flight count is not leaked.
pub(super) struct InFlight<'a> {
    core: &'a Core,
    /// The deployment the call goes to.
    pub(super) deployment: usize,
    // `None` once finished.
    grant: Option<Grant>,
}

impl InFlight<'_> {
    /// Settles the grant with the call's outcome.
    pub(super) fn finish(mut self, outcome: &Result<ProviderResponse, ProviderError>, latency: Duration) {
        if let Some(grant) = self.grant.take() {
            self.core.finish(grant, outcome, latency);
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(grant) = self.grant.take() {
            self.core.abandon(grant);
        }
    }
}

impl Core {
    /// A grant for a call of `model` by `req`: at once, or after waiting
    /// (by priority, then age) until capacity frees or `deadline` passes.
    pub(super) async fn acquire(
        &self,
        model: usize,
        demand: Demand,
        req: &LlmRequest,
        deadline: Duration,
    ) -> Result<InFlight<'_>, GatewayError> {
        let rx = {
            let mut s = self.sched.lock();
            let now = self.now();
            if let Some(result) = s.try_admit_new(now, model, req.priority, demand) {
                return result.map(|g| self.in_flight(g));
            }
            let (tx, rx) = oneshot::channel();
            if s.enqueue(req.priority, model, deadline, Job { demand, caller: tx })
                .is_err()
            {
                bump(&self.stats.overloaded);
                return Err(GatewayError::Overloaded { queued: s.queued() });
            }
            rx
        };
        // From here on, dropping this (the deadline, or the caller giving
        // up) gives back a grant that was already made.
        let mut waiting = Waiting { core: self, rx };
        self.wake.notify_one();
        let result = match tokio::time::timeout_at(self.instant(deadline), &mut waiting.rx).await {
            Ok(Ok(Err(GatewayError::DeadlineExceeded(_)))) => Err(GatewayError::DeadlineExceeded(req.timeout)),
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(GatewayError::Stopped),
            Err(_) => Err(GatewayError::DeadlineExceeded(req.timeout)),
        };
        result.map(|g| self.in_flight(g))
    }

    fn in_flight(&self, grant: Grant) -> InFlight<'_> {
        InFlight {
            core: self,
            deployment: grant.deployment(),
            grant: Some(grant),
        }
    }

    /// Admits waiting requests that fit now; returns when to look again.
    pub(super) fn scan(&self) -> Option<Duration> {
        let scan = {
            let mut s = self.sched.lock();
            let now = self.now();
            s.scan(now, |tx| tx.is_closed())
        };
        for (w, grant) in scan.admitted {
            if let Err(Ok(grant)) = w.payload.caller.send(Ok(grant)) {
                self.cancel(grant);
            }
        }
        for (w, e) in scan.refused {
            let _ = w.payload.caller.send(Err(e)); // the caller may have left
        }
        // Answer expired waiters rather than dropping their channels, which
        // their callers would read as the gateway having stopped.
        for w in scan.expired {
            let _ = w
                .payload
                .caller
                .send(Err(GatewayError::DeadlineExceeded(Duration::ZERO))); // the caller may have left
        }
        scan.next
    }

    /// Gives back a grant whose call never happened.
    fn cancel(&self, grant: Grant) {
        self.sched.lock().cancel(grant);
        self.wake.notify_one();
    }

    /// Gives up a grant whose call may have reached the provider (its
    /// caller stopped waiting): the deployment no longer counts it in
    /// flight, and its whole estimate stays in the limits, as for a timeout,
    /// since the provider may count the call anyway.
    fn abandon(&self, grant: Grant) {
        self.sched.lock().abandon(grant);
        self.wake.notify_one();
    }

    /// Settles a grant after its call.
    fn finish(&self, grant: Grant, outcome: &Result<ProviderResponse, ProviderError>, latency: Duration) {
        let d = grant.deployment();
        let done = {
            let mut s = self.sched.lock();
            let now = self.now();
            s.finish(now, grant, outcome, latency)
        };
        if done.rate_limited {
            bump(&self.stats.provider_429s);
        }
        if done.cooled_down {
            bump(&self.stats.cooldowns);
            if let Err(e) = outcome {
                tracing::warn!(deployment = %self.deployments[d].id, error = %e, cooldown = ?self.llm.cooldown, "deployment cooling down");
            }
        }
        self.wake.notify_one();
    }
}

/// The actor's task: admits waiting requests whenever capacity may have
/// freed (a wake-up) or the next waiter's time comes.
pub(super) async fn admission_loop(core: Arc<Core>) {
    loop {
        let next = core.scan();
        match next {
            Some(t) => {
                tokio::select! {
                    _ = core.wake.notified() => {}
                    _ = tokio::time::sleep_until(core.instant(t)) => {}
                }
            }
            None => core.wake.notified().await,
        }
    }
}
