//! [`RedbStore`]: the embedded [`LedgerStore`], one redb file in the data
//! directory (`<data_dir>/ledger.redb`).
//!
//! Tables: `records` keyed by (time, id) so that a time range is one ordered
//! range scan; `daily` keyed by (UTC day, kind + metadata) for compacted
//! usage; `budgets` and `budget_spend` keyed by (budget, bucket start);
//! `config` (the price table) and `meta` (schema version, next record id).
//! Every append is one write transaction with redb's default
//! `Durability::Immediate`: when `commit` returns, the records, their ids
//! and the budgets' spend are on disk together.
//!
//! A file that is not a ledger store, or that redb reports corrupt, gives
//! [`LedgerError::Corrupt`] and is left as it is; a file that another
//! process holds open gives [`LedgerError::Locked`] (redb takes an exclusive
//! file lock). After an unclean shutdown redb recovers the last committed
//! transaction on open.

use std::collections::BTreeMap;
use std::io::Read;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};

use nexus_swarm_runtime::resources::ResourceKind;
use nexus_swarm_runtime::usage::UsageMeta;
use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle,
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::budget::Budget;
use super::error::LedgerError;
use super::gate::SpendDelta;
use super::pricing::PriceTable;
use super::record::{LedgerRecord, NewRecord, RecordId};
use super::store::{CompactionStats, LedgerStore, StoredBudget, UsageRow};

/// The store's file name inside the data directory.
pub const STORE_FILE: &str = "ledger.redb";
const SCHEMA_VERSION: u64 = 1;
/// redb's file magic number (its first 9 bytes).
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

const RECORDS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("records");
const DAILY: TableDefinition<(u64, &[u8]), (u64, u64, u64)> = TableDefinition::new("daily");
const BUDGETS: TableDefinition<&str, &[u8]> = TableDefinition::new("budgets");
const SPEND: TableDefinition<(&str, u64), u64> = TableDefinition::new("budget_spend");
const CONFIG: TableDefinition<&str, &[u8]> = TableDefinition::new("config");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

#[derive(Serialize, Deserialize)]
struct RecordBody {
    kind: ResourceKind,
    amount: u64,
    cost: u64,
    meta: UsageMeta,
}

/// The embedded ledger store.
pub struct RedbStore {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").field("path", &self.path).finish()
    }
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(v, bincode::config::standard()).expect("ledger values serialize")
}

impl RedbStore {
    /// Opens (or creates) the store in `data_dir`, creating the directory.
    pub fn open(data_dir: impl AsRef<Path>) -> Result<RedbStore, LedgerError> {
        let dir = data_dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| LedgerError::Io(format!("{}: {e}", dir.display())))?;
        let path = dir.join(STORE_FILE);
        check_magic(&path)?;
        // redb runs its repair pass on a brand-new file too: only an existing
        // store is worth a warning.
        let existed = std::fs::metadata(&path).map(|m| m.len() > 0).unwrap_or(false);
        let repair_path = path.clone();
        let opened = std::panic::catch_unwind(AssertUnwindSafe(|| {
            Database::builder()
                .set_repair_callback(move |s| {
                    if !existed {
                        return;
                    }
                    tracing::warn!(path = %repair_path.display(), progress = s.progress(), "recovering ledger store after an unclean shutdown");
                })
                .create(&path)
        }));
        let db = match opened {
            Ok(Ok(db)) => db,
            Ok(Err(e)) => return Err(map_err(e.into(), &path)),
            Err(_) => {
                return Err(LedgerError::Corrupt {
                    path,
                    detail: "the storage engine could not read the file".into(),
                });
            }
        };
        let store = RedbStore { db, path };
        store.init()?;
        Ok(store)
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, e: impl Into<redb::Error>) -> LedgerError {
        map_err(e.into(), &self.path)
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8], what: &str) -> Result<T, LedgerError> {
        bincode::serde::decode_from_slice(bytes, bincode::config::standard())
            .map(|(v, _)| v)
            .map_err(|e| LedgerError::Corrupt {
                path: self.path.clone(),
                detail: format!("undecodable {what}: {e}"),
            })
    }

    fn init(&self) -> Result<(), LedgerError> {
        let read = self.db.begin_read().map_err(|e| self.err(e))?;
        let tables: Vec<String> = read
            .list_tables()
            .map_err(|e| self.err(e))?
            .map(|t| t.name().to_string())
            .collect();
        let version = match read.open_table(META) {
            Ok(t) => t.get("schema").map_err(|e| self.err(e))?.map(|v| v.value()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(self.err(e)),
        };
        drop(read);
        match version {
            Some(SCHEMA_VERSION) => Ok(()),
            Some(v) => Err(LedgerError::Corrupt {
                path: self.path.clone(),
                detail: format!("unknown ledger schema version {v}"),
            }),
            None if !tables.is_empty() => Err(LedgerError::Corrupt {
                path: self.path.clone(),
                detail: "a redb file that is not a ledger store".into(),
            }),
            None => {
                let txn = self.db.begin_write().map_err(|e| self.err(e))?;
                {
                    txn.open_table(RECORDS).map_err(|e| self.err(e))?;
                    txn.open_table(DAILY).map_err(|e| self.err(e))?;
                    txn.open_table(BUDGETS).map_err(|e| self.err(e))?;
                    txn.open_table(SPEND).map_err(|e| self.err(e))?;
                    txn.open_table(CONFIG).map_err(|e| self.err(e))?;
                    let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
                    meta.insert("schema", SCHEMA_VERSION).map_err(|e| self.err(e))?;
                    meta.insert("next_id", 1).map_err(|e| self.err(e))?;
                }
                txn.commit().map_err(|e| self.err(e))
            }
        }
    }

    fn records_in(
        &self,
        read: &ReadTransaction,
        from_us: u64,
        to_us: u64,
        visit: &mut dyn FnMut(LedgerRecord) -> Result<(), LedgerError>,
    ) -> Result<(), LedgerError> {
        let table = read.open_table(RECORDS).map_err(|e| self.err(e))?;
        for item in table.range((from_us, 0)..(to_us, 0)).map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let (at_us, id) = k.value();
            let body: RecordBody = self.decode(v.value(), "record")?;
            visit(LedgerRecord {
                id,
                at_us,
                kind: body.kind,
                amount: body.amount,
                cost_micro_usd: body.cost,
                meta: body.meta,
            })?;
        }
        Ok(())
    }

    fn aggregates_in(
        &self,
        read: &ReadTransaction,
        from_us: u64,
        to_us: u64,
        visit: &mut dyn FnMut(UsageRow) -> Result<(), LedgerError>,
    ) -> Result<(), LedgerError> {
        let table = read.open_table(DAILY).map_err(|e| self.err(e))?;
        let empty: &[u8] = &[];
        for item in table.range((from_us, empty)..(to_us, empty)).map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let (day, group) = k.value();
            let (kind, meta): (ResourceKind, UsageMeta) = self.decode(group, "aggregate key")?;
            let (amount, cost, records) = v.value();
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
        Ok(())
    }

    /// Records in the store (committed, not compacted).
    pub fn record_count(&self) -> Result<u64, LedgerError> {
        let read = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = read.open_table(RECORDS).map_err(|e| self.err(e))?;
        t.len().map_err(|e| self.err(e))
    }
}

fn check_magic(path: &Path) -> Result<(), LedgerError> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(LedgerError::Io(format!("{}: {e}", path.display()))),
    };
    let mut head = Vec::with_capacity(REDB_MAGIC.len());
    (&mut file)
        .take(REDB_MAGIC.len() as u64)
        .read_to_end(&mut head)
        .map_err(|e| LedgerError::Io(format!("{}: {e}", path.display())))?;
    if !head.is_empty() && head != REDB_MAGIC {
        return Err(LedgerError::Corrupt {
            path: path.to_path_buf(),
            detail: "not a redb file (bad magic number)".into(),
        });
    }
    Ok(())
}

fn map_err(e: redb::Error, path: &Path) -> LedgerError {
    match e {
        redb::Error::DatabaseAlreadyOpen => LedgerError::Locked {
            path: path.to_path_buf(),
        },
        redb::Error::Corrupted(detail) => LedgerError::Corrupt {
            path: path.to_path_buf(),
            detail,
        },
        redb::Error::UpgradeRequired(v) => LedgerError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("file format {v} is not this version's"),
        },
        redb::Error::TableTypeMismatch { table, .. } => LedgerError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("table {table} has foreign types"),
        },
        redb::Error::Io(io) => LedgerError::Io(format!("{}: {io}", path.display())),
        other => LedgerError::Store(other.to_string()),
    }
}

impl LedgerStore for RedbStore {
    fn append(&self, records: &[NewRecord], spend: &[SpendDelta]) -> Result<Vec<RecordId>, LedgerError> {
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        let mut ids = Vec::with_capacity(records.len());
        {
            let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
            let mut next = meta
                .get("next_id")
                .map_err(|e| self.err(e))?
                .map(|v| v.value())
                .unwrap_or(1);
            let mut table = txn.open_table(RECORDS).map_err(|e| self.err(e))?;
            for r in records {
                let body = encode(&RecordBody {
                    kind: r.kind.clone(),
                    amount: r.amount,
                    cost: r.cost_micro_usd,
                    meta: r.meta.clone(),
                });
                table
                    .insert((r.at_us, next), body.as_slice())
                    .map_err(|e| self.err(e))?;
                ids.push(next);
                next += 1;
            }
            meta.insert("next_id", next).map_err(|e| self.err(e))?;
            let mut sp = txn.open_table(SPEND).map_err(|e| self.err(e))?;
            for d in spend {
                let key = (d.budget.as_str(), d.bucket_start_us);
                let cur = sp.get(key).map_err(|e| self.err(e))?.map(|v| v.value()).unwrap_or(0);
                sp.insert(key, cur.saturating_add(d.amount)).map_err(|e| self.err(e))?;
            }
        }
        txn.commit().map_err(|e| self.err(e))?;
        Ok(ids)
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
        let read = self.db.begin_read().map_err(|e| self.err(e))?;
        self.records_in(&read, from_us, to_us, visit)
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
        let read = self.db.begin_read().map_err(|e| self.err(e))?;
        self.aggregates_in(&read, from_us, to_us, visit)
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
        let read = self.db.begin_read().map_err(|e| self.err(e))?;
        self.aggregates_in(&read, from_us, to_us, visit)?;
        self.records_in(&read, from_us, to_us, &mut |r| visit(UsageRow::from(&r)))
    }

    fn put_budget(&self, budget: &Budget, buckets: &[(u64, u64)]) -> Result<(), LedgerError> {
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut defs = txn.open_table(BUDGETS).map_err(|e| self.err(e))?;
            defs.insert(budget.id.as_str(), encode(budget).as_slice())
                .map_err(|e| self.err(e))?;
            let mut sp = txn.open_table(SPEND).map_err(|e| self.err(e))?;
            let id = budget.id.as_str();
            sp.retain_in((id, 0)..=(id, u64::MAX), |_, _| false)
                .map_err(|e| self.err(e))?;
            for (bucket, amount) in buckets {
                sp.insert((id, *bucket), *amount).map_err(|e| self.err(e))?;
            }
        }
        txn.commit().map_err(|e| self.err(e))
    }

    fn remove_budget(&self, id: &str) -> Result<bool, LedgerError> {
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
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
    }

    fn load_budgets(&self) -> Result<Vec<StoredBudget>, LedgerError> {
        let read = self.db.begin_read().map_err(|e| self.err(e))?;
        let defs = read.open_table(BUDGETS).map_err(|e| self.err(e))?;
        let sp = read.open_table(SPEND).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for item in defs.iter().map_err(|e| self.err(e))? {
            let (_, v) = item.map_err(|e| self.err(e))?;
            let budget: Budget = self.decode(v.value(), "budget")?;
            let id = budget.id.as_str();
            let mut buckets = Vec::new();
            for b in sp.range((id, 0)..=(id, u64::MAX)).map_err(|e| self.err(e))? {
                let (k, v) = b.map_err(|e| self.err(e))?;
                buckets.push((k.value().1, v.value()));
            }
            out.push((budget, buckets));
        }
        Ok(out)
    }

    fn put_prices(&self, prices: &PriceTable) -> Result<(), LedgerError> {
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = txn.open_table(CONFIG).map_err(|e| self.err(e))?;
            t.insert("prices", encode(prices).as_slice()).map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))
    }

    fn load_prices(&self) -> Result<PriceTable, LedgerError> {
        let read = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = read.open_table(CONFIG).map_err(|e| self.err(e))?;
        match t.get("prices").map_err(|e| self.err(e))? {
            Some(v) => self.decode(v.value(), "price table"),
            None => Ok(PriceTable::new()),
        }
    }

    fn compact(&self, before_us: u64, buckets_before_us: u64, chunk: usize) -> Result<CompactionStats, LedgerError> {
        let chunk = chunk.max(1);
        let mut stats = CompactionStats::default();
        loop {
            let txn = self.db.begin_write().map_err(|e| self.err(e))?;
            let done;
            {
                let mut records = txn.open_table(RECORDS).map_err(|e| self.err(e))?;
                let mut daily = txn.open_table(DAILY).map_err(|e| self.err(e))?;
                let mut keys = Vec::new();
                let mut sums: BTreeMap<(u64, Vec<u8>), (u64, u64, u64)> = BTreeMap::new();
                for item in records
                    .range((0, 0)..(before_us, 0))
                    .map_err(|e| self.err(e))?
                    .take(chunk)
                {
                    let (k, v) = item.map_err(|e| self.err(e))?;
                    let (at_us, id) = k.value();
                    let body: RecordBody = self.decode(v.value(), "record")?;
                    let group = encode(&(&body.kind, &body.meta));
                    let s = sums.entry((super::clock::day_start(at_us), group)).or_insert((0, 0, 0));
                    *s = (s.0.saturating_add(body.amount), s.1.saturating_add(body.cost), s.2 + 1);
                    keys.push((at_us, id));
                }
                done = keys.len() < chunk;
                for key in &keys {
                    records.remove(key).map_err(|e| self.err(e))?;
                }
                for ((day, group), (amount, cost, n)) in &sums {
                    let key = (*day, group.as_slice());
                    let cur = daily.get(key).map_err(|e| self.err(e))?.map(|v| v.value());
                    let (a, c, r) = cur.unwrap_or((0, 0, 0));
                    daily
                        .insert(key, (a.saturating_add(*amount), c.saturating_add(*cost), r + n))
                        .map_err(|e| self.err(e))?;
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
            if done {
                return Ok(stats);
            }
        }
    }
}
