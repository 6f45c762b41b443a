//! Disk spill for a pool's low lane: when every worker's low lane is full,
//! low-priority messages go to a durable FIFO on disk instead of making
//! their senders wait (the seeds' `spillover: disk-backed`).
//!
//! Opt-in per pool, for message types that serde can encode
//! ([`Node::spawn_spilling_pool`](crate::node::Node::spawn_spilling_pool)
//! with a [`SpillConfig`]); messages are encoded with bincode.
//!
//! # Order
//!
//! The pool's intake of low messages stays FIFO across lanes and disk:
//! * a low message is admitted to a worker's lane only while nothing is
//!   spilled and not yet taken; once one message is spilled, every later
//!   low message is spilled too until the workers have taken all of them;
//! * a worker takes from the spill only when its own low lane is empty
//!   (what it holds there is older than anything spilled), in the lane's
//!   turn of the drain policy (high before normal before low, with aging).
//!
//! With one worker, low messages are handled in the order they were sent;
//! with several, each takes the next message in that order and they run
//! concurrently, as for any pool.
//!
//! # What "delivered once" means
//!
//! A spilled message stays on disk until its handling is acknowledged:
//! when its handler returns (`Ok` or `Err`), or panics. A restarted
//! process (its pool spawned over the same directory) delivers first
//! what is still on disk, in order. So a message is delivered again only
//! if the process died while its handler ran, or in the instant between
//! the handler's return and the acknowledgement's write: handling is
//! exactly once per acknowledged handling, at least once overall. Records
//! are written with `write(2)`, which survives a killed process; with
//! [`SpillConfig::sync`] they also survive a crash of the machine.
//!
//! # Bounds and failures
//!
//! [`SpillConfig::max_bytes`] bounds the segment files. Past it the spill
//! is full and the low lane behaves as without a spill: `try_send` fails
//! with `Full`, `send` waits (until acknowledged messages free a segment)
//! up to the lane's timeout. A message that cannot be encoded or written
//! is refused with [`SendError::Spill`],
//! which gives it back.
//!
//! A damaged record is never delivered: opening the store verifies every
//! record still to be delivered and fails the spawn with
//! [`SpillError::Corrupt`] naming the file and offset; a record damaged
//! later is reported when read (logged, counted in [`SpillStats::damaged`])
//! and the pool takes nothing more from its spill until it is restarted
//! (when the spawn reports it). A record that is whole but does not decode
//! as the pool's message type (the type changed) is logged, counted and
//! acknowledged, so the records after it are still delivered.
//!
//! When the pool stops (shutdown, retire, giving up), its workers handle
//! what their lanes admitted and leave the spill on disk for the next
//! start.

mod store;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

pub use store::{MAX_RECORD, RECORD_HEADER, SpillStore};

use crate::config::ConfigError;
use crate::error::SendError;

/// Smallest [`SpillConfig::max_bytes`]: 64 KiB.
pub const MIN_SPILL_BYTES: u64 = 64 << 10;

/// Largest [`SpillConfig::max_bytes`]: 1 TiB.
pub const MAX_SPILL_BYTES: u64 = 1 << 40;

/// Where and how much a pool spills.
///
/// ```
/// use nexus_swarm_runtime::spill::SpillConfig;
///
/// let spill = SpillConfig::new("./nexus-data/spill/reports").max_bytes(256 << 20).sync(true);
/// assert!(spill.validate().is_ok());
/// assert_eq!(SpillConfig::new("x").max_bytes(1).validate().unwrap_err().field(), "spill.max_bytes");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpillConfig {
    /// The directory of the pool's spill (created if missing; one pool at
    /// a time). No default: each spilling pool names its own.
    pub dir: PathBuf,
    /// Bytes of segment files at most, between 64 KiB and 1 TiB. Default:
    /// 1 GiB.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Whether each spilled record and acknowledgement waits for the disk
    /// (`fsync`), surviving a machine crash and not only a killed process.
    /// Default: false.
    #[serde(default)]
    pub sync: bool,
}

fn default_max_bytes() -> u64 {
    1 << 30
}

impl SpillConfig {
    /// A spill in `dir` with the defaults.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            max_bytes: default_max_bytes(),
            sync: false,
        }
    }

    /// Builder-style: [`Self::max_bytes`].
    pub fn max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Builder-style: [`Self::sync`].
    pub fn sync(mut self, sync: bool) -> Self {
        self.sync = sync;
        self
    }

    /// Checks the fields; errors name `spill.<field>`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid("spill.dir", "\"\"", "must name a directory"));
        }
        crate::config::in_range("spill.max_bytes", self.max_bytes, MIN_SPILL_BYTES, MAX_SPILL_BYTES)
    }
}

/// A spill that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpillError {
    /// Reading or writing a file failed.
    #[error("spill file {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A record (or the acknowledgement file) failed its checks; it is not
    /// delivered.
    #[error("spill file {path} is damaged at offset {offset}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Where the damaged record starts.
        offset: u64,
        /// Which check failed.
        reason: String,
    },
    /// Another store has the directory open.
    #[error("spill directory {dir} is in use by another pool or process")]
    Locked {
        /// The directory.
        dir: PathBuf,
    },
    /// The spill's files reached their bound.
    #[error("spill is full ({max_bytes} bytes)")]
    Full {
        /// The bound.
        max_bytes: u64,
    },
    /// One encoded message is larger than a record may be.
    #[error("encoded message of {bytes} bytes is above the record maximum of {max}")]
    TooLarge {
        /// The encoded size.
        bytes: u64,
        /// [`MAX_RECORD`].
        max: u64,
    },
    /// The message could not be encoded.
    #[error("message could not be encoded: {0}")]
    Encode(#[source] bincode::error::EncodeError),
    /// A whole record did not decode as the pool's message type.
    #[error("spilled record {seq} does not decode as the pool's message type: {source}")]
    Decode {
        /// The record's sequence.
        seq: u64,
        /// The cause.
        #[source]
        source: bincode::error::DecodeError,
    },
}

/// A spilling pool's counters (in [`PoolStats`](crate::pool::PoolStats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpillStats {
    /// Messages spilled to disk since the pool was spawned.
    pub spilled: u64,
    /// Spilled messages (from this process or an earlier one) whose
    /// handling was acknowledged since the pool was spawned.
    pub unspilled: u64,
    /// Messages on disk not yet acknowledged: what a restart would deliver.
    pub on_disk: u64,
    /// Bytes of segment files.
    pub disk_bytes: u64,
    /// Records found damaged or undecodable when read (each also logged).
    pub damaged: u64,
}

type Encode<M> = fn(&M) -> Result<Vec<u8>, SpillError>;
type Decode<M> = fn(u64, &[u8]) -> Result<M, SpillError>;

fn encode<M: Serialize>(msg: &M) -> Result<Vec<u8>, SpillError> {
    bincode::serde::encode_to_vec(msg, bincode::config::standard()).map_err(SpillError::Encode)
}

fn decode<M: serde::de::DeserializeOwned>(seq: u64, bytes: &[u8]) -> Result<M, SpillError> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map(|(m, _)| m)
        .map_err(|source| SpillError::Decode { seq, source })
}

/// A pool's spill: the store, how to encode its messages, and who waits
/// for room. Shared by the pool's handles and its workers' mailboxes.
pub(crate) struct SpillQueue<M> {
    /// A mutex, not a lock-free queue: the store is files, and a sender
    /// must decide "lane or spill" and act on it atomically with respect
    /// to other senders and the workers taking from it (see the module
    /// docs on order). Only low-priority sends of spilling pools take it.
    store: Mutex<SpillStore>,
    encode: Encode<M>,
    decode: Decode<M>,
    /// Records appended and not yet taken, mirrored from the store so that
    /// a worker checks for spilled work with one atomic load (every pop of
    /// a spilling pool's workers does) rather than the mutex.
    untaken: AtomicU64,
    spilled: AtomicU64,
    unspilled: AtomicU64,
    damaged: AtomicU64,
    /// Senders waiting for room on disk, and their wake-up (as a lane's).
    waiters: AtomicUsize,
    room: Notify,
}

impl<M> std::fmt::Debug for SpillQueue<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpillQueue").field("stats", &self.stats()).finish()
    }
}

impl<M> SpillQueue<M> {
    /// Whether spilled messages wait to be taken (one atomic load).
    #[inline]
    pub(crate) fn has_untaken(&self) -> bool {
        self.untaken.load(Ordering::SeqCst) > 0
    }

    /// Acknowledges record `seq`: handled (counted as unspilled) or
    /// dropped as undecodable.
    fn ack(&self, seq: u64, handled: bool) {
        let freed = self.store.lock().ack(seq);
        match freed {
            Ok(freed) => {
                if handled {
                    self.unspilled.fetch_add(1, Ordering::Relaxed);
                }
                if freed && self.waiters.load(Ordering::SeqCst) > 0 {
                    self.room.notify_waiters();
                }
            }
            // The record stays on disk and is delivered again after a
            // restart (at least once): nothing else to do but say so.
            Err(e) => tracing::error!(seq, error = %e, "spilled message handled but not acknowledged"),
        }
    }

    /// Registers a sender waiting for room on disk, before it re-checks:
    /// the returned future completes when acknowledgements free a segment.
    /// The sender counts as waiting while the guard lives.
    pub(crate) fn park(
        &self,
    ) -> (
        std::pin::Pin<Box<tokio::sync::futures::Notified<'_>>>,
        WaitingForRoom<'_>,
    ) {
        let mut notified = Box::pin(self.room.notified());
        notified.as_mut().enable();
        self.waiters.fetch_add(1, Ordering::SeqCst);
        (notified, WaitingForRoom(&self.waiters))
    }

    /// The counters.
    pub(crate) fn stats(&self) -> SpillStats {
        let store = self.store.lock();
        SpillStats {
            spilled: self.spilled.load(Ordering::Relaxed),
            unspilled: self.unspilled.load(Ordering::Relaxed),
            on_disk: store.unacked(),
            disk_bytes: store.disk_bytes(),
            damaged: self.damaged.load(Ordering::Relaxed),
        }
    }
}

impl<M: Send + 'static> SpillQueue<M> {
    /// Opens the spill in `cfg.dir` for a pool of `M`s.
    pub(crate) fn open(cfg: &SpillConfig) -> Result<Self, SpillError>
    where
        M: Serialize + serde::de::DeserializeOwned,
    {
        let store = SpillStore::open(&cfg.dir, cfg.max_bytes, cfg.sync)?;
        Ok(Self {
            untaken: AtomicU64::new(store.untaken()),
            store: Mutex::new(store),
            encode: encode::<M>,
            decode: decode::<M>,
            spilled: AtomicU64::new(0),
            unspilled: AtomicU64::new(0),
            damaged: AtomicU64::new(0),
            waiters: AtomicUsize::new(0),
            room: Notify::new(),
        })
    }

    /// Admits `msg` in FIFO order: to a lane through `admit` while
    /// nothing spilled waits to be taken, else (or when `admit` finds every
    /// lane full) to the spill. `Ok(true)` when spilled: the caller then
    /// rings the workers. A full spill is [`SendError::Full`]; a failed
    /// encoding or write is [`SendError::Spill`]; other errors of `admit`
    /// are returned as they are.
    pub(crate) fn admit_or_spill(
        &self,
        msg: M,
        admit: impl FnOnce(M) -> Result<(), SendError<M>>,
    ) -> Result<bool, SendError<M>> {
        let mut store = self.store.lock();
        let msg = if store.untaken() == 0 {
            match admit(msg) {
                Ok(()) => return Ok(false),
                Err(SendError::Full(m)) => m,
                Err(e) => return Err(e),
            }
        } else {
            msg
        };
        let bytes = match (self.encode)(&msg) {
            Ok(b) => b,
            Err(e) => return Err(SendError::Spill(msg, e)),
        };
        match store.append(&bytes) {
            Ok(_) => {
                self.untaken.store(store.untaken(), Ordering::SeqCst);
                self.spilled.fetch_add(1, Ordering::Relaxed);
                Ok(true)
            }
            Err(SpillError::Full { .. }) => Err(SendError::Full(msg)),
            Err(e) => Err(SendError::Spill(msg, e)),
        }
    }

    /// Takes the oldest spilled message, with the ticket that acknowledges
    /// it when dropped. Damaged records are reported here (see the module
    /// docs).
    pub(crate) fn take(self: &Arc<Self>) -> Option<(M, SpillTicket<M>)> {
        loop {
            let taken = {
                let mut store = self.store.lock();
                let taken = store.take();
                self.untaken.store(store.untaken(), Ordering::SeqCst);
                taken
            };
            match taken {
                Ok(None) => return None,
                Ok(Some((seq, bytes))) => match (self.decode)(seq, &bytes) {
                    Ok(msg) => {
                        return Some((
                            msg,
                            SpillTicket {
                                queue: Arc::clone(self),
                                seq,
                            },
                        ));
                    }
                    Err(e) => {
                        self.damaged.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(error = %e, "spilled message dropped");
                        self.ack(seq, false);
                    }
                },
                Err(e) => {
                    self.damaged.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, "spill damaged: nothing more is taken from it until a restart");
                    return None;
                }
            }
        }
    }
}

/// Counts a sender in [`SpillQueue::park`]'s waiters while it lives.
pub(crate) struct WaitingForRoom<'a>(&'a AtomicUsize);

impl Drop for WaitingForRoom<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Acknowledges a taken spilled message when dropped: after its handler
/// returned or panicked.
pub(crate) struct SpillTicket<M: Send + 'static> {
    queue: Arc<SpillQueue<M>>,
    seq: u64,
}

impl<M: Send + 'static> Drop for SpillTicket<M> {
    fn drop(&mut self) {
        self.queue.ack(self.seq, true);
    }
}

impl<M: Send + 'static> std::fmt::Debug for SpillTicket<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpillTicket").field("seq", &self.seq).finish()
    }
}
