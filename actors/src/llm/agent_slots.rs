//! Per-agent concurrency: at most `llm.max_concurrent_per_agent` gateway
//! requests of one agent under way at once.
//!
//! Plain synchronous code on an explicit clock (a [`Duration`] since the
//! gateway's epoch), like the [`limiter`](super::limiter): the gateway
//! holds one [`AgentSlots`] under a short lock, takes a slot when a request
//! starts and releases it when the request ends, however it ends.
//!
//! # Rules
//!
//! - An agent is the tenant, workflow and agent of the request's
//!   [`UsageMeta`] ([`AgentKey`]): the same agent name under two tenants is
//!   two agents. A request whose metadata names no agent is not bounded
//!   per agent (only by the gateway-wide limits).
//! - A request takes a slot at once when its agent holds fewer than the
//!   limit and none of its requests waits: a new request never passes a
//!   waiting one (first come, first served per agent).
//! - Otherwise it waits in its agent's queue until its deadline.
//! - A released slot is handed straight to the agent's oldest waiter that
//!   is still waiting (deadline not passed, caller not gone), so the count
//!   never drops and rises again for a newcomer to slip in. Waiters skipped
//!   on the way are removed and given back as expired.
//! - An agent that holds no slot and has nobody waiting is forgotten:
//!   memory follows the agents active now, not every agent ever seen.
//!
//! The queues are not bounded in length: every waiter is a caller
//! suspended on its own request until its deadline, not a message left
//! behind, so an agent cannot outrun them (the wait is its backpressure).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use nexus_swarm_runtime::usage::UsageMeta;

/// Who a request's slot belongs to: tenant, workflow and agent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AgentKey {
    /// The tenant, if the request names one.
    pub tenant: Option<String>,
    /// The workflow, if the request names one.
    pub workflow: Option<String>,
    /// The agent.
    pub agent: String,
}

impl AgentKey {
    /// The agent of a request's metadata; `None` when it names no agent
    /// (such requests are not bounded per agent).
    pub fn of(meta: &UsageMeta) -> Option<Self> {
        Some(Self {
            tenant: meta.scope.tenant.clone(),
            workflow: meta.scope.workflow.clone(),
            agent: meta.scope.agent.clone()?,
        })
    }
}

impl fmt::Display for AgentKey {
    /// `tenant/workflow/agent`, leaving out the parts not named.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in [&self.tenant, &self.workflow].into_iter().flatten() {
            write!(f, "{part}/")?;
        }
        f.write_str(&self.agent)
    }
}

/// One agent's requests now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AgentLoad {
    /// Requests holding a slot (under way).
    pub in_flight: u32,
    /// Requests waiting for a slot.
    pub waiting: usize,
}

/// A waiter's place in its agent's queue, to leave it by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ticket(u64);

/// What a release did.
#[derive(Debug)]
pub struct Released<T> {
    /// The waiter the slot was handed to (it now holds it), if any.
    pub next: Option<T>,
    /// Waiters removed on the way: deadline passed, or caller gone.
    pub expired: Vec<T>,
}

#[derive(Debug)]
struct Waiting<T> {
    ticket: Ticket,
    deadline: Duration,
    payload: T,
}

#[derive(Debug)]
struct Agent<T> {
    in_flight: u32,
    queue: VecDeque<Waiting<T>>,
}

/// The slots of every active agent.
#[derive(Debug)]
pub struct AgentSlots<T> {
    limit: NonZeroU32,
    agents: HashMap<AgentKey, Agent<T>>,
    next_ticket: u64,
    in_flight: u64,
    waiting: usize,
}

impl<T> AgentSlots<T> {
    /// At most `limit` slots per agent.
    pub fn new(limit: NonZeroU32) -> Self {
        Self {
            limit,
            agents: HashMap::new(),
            next_ticket: 0,
            in_flight: 0,
            waiting: 0,
        }
    }

    /// Slots per agent.
    pub fn limit(&self) -> u32 {
        self.limit.get()
    }

    /// Takes a slot of `key` if one is free and none of its requests waits.
    pub fn try_take(&mut self, key: &AgentKey) -> bool {
        let limit = self.limit.get();
        if let Some(a) = self.agents.get_mut(key) {
            if a.in_flight >= limit || !a.queue.is_empty() {
                return false;
            }
            a.in_flight += 1;
        } else {
            self.agents.insert(
                key.clone(),
                Agent {
                    in_flight: 1,
                    queue: VecDeque::new(),
                },
            );
        }
        self.in_flight += 1;
        true
    }

    /// Queues a request of `key` until `deadline` (after [`Self::try_take`]
    /// refused it); `payload` is what a release hands back to wake it.
    pub fn enqueue(&mut self, key: &AgentKey, deadline: Duration, payload: T) -> Ticket {
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        let agent = self.agents.entry(key.clone()).or_insert_with(|| Agent {
            in_flight: 0,
            queue: VecDeque::new(),
        });
        agent.queue.push_back(Waiting {
            ticket,
            deadline,
            payload,
        });
        self.waiting += 1;
        ticket
    }

    /// Releases one slot of `key` at `now`: it goes to the oldest waiter
    /// whose deadline is after `now` and that is not `gone`, or becomes
    /// free. Releasing an agent with no slot held changes nothing.
    pub fn release(&mut self, now: Duration, key: &AgentKey, mut gone: impl FnMut(&T) -> bool) -> Released<T> {
        let mut done = Released {
            next: None,
            expired: Vec::new(),
        };
        let Some(agent) = self.agents.get_mut(key) else {
            return done;
        };
        if agent.in_flight == 0 {
            return done;
        }
        while let Some(w) = agent.queue.pop_front() {
            self.waiting -= 1;
            if w.deadline <= now || gone(&w.payload) {
                done.expired.push(w.payload);
            } else {
                // The slot passes on: the count stays.
                done.next = Some(w.payload);
                break;
            }
        }
        if done.next.is_none() {
            agent.in_flight -= 1;
            self.in_flight -= 1;
        }
        self.forget_if_idle(key);
        done
    }

    /// Takes a waiter out of its queue (it stopped waiting); `None` if it
    /// is no longer queued (handed a slot, or expired by a release).
    pub fn leave(&mut self, key: &AgentKey, ticket: Ticket) -> Option<T> {
        let agent = self.agents.get_mut(key)?;
        let i = agent.queue.iter().position(|w| w.ticket == ticket)?;
        let w = agent.queue.remove(i)?;
        self.waiting -= 1;
        self.forget_if_idle(key);
        Some(w.payload)
    }

    /// What `key` holds and how many of its requests wait.
    pub fn load(&self, key: &AgentKey) -> AgentLoad {
        self.agents.get(key).map_or_else(AgentLoad::default, |a| AgentLoad {
            in_flight: a.in_flight,
            waiting: a.queue.len(),
        })
    }

    /// Slots held, every agent together.
    pub fn in_flight(&self) -> u64 {
        self.in_flight
    }

    /// Requests waiting for a slot, every agent together.
    pub fn waiting(&self) -> usize {
        self.waiting
    }

    /// Agents with a slot held or a request waiting.
    pub fn active_agents(&self) -> usize {
        self.agents.len()
    }

    fn forget_if_idle(&mut self, key: &AgentKey) {
        if self
            .agents
            .get(key)
            .is_some_and(|a| a.in_flight == 0 && a.queue.is_empty())
        {
            self.agents.remove(key);
        }
    }
}

#[cfg(test)]
mod tests;
