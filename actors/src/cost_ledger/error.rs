//! [`LedgerError`]: every way a ledger operation can fail.

use std::fmt;
use std::path::PathBuf;

use nexus_swarm_runtime::resources::ResourceKind;
use nexus_swarm_runtime::usage::UsageSinkError;

use super::clock::format_rfc3339;
pub use crate::error::Cause;

/// A cost-ledger operation failed. Input errors leave every state unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// A price is zero-sized, absurdly high, or prices money itself, or a
    /// catalogue's deployment is priced apart from its model.
    #[error("invalid price for {what}: {reason}")]
    InvalidPrice {
        /// The kind or model priced.
        what: String,
        /// Why it is rejected.
        reason: String,
    },
    /// No cost model covers this kind (for this model).
    #[error("no price for {kind}{}", model.as_deref().map(|m| format!(" of model `{m}`")).unwrap_or_default())]
    NoPrice {
        /// The kind used.
        kind: ResourceKind,
        /// The model named in the usage, if any.
        model: Option<String>,
    },
    /// A label set does not parse, or a label key or value is malformed.
    #[error("invalid labels `{input}`: {reason}")]
    BadLabels {
        /// The offending text.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A usage is malformed (zero amount, empty batch...).
    #[error("invalid usage: {0}")]
    InvalidUsage(String),
    /// A cost or a sum of costs does not fit in `u64` micro-dollars.
    #[error("cost overflows u64 micro-dollars")]
    Overflow,
    /// No budget has this id.
    #[error("unknown budget `{0}`")]
    UnknownBudget(String),
    /// A budget definition is invalid.
    #[error("invalid budget `{id}`: {reason}")]
    InvalidBudget {
        /// The budget's id as given.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A time range, grouping field or other query parameter is invalid.
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// A time cannot be written as RFC 3339 (it is past the year 9999).
    #[error("time {at_us} us since the Unix epoch is past 9999-12-31T23:59:59Z, the last RFC 3339 time")]
    TimeOutOfRange {
        /// The time, in microseconds since the Unix epoch.
        at_us: u64,
    },
    /// Another process holds the store open for writing.
    #[error("ledger store {path} is locked by another process")]
    Locked {
        /// The store file.
        path: PathBuf,
    },
    /// There is no store file where one was expected (read-only opens
    /// never create one).
    #[error("no ledger store at {path}")]
    Missing {
        /// The store file looked for.
        path: PathBuf,
    },
    /// The store file is damaged or not a ledger store. It is left untouched.
    #[error("ledger store {path} is corrupt: {what}: {detail}")]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// What is damaged.
        what: Damaged,
        /// How the damage showed.
        detail: String,
    },
    /// The store was written in an on-disk format this build does not read.
    #[error("ledger store {path} has format version {found}; this build reads version {supported} only")]
    UnsupportedFormat {
        /// The store file.
        path: PathBuf,
        /// The version the file declares.
        found: u64,
        /// The version this build reads and writes.
        supported: u64,
    },
    /// A write was asked of a store opened read-only.
    #[error("ledger store {path} is open read-only")]
    ReadOnly {
        /// The store file.
        path: PathBuf,
    },
    /// A writer committed during every attempt to copy the store for a
    /// consistent snapshot, and no copy could be verified.
    #[error("ledger store {path} changed during each of {attempts} snapshot attempts; try again")]
    Busy {
        /// The store file.
        path: PathBuf,
        /// Snapshot attempts made.
        attempts: u32,
    },
    /// The store file could not be read or written.
    #[error("ledger store {path} I/O failed: {source}")]
    Io {
        /// The store file (or directory).
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: Cause,
    },
    /// An earlier write to the store failed, so the storage engine refuses
    /// every later one until the store is reopened; nothing more was
    /// acknowledged.
    #[error("ledger store {path}: an earlier write failed; reopen the store")]
    EarlierWriteFailed {
        /// The store file.
        path: PathBuf,
    },
    /// The storage engine failed in another way; nothing was acknowledged.
    #[error("ledger store {path} failed: {source}")]
    Engine {
        /// The store file.
        path: PathBuf,
        /// The storage engine's error.
        #[source]
        source: Cause,
    },
    /// The blocking task running a store operation panicked or was
    /// cancelled; nothing it did was acknowledged.
    #[error("ledger store task {doing} failed: {source}")]
    TaskFailed {
        /// What the task was doing.
        doing: &'static str,
        /// Why it ended.
        #[source]
        source: Cause,
    },
    /// The ledger is not running (stopped, or its writer is gone).
    #[error("cost ledger is not running")]
    Unavailable,
}

impl LedgerError {
    /// A blocking store task that ended without a result.
    pub(crate) fn task_failed(doing: &'static str, e: tokio::task::JoinError) -> Self {
        LedgerError::TaskFailed {
            doing,
            source: Cause::new(e),
        }
    }

    /// Whether the error is about the caller's input (as opposed to the store).
    pub fn is_input_error(&self) -> bool {
        matches!(
            self,
            LedgerError::InvalidPrice { .. }
                | LedgerError::NoPrice { .. }
                | LedgerError::BadLabels { .. }
                | LedgerError::InvalidUsage(_)
                | LedgerError::Overflow
                | LedgerError::UnknownBudget(_)
                | LedgerError::InvalidBudget { .. }
                | LedgerError::InvalidQuery(_)
                | LedgerError::TimeOutOfRange { .. }
        )
    }
}

impl From<LedgerError> for UsageSinkError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Unavailable => UsageSinkError::Unavailable,
            e if e.is_input_error() => UsageSinkError::Invalid(e.to_string()),
            e => UsageSinkError::Store(e.to_string()),
        }
    }
}

/// What part of a ledger store is damaged (in [`LedgerError::Corrupt`] and
/// in a [`VerifyReport`](super::VerifyReport)).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Damaged {
    /// The file as a whole: empty, not a redb file, or refused by the
    /// storage engine on open.
    File,
    /// The storage engine's pages: a page checksum failed or the engine
    /// could not follow its own structures.
    Pages,
    /// The store's metadata (format version, next record id).
    Meta {
        /// The metadata key.
        key: String,
    },
    /// One usage record.
    Record {
        /// Its time key (microseconds since the Unix epoch).
        at_us: u64,
        /// Its id key.
        id: u64,
    },
    /// One daily aggregate of compacted records.
    Aggregate {
        /// The start of its UTC day (microseconds since the Unix epoch).
        day_us: u64,
    },
    /// The index entry (count and checksum sum of the records and
    /// aggregates) of one hour: it disagrees with what the hour holds.
    Index {
        /// The start of the hour (microseconds since the Unix epoch).
        hour_us: u64,
    },
    /// One budget definition.
    Budget {
        /// The budget's id.
        id: String,
    },
    /// One budget spend bucket.
    Spend {
        /// The budget's id.
        budget: String,
        /// The bucket's start (microseconds since the Unix epoch).
        bucket_us: u64,
    },
    /// The stored price table.
    Prices,
}

fn time(at_us: u64) -> String {
    format_rfc3339(at_us).unwrap_or_else(|_| format!("{at_us} us"))
}

impl fmt::Display for Damaged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damaged::File => f.write_str("the file"),
            Damaged::Pages => f.write_str("storage pages"),
            Damaged::Meta { key } => write!(f, "metadata `{key}`"),
            Damaged::Record { at_us, id } => write!(f, "record {id} at {}", time(*at_us)),
            Damaged::Aggregate { day_us } => write!(f, "daily aggregate of {}", time(*day_us)),
            Damaged::Index { hour_us } => write!(f, "usage index of the hour from {}", time(*hour_us)),
            Damaged::Budget { id } => write!(f, "budget `{id}`"),
            Damaged::Spend { budget, bucket_us } => {
                write!(f, "spend of budget `{budget}` from {}", time(*bucket_us))
            }
            Damaged::Prices => f.write_str("price table"),
        }
    }
}

/// One damaged item found by [`RedbStore::verify`](super::RedbStore::verify).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// What is damaged.
    pub what: Damaged,
    /// How the damage showed.
    pub detail: String,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.detail)
    }
}
