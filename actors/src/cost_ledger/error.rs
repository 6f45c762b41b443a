//! [`LedgerError`]: every way a ledger operation can fail.

use std::path::PathBuf;

use nexus_swarm_runtime::resources::ResourceKind;
use nexus_swarm_runtime::usage::UsageSinkError;

/// A cost-ledger operation failed. Input errors leave every state unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// A price is negative, zero-sized, absurdly high, or prices money itself.
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
    /// Another process holds the store open.
    #[error("ledger store {path} is locked by another process")]
    Locked {
        /// The store file.
        path: PathBuf,
    },
    /// The store file is damaged or not a ledger store. It is left untouched.
    #[error("ledger store {path} is corrupt: {detail}")]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// What the storage engine reported.
        detail: String,
    },
    /// The store could not be read or written.
    #[error("ledger store I/O failed: {0}")]
    Io(String),
    /// The storage engine failed in another way; nothing was acknowledged.
    #[error("ledger store failed: {0}")]
    Store(String),
    /// The ledger is not running (stopped, or its writer is gone).
    #[error("cost ledger is not running")]
    Unavailable,
}

impl LedgerError {
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
