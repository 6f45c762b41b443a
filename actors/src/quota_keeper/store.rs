//! The quota keeper's embedded store: each quota's usage in its current
//! period, in one redb file in the data directory
//! (`<data_dir>/quotas.redb`), opened the way the cost ledger opens
//! `ledger.redb` (`cost_ledger::redb_store`).
//!
//! # Layout (format version 1)
//!
//! - `usage`, keyed by quota id: the quota's kind, period, the start its
//!   periods are counted from (on the [`QuotaClock`](super::QuotaClock)),
//!   the index of the period the usage belongs to, the usage and the peak.
//! - `meta`: the format version, and a digest of `usage` (its entry count
//!   and the wrapping sum of its entries' checksums), rewritten in the same
//!   transaction as every change to `usage`.
//!
//! A write is one transaction with redb's default `Durability::Immediate`:
//! when it returns, the usage is on disk.
//!
//! # Damage is detected, never read back as usage
//!
//! Every value is sealed with an xxh3 checksum of its table, key and bytes;
//! the whole store is read and checked when it is opened (it holds one small
//! entry per quota id). A value whose checksum fails, that does not decode,
//! or that holds an amount above the counters' range is a
//! [`QuotaStoreError::Corrupt`] naming the quota; a table whose entries do
//! not add up to the digest (a damaged page hiding or duplicating entries)
//! is `Corrupt` naming the digest. Calls into redb run under
//! `catch_unwind`: redb panics on some damaged pages, and such a panic is
//! `Corrupt`, not a crash. A 0-byte file, a file that is not a redb file,
//! and a redb file that is not a quota store are `Corrupt` and left as they
//! are (remove the file to start over); another format version is
//! [`QuotaStoreError::UnsupportedFormat`]. redb takes an exclusive lock: a
//! second keeper on the same data directory gets
//! [`QuotaStoreError::Locked`].

use std::any::Any;
use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use xxhash_rust::xxh3::Xxh3;

use super::cell::{CounterState, Resume};
use super::model::MAX_QUOTA_AMOUNT;

/// The store's file name inside the data directory.
pub const STORE_FILE: &str = "quotas.redb";
/// The on-disk format this build reads and writes.
pub const FORMAT_VERSION: u64 = 1;

/// redb's file magic number (its first 9 bytes).
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

const USAGE: TableDefinition<&str, &[u8]> = TableDefinition::new("usage");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const FORMAT_KEY: &str = "format";
const DIGEST_KEY: &str = "digest";

/// Bytes of the checksum that ends every sealed value.
const CHECKSUM_LEN: usize = 8;
/// Bytes of a usage body before the kind's name.
const USAGE_FIXED_LEN: usize = 40;
/// Longest kind name a usage body may hold (bounds what damage can claim).
const MAX_KIND_LEN: usize = 1024;

/// The table a sealed value belongs to (part of its checksum, so a value
/// copied into another table does not verify).
#[derive(Debug, Clone, Copy)]
enum Domain {
    Usage = 1,
    Meta = 2,
}

/// The quota store could not be opened, read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuotaStoreError {
    /// The file or directory could not be read or written.
    #[error("quota store {path}: {message}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        message: String,
    },
    /// Another keeper (in this process or another) holds the store open.
    #[error("quota store {path} is open elsewhere (one keeper per data directory)")]
    Locked {
        /// The store file.
        path: PathBuf,
    },
    /// Stored data is damaged; nothing damaged is read back as usage.
    #[error("quota store {path} is damaged: {entry}: {detail}")]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// What is damaged: `usage of quota "acme"`, `the usage digest`,
        /// `the format version`, `pages`, `the file`.
        entry: String,
        /// How.
        detail: String,
    },
    /// The store was written in another format.
    #[error("quota store {path} has format version {found}; this build reads version {supported}")]
    UnsupportedFormat {
        /// The store file.
        path: PathBuf,
        /// The version found.
        found: u64,
        /// The version this build reads.
        supported: u64,
    },
    /// The storage engine failed otherwise.
    #[error("quota store {path}: {message}")]
    Engine {
        /// The store file.
        path: PathBuf,
        /// The engine's error.
        message: String,
    },
}

/// One quota's usage as stored: what it counts, and its counter at the
/// last write (how its periods run, the period its usage belongs to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredUsage {
    /// The resource kind's name.
    pub(crate) kind: String,
    /// The counter.
    pub(crate) counter: CounterState,
}

impl StoredUsage {
    /// Where a quota of `kind` with a period of `period` ns (0: none)
    /// defined at `now` resumes: `None` if this usage is of another kind or
    /// period (the quota then starts afresh). Periods stay counted from the
    /// stored start. Usage of a period that has ended is not restored; with
    /// the clock before the stored period (the wall clock set back) it is,
    /// so that the error is on the side of refusing.
    pub(crate) fn resume(&self, kind: &str, period: u64, now: u64) -> Option<Resume> {
        let c = &self.counter;
        if self.kind != kind || c.period != period {
            return None;
        }
        if period == 0 {
            return Some(Resume {
                start: now,
                tag: 0,
                used: c.used,
                peak: c.peak,
            });
        }
        let index = now.saturating_sub(c.start) / period;
        Some(Resume {
            start: c.start,
            // Truncation to 16 bits is the tag's modulus.
            tag: index as u16,
            used: if index <= c.index { c.used } else { 0 },
            peak: c.peak.max(c.used),
        })
    }

    fn encode(&self) -> Vec<u8> {
        let c = &self.counter;
        let mut body = Vec::with_capacity(USAGE_FIXED_LEN + self.kind.len());
        for v in [c.period, c.start, c.index, c.used, c.peak] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        body.extend_from_slice(self.kind.as_bytes());
        body
    }

    fn decode(body: &[u8]) -> Result<StoredUsage, String> {
        if body.len() < USAGE_FIXED_LEN {
            return Err(format!("a body of {} bytes is shorter than a usage entry", body.len()));
        }
        if body.len() > USAGE_FIXED_LEN + MAX_KIND_LEN {
            return Err(format!("a body of {} bytes is longer than any usage entry", body.len()));
        }
        let word = |i: usize| u64::from_le_bytes(body[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        let kind = std::str::from_utf8(&body[USAGE_FIXED_LEN..])
            .map_err(|e| format!("the kind is not UTF-8 text ({e})"))?
            .to_string();
        let counter = CounterState {
            period: word(0),
            start: word(1),
            index: word(2),
            used: word(3),
            peak: word(4),
        };
        if kind.is_empty() {
            return Err("the kind is empty".into());
        }
        for (what, v) in [("usage", counter.used), ("peak", counter.peak)] {
            if v > MAX_QUOTA_AMOUNT {
                return Err(format!(
                    "{what} {v} is above the largest quota amount {MAX_QUOTA_AMOUNT}"
                ));
            }
        }
        if counter.period == 0 && (counter.start, counter.index) != (0, 0) {
            return Err("a quota without a period has a period start or index".into());
        }
        Ok(StoredUsage { kind, counter })
    }
}

/// The checksum of a value stored under `key` in `domain`'s table.
fn checksum(domain: Domain, key: &[u8], body: &[u8]) -> u64 {
    let mut h = Xxh3::new();
    h.update(&[domain as u8]);
    h.update(&(key.len() as u64).to_le_bytes());
    h.update(key);
    h.update(body);
    h.digest()
}

/// `body` followed by its checksum.
fn seal(domain: Domain, key: &[u8], mut body: Vec<u8>) -> Vec<u8> {
    let sum = checksum(domain, key, &body);
    body.extend_from_slice(&sum.to_le_bytes());
    body
}

/// The body of a sealed value and its checksum, if the checksum holds.
fn unseal<'a>(domain: Domain, key: &[u8], value: &'a [u8]) -> Result<(&'a [u8], u64), String> {
    if value.len() < CHECKSUM_LEN {
        return Err(format!("a value of {} bytes is shorter than its checksum", value.len()));
    }
    let (body, stored) = value.split_at(value.len() - CHECKSUM_LEN);
    let stored = u64::from_le_bytes(stored.try_into().expect("8 bytes"));
    let computed = checksum(domain, key, body);
    if stored != computed {
        return Err(format!(
            "checksum mismatch (stored {stored:#018x}, computed {computed:#018x})"
        ));
    }
    Ok((body, stored))
}

/// The digest of the usage table: entries and the wrapping sum of their
/// checksums.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Digest {
    entries: u64,
    sum: u64,
}

impl Digest {
    fn encode(self) -> Vec<u8> {
        let mut body = Vec::with_capacity(16);
        body.extend_from_slice(&self.entries.to_le_bytes());
        body.extend_from_slice(&self.sum.to_le_bytes());
        body
    }

    fn decode(body: &[u8]) -> Result<Digest, String> {
        if body.len() != 16 {
            return Err(format!("a digest of {} bytes, not 16", body.len()));
        }
        let word = |i: usize| u64::from_le_bytes(body[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        Ok(Digest {
            entries: word(0),
            sum: word(1),
        })
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

fn corrupt(path: &Path, entry: impl Into<String>, detail: impl Into<String>) -> QuotaStoreError {
    QuotaStoreError::Corrupt {
        path: path.to_path_buf(),
        entry: entry.into(),
        detail: detail.into(),
    }
}

fn usage_entry(id: &str) -> String {
    format!("usage of quota {id:?}")
}

fn io_err(path: &Path, e: &std::io::Error) -> QuotaStoreError {
    QuotaStoreError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn map_err(e: impl Into<redb::Error>, path: &Path) -> QuotaStoreError {
    match e.into() {
        redb::Error::DatabaseAlreadyOpen => QuotaStoreError::Locked {
            path: path.to_path_buf(),
        },
        redb::Error::Corrupted(detail) => corrupt(path, "pages", detail),
        redb::Error::UpgradeRequired(v) => {
            corrupt(path, "the file", format!("redb file format {v} is not this version's"))
        }
        redb::Error::TableTypeMismatch { table, .. } => {
            corrupt(path, "the file", format!("table {table} has foreign types"))
        }
        redb::Error::TableDoesNotExist(table) => corrupt(path, "pages", format!("table {table} is missing")),
        redb::Error::TypeDefinitionChanged { name, .. } => {
            corrupt(path, "pages", format!("the stored type {name:?} has changed"))
        }
        redb::Error::LockPoisoned(_) => corrupt(path, "pages", "the storage engine failed earlier"),
        redb::Error::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            corrupt(path, "pages", format!("a page lies past the end of the file ({io})"))
        }
        redb::Error::Io(io) => io_err(path, &io),
        redb::Error::PreviousIo => QuotaStoreError::Io {
            path: path.to_path_buf(),
            message: "an earlier write failed".into(),
        },
        other => QuotaStoreError::Engine {
            path: path.to_path_buf(),
            message: other.to_string(),
        },
    }
}

/// Runs `f` (calls into redb); a panic is damage to the pages.
fn guarded<T>(path: &Path, doing: &str, f: impl FnOnce() -> Result<T, QuotaStoreError>) -> Result<T, QuotaStoreError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        Err(corrupt(
            path,
            "pages",
            format!(
                "the storage engine failed {doing} ({})",
                panic_message(payload.as_ref())
            ),
        ))
    })
}

/// Whether the file exists; refuses an empty file and one that is not a
/// redb file.
fn check_existing(path: &Path) -> Result<bool, QuotaStoreError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err(path, &e)),
    };
    let mut head = Vec::with_capacity(REDB_MAGIC.len());
    file.take(REDB_MAGIC.len() as u64)
        .read_to_end(&mut head)
        .map_err(|e| io_err(path, &e))?;
    if head.is_empty() {
        return Err(corrupt(
            path,
            "the file",
            "the file is empty (0 bytes); a quota store is never empty (remove the file to start over)",
        ));
    }
    if head != REDB_MAGIC {
        return Err(corrupt(path, "the file", "not a redb file (bad magic number)"));
    }
    Ok(true)
}

/// The open store: the redb file and, as this store is its only writer
/// (redb's exclusive lock), the usage table's contents as last committed,
/// each entry with its checksum.
pub(crate) struct QuotaStore {
    /// Always `Some` until dropped.
    db: Option<Database>,
    path: PathBuf,
    entries: HashMap<String, (StoredUsage, u64)>,
}

impl std::fmt::Debug for QuotaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuotaStore")
            .field("path", &self.path)
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl Drop for QuotaStore {
    fn drop(&mut self) {
        // Closing writes redb's allocator state, which can panic on damaged
        // pages: never from a drop.
        if let Some(db) = self.db.take() {
            let _ = catch_unwind(AssertUnwindSafe(move || drop(db)));
        }
    }
}

impl QuotaStore {
    /// Opens (or creates) the store in `data_dir`, creating the directory,
    /// and reads and verifies every entry.
    pub(crate) fn open(data_dir: &Path) -> Result<QuotaStore, QuotaStoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| io_err(data_dir, &e))?;
        let path = data_dir.join(STORE_FILE);
        let existed = check_existing(&path)?;
        let repair_path = path.clone();
        let opened = catch_unwind(AssertUnwindSafe(|| {
            Database::builder()
                .set_repair_callback(move |s| {
                    // redb runs its repair pass on a brand-new file too.
                    if existed {
                        tracing::warn!(path = %repair_path.display(), progress = s.progress(), "recovering the quota store after an unclean shutdown");
                    }
                })
                .create(&path)
        }));
        let db = match opened {
            Ok(Ok(db)) => db,
            Ok(Err(e)) => return Err(map_err(e, &path)),
            Err(p) => {
                return Err(corrupt(
                    &path,
                    "the file",
                    format!("the storage engine could not open it ({})", panic_message(p.as_ref())),
                ));
            }
        };
        let mut store = QuotaStore {
            db: Some(db),
            path,
            entries: HashMap::new(),
        };
        store.init()?;
        store.entries = store.load()?;
        Ok(store)
    }

    /// The stored usage of quota `id`.
    pub(crate) fn get(&self, id: &str) -> Option<&StoredUsage> {
        self.entries.get(id).map(|(u, _)| u)
    }

    fn db(&self) -> &Database {
        self.db
            .as_ref()
            .expect("the database is there until the store is dropped")
    }

    fn err(&self, e: impl Into<redb::Error>) -> QuotaStoreError {
        map_err(e, &self.path)
    }

    /// Checks the format version, or initialises a new file.
    fn init(&self) -> Result<(), QuotaStoreError> {
        let (tables, format) = guarded(&self.path, "opening the store", || {
            let read = self.db().begin_read().map_err(|e| self.err(e))?;
            let tables = read.list_tables().map_err(|e| self.err(e))?.count();
            let format = match read.open_table(META) {
                Ok(t) => t.get(FORMAT_KEY).map_err(|e| self.err(e))?.map(|v| v.value().to_vec()),
                Err(redb::TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(self.err(e)),
            };
            Ok((tables, format))
        })?;
        match format {
            Some(value) => {
                let (body, _) = unseal(Domain::Meta, FORMAT_KEY.as_bytes(), &value)
                    .map_err(|d| corrupt(&self.path, "the format version", d))?;
                let found = <[u8; 8]>::try_from(body)
                    .map(u64::from_le_bytes)
                    .map_err(|_| corrupt(&self.path, "the format version", format!("{} bytes, not 8", body.len())))?;
                if found != FORMAT_VERSION {
                    return Err(QuotaStoreError::UnsupportedFormat {
                        path: self.path.clone(),
                        found,
                        supported: FORMAT_VERSION,
                    });
                }
                Ok(())
            }
            None if tables > 0 => Err(corrupt(&self.path, "the file", "a redb file that is not a quota store")),
            None => guarded(&self.path, "creating the store", || {
                let txn = self.db().begin_write().map_err(|e| self.err(e))?;
                {
                    txn.open_table(USAGE).map_err(|e| self.err(e))?;
                    let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
                    let format = seal(
                        Domain::Meta,
                        FORMAT_KEY.as_bytes(),
                        FORMAT_VERSION.to_le_bytes().to_vec(),
                    );
                    meta.insert(FORMAT_KEY, format.as_slice()).map_err(|e| self.err(e))?;
                    let digest = seal(Domain::Meta, DIGEST_KEY.as_bytes(), Digest::default().encode());
                    meta.insert(DIGEST_KEY, digest.as_slice()).map_err(|e| self.err(e))?;
                }
                txn.commit().map_err(|e| self.err(e))
            }),
        }
    }

    /// Reads the usage table front to back, verifying every entry and the
    /// table against its digest.
    fn load(&self) -> Result<HashMap<String, (StoredUsage, u64)>, QuotaStoreError> {
        guarded(&self.path, "reading quota usage", || {
            let read = self.db().begin_read().map_err(|e| self.err(e))?;
            let meta = read.open_table(META).map_err(|e| self.err(e))?;
            let digest_entry = "the usage digest";
            let expected = match meta.get(DIGEST_KEY).map_err(|e| self.err(e))? {
                Some(v) => unseal(Domain::Meta, DIGEST_KEY.as_bytes(), v.value())
                    .and_then(|(body, _)| Digest::decode(body))
                    .map_err(|d| corrupt(&self.path, digest_entry, d))?,
                None => return Err(corrupt(&self.path, digest_entry, "missing")),
            };
            let table = read.open_table(USAGE).map_err(|e| self.err(e))?;
            let mut entries = HashMap::new();
            let mut seen = Digest::default();
            let mut last: Option<String> = None;
            for item in table.iter().map_err(|e| self.err(e))? {
                let (k, v) = item.map_err(|e| self.err(e))?;
                let id = k.value();
                if last.as_deref().is_some_and(|l| l >= id) {
                    return Err(corrupt(&self.path, usage_entry(id), "out of order in the usage table"));
                }
                last = Some(id.to_string());
                let (body, sum) = unseal(Domain::Usage, id.as_bytes(), v.value())
                    .map_err(|d| corrupt(&self.path, usage_entry(id), d))?;
                let usage = StoredUsage::decode(body).map_err(|d| corrupt(&self.path, usage_entry(id), d))?;
                seen.entries += 1;
                seen.sum = seen.sum.wrapping_add(sum);
                entries.insert(id.to_string(), (usage, sum));
            }
            if seen != expected {
                return Err(corrupt(
                    &self.path,
                    digest_entry,
                    format!(
                        "it lists {} entries, {} were read{}",
                        expected.entries,
                        seen.entries,
                        if expected.entries == seen.entries {
                            " with other contents"
                        } else {
                            ""
                        }
                    ),
                ));
            }
            Ok(entries)
        })
    }

    /// Writes `changed` in one transaction (with the digest of the table
    /// they leave); the entries are taken as stored only once it commits.
    pub(crate) fn write(&mut self, changed: Vec<(String, StoredUsage)>) -> Result<(), QuotaStoreError> {
        if changed.is_empty() {
            return Ok(());
        }
        let sealed: Vec<(String, StoredUsage, Vec<u8>)> = changed
            .into_iter()
            .map(|(id, usage)| {
                let value = seal(Domain::Usage, id.as_bytes(), usage.encode());
                (id, usage, value)
            })
            .collect();
        let sum_of =
            |value: &[u8]| u64::from_le_bytes(value[value.len() - CHECKSUM_LEN..].try_into().expect("8 bytes"));
        let mut digest = Digest {
            entries: self.entries.len() as u64,
            sum: self.entries.values().fold(0u64, |s, (_, c)| s.wrapping_add(*c)),
        };
        for (id, _, value) in &sealed {
            match self.entries.get(id) {
                Some((_, old)) => digest.sum = digest.sum.wrapping_sub(*old),
                None => digest.entries += 1,
            }
            digest.sum = digest.sum.wrapping_add(sum_of(value));
        }
        guarded(&self.path, "writing quota usage", || {
            let txn = self.db().begin_write().map_err(|e| self.err(e))?;
            {
                let mut table = txn.open_table(USAGE).map_err(|e| self.err(e))?;
                for (id, _, value) in &sealed {
                    table.insert(id.as_str(), value.as_slice()).map_err(|e| self.err(e))?;
                }
                let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
                let value = seal(Domain::Meta, DIGEST_KEY.as_bytes(), digest.encode());
                meta.insert(DIGEST_KEY, value.as_slice()).map_err(|e| self.err(e))?;
            }
            txn.commit().map_err(|e| self.err(e))
        })?;
        for (id, usage, value) in sealed {
            let sum = sum_of(&value);
            self.entries.insert(id, (usage, sum));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
