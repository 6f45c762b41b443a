//! Usage records as the ledger stores them, label parsing and the metadata
//! fields reports group by.
//!
//! # Sealed values
//!
//! Every value the store writes is *sealed*: its bytes are followed by an
//! 8-byte xxh3 checksum (little-endian) of a table tag, the entry's key and
//! the value bytes. A flipped bit anywhere in the key or the value, or a
//! value moved under another key or into another table, fails the check
//! and is reported as [`LedgerError::Corrupt`] naming the entry, never read
//! back as different data. [`RecordCodec`] is the codec of the `records`
//! table; it also refuses bodies that are not in the canonical encoding
//! (what the encoder writes), so whatever it accepts re-encodes to the
//! same bytes.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use nexus_swarm_runtime::resources::ResourceKind;
use nexus_swarm_runtime::usage::UsageMeta;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use super::clock::format_day;
use super::error::LedgerError;

/// A record's id: unique in its store, increasing in commit order.
pub type RecordId = u64;

/// The label that carries a hash of the prompt, used by `optimize` to find
/// repeated prompts a cache would have served.
pub const PROMPT_HASH_LABEL: &str = "prompt_hash";

/// Longest metadata value (tenant, label value...) accepted, in bytes.
pub const MAX_META_VALUE_LEN: usize = 256;

/// A committed usage record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerRecord {
    /// Its id.
    pub id: RecordId,
    /// When the usage was tracked, in microseconds since the Unix epoch.
    pub at_us: u64,
    /// What was used.
    pub kind: ResourceKind,
    /// How much, in the kind's unit.
    pub amount: u64,
    /// What it cost, in micro-dollars, by the prices in force when tracked.
    pub cost_micro_usd: u64,
    /// Who used it.
    pub meta: UsageMeta,
}

/// The acknowledgement of a committed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The record's id.
    pub id: RecordId,
    /// When it was tracked (microseconds since the Unix epoch).
    pub at_us: u64,
    /// Its cost in micro-dollars.
    pub cost_micro_usd: u64,
}

/// A record priced and stamped, not yet committed (it has no id yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewRecord {
    /// When it was tracked.
    pub at_us: u64,
    /// What was used.
    pub kind: ResourceKind,
    /// How much.
    pub amount: u64,
    /// Its cost in micro-dollars.
    pub cost_micro_usd: u64,
    /// Who used it.
    pub meta: UsageMeta,
}

impl NewRecord {
    /// The committed record with its id.
    pub fn with_id(self, id: RecordId) -> LedgerRecord {
        LedgerRecord {
            id,
            at_us: self.at_us,
            kind: self.kind,
            amount: self.amount,
            cost_micro_usd: self.cost_micro_usd,
            meta: self.meta,
        }
    }
}

fn valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
        && key.len() <= 64
}

fn valid_value(value: &str) -> bool {
    !value.is_empty() && value.len() <= MAX_META_VALUE_LEN && !value.chars().any(|c| c.is_control())
}

/// Parses `key=value,key=value` into labels. Keys start with a letter or
/// `_` and hold letters, digits, `_ - . /`; values are non-empty, without
/// `,` or control characters; a key appears once. The empty text is the
/// empty set.
pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, LedgerError> {
    let bad = |reason: String| LedgerError::BadLabels {
        input: text.to_string(),
        reason,
    };
    let mut labels = BTreeMap::new();
    if text.trim().is_empty() {
        return Ok(labels);
    }
    for part in text.split(',') {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| bad(format!("`{part}` is not key=value")))?;
        let (key, value) = (key.trim(), value.trim());
        if !valid_key(key) {
            return Err(bad(format!("`{key}` is not a valid label key")));
        }
        if !valid_value(value) || value.contains('=') {
            return Err(bad(format!("`{value}` is not a valid value for `{key}`")));
        }
        if labels.insert(key.to_string(), value.to_string()).is_some() {
            return Err(bad(format!("`{key}` appears twice")));
        }
    }
    Ok(labels)
}

/// Checks a usage's metadata: labels as [`parse_labels`] accepts them and
/// named fields non-empty and printable.
pub fn validate_meta(meta: &UsageMeta) -> Result<(), LedgerError> {
    for (field, value) in [
        ("tenant", &meta.scope.tenant),
        ("workflow", &meta.scope.workflow),
        ("agent", &meta.scope.agent),
        ("model", &meta.scope.model),
    ] {
        if let Some(v) = value
            && !valid_value(v)
        {
            return Err(LedgerError::InvalidUsage(format!(
                "{field} `{v}` is empty, too long or unprintable"
            )));
        }
    }
    for (key, value) in &meta.labels {
        if !valid_key(key) || !valid_value(value) || value.contains(',') || value.contains('=') {
            return Err(LedgerError::BadLabels {
                input: format!("{key}={value}"),
                reason:
                    "label keys start with a letter or `_`; values are non-empty, without `,` `=` or control characters"
                        .into(),
            });
        }
    }
    Ok(())
}

/// A metadata field a report groups by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Field {
    /// The tenant.
    Tenant,
    /// The workflow.
    Workflow,
    /// The agent.
    Agent,
    /// The model.
    Model,
    /// The resource kind.
    Kind,
    /// The UTC day (`YYYY-MM-DD`).
    Day,
    /// A free label, by key.
    Label(String),
}

/// The value reports show for a missing field.
pub const NONE_VALUE: &str = "-";

impl Field {
    /// The field's value in a usage (`-` when absent).
    pub fn value_of(&self, at_us: u64, kind: &ResourceKind, meta: &UsageMeta) -> String {
        let v = match self {
            Field::Tenant => meta.scope.tenant.clone(),
            Field::Workflow => meta.scope.workflow.clone(),
            Field::Agent => meta.scope.agent.clone(),
            Field::Model => meta.scope.model.clone(),
            Field::Kind => Some(kind.to_string()),
            Field::Day => Some(format_day(at_us)),
            Field::Label(k) => meta.labels.get(k).cloned(),
        };
        v.unwrap_or_else(|| NONE_VALUE.to_string())
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Tenant => f.write_str("tenant"),
            Field::Workflow => f.write_str("workflow"),
            Field::Agent => f.write_str("agent"),
            Field::Model => f.write_str("model"),
            Field::Kind => f.write_str("kind"),
            Field::Day => f.write_str("day"),
            Field::Label(k) => write!(f, "label:{k}"),
        }
    }
}

impl FromStr for Field {
    type Err = LedgerError;

    /// `tenant`, `workflow`, `agent`, `model`, `kind`, `day` or `label:KEY`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim() {
            "tenant" => Field::Tenant,
            "workflow" => Field::Workflow,
            "agent" => Field::Agent,
            "model" => Field::Model,
            "kind" => Field::Kind,
            "day" => Field::Day,
            other => match other.strip_prefix("label:") {
                Some(k) if valid_key(k) => Field::Label(k.to_string()),
                _ => {
                    return Err(LedgerError::InvalidQuery(format!(
                        "unknown field `{other}` (tenant, workflow, agent, model, kind, day or label:KEY)"
                    )));
                }
            },
        })
    }
}

impl From<Field> for String {
    fn from(f: Field) -> String {
        f.to_string()
    }
}

impl TryFrom<String> for Field {
    type Error = LedgerError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// The tables whose values are sealed; each is its own checksum domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Domain {
    Record = 1,
    Aggregate = 2,
    Budget = 3,
    Spend = 4,
    Prices = 5,
    Meta = 6,
    Index = 7,
}

/// Bytes of the checksum that ends every sealed value.
pub(super) const CHECKSUM_LEN: usize = 8;

/// Largest body the decoder accepts (bounds what a damaged length prefix
/// can make it allocate).
const MAX_BODY_LEN: usize = 1 << 24;

/// The checksum of a value stored under `key` in `domain`'s table.
pub(super) fn checksum(domain: Domain, key: &[u8], body: &[u8]) -> u64 {
    let mut h = Xxh3::new();
    h.update(&[domain as u8]);
    h.update(&(key.len() as u64).to_le_bytes());
    h.update(key);
    h.update(body);
    h.digest()
}

/// `body` followed by its checksum.
pub(super) fn seal(domain: Domain, key: &[u8], mut body: Vec<u8>) -> Vec<u8> {
    let sum = checksum(domain, key, &body);
    body.extend_from_slice(&sum.to_le_bytes());
    body
}

/// The body of a sealed value, if its checksum holds.
pub(super) fn unseal<'a>(domain: Domain, key: &[u8], value: &'a [u8]) -> Result<&'a [u8], EntryDamage> {
    if value.len() < CHECKSUM_LEN {
        return Err(EntryDamage::Truncated { len: value.len() });
    }
    let (body, stored) = value.split_at(value.len() - CHECKSUM_LEN);
    let stored = u64::from_le_bytes(stored.try_into().expect("8 bytes"));
    let computed = checksum(domain, key, body);
    if stored != computed {
        return Err(EntryDamage::Checksum { stored, computed });
    }
    Ok(body)
}

/// The body encoding of every sealed value (bincode, standard config).
pub(super) fn encode_body<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(v, bincode::config::standard()).expect("ledger values serialize")
}

/// Decodes a body, refusing trailing bytes and (if `canonical`) encodings
/// other than the encoder's.
pub(super) fn decode_body<T: Serialize + serde::de::DeserializeOwned>(
    body: &[u8],
    canonical: bool,
) -> Result<T, EntryDamage> {
    if body.len() > MAX_BODY_LEN {
        return Err(EntryDamage::TooLong { len: body.len() });
    }
    let config = bincode::config::standard().with_limit::<MAX_BODY_LEN>();
    let (v, read): (T, usize) = bincode::serde::decode_from_slice(body, config).map_err(EntryDamage::Undecodable)?;
    if read != body.len() {
        return Err(EntryDamage::TrailingBytes {
            extra: body.len() - read,
        });
    }
    if canonical && encode_body(&v) != body {
        return Err(EntryDamage::NonCanonical);
    }
    Ok(v)
}

/// How a stored value fails to decode.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EntryDamage {
    /// The value is too short to hold its checksum.
    #[error("value of {len} bytes is shorter than its checksum")]
    Truncated {
        /// The value's length.
        len: usize,
    },
    /// The checksum does not match the key and value.
    #[error("checksum mismatch (stored {stored:#018x}, computed {computed:#018x})")]
    Checksum {
        /// The checksum stored with the value.
        stored: u64,
        /// The checksum of the key and value as read.
        computed: u64,
    },
    /// The body is longer than any value the store writes.
    #[error("body of {len} bytes is longer than any stored value")]
    TooLong {
        /// The body's length.
        len: usize,
    },
    /// The body does not decode.
    #[error("undecodable body: {0}")]
    Undecodable(#[source] bincode::error::DecodeError),
    /// The body decodes with bytes left over.
    #[error("{extra} bytes after the body")]
    TrailingBytes {
        /// Bytes left over.
        extra: usize,
    },
    /// The body decodes but is not what the encoder writes for its value.
    #[error("body is not in the canonical encoding")]
    NonCanonical,
}

/// A record's body as stored (its key holds the time and id).
#[derive(Serialize)]
struct RecordBodyRef<'a> {
    kind: &'a ResourceKind,
    amount: u64,
    cost: u64,
    meta: &'a UsageMeta,
}

/// The owned form of [`RecordBodyRef`] (same encoding).
#[derive(Serialize, Deserialize)]
struct RecordBody {
    kind: ResourceKind,
    amount: u64,
    cost: u64,
    meta: UsageMeta,
}

/// The codec of the store's `records` table: a record's key is its time
/// and id, its value the bincode body (kind, amount, cost, metadata)
/// followed by the checksum of both (see the module docs). The store
/// decodes every record it reads with [`RecordCodec::decode`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordCodec;

impl RecordCodec {
    /// Bytes of a key in an entry ([`RecordCodec::encode_entry`]): the time
    /// then the id, both `u64` little-endian.
    pub const KEY_LEN: usize = 16;

    fn key(at_us: u64, id: RecordId) -> [u8; 16] {
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&at_us.to_le_bytes());
        key[8..].copy_from_slice(&id.to_le_bytes());
        key
    }

    pub(super) fn encode_parts(
        at_us: u64,
        id: RecordId,
        kind: &ResourceKind,
        amount: u64,
        cost_micro_usd: u64,
        meta: &UsageMeta,
    ) -> Vec<u8> {
        let body = encode_body(&RecordBodyRef {
            kind,
            amount,
            cost: cost_micro_usd,
            meta,
        });
        seal(Domain::Record, &Self::key(at_us, id), body)
    }

    /// The stored value of `record` (its key is `(record.at_us, record.id)`).
    pub fn encode(record: &LedgerRecord) -> Vec<u8> {
        Self::encode_parts(
            record.at_us,
            record.id,
            &record.kind,
            record.amount,
            record.cost_micro_usd,
            &record.meta,
        )
    }

    /// The record stored under `(at_us, id)` as `value`, if the checksum
    /// holds and the body is canonical.
    pub fn decode(at_us: u64, id: RecordId, value: &[u8]) -> Result<LedgerRecord, EntryDamage> {
        let body = unseal(Domain::Record, &Self::key(at_us, id), value)?;
        let body: RecordBody = decode_body(body, true)?;
        Ok(LedgerRecord {
            id,
            at_us,
            kind: body.kind,
            amount: body.amount,
            cost_micro_usd: body.cost,
            meta: body.meta,
        })
    }

    /// Key and value as one byte string: [`RecordCodec::KEY_LEN`] key bytes,
    /// then the value (the form of the fuzz corpus).
    pub fn encode_entry(record: &LedgerRecord) -> Vec<u8> {
        let mut out = Self::key(record.at_us, record.id).to_vec();
        out.extend(Self::encode(record));
        out
    }

    /// `entry` (key, then body) with the checksum of key and body
    /// appended: lets a fuzzer reach the body decoder past the checksum.
    #[doc(hidden)]
    pub fn seal_entry_for_fuzzing(entry: &[u8]) -> Vec<u8> {
        let (key, body) = entry.split_at(entry.len().min(Self::KEY_LEN));
        let mut out = key.to_vec();
        out.extend(seal(Domain::Record, key, body.to_vec()));
        out
    }

    /// Decodes what [`RecordCodec::encode_entry`] writes.
    pub fn decode_entry(entry: &[u8]) -> Result<LedgerRecord, EntryDamage> {
        if entry.len() < Self::KEY_LEN {
            return Err(EntryDamage::Truncated { len: entry.len() });
        }
        let (key, value) = entry.split_at(Self::KEY_LEN);
        let at_us = u64::from_le_bytes(key[..8].try_into().expect("8 bytes"));
        let id = u64::from_le_bytes(key[8..].try_into().expect("8 bytes"));
        Self::decode(at_us, id, value)
    }
}
