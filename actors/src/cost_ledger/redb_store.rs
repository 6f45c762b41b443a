//! [`RedbStore`]: the embedded [`LedgerStore`], one redb file in the data
//! directory (`<data_dir>/ledger.redb`).
//!
//! # Layout (format version 2)
//!
//! Tables: `records` keyed by (time, id) so that a time range is one ordered
//! range scan; `daily` keyed by (UTC day, kind + metadata) for compacted
//! usage; `budgets` and `budget_spend` keyed by (budget, bucket start);
//! `config` (the price table), `meta` (format version, next record id,
//! each with a checksum) and `hour_index`, keyed by hour, holding for each
//! hour the count and the wrapping sum of the value checksums of its
//! records and of the daily aggregates starting at it. Every append is one write transaction with redb's default
//! `Durability::Immediate`: when `commit` returns, the records, their ids
//! and the budgets' spend are on disk together.
//!
//! The writer's page cache is [`WRITER_CACHE_BYTES`] (redb's own default is
//! 1 GiB, which a busy ledger fills within minutes): appends touch the
//! rightmost pages of the time-ordered tables, so a small cache holds
//! their working set, and a long-running node's memory stays flat however
//! large the ledger grows.
//!
//! # Damage is detected, never read back as data
//!
//! redb checks its page checksums only when it repairs a file, so a flipped
//! bit in a page would otherwise be read back as different data. Every
//! value is therefore sealed with a checksum of its table, key and bytes
//! (see [`RecordCodec`]); every read verifies it and a mismatch is
//! [`LedgerError::Corrupt`] naming the entry ([`Damaged`]). A damaged
//! branch page can also misdirect a range seek, hiding entries or showing
//! an old copy of a page: so a range read scans the whole hours around its
//! range and checks what it read against `hour_index` (updated in the same
//! transaction as the records and aggregates), and budget spend is read
//! front to back, without seeks. Damaged values
//! are never rewritten: an append whose budget spend bucket, or a
//! compaction whose records or aggregates, fail their check fails as a
//! whole. Every call into redb runs under `catch_unwind`: redb panics on
//! some damaged pages, and such a panic is [`Damaged::Pages`], not a crash
//! (a panic of the caller's visitor is passed on unchanged).
//! [`RedbStore::verify`] checks the whole file on a snapshot: every sealed
//! value and every hour of the index, listing all it finds. (redb's own
//! `check_integrity` is not used: it needs a writable file, and on redb
//! 3.1 it fails on some intact files and then panics when the database is
//! dropped.)
//!
//! A file that is empty (0 bytes), not a redb file, or a redb file that is
//! not a ledger store gives [`LedgerError::Corrupt`] and is left as it is
//! (a 0-byte file is never initialised as a new ledger: remove it to start
//! over); a ledger of another format version gives
//! [`LedgerError::UnsupportedFormat`]. After an unclean shutdown redb
//! recovers the last committed transaction when the writer opens the file.
//!
//! # Reading beside a writer
//!
//! [`RedbStore::open`] is the ledger's writer; redb takes an exclusive
//! file lock, so a second writer gets [`LedgerError::Locked`].
//! [`RedbStore::open_read_only`] (what `nexus report` uses) never writes
//! the file. It first opens it with redb's read-only mode
//! (`Builder::open_read_only`: a shared lock, no header or allocator
//! writes), which works when no writer holds the file and it was closed
//! cleanly. Its shared lock keeps a writer from opening the file (it gets
//! [`LedgerError::Locked`]) for as long as the read-only store is open:
//! `nexus report` holds it only while it reads. redb refuses that mode while a writer holds the exclusive lock,
//! and after an unclean shutdown (which needs a repair, i.e. writes); then
//! the store reads a *snapshot*: it copies the file's bytes to a private
//! temporary file (in the system's temporary directory, deleted when the
//! store is dropped) and opens the copy, where redb's repair runs and
//! verifies the page checksums of the last commit, falling back to the one
//! before. A checksum-verified commit is a consistent snapshot even if a
//! commit landed during the copy. The redb header (first 320 bytes) is read
//! before and after the copy: if it changed and the copy does not verify,
//! the copy is retried, up to [`SNAPSHOT_ATTEMPTS`] times, then
//! [`LedgerError::Busy`]; a copy of an unchanged file that does not verify
//! is damage. This was chosen over reading the live file in place because
//! redb reuses freed pages after two commits, so an in-place read beside a
//! writer is not a snapshot, and over an in-memory copy because a ledger
//! can outgrow memory.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Read;
use std::ops::Bound;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nexus_swarm_runtime::resources::ResourceKind;
use nexus_swarm_runtime::usage::UsageMeta;
use redb::{
    Database, DatabaseError, ReadOnlyDatabase, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition,
};

use super::budget::Budget;
use super::error::{Cause, Damage, Damaged, LedgerError};
use super::gate::SpendDelta;
use super::pricing::PriceTable;
use super::record::{
    Domain, EntryDamage, LedgerRecord, NewRecord, RecordCodec, RecordId, checksum, decode_body, encode_body, seal,
    unseal,
};
use super::store::{CompactionStats, LedgerStore, StoredBudget, UsageRow};

/// The store's file name inside the data directory.
pub const STORE_FILE: &str = "ledger.redb";
/// The on-disk format this build reads and writes (1: values without
/// checksums, refused with [`LedgerError::UnsupportedFormat`]).
pub const FORMAT_VERSION: u64 = 2;
/// Copies a read-only open makes at most while a writer keeps committing.
pub const SNAPSHOT_ATTEMPTS: u32 = 5;
/// redb's file magic number (its first 9 bytes).
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];
/// redb's header (magic, flags, two commit slots): every commit rewrites it.
const REDB_HEADER_LEN: usize = 320;

const RECORDS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("records");
const DAILY: TableDefinition<(u64, &[u8]), &[u8]> = TableDefinition::new("daily");
const BUDGETS: TableDefinition<&str, &[u8]> = TableDefinition::new("budgets");
const SPEND: TableDefinition<(&str, u64), (u64, u64)> = TableDefinition::new("budget_spend");
const CONFIG: TableDefinition<&str, &[u8]> = TableDefinition::new("config");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const INDEX: TableDefinition<u64, &[u8]> = TableDefinition::new("hour_index");

const HOUR_US: u64 = 3_600_000_000;

const SCHEMA_KEY: &str = "schema";
const SCHEMA_CHECK_KEY: &str = "schema_check";
const NEXT_ID_KEY: &str = "next_id";
const NEXT_ID_CHECK_KEY: &str = "next_id_check";
const PRICES_KEY: &str = "prices";

/// How the file is open.
enum Engine {
    /// The ledger's writer.
    Writable(Database),
    /// redb's read-only mode on the file itself.
    ReadOnly(ReadOnlyDatabase),
    /// A verified private copy (field order: the database closes before
    /// its file is removed).
    Snapshot { db: Database, _copy: SnapshotCopy },
}

impl Engine {
    fn begin_read(&self) -> Result<ReadTransaction, redb::TransactionError> {
        match self {
            Engine::Writable(db) => db.begin_read(),
            Engine::ReadOnly(db) => db.begin_read(),
            Engine::Snapshot { db, .. } => db.begin_read(),
        }
    }
}

/// A temporary copy of the store file, removed on drop.
struct SnapshotCopy {
    path: PathBuf,
}

impl SnapshotCopy {
    fn create() -> std::io::Result<(SnapshotCopy, File)> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!(
            "nexus-ledger-snapshot-{}-{nanos}-{}.redb",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok((SnapshotCopy { path }, file))
    }
}

impl Drop for SnapshotCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The embedded ledger store.
pub struct RedbStore {
    /// Always `Some` until dropped.
    engine: Option<Engine>,
    path: PathBuf,
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        // Closing writes redb's allocator state (to the copy, for a
        // snapshot), which can panic on damaged pages: never from a drop.
        if let Some(engine) = self.engine.take() {
            let _ = catch_unwind(AssertUnwindSafe(move || drop(engine)));
        }
    }
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match self.engine {
            Some(Engine::Writable(_)) => "writable",
            Some(Engine::ReadOnly(_)) => "read-only",
            Some(Engine::Snapshot { .. }) => "snapshot",
            None => "closed",
        };
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .field("mode", &mode)
            .finish()
    }
}

/// What [`RedbStore::verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The store file.
    pub path: PathBuf,
    /// Intact records.
    pub records: u64,
    /// Intact daily aggregates.
    pub aggregates: u64,
    /// Intact budget definitions.
    pub budgets: u64,
    /// Intact budget spend buckets.
    pub spend_buckets: u64,
    /// Everything found damaged, in the order found.
    pub damage: Vec<Damage>,
}

impl VerifyReport {
    /// Whether nothing is damaged.
    pub fn is_intact(&self) -> bool {
        self.damage.is_empty()
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

fn corrupt(path: &Path, what: Damaged, detail: impl Into<String>) -> LedgerError {
    LedgerError::Corrupt {
        path: path.to_path_buf(),
        what,
        detail: detail.into(),
    }
}

fn io_err(path: &Path, e: std::io::Error) -> LedgerError {
    LedgerError::Io {
        path: path.to_path_buf(),
        source: Cause::new(e),
    }
}

/// Runs `f` (calls into redb); a panic is damage to the pages.
fn guarded<T>(path: &Path, doing: &str, f: impl FnOnce() -> Result<T, LedgerError>) -> Result<T, LedgerError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => Err(corrupt(
            path,
            Damaged::Pages,
            format!(
                "the storage engine failed {doing} ({})",
                panic_message(payload.as_ref())
            ),
        )),
    }
}

/// Where a visitor's panic waits while the store unwinds its own guard.
type Escaped = Option<Box<dyn Any + Send>>;

/// Calls a caller's visitor; its panic is kept to be resumed after the
/// store's guard, so that it is not taken for damage.
fn call_visitor(escaped: &mut Escaped, f: impl FnOnce() -> Result<(), LedgerError>) -> Result<(), LedgerError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            *escaped = Some(payload);
            Err(LedgerError::Unavailable)
        }
    }
}

fn resume_escaped<T>(escaped: Escaped, r: T) -> T {
    match escaped {
        Some(payload) => resume_unwind(payload),
        None => r,
    }
}

/// Whether the file exists; refuses an empty file and one that is not a
/// redb file.
fn check_existing(path: &Path) -> Result<bool, LedgerError> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err(path, e)),
    };
    let mut head = Vec::with_capacity(REDB_MAGIC.len());
    (&mut file)
        .take(REDB_MAGIC.len() as u64)
        .read_to_end(&mut head)
        .map_err(|e| io_err(path, e))?;
    if head.is_empty() {
        return Err(corrupt(
            path,
            Damaged::File,
            "the file is empty (0 bytes); a ledger is never empty (remove the file to start a new ledger)",
        ));
    }
    if head != REDB_MAGIC {
        return Err(corrupt(path, Damaged::File, "not a redb file (bad magic number)"));
    }
    Ok(true)
}

fn read_header(path: &Path) -> Result<Vec<u8>, LedgerError> {
    let file = File::open(path).map_err(|e| io_err(path, e))?;
    let mut head = Vec::with_capacity(REDB_HEADER_LEN);
    file.take(REDB_HEADER_LEN as u64)
        .read_to_end(&mut head)
        .map_err(|e| io_err(path, e))?;
    Ok(head)
}

fn map_err(e: redb::Error, path: &Path) -> LedgerError {
    match e {
        redb::Error::DatabaseAlreadyOpen => LedgerError::Locked {
            path: path.to_path_buf(),
        },
        redb::Error::Corrupted(detail) => corrupt(path, Damaged::Pages, detail),
        redb::Error::UpgradeRequired(v) => corrupt(
            path,
            Damaged::File,
            format!("redb file format {v} is not this version's"),
        ),
        redb::Error::TableTypeMismatch { table, .. } => {
            corrupt(path, Damaged::File, format!("table {table} has foreign types"))
        }
        redb::Error::TableDoesNotExist(table) => corrupt(
            path,
            Damaged::Pages,
            format!("table {table} of a ledger store is missing"),
        ),
        redb::Error::TypeDefinitionChanged { name, .. } => {
            corrupt(path, Damaged::Pages, format!("the stored type {name:?} has changed"))
        }
        redb::Error::LockPoisoned(_) => corrupt(path, Damaged::Pages, "the storage engine failed earlier"),
        // The file is shorter than the structures its pages describe.
        redb::Error::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => corrupt(
            path,
            Damaged::Pages,
            format!("a page lies past the end of the file ({io})"),
        ),
        redb::Error::Io(io) => io_err(path, io),
        redb::Error::PreviousIo => LedgerError::EarlierWriteFailed {
            path: path.to_path_buf(),
        },
        other => LedgerError::Engine {
            path: path.to_path_buf(),
            source: Cause::new(other),
        },
    }
}

fn aggregate_key(day: u64, group: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + group.len());
    key.extend_from_slice(&day.to_le_bytes());
    key.extend_from_slice(group);
    key
}

fn spend_key(budget: &str, bucket: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(budget.len() + 8);
    key.extend_from_slice(budget.as_bytes());
    key.extend_from_slice(&bucket.to_le_bytes());
    key
}

fn spend_value(budget: &str, bucket: u64, amount: u64) -> (u64, u64) {
    (
        amount,
        checksum(Domain::Spend, &spend_key(budget, bucket), &amount.to_le_bytes()),
    )
}

fn schema_check(version: u64) -> u64 {
    checksum(Domain::Meta, SCHEMA_KEY.as_bytes(), &version.to_le_bytes())
}

fn next_id_check(next: u64) -> u64 {
    checksum(Domain::Meta, NEXT_ID_KEY.as_bytes(), &next.to_le_bytes())
}

/// An aggregate's sums: amount, cost, records.
type Sums = (u64, u64, u64);

fn encode_sums((amount, cost, records): Sums) -> Vec<u8> {
    let mut body = Vec::with_capacity(24);
    for v in [amount, cost, records] {
        body.extend_from_slice(&v.to_le_bytes());
    }
    body
}

/// What one hour holds: the records whose time is in it and the daily
/// aggregates whose day starts at it, each as a count and the wrapping sum
/// of their values' checksums.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Digest {
    records: u64,
    records_sum: u64,
    aggregates: u64,
    aggregates_sum: u64,
}

impl Digest {
    fn add_record(&mut self, seal: u64) {
        self.records = self.records.wrapping_add(1);
        self.records_sum = self.records_sum.wrapping_add(seal);
    }

    fn add_aggregate(&mut self, seal: u64) {
        self.aggregates = self.aggregates.wrapping_add(1);
        self.aggregates_sum = self.aggregates_sum.wrapping_add(seal);
    }

    fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(32);
        for v in [self.records, self.records_sum, self.aggregates, self.aggregates_sum] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        body
    }

    fn decode(hour: u64, value: &[u8]) -> Result<Digest, EntryDamage> {
        let body = unseal(Domain::Index, &hour.to_le_bytes(), value)?;
        if body.len() != 32 {
            return Err(EntryDamage::TrailingBytes {
                extra: body.len().abs_diff(32),
            });
        }
        let word = |i: usize| u64::from_le_bytes(body[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        Ok(Digest {
            records: word(0),
            records_sum: word(1),
            aggregates: word(2),
            aggregates_sum: word(3),
        })
    }
}

fn hour_of(at_us: u64) -> u64 {
    at_us - at_us % HOUR_US
}

/// The hours a read of `[from_us, to_us)` scans whole: from the start of
/// `from_us`'s hour to the end of `to_us - 1`'s (`None`: to the end).
fn whole_hours(from_us: u64, to_us: u64) -> (u64, Option<u64>) {
    let last = to_us - 1;
    (hour_of(from_us), hour_of(last).checked_add(HOUR_US))
}

fn upper<K>(end: Option<u64>, key: impl FnOnce(u64) -> K) -> Bound<K> {
    end.map_or(Bound::Unbounded, |e| Bound::Excluded(key(e)))
}

/// The checksum that ends a sealed value (which has been verified).
fn seal_of(value: &[u8]) -> u64 {
    u64::from_le_bytes(value[value.len() - 8..].try_into().expect("8 bytes"))
}

/// How what was read of an hour differs from its index entry.
fn index_mismatch(expected: &Digest, seen: &Digest, records: bool, aggregates: bool) -> Option<String> {
    if records && (expected.records, expected.records_sum) != (seen.records, seen.records_sum) {
        return Some(format!(
            "the index lists {} records, {} were read{}",
            expected.records,
            seen.records,
            if expected.records == seen.records {
                " with other contents"
            } else {
                ""
            }
        ));
    }
    if aggregates && (expected.aggregates, expected.aggregates_sum) != (seen.aggregates, seen.aggregates_sum) {
        return Some(format!(
            "the index lists {} daily aggregates, {} were read{}",
            expected.aggregates,
            seen.aggregates,
            if expected.aggregates == seen.aggregates {
                " with other contents"
            } else {
                ""
            }
        ));
    }
    None
}

fn decode_aggregate(day: u64, group: &[u8], value: &[u8]) -> Result<(ResourceKind, UsageMeta, Sums), EntryDamage> {
    let body = unseal(Domain::Aggregate, &aggregate_key(day, group), value)?;
    if body.len() != 24 {
        return Err(EntryDamage::TrailingBytes {
            extra: body.len().abs_diff(24),
        });
    }
    let word = |i: usize| u64::from_le_bytes(body[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    let (kind, meta): (ResourceKind, UsageMeta) = decode_body(group, true)?;
    Ok((kind, meta, (word(0), word(1), word(2))))
}

/// The page cache of the ledger's writer (read cache 90 %, write cache
/// 10 %, as redb splits it): 64 MiB.
pub const WRITER_CACHE_BYTES: usize = 64 * 1024 * 1024;

impl RedbStore {
    /// Opens (or creates) the store in `data_dir` for writing, creating the
    /// directory. Its page cache is [`WRITER_CACHE_BYTES`].
    pub fn open(data_dir: impl AsRef<Path>) -> Result<RedbStore, LedgerError> {
        let dir = data_dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let path = dir.join(STORE_FILE);
        let existed = check_existing(&path)?;
        let repair_path = path.clone();
        let opened = catch_unwind(AssertUnwindSafe(|| {
            Database::builder()
                .set_cache_size(WRITER_CACHE_BYTES)
                .set_repair_callback(move |s| {
                    // redb runs its repair pass on a brand-new file too: only
                    // an existing store is worth a warning.
                    if existed {
                        tracing::warn!(path = %repair_path.display(), progress = s.progress(), "recovering ledger store after an unclean shutdown");
                    }
                })
                .create(&path)
        }));
        let db = match opened {
            Ok(Ok(db)) => db,
            Ok(Err(e)) => return Err(map_err(e.into(), &path)),
            Err(p) => {
                return Err(corrupt(
                    &path,
                    Damaged::File,
                    format!("the storage engine could not open it ({})", panic_message(p.as_ref())),
                ));
            }
        };
        let store = RedbStore {
            engine: Some(Engine::Writable(db)),
            path,
        };
        store.init()?;
        Ok(store)
    }

    /// Opens the store in `data_dir` for reading only: the file is never
    /// written, and a writer may hold it meanwhile (see the module docs).
    /// Writes give [`LedgerError::ReadOnly`]; a missing file is
    /// [`LedgerError::Missing`].
    pub fn open_read_only(data_dir: impl AsRef<Path>) -> Result<RedbStore, LedgerError> {
        let path = data_dir.as_ref().join(STORE_FILE);
        if !check_existing(&path)? {
            return Err(LedgerError::Missing { path });
        }
        let opened = catch_unwind(AssertUnwindSafe(|| redb::Builder::new().open_read_only(&path)));
        let engine = match opened {
            Ok(Ok(db)) => Engine::ReadOnly(db),
            Ok(Err(DatabaseError::DatabaseAlreadyOpen | DatabaseError::RepairAborted)) => snapshot(&path)?,
            Ok(Err(e)) => return Err(map_err(e.into(), &path)),
            Err(p) => {
                return Err(corrupt(
                    &path,
                    Damaged::File,
                    format!("the storage engine could not open it ({})", panic_message(p.as_ref())),
                ));
            }
        };
        let store = RedbStore {
            engine: Some(engine),
            path,
        };
        store.init()?;
        Ok(store)
    }

    /// Checks the store in `data_dir` without writing it: redb's page
    /// checksums and allocator state (on a private copy, as that check
    /// needs a writable file), then every record, aggregate, budget, spend
    /// bucket, the price table and the metadata. Damage is listed in the
    /// report; an error means the file could not be checked at all (it is
    /// missing, empty, not a ledger, or of another format).
    pub fn verify(data_dir: impl AsRef<Path>) -> Result<VerifyReport, LedgerError> {
        let path = data_dir.as_ref().join(STORE_FILE);
        if !check_existing(&path)? {
            return Err(LedgerError::Missing { path });
        }
        let engine = snapshot(&path)?;
        let store = RedbStore {
            engine: Some(engine),
            path: path.clone(),
        };
        let mut report = VerifyReport {
            path,
            records: 0,
            aggregates: 0,
            budgets: 0,
            spend_buckets: 0,
            damage: Vec::new(),
        };
        match store.init() {
            Ok(()) => {}
            Err(LedgerError::Corrupt { what, detail, .. }) => {
                report.damage.push(Damage { what, detail });
                return Ok(report);
            }
            Err(e) => return Err(e),
        }
        store.scan(&mut report);
        Ok(report)
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, e: impl Into<redb::Error>) -> LedgerError {
        map_err(e.into(), &self.path)
    }

    fn corrupt(&self, what: Damaged, damage: EntryDamage) -> LedgerError {
        corrupt(&self.path, what, damage.to_string())
    }

    fn engine(&self) -> &Engine {
        self.engine
            .as_ref()
            .expect("the engine is there until the store is dropped")
    }

    fn writable(&self) -> Result<&Database, LedgerError> {
        match self.engine() {
            Engine::Writable(db) => Ok(db),
            _ => Err(LedgerError::ReadOnly {
                path: self.path.clone(),
            }),
        }
    }

    fn begin_read(&self) -> Result<ReadTransaction, LedgerError> {
        self.engine().begin_read().map_err(|e| self.err(e))
    }

    fn guarded<T>(&self, doing: &str, f: impl FnOnce() -> Result<T, LedgerError>) -> Result<T, LedgerError> {
        guarded(&self.path, doing, f)
    }

    fn init(&self) -> Result<(), LedgerError> {
        let version = self.guarded("opening the ledger", || {
            let read = self.begin_read()?;
            let tables = read.list_tables().map_err(|e| self.err(e))?.count();
            let version = match read.open_table(META) {
                Ok(t) => {
                    let get = |key| t.get(key).map_err(|e| self.err(e)).map(|v| v.map(|v| v.value()));
                    (get(SCHEMA_KEY)?, get(SCHEMA_CHECK_KEY)?)
                }
                Err(redb::TableError::TableDoesNotExist(_)) => (None, None),
                Err(e) => return Err(self.err(e)),
            };
            Ok((tables, version))
        })?;
        let schema_damaged = |detail: String| corrupt(&self.path, Damaged::Meta { key: SCHEMA_KEY.into() }, detail);
        let version = match version {
            // Format 1 had no checksums at all.
            (tables, (Some(1), None)) => (tables, Some(1)),
            (_, (Some(v), Some(check))) if check != schema_check(v) => {
                return Err(schema_damaged(
                    EntryDamage::Checksum {
                        stored: check,
                        computed: schema_check(v),
                    }
                    .to_string(),
                ));
            }
            (_, (Some(_), None)) => return Err(schema_damaged("its checksum is missing".into())),
            (tables, (v, _)) => (tables, v),
        };
        match version {
            (_, Some(FORMAT_VERSION)) => Ok(()),
            (_, Some(found)) => Err(LedgerError::UnsupportedFormat {
                path: self.path.clone(),
                found,
                supported: FORMAT_VERSION,
            }),
            (tables, None) if tables > 0 => Err(corrupt(
                &self.path,
                Damaged::File,
                "a redb file that is not a ledger store",
            )),
            (_, None) => {
                let Engine::Writable(db) = self.engine() else {
                    return Err(corrupt(
                        &self.path,
                        Damaged::File,
                        "a redb file never initialised as a ledger store",
                    ));
                };
                self.guarded("creating the ledger", || {
                    let txn = db.begin_write().map_err(|e| self.err(e))?;
                    {
                        txn.open_table(RECORDS).map_err(|e| self.err(e))?;
                        txn.open_table(DAILY).map_err(|e| self.err(e))?;
                        txn.open_table(BUDGETS).map_err(|e| self.err(e))?;
                        txn.open_table(SPEND).map_err(|e| self.err(e))?;
                        txn.open_table(CONFIG).map_err(|e| self.err(e))?;
                        txn.open_table(INDEX).map_err(|e| self.err(e))?;
                        let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
                        meta.insert(SCHEMA_KEY, FORMAT_VERSION).map_err(|e| self.err(e))?;
                        meta.insert(SCHEMA_CHECK_KEY, schema_check(FORMAT_VERSION))
                            .map_err(|e| self.err(e))?;
                        meta.insert(NEXT_ID_KEY, 1).map_err(|e| self.err(e))?;
                        meta.insert(NEXT_ID_CHECK_KEY, next_id_check(1))
                            .map_err(|e| self.err(e))?;
                    }
                    txn.commit().map_err(|e| self.err(e))
                })
            }
        }
    }

    /// The next record id, verified against its checksum.
    fn next_id(&self, meta: &impl ReadableTable<&'static str, u64>) -> Result<u64, LedgerError> {
        let next = meta.get(NEXT_ID_KEY).map_err(|e| self.err(e))?.map(|v| v.value());
        let check = meta.get(NEXT_ID_CHECK_KEY).map_err(|e| self.err(e))?.map(|v| v.value());
        let damaged = || Damaged::Meta {
            key: NEXT_ID_KEY.into(),
        };
        match (next, check) {
            (Some(next), Some(check)) if check == next_id_check(next) => Ok(next),
            (Some(next), Some(check)) => Err(self.corrupt(
                damaged(),
                EntryDamage::Checksum {
                    stored: check,
                    computed: next_id_check(next),
                },
            )),
            _ => Err(corrupt(&self.path, damaged(), "missing")),
        }
    }

    /// Visits records in `[from_us, to_us)`, reading the whole hours
    /// around the range and counting them into `seen`.
    fn records_in(
        &self,
        read: &ReadTransaction,
        from_us: u64,
        to_us: u64,
        seen: &mut BTreeMap<u64, Digest>,
        visit: &mut dyn FnMut(LedgerRecord) -> Result<(), LedgerError>,
    ) -> Result<(), LedgerError> {
        let table = read.open_table(RECORDS).map_err(|e| self.err(e))?;
        let (lo, hi) = whole_hours(from_us, to_us);
        let range = (Bound::Included((lo, 0)), upper(hi, |h| (h, 0)));
        let mut last: Option<(u64, u64)> = None;
        for item in table.range(range).map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let (at_us, id) = k.value();
            if last.is_some_and(|l| l >= (at_us, id)) || at_us < lo || hi.is_some_and(|h| at_us >= h) {
                return Err(corrupt(
                    &self.path,
                    Damaged::Record { at_us, id },
                    "out of order in the records table",
                ));
            }
            last = Some((at_us, id));
            let record = RecordCodec::decode(at_us, id, v.value())
                .map_err(|d| self.corrupt(Damaged::Record { at_us, id }, d))?;
            seen.entry(hour_of(at_us)).or_default().add_record(seal_of(v.value()));
            if (from_us..to_us).contains(&at_us) {
                visit(record)?;
            }
        }
        Ok(())
    }

    /// Visits daily aggregates whose day starts in `[from_us, to_us)`,
    /// counting those of the whole hours around the range into `seen`.
    fn aggregates_in(
        &self,
        read: &ReadTransaction,
        from_us: u64,
        to_us: u64,
        seen: &mut BTreeMap<u64, Digest>,
        visit: &mut dyn FnMut(UsageRow) -> Result<(), LedgerError>,
    ) -> Result<(), LedgerError> {
        let table = read.open_table(DAILY).map_err(|e| self.err(e))?;
        let empty: &[u8] = &[];
        let (lo, hi) = whole_hours(from_us, to_us);
        let range = (Bound::Included((lo, empty)), upper(hi, |h| (h, empty)));
        for item in table.range(range).map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let (day, group) = k.value();
            if day < lo || hi.is_some_and(|h| day >= h) {
                return Err(corrupt(
                    &self.path,
                    Damaged::Aggregate { day_us: day },
                    "out of order in the daily table",
                ));
            }
            let (kind, meta, (amount, cost, records)) = decode_aggregate(day, group, v.value())
                .map_err(|d| self.corrupt(Damaged::Aggregate { day_us: day }, d))?;
            seen.entry(hour_of(day)).or_default().add_aggregate(seal_of(v.value()));
            if (from_us..to_us).contains(&day) {
                visit(UsageRow {
                    at_us: day,
                    kind,
                    amount,
                    cost_micro_usd: cost,
                    records,
                    meta,
                    compacted: true,
                })?;
            }
        }
        Ok(())
    }

    /// Checks what a read of `[from_us, to_us)` saw against the hour index:
    /// a record or aggregate that a damaged page hid (or showed twice, or
    /// from an old copy) fails here.
    fn check_index(
        &self,
        read: &ReadTransaction,
        from_us: u64,
        to_us: u64,
        seen: &BTreeMap<u64, Digest>,
        records: bool,
        aggregates: bool,
    ) -> Result<(), LedgerError> {
        let table = read.open_table(INDEX).map_err(|e| self.err(e))?;
        let (lo, hi) = whole_hours(from_us, to_us);
        let mut expected = BTreeMap::new();
        for item in table
            .range((Bound::Included(lo), upper(hi, |h| h)))
            .map_err(|e| self.err(e))?
        {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let hour = k.value();
            let digest =
                Digest::decode(hour, v.value()).map_err(|d| self.corrupt(Damaged::Index { hour_us: hour }, d))?;
            expected.insert(hour, digest);
        }
        let hours: BTreeSet<u64> = expected.keys().chain(seen.keys()).copied().collect();
        for hour in hours {
            let e = expected.get(&hour).copied().unwrap_or_default();
            let s = seen.get(&hour).copied().unwrap_or_default();
            if let Some(detail) = index_mismatch(&e, &s, records, aggregates) {
                return Err(corrupt(&self.path, Damaged::Index { hour_us: hour }, detail));
            }
        }
        Ok(())
    }

    /// Records in the store (committed, not compacted).
    pub fn record_count(&self) -> Result<u64, LedgerError> {
        self.guarded("counting records", || {
            let read = self.begin_read()?;
            let t = read.open_table(RECORDS).map_err(|e| self.err(e))?;
            t.len().map_err(|e| self.err(e))
        })
    }

    /// Every table, entry by entry, into `report`.
    fn scan(&self, report: &mut VerifyReport) {
        let mut damage = Vec::new();
        let note = |r: Result<(), LedgerError>, damage: &mut Vec<Damage>| match r {
            Ok(()) => {}
            Err(LedgerError::Corrupt { what, detail, .. }) => damage.push(Damage { what, detail }),
            Err(e) => damage.push(Damage {
                what: Damaged::Pages,
                detail: e.to_string(),
            }),
        };
        let read = match self.begin_read() {
            Ok(r) => r,
            Err(e) => {
                note(Err(e), &mut damage);
                report.damage.extend(damage);
                return;
            }
        };
        let mut next_id = None;
        // What the records and aggregates read add up to, per hour.
        let mut seen: BTreeMap<u64, Digest> = BTreeMap::new();
        let r = self.guarded("reading the metadata", || {
            let meta = read.open_table(META).map_err(|e| self.err(e))?;
            next_id = Some(self.next_id(&meta)?);
            Ok(())
        });
        note(r, &mut damage);
        let r = self.guarded("reading records", || {
            let table = read.open_table(RECORDS).map_err(|e| self.err(e))?;
            let mut last: Option<(u64, u64)> = None;
            for item in table.iter().map_err(|e| self.err(e))? {
                let (k, v) = item.map_err(|e| self.err(e))?;
                let (at_us, id) = k.value();
                let what = Damaged::Record { at_us, id };
                if last.is_some_and(|l| l >= (at_us, id)) {
                    damage.push(Damage {
                        what,
                        detail: "out of order in the records table".into(),
                    });
                    continue;
                }
                last = Some((at_us, id));
                if let Some(next) = next_id
                    && id >= next
                {
                    damage.push(Damage {
                        what,
                        detail: format!("id is not below the next id {next}"),
                    });
                    continue;
                }
                match RecordCodec::decode(at_us, id, v.value()) {
                    Ok(_) => {
                        report.records += 1;
                        seen.entry(hour_of(at_us)).or_default().add_record(seal_of(v.value()));
                    }
                    Err(d) => damage.push(Damage {
                        what,
                        detail: d.to_string(),
                    }),
                }
            }
            Ok(())
        });
        note(r, &mut damage);
        let r = self.guarded("reading daily aggregates", || {
            let table = read.open_table(DAILY).map_err(|e| self.err(e))?;
            for item in table.iter().map_err(|e| self.err(e))? {
                let (k, v) = item.map_err(|e| self.err(e))?;
                let (day, group) = k.value();
                match decode_aggregate(day, group, v.value()) {
                    Ok(_) => {
                        report.aggregates += 1;
                        seen.entry(hour_of(day)).or_default().add_aggregate(seal_of(v.value()));
                    }
                    Err(d) => damage.push(Damage {
                        what: Damaged::Aggregate { day_us: day },
                        detail: d.to_string(),
                    }),
                }
            }
            Ok(())
        });
        note(r, &mut damage);
        let r = self.guarded("reading budgets", || {
            let table = read.open_table(BUDGETS).map_err(|e| self.err(e))?;
            for item in table.iter().map_err(|e| self.err(e))? {
                let (k, v) = item.map_err(|e| self.err(e))?;
                match self.decode_budget(k.value(), v.value()) {
                    Ok(_) => report.budgets += 1,
                    Err(LedgerError::Corrupt { what, detail, .. }) => damage.push(Damage { what, detail }),
                    Err(e) => return Err(e),
                }
            }
            let table = read.open_table(SPEND).map_err(|e| self.err(e))?;
            for item in table.iter().map_err(|e| self.err(e))? {
                let (k, v) = item.map_err(|e| self.err(e))?;
                let (budget, bucket) = k.value();
                match self.decode_spend(budget, bucket, v.value()) {
                    Ok(_) => report.spend_buckets += 1,
                    Err(LedgerError::Corrupt { what, detail, .. }) => damage.push(Damage { what, detail }),
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        });
        note(r, &mut damage);
        let r = self.guarded("reading the price table", || self.prices_in(&read).map(|_| ()));
        note(r, &mut damage);
        // Hours whose entries were damaged are already listed: only intact
        // entries are compared with the index.
        let damaged_hours: BTreeSet<u64> = damage
            .iter()
            .filter_map(|d| match d.what {
                Damaged::Record { at_us, .. } => Some(hour_of(at_us)),
                Damaged::Aggregate { day_us } => Some(hour_of(day_us)),
                _ => None,
            })
            .collect();
        let r = self.guarded("reading the hour index", || {
            let table = read.open_table(INDEX).map_err(|e| self.err(e))?;
            let mut expected = BTreeMap::new();
            for item in table.iter().map_err(|e| self.err(e))? {
                let (k, v) = item.map_err(|e| self.err(e))?;
                let hour = k.value();
                match Digest::decode(hour, v.value()) {
                    Ok(d) => {
                        expected.insert(hour, d);
                    }
                    Err(d) => damage.push(Damage {
                        what: Damaged::Index { hour_us: hour },
                        detail: d.to_string(),
                    }),
                }
            }
            let listed: BTreeSet<u64> = damage
                .iter()
                .filter_map(|d| match d.what {
                    Damaged::Index { hour_us } => Some(hour_us),
                    _ => None,
                })
                .collect();
            let hours: BTreeSet<u64> = expected.keys().chain(seen.keys()).copied().collect();
            for hour in hours {
                if damaged_hours.contains(&hour) || listed.contains(&hour) {
                    continue;
                }
                let e = expected.get(&hour).copied().unwrap_or_default();
                let s = seen.get(&hour).copied().unwrap_or_default();
                if let Some(detail) = index_mismatch(&e, &s, true, true) {
                    damage.push(Damage {
                        what: Damaged::Index { hour_us: hour },
                        detail,
                    });
                }
            }
            Ok(())
        });
        note(r, &mut damage);
        report.damage.extend(damage);
    }

    fn decode_budget(&self, key: &str, value: &[u8]) -> Result<Budget, LedgerError> {
        let what = || Damaged::Budget { id: key.to_string() };
        let body = unseal(Domain::Budget, key.as_bytes(), value).map_err(|d| self.corrupt(what(), d))?;
        let budget: Budget = decode_body(body, false).map_err(|d| self.corrupt(what(), d))?;
        if budget.id != key {
            return Err(corrupt(&self.path, what(), format!("holds budget `{}`", budget.id)));
        }
        Ok(budget)
    }

    fn decode_spend(&self, budget: &str, bucket: u64, (amount, check): (u64, u64)) -> Result<u64, LedgerError> {
        let expected = spend_value(budget, bucket, amount).1;
        if check != expected {
            return Err(self.corrupt(
                Damaged::Spend {
                    budget: budget.to_string(),
                    bucket_us: bucket,
                },
                EntryDamage::Checksum {
                    stored: check,
                    computed: expected,
                },
            ));
        }
        Ok(amount)
    }

    fn prices_in(&self, read: &ReadTransaction) -> Result<PriceTable, LedgerError> {
        let t = read.open_table(CONFIG).map_err(|e| self.err(e))?;
        match t.get(PRICES_KEY).map_err(|e| self.err(e))? {
            Some(v) => {
                let body = unseal(Domain::Prices, PRICES_KEY.as_bytes(), v.value())
                    .map_err(|d| self.corrupt(Damaged::Prices, d))?;
                decode_body(body, false).map_err(|d| self.corrupt(Damaged::Prices, d))
            }
            None => Ok(PriceTable::new()),
        }
    }
}

/// Changes the index entry of `hour` (removed when it becomes empty).
fn update_index(
    store: &RedbStore,
    index: &mut redb::Table<u64, &[u8]>,
    hour: u64,
    change: impl FnOnce(&mut Digest),
) -> Result<(), LedgerError> {
    let mut digest = match index.get(hour).map_err(|e| store.err(e))? {
        Some(v) => Digest::decode(hour, v.value()).map_err(|d| store.corrupt(Damaged::Index { hour_us: hour }, d))?,
        None => Digest::default(),
    };
    change(&mut digest);
    if digest == Digest::default() {
        index.remove(hour).map_err(|e| store.err(e))?;
    } else {
        let value = seal(Domain::Index, &hour.to_le_bytes(), digest.encode());
        index.insert(hour, value.as_slice()).map_err(|e| store.err(e))?;
    }
    Ok(())
}

/// Copies the file and opens the copy (see the module docs).
fn snapshot(path: &Path) -> Result<Engine, LedgerError> {
    for _ in 0..SNAPSHOT_ATTEMPTS {
        let before = read_header(path)?;
        let (copy, mut file) = SnapshotCopy::create().map_err(|e| io_err(&std::env::temp_dir(), e))?;
        let mut source = File::open(path).map_err(|e| io_err(path, e))?;
        let copied = std::io::copy(&mut source, &mut file).map_err(|e| io_err(&copy.path, e))?;
        let stable = read_header(path)? == before;
        if copied == 0 {
            return Err(corrupt(path, Damaged::File, "the file is empty (0 bytes)"));
        }
        let opened = catch_unwind(AssertUnwindSafe(|| Database::builder().create_file(file)));
        let db = match opened {
            Ok(Ok(db)) => db,
            Ok(Err(e)) => match map_err(e.into(), path) {
                LedgerError::Corrupt { .. } if !stable => continue,
                e => return Err(e),
            },
            Err(_) if !stable => continue,
            Err(p) => {
                return Err(corrupt(
                    path,
                    Damaged::File,
                    format!("the storage engine could not open it ({})", panic_message(p.as_ref())),
                ));
            }
        };
        return Ok(Engine::Snapshot { db, _copy: copy });
    }
    Err(LedgerError::Busy {
        path: path.to_path_buf(),
        attempts: SNAPSHOT_ATTEMPTS,
    })
}

impl LedgerStore for RedbStore {
    fn append(&self, records: &[NewRecord], spend: &[SpendDelta]) -> Result<Vec<RecordId>, LedgerError> {
        let db = self.writable()?;
        self.guarded("appending records", || {
            let txn = db.begin_write().map_err(|e| self.err(e))?;
            let mut ids = Vec::with_capacity(records.len());
            {
                let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
                let mut next = self.next_id(&meta)?;
                let mut table = txn.open_table(RECORDS).map_err(|e| self.err(e))?;
                let mut added: BTreeMap<u64, Digest> = BTreeMap::new();
                for r in records {
                    let value = RecordCodec::encode_parts(r.at_us, next, &r.kind, r.amount, r.cost_micro_usd, &r.meta);
                    table
                        .insert((r.at_us, next), value.as_slice())
                        .map_err(|e| self.err(e))?;
                    added.entry(hour_of(r.at_us)).or_default().add_record(seal_of(&value));
                    ids.push(next);
                    next += 1;
                }
                let mut index = txn.open_table(INDEX).map_err(|e| self.err(e))?;
                for (hour, add) in added {
                    update_index(self, &mut index, hour, |d| {
                        d.records = d.records.wrapping_add(add.records);
                        d.records_sum = d.records_sum.wrapping_add(add.records_sum);
                    })?;
                }
                meta.insert(NEXT_ID_KEY, next).map_err(|e| self.err(e))?;
                meta.insert(NEXT_ID_CHECK_KEY, next_id_check(next))
                    .map_err(|e| self.err(e))?;
                let mut sp = txn.open_table(SPEND).map_err(|e| self.err(e))?;
                for d in spend {
                    let (budget, bucket) = (d.budget.as_str(), d.bucket_start_us);
                    let cur = match sp.get((budget, bucket)).map_err(|e| self.err(e))? {
                        Some(v) => self.decode_spend(budget, bucket, v.value())?,
                        None => 0,
                    };
                    sp.insert(
                        (budget, bucket),
                        spend_value(budget, bucket, cur.saturating_add(d.amount)),
                    )
                    .map_err(|e| self.err(e))?;
                }
            }
            txn.commit().map_err(|e| self.err(e))?;
            Ok(ids)
        })
    }

    fn visit_records(
        &self,
        from_us: u64,
        to_us: u64,
        visit: &mut dyn FnMut(LedgerRecord) -> Result<(), LedgerError>,
    ) -> Result<(), LedgerError> {
        if from_us >= to_us {
            return Ok(());
        }
        let mut escaped = None;
        let r = self.guarded("reading records", || {
            let read = self.begin_read()?;
            let mut seen = BTreeMap::new();
            self.records_in(&read, from_us, to_us, &mut seen, &mut |r| {
                call_visitor(&mut escaped, || visit(r))
            })?;
            self.check_index(&read, from_us, to_us, &seen, true, false)
        });
        resume_escaped(escaped, r)
    }

    fn visit_aggregates(
        &self,
        from_us: u64,
        to_us: u64,
        visit: &mut dyn FnMut(UsageRow) -> Result<(), LedgerError>,
    ) -> Result<(), LedgerError> {
        if from_us >= to_us {
            return Ok(());
        }
        let mut escaped = None;
        let r = self.guarded("reading daily aggregates", || {
            let read = self.begin_read()?;
            let mut seen = BTreeMap::new();
            self.aggregates_in(&read, from_us, to_us, &mut seen, &mut |r| {
                call_visitor(&mut escaped, || visit(r))
            })?;
            self.check_index(&read, from_us, to_us, &seen, false, true)
        });
        resume_escaped(escaped, r)
    }

    /// Both tables from one read transaction: a compaction committing
    /// meanwhile moves records from `records` to `daily` in one write, so
    /// one snapshot sees each record exactly once, raw or aggregated.
    fn visit_usage(
        &self,
        from_us: u64,
        to_us: u64,
        visit: &mut dyn FnMut(UsageRow) -> Result<(), LedgerError>,
    ) -> Result<(), LedgerError> {
        if from_us >= to_us {
            return Ok(());
        }
        let mut escaped = None;
        let r = self.guarded("reading usage", || {
            let read = self.begin_read()?;
            let mut seen = BTreeMap::new();
            self.aggregates_in(&read, from_us, to_us, &mut seen, &mut |r| {
                call_visitor(&mut escaped, || visit(r))
            })?;
            self.records_in(&read, from_us, to_us, &mut seen, &mut |r| {
                call_visitor(&mut escaped, || visit(UsageRow::from(&r)))
            })?;
            self.check_index(&read, from_us, to_us, &seen, true, true)
        });
        resume_escaped(escaped, r)
    }

    fn put_budget(&self, budget: &Budget, buckets: &[(u64, u64)]) -> Result<(), LedgerError> {
        let db = self.writable()?;
        self.guarded("writing a budget", || {
            let txn = db.begin_write().map_err(|e| self.err(e))?;
            {
                let mut defs = txn.open_table(BUDGETS).map_err(|e| self.err(e))?;
                let id = budget.id.as_str();
                let value = seal(Domain::Budget, id.as_bytes(), encode_body(budget));
                defs.insert(id, value.as_slice()).map_err(|e| self.err(e))?;
                let mut sp = txn.open_table(SPEND).map_err(|e| self.err(e))?;
                sp.retain_in((id, 0)..=(id, u64::MAX), |_, _| false)
                    .map_err(|e| self.err(e))?;
                for (bucket, amount) in buckets {
                    sp.insert((id, *bucket), spend_value(id, *bucket, *amount))
                        .map_err(|e| self.err(e))?;
                }
            }
            txn.commit().map_err(|e| self.err(e))
        })
    }

    fn remove_budget(&self, id: &str) -> Result<bool, LedgerError> {
        let db = self.writable()?;
        self.guarded("removing a budget", || {
            let txn = db.begin_write().map_err(|e| self.err(e))?;
            let existed;
            {
                let mut defs = txn.open_table(BUDGETS).map_err(|e| self.err(e))?;
                existed = defs.remove(id).map_err(|e| self.err(e))?.is_some();
                let mut sp = txn.open_table(SPEND).map_err(|e| self.err(e))?;
                sp.retain_in((id, 0)..=(id, u64::MAX), |_, _| false)
                    .map_err(|e| self.err(e))?;
            }
            txn.commit().map_err(|e| self.err(e))?;
            Ok(existed)
        })
    }

    /// Reads both tables front to back (no key seeks, which a damaged
    /// branch page could misdirect) and groups the spend by budget.
    fn load_budgets(&self) -> Result<Vec<StoredBudget>, LedgerError> {
        self.guarded("reading budgets", || {
            let read = self.begin_read()?;
            let defs = read.open_table(BUDGETS).map_err(|e| self.err(e))?;
            let sp = read.open_table(SPEND).map_err(|e| self.err(e))?;
            let mut spend: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
            let mut last: Option<(String, u64)> = None;
            for b in sp.iter().map_err(|e| self.err(e))? {
                let (k, v) = b.map_err(|e| self.err(e))?;
                let (budget, bucket) = k.value();
                if last.as_ref().is_some_and(|(b, k)| (b.as_str(), *k) >= (budget, bucket)) {
                    return Err(corrupt(
                        &self.path,
                        Damaged::Spend {
                            budget: budget.to_string(),
                            bucket_us: bucket,
                        },
                        "out of order in the spend table",
                    ));
                }
                last = Some((budget.to_string(), bucket));
                let amount = self.decode_spend(budget, bucket, v.value())?;
                spend.entry(budget.to_string()).or_default().push((bucket, amount));
            }
            let mut out = Vec::new();
            for item in defs.iter().map_err(|e| self.err(e))? {
                let (k, v) = item.map_err(|e| self.err(e))?;
                let budget = self.decode_budget(k.value(), v.value())?;
                let buckets = spend.remove(&budget.id).unwrap_or_default();
                out.push((budget, buckets));
            }
            Ok(out)
        })
    }

    fn put_prices(&self, prices: &PriceTable) -> Result<(), LedgerError> {
        let db = self.writable()?;
        self.guarded("writing prices", || {
            let txn = db.begin_write().map_err(|e| self.err(e))?;
            {
                let mut t = txn.open_table(CONFIG).map_err(|e| self.err(e))?;
                let value = seal(Domain::Prices, PRICES_KEY.as_bytes(), encode_body(prices));
                t.insert(PRICES_KEY, value.as_slice()).map_err(|e| self.err(e))?;
            }
            txn.commit().map_err(|e| self.err(e))
        })
    }

    fn load_prices(&self) -> Result<PriceTable, LedgerError> {
        self.guarded("reading prices", || {
            let read = self.begin_read()?;
            self.prices_in(&read)
        })
    }

    fn compact(&self, before_us: u64, buckets_before_us: u64, chunk: usize) -> Result<CompactionStats, LedgerError> {
        let db = self.writable()?;
        let chunk = chunk.max(1);
        let mut stats = CompactionStats::default();
        loop {
            let done = self.guarded("compacting records", || {
                let txn = db.begin_write().map_err(|e| self.err(e))?;
                let done;
                {
                    let mut records = txn.open_table(RECORDS).map_err(|e| self.err(e))?;
                    let mut daily = txn.open_table(DAILY).map_err(|e| self.err(e))?;
                    let mut index = txn.open_table(INDEX).map_err(|e| self.err(e))?;
                    let mut removed: BTreeMap<u64, Digest> = BTreeMap::new();
                    let mut keys = Vec::new();
                    let mut sums: BTreeMap<(u64, Vec<u8>), Sums> = BTreeMap::new();
                    for item in records
                        .range((0, 0)..(before_us, 0))
                        .map_err(|e| self.err(e))?
                        .take(chunk)
                    {
                        let (k, v) = item.map_err(|e| self.err(e))?;
                        let (at_us, id) = k.value();
                        // A damaged record is never folded into a freshly
                        // sealed aggregate: the compaction fails instead.
                        let r = RecordCodec::decode(at_us, id, v.value())
                            .map_err(|d| self.corrupt(Damaged::Record { at_us, id }, d))?;
                        let group = encode_body(&(&r.kind, &r.meta));
                        let s = sums.entry((super::clock::day_start(at_us), group)).or_insert((0, 0, 0));
                        *s = (
                            s.0.saturating_add(r.amount),
                            s.1.saturating_add(r.cost_micro_usd),
                            s.2 + 1,
                        );
                        removed
                            .entry(hour_of(at_us))
                            .or_default()
                            .add_record(seal_of(v.value()));
                        keys.push((at_us, id));
                    }
                    done = keys.len() < chunk;
                    for key in &keys {
                        records.remove(key).map_err(|e| self.err(e))?;
                    }
                    for (hour, gone) in removed {
                        update_index(self, &mut index, hour, |d| {
                            d.records = d.records.wrapping_sub(gone.records);
                            d.records_sum = d.records_sum.wrapping_sub(gone.records_sum);
                        })?;
                    }
                    for ((day, group), (amount, cost, n)) in &sums {
                        let key = (*day, group.as_slice());
                        let (cur, old_seal) = match daily.get(key).map_err(|e| self.err(e))? {
                            Some(v) => {
                                let cur = decode_aggregate(*day, group, v.value())
                                    .map_err(|d| self.corrupt(Damaged::Aggregate { day_us: *day }, d))?
                                    .2;
                                (cur, Some(seal_of(v.value())))
                            }
                            None => ((0, 0, 0), None),
                        };
                        let (a, c, r) = cur;
                        let sums = (a.saturating_add(*amount), c.saturating_add(*cost), r + n);
                        let value = seal(Domain::Aggregate, &aggregate_key(*day, group), encode_sums(sums));
                        daily.insert(key, value.as_slice()).map_err(|e| self.err(e))?;
                        update_index(self, &mut index, hour_of(*day), |d| match old_seal {
                            Some(old) => {
                                d.aggregates_sum = d.aggregates_sum.wrapping_sub(old).wrapping_add(seal_of(&value))
                            }
                            None => d.add_aggregate(seal_of(&value)),
                        })?;
                    }
                    stats.records_compacted += keys.len() as u64;
                    stats.aggregates_touched += sums.len() as u64;
                    if done {
                        let mut sp = txn.open_table(SPEND).map_err(|e| self.err(e))?;
                        let mut pruned = 0;
                        sp.retain(|(_, bucket), _| {
                            let keep = bucket >= buckets_before_us;
                            pruned += u64::from(!keep);
                            keep
                        })
                        .map_err(|e| self.err(e))?;
                        stats.spend_buckets_pruned = pruned;
                    }
                }
                txn.commit().map_err(|e| self.err(e))?;
                Ok(done)
            })?;
            if done {
                return Ok(stats);
            }
        }
    }
}

#[cfg(test)]
mod tests;
