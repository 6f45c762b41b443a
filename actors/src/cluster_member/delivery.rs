//! Keyed work across nodes, at least once: a sender casts a
//! [`Work`] frame to the key's owner and waits for its [`Ack`], which the
//! owner sends only after handling it; with no ack within
//! `cluster.ack_timeout` it sends again, to the key's owner at that time
//! (the same node, or the next one along the ring once the owner was
//! ejected). The message id travels with every copy, and the owner's
//! [`Dedup`](nexus_swarm_runtime::cluster::Dedup) handles a copy it has
//! seen only by acknowledging it again.
//!
//! Handling, on the owner, is the [`WorkHandler`] given in
//! [`ClusterSettings`](super::ClusterSettings) (`nexus node --work-pool`:
//! an ask of a local agent pool), run on its own task so heartbeats never
//! wait for it; without one, a message is handled by being recorded. Either
//! way [`ClusterHandle::work_handled`] counts it once handled.
//!
//! Work for a cluster pool ([`crate::cluster_pool`]) names its pool
//! (`Work::pool`): it goes to the owner among the pool's hosts (a
//! `Route` picks the owner and the receiver of each copy), and the
//! owner hands it to that pool's [`PoolWorkHandler`], never to the node's
//! own handler; work for a pool the owner does not host is not
//! acknowledged, so its sender goes on to the pool's next owner.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::future::BoxFuture;
use nexus_swarm_runtime::cluster::Seen;
use nexus_swarm_runtime::cluster::envelope::{self, EnvelopeError, FrameKind};
use nexus_swarm_runtime::cluster::{Ack, LoadBound, Work};
use nexus_swarm_runtime::routing::RoutingKey;
use ractor::{ActorCell, ActorRef};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{ClusterHandle, ClusterMsg, ClusterShared, node_group};

/// What a node does with the keyed work it owns. The ack goes back only
/// once the future it returns ends in `Ok`; an `Err` sends none (the
/// sender sends again, and the next copy is handled anew).
pub trait WorkHandler: Send + Sync + std::fmt::Debug + 'static {
    /// Handles `body`, sent for `key`.
    fn handle(&self, key: String, body: Vec<u8>) -> BoxFuture<'static, Result<(), String>>;
}

/// Keyed work that was acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The message id (unique per sending node).
    pub id: u64,
    /// The node that handled it and acknowledged.
    pub owner: String,
    /// Copies sent (1 when the first was acknowledged).
    pub attempts: u32,
}

/// Why keyed work was not acknowledged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// No ack before the deadline. The work may still have been handled.
    #[error("message {id} not acknowledged within {waited_ms} ms ({attempts} attempts)")]
    Timeout {
        /// The message id.
        id: u64,
        /// Copies sent.
        attempts: u32,
        /// How long the sender waited.
        waited_ms: u64,
    },
    /// This node sees fewer members than `cluster.quorum`: it takes no
    /// keyed work (it may be cut off from the majority).
    #[error("no quorum: {members} member(s) seen, {quorum} needed")]
    NoQuorum {
        /// Members this node sees, itself included.
        members: usize,
        /// The quorum.
        quorum: u32,
    },
    /// The work could not be framed.
    #[error(transparent)]
    Encode(#[from] EnvelopeError),
}

impl ClusterShared {
    /// `NoQuorum` when the ring holds fewer members than `cluster.quorum`.
    pub(super) fn check_quorum(&self) -> Result<(), DeliveryError> {
        let Some(quorum) = self.config.quorum else {
            return Ok(());
        };
        let members = self.view.load().ring.members().len();
        if members < quorum as usize {
            return Err(DeliveryError::NoQuorum { members, quorum });
        }
        Ok(())
    }
}

/// Which node owns a key, and how a frame reaches it.
pub(crate) trait Route: Send + Sync {
    /// The node owning `key` now, if any.
    fn owner(&self, key: RoutingKey) -> Option<String>;
    /// Casts `frame` to node `owner`'s receiver; `false` if none is reachable.
    fn cast(&self, owner: &str, frame: Vec<u8>) -> bool;
}

/// The whole ring, to each node's member.
struct NodeRoute<'a>(&'a ClusterHandle);

impl Route for NodeRoute<'_> {
    fn owner(&self, key: RoutingKey) -> Option<String> {
        // Ourselves at least: the ring always holds this node.
        Some(self.0.owner(key).unwrap_or_else(|| self.0.shared.name.clone()))
    }

    fn cast(&self, owner: &str, frame: Vec<u8>) -> bool {
        member_of(&self.0.shared, owner).is_some_and(|m| m.cast(ClusterMsg::Frame(frame)).is_ok())
    }
}

/// What handles the keyed work of one cluster pool on this node (see
/// [`crate::cluster_pool`]). As with [`WorkHandler`], the ack goes back
/// only once the future ends in `Ok`.
pub trait PoolWorkHandler: Send + Sync + std::fmt::Debug + 'static {
    /// Handles `work`.
    fn handle(&self, work: KeyedWork) -> BoxFuture<'static, Result<(), String>>;
}

/// Keyed work for a cluster pool, as its owner received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedWork {
    /// The sending node.
    pub from: String,
    /// The message id (unique per sending node; copies share it).
    pub id: u64,
    /// The routing key.
    pub key: String,
    /// The encoded message.
    pub body: Vec<u8>,
}

/// The member of `node`: ours (local) or a peer's (remote).
pub(super) fn member_of(shared: &ClusterShared, node: &str) -> Option<ActorRef<ClusterMsg>> {
    if node == shared.name {
        return shared.member();
    }
    ractor::pg::get_members(&node_group(node))
        .into_iter()
        .find(|c: &ActorCell| !c.get_id().is_local())
        .map(ActorRef::from)
}

impl ClusterHandle {
    /// Sends `body` to the owner of `key` and waits, up to `deadline`, for
    /// its ack, resending as the module docs say.
    pub async fn send_keyed(&self, key: &str, body: Vec<u8>, deadline: Duration) -> Result<Delivery, DeliveryError> {
        self.send_routed(key, body, None, &NodeRoute(self), deadline).await
    }

    /// A new message id and the frame of keyed work carrying `body` for
    /// `key` (and cluster pool `pool`).
    fn work_frame(&self, key: &str, body: Vec<u8>, pool: Option<String>) -> Result<(u64, Vec<u8>), DeliveryError> {
        let shared = &self.shared;
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let work = Work {
            from: shared.name.clone(),
            key: key.to_string(),
            body,
            pool,
        };
        Ok((
            id,
            envelope::encode(FrameKind::Work, id, &work, shared.config.compress_above)?,
        ))
    }

    /// [`send_keyed`](Self::send_keyed) for cluster pool `pool` (`None`:
    /// the node's handler), each copy going to the owner `route` names at
    /// that time, by the means `route` casts with.
    pub(crate) async fn send_routed(
        &self,
        key: &str,
        body: Vec<u8>,
        pool: Option<String>,
        route: &dyn Route,
        deadline: Duration,
    ) -> Result<Delivery, DeliveryError> {
        let shared = &self.shared;
        shared.check_quorum()?;
        let (id, frame) = self.work_frame(key, body, pool)?;
        let (tx, mut rx) = oneshot::channel();
        shared.pending.lock().insert(id, tx);
        shared.work_sent.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let give_up = started + deadline;
        let routing_key = RoutingKey::new(key);
        let mut attempts = 0u32;
        let outcome = loop {
            attempts += 1;
            if let Err(e) = shared.check_quorum() {
                shared.pending.lock().remove(&id);
                return Err(e);
            }
            if attempts > 1 {
                shared.work_resent.fetch_add(1, Ordering::Relaxed);
            }
            // No owner now (a pool hosted nowhere): try again at the next wake.
            if let Some(owner) = route.owner(routing_key) {
                // A failed cast (its session just closed) is retried below.
                let _ = route.cast(&owner, frame.clone());
            }
            let wake = (Instant::now() + shared.config.ack_timeout).min(give_up);
            tokio::select! {
                acked = &mut rx => break acked.ok(),
                () = tokio::time::sleep_until(wake) => {
                    if Instant::now() >= give_up {
                        break None;
                    }
                }
            }
        };
        match outcome {
            Some(owner) => {
                shared.work_acknowledged.fetch_add(1, Ordering::Relaxed);
                Ok(Delivery { id, owner, attempts })
            }
            None => {
                shared.pending.lock().remove(&id);
                Err(DeliveryError::Timeout {
                    id,
                    attempts,
                    waited_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                })
            }
        }
    }

    /// Casts one copy of `body` for cluster pool `pool` to the owner
    /// `route` names now, and neither waits for its ack nor sends it again:
    /// at most once. The message id, or `None` when there was no owner or
    /// it was unreachable.
    pub(crate) fn cast_routed(
        &self,
        key: &str,
        body: Vec<u8>,
        pool: Option<String>,
        route: &dyn Route,
    ) -> Result<Option<u64>, DeliveryError> {
        let shared = &self.shared;
        shared.check_quorum()?;
        let Some(owner) = route.owner(RoutingKey::new(key)) else {
            return Ok(None);
        };
        let (id, frame) = self.work_frame(key, body, pool)?;
        if !route.cast(&owner, frame) {
            return Ok(None);
        }
        shared.work_sent.fetch_add(1, Ordering::Relaxed);
        Ok(Some(id))
    }

    /// `NoQuorum` when this node sees fewer members than `cluster.quorum`.
    pub(crate) fn check_quorum(&self) -> Result<(), DeliveryError> {
        self.shared.check_quorum()
    }

    /// Makes `handler` handle the keyed work for cluster pool `pool` on
    /// this node; `false` (and nothing changes) if `pool` has one already.
    pub(crate) fn register_pool(&self, pool: &str, handler: Arc<dyn PoolWorkHandler>) -> bool {
        let mut pools = self.shared.pools.write();
        if pools.contains_key(pool) {
            return false;
        }
        pools.insert(pool.to_string(), handler);
        true
    }

    /// Hands a peer's frame to this node's member as if it came to the
    /// member itself; `false` if the member is not running.
    pub(crate) fn deliver_frame(&self, frame: Vec<u8>) -> bool {
        self.shared
            .member()
            .is_some_and(|m| m.cast(ClusterMsg::Frame(frame)).is_ok())
    }

    /// A fresh message id of this node (for work that never leaves it).
    pub(crate) fn next_message_id(&self) -> u64 {
        self.shared.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Points per node on the ring (`cluster.virtual_nodes`).
    pub(crate) fn virtual_nodes(&self) -> u32 {
        self.shared.config.virtual_nodes
    }

    /// `cluster.load_bound_percent`, as a bound.
    pub(crate) fn load_bound(&self) -> Option<LoadBound> {
        self.shared
            .config
            .load_bound_percent
            .map(|epsilon_percent| LoadBound { epsilon_percent })
    }

    /// Keyed messages this node handled (each id once).
    pub fn work_handled(&self) -> u64 {
        self.shared.work_handled.load(Ordering::Relaxed)
    }

    /// Copies of messages already taken: acknowledged again if handled,
    /// else left for the ack that ends the handling.
    pub fn work_duplicates(&self) -> u64 {
        self.shared.work_duplicates.load(Ordering::Relaxed)
    }

    /// Keyed messages this node sent (each id once).
    pub fn work_sent(&self) -> u64 {
        self.shared.work_sent.load(Ordering::Relaxed)
    }

    /// Keyed messages this node sent that were acknowledged.
    pub fn work_acknowledged(&self) -> u64 {
        self.shared.work_acknowledged.load(Ordering::Relaxed)
    }

    /// Keyed messages whose handling failed (not acknowledged).
    pub fn work_failed(&self) -> u64 {
        self.shared.work_failed.load(Ordering::Relaxed)
    }

    /// Keyed work from peers refused for want of a quorum.
    pub fn work_refused(&self) -> u64 {
        self.shared.work_refused.load(Ordering::Relaxed)
    }

    /// Whether this node sees at least `cluster.quorum` members (always
    /// without a quorum set).
    pub fn has_quorum(&self) -> bool {
        self.shared.check_quorum().is_ok()
    }

    /// Copies sent again after an ack did not come in time.
    pub fn work_resent(&self) -> u64 {
        self.shared.work_resent.load(Ordering::Relaxed)
    }
}

/// The owner's side: take `work` (once per sender and id), handle it, and
/// ack once handled; without a quorum, neither (the sender goes to the
/// key's next owner).
pub(super) fn on_work(shared: &ClusterShared, id: u64, work: Work) {
    if let Err(e) = shared.check_quorum() {
        shared.work_refused.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(sender = %work.from, id, error = %e, "keyed work refused");
        return;
    }
    let seen = shared.core.lock().dedup.begin(&work.from, id);
    match seen {
        Seen::Done => {
            shared.work_duplicates.fetch_add(1, Ordering::Relaxed);
            send_ack(shared, &work.from, id);
        }
        // Acknowledged when its handling ends.
        Seen::InFlight => {
            shared.work_duplicates.fetch_add(1, Ordering::Relaxed);
        }
        Seen::New if work.pool.is_some() => {
            let pool = work.pool.unwrap_or_default();
            let handler = shared.pools.read().get(&pool).cloned();
            let Some(handler) = handler else {
                handled(
                    shared,
                    &work.from,
                    id,
                    Err(format!("no cluster pool {pool:?} on this node")),
                );
                return;
            };
            let member = shared.member();
            let keyed = KeyedWork {
                from: work.from,
                id,
                key: work.key,
                body: work.body,
            };
            tokio::spawn(async move {
                let from = keyed.from.clone();
                let outcome = handler.handle(keyed).await;
                if let Some(member) = member {
                    // As below: a restarted member misses it, the next copy is handled anew.
                    let _ = member.cast(ClusterMsg::Handled { from, id, outcome });
                }
            });
        }
        Seen::New => match shared.handler.clone() {
            None => handled(shared, &work.from, id, Ok(())),
            Some(handler) => {
                let member = shared.member();
                tokio::spawn(async move {
                    let outcome = handler.handle(work.key, work.body).await;
                    if let Some(member) = member {
                        // A member restarted meanwhile misses it; the
                        // sender's next copy is then handled anew.
                        let _ = member.cast(ClusterMsg::Handled {
                            from: work.from,
                            id,
                            outcome,
                        });
                    }
                });
            }
        },
    }
}

/// The handling of `(from, id)` ended: remember it, count it and ack it
/// if it succeeded.
pub(super) fn handled(shared: &ClusterShared, from: &str, id: u64, outcome: Result<(), String>) {
    let ok = outcome.is_ok();
    shared.core.lock().dedup.finish(from, id, ok);
    match outcome {
        Ok(()) => {
            shared.work_handled.fetch_add(1, Ordering::Relaxed);
            send_ack(shared, from, id);
        }
        Err(e) => {
            shared.work_failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(sender = %from, id, error = %e, "keyed work not handled");
        }
    }
}

fn send_ack(shared: &ClusterShared, to: &str, id: u64) {
    if to == shared.name {
        on_ack(shared, id, shared.name.clone());
        return;
    }
    let ack = Ack {
        node: shared.name.clone(),
    };
    match envelope::encode(FrameKind::Ack, id, &ack, shared.config.compress_above) {
        Ok(bytes) => match member_of(shared, to) {
            // A sender gone since: nobody waits for the ack.
            Some(sender) => {
                let _ = sender.cast(ClusterMsg::Frame(bytes));
            }
            None => tracing::debug!(sender = %to, id, "ack for a sender no longer connected"),
        },
        Err(e) => tracing::error!(error = %e, "ack not encoded"),
    }
}

/// The sender's side: the ack of message `id` came from `node`.
pub(super) fn on_ack(shared: &ClusterShared, id: u64, node: String) {
    // Late acks (of a message already acknowledged or given up) find nothing.
    if let Some(waiter) = shared.pending.lock().remove(&id) {
        // The sender may have stopped waiting.
        let _ = waiter.send(node);
    }
}
