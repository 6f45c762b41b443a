//! `nexus profile` runs the real path at each pool size, writes one JSON
//! document with a point per size, a knee, a bottleneck and
//! recommendations; `[scaling] profile` caps the scaler at its best size;
//! bad input and a damaged profile are typed errors (exit 2), never a
//! panic. Tiny durations: the whole file runs in a few seconds.

use std::path::Path;
use std::process::{Command, Output};

use nexus_swarm::actors::perf_profile::PerfProfileError;
use nexus_swarm::actors::swarm::SwarmError;
use nexus_swarm::prelude::*;
use serde_json::Value;

fn nexus(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nexus"))
        .arg("profile")
        .args(args)
        .output()
        .expect("nexus runs")
}

/// A swarm in its own data directory under `dir`, scaled by `profile`.
fn config(dir: &Path, profile: &Path) -> NexusConfig {
    let data = tempfile::tempdir_in(dir).unwrap().keep();
    let text =
        format!("[node]\ndata_dir = {data:?}\n\n[monitor]\nenabled = false\n\n[scaling]\nprofile = {profile:?}\n");
    NexusConfig::from_toml_str(&text).expect("valid config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_finds_the_knee_and_the_bottleneck() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("profile.json");
    // 50 ms per call: a worker does at most ~17 tasks/s; 1200 rpm is 20/s,
    // so 2 workers reach the rate limit and 16 (32 conversations) gain
    // nothing over them: the knee is below 16 whatever the noise of a short
    // run (the step from 2 to 16 is judged per added worker).
    let run = nexus(&[
        "--sizes",
        "1,2,16",
        "--duration",
        "800ms",
        "--rpm",
        "1200",
        "--latency",
        "50ms",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let json: Value = serde_json::from_slice(&run.stdout).expect("one JSON document on stdout");
    assert_eq!(json["format"], 1);
    let sizes: Vec<u64> = json["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["size"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes, [1, 2, 16], "a point per size");
    for p in json["points"].as_array().unwrap() {
        assert!(p["completed"].as_u64().unwrap() > 0, "{p}");
        assert!(p["throughput_milli"].as_u64().unwrap() > 0, "{p}");
        assert!(p["p99_us"].as_u64().unwrap() >= p["p50_us"].as_u64().unwrap(), "{p}");
        assert!(p["cost_per_task_micro_usd"].as_u64().unwrap() > 0, "{p}");
        assert_eq!(p["failed"], 0, "{p}");
    }
    let curve = &json["curves"][0];
    assert_eq!(curve["bottleneck"]["kind"], "rate_limit", "{curve}");
    assert_eq!(curve["bottleneck"]["requests_per_minute"], 1200);
    let best = json["best_size"].as_u64().unwrap();
    assert!(best < 16, "16 workers gain nothing over the limit: knee {best}: {json}");
    let kinds: Vec<&str> = json["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"cap_workers"), "{kinds:?}");
    assert!(kinds.contains(&"raise_rate_limit"), "{kinds:?}");

    // The file reads back, and caps the scaler of a swarm configured with it.
    let written: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(written, json);
    let swarm = Swarm::start(config(dir.path(), &out)).await.expect("swarm starts");
    let scaler = swarm.scaler().expect("scaling is on");
    assert_eq!(
        u64::from(scaler.defaults().max),
        best,
        "max_workers 10 capped at the knee"
    );
    swarm.shutdown(std::time::Duration::from_secs(5)).await;

    // A damaged profile stops the start with a typed error.
    let damaged = dir.path().join("damaged.json");
    std::fs::write(&damaged, &std::fs::read(&out).unwrap()[..40]).unwrap();
    let err = Swarm::start(config(dir.path(), &damaged)).await.unwrap_err();
    assert!(
        matches!(err, SwarmError::PerfProfile(PerfProfileError::Damaged { .. })),
        "{err}"
    );
    let missing = Swarm::start(config(dir.path(), &dir.path().join("none.json")))
        .await
        .unwrap_err();
    assert!(
        matches!(missing, SwarmError::PerfProfile(PerfProfileError::Io { .. })),
        "{missing}"
    );
}

#[test]
fn a_budget_bound_run_names_the_budget() {
    let run = nexus(&[
        "--sizes",
        "1",
        "--duration",
        "200ms",
        "--latency",
        "1ms",
        "--budget",
        "100",
        "--json",
    ]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let json: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(json["curves"][0]["bottleneck"]["kind"], "budget", "{json}");
    assert!(json["points"][0]["evidence"]["budget_refusals"].as_u64().unwrap() > 0);
}

#[test]
fn bad_input_exits_2_with_a_reason() {
    for (args, reason) in [
        (&["--sizes", "0"][..], "not within 1..=4096"),
        (&["--sizes", "2,2"][..], "given twice"),
        (&["--duration", "2h"][..], "--duration"),
        (&["--duration", "1ms"][..], "--duration"),
        (&["--rpm", "0"][..], "--rpm"),
        (&["--sizes", ""][..], "sizes"),
        (&["--sizes", "a"][..], "sizes"),
        (&["--config", "/nonexistent/nexus.toml"][..], "nexus.toml"),
        (&["--out", "/nonexistent/dir/p.json"][..], "directory does not exist"),
    ] {
        let run = nexus(args);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(reason), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
