//! `nexus bench --scenario cluster` starts a second node (a copy of the
//! binary), crosses it with bare ractor_cluster casts and calls and with
//! our envelope's casts and acknowledged asks, at 64 B and 4 KiB, and
//! prints one JSON line in which every message sent was received and
//! every ask answered; `nexus bench render --cluster` turns that line
//! into the README's table. (A tiny count: this proves the harness, the
//! figures come from a release run.)

use std::process::Command;

use serde_json::Value;

use crate::support::nexus_cli::NEXUS;

#[test]
fn cluster_scenario_reports_both_paths_at_both_sizes_and_counts_add_up() {
    let out = Command::new(NEXUS)
        .args(["bench", "--scenario", "cluster", "--messages", "300"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON line on stdout:\n{stdout}");
    let line: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(line["scenario"], "cluster");
    assert_eq!(line["processes"], 2);
    assert_eq!(line["messages"], 300);
    assert_eq!(line["asks"], 30);
    assert_eq!(
        line["checks"]["every_message_received_and_every_ask_answered"], true,
        "{line}"
    );
    let sizes = line["sizes"].as_array().unwrap();
    let payloads: Vec<u64> = sizes.iter().map(|s| s["payload_bytes"].as_u64().unwrap()).collect();
    assert_eq!(payloads, [64, 4096]);
    for s in sizes {
        assert_eq!(s["bare_received"], 300, "{s}");
        assert_eq!(s["ours_received"], 300, "{s}");
        assert_eq!(s["bare_replied"], 30, "{s}");
        assert_eq!(s["ours_acked"], 30, "{s}");
        for key in [
            "bare_cast_msgs_per_s",
            "ours_cast_msgs_per_s",
            "bare_call_p50_us",
            "bare_call_p99_us",
            "ours_ask_p50_us",
            "ours_ask_p99_us",
        ] {
            let v = s[key].as_f64().unwrap_or_else(|| panic!("{key}: {s}"));
            assert!(v > 0.0, "{key} = {v}: {s}");
        }
        let (p50, p99) = (
            s["ours_ask_p50_us"].as_f64().unwrap(),
            s["ours_ask_p99_us"].as_f64().unwrap(),
        );
        assert!(p50 <= p99, "{s}");
    }
    // Text above the 1 KiB threshold is compressed by the envelope; 64 B is not.
    assert_eq!(sizes[0]["compressed"], false);
    assert_eq!(sizes[1]["compressed"], true);
    assert!(sizes[1]["frame_bytes"].as_u64().unwrap() < 4096, "{}", sizes[1]);

    let dir = tempfile::tempdir().unwrap();
    let result = dir.path().join("cluster.json");
    std::fs::write(&result, lines[0]).unwrap();
    let rendered = Command::new(NEXUS)
        .args(["bench", "render", "--cluster"])
        .arg(&result)
        .output()
        .unwrap();
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let table = String::from_utf8_lossy(&rendered.stdout);
    let small_row = format!("| 64 B | {} B |", sizes[0]["frame_bytes"]);
    assert!(table.contains(&small_row), "{table}");
    assert!(table.contains("| 4096 B |"), "{table}");

    let refused = Command::new(NEXUS)
        .args(["bench", "--scenario", "monitor", "--messages", "10"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--messages"));
}
