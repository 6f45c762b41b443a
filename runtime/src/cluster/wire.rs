//! The messages nodes send each other, each carried in an
//! [`envelope`](super::envelope) of its [`FrameKind`](super::envelope::FrameKind).

use serde::{Deserialize, Serialize};

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
    /// The message, opaque to the cluster.
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
