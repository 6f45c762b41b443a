//! `nexus bench --scenario ramp|peak|stress|soak` drives the real path
//! open-loop and prints exactly one JSON line on stdout: offered, admitted,
//! shed, latency of the admitted, lane depth; stress sheds with typed
//! refusals inside bounded lanes; soak reports memory per window and the
//! injected fault. (Tiny durations: these prove the harness, the figures
//! come from full-length runs.)

use std::process::Command;

use serde_json::Value;

fn scenario(name: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_nexus"))
        .args(["bench", "--scenario", name, "--duration", "2s"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "one JSON line on stdout, human text on stderr:\n{stdout}"
    );
    let line: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(line["scenario"], name);
    for key in [
        "sustainable_req_per_s",
        "offered",
        "admitted",
        "completed",
        "throughput_req_per_s",
        "p99_ms",
    ] {
        let v = line[key].as_f64().unwrap_or_else(|| panic!("{key}: {line}"));
        assert!(v > 0.0, "{key} = {v}: {line}");
    }
    let (offered, admitted, shed) = (
        line["offered"].as_u64().unwrap(),
        line["admitted"].as_u64().unwrap(),
        line["shed"].as_u64().unwrap(),
    );
    assert_eq!(offered, admitted + shed, "every offer is admitted or shed: {line}");
    assert!(
        line["completed"].as_u64().unwrap() + line["errors"].as_u64().unwrap() == admitted,
        "every admitted request is answered: {line}"
    );
    assert!(line["max_lane_depth"].as_u64().unwrap() <= line["lane_capacity"].as_u64().unwrap());
    assert!(line["checks"].is_object() && line["passed"].is_boolean(), "{line}");
    line
}

#[test]
fn ramp_reports_ten_steps_of_rising_load() {
    let line = scenario("ramp");
    let windows = line["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 10, "{line}");
    let first = windows[0]["offered_req_per_s"].as_f64().unwrap();
    let last = windows[9]["offered_req_per_s"].as_f64().unwrap();
    assert!(last > first, "offered load rises: {first} then {last}");
}

#[test]
fn peak_offers_the_sustainable_rate() {
    let line = scenario("peak");
    let offered = line["offered_req_per_s"].as_f64().unwrap();
    let sustainable = line["sustainable_req_per_s"].as_f64().unwrap();
    assert!(offered > 0.5 * sustainable && offered < 1.5 * sustainable, "{line}");
}

#[test]
fn stress_at_twice_the_sustainable_rate_sheds_with_typed_refusals() {
    let line = scenario("stress");
    let offered = line["offered_req_per_s"].as_f64().unwrap();
    let sustainable = line["sustainable_req_per_s"].as_f64().unwrap();
    assert!(offered > 1.5 * sustainable, "{line}");
    let shed = line["shed"].as_u64().unwrap();
    assert!(shed > 0, "{line}");
    assert_eq!(
        shed,
        line["shed_admission"].as_u64().unwrap() + line["shed_lane_full"].as_u64().unwrap(),
        "every refusal is the admission's or a full lane's: {line}"
    );
    assert_eq!(line["checks"]["shed"], true);
    assert_eq!(line["checks"]["lanes_bounded"], true);
}

#[test]
fn soak_reports_memory_per_window_and_the_injected_fault() {
    let line = scenario("soak");
    let windows = line["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 6, "{line}");
    for w in windows {
        assert!(w["rss_bytes"].as_u64().unwrap() > 0, "{w}");
    }
    assert!(line["fault_s"].as_f64().unwrap() > 0.0, "{line}");
    assert!(
        line["errors_during_fault"].as_u64().unwrap() > 0,
        "the fault failed the requests it met: {line}"
    );
    assert!(line["errors_agent_failed"].as_u64().unwrap() > 0, "{line}");
    assert!(line.get("recovery_ms").is_some(), "{line}");
    assert!(line["rss_last_vs_second_window_pct"].is_number(), "{line}");
}

/// The monitor's own cost: samples taken back to back through a swarm's
/// monitor, stated as a share of one core at the default interval beside
/// the 1 % target (the figure itself comes from a release run).
#[test]
fn monitor_reports_its_sampling_cost_beside_the_target() {
    let out = Command::new(env!("CARGO_BIN_EXE_nexus"))
        .args(["bench", "--scenario", "monitor", "--duration", "2s"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let line: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(line["scenario"], "monitor");
    assert_eq!(line["interval_s"], 10.0, "the default interval");
    assert_eq!(line["target_pct_of_core"], 1.0);
    let samples = line["samples"].as_u64().unwrap();
    assert!(samples >= 10, "{line}");
    let us = line["sample_us"].as_f64().unwrap();
    let pct = line["overhead_pct_of_core"].as_f64().unwrap();
    assert!(us > 0.0 && pct > 0.0, "{line}");
    // The share is the sample's time over the interval, in percent.
    assert!((pct - us / 10e6 * 100.0).abs() < 1e-9, "{line}");
    assert!(line["checks"]["overhead_below_1pct_of_core"].is_boolean(), "{line}");
    assert!(stderr.contains("% of one core"), "{stderr}");
}
