//! A `[[cluster.limits]]` entry with `charges = "llm_requests"`: the LLM
//! gateway of every `nexus node` charges its calls to the one cluster-wide
//! limit. Keyed work sent through all three nodes is handled by the key
//! owner's `llm-caller` pool; once the limit is reached, the gateways
//! refuse (the work is not acknowledged), and all three together made no
//! more calls than the limit.

use std::net::SocketAddr;
use std::thread;
use std::time::Instant;

use crate::support::cluster::{ClusterNode, TIMEOUT, cluster_files_with};
use crate::support::http::http;

const LIMIT: u64 = 90;
const CHUNK: u64 = 8;

fn config() -> String {
    format!(
        r#"
[[llm.providers]]
id = "sim"
kind = "simulated"
seed = 3
latency_median = "0s"

[[llm.models]]
name = "small"
context_window = 16000
input_price = 150000
output_price = 600000
deployments = [{{ provider = "sim" }}]

[[run.pools]]
name = "callers"
agent = "llm-caller"
size = 2

[[cluster.limits]]
name = "llm-calls"
limit = {LIMIT}
chunk = {CHUNK}
lease_ttl = "5s"
charges = "llm_requests"
"#
    )
}

/// Sends keyed work through the node at `addr` until one is not
/// acknowledged; returns the messages acknowledged.
fn send_until_refused(node: usize, addr: &str) -> u64 {
    let started = Instant::now();
    let mut acked = 0;
    for i in 0.. {
        assert!(started.elapsed() < TIMEOUT, "node {node} never saw a refusal");
        let (code, body) = http(
            addr,
            "POST",
            &format!("/cluster/send?key=conv-{node}-{i}&timeout_ms=2000"),
            None,
            // Distinct prompts: a cached answer makes no call.
            Some(&format!("write line {i} for node {node}")),
        );
        match code {
            200 => acked += 1,
            504 => break,
            other => panic!("node {node}: {other} {body}"),
        }
    }
    acked
}

#[test]
fn llm_calls_on_three_nodes_stop_at_one_global_limit() {
    let dir = tempfile::tempdir().unwrap();
    // Each node hands its keyed work to its `callers` pool.
    let nodes = {
        let text = config();
        let (cookie, config) = cluster_files_with(dir.path(), &text);
        let start = |name: &str, join: &[SocketAddr]| {
            ClusterNode::start_with(dir.path(), name, &cookie, &config, join, &["--work-pool", "callers"])
        };
        let n1 = start("n1", &[]);
        let n2 = start("n2", &[n1.cluster]);
        let n3 = start("n3", &[n1.cluster, n2.cluster]);
        let nodes = vec![n1, n2, n3];
        for n in &nodes {
            n.wait_members(&["n1", "n2", "n3"]);
        }
        nodes
    };
    // A first call on each node warms its gateway (the tokenizer is built
    // on first use, slowly in a debug build): one key each node owns.
    let mut warm: u64 = 0;
    for n in &nodes {
        let key = (0..)
            .map(|k| format!("warm-{k}"))
            .find(|k| nodes[0].owners(std::slice::from_ref(k))[0] == n.name)
            .unwrap();
        let (code, body) = http(
            &nodes[0].http,
            "POST",
            &format!("/cluster/send?key={key}&timeout_ms=15000"),
            None,
            Some("warm up"),
        );
        assert_eq!(code, 200, "{}: {body}", n.name);
        warm += 1;
    }
    let addrs: Vec<String> = nodes.iter().map(|n| n.http.clone()).collect();
    let acked: u64 = warm
        + thread::scope(|s| {
            let handles: Vec<_> = addrs
                .iter()
                .enumerate()
                .map(|(i, a)| s.spawn(move || send_until_refused(i, a)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
        });
    // The calls each node's gateway charged, as each counts them (net of
    // holds put back), and the spends the limit refused.
    let limits: Vec<_> = nodes.iter().map(|n| n.limit("llm-calls")).collect();
    let charged: u64 = limits.iter().map(|l| l["spent_here"].as_u64().unwrap()).sum();
    let refused: u64 = limits.iter().map(|l| l["refused_here"].as_u64().unwrap()).sum();
    assert!(charged <= LIMIT, "{charged} calls charged, limit {LIMIT}: {limits:?}");
    assert!(acked <= charged, "{acked} acknowledged, {charged} calls charged");
    // The work stopped because the limit refused calls, once (nearly) all
    // of it was spent: what is left sat in other nodes' leases.
    assert!(refused > 0, "the limit refused nothing: {limits:?}");
    assert!(
        charged >= LIMIT - 3 * CHUNK,
        "only {charged} of {LIMIT} charged: {limits:?}"
    );
}
