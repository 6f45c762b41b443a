//! [`LedgerStore`]: what the ledger needs from durable storage, small
//! enough that a cluster can later point every node at one PostgreSQL.
//!
//! Every method is synchronous and may block on I/O; the ledger calls them
//! from a blocking thread. A store must make each `append` atomic and
//! durable before it returns: the records, their ids and the budgets'
//! spend deltas commit together or not at all.

use std::fmt;

use nexus_swarm_runtime::resources::ResourceKind;
use nexus_swarm_runtime::usage::UsageMeta;
use serde::{Deserialize, Serialize};

use super::budget::Budget;
use super::error::LedgerError;
use super::gate::SpendDelta;
use super::pricing::PriceTable;
use super::record::{LedgerRecord, NewRecord, RecordId};

/// Usage as reports read it: one record, or one daily aggregate of
/// compacted records with the same kind and metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRow {
    /// The record's time, or the start of the aggregate's UTC day.
    pub at_us: u64,
    /// What was used.
    pub kind: ResourceKind,
    /// How much (summed for an aggregate).
    pub amount: u64,
    /// What it cost (summed for an aggregate).
    pub cost_micro_usd: u64,
    /// Records it stands for (1 for a record).
    pub records: u64,
    /// Who used it.
    pub meta: UsageMeta,
    /// Whether this is a daily aggregate of compacted records.
    pub compacted: bool,
}

impl From<&LedgerRecord> for UsageRow {
    fn from(r: &LedgerRecord) -> Self {
        UsageRow {
            at_us: r.at_us,
            kind: r.kind.clone(),
            amount: r.amount,
            cost_micro_usd: r.cost_micro_usd,
            records: 1,
            meta: r.meta.clone(),
            compacted: false,
        }
    }
}

/// A stored budget with its spend buckets (bucket start, micro-dollars).
pub type StoredBudget = (Budget, Vec<(u64, u64)>);

/// What a compaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactionStats {
    /// Records folded into daily aggregates and deleted.
    pub records_compacted: u64,
    /// Daily aggregate rows written or updated.
    pub aggregates_touched: u64,
    /// Budget spend buckets deleted (older than any period needs).
    pub spend_buckets_pruned: u64,
}

/// Durable storage of a cost ledger.
pub trait LedgerStore: Send + Sync + fmt::Debug + 'static {
    /// Commits records (assigning increasing ids, returned in order) and
    /// adds spend deltas to budgets' buckets, in one durable transaction.
    fn append(&self, records: &[NewRecord], spend: &[SpendDelta]) -> Result<Vec<RecordId>, LedgerError>;

    /// Visits records with `from_us <= at_us < to_us`, in time order.
    fn visit_records(
        &self,
        from_us: u64,
        to_us: u64,
        visit: &mut dyn FnMut(LedgerRecord) -> Result<(), LedgerError>,
    ) -> Result<(), LedgerError>;

    /// Visits daily aggregates whose day starts in `[from_us, to_us)`.
    fn visit_aggregates(
        &self,
        from_us: u64,
        to_us: u64,
        visit: &mut dyn FnMut(UsageRow) -> Result<(), LedgerError>,
    ) -> Result<(), LedgerError>;

    /// Stores a budget's definition and replaces its spend buckets.
    fn put_budget(&self, budget: &Budget, buckets: &[(u64, u64)]) -> Result<(), LedgerError>;

    /// Deletes a budget and its buckets; whether it existed.
    fn remove_budget(&self, id: &str) -> Result<bool, LedgerError>;

    /// Every budget with its spend buckets (bucket start, micro-dollars).
    fn load_budgets(&self) -> Result<Vec<StoredBudget>, LedgerError>;

    /// Stores the price table.
    fn put_prices(&self, prices: &PriceTable) -> Result<(), LedgerError>;

    /// The stored price table (empty if none).
    fn load_prices(&self) -> Result<PriceTable, LedgerError>;

    /// Folds records older than `before_us` into daily aggregates and
    /// deletes them, at most `chunk` records per transaction; deletes spend
    /// buckets older than `buckets_before_us`.
    fn compact(&self, before_us: u64, buckets_before_us: u64, chunk: usize) -> Result<CompactionStats, LedgerError>;

    /// Visits records and daily aggregates in `[from_us, to_us)`.
    ///
    /// Reports read through this, while a compaction may be folding
    /// records into aggregates: a store must read both from one consistent
    /// snapshot so that each record counts exactly once, raw or aggregated.
    /// The default (two separate reads) is only right for a store that
    /// never compacts concurrently.
    fn visit_usage(
        &self,
        from_us: u64,
        to_us: u64,
        visit: &mut dyn FnMut(UsageRow) -> Result<(), LedgerError>,
    ) -> Result<(), LedgerError> {
        self.visit_aggregates(from_us, to_us, visit)?;
        self.visit_records(from_us, to_us, &mut |r| visit(UsageRow::from(&r)))
    }
}
