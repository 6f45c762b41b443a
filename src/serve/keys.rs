//! Virtual API keys: the keys file, hashing, and the lookup of a bearer
//! token.
//!
//! A key is stored as the SHA-256 of its token, in lowercase hex; the
//! token itself is never written anywhere by Nexus. Each key names the
//! identity its requests are charged to (a tenant, and optionally a
//! workflow and an agent), and optionally a hard budget and rpm / tpm
//! limits of its own.
//!
//! ```toml
//! [[keys]]
//! name = "support-bot"        # letters, digits, `_ - .`; names its budget `key/<name>`
//! sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! tenant = "acme"
//! workflow = "support"        # optional
//! agent = "triage"            # optional
//! budget_micro_usd = 5000000  # optional: a hard budget ($5) on this identity's spend
//! budget_period = "daily"     # hourly | daily | monthly (default daily)
//! requests_per_minute = 60    # optional
//! tokens_per_minute = 100000  # optional: prompt plus completion tokens
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use nexus_swarm_actors::Scope;
use nexus_swarm_actors::cost_ledger::{Budget, BudgetAction, BudgetPeriod};
use nexus_swarm_runtime::usage::UsageMeta;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The largest keys file read, in bytes.
pub const MAX_KEYS_FILE_BYTES: u64 = 1 << 20;

/// The keys file could not be read or is invalid.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeysError {
    /// The file could not be read.
    #[error("keys file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_KEYS_FILE_BYTES`].
    #[error("keys file {path} is larger than {MAX_KEYS_FILE_BYTES} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("keys file: {0}")]
    Parse(#[from] toml::de::Error),
    /// An entry's field is invalid.
    #[error("keys file: key `{name}`: {field}: {reason}")]
    Invalid {
        /// The entry's name.
        name: String,
        /// The offending field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The file declares no key: nothing could be served.
    #[error("keys file declares no key: add a [[keys]] entry (`nexus keys new` writes one)")]
    Empty,
}

/// The keys file: `[[keys]]` entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysFile {
    /// The keys.
    #[serde(default)]
    pub keys: Vec<KeyEntry>,
}

/// One virtual API key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// Its name (letters, digits, `_ - .`, at most 64), unique; its budget
    /// is `key/<name>`.
    pub name: String,
    /// SHA-256 of the bearer token, 64 lowercase hex digits.
    pub sha256: String,
    /// The tenant its requests are charged to. Required.
    pub tenant: String,
    /// The workflow its requests are charged to. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    /// The agent its requests are charged to. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// A hard budget on the spend of its identity (tenant, workflow, agent)
    /// per `budget_period`, in micro-dollars. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_micro_usd: Option<u64>,
    /// The budget's period: `hourly`, `daily` or `monthly` (UTC).
    /// Default: `daily`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_period: Option<KeyBudgetPeriod>,
    /// Requests per sliding minute. Default: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u64>,
    /// Prompt plus completion tokens per sliding minute (the request's
    /// prompt and `max_tokens` are reserved before the call, the actual
    /// tokens counted after). Default: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
}

/// The calendar period of a key's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyBudgetPeriod {
    /// Each UTC clock hour.
    Hourly,
    /// Each UTC day.
    Daily,
    /// Each UTC calendar month.
    Monthly,
}

impl From<KeyBudgetPeriod> for BudgetPeriod {
    fn from(p: KeyBudgetPeriod) -> Self {
        match p {
            KeyBudgetPeriod::Hourly => BudgetPeriod::Hourly,
            KeyBudgetPeriod::Daily => BudgetPeriod::Daily,
            KeyBudgetPeriod::Monthly => BudgetPeriod::Monthly,
        }
    }
}

/// The SHA-256 of a token, in lowercase hex (what a keys file stores).
pub fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// A new random token: `sk-nexus-` and 48 hex digits (192 bits).
pub fn new_token() -> String {
    let bytes: [u8; 24] = rand::random();
    let mut out = String::from("sk-nexus-");
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn valid_scope_value(v: &str) -> bool {
    !v.trim().is_empty() && v.len() <= 128 && !v.chars().any(|c| c.is_control())
}

impl KeyEntry {
    /// Checks the entry's fields.
    pub fn validate(&self) -> Result<(), KeysError> {
        let invalid = |field, reason: &str| KeysError::Invalid {
            name: self.name.clone(),
            field,
            reason: reason.to_string(),
        };
        if !valid_name(&self.name) {
            return Err(invalid("name", "must be 1 to 64 letters, digits, `_`, `-` or `.`"));
        }
        if self.sha256.len() != 64 || !self.sha256.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')) {
            return Err(invalid(
                "sha256",
                "must be 64 lowercase hex digits (the SHA-256 of the token; `nexus keys hash` prints it)",
            ));
        }
        for (field, value) in [
            ("tenant", Some(&self.tenant)),
            ("workflow", self.workflow.as_ref()),
            ("agent", self.agent.as_ref()),
        ] {
            if let Some(v) = value
                && !valid_scope_value(v)
            {
                return Err(invalid(field, "must be 1 to 128 printable characters"));
            }
        }
        if self.budget_micro_usd == Some(0) {
            return Err(invalid("budget_micro_usd", "must be at least 1"));
        }
        if self.budget_period.is_some() && self.budget_micro_usd.is_none() {
            return Err(invalid("budget_period", "is set without a budget_micro_usd"));
        }
        if self.requests_per_minute == Some(0) {
            return Err(invalid("requests_per_minute", "must be at least 1"));
        }
        if self.tokens_per_minute == Some(0) {
            return Err(invalid("tokens_per_minute", "must be at least 1"));
        }
        Ok(())
    }

    /// The usage metadata its requests carry.
    pub fn meta(&self) -> UsageMeta {
        let mut meta = UsageMeta::default().tenant(self.tenant.clone());
        if let Some(w) = &self.workflow {
            meta = meta.workflow(w.clone());
        }
        if let Some(a) = &self.agent {
            meta = meta.agent(a.clone());
        }
        meta
    }

    /// The budget scope of its identity.
    pub fn scope(&self) -> Scope {
        let mut scope = Scope::all().tenant(self.tenant.clone());
        if let Some(w) = &self.workflow {
            scope = scope.workflow(w.clone());
        }
        if let Some(a) = &self.agent {
            scope = scope.agent(a.clone());
        }
        scope
    }

    /// Its hard budget, if it has one: id `key/<name>`, scoped to its
    /// identity.
    pub fn budget(&self) -> Option<Budget> {
        self.budget_micro_usd.map(|limit| {
            let period = self.budget_period.unwrap_or(KeyBudgetPeriod::Daily).into();
            Budget::new(format!("key/{}", self.name), limit, period, BudgetAction::Halt).scope(self.scope())
        })
    }
}

impl KeysFile {
    /// Parses and validates a keys file's text.
    pub fn parse(text: &str) -> Result<Self, KeysError> {
        let file: KeysFile = toml::from_str(text)?;
        file.validate()?;
        Ok(file)
    }

    /// Reads, parses and validates a keys file.
    pub fn read(path: &Path) -> Result<Self, KeysError> {
        let io = |source| KeysError::Io {
            path: path.to_path_buf(),
            source,
        };
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len > MAX_KEYS_FILE_BYTES {
            return Err(KeysError::TooLarge {
                path: path.to_path_buf(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        Self::parse(&text)
    }

    /// Checks every entry, that names and hashes are unique and that no
    /// two keys share an identity (each key's budget is its own).
    pub fn validate(&self) -> Result<(), KeysError> {
        if self.keys.is_empty() {
            return Err(KeysError::Empty);
        }
        let mut names = HashSet::new();
        let mut hashes = HashSet::new();
        let mut scopes = HashSet::new();
        for key in &self.keys {
            key.validate()?;
            let dup = |field, what: &str| KeysError::Invalid {
                name: key.name.clone(),
                field,
                reason: format!("{what} is used by another key"),
            };
            if !names.insert(&key.name) {
                return Err(dup("name", "the name"));
            }
            if !hashes.insert(&key.sha256) {
                return Err(dup("sha256", "the token"));
            }
            if !scopes.insert((&key.tenant, &key.workflow, &key.agent)) {
                return Err(dup("tenant", "the same tenant / workflow / agent"));
            }
        }
        Ok(())
    }
}

/// The keys, looked up by the hash of a presented token.
#[derive(Debug, Clone)]
pub struct KeyTable {
    by_hash: HashMap<String, usize>,
    keys: Vec<KeyEntry>,
}

impl KeyTable {
    /// The table of a validated keys file.
    pub fn new(file: KeysFile) -> Self {
        let by_hash = file
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.sha256.clone(), i))
            .collect();
        Self {
            by_hash,
            keys: file.keys,
        }
    }

    /// The index of the key whose token this is.
    pub fn find(&self, token: &str) -> Option<usize> {
        self.by_hash.get(&hash_token(token)).copied()
    }

    /// The keys, in file order.
    pub fn keys(&self) -> &[KeyEntry] {
        &self.keys
    }
}

/// The bearer token of an `Authorization` header value, if it is one.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}
