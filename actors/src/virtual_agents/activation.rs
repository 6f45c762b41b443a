//! One key's activation: a task that loads the key's snapshot, builds the
//! agent, handles the key's messages one at a time, and on passivation
//! (the host closes its queue) saves the snapshot and reports back. A
//! panic is caught here, so the task always reports how it ended.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::FutureExt;
use ractor::ActorRef;
use tokio::sync::mpsc;

use super::host::{Cmd, HostMsg};
use super::{ActivationError, HandleError, Job, Shared, SnapshotStore, StoreError, VirtualAgent};

/// How an activation ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Its snapshot was saved (or removed, for a stateless agent).
    Passivated,
    /// Its snapshot could not be saved.
    SaveFailed(Arc<StoreError>),
    /// It panicked (handling, or taking its snapshot) and was dropped.
    Panicked(String),
    /// It could not start.
    ActivationFailed(Arc<ActivationError>),
}

/// Everything an activation task needs.
pub(crate) struct Activation<A: VirtualAgent> {
    pub(crate) key: Arc<str>,
    pub(crate) generation: u64,
    pub(crate) store: Arc<dyn SnapshotStore>,
    pub(crate) ctx: Arc<A::Context>,
    pub(crate) shared: Arc<Shared>,
    /// The host that started it; a restarted host is found by its name.
    pub(crate) host: ActorRef<HostMsg<A>>,
    pub(crate) host_name: Option<Arc<str>>,
    pub(crate) rx: mpsc::UnboundedReceiver<Job<A::Msg>>,
}

/// The text of a panic's payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-text panic payload)".to_string()
    }
}

impl<A: VirtualAgent> Activation<A> {
    /// Runs the activation to its end, then reports to the host.
    pub(crate) async fn run(mut self) {
        let (outcome, returned) = match self.start().await {
            Ok(agent) => self.serve(agent).await,
            Err(error) => (Outcome::ActivationFailed(Arc::new(error)), self.close()),
        };
        // A stopped host no longer cares (one stopping with its node
        // awaits this task instead).
        let _ = self.host().cast(HostMsg(Cmd::Ended {
            key: self.key,
            generation: self.generation,
            returned,
            outcome,
        }));
    }

    /// The running host: the one registered under the name of the host
    /// that started this activation (a restarted one), or that host.
    fn host(&self) -> ActorRef<HostMsg<A>> {
        self.host_name
            .as_deref()
            .and_then(crate::named::lookup::<HostMsg<A>>)
            .unwrap_or_else(|| self.host.clone())
    }

    /// Loads the snapshot and builds the agent.
    async fn start(&self) -> Result<A, ActivationError> {
        let snapshot = self.with_store(|store, key| store.load(key)).await?;
        match std::panic::catch_unwind(AssertUnwindSafe(|| A::activate(&self.ctx, &self.key, snapshot))) {
            Ok(Ok(agent)) => Ok(agent),
            Ok(Err(e)) => Err(ActivationError::Agent(e)),
            Err(payload) => Err(ActivationError::Panicked(panic_message(payload.as_ref()))),
        }
    }

    /// Runs one store call for this key: on tokio's blocking pool for a
    /// store whose calls block ([`SnapshotStore::blocks`]), here otherwise.
    /// A panicking store is an error, so the activation always reports.
    async fn with_store<T: Send + 'static>(
        &self,
        call: impl FnOnce(&dyn SnapshotStore, &str) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = Arc::clone(&self.store);
        let key = Arc::clone(&self.key);
        let run = move || match std::panic::catch_unwind(AssertUnwindSafe(|| call(&*store, &key))) {
            Ok(result) => result,
            Err(payload) => Err(StoreError::Panicked(panic_message(payload.as_ref()))),
        };
        if self.store.blocks() {
            match tokio::task::spawn_blocking(run).await {
                Ok(result) => result,
                // Panics are caught inside; a cancelled task (the runtime
                // shutting down) is reported the same way.
                Err(e) => Err(StoreError::Panicked(e.to_string())),
            }
        } else {
            run()
        }
    }

    /// Closes the queue and takes what is left in it, to hand back.
    fn close(&mut self) -> Vec<Job<A::Msg>> {
        self.rx.close();
        let mut left = Vec::new();
        while let Ok(job) = self.rx.try_recv() {
            left.push(job);
        }
        left
    }

    /// Handles messages until the host closes the queue (then saves) or
    /// the agent panics (then hands back what is queued).
    async fn serve(&mut self, mut agent: A) -> (Outcome, Vec<Job<A::Msg>>) {
        let counters = &self.shared.counters;
        counters.activations.fetch_add(1, Ordering::Relaxed);
        let mut handled: u64 = 0;
        while let Some(job) = self.rx.recv().await {
            let Job { msg, done, _permit } = job;
            let result = AssertUnwindSafe(agent.handle(msg)).catch_unwind().await;
            let key = || self.key.to_string();
            let outcome = match result {
                Ok(Ok(())) => Ok(()),
                Ok(Err(source)) => Err(HandleError::Failed { key: key(), source }),
                Err(payload) => {
                    let message = panic_message(payload.as_ref());
                    if let Some(done) = done {
                        // A sender that stopped waiting no longer cares.
                        let _ = done.send(Err(HandleError::Panicked {
                            key: key(),
                            message: message.clone(),
                        }));
                    }
                    drop(agent);
                    return (Outcome::Panicked(message), self.close());
                }
            };
            counters.handled.fetch_add(1, Ordering::Relaxed);
            handled += 1;
            if let Some(done) = done {
                // A sender that stopped waiting no longer cares.
                let _ = done.send(outcome);
            }
            drop(_permit);
            if self.rx.is_empty() {
                // The host may have stopped: then nobody passivates anyway.
                let _ = self.host().cast(HostMsg(Cmd::Idle {
                    key: Arc::clone(&self.key),
                    generation: self.generation,
                    handled,
                }));
            }
        }
        let snapshot = match std::panic::catch_unwind(AssertUnwindSafe(|| agent.snapshot())) {
            Ok(snapshot) => snapshot,
            Err(payload) => return (Outcome::Panicked(panic_message(payload.as_ref())), Vec::new()),
        };
        drop(agent);
        let saved = match snapshot {
            Some(bytes) => self.with_store(move |store, key| store.save(key, &bytes)).await,
            None => self.with_store(|store, key| store.remove(key)).await,
        };
        match saved {
            Ok(()) => (Outcome::Passivated, Vec::new()),
            Err(e) => (Outcome::SaveFailed(Arc::new(e)), Vec::new()),
        }
    }
}
