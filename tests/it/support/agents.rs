//! Agents shared by the integration tests.

#![allow(dead_code, unreachable_pub, missing_docs, missing_debug_implementations)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nexus_swarm::prelude::*;
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Upper bound on any wait in a test; reaching it is a failure.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// A message that identifies itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tagged {
    pub id: u64,
    pub priority: Priority,
}

/// Records every message it handles on a channel, optionally waiting for a
/// permit before each one (so a test can hold messages in the lanes), and
/// panics on `panic_on` ids.
pub struct Recorder {
    pub seen: mpsc::UnboundedSender<Tagged>,
    pub gate: Option<Arc<Semaphore>>,
    pub panic_on: Vec<u64>,
    /// Told once when the first message enters the handler.
    pub entered: std::sync::Mutex<Option<oneshot::Sender<()>>>,
}

impl Recorder {
    pub fn new(seen: mpsc::UnboundedSender<Tagged>) -> Self {
        Self {
            seen,
            gate: None,
            panic_on: Vec::new(),
            entered: std::sync::Mutex::new(None),
        }
    }

    pub fn gated(mut self, gate: Arc<Semaphore>) -> Self {
        self.gate = Some(gate);
        self
    }

    pub fn panicking_on(mut self, ids: &[u64]) -> Self {
        self.panic_on = ids.to_vec();
        self
    }

    pub fn signal_entry(self, tx: oneshot::Sender<()>) -> Self {
        *self.entered.lock().unwrap() = Some(tx);
        self
    }
}

impl Agent for Recorder {
    type Msg = Tagged;
    type State = ();

    async fn init(&self, _ctx: &AgentContext<Tagged>) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn handle(&self, _ctx: &AgentContext<Tagged>, msg: Tagged, _: &mut ()) -> Result<(), HandlerError> {
        if let Some(tx) = self.entered.lock().unwrap().take() {
            let _ = tx.send(());
        }
        if let Some(gate) = &self.gate {
            gate.acquire().await?.forget();
        }
        if self.panic_on.contains(&msg.id) {
            panic!("boom on message {}", msg.id);
        }
        self.seen.send(msg)?;
        Ok(())
    }
}

/// Counts messages and reports once when the count reaches a target.
pub struct Countdown {
    pub target: u64,
    pub count: Arc<AtomicU64>,
    pub done: std::sync::Mutex<Option<oneshot::Sender<()>>>,
}

impl Countdown {
    pub fn new(target: u64) -> (Self, Arc<AtomicU64>, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let count = Arc::new(AtomicU64::new(0));
        let agent = Self {
            target,
            count: Arc::clone(&count),
            done: std::sync::Mutex::new(Some(tx)),
        };
        (agent, count, rx)
    }
}

impl Agent for Countdown {
    type Msg = u64;
    type State = ();

    async fn init(&self, _ctx: &AgentContext<u64>) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn handle(&self, _ctx: &AgentContext<u64>, _msg: u64, _: &mut ()) -> Result<(), HandlerError> {
        let n = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.target {
            if let Some(tx) = self.done.lock().unwrap().take() {
                let _ = tx.send(());
            }
        }
        Ok(())
    }
}

/// Drains `n` messages from a recorder's channel, failing after `TIMEOUT`.
pub async fn collect(rx: &mut mpsc::UnboundedReceiver<Tagged>, n: usize) -> Vec<Tagged> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match tokio::time::timeout(TIMEOUT, rx.recv()).await {
            Ok(Some(m)) => out.push(m),
            Ok(None) => panic!("recorder channel closed after {} of {n} messages", out.len()),
            Err(_) => panic!("timed out after {} of {n} messages", out.len()),
        }
    }
    out
}

pub fn tagged(id: u64, priority: Priority) -> Tagged {
    Tagged { id, priority }
}
