//! `nexus run` end to end: a swarm from a small configuration serves
//! `/status` and `/metrics`; an admin change is refused without a token
//! (401), with a viewer token (403) and with a malformed body (400,
//! changing nothing), made with an operator token (200, visible in
//! `/status`); `nexus audit --json` lists the refused and the accepted
//! calls; SIGTERM shuts it down with exit code 0 and the ledger intact.
//! State exported from one run and imported into a fresh one reproduces
//! its quotas, budgets and pool sizes; an import with any problem changes
//! nothing.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use serde_json::Value;

use crate::support::http as support;

use crate::support::nexus_cli::{Guard, NEXUS, nexus, team_limit, write_tokens};
use support::{TIMEOUT, http, json};

/// A running `nexus run`: its guard, HTTP address and stderr lines.
fn start_run(config: &Path, tokens: &Path) -> (Guard, String, mpsc::Receiver<String>) {
    let child = Command::new(NEXUS)
        .args(["run", "--config", config.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .args(["--tokens", tokens.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nexus run starts");
    let mut guard = Guard(Some(child));
    let stderr = guard.0.as_mut().unwrap().stderr.take().unwrap();
    let (lines_tx, lines) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + TIMEOUT;
    let mut seen = Vec::new();
    let addr = loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|e| panic!("no listening line ({e}); stderr: {seen:?}"));
        if let Some(rest) = line.split("http://").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
        seen.push(line);
    };
    (guard, addr, lines)
}

/// Sends SIGTERM and waits for the exit: (exit code, the rest of stderr).
fn stop_run(mut guard: Guard, lines: mpsc::Receiver<String>) -> (Option<i32>, Vec<String>) {
    let pid = guard.0.as_ref().unwrap().id();
    let killed = Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + TIMEOUT;
    // The reader thread ends when the child closes stderr, at its exit.
    let mut rest = Vec::new();
    loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => rest.push(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("no exit within {TIMEOUT:?}; stderr: {rest:?}"),
        }
    }
    let exit = guard.0.take().unwrap().wait().unwrap();
    (exit.code(), rest)
}

/// `nexus state export|import FILE` against `addr` with `token`.
fn state(verb: &str, file: &Path, addr: &str, token: &str) -> Output {
    Command::new(NEXUS)
        .args([
            "state",
            verb,
            file.to_str().unwrap(),
            "--url",
            &format!("http://{addr}"),
        ])
        .env("NEXUS_TOKEN", token)
        .output()
        .expect("nexus state runs")
}

fn write_config(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    let config = dir.join("nexus.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[node]
data_dir = "{}"

[run]
shutdown_timeout = "20s"

[[run.pools]]
name = "echoes"
agent = "echo"
size = 2

[[routers]]
name = "front"
pool = "echoes"

[[quotas.quotas]]
id = "team-a"
kind = "input_tokens"
limit = 1000
"#,
            data.display()
        ),
    )
    .unwrap();
    config
}

#[test]
fn run_serves_status_and_metrics_audits_admin_calls_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let tokens = write_tokens(
        dir.path(),
        &[
            ("grafana", "viewer", "view-secret"),
            ("oncall", "operator", "op-secret"),
        ],
    );
    assert!(
        !std::fs::read_to_string(&tokens).unwrap().contains("op-secret"),
        "the file holds hashes only"
    );

    let (guard, addr, lines) = start_run(&config, &tokens);

    assert_eq!(http(&addr, "GET", "/health", None, None).0, 200);
    assert_eq!(http(&addr, "GET", "/ready", None, None).0, 200);
    assert_eq!(
        http(&addr, "GET", "/status", None, None).0,
        401,
        "reads need a token once tokens exist"
    );
    let (code, body) = http(&addr, "GET", "/status", Some("view-secret"), None);
    assert_eq!(code, 200, "{body}");
    let status = json(&body);
    assert_eq!(status["ready"], true);
    let pool = &status["pools"][0];
    assert_eq!(
        (pool["name"].as_str(), pool["size"].as_u64()),
        (Some("echoes"), Some(2))
    );
    assert_eq!(pool["lanes"]["normal"]["depth"], 0);
    assert_eq!(status["routers"][0]["name"], "front");
    assert_eq!(status["routers"][0]["members"], 2);
    assert!(status["pressure"]["overall"].is_string(), "{status}");
    assert!(status["pressure"]["responses_engaged"].is_array(), "{status}");
    assert_eq!(team_limit(&status), 1000);

    let (code, metrics) = http(&addr, "GET", "/metrics", Some("view-secret"), None);
    assert_eq!(code, 200);
    for name in [
        "# TYPE nexus_monitor_samples_total counter",
        "nexus_monitor_alerts_raised_total",
        "nexus_pool_handler_latency_seconds",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics:\n{metrics}");
    }

    let change = Some(r#"{"limit": 250}"#);
    let (code, body) = http(&addr, "POST", "/admin/quotas/team-a", None, change);
    assert_eq!(code, 401, "{body}");
    assert_eq!(json(&body)["error"], "unauthorized");
    let (code, body) = http(&addr, "POST", "/admin/quotas/team-a", Some("not-a-token"), change);
    assert_eq!(code, 401, "{body}");
    let (code, body) = http(&addr, "POST", "/admin/quotas/team-a", Some("view-secret"), change);
    assert_eq!(code, 403, "{body}");
    assert_eq!(json(&body)["error"], "forbidden");
    let (code, body) = http(
        &addr,
        "POST",
        "/admin/quotas/team-a",
        Some("op-secret"),
        Some(r#"{"limit": -3}"#),
    );
    assert_eq!(code, 400, "{body}");
    let (_, body) = http(&addr, "GET", "/status", Some("view-secret"), None);
    assert_eq!(team_limit(&json(&body)), 1000, "refused calls change nothing");

    let (code, body) = http(&addr, "POST", "/admin/quotas/team-a", Some("op-secret"), change);
    assert_eq!(code, 200, "{body}");
    let (code, body) = http(
        &addr,
        "POST",
        "/admin/pools/echoes/size",
        Some("op-secret"),
        Some(r#"{"size": 3}"#),
    );
    assert_eq!(code, 200, "{body}");
    let (_, body) = http(&addr, "GET", "/status", Some("view-secret"), None);
    let status = json(&body);
    assert_eq!(team_limit(&status), 250);
    assert_eq!(status["pools"][0]["size"], 3);
    assert_eq!(
        status["routers"][0]["members"], 3,
        "the declared router follows the resize"
    );
    let member = status["routers"][0]["member_weights"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/admin/routers/front/members/{member}/weight");
    let (code, body) = http(&addr, "POST", &path, Some("op-secret"), Some(r#"{"weight": 5}"#));
    assert_eq!(code, 200, "{body}");
    let (_, body) = http(&addr, "GET", "/status", Some("view-secret"), None);
    assert_eq!(json(&body)["routers"][0]["member_weights"][0]["weight"], 5);

    let out = nexus(&[
        "audit",
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let audit = json(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(audit["damaged"].as_array().unwrap().len(), 0);
    let entries = audit["entries"].as_array().unwrap();
    let calls: Vec<(&str, &str, u64)> = entries
        .iter()
        .map(|e| {
            (
                e["who"].as_str().unwrap(),
                e["outcome"].as_str().unwrap(),
                e["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        calls,
        [
            ("anonymous", "refused", 401),
            ("anonymous", "refused", 401),
            ("grafana", "refused", 403),
            ("oncall", "refused", 400),
            ("oncall", "accepted", 200),
            ("oncall", "accepted", 200),
            ("oncall", "accepted", 200),
        ]
    );
    let accepted = &entries[4];
    assert_eq!(accepted["action"], "POST /admin/quotas/team-a");
    assert_eq!(accepted["before"]["limit"], 1000);
    assert_eq!(accepted["after"]["limit"], 250);
    assert_eq!(entries[5]["before"]["size"], 2);
    assert_eq!(entries[5]["after"]["size"], 3);

    let (code, rest) = stop_run(guard, lines);
    assert_eq!(code, Some(0), "stderr: {rest:?}");
    assert!(rest.iter().any(|l| l.contains("SIGTERM")), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("ledger intact")), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("shut down cleanly")), "{rest:?}");

    let verify = nexus(&[
        "ledger",
        "verify",
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
    ]);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
}

#[test]
fn a_non_loopback_address_without_tokens_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let out = nexus(&["run", "--config", config.to_str().unwrap(), "--listen", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to listen on 0.0.0.0:0") && err.contains("--tokens"),
        "{err}"
    );
    assert!(!dir.path().join("data").join("ledger.redb").exists(), "nothing started");
}

#[test]
fn state_exported_from_one_run_and_imported_into_a_fresh_one_reproduces_quotas_budgets_and_pools() {
    let first = tempfile::tempdir().unwrap();
    let config = write_config(first.path());
    let roles = [
        ("view", "viewer", "v"),
        ("ops", "operator", "o"),
        ("root", "admin", "a"),
    ];
    let tokens = write_tokens(first.path(), &roles);
    let (guard, addr, lines) = start_run(&config, &tokens);
    let budget = r#"{"limit_micro_usd": 7000000, "period": "monthly", "action": "halt", "scope": {"tenant": "acme"}}"#;
    assert_eq!(
        http(&addr, "PUT", "/admin/budgets/acme", Some("o"), Some(budget)).0,
        200
    );
    assert_eq!(
        http(
            &addr,
            "POST",
            "/admin/quotas/team-a",
            Some("o"),
            Some(r#"{"limit": 42}"#)
        )
        .0,
        200
    );
    assert_eq!(
        http(
            &addr,
            "POST",
            "/admin/pools/echoes/size",
            Some("o"),
            Some(r#"{"size": 4}"#)
        )
        .0,
        200
    );
    let file = first.path().join("state.json");
    let out = state("export", &file, &addr, "v");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, body) = http(&addr, "GET", "/status", Some("v"), None);
    let before = json(&body);
    assert_eq!(stop_run(guard, lines).0, Some(0));

    let second = tempfile::tempdir().unwrap();
    let config = write_config(second.path());
    let tokens = write_tokens(second.path(), &roles);
    let (guard, addr, lines) = start_run(&config, &tokens);
    let (_, body) = http(&addr, "GET", "/status", Some("v"), None);
    assert_eq!(
        team_limit(&json(&body)),
        1000,
        "a fresh run starts from its configuration"
    );

    // Refused whole: an operator may not import; a document naming an unknown quota changes nothing.
    let out = state("import", &file, &addr, "o");
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let mut doc = json(&std::fs::read_to_string(&file).unwrap());
    doc["quotas"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"id": "ghost", "limit": 1, "borrow_ceiling": 0}));
    doc["version"] = 9.into();
    let bad = second.path().join("bad.json");
    std::fs::write(&bad, doc.to_string()).unwrap();
    let out = state("import", &bad, &addr, "a");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ghost") && err.contains("version 9"),
        "every problem is listed: {err}"
    );
    let (_, body) = http(&addr, "GET", "/status", Some("v"), None);
    let untouched = json(&body);
    assert_eq!(team_limit(&untouched), 1000);
    assert_eq!(untouched["budgets"].as_array().unwrap().len(), 0);
    assert_eq!(untouched["pools"][0]["size"], 2);

    let out = state("import", &file, &addr, "a");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, body) = http(&addr, "GET", "/status", Some("v"), None);
    let after = json(&body);
    let limits = |s: &Value| -> Vec<(String, u64)> {
        s["quotas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| {
                (
                    q["quota"]["id"].as_str().unwrap().to_string(),
                    q["quota"]["limit"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let budgets = |s: &Value| -> Vec<Value> {
        s["budgets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["budget"].clone())
            .collect()
    };
    assert_eq!(limits(&after), limits(&before));
    assert_eq!(limits(&after), [("team-a".to_string(), 42)]);
    assert_eq!(budgets(&after), budgets(&before));
    assert_eq!(budgets(&after).len(), 1);
    assert_eq!(after["pools"][0]["size"], 4);
    assert_eq!(stop_run(guard, lines).0, Some(0));
}
