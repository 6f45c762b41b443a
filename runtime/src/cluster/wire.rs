//! The messages nodes send each other, each carried in an
//! [`envelope`](super::envelope) of its [`FrameKind`](super::envelope::FrameKind).

use serde::{Deserialize, Serialize};

use super::lease::LeaseId;

/// "I am alive": sent by every node to every peer each heartbeat interval
/// (frame kind [`Heartbeat`](super::envelope::FrameKind::Heartbeat)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The sender's node name.
    pub node: String,
    /// The sender's process incarnation (its start time in milliseconds
    /// since the Unix epoch): a restarted node announces a new one.
    pub incarnation: u64,
    /// Heartbeats sent by this incarnation before this one.
    pub seq: u64,
}

/// Keyed work for the node that owns `key` (frame kind
/// [`Work`](super::envelope::FrameKind::Work); the frame's id is the
/// message id, unique per sender).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Work {
    /// The sender's node name (where the ack goes).
    pub from: String,
    /// The routing key.
    pub key: String,
    /// The message, opaque to the cluster (encoded as one byte string,
    /// not byte by byte).
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// The cluster pool it is for (handled by that pool's handler on the
    /// owner), or `None` for the node's own work handler.
    pub pool: Option<String>,
}

/// The work with the frame's id was handled by `node` (frame kind
/// [`Ack`](super::envelope::FrameKind::Ack)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The node that handled it.
    pub node: String,
}

/// A holder's request for units of a cluster-wide limit, sent to the
/// limit's owner (frame kind
/// [`LeaseRequest`](super::envelope::FrameKind::LeaseRequest)); also its
/// lease's renewal and its report of what it spent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRequest {
    /// The limit's name.
    pub limit: String,
    /// The holder's node name (where the reply goes).
    pub holder: String,
    /// The lease it holds, if any.
    pub held: Option<LeaseId>,
    /// Units it spent from that lease since its last report.
    pub used: u64,
    /// Units it asks to hold.
    pub want: u64,
}

/// The owner's answer to a [`LeaseRequest`] (frame kind
/// [`LeaseReply`](super::envelope::FrameKind::LeaseReply), the request's id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseReply {
    /// The limit's name.
    pub limit: String,
    /// What the owner decided.
    pub outcome: LeaseOutcome,
}

/// What an owner answers a lease request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseOutcome {
    /// A lease of `units`, living `ttl_ms` from when the request was sent.
    Granted {
        /// The id to present with the next request.
        id: LeaseId,
        /// Units the holder may spend.
        units: u64,
        /// The lease's life, in ms.
        ttl_ms: u64,
    },
    /// Nothing left to lease: the limit is reached (the report committed).
    Exhausted {
        /// The limit.
        limit: u64,
        /// Units committed.
        committed: u64,
        /// Units leased to others.
        outstanding: u64,
    },
    /// The node asked does not own the limit (any more); `owner` is the
    /// one it hands it to, if it knows.
    NotOwner {
        /// The owner, as the node asked sees it.
        owner: Option<String>,
    },
    /// The owner is still collecting its predecessors' figures, or could
    /// not replicate the grant: ask again shortly.
    NotReady,
    /// The owner sees fewer members than `cluster.quorum`: it grants nothing.
    NoQuorum,
    /// No limit of that name is configured on the owner.
    UnknownLimit,
}

/// A lease given back (frame kind
/// [`LeaseRelease`](super::envelope::FrameKind::LeaseRelease)); not answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRelease {
    /// The limit's name.
    pub limit: String,
    /// The holder's node name.
    pub holder: String,
    /// The lease returned.
    pub held: LeaseId,
    /// Units spent from it since the last report.
    pub used: u64,
}

/// What an owner's book has reserved (committed plus leased out): sent to
/// every peer before a grant is answered (frame kind
/// [`Figure`](super::envelope::FrameKind::Figure)), and answered to a new
/// owner's [`FigureQuery`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitFigure {
    /// The epoch of the book.
    pub epoch: u64,
    /// The window the book counts (0 for a limit without windows).
    pub window: u64,
    /// Units committed in that window plus leased out.
    pub reserved: u64,
}

/// A replicated [`LimitFigure`] of one limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Figure {
    /// The limit's name.
    pub limit: String,
    /// The owner that sent it.
    pub owner: String,
    /// Its book's figure.
    pub figure: LimitFigure,
}

/// The figure with the frame's id is held by `node` (frame kind
/// [`FigureAck`](super::envelope::FrameKind::FigureAck)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FigureAck {
    /// The node that holds it.
    pub node: String,
}

/// A new owner asks a peer for the highest figure it knows of a limit
/// (frame kind [`FigureQuery`](super::envelope::FrameKind::FigureQuery));
/// the peer stops granting it, if it did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FigureQuery {
    /// The limit's name.
    pub limit: String,
    /// The new owner (where the reply goes).
    pub owner: String,
}

/// A peer's answer to a [`FigureQuery`] (frame kind
/// [`FigureReply`](super::envelope::FrameKind::FigureReply)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FigureReply {
    /// The limit's name.
    pub limit: String,
    /// The peer.
    pub node: String,
    /// The highest figure it knows (its own book's, or one replicated to
    /// it), if any.
    pub figure: Option<LimitFigure>,
}
