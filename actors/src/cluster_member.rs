//! [`ClusterMember`]: this node's member of the cluster. It sends our
//! heartbeats to every peer, hears theirs, keeps membership with the
//! [`FailureDetector`] and publishes the ring that maps keys to nodes.
//!
//! The actor is the node's remote-facing actor: it joins the `pg` group
//! [`CLUSTER_GROUP`] (and [`node_group`] of its own name), which
//! `ractor_cluster` mirrors on every connected node, so a peer reaches it
//! as a remote actor. What a peer sends it is opaque bytes
//! ([`ClusterMsg::Frame`]): `ractor_cluster` hands them over without a
//! decoder that could panic, and [`envelope::decode`] turns them into a
//! typed message or an [`EnvelopeError`], counted
//! ([`ClusterHandle::decode_errors`]), logged and published as
//! [`ClusterEvent::DecodeError`]; the session carries on.
//!
//! `ractor_cluster` notices a crashed peer (its session closes:
//! [`MemberChange::Down`] with `Disconnected`) but not a hung one (SIGSTOP
//! keeps the TCP session open): our heartbeats every
//! `cluster.heartbeat_interval` and the detector's `cluster.failure_timeout`
//! eject it, and its next heartbeat (SIGCONT) brings it back. Its keys move
//! with it, and back. The transport (the `NodeServer`, session events,
//! redialing `--join` peers with backoff) is in [`transport`].
//!
//! State lives in [`ClusterShared`] (in the actor's arguments), so a
//! restarted member keeps its detector, counters and ring.

pub mod delivery;
pub mod gate;
pub mod limits;
mod tls;
pub mod transport;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use nexus_swarm_runtime::cluster::envelope::{self, EnvelopeError, FrameKind};
use nexus_swarm_runtime::cluster::{
    Ack, ClusterRing, Dedup, DownReason, FailureDetector, FigureAck, FigureReply, Heartbeat, LeaseReply, MemberChange,
    Work,
};
use nexus_swarm_runtime::config::ClusterConfig;
use nexus_swarm_runtime::node::Node;
use nexus_swarm_runtime::routing::{RoutingError, RoutingKey};
use nexus_swarm_runtime::supervisor::{ChildSpec, StartFn};
use parking_lot::{Mutex, RwLock};
use ractor::message::{BoxedDowncastErr, SerializedMessage};
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef};
use serde::Serialize;
use tokio::sync::{broadcast, oneshot};

pub use self::delivery::{Delivery, DeliveryError, KeyedWork, PoolWorkHandler, WorkHandler};
pub use self::gate::ClusterLimitGate;
pub use self::limits::{BookStatus, LimitError, LimitStatus};
pub use self::transport::{ClusterError, Cookie};

/// The `pg` group every node's member joins.
pub const CLUSTER_GROUP: &str = "nexus.cluster";

/// `(sender, message id)` pairs a node remembers to handle retried keyed
/// work once.
pub const DEDUP_WINDOW: usize = 65_536;

/// Events a subscriber may fall behind by before it loses the oldest.
pub const EVENT_BUFFER: usize = 1024;

/// The `pg` group only node `name`'s member joins (to send to one node).
pub fn node_group(name: &str) -> String {
    format!("{CLUSTER_GROUP}.node.{name}")
}

/// What the member publishes (and `nexus node` prints as JSON lines).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClusterEvent {
    /// A peer joined the ring (first heartbeat, or back after being down).
    MemberUp {
        /// The peer.
        node: String,
        /// The ring's members now.
        members: Vec<String>,
    },
    /// A peer left the ring.
    MemberDown {
        /// The peer.
        node: String,
        /// `silent` (no heartbeat for the failure timeout) or `disconnected`.
        reason: &'static str,
        /// For `silent`: how long since its last heartbeat, in ms.
        #[serde(skip_serializing_if = "Option::is_none")]
        silent_ms: Option<u64>,
        /// The ring's members now.
        members: Vec<String>,
    },
    /// A frame from a peer did not decode; it was dropped and counted.
    DecodeError {
        /// Why.
        error: String,
        /// Decode errors so far.
        total: u64,
    },
    /// A session closed before it authenticated: a wrong cookie (ours or
    /// the peer's) or a broken handshake.
    SessionRefused {
        /// The peer's address.
        peer: String,
    },
    /// A session with a peer authenticated.
    SessionUp {
        /// The peer's node name.
        node: String,
        /// The peer's address.
        peer: String,
    },
}

/// The membership and ring, as published to readers.
#[derive(Debug)]
pub struct ClusterView {
    /// Bumped at each membership change.
    pub epoch: u64,
    /// The ring over this node and the peers judged up.
    pub ring: ClusterRing,
}

/// What a member and its handles share; survives a restart of the actor.
#[derive(Debug)]
pub struct ClusterShared {
    name: String,
    incarnation: u64,
    config: ClusterConfig,
    /// The detector and the heartbeat sequence: changed only by the actor
    /// (one writer); a mutex because the state outlives restarts in `Arc`.
    core: Mutex<Core>,
    /// Read by every handle on every lookup, replaced at membership
    /// changes: a lock-free snapshot.
    view: ArcSwap<ClusterView>,
    /// Counters read by handles; relaxed, they order nothing.
    decode_errors: AtomicU64,
    frames_received: AtomicU64,
    heartbeats_sent: AtomicU64,
    events: broadcast::Sender<ClusterEvent>,
    /// The running member, set when it (re)starts; read at session events.
    /// Not the name registry: ractor unregisters a name when any actor
    /// carrying it stops, and a peer's member, mirrored here as a remote
    /// actor, carries the same name.
    current: Mutex<Option<ActorRef<ClusterMsg>>>,
    /// Keyed work sent and awaiting its ack, by message id: inserted by
    /// senders, completed by the actor; a mutex held for one map operation.
    pending: Mutex<HashMap<u64, oneshot::Sender<String>>>,
    /// The next message id of keyed work sent from this node.
    next_id: AtomicU64,
    work_handled: AtomicU64,
    work_duplicates: AtomicU64,
    work_sent: AtomicU64,
    work_acknowledged: AtomicU64,
    work_resent: AtomicU64,
    work_refused: AtomicU64,
    work_failed: AtomicU64,
    /// What handles keyed work this node owns (none: recorded only).
    handler: Option<Arc<dyn WorkHandler>>,
    /// The cluster-wide limits: books this node owns, leases it holds.
    limits: limits::Limits,
    /// Handlers of this node's cluster pools, by pool name: read for each
    /// pool message, written when a pool is registered or dropped; a
    /// read-write lock, since reads dominate.
    pools: RwLock<HashMap<String, Arc<dyn PoolWorkHandler>>>,
}

#[derive(Debug)]
struct Core {
    detector: FailureDetector,
    dedup: Dedup,
    seq: u64,
    epoch: u64,
}

impl ClusterShared {
    /// Shared state for node `name` with `config` (validated by the caller
    /// through `NexusConfig::validate`) and the handler of keyed work.
    pub fn new(
        name: &str,
        config: ClusterConfig,
        handler: Option<Arc<dyn WorkHandler>>,
    ) -> Result<Arc<Self>, RoutingError> {
        let ring = ClusterRing::new([name], config.virtual_nodes)?;
        let incarnation = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Ok(Arc::new(Self {
            limits: limits::Limits::new(&config.limits),
            name: name.to_string(),
            incarnation,
            core: Mutex::new(Core {
                detector: FailureDetector::new(config.failure_timeout),
                dedup: Dedup::new(DEDUP_WINDOW),
                seq: 0,
                epoch: 0,
            }),
            config,
            view: ArcSwap::from_pointee(ClusterView { epoch: 0, ring }),
            decode_errors: AtomicU64::new(0),
            frames_received: AtomicU64::new(0),
            heartbeats_sent: AtomicU64::new(0),
            events: broadcast::channel(EVENT_BUFFER).0,
            current: Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
            // Ids start at this incarnation's millisecond, shifted: a
            // restarted node does not reuse its predecessor's ids.
            next_id: AtomicU64::new(incarnation << 20),
            work_handled: AtomicU64::new(0),
            work_duplicates: AtomicU64::new(0),
            work_sent: AtomicU64::new(0),
            work_acknowledged: AtomicU64::new(0),
            work_resent: AtomicU64::new(0),
            work_refused: AtomicU64::new(0),
            work_failed: AtomicU64::new(0),
            handler,
            pools: RwLock::new(HashMap::new()),
        }))
    }

    /// The running member, if any.
    fn member(&self) -> Option<ActorRef<ClusterMsg>> {
        self.current.lock().clone()
    }

    fn publish(&self, event: ClusterEvent) {
        // No subscriber is fine: the view and counters hold the state.
        let _ = self.events.send(event);
    }

    /// Rebuilds the ring after a membership change, and moves the
    /// cluster-wide limits whose owner changed.
    fn changed(self: &Arc<Self>, core: &mut Core, change: MemberChange) {
        core.epoch += 1;
        let mut members: Vec<String> = core.detector.up().map(str::to_string).collect();
        members.push(self.name.clone());
        // Names were accepted into the ring before (one per node); a ring
        // that cannot be built keeps the previous one.
        match ClusterRing::new(members, self.config.virtual_nodes) {
            Ok(ring) => self.view.store(Arc::new(ClusterView {
                epoch: core.epoch,
                ring,
            })),
            Err(e) => tracing::error!(error = %e, "cluster ring not rebuilt"),
        }
        limits::ring_changed(self);
        let members = self.view.load().ring.members().to_vec();
        let event = match change {
            MemberChange::Up { node } => {
                tracing::info!(peer = %node, ?members, "cluster member up");
                ClusterEvent::MemberUp { node, members }
            }
            MemberChange::Down { node, reason } => {
                let (reason, silent_ms) = match reason {
                    DownReason::Silent { for_ms } => ("silent", Some(for_ms)),
                    DownReason::Disconnected => ("disconnected", None),
                };
                tracing::warn!(peer = %node, reason, silent_ms, ?members, "cluster member down");
                ClusterEvent::MemberDown {
                    node,
                    reason,
                    silent_ms,
                    members,
                }
            }
        };
        self.publish(event);
    }
}

/// The member actor. Configuration is in [`ClusterShared`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ClusterMember;

/// Arguments (and state) of [`ClusterMember`].
#[derive(Debug, Clone)]
pub struct ClusterMemberArgs {
    shared: Arc<ClusterShared>,
}

/// What the member handles.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClusterMsg {
    /// An envelope from a peer, undecoded.
    Frame(Vec<u8>),
    /// Time to send heartbeats and judge the peers.
    Tick,
    /// The session with the node of this name closed.
    SessionClosed(String),
    /// The handler of keyed work `id` from node `from` is done.
    Handled {
        /// The sender.
        from: String,
        /// The message id.
        id: u64,
        /// Its outcome.
        outcome: Result<(), String>,
    },
    /// Panic in the handler, as a bug would (supervision tests).
    #[cfg(any(test, feature = "fault-injection"))]
    #[doc(hidden)]
    InjectPanic,
}

/// Only [`ClusterMsg::Frame`] crosses nodes, as its bytes; anything a
/// peer sends becomes a `Frame` (decoded, or refused, by the member), and
/// a remote call, which the member does not answer, is dropped by ractor.
impl ractor::Message for ClusterMsg {
    fn serializable() -> bool {
        true
    }

    fn serialize(self) -> Result<SerializedMessage, BoxedDowncastErr> {
        match self {
            ClusterMsg::Frame(args) => Ok(SerializedMessage::Cast {
                variant: "frame".into(),
                args,
                metadata: None,
            }),
            _ => Err(BoxedDowncastErr),
        }
    }

    fn deserialize(bytes: SerializedMessage) -> Result<Self, BoxedDowncastErr> {
        match bytes {
            SerializedMessage::Cast { args, .. } => Ok(ClusterMsg::Frame(args)),
            _ => Err(BoxedDowncastErr),
        }
    }
}

impl Actor for ClusterMember {
    type Msg = ClusterMsg;
    type State = ClusterMemberArgs;
    type Arguments = ClusterMemberArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ClusterMsg>,
        args: ClusterMemberArgs,
    ) -> Result<ClusterMemberArgs, ActorProcessingErr> {
        ractor::pg::join(CLUSTER_GROUP.to_string(), vec![myself.get_cell()]);
        ractor::pg::join(node_group(&args.shared.name), vec![myself.get_cell()]);
        *args.shared.current.lock() = Some(myself);
        Ok(args)
    }

    async fn post_start(
        &self,
        myself: ActorRef<ClusterMsg>,
        args: &mut ClusterMemberArgs,
    ) -> Result<(), ActorProcessingErr> {
        // Detached: the timer task ends by itself once the actor stops.
        drop(myself.send_interval(args.shared.config.heartbeat_interval, || ClusterMsg::Tick));
        // Alone on its ring at first, the node owns every limit until its
        // peers show up (idempotent after a restart).
        limits::ring_changed(&args.shared);
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<ClusterMsg>,
        msg: ClusterMsg,
        args: &mut ClusterMemberArgs,
    ) -> Result<(), ActorProcessingErr> {
        let shared = &args.shared;
        match msg {
            ClusterMsg::Frame(bytes) => {
                shared.frames_received.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = on_frame(shared, &bytes) {
                    let total = shared.decode_errors.fetch_add(1, Ordering::Relaxed) + 1;
                    tracing::warn!(error = %e, len = bytes.len(), total, "cluster frame refused");
                    shared.publish(ClusterEvent::DecodeError {
                        error: e.to_string(),
                        total,
                    });
                }
            }
            ClusterMsg::Tick => {
                let seq = {
                    let mut core = shared.core.lock();
                    core.seq += 1;
                    core.seq - 1
                };
                send_heartbeats(shared, seq);
                let mut core = shared.core.lock();
                for change in core.detector.tick(Instant::now()) {
                    shared.changed(&mut core, change);
                }
                drop(core);
                limits::tick(shared);
            }
            ClusterMsg::Handled { from, id, outcome } => delivery::handled(shared, &from, id, outcome),
            ClusterMsg::SessionClosed(node) => {
                let mut core = shared.core.lock();
                if let Some(change) = core.detector.disconnected(&node) {
                    shared.changed(&mut core, change);
                }
            }
            #[cfg(any(test, feature = "fault-injection"))]
            ClusterMsg::InjectPanic => panic!("fault injected into the cluster member"),
        }
        Ok(())
    }
}

/// Decodes a peer's frame and acts on it.
fn on_frame(shared: &Arc<ClusterShared>, bytes: &[u8]) -> Result<(), EnvelopeError> {
    let frame = envelope::decode(bytes)?;
    match frame.kind {
        FrameKind::Heartbeat => {
            let hb: Heartbeat = frame.decode(FrameKind::Heartbeat)?;
            if hb.node != shared.name {
                let mut core = shared.core.lock();
                if let Some(change) = core.detector.heartbeat(&hb.node, hb.incarnation, Instant::now()) {
                    shared.changed(&mut core, change);
                }
            }
        }
        FrameKind::Work => {
            let work: Work = frame.decode(FrameKind::Work)?;
            delivery::on_work(shared, frame.id, work);
        }
        FrameKind::Ack => {
            let ack: Ack = frame.decode(FrameKind::Ack)?;
            delivery::on_ack(shared, frame.id, ack.node);
        }
        FrameKind::LeaseRequest => limits::on_request(shared, frame.id, frame.decode(FrameKind::LeaseRequest)?),
        FrameKind::LeaseReply => {
            let reply: LeaseReply = frame.decode(FrameKind::LeaseReply)?;
            limits::on_reply(shared, frame.id, reply.outcome);
        }
        FrameKind::LeaseRelease => limits::on_release(shared, frame.decode(FrameKind::LeaseRelease)?),
        FrameKind::Figure => limits::on_figure(shared, frame.id, frame.decode(FrameKind::Figure)?),
        FrameKind::FigureAck => {
            let _: FigureAck = frame.decode(FrameKind::FigureAck)?;
            limits::on_figure_answer(shared, frame.id, None);
        }
        FrameKind::FigureQuery => limits::on_query(shared, frame.id, frame.decode(FrameKind::FigureQuery)?),
        FrameKind::FigureReply => {
            let reply: FigureReply = frame.decode(FrameKind::FigureReply)?;
            limits::on_figure_answer(shared, frame.id, reply.figure);
        }
        other => return Err(EnvelopeError::UnknownKind(other as u8)),
    }
    Ok(())
}

/// Casts our heartbeat to every remote member of [`CLUSTER_GROUP`].
fn send_heartbeats(shared: &ClusterShared, seq: u64) {
    let hb = Heartbeat {
        node: shared.name.clone(),
        incarnation: shared.incarnation,
        seq,
    };
    let bytes = match envelope::encode(FrameKind::Heartbeat, seq, &hb, shared.config.compress_above) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "heartbeat not encoded");
            return;
        }
    };
    for cell in ractor::pg::get_members(&CLUSTER_GROUP.to_string()) {
        if cell.get_id().is_local() {
            continue;
        }
        let peer: ActorRef<ClusterMsg> = cell.into();
        // A peer whose session just closed: the detector will judge it.
        if peer.cast(ClusterMsg::Frame(bytes.clone())).is_ok() {
            shared.heartbeats_sent.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl ClusterMember {
    /// Starts this node's member under `node`'s supervisor (registered as
    /// `name`), its `NodeServer` listening on `settings.listen`, and a
    /// dialer for each `settings.join` peer.
    pub async fn start(node: &Node, name: &str, settings: ClusterSettings) -> Result<ClusterHandle, ClusterError> {
        Ok(Self::start_subscribed(node, name, settings).await?.0)
    }

    /// [`start`](Self::start), with a receiver of every event from the
    /// very first (subscribed before anything is started, so none is missed).
    pub async fn start_subscribed(
        node: &Node,
        name: &str,
        settings: ClusterSettings,
    ) -> Result<(ClusterHandle, broadcast::Receiver<ClusterEvent>), ClusterError> {
        let shared = ClusterShared::new(&settings.name, settings.config.clone(), settings.handler.clone())?;
        let events = shared.events.subscribe();
        let args = ClusterMemberArgs {
            shared: Arc::clone(&shared),
        };
        node.start_child(Self::child_spec(name, args)).await?;
        let transport = transport::Transport::start(node, &settings, name, Arc::clone(&shared)).await?;
        let handle = ClusterHandle {
            shared,
            transport: Arc::new(transport),
        };
        Ok((handle, events))
    }

    /// A supervisor child spec for a member supervised as `name`. The
    /// actor is not in ractor's name registry (see [`ClusterShared`]): the
    /// handle and the transport reach it through the shared state.
    pub fn child_spec(name: &str, args: ClusterMemberArgs) -> ChildSpec {
        let start: StartFn = Arc::new(move |sup: ActorCell, _restarts: u32| {
            let args = args.clone();
            Box::pin(async move {
                let (r, _) = Actor::spawn_linked(None, ClusterMember, args, sup).await?;
                Ok(r.get_cell())
            })
        });
        ChildSpec::new(name, start)
    }
}

/// How a node joins the cluster.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// This node's name (distinct in the cluster).
    pub name: String,
    /// Where its `NodeServer` listens (port 0: a free port).
    pub listen: SocketAddr,
    /// The shared secret peers authenticate with.
    pub cookie: Cookie,
    /// Peers to connect to, and to redial when their session is lost.
    pub join: Vec<SocketAddr>,
    /// Timings and ring settings.
    pub config: ClusterConfig,
    /// What handles the keyed work this node owns; `None` records it only.
    pub handler: Option<Arc<dyn WorkHandler>>,
}

/// A client of this node's member. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ClusterHandle {
    shared: Arc<ClusterShared>,
    transport: Arc<transport::Transport>,
}

impl ClusterHandle {
    /// This node's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Where the `NodeServer` listens.
    pub fn listen_addr(&self) -> SocketAddr {
        self.transport.listen_addr()
    }

    /// The current membership and ring (a snapshot).
    pub fn view(&self) -> Arc<ClusterView> {
        self.shared.view.load_full()
    }

    /// The node owning `key` now.
    pub fn owner(&self, key: RoutingKey) -> Option<String> {
        self.shared.view.load().ring.owner(key).map(str::to_string)
    }

    /// Owners of a batch of keys, with bounded loads if
    /// `cluster.load_bound_percent` is set.
    pub fn owners(&self, keys: &[RoutingKey]) -> Vec<Option<String>> {
        let view = self.shared.view.load();
        view.ring
            .assign(keys, self.load_bound())
            .into_iter()
            .map(|o| o.map(str::to_string))
            .collect()
    }

    /// Frames from peers that did not decode.
    pub fn decode_errors(&self) -> u64 {
        self.shared.decode_errors.load(Ordering::Relaxed)
    }

    /// Frames received from peers (decoded or not).
    pub fn frames_received(&self) -> u64 {
        self.shared.frames_received.load(Ordering::Relaxed)
    }

    /// Heartbeats cast to peers.
    pub fn heartbeats_sent(&self) -> u64 {
        self.shared.heartbeats_sent.load(Ordering::Relaxed)
    }

    /// The heartbeat interval and failure timeout in force.
    pub fn timings(&self) -> (Duration, Duration) {
        (
            self.shared.config.heartbeat_interval,
            self.shared.config.failure_timeout,
        )
    }

    /// Events from now on (also the transport's session events).
    pub fn subscribe(&self) -> broadcast::Receiver<ClusterEvent> {
        self.shared.events.subscribe()
    }

    /// Makes the member's handler panic, as a bug would; `false` if it is
    /// not running. Only with the `fault-injection` feature.
    #[cfg(any(test, feature = "fault-injection"))]
    #[doc(hidden)]
    pub fn inject_panic(&self) -> bool {
        self.shared
            .member()
            .is_some_and(|a| a.cast(ClusterMsg::InjectPanic).is_ok())
    }

    /// Stops redialing peers.
    pub fn stop(&self) {
        self.transport.stop();
    }
}

#[cfg(test)]
mod tests;
