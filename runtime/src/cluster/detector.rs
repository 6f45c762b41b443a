//! [`FailureDetector`]: heartbeats with a timeout, on an explicit clock.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A change of a peer's membership, as the detector judges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberChange {
    /// A peer was heard from for the first time, or again after it was
    /// judged down.
    Up {
        /// The peer's node name.
        node: String,
    },
    /// A peer was judged down.
    Down {
        /// The peer's node name.
        node: String,
        /// Why.
        reason: DownReason,
    },
}

/// Why a peer was judged down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownReason {
    /// No heartbeat for longer than the timeout (a crashed, hung or cut-off
    /// node, even one whose TCP session stays open).
    Silent {
        /// How long it had been silent when judged.
        for_ms: u64,
    },
    /// Its session closed (a crashed node: noticed within milliseconds).
    Disconnected,
}

#[derive(Debug, Clone)]
struct Peer {
    last_heard: Instant,
    incarnation: u64,
    up: bool,
}

/// Judges peers up or down from their heartbeats.
///
/// A peer is up from its first heartbeat and down once `timeout` passes
/// without one ([`tick`](Self::tick)) or its session closes
/// ([`disconnected`](Self::disconnected)); its next heartbeat brings it
/// back up. Time is passed in, so tests drive it without sleeping.
///
/// A peer silent for `timeout` is judged down at the first tick after
/// that: with ticks every heartbeat interval, ejection comes within
/// `timeout + interval` of the last heartbeat.
#[derive(Debug, Clone)]
pub struct FailureDetector {
    timeout: Duration,
    peers: BTreeMap<String, Peer>,
}

impl FailureDetector {
    /// A detector that judges a peer down after `timeout` of silence.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            peers: BTreeMap::new(),
        }
    }

    /// The silence after which a peer is judged down.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A heartbeat from `node` (of its process `incarnation`) arrived at
    /// `now`. `Up` if the peer is new or was down.
    pub fn heartbeat(&mut self, node: &str, incarnation: u64, now: Instant) -> Option<MemberChange> {
        match self.peers.get_mut(node) {
            Some(peer) => {
                // Heartbeats may be handled out of clock order; keep the latest.
                peer.last_heard = peer.last_heard.max(now);
                peer.incarnation = incarnation;
                if peer.up {
                    None
                } else {
                    peer.up = true;
                    Some(MemberChange::Up { node: node.to_string() })
                }
            }
            None => {
                self.peers.insert(
                    node.to_string(),
                    Peer {
                        last_heard: now,
                        incarnation,
                        up: true,
                    },
                );
                Some(MemberChange::Up { node: node.to_string() })
            }
        }
    }

    /// `node`'s session closed: `Down` now if it was up.
    pub fn disconnected(&mut self, node: &str) -> Option<MemberChange> {
        let peer = self.peers.get_mut(node)?;
        if !peer.up {
            return None;
        }
        peer.up = false;
        Some(MemberChange::Down {
            node: node.to_string(),
            reason: DownReason::Disconnected,
        })
    }

    /// Judges every peer at `now`: `Down` for each up peer silent for
    /// longer than the timeout.
    pub fn tick(&mut self, now: Instant) -> Vec<MemberChange> {
        let mut changes = Vec::new();
        for (node, peer) in &mut self.peers {
            let silent = now.saturating_duration_since(peer.last_heard);
            if peer.up && silent > self.timeout {
                peer.up = false;
                changes.push(MemberChange::Down {
                    node: node.clone(),
                    reason: DownReason::Silent {
                        for_ms: u64::try_from(silent.as_millis()).unwrap_or(u64::MAX),
                    },
                });
            }
        }
        changes
    }

    /// The peers judged up, by name.
    pub fn up(&self) -> impl Iterator<Item = &str> {
        self.peers.iter().filter(|(_, p)| p.up).map(|(n, _)| n.as_str())
    }

    /// Whether `node` is judged up.
    pub fn is_up(&self, node: &str) -> bool {
        self.peers.get(node).is_some_and(|p| p.up)
    }

    /// The process incarnation `node` last announced.
    pub fn incarnation(&self, node: &str) -> Option<u64> {
        self.peers.get(node).map(|p| p.incarnation)
    }
}
