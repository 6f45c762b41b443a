//! The audit log of the admin API: every mutating call, accepted or
//! refused, appended to `<data_dir>/audit.jsonl` and synced to disk before
//! the call is answered.
//!
//! Each line is `<sha256 of the JSON, 64 hex digits> <JSON entry>`. Reading
//! checks every line's checksum: a damaged line (a flipped bit, a torn
//! write at a crash) is reported with its number and never returned as an
//! entry. Opening a log whose last line was torn ends it with a newline
//! first, so that the next entry starts on a line of its own.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::tokens::Role;

/// The audit log's file name under the data directory.
pub const AUDIT_FILE: &str = "audit.jsonl";

/// Longest line read back; a longer one is reported as damaged.
pub const MAX_AUDIT_LINE_BYTES: usize = 1 << 20;

/// One audited call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// Its number in the log, from 1.
    pub seq: u64,
    /// When it was answered, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The caller's token name, or `"anonymous"` without a known token.
    pub who: String,
    /// The caller's role, when the token is known.
    pub role: Option<Role>,
    /// The call: method and path (`POST /admin/quotas/team-a`).
    pub action: String,
    /// The state it would change, before (`null` when unknown or absent).
    pub before: serde_json::Value,
    /// The state after (`null` when refused).
    pub after: serde_json::Value,
    /// `accepted` or `refused`.
    pub outcome: Outcome,
    /// The HTTP status answered.
    pub status: u16,
    /// Why it was refused (the error's message), if it was.
    pub reason: Option<String>,
}

/// Whether a call changed anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The change was made.
    Accepted,
    /// Nothing changed.
    Refused,
}

/// Why the audit log could not be opened or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The file could not be opened, read, written or synced.
    #[error("audit log {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A damaged line found when reading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DamagedLine {
    /// Its line number, from 1.
    pub line: u64,
    /// What is wrong with it.
    pub reason: String,
}

/// What reading a log found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AuditRead {
    /// The intact entries, in order.
    pub entries: Vec<AuditEntry>,
    /// The damaged lines, in order.
    pub damaged: Vec<DamagedLine>,
}

/// An open audit log, appended to by one process.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    /// The file and the next sequence number, together: an entry's number
    /// and its place in the file are decided under one lock.
    file: Mutex<(File, u64)>,
}

fn checksum(json: &[u8]) -> String {
    Sha256::digest(json).iter().map(|b| format!("{b:02x}")).collect()
}

impl AuditLog {
    /// Opens (creating it and `data_dir` if needed) `<data_dir>/audit.jsonl`;
    /// numbering continues after the last intact entry.
    pub fn open(data_dir: &Path) -> Result<Self, AuditError> {
        let path = data_dir.join(AUDIT_FILE);
        let io = |source| AuditError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(io)?;
        let next = if path.exists() {
            read_log(&path)?.entries.last().map_or(1, |e| e.seq + 1)
        } else {
            1
        };
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(len - 1)).map_err(io)?;
            file.read_exact(&mut last).map_err(io)?;
            if last[0] != b'\n' {
                file.write_all(b"\n").map_err(io)?;
                file.sync_data().map_err(io)?;
            }
        }
        Ok(Self {
            path,
            file: Mutex::new((file, next)),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Numbers `entry`, appends it and syncs the file; returns its number.
    /// Blocking: call it off the async threads.
    pub fn append(&self, mut entry: AuditEntry) -> Result<u64, AuditError> {
        let io = |source| AuditError::Io {
            path: self.path.clone(),
            source,
        };
        // A poisoned lock means a writer panicked mid-append; the file
        // itself is still the record, so keep appending.
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let (file, next) = &mut *guard;
        entry.seq = *next;
        let json = serde_json::to_vec(&entry).expect("an audit entry serializes: plain fields");
        let mut line = checksum(&json).into_bytes();
        line.push(b' ');
        line.extend_from_slice(&json);
        line.push(b'\n');
        file.write_all(&line).map_err(io)?;
        file.sync_data().map_err(io)?;
        *next += 1;
        Ok(entry.seq)
    }
}

/// Reads `<data_dir>/audit.jsonl` (an absent file is an empty log).
pub fn read(data_dir: &Path) -> Result<AuditRead, AuditError> {
    let path = data_dir.join(AUDIT_FILE);
    if !path.exists() {
        return Ok(AuditRead::default());
    }
    read_log(&path)
}

fn read_log(path: &Path) -> Result<AuditRead, AuditError> {
    let io = |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut reader = BufReader::new(File::open(path).map_err(io)?);
    let mut out = AuditRead::default();
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_AUDIT_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(io)?;
        if n == 0 {
            break;
        }
        number += 1;
        let complete = line.last() == Some(&b'\n');
        if !complete && n > MAX_AUDIT_LINE_BYTES {
            // Skip the rest of the over-long line.
            let mut rest = Vec::new();
            reader.read_until(b'\n', &mut rest).map_err(io)?;
            out.damaged.push(DamagedLine {
                line: number,
                reason: format!("longer than {MAX_AUDIT_LINE_BYTES} bytes"),
            });
            continue;
        }
        let body = line.strip_suffix(b"\n").unwrap_or(&line);
        if body.is_empty() {
            // The newline that ends a torn line on reopening.
            continue;
        }
        match parse_line(body) {
            Ok(entry) => out.entries.push(entry),
            Err(reason) => out.damaged.push(DamagedLine {
                line: number,
                reason: if complete {
                    reason
                } else {
                    format!("torn (no end of line): {reason}")
                },
            }),
        }
    }
    Ok(out)
}

fn parse_line(body: &[u8]) -> Result<AuditEntry, String> {
    let (sum, json) = match body.iter().position(|b| *b == b' ') {
        Some(64) => (&body[..64], &body[65..]),
        _ => return Err("no checksum".into()),
    };
    if checksum(json).as_bytes() != sum {
        return Err("checksum mismatch".into());
    }
    serde_json::from_slice(json).map_err(|e| format!("checksum matches but the entry does not parse: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(who: &str, outcome: Outcome) -> AuditEntry {
        AuditEntry {
            seq: 0,
            at_ms: 1,
            who: who.into(),
            role: Some(Role::Operator),
            action: "POST /admin/quotas/q".into(),
            before: serde_json::json!({"limit": 10}),
            after: serde_json::json!({"limit": 20}),
            outcome,
            status: 200,
            reason: None,
        }
    }

    #[test]
    fn entries_are_numbered_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        assert_eq!(log.append(entry("a", Outcome::Accepted)).unwrap(), 1);
        assert_eq!(log.append(entry("b", Outcome::Refused)).unwrap(), 2);
        drop(log);
        let log = AuditLog::open(dir.path()).unwrap();
        assert_eq!(log.append(entry("c", Outcome::Accepted)).unwrap(), 3);
        let read = read(dir.path()).unwrap();
        assert!(read.damaged.is_empty());
        let who: Vec<_> = read
            .entries
            .iter()
            .map(|e| (e.seq, e.who.as_str(), e.outcome))
            .collect();
        assert_eq!(
            who,
            [
                (1, "a", Outcome::Accepted),
                (2, "b", Outcome::Refused),
                (3, "c", Outcome::Accepted)
            ]
        );
    }

    #[test]
    fn a_flipped_byte_and_a_torn_tail_are_reported_never_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        for who in ["a", "b", "c"] {
            log.append(entry(who, Outcome::Accepted)).unwrap();
        }
        drop(log);
        let path = dir.path().join(AUDIT_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        // Change who made the second call: "b" -> "x".
        let second = bytes.iter().position(|b| *b == b'\n').unwrap() + 1;
        let at = second + bytes[second..].windows(7).position(|w| w == b"\"who\":\"").unwrap() + 7;
        bytes[at] = b'x';
        // A torn write after the third.
        bytes.extend_from_slice(b"0123abc {\"seq\":4");
        std::fs::write(&path, &bytes).unwrap();

        let read = read(dir.path()).unwrap();
        let who: Vec<_> = read.entries.iter().map(|e| e.who.as_str()).collect();
        assert_eq!(who, ["a", "c"]);
        let damaged: Vec<_> = read.damaged.iter().map(|d| d.line).collect();
        assert_eq!(damaged, [2, 4]);
        assert_eq!(read.damaged[0].reason, "checksum mismatch");

        // Reopening ends the torn line; the next entry is intact.
        let log = AuditLog::open(dir.path()).unwrap();
        assert_eq!(log.append(entry("d", Outcome::Refused)).unwrap(), 4);
        let read = super::read(dir.path()).unwrap();
        assert_eq!(read.entries.last().unwrap().who, "d");
        assert_eq!(read.damaged.len(), 2);
    }
}
