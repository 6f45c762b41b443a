//! Bearer tokens of the admin API: a TOML file of token hashes, names and
//! roles. Only the SHA-256 of a token is ever stored (`nexus tokens hash`
//! prints it); a request's token is hashed and looked up.
//!
//! ```toml
//! [[tokens]]
//! name = "dashboards"
//! role = "viewer"
//! sha256 = "…64 hex digits…"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Largest tokens file read.
pub const MAX_TOKENS_FILE_BYTES: u64 = 1 << 20;

/// What a token may do; each role may do what the ones below it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads only (every `GET`).
    Viewer,
    /// Also adjusts quotas, budgets and pool sizes.
    Operator,
    /// Everything, including stopping the process (`POST /admin/shutdown`).
    Admin,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        })
    }
}

/// One token's entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Who holds it: written to the audit log as the caller.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// SHA-256 of the token, 64 lowercase hex digits.
    pub sha256: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    tokens: Vec<TokenEntry>,
}

/// Why a tokens file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokensError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Larger than [`MAX_TOKENS_FILE_BYTES`].
    #[error("{0}: larger than {MAX_TOKENS_FILE_BYTES} bytes")]
    TooLarge(PathBuf),
    /// Not TOML of the expected shape.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// An entry is invalid.
    #[error("{path}: tokens[{index}].{field}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The entry's index.
        index: usize,
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

/// The tokens the server accepts, by hash.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    by_hash: BTreeMap<[u8; 32], (String, Role)>,
}

/// The SHA-256 of `token`, in lowercase hex (what a tokens file stores).
pub fn hash_token(token: &str) -> String {
    to_hex(&Sha256::digest(token.as_bytes()).into())
}

fn to_hex(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

impl Tokens {
    /// Reads and checks a tokens file: names non-empty, printable and
    /// unique, hashes 64 lowercase hex digits and unique.
    pub fn load(path: &Path) -> Result<Self, TokensError> {
        use std::io::Read;
        let io = |source| TokensError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut text = String::new();
        std::fs::File::open(path)
            .map_err(io)?
            .take(MAX_TOKENS_FILE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(io)?;
        if text.len() as u64 > MAX_TOKENS_FILE_BYTES {
            return Err(TokensError::TooLarge(path.to_path_buf()));
        }
        Self::parse(&text, path)
    }

    /// [`Tokens::load`] on text already read; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, TokensError> {
        let file: TokensFile = toml::from_str(text).map_err(|e| TokensError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim().to_string(),
        })?;
        let invalid = |index, field, reason: &str| TokensError::Invalid {
            path: path.to_path_buf(),
            index,
            field,
            reason: reason.to_string(),
        };
        let mut tokens = Tokens::default();
        let mut names = BTreeMap::new();
        for (i, t) in file.tokens.into_iter().enumerate() {
            if t.name.is_empty() || t.name.len() > 128 || t.name.chars().any(char::is_control) {
                return Err(invalid(i, "name", "must be 1 to 128 printable characters"));
            }
            let Some(hash) = from_hex(&t.sha256) else {
                return Err(invalid(
                    i,
                    "sha256",
                    "must be 64 lowercase hex digits (`nexus tokens hash` prints them)",
                ));
            };
            if let Some(first) = names.insert(t.name.clone(), i) {
                return Err(invalid(
                    i,
                    "name",
                    &format!("{:?} is also tokens[{first}].name", t.name),
                ));
            }
            if tokens.by_hash.insert(hash, (t.name, t.role)).is_some() {
                return Err(invalid(i, "sha256", "the same token is listed twice"));
            }
        }
        Ok(tokens)
    }

    /// Whether no token is configured.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// The name and role of `token`, if it is listed. The lookup is by the
    /// token's hash, so timing says nothing about the stored hashes'
    /// relation to the token.
    pub fn authenticate(&self, token: &str) -> Option<(&str, Role)> {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.by_hash.get(&hash).map(|(n, r)| (n.as_str(), *r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(entries: &[(&str, &str, &str)]) -> String {
        entries
            .iter()
            .map(|(n, r, h)| format!("[[tokens]]\nname = \"{n}\"\nrole = \"{r}\"\nsha256 = \"{h}\"\n"))
            .collect()
    }

    #[test]
    fn a_listed_token_is_found_by_its_hash_and_nothing_else_is() {
        let text = file(&[
            ("ops", "operator", &hash_token("s3cret")),
            ("view", "viewer", &hash_token("look")),
        ]);
        let tokens = Tokens::parse(&text, Path::new("t.toml")).unwrap();
        assert_eq!(tokens.authenticate("s3cret"), Some(("ops", Role::Operator)));
        assert_eq!(tokens.authenticate("look"), Some(("view", Role::Viewer)));
        assert_eq!(tokens.authenticate("s3cre"), None);
        // The stored hash is not itself a token.
        assert_eq!(tokens.authenticate(&hash_token("s3cret")), None);
        assert!(Role::Admin > Role::Operator && Role::Operator > Role::Viewer);
    }

    #[test]
    fn bad_entries_are_refused_naming_the_field() {
        let p = Path::new("t.toml");
        let err = |text: &str| Tokens::parse(text, p).unwrap_err().to_string();
        assert!(err(&file(&[("a", "viewer", "s3cret")])).contains("tokens[0].sha256"));
        assert!(err(&file(&[("a", "viewer", &hash_token("x").to_uppercase())])).contains("tokens[0].sha256"));
        assert!(err(&file(&[("", "viewer", &hash_token("x"))])).contains("tokens[0].name"));
        let twice = file(&[("a", "viewer", &hash_token("x")), ("a", "admin", &hash_token("y"))]);
        assert!(err(&twice).contains("tokens[1].name"));
        let same = file(&[("a", "viewer", &hash_token("x")), ("b", "admin", &hash_token("x"))]);
        assert!(err(&same).contains("tokens[1].sha256"));
        assert!(err(&file(&[("a", "root", &hash_token("x"))])).contains("root"));
        assert!(err("[[tokens]]\nname = \"a\"\nrole = \"viewer\"\nsha256 = \"00\"\nplain = \"x\"\n").contains("plain"));
    }

    #[test]
    fn the_hash_is_sha256_in_lowercase_hex() {
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
