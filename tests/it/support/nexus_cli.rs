//! Running the `nexus` binary from tests: a guard that kills a child the
//! test did not see exit, one-shot commands, tokens files, and reading
//! `/status`.

#![allow(dead_code, unreachable_pub)] // each test file uses a subset

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::mpsc;

use serde_json::Value;

/// The `nexus` binary cargo built for these tests.
pub const NEXUS: &str = env!("CARGO_BIN_EXE_nexus");

/// Kills the child unless the test saw it exit.
pub struct Guard(pub Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            // It may have exited already; either way it is gone after this.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `nexus args...` to completion.
pub fn nexus(args: &[&str]) -> Output {
    Command::new(NEXUS).args(args).output().expect("nexus runs")
}

/// `nexus tokens hash token`: a sha256 in hex.
pub fn hash(token: &str) -> String {
    let out = nexus(&["tokens", "hash", token]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let h = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(h.len(), 64, "a sha256 in hex: {h}");
    h
}

/// Writes `<dir>/tokens.toml` for `(name, role, token)` entries.
pub fn write_tokens(dir: &Path, entries: &[(&str, &str, &str)]) -> PathBuf {
    let tokens = dir.join("tokens.toml");
    let mut text = String::new();
    for (name, role, token) in entries {
        text.push_str(&format!(
            "[[tokens]]\nname = \"{name}\"\nrole = \"{role}\"\nsha256 = \"{}\"\n",
            hash(token)
        ));
    }
    std::fs::write(&tokens, text).unwrap();
    tokens
}

/// The lines a child writes to `stream`, read on a thread.
pub fn lines_of(stream: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The limit of the quota `team-a` in a `/status` document.
pub fn team_limit(status: &Value) -> u64 {
    status["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["quota"]["id"] == "team-a")
        .expect("team-a in /status")["quota"]["limit"]
        .as_u64()
        .unwrap()
}
