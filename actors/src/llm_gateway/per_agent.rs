//! Per-agent slots (`llm.max_concurrent_per_agent`) for the pipeline: a
//! request takes a slot of its agent before it reserves anything, waiting
//! first come first served up to its deadline, and holds it until it ends.
//! The decisions are [`AgentSlots`](crate::llm::agent_slots::AgentSlots)';
//! this module waits for them and guarantees the release: the slot is a
//! guard ([`AgentSlot`]), so an answer, an error, a panic or a caller that
//! drops the request (a timeout around `complete`, a `select!`) all give
//! it back, to the agent's oldest waiter if it has one.

use std::time::Duration;

use nexus_swarm_runtime::usage::UsageMeta;
use tokio::sync::oneshot;

use crate::llm::agent_slots::{AgentKey, Ticket};
use crate::llm::error::GatewayError;

use super::shared::Core;
use super::stats::bump;

/// One slot of an agent, held for a whole request; released on drop.
#[derive(Debug)]
pub(super) struct AgentSlot<'a> {
    core: &'a Core,
    key: AgentKey,
}

impl Drop for AgentSlot<'_> {
    fn drop(&mut self) {
        self.core.release_slot(&self.key);
    }
}

/// A request in its agent's queue. Dropped before it was handed a slot,
/// it leaves the queue; handed one in the meantime, it gives it back.
struct SlotWaiting<'a> {
    core: &'a Core,
    key: &'a AgentKey,
    ticket: Ticket,
    rx: oneshot::Receiver<()>,
    // Set once the slot is owned by an [`AgentSlot`].
    handed: bool,
}

impl Drop for SlotWaiting<'_> {
    fn drop(&mut self) {
        if self.handed {
            return;
        }
        let left = self.core.slots.lock().leave(self.key, self.ticket);
        if left.is_none() {
            // Out of the queue already: handed a slot, or expired. Closing
            // first makes a hand-off still on its way fail (its sender then
            // passes the slot on); one that arrived is given back here.
            self.rx.close();
            if self.rx.try_recv().is_ok() {
                self.core.release_slot(self.key);
            }
        }
    }
}

impl Core {
    /// A slot of the agent `meta` names, at once or once one of its calls
    /// ends; `None` when `meta` names no agent (not bounded per agent).
    /// Past `deadline` the request gives up with
    /// [`GatewayError::AgentBusy`], holding nothing.
    pub(super) async fn agent_slot(
        &self,
        meta: &UsageMeta,
        deadline: Duration,
        timeout: Duration,
    ) -> Result<Option<AgentSlot<'_>>, GatewayError> {
        let Some(key) = AgentKey::of(meta) else {
            return Ok(None);
        };
        let (ticket, rx) = {
            let mut s = self.slots.lock();
            if s.try_take(&key) {
                drop(s);
                return Ok(Some(AgentSlot { core: self, key }));
            }
            let (tx, rx) = oneshot::channel();
            (s.enqueue(&key, deadline, tx), rx)
        };
        bump(&self.stats.agent_waits);
        let mut waiting = SlotWaiting {
            core: self,
            key: &key,
            ticket,
            rx,
            handed: false,
        };
        // A closed channel means a release found this waiter past its
        // deadline and dropped it from the queue.
        if let Ok(Ok(())) = tokio::time::timeout_at(self.instant(deadline), &mut waiting.rx).await {
            waiting.handed = true;
            drop(waiting);
            return Ok(Some(AgentSlot { core: self, key }));
        }
        drop(waiting);
        Err(GatewayError::AgentBusy {
            agent: key.to_string(),
            limit: self.slots.lock().limit(),
            timeout,
        })
    }

    /// Releases a slot of `key`: to its oldest waiter still waiting, or
    /// free. A waiter that left between the decision and the hand-off
    /// passes the slot on in turn.
    fn release_slot(&self, key: &AgentKey) {
        loop {
            let released = {
                let mut s = self.slots.lock();
                s.release(self.now(), key, |tx| tx.is_closed())
            };
            // Dropping an expired waiter's sender tells it that its deadline
            // passed.
            drop(released.expired);
            let Some(tx) = released.next else {
                return;
            };
            // Sent, it is the waiter's to give back (a waiter that leaves
            // before reading it releases it in its drop); refused, the
            // waiter left after the decision and the slot passes on.
            if tx.send(()).is_ok() {
                return;
            }
        }
    }
}
