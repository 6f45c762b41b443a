//! [`RedbStore`]: snapshots in one redb file, one row per agent key, each
//! value framed with a checksum that is verified on every read.
//!
//! A row is `[version: u8 = 1][xxh3-64 of key and payload: u64 LE][payload]`.
//! The checksum covers the key as well, so a value moved under another key
//! is caught too. Writes commit with redb's default (immediate) durability:
//! when [`SnapshotStore::save`] returns, the snapshot is on disk.

use std::path::Path;

use redb::{Database, ReadableDatabase, TableDefinition};

use super::store::{CorruptReason, SnapshotStore, StoreError};

/// The table holding the snapshots: agent key to framed snapshot.
pub const SNAPSHOTS_TABLE: &str = "virtual_agent_snapshots";

const SNAPSHOTS: TableDefinition<&str, &[u8]> = TableDefinition::new(SNAPSHOTS_TABLE);

const VERSION: u8 = 1;
const HEADER: usize = 1 + 8;

/// Durable snapshots in a redb file. One process opens a file at a time
/// (redb locks it).
pub struct RedbStore {
    db: Database,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let db = Database::create(path.as_ref()).map_err(redb::Error::from)?;
        let txn = db.begin_write().map_err(redb::Error::from)?;
        txn.open_table(SNAPSHOTS).map_err(redb::Error::from)?;
        txn.commit().map_err(redb::Error::from)?;
        Ok(Self { db })
    }
}

/// The checksum of `payload` stored under `key`.
fn checksum(key: &str, payload: &[u8]) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&(key.len() as u64).to_le_bytes());
    h.update(key.as_bytes());
    h.update(payload);
    h.digest()
}

/// `payload` framed for `key`.
pub(crate) fn frame(key: &str, payload: &[u8]) -> Vec<u8> {
    let mut row = Vec::with_capacity(HEADER + payload.len());
    row.push(VERSION);
    row.extend_from_slice(&checksum(key, payload).to_le_bytes());
    row.extend_from_slice(payload);
    row
}

/// The payload of `row`, stored under `key`, once its frame checks out.
pub(crate) fn unframe(key: &str, row: &[u8]) -> Result<Vec<u8>, StoreError> {
    let corrupt = |reason| StoreError::Corrupt {
        key: key.to_string(),
        reason,
    };
    if row.len() < HEADER {
        return Err(corrupt(CorruptReason::Truncated {
            len: row.len(),
            header: HEADER,
        }));
    }
    if row[0] != VERSION {
        return Err(corrupt(CorruptReason::Version(row[0])));
    }
    let mut stored = [0u8; 8];
    stored.copy_from_slice(&row[1..HEADER]);
    let stored = u64::from_le_bytes(stored);
    let payload = &row[HEADER..];
    let computed = checksum(key, payload);
    if stored != computed {
        return Err(corrupt(CorruptReason::Checksum { stored, computed }));
    }
    Ok(payload.to_vec())
}

impl SnapshotStore for RedbStore {
    /// Reads and fsynced commits: run on the blocking pool.
    fn blocks(&self) -> bool {
        true
    }

    fn load(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(redb::Error::from)?;
        let table = txn.open_table(SNAPSHOTS).map_err(redb::Error::from)?;
        let Some(row) = table.get(key).map_err(redb::Error::from)? else {
            return Ok(None);
        };
        unframe(key, row.value()).map(Some)
    }

    fn save(&self, key: &str, snapshot: &[u8]) -> Result<(), StoreError> {
        let row = frame(key, snapshot);
        let txn = self.db.begin_write().map_err(redb::Error::from)?;
        {
            let mut table = txn.open_table(SNAPSHOTS).map_err(redb::Error::from)?;
            table.insert(key, row.as_slice()).map_err(redb::Error::from)?;
        }
        txn.commit().map_err(redb::Error::from)?;
        Ok(())
    }

    fn remove(&self, key: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(redb::Error::from)?;
        let removed = {
            let mut table = txn.open_table(SNAPSHOTS).map_err(redb::Error::from)?;
            table.remove(key).map_err(redb::Error::from)?.is_some()
        };
        if removed {
            txn.commit().map_err(redb::Error::from)?;
        } else {
            // Nothing changed: no commit (and no fsync) needed.
            txn.abort().map_err(redb::Error::from)?;
        }
        Ok(())
    }
}
