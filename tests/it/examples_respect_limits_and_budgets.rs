//! The examples keep their promises, run as a user runs them (`--json`):
//! the swarm never draws a 429 from the provider and never spends more than
//! its budget, whatever its rpm / tpm / budget flags; the budget example
//! halts with its committed spend at most the budget and less than one
//! request's worst case below it; the autoscale example scales both ways
//! within its bounds and the node's capacity, never inside the cooldown,
//! handles every message it sent, and its monitor raises and clears alerts
//! on the pool's queue. With `--json` stdout is exactly one JSON
//! line; flags out of range exit with status 2 and a message, never a
//! panic; a failed task's reason is reported.
//!
//! The example executables sit beside the test's own directory
//! (`target/<profile>/examples/`); `cargo test` builds them, and the test
//! asks cargo to build them once more first (a no-op when they are fresh),
//! so that it never runs stale ones when only this test is selected.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

/// Builds the examples (once per test binary) and returns their directory.
fn examples_dir() -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            // target/<profile>/deps/<this test> -> target/<profile>
            let profile_dir = exe
                .parent()
                .and_then(|deps| deps.parent())
                .ok_or("the test executable is not in target/<profile>/deps")?
                .to_path_buf();
            let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
                Some("debug") => "dev".to_string(),
                Some(other) => other.to_string(),
                None => return Err("no profile directory".into()),
            };
            let mut cargo = Command::new(env!("CARGO"));
            // The variables cargo sets for a test it runs (not the user's
            // configuration): build scripts that watch them would otherwise
            // see a change and rebuild half the dependency tree.
            for (key, _) in std::env::vars_os() {
                let key = key.to_string_lossy();
                let set_by_cargo = key.starts_with("CARGO_PKG_")
                    || key.starts_with("CARGO_BIN_EXE_")
                    || [
                        "CARGO_MANIFEST_DIR",
                        "CARGO_MANIFEST_PATH",
                        "CARGO_CRATE_NAME",
                        "CARGO_PRIMARY_PACKAGE",
                        "CARGO_TARGET_TMPDIR",
                        "CARGO_RUSTC_CURRENT_DIR",
                        "OUT_DIR",
                    ]
                    .contains(&key.as_ref());
                if set_by_cargo {
                    cargo.env_remove(key.as_ref());
                }
            }
            let status = cargo
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .args(["build", "--quiet", "--profile", &profile])
                .args(["--example", "swarm", "--example", "budget", "--example", "autoscale"])
                .status()
                .map_err(|e| format!("running cargo failed: {e}"))?;
            if !status.success() {
                return Err(format!("building the examples failed: {status}"));
            }
            Ok(profile_dir.join("examples"))
        })
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn example_exe(name: &str) -> PathBuf {
    examples_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// Runs an example with `--json` and these flags; its one stdout line,
/// and the summary it printed to stderr.
fn run_json_line(example: &str, flags: &[&str]) -> (Value, String) {
    let exe = example_exe(example);
    let out = Command::new(&exe)
        .args(flags)
        .arg("--json")
        .output()
        .unwrap_or_else(|e| panic!("running {} failed: {e}", exe.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{example} {flags:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{example} {flags:?}: stdout is one JSON line:\n{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let v = serde_json::from_str(lines[0])
        .unwrap_or_else(|e| panic!("{example} {flags:?}: stdout is not JSON ({e}): {stdout}"));
    (v, stderr)
}

/// Runs a spending example with `--json` and these flags; its one stdout line.
fn run_json(example: &str, flags: &[&str]) -> Value {
    let (v, stderr) = run_json_line(example, flags);
    assert!(
        stderr.contains("spend"),
        "{example}: the summary goes to stderr:\n{stderr}"
    );
    v
}

fn num(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("`{key}` missing or not a number in {v}"))
}

/// The swarm's promises for one set of flags.
fn swarm_keeps_limits_and_budget(flags: &[&str]) -> Value {
    let v = run_json("swarm", flags);
    assert_eq!(num(&v, "provider_429s"), 0, "{flags:?}: {v}");
    let (spent, budget) = (num(&v, "spent_micro_usd"), num(&v, "budget_micro_usd"));
    assert!(spent <= budget, "{flags:?}: spent {spent} > budget {budget}");
    let finished = ["tasks_done", "tasks_halted", "tasks_failed", "tasks_expired"]
        .iter()
        .map(|k| num(&v, k))
        .sum::<u64>();
    assert_eq!(finished, num(&v, "tasks"), "{flags:?}: every task ends: {v}");
    assert!(
        num(&v, "provider_calls") > 0,
        "{flags:?}: the swarm called the provider"
    );
    v
}

const QUICK: &[&str] = &["--tasks", "8", "--fanout", "2", "--agents", "4", "--latency-ms", "20"];

fn with<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    QUICK.iter().copied().chain(extra.iter().copied()).collect()
}

#[test]
fn swarm_under_a_tight_request_rate_draws_no_429() {
    // 30 requests a minute: most questions wait, some past their deadline.
    swarm_keeps_limits_and_budget(&with(&["--rpm", "30", "--deadline-secs", "3"]));
}

#[test]
fn swarm_under_a_tight_token_rate_draws_no_429() {
    swarm_keeps_limits_and_budget(&with(&["--tpm", "2500", "--deadline-secs", "3"]));
}

#[test]
fn swarm_under_a_tight_budget_halts_within_it() {
    let v = swarm_keeps_limits_and_budget(&with(&["--budget", "3000"]));
    assert!(num(&v, "tasks_halted") > 0, "the budget halted tasks: {v}");
    assert!(num(&v, "spent_micro_usd") > 0);
}

#[test]
fn swarm_under_every_limit_at_once_keeps_them_all() {
    swarm_keeps_limits_and_budget(&with(&[
        "--rpm",
        "60",
        "--tpm",
        "4000",
        "--budget",
        "2000",
        "--deadline-secs",
        "3",
    ]));
}

#[test]
fn budget_example_halts_and_spends_the_budget_to_within_one_worst_request_without_overshoot() {
    let v = run_json(
        "budget",
        &[
            "--budget",
            "20000",
            "--agents",
            "6",
            "--requests",
            "200",
            "--seed",
            "11",
        ],
    );
    let (spent, budget, worst) = (
        num(&v, "spent_micro_usd"),
        num(&v, "budget_micro_usd"),
        num(&v, "worst_request_micro_usd"),
    );
    assert_eq!(budget, 20_000);
    assert!(worst > 0, "{v}");
    assert!(spent > 0, "the swarm spent something before the halt: {v}");
    assert!(spent <= budget, "spent {spent} > budget {budget}");
    // It halts only when settled spend leaves no room for a request's worst
    // case, never because of holds in flight.
    assert!(
        spent + worst > budget,
        "spent {spent} left room for the worst request {worst} in budget {budget}"
    );
    assert_eq!(v["halted"], Value::Bool(true), "{v}");
    let (ok, refused) = (num(&v, "requests_ok"), num(&v, "requests_refused"));
    assert!(ok > 0 && refused > 0, "{v}");
    assert_eq!(ok + refused + num(&v, "requests_failed"), 200);
    // The ledger committed exactly what the answers said they cost, and
    // refused requests never reached the provider.
    assert_eq!(spent, num(&v, "answered_cost_micro_usd"), "{v}");
    assert_eq!(num(&v, "sink_errors"), 0);
    assert_eq!(num(&v, "provider_calls"), ok);
    assert_eq!(num(&v, "provider_429s"), 0);
}

#[test]
fn out_of_range_flags_exit_2_with_a_message_never_a_panic() {
    let cases: &[(&str, &[&str], &str)] = &[
        ("swarm", &["--deadline-secs", "18446744073709551615"], "--deadline-secs"),
        ("swarm", &["--tasks", "18446744073709551615"], "--tasks"),
        ("swarm", &["--agents", "0"], "--agents"),
        ("swarm", &["--agents", "99999999"], "--agents"),
        ("swarm", &["--tpm", "0"], "--tpm"),
        ("swarm", &["--latency-ms", "18446744073709551615"], "--latency-ms"),
        ("budget", &["--requests", "18446744073709551615"], "--requests"),
        ("budget", &["--agents", "100000"], "--agents"),
        ("budget", &["--budget", "0"], "--budget"),
    ];
    for (name, flags, flag) in cases {
        let out = Command::new(example_exe(name))
            .args(*flags)
            .output()
            .expect("run the example");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name} {flags:?}: {stderr}");
        assert!(
            stderr.contains(flag),
            "{name} {flags:?}: the message names the flag: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{name} {flags:?}: {stderr}");
    }
}

#[test]
fn a_request_that_can_never_fit_the_token_limit_is_reported_with_its_reason() {
    let v = run_json("swarm", &with(&["--tpm", "1", "--deadline-secs", "3"]));
    // No task can succeed; each fails on the limit, or (when the refusal
    // reaches it after its deadline) expires.
    assert_eq!(num(&v, "tasks_done"), 0, "{v}");
    assert!(num(&v, "tasks_failed") >= 1, "{v}");
    assert_eq!(
        num(&v, "tasks_failed") + num(&v, "tasks_expired"),
        num(&v, "tasks"),
        "{v}"
    );
    let why = v["first_failure"]
        .as_str()
        .unwrap_or_else(|| panic!("no reason given: {v}"));
    assert!(
        why.contains("tokens_per_minute") && why.contains("exceeds the limit"),
        "{why}"
    );
    assert_eq!(num(&v, "provider_calls"), 0, "{v}");
}

#[test]
fn autoscale_example_scales_both_ways_within_bounds_and_cooldown_losing_no_message() {
    let (v, stderr) = run_json_line("autoscale", &[]);
    assert!(stderr.contains("scale-outs"), "the summary goes to stderr:\n{stderr}");
    assert_eq!(num(&v, "decisions_inside_cooldown"), 0, "{v}");
    assert!(num(&v, "scale_outs") >= 2 && num(&v, "scale_ins") >= 2, "{v}");
    // Within the policy's 2..=10, and within the node's room for eight.
    assert_eq!(num(&v, "min_workers_seen"), 2, "{v}");
    assert_eq!(num(&v, "max_workers_seen"), 8, "{v}");
    assert!(num(&v, "not_admitted") > 0, "the node's capacity refused a worker: {v}");
    let sent = num(&v, "messages_sent");
    assert!(sent > 10_000, "{v}");
    assert_eq!(num(&v, "messages_handled"), sent, "{v}");
    // The backlog filled the pool's lanes past the warning threshold, and
    // every alert it raised was cleared once the load drained.
    let raised = num(&v, "alerts_raised");
    assert!(raised >= 1, "{v}");
    assert_eq!(num(&v, "alerts_cleared"), raised, "{v}");
    assert!(stderr.contains("alert raised"), "alerts are printed:\n{stderr}");
}
