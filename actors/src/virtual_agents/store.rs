//! Where passivated activations keep their snapshots: the
//! [`SnapshotStore`] trait, its errors, and [`MemoryStore`] (the
//! durable one is [`RedbStore`](super::RedbStore)).

use std::collections::HashMap;

use parking_lot::Mutex;

/// Why a snapshot could not be loaded, saved or removed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The stored bytes for `key` fail their checksum or framing: they
    /// are reported, never handed to the agent.
    #[error("snapshot of {key:?} is damaged: {reason}")]
    Corrupt {
        /// The agent's key.
        key: String,
        /// What is wrong with it.
        reason: CorruptReason,
    },
    /// The database could not be opened or read or written.
    #[error("snapshot store: {0}")]
    Redb(#[from] redb::Error),
    /// The store panicked (a bug in it); the call did nothing known.
    #[error("snapshot store panicked: {0}")]
    Panicked(String),
}

/// What is wrong with a damaged snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CorruptReason {
    /// Shorter than its header.
    #[error("{len} bytes, shorter than the {header}-byte header")]
    Truncated {
        /// Bytes stored.
        len: usize,
        /// Bytes of the header.
        header: usize,
    },
    /// A format version this build does not know.
    #[error("unknown format version {0}")]
    Version(u8),
    /// The checksum does not match the bytes.
    #[error("checksum mismatch (stored {stored:#018x}, computed {computed:#018x})")]
    Checksum {
        /// The checksum in the header.
        stored: u64,
        /// The checksum of the bytes read.
        computed: u64,
    },
}

/// Keeps one snapshot per agent key. Called from the activation of that
/// key only (never twice at once for one key), so an implementation need
/// not order concurrent calls for the same key; calls for different keys
/// may run at once. Calls are synchronous: they run on the activation's
/// task, or on tokio's blocking pool when [`blocks`](Self::blocks) says
/// they wait on I/O.
pub trait SnapshotStore: Send + Sync + std::fmt::Debug + 'static {
    /// Whether calls wait on I/O (a file, a database), so that they run on
    /// tokio's blocking pool rather than hold up a runtime thread.
    /// Default: `false`.
    fn blocks(&self) -> bool {
        false
    }

    /// The snapshot saved for `key`, if any. Damaged bytes are a
    /// [`StoreError::Corrupt`], never returned.
    fn load(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Saves `snapshot` for `key`, replacing the previous one. Durable
    /// when this returns, for a durable store.
    fn save(&self, key: &str, snapshot: &[u8]) -> Result<(), StoreError>;

    /// Forgets the snapshot of `key` (nothing if there is none).
    fn remove(&self, key: &str) -> Result<(), StoreError>;
}

/// Snapshots in memory: lost with the process. For tests, and for agents
/// whose state need only outlive their passivation.
#[derive(Debug, Default)]
pub struct MemoryStore {
    // One short critical section per call, never held across an await;
    // a plain mutex because calls for different keys are brief copies.
    snapshots: Mutex<HashMap<String, Vec<u8>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Snapshots held.
    pub fn len(&self) -> usize {
        self.snapshots.lock().len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.snapshots.lock().is_empty()
    }
}

impl SnapshotStore for MemoryStore {
    fn load(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.snapshots.lock().get(key).cloned())
    }

    fn save(&self, key: &str, snapshot: &[u8]) -> Result<(), StoreError> {
        self.snapshots.lock().insert(key.to_string(), snapshot.to_vec());
        Ok(())
    }

    fn remove(&self, key: &str) -> Result<(), StoreError> {
        self.snapshots.lock().remove(key);
        Ok(())
    }
}
