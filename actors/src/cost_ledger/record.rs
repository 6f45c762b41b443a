//! Usage records as the ledger stores them, label parsing and the metadata
//! fields reports group by.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use nexus_swarm_runtime::resources::ResourceKind;
use nexus_swarm_runtime::usage::UsageMeta;
use serde::{Deserialize, Serialize};

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
        ("tenant", &meta.tenant),
        ("workflow", &meta.workflow),
        ("agent", &meta.agent),
        ("model", &meta.model),
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
            Field::Tenant => meta.tenant.clone(),
            Field::Workflow => meta.workflow.clone(),
            Field::Agent => meta.agent.clone(),
            Field::Model => meta.model.clone(),
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
