//! The README's cross-node table, rendered from a saved cluster result
//! (the JSON line `nexus bench --scenario cluster` prints), never typed by
//! hand.
//!
//! `nexus bench render --cluster FILE --readme README.md` replaces the
//! block between [`BEGIN_MARKER`] and [`END_MARKER`].

use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

use super::soak_table::thousands;

/// Opens the README block the cluster table goes in.
pub const BEGIN_MARKER: &str = "<!-- cluster-table:begin -->";
/// Closes it.
pub const END_MARKER: &str = "<!-- cluster-table:end -->";

/// The parts of a cluster result the table shows.
#[derive(Debug, Deserialize)]
struct Cluster {
    scenario: String,
    messages: u64,
    asks: u64,
    compress_above_bytes: u64,
    sizes: Vec<Size>,
    seed_msgs_per_s: f64,
    seed_latency_ms: f64,
    passed: bool,
    checks: std::collections::BTreeMap<String, bool>,
}

#[derive(Debug, Deserialize)]
struct Size {
    payload_bytes: u64,
    frame_bytes: u64,
    compressed: bool,
    bare_cast_msgs_per_s: f64,
    ours_cast_msgs_per_s: f64,
    ours_to_bare_ratio: f64,
    bare_call_p50_us: f64,
    bare_call_p99_us: f64,
    ours_ask_p50_us: f64,
    ours_ask_p99_us: f64,
}

/// The block for the cluster result in `path` (its text in `text`).
pub fn render(path: &Path, text: &str) -> anyhow::Result<String> {
    let c: Cluster = serde_json::from_str(text.trim())
        .with_context(|| format!("{} is not a cluster result of this version", path.display()))?;
    anyhow::ensure!(
        c.scenario == "cluster",
        "{} holds a `{}` scenario, not a cluster one",
        path.display(),
        c.scenario
    );
    let name = path
        .file_name()
        .map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().to_string());
    let mut out = format!(
        "Cross-node messaging over loopback (`nexus bench --scenario cluster --messages {}`, committed as \
         `{name}`): two processes, one ractor_cluster session, {} casts and {} sequential asks per kind and \
         size, throughput counted as received on the other node; rendered by `nexus bench render --cluster`.\n\n",
        c.messages,
        thousands(c.messages as f64),
        thousands(c.asks as f64),
    );
    out.push_str(
        "| payload | frame | cast, bare ractor_cluster msgs/s | cast, ours (envelope) msgs/s | ours / bare \
         | call, bare p50 / p99 µs | ask, ours (`send_keyed`, acked) p50 / p99 µs |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|\n");
    for s in &c.sizes {
        out.push_str(&format!(
            "| {} B | {} B{} | {} | {} | {:.2} | {} / {} | {} / {} |\n",
            s.payload_bytes,
            s.frame_bytes,
            if s.compressed { " (LZ4)" } else { "" },
            thousands(s.bare_cast_msgs_per_s),
            thousands(s.ours_cast_msgs_per_s),
            s.ours_to_bare_ratio,
            thousands(s.bare_call_p50_us),
            thousands(s.bare_call_p99_us),
            thousands(s.ours_ask_p50_us),
            thousands(s.ours_ask_p99_us),
        ));
    }
    let checks: Vec<String> = c
        .checks
        .iter()
        .map(|(name, ok)| format!("`{name}` {}", if *ok { "ok" } else { "FAILED" }))
        .collect();
    out.push_str(&format!(
        "\nThe envelope compresses payloads above {} B. The seeds state no target for cross-node messages; \
         their message router's ({} msgs/s, latency under {} ms) is checked instead. {}: {}.\n",
        c.compress_above_bytes,
        thousands(c.seed_msgs_per_s),
        thousands(c.seed_latency_ms),
        if c.passed { "Passed" } else { "Not passed" },
        checks.join(", "),
    ));
    Ok(out)
}

/// `text` with the cluster block replaced by `block`.
pub fn replace_block(text: &str, block: &str) -> anyhow::Result<String> {
    super::results::replace_between(text, (BEGIN_MARKER, END_MARKER), block)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLUSTER: &str = r#"{"scenario":"cluster","messages":50000,"asks":5000,"compress_above_bytes":1024,
        "seed_msgs_per_s":1000.0,"seed_latency_ms":50.0,"passed":false,
        "checks":{"every_message_received_and_every_ask_answered":true,"ours_ask_p99_below_seed_latency":false},
        "sizes":[{"payload_bytes":64,"frame_bytes":98,"compressed":false,"bare_cast_msgs_per_s":123456.0,
        "ours_cast_msgs_per_s":65432.0,"ours_to_bare_ratio":0.53,"bare_call_p50_us":80.5,"bare_call_p99_us":150.2,
        "ours_ask_p50_us":120.0,"ours_ask_p99_us":60000.0},
        {"payload_bytes":4096,"frame_bytes":2100,"compressed":true,"bare_cast_msgs_per_s":40000.0,
        "ours_cast_msgs_per_s":30000.0,"ours_to_bare_ratio":0.75,"bare_call_p50_us":90.0,"bare_call_p99_us":200.0,
        "ours_ask_p50_us":140.0,"ours_ask_p99_us":300.0}]}"#;

    #[test]
    fn a_cluster_result_renders_one_row_per_size_and_its_checks() {
        let block = render(Path::new("benches/results/x-cluster.json"), CLUSTER).unwrap();
        assert!(block.contains("committed as `x-cluster.json`"), "{block}");
        assert!(
            block.contains("| 64 B | 98 B | 123,456 | 65,432 | 0.53 | 81 / 150 | 120 / 60,000 |"),
            "{block}"
        );
        assert!(
            block.contains("| 4096 B | 2100 B (LZ4) | 40,000 | 30,000 | 0.75 |"),
            "{block}"
        );
        assert!(block.contains("Not passed"), "{block}");
        assert!(block.contains("`ours_ask_p99_below_seed_latency` FAILED"), "{block}");
    }

    #[test]
    fn another_scenario_is_refused_by_name() {
        let err = render(Path::new("m.json"), r#"{"scenario":"monitor"}"#).unwrap_err();
        assert!(format!("{err:#}").contains("m.json"), "{err:#}");
    }

    #[test]
    fn the_block_replaces_only_what_is_between_the_markers() {
        let readme = format!("before\n{BEGIN_MARKER}\nold\n{END_MARKER}\nafter\n");
        let out = replace_block(&readme, "new\n").unwrap();
        assert_eq!(out, format!("before\n{BEGIN_MARKER}\nnew\n{END_MARKER}\nafter\n"));
    }
}
