//! The README's soak table, rendered from a saved soak result (the JSON
//! line `nexus bench --scenario soak` prints), never typed by hand.
//!
//! `nexus bench render --soak FILE --readme README.md` replaces the block
//! between [`BEGIN_MARKER`] and [`END_MARKER`].

use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

/// Opens the README block the soak table goes in.
pub const BEGIN_MARKER: &str = "<!-- soak-table:begin -->";
/// Closes it.
pub const END_MARKER: &str = "<!-- soak-table:end -->";

/// The parts of a soak result the table shows.
#[derive(Debug, Deserialize)]
struct Soak {
    scenario: String,
    duration_s: f64,
    sustainable_req_per_s: f64,
    offered_req_per_s: f64,
    fault_at_s: f64,
    fault_s: f64,
    recovery_ms: f64,
    errors_outside_fault: u64,
    rss_last_vs_second_window_pct: f64,
    lane_capacity: u64,
    passed: bool,
    checks: std::collections::BTreeMap<String, bool>,
    windows: Vec<Window>,
}

#[derive(Debug, Deserialize)]
struct Window {
    t_s: f64,
    offered_req_per_s: f64,
    completed_req_per_s: f64,
    p99_ms: f64,
    max_lane_depth: u64,
    shed: u64,
    errors: u64,
    rss_bytes: u64,
}

pub(super) fn thousands(x: f64) -> String {
    let n = x.round().max(0.0) as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The block for the soak result in `path` (its text in `text`).
pub fn render(path: &Path, text: &str) -> anyhow::Result<String> {
    let soak: Soak = serde_json::from_str(text.trim())
        .with_context(|| format!("{} is not a soak result of this version", path.display()))?;
    anyhow::ensure!(
        soak.scenario == "soak",
        "{} holds a `{}` scenario, not a soak",
        path.display(),
        soak.scenario
    );
    let name = path
        .file_name()
        .map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().to_string());
    let mut out = format!(
        "A {}-minute soak (`nexus bench --scenario soak --duration {}m`, committed as `{name}`) offered {} req/s \
         ({:.0} % of the {} req/s measured at its start) through the real path, with the pool's workers failing \
         for {} s from second {}; rendered by `nexus bench render --soak`.\n\n",
        (soak.duration_s / 60.0).round(),
        (soak.duration_s / 60.0).round(),
        thousands(soak.offered_req_per_s),
        100.0 * soak.offered_req_per_s / soak.sustainable_req_per_s.max(1.0),
        thousands(soak.sustainable_req_per_s),
        soak.fault_s.round(),
        soak.fault_at_s.round(),
    );
    out.push_str("| minute | offered req/s | completed req/s | p99 ms | max lane depth | shed | errors | RSS MiB |\n");
    out.push_str("|---|---|---|---|---|---|---|---|\n");
    for w in &soak.windows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} of {} | {} | {} | {} |\n",
            (w.t_s / 60.0).round(),
            thousands(w.offered_req_per_s),
            thousands(w.completed_req_per_s),
            thousands(w.p99_ms),
            w.max_lane_depth,
            soak.lane_capacity,
            thousands(w.shed as f64),
            thousands(w.errors as f64),
            thousands(w.rss_bytes as f64 / f64::from(1 << 20)),
        ));
    }
    let checks: Vec<String> = soak
        .checks
        .iter()
        .map(|(name, ok)| format!("`{name}` {}", if *ok { "ok" } else { "FAILED" }))
        .collect();
    out.push_str(&format!(
        "\n{}: {}. Errors outside the fault window: {}; recovery after it: {} ms; RSS of the last minute against \
         the second: {:+.1} %.\n",
        if soak.passed { "Passed" } else { "Not passed" },
        checks.join(", "),
        soak.errors_outside_fault,
        thousands(soak.recovery_ms),
        soak.rss_last_vs_second_window_pct,
    ));
    Ok(out)
}

/// `text` with the soak block replaced by `block`.
pub fn replace_block(text: &str, block: &str) -> anyhow::Result<String> {
    super::results::replace_between(text, (BEGIN_MARKER, END_MARKER), block)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOAK: &str = r#"{"scenario":"soak","duration_s":120.0,"sustainable_req_per_s":1000.0,
        "offered_req_per_s":700.0,"fault_at_s":60.0,"fault_s":10.0,"recovery_ms":400.0,
        "errors_outside_fault":0,"rss_last_vs_second_window_pct":2.5,"lane_capacity":1000,"passed":true,
        "checks":{"recovered":true,"rss_flat_within_5pct":true},
        "windows":[{"t_s":0.0,"offered_req_per_s":700.0,"completed_req_per_s":699.6,"p99_ms":12.4,
        "max_lane_depth":3,"shed":0,"errors":0,"rss_bytes":104857600},
        {"t_s":60.0,"offered_req_per_s":700.0,"completed_req_per_s":650.0,"p99_ms":1234.5,
        "max_lane_depth":40,"shed":1500,"errors":7000,"rss_bytes":110100480}]}"#;

    #[test]
    fn a_soak_result_renders_one_row_per_minute_and_its_checks() {
        let block = render(Path::new("benches/results/x-soak.json"), SOAK).unwrap();
        assert!(block.contains("committed as `x-soak.json`"), "{block}");
        assert!(
            block.contains("| 0 | 700 | 700 | 12 | 3 of 1000 | 0 | 0 | 100 |"),
            "{block}"
        );
        assert!(
            block.contains("| 1 | 700 | 650 | 1,235 | 40 of 1000 | 1,500 | 7,000 | 105 |"),
            "{block}"
        );
        assert!(
            block.contains("Passed: `recovered` ok, `rss_flat_within_5pct` ok"),
            "{block}"
        );
        assert!(block.contains("+2.5 %"), "{block}");
    }

    #[test]
    fn other_files_are_refused_and_only_the_marked_block_is_replaced() {
        let ramp = SOAK.replacen("\"soak\"", "\"ramp\"", 1);
        assert!(render(Path::new("r.json"), &ramp).is_err());
        assert!(render(Path::new("r.json"), "{}").is_err());
        let readme = format!("before\n{BEGIN_MARKER}\nold\n{END_MARKER}\nafter\n");
        let out = replace_block(&readme, "new\n").unwrap();
        assert_eq!(out, format!("before\n{BEGIN_MARKER}\nnew\n{END_MARKER}\nafter\n"));
        assert!(replace_block("no markers", "x").is_err());
    }
}
