//! `nexus bench --json` writes one object with every key the team tracks,
//! each a number measured in that run. (A tiny smoke-sized run: this test
//! proves the harness, the figures come from `nexus bench --quick`.)

use std::process::Command;

const KEYS: &[&str] = &[
    "raw_cast_msgs_per_s",
    "routed_cast_msgs_per_s",
    "routed_to_raw_ratio",
    "raw_call_p99_us",
    "ask_p50_us",
    "ask_p95_us",
    "ask_p99_us",
    "ask_p999_us",
    "high_ask_p99_under_flood_us",
    "raw_ask_p99_under_flood_us",
    "seed_scenario_msgs_per_s",
    "seed_scenario_p95_ms",
    "seed_scenario_p99_ms",
    "spawn_100k_ms",
    "bytes_per_idle_agent",
    "bytes_per_raw_actor",
    "ring_lookup_ns",
    "quota_charge_ns",
];

#[test]
fn a_smoke_run_writes_every_key_as_a_positive_number() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.json");
    let out = Command::new(env!("CARGO_BIN_EXE_nexus"))
        .args(["bench", "--smoke", "--json", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ratio to bare ractor cast"),
        "the table is printed:\n{stdout}"
    );
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for key in KEYS {
        let v = report[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} missing or not a number: {report}"));
        assert!(v > 0.0 && v.is_finite(), "{key} = {v}");
    }
    let ratio = report["routed_to_raw_ratio"].as_f64().unwrap();
    let computed = report["routed_cast_msgs_per_s"].as_f64().unwrap() / report["raw_cast_msgs_per_s"].as_f64().unwrap();
    assert!(
        (ratio - computed).abs() < 0.01,
        "the ratio is computed from the two rates"
    );
}
