//! `nexus bench --json` writes one object with every key the team tracks,
//! each a number measured in that run, and each ratio the quotient of its
//! two figures from that same run; `--save` writes it with the machine,
//! `nexus bench render` turns saved runs into the README table, and
//! `--baseline` fails a run whose ratios regressed. (Tiny smoke-sized runs:
//! these tests prove the harness, the figures come from full runs.)

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

const KEYS: &[&str] = &[
    "raw_cast_msgs_per_s",
    "agent_send_msgs_per_s",
    "agent_to_raw_ratio",
    "pool_workers",
    "raw_pool_msgs_per_s",
    "routed_cast_msgs_per_s",
    "routed_to_raw_ratio",
    "raw_call_p50_us",
    "raw_call_p99_us",
    "ask_p50_us",
    "ask_p95_us",
    "ask_p99_us",
    "ask_p999_us",
    "high_ask_p99_under_flood_us",
    "raw_ask_p99_under_flood_us",
    "pingpong_msgs_per_s",
    "pingpong_p95_ms",
    "pingpong_p99_ms",
    "pingpong_max_ms",
    "llm_scenario_req_per_s",
    "llm_scenario_p50_ms",
    "llm_scenario_p95_ms",
    "llm_scenario_p99_ms",
    "gateway_overhead_p50_us",
    "gateway_overhead_p99_us",
    "spawn_100k_ms",
    "raw_spawn_100k_ms",
    "spawn_ratio",
    "bytes_per_idle_agent",
    "bytes_per_raw_actor",
    "idle_bytes_ratio",
    "spawn_10k_agents_ms",
    "pool_spawn_10k_ms",
    "pool_spawn_ratio",
    "ring_lookup_ns",
    "ring_lookup_keys",
    "quota_charge_ns",
];

/// (ratio, numerator, denominator).
const RATIOS: &[(&str, &str, &str)] = &[
    ("agent_to_raw_ratio", "agent_send_msgs_per_s", "raw_cast_msgs_per_s"),
    ("routed_to_raw_ratio", "routed_cast_msgs_per_s", "raw_pool_msgs_per_s"),
    ("spawn_ratio", "spawn_100k_ms", "raw_spawn_100k_ms"),
    ("idle_bytes_ratio", "bytes_per_idle_agent", "bytes_per_raw_actor"),
    ("pool_spawn_ratio", "pool_spawn_10k_ms", "spawn_10k_agents_ms"),
];

struct SmokeRun {
    dir: tempfile::TempDir,
    stdout: String,
    report: Value,
    saved: PathBuf,
}

fn nexus(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nexus")).args(args).output().unwrap()
}

/// One smoke run with `--json` and `--save`, shared by the tests below.
fn smoke_run() -> &'static SmokeRun {
    static RUN: OnceLock<SmokeRun> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("bench.json");
        let results = dir.path().join("results");
        let out = nexus(&[
            "bench",
            "--smoke",
            "--json",
            json.to_str().unwrap(),
            "--save",
            "--results-dir",
            results.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let report = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let saved = std::fs::read_dir(&results).unwrap().next().unwrap().unwrap().path();
        SmokeRun {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            dir,
            report,
            saved,
        }
    })
}

fn number(report: &Value, key: &str) -> f64 {
    report[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing or not a number: {report}"))
}

#[test]
fn a_smoke_run_writes_every_key_as_a_positive_number() {
    let run = smoke_run();
    assert!(
        run.stdout.contains("ratio to the bare cast"),
        "the table is printed:\n{}",
        run.stdout
    );
    assert_eq!(run.report["mode"], "smoke");
    for key in KEYS {
        let v = number(&run.report, key);
        assert!(v.is_finite() && v > 0.0, "{key} = {v}");
    }
    for old in [
        "seed_scenario_msgs_per_s",
        "seed_scenario_p95_ms",
        "seed_scenario_p99_ms",
    ] {
        assert!(
            run.report.get(old).is_none(),
            "{old} is gone: the scenario is ping-pong"
        );
    }
    assert_eq!(number(&run.report, "llm_scenario_agents"), 100.0);
    assert_eq!(number(&run.report, "llm_scenario_conversations"), 50.0);
}

#[test]
fn each_ratio_is_the_quotient_of_its_two_figures_from_the_same_run() {
    let r = &smoke_run().report;
    for (ratio, numerator, denominator) in RATIOS {
        let computed = number(r, numerator) / number(r, denominator);
        let stored = number(r, ratio);
        assert!(
            (stored - computed).abs() <= 1e-9 * computed.abs(),
            "{ratio} = {stored}, but {numerator} / {denominator} = {computed}"
        );
    }
}

#[test]
fn the_saved_result_holds_the_report_the_run_and_the_machine() {
    let run = smoke_run();
    let name = run.saved.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.ends_with("-smoke.json"), "{name}");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&run.saved).unwrap()).unwrap();
    assert_eq!(saved["report"], run.report);
    assert_eq!(saved["run_reports"].as_array().unwrap().len(), 1);
    let machine = &saved["machine"];
    assert!(machine["cores"].as_u64().unwrap() >= 1, "{machine}");
    for key in ["cpu_model", "kernel", "rustc", "git_rev"] {
        assert!(!machine[key].as_str().unwrap().is_empty(), "{key}: {machine}");
    }
    assert!(machine["rustc"].as_str().unwrap().starts_with("rustc "), "{machine}");
}

fn write_readme(dir: &Path) -> PathBuf {
    let readme = dir.join("README.md");
    std::fs::write(
        &readme,
        "# Project\n\n## Benchmarks\n\n<!-- bench-table:begin -->\nstale\n<!-- bench-table:end -->\n\n## Next\n",
    )
    .unwrap();
    readme
}

#[test]
fn render_replaces_the_readme_block_with_the_medians_of_the_saved_runs() {
    let run = smoke_run();
    let dir = tempfile::tempdir().unwrap();
    let readme = write_readme(dir.path());
    let saved = run.saved.to_str().unwrap();
    let out = nexus(&[
        "bench",
        "render",
        "--readme",
        readme.to_str().unwrap(),
        saved,
        saved,
        saved,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&readme).unwrap();
    assert!(
        text.starts_with("# Project\n\n## Benchmarks\n\n<!-- bench-table:begin -->\n"),
        "{text}"
    );
    assert!(text.ends_with("<!-- bench-table:end -->\n\n## Next\n"), "{text}");
    assert!(!text.contains("stale"), "{text}");
    assert!(
        text.contains("Medians of 3 runs of `nexus bench` (smoke mode)"),
        "{text}"
    );
    let quota = format!("| {:.1} ns | <= 50 ns |", number(&run.report, "quota_charge_ns"));
    assert!(
        text.contains(&quota),
        "the median of three copies is the figure itself: {quota}\n{text}"
    );

    // Without --readme the block is printed.
    let out = nexus(&["bench", "render", saved]);
    assert!(out.status.success());
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.starts_with("One run of `nexus bench` (smoke mode)"),
        "{printed}"
    );
    assert!(printed.contains("| measurement | measured | target |"), "{printed}");
}

#[test]
fn render_refuses_a_readme_without_the_markers() {
    let run = smoke_run();
    let dir = tempfile::tempdir().unwrap();
    let readme = dir.path().join("README.md");
    std::fs::write(&readme, "# No table here\n").unwrap();
    let out = nexus(&[
        "bench",
        "render",
        "--readme",
        readme.to_str().unwrap(),
        run.saved.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "an error, not a panic");
    assert!(String::from_utf8_lossy(&out.stderr).contains("bench-table:begin"));
    assert_eq!(std::fs::read_to_string(&readme).unwrap(), "# No table here\n");
}

#[test]
fn a_run_whose_ratio_regressed_against_the_baseline_exits_1() {
    let run = smoke_run();
    // A baseline whose agent ratio no run can reach.
    let mut baseline: Value = serde_json::from_str(&std::fs::read_to_string(&run.saved).unwrap()).unwrap();
    baseline["report"]["agent_to_raw_ratio"] = 1e9.into();
    let path = run.dir.path().join("baseline.json");
    std::fs::write(&path, baseline.to_string()).unwrap();
    let out = nexus(&["bench", "--smoke", "--baseline", path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("regressed: agent_to_raw_ratio"), "{stdout}");
}
