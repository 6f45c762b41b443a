//! The cluster's decisions, as plain synchronous types: which node owns a
//! key, which peers are alive, how messages look on the wire, how long to
//! wait before reconnecting. The `nexus node` process (the facade's
//! `cli::node`) and the `ClusterMember` actor only move messages between
//! them and `ractor_cluster`.
//!
//! # Layout
//!
//! | module | type | what it decides |
//! |---|---|---|
//! | [`ring`] | [`ClusterRing`], [`LoadBound`] | the owner node of a routing key; batches with bounded loads |
//! | [`detector`] | [`FailureDetector`] | a peer up or down, from heartbeats and a timeout on an explicit clock |
//! | [`envelope`] | [`encode`](envelope::encode), [`decode`](envelope::decode) | the versioned, checksummed, optionally compressed frame; every failure a typed [`EnvelopeError`] |
//! | [`wire`] | [`Heartbeat`], [`Work`], [`Ack`], [`LeaseRequest`], [`Figure`], .. | the serde messages that cross nodes |
//! | [`dedup`] | [`Dedup`] | whether a (sender, message id) was handled already: at-least-once delivery, handled once |
//! | [`backoff`] | [`Backoff`] | exponential waits between reconnection attempts |
//! | [`lease`] | [`LeaseBook`], [`LeaseHolder`] | leases of units of one cluster-wide limit: what the owner grants, what a holder may spend |
//!
//! `ractor_cluster` (0.16) gives nodes, cookie authentication and remote
//! actors in `pg` groups; what it lacks is built here: it notices a crashed
//! peer (its TCP session closes) but never a hung one whose session stays
//! open, so membership follows our heartbeats and [`FailureDetector`]; it
//! does not reconnect, so a node redials its `--join` peers with
//! [`Backoff`]; and it panics on a payload its decoder refuses, so the
//! remote-facing actor receives opaque bytes and [`envelope::decode`]
//! turns any garbage into an error that is counted and logged.
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, Instant};
//! use nexus_swarm_runtime::cluster::{ClusterRing, FailureDetector, Heartbeat, MemberChange, envelope};
//! use nexus_swarm_runtime::routing::RoutingKey;
//!
//! // Every node builds the same ring from the same members.
//! let a = ClusterRing::new(["n1", "n2", "n3"], 128).unwrap();
//! let b = ClusterRing::new(["n3", "n1", "n2"], 128).unwrap();
//! let key = RoutingKey::new("conversation-42");
//! assert_eq!(a.owner(key), b.owner(key));
//!
//! // A heartbeat travels in an envelope...
//! let hb = Heartbeat { node: "n2".into(), incarnation: 7, seq: 0 };
//! let bytes = envelope::encode(envelope::FrameKind::Heartbeat, 1, &hb, 1024).unwrap();
//! let frame = envelope::decode(&bytes).unwrap();
//! assert_eq!(frame.decode::<Heartbeat>(envelope::FrameKind::Heartbeat).unwrap(), hb);
//! assert!(envelope::decode(b"garbage").is_err());
//!
//! // ...and keeps its sender up until it falls silent.
//! let mut detector = FailureDetector::new(Duration::from_secs(3));
//! let t0 = Instant::now();
//! assert!(matches!(detector.heartbeat("n2", 7, t0), Some(MemberChange::Up { .. })));
//! assert!(detector.tick(t0 + Duration::from_secs(3)).is_empty());
//! assert_eq!(detector.tick(t0 + Duration::from_millis(3001)).len(), 1);
//! ```

pub mod backoff;
pub mod dedup;
pub mod detector;
pub mod envelope;
pub mod lease;
pub mod ring;
pub mod wire;

#[cfg(test)]
mod tests;

pub use backoff::Backoff;
pub use dedup::{Dedup, Seen};
pub use detector::{DownReason, FailureDetector, MemberChange};
pub use envelope::{EnvelopeError, Frame, FrameKind};
pub use lease::{Grant, HolderPolicy, LeaseBook, LeaseError, LeaseHolder, LeaseId, LeasePolicy, NotLeased, Report};
pub use ring::{ClusterRing, LoadBound};
pub use wire::{
    Ack, Figure, FigureAck, FigureQuery, FigureReply, Heartbeat, LeaseOutcome, LeaseRelease, LeaseReply, LeaseRequest,
    LimitFigure, Work,
};
