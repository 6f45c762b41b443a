use serde_json::json;

use super::*;

/// A report whose every figure is `x` (ratios too), for tests that only
/// need a well-formed report.
fn report(x: f64) -> BenchReport {
    let mut v = serde_json::to_value(BenchReport {
        mode: "quick".into(),
        messages: 1_000,
        raw_cast_msgs_per_s: 0.0,
        agent_send_msgs_per_s: 0.0,
        agent_to_raw_ratio: 0.0,
        pool_workers: 2,
        raw_pool_msgs_per_s: 0.0,
        routed_cast_msgs_per_s: 0.0,
        routed_to_raw_ratio: 0.0,
        raw_call_p50_us: 0.0,
        raw_call_p99_us: 0.0,
        ask_p50_us: 0.0,
        ask_p95_us: 0.0,
        ask_p99_us: 0.0,
        ask_p999_us: 0.0,
        ask_load_msgs_per_s: 0.0,
        high_ask_p99_under_flood_us: 0.0,
        raw_ask_p99_under_flood_us: 0.0,
        flood_messages: 1_000,
        pingpong_msgs_per_s: 0.0,
        pingpong_p95_ms: 0.0,
        pingpong_p99_ms: 0.0,
        pingpong_max_ms: 0.0,
        llm_scenario_agents: 100,
        llm_scenario_conversations: 50,
        llm_scenario_req_per_s: 0.0,
        llm_scenario_p50_ms: 0.0,
        llm_scenario_p95_ms: 0.0,
        llm_scenario_p99_ms: 0.0,
        gateway_overhead_p50_us: 0.0,
        gateway_overhead_p99_us: 0.0,
        spawned_agents: 100_000,
        spawn_100k_ms: 0.0,
        raw_spawn_100k_ms: 0.0,
        spawn_ratio: 0.0,
        bytes_per_idle_agent: 0.0,
        bytes_per_raw_actor: 0.0,
        idle_bytes_ratio: 0.0,
        spawn_batch: 10_000,
        spawn_10k_agents_ms: 0.0,
        pool_spawn_10k_ms: 0.0,
        pool_spawn_ratio: 0.0,
        ring_lookup_ns: 0.0,
        ring_lookup_keys: 1_000_000,
        quota_charge_ns: 0.0,
    })
    .unwrap();
    for (_, value) in v.as_object_mut().unwrap() {
        if value.is_f64() {
            *value = json!(x);
        }
    }
    serde_json::from_value(v).unwrap()
}

fn with(mut r: Value, key: &str, x: f64) -> Value {
    r[key] = json!(x);
    r
}

#[test]
fn a_ratio_worse_beyond_the_threshold_fails_the_comparison() {
    let base = serde_json::to_value(report(1.0)).unwrap();
    let base = with(base, "agent_to_raw_ratio", 2.0);
    // 2.0 -> 1.7 is 15 % worse on a higher-is-better ratio.
    let now = with(base.clone(), "agent_to_raw_ratio", 1.7);
    let c = compare(&base, &now, 10.0);
    let keys: Vec<&str> = c.regressions().iter().map(|c| c.key.as_str()).collect();
    assert_eq!(keys, ["agent_to_raw_ratio"]);
    let change = &c.regressions()[0];
    assert!((change.change_pct + 15.0).abs() < 1e-9, "{change:?}");
    assert!(c.to_string().contains("REGRESSION"), "{c}");
    // The same drop within a 20 % threshold passes.
    assert!(compare(&base, &now, 20.0).regressions().is_empty());
}

#[test]
fn a_cost_ratio_regresses_when_it_grows() {
    let base = with(serde_json::to_value(report(1.0)).unwrap(), "spawn_ratio", 1.2);
    let grew = with(base.clone(), "spawn_ratio", 1.5);
    let shrank = with(base.clone(), "spawn_ratio", 0.6);
    let keys = |c: &Comparison| c.regressions().iter().map(|c| c.key.clone()).collect::<Vec<_>>();
    assert_eq!(keys(&compare(&base, &grew, 10.0)), ["spawn_ratio"]);
    assert!(
        keys(&compare(&base, &shrank, 10.0)).is_empty(),
        "an improvement is no regression"
    );
}

#[test]
fn absolute_figures_never_fail_the_comparison() {
    let base = serde_json::to_value(report(1.0)).unwrap();
    let mut now = base.clone();
    now["raw_cast_msgs_per_s"] = json!(0.1);
    now["quota_charge_ns"] = json!(90.0);
    let c = compare(&base, &now, 10.0);
    assert!(c.regressions().is_empty(), "{c}");
    let quota = c.changes.iter().find(|c| c.key == "quota_charge_ns").unwrap();
    assert!((quota.change_pct - 8900.0).abs() < 1e-6);
    assert_eq!(quota.better, Some(Better::Lower));
    assert!(c.to_string().contains("worse"), "{c}");
}

#[test]
fn a_ratio_missing_from_an_old_baseline_is_reported_not_compared() {
    let mut base = serde_json::to_value(report(1.0)).unwrap();
    base.as_object_mut().unwrap().remove("pool_spawn_ratio");
    let now = serde_json::to_value(report(1.0)).unwrap();
    let c = compare(&base, &now, 10.0);
    assert_eq!(c.missing, ["pool_spawn_ratio"]);
    assert!(c.changes.iter().all(|c| c.key != "pool_spawn_ratio"));
}

#[test]
fn the_median_of_three_runs_takes_each_middle_value_and_keeps_integers() {
    let runs = vec![
        with(serde_json::to_value(report(3.0)).unwrap(), "agent_to_raw_ratio", 1.4),
        with(serde_json::to_value(report(1.0)).unwrap(), "agent_to_raw_ratio", 2.1),
        with(serde_json::to_value(report(2.0)).unwrap(), "agent_to_raw_ratio", 1.7),
    ];
    let m = median_values(&runs).unwrap();
    assert_eq!(m["raw_cast_msgs_per_s"], json!(2.0));
    assert_eq!(
        m["agent_to_raw_ratio"],
        json!(1.7),
        "the ratio of the median run, not a quotient of medians"
    );
    assert_eq!(m["messages"], json!(1_000u64));
    assert!(m["messages"].is_u64());
    let typed: BenchReport = serde_json::from_value(m).unwrap();
    assert_eq!(typed.mode, "quick");
}

#[test]
fn runs_of_different_modes_have_no_median() {
    let a = serde_json::to_value(report(1.0)).unwrap();
    let mut b = a.clone();
    b["mode"] = json!("full");
    let err = median_values(&[a, b]).unwrap_err();
    assert!(err.to_string().contains("mode"), "{err}");
}

#[test]
fn render_replaces_only_the_marked_block() {
    let text = format!("# Title\n\nbefore\n{BEGIN_MARKER}\nold table\n{END_MARKER}\nafter\n");
    let out = replace_block(&text, "| new |\n").unwrap();
    assert_eq!(
        out,
        format!("# Title\n\nbefore\n{BEGIN_MARKER}\n| new |\n{END_MARKER}\nafter\n")
    );
    // Idempotent: rendering again gives the same text.
    assert_eq!(replace_block(&out, "| new |").unwrap(), out);
    assert!(replace_block("no markers here", "x").is_err());
    assert!(replace_block(&format!("{END_MARKER}\n{BEGIN_MARKER}"), "x").is_err());
}

#[test]
fn saved_files_round_trip_and_render_their_runs_medians() {
    let dir = std::env::temp_dir().join(format!("nexus-render-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let runs = vec![report(1.0), report(5.0), report(2.0)];
    let saved = SavedResult::new(median(&runs).unwrap(), runs);
    let path = saved.save(&dir).unwrap();
    assert!(path.file_name().unwrap().to_string_lossy().ends_with("-quick.json"));
    // Saving again never replaces the first file.
    let second = saved.save(&dir).unwrap();
    assert_ne!(path, second);
    let loaded = load(&path).unwrap();
    assert_eq!(loaded.runs.len(), 3);
    assert_eq!(loaded.machine.as_ref(), Some(&saved.machine));
    let block = render(&[loaded]).unwrap();
    assert!(
        block.starts_with("Medians of 3 runs of `nexus bench` (quick mode)"),
        "{block}"
    );
    assert!(block.contains("| measurement | measured | target |"), "{block}");
    // The median quota charge (of 1, 5 and 2 ns) is 2 ns.
    assert!(block.contains("| 2.0 ns | <= 50 ns |"), "{block}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cpu_model_is_read_from_cpuinfo() {
    let info = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n";
    assert_eq!(cpu_model(info).as_deref(), Some("Intel(R) Xeon(R) CPU @ 2.20GHz"));
    assert_eq!(cpu_model("processor : 0\n"), None);
}

#[test]
fn large_figures_get_thousands_separators() {
    assert_eq!(thousands(2_161_772.4), "2,161,772");
    assert_eq!(thousands(999.0), "999");
    assert_eq!(thousands(-12_345.0), "-12,345");
}
