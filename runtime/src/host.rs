//! The ractor actor that hosts one [`Agent`] and drains its lanes.
//!
//! Its ractor mailbox carries only [`HostMsg`]: a doorbell and control
//! messages. What ractor did per message for its own mailbox (a tracing
//! span, catching a panic, stopping) is done here per lane message: each
//! handler call runs in a `debug` span, panics propagate to ractor's catch
//! (so supervision sees them), and on a graceful stop the lanes are closed
//! and drained before the actor exits.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tracing::Instrument;

use crate::agent::{Agent, AgentContext};
use crate::agent_ref::AgentRef;
use crate::mailbox::{DrainPolicy, Mailbox, Taken};

/// Messages to a hosting actor. Never carries user messages.
#[derive(Debug)]
pub enum HostMsg {
    /// The doorbell: lanes have messages.
    Wake,
    /// Stop admitting, handle every admitted message, then stop.
    Retire,
    /// Liveness probe: answered between drain batches, so an agent stuck in
    /// a handler does not answer.
    Ping(ractor::RpcReplyPort<()>),
    /// The agent has a preemption notice (in its signals): run its
    /// `on_preempt` between messages.
    Preempted,
}

impl ractor::Message for HostMsg {}

/// The hosting actor's configuration (ractor's `self`).
pub(crate) struct AgentHost<A: Agent> {
    pub(crate) agent: Arc<A>,
    pub(crate) mailbox: Arc<Mailbox<A::Msg>>,
    pub(crate) name: Arc<str>,
    pub(crate) worker: usize,
    pub(crate) drain_batch: usize,
    pub(crate) aging_after: u32,
}

impl<A: Agent> Clone for AgentHost<A> {
    fn clone(&self) -> Self {
        Self {
            agent: Arc::clone(&self.agent),
            mailbox: Arc::clone(&self.mailbox),
            name: Arc::clone(&self.name),
            worker: self.worker,
            drain_batch: self.drain_batch,
            aging_after: self.aging_after,
        }
    }
}

/// The hosting actor's mutable state.
pub(crate) struct HostState<A: Agent> {
    agent_state: A::State,
    ctx: AgentContext<A::Msg>,
    policy: DrainPolicy,
    retiring: bool,
}

impl<A: Agent> AgentHost<A> {
    /// Handles up to one batch. Returns whether lanes may still hold work.
    async fn drain(&self, state: &mut HostState<A>) -> Result<bool, ActorProcessingErr> {
        for _ in 0..self.drain_batch {
            let Some(Taken { msg, ticket }) = self.mailbox.pop(&mut state.policy) else {
                return Ok(false);
            };
            // Queue pops use no tokio task budget: without this a draining
            // actor never yields and latency for everyone else suffers.
            tokio::task::consume_budget().await;
            let span = tracing::debug_span!("agent.handle", agent = %self.name, worker = self.worker);
            let handling = self
                .agent
                .handle(&state.ctx, msg, &mut state.agent_state)
                .instrument(span);
            // Handler time is measured only for managed agents (those with
            // signals), so plain agents pay no clock reads.
            let signals = self.mailbox.signals.get();
            let started = signals.map(|_| std::time::Instant::now());
            // A handler that awaits stops the drain: parked senders get the
            // room freed so far now (see `Mailbox::offer_room_while`).
            let result = self.mailbox.offer_room_while(handling).await;
            // A message taken from the pool's spill is acknowledged (off
            // the disk) once handled; a panic above drops the ticket too.
            drop(ticket);
            self.mailbox.counters.handled.fetch_add(1, Ordering::Relaxed);
            if let (Some(signals), Some(started)) = (signals, started) {
                let took = started.elapsed();
                signals.add_busy(took);
                if let Some(stats) = signals.recording() {
                    stats.record(took, result.is_err());
                }
                result?;
                if signals.is_throttled() {
                    // Over its CPU limit: every other runnable task goes first.
                    tokio::task::yield_now().await;
                }
                continue;
            }
            result?;
        }
        Ok(true)
    }
}

impl<A: Agent> Actor for AgentHost<A> {
    type Msg = HostMsg;
    type State = HostState<A>;
    type Arguments = u32;

    async fn pre_start(&self, myself: ActorRef<HostMsg>, restarts: u32) -> Result<Self::State, ActorProcessingErr> {
        self.mailbox.attach(myself);
        let ctx = AgentContext {
            name: Arc::clone(&self.name),
            worker: self.worker,
            restarts,
            myself: AgentRef::from_mailbox(Arc::clone(&self.mailbox)),
        };
        // Wrapped so that supervision reports an `init` error as one
        // (`SpawnError::Init`), not as a panic during startup.
        let agent_state = self
            .agent
            .init(&ctx)
            .await
            .map_err(|e| -> ActorProcessingErr { Box::new(crate::supervisor::InitFailed(e)) })?;
        Ok(HostState {
            agent_state,
            ctx,
            policy: DrainPolicy::new(self.aging_after),
            retiring: false,
        })
    }

    async fn post_start(&self, myself: ActorRef<HostMsg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        if self.mailbox.is_closed() {
            // A retiring worker that crashed keeps retiring after restart.
            state.retiring = true;
        }
        // A predecessor may have died mid-drain with the flag still set, so
        // nobody would ring: a restarted host wakes itself unconditionally.
        // A first start needs no wake-up unless something is already
        // admitted: its lanes are new and the flag is clear, so the first
        // sender rings (the actor was attached before `init` ran). Skipping
        // it saves a message per spawn.
        if state.ctx.restarts > 0 && self.mailbox.signals.get().is_some_and(|s| s.preemption().is_some()) {
            // Restarted after its notice: this instance must hear it too.
            myself.cast(HostMsg::Preempted)?;
        }
        if state.ctx.restarts > 0 || state.retiring || self.mailbox.pending() > 0 {
            self.mailbox.force_scheduled();
            myself.cast(HostMsg::Wake)?;
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<HostMsg>,
        msg: HostMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            HostMsg::Retire => {
                state.retiring = true;
                self.mailbox.close();
                if self.mailbox.pending() == 0 {
                    myself.stop(Some("retired".into()));
                } else {
                    // The next drains finish the job; make sure one comes.
                    self.mailbox.force_scheduled();
                    myself.cast(HostMsg::Wake)?;
                }
            }
            HostMsg::Ping(reply) => {
                // The prober may have timed out already; nothing to do then.
                let _ = reply.send(());
            }
            HostMsg::Preempted => {
                if let Some(notice) = self.mailbox.signals.get().and_then(|s| s.preemption()).cloned() {
                    Box::pin(self.agent.on_preempt(&state.ctx, &mut state.agent_state, &notice)).await;
                }
            }
            HostMsg::Wake => {
                // Boxed: the drain future holds the agent's handler future,
                // and unboxed it would be part of the actor task's own
                // allocation, which every idle agent pays for. One
                // allocation per batch instead.
                let more = Box::pin(self.drain(state)).await?;
                if more {
                    // Batch done: yield to control messages, keep the flag set.
                    myself.cast(HostMsg::Wake)?;
                } else if state.retiring && self.mailbox.pending() == 0 {
                    myself.stop(Some("retired".into()));
                } else if self.mailbox.idle() {
                    myself.cast(HostMsg::Wake)?;
                }
            }
        }
        Ok(())
    }

    async fn post_stop(&self, _myself: ActorRef<HostMsg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        // Boxed for the same reason as the drain (see `handle`).
        Box::pin(self.agent.on_stop(&state.ctx, &mut state.agent_state)).await;
        Ok(())
    }
}
