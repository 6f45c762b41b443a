//! `ractor_cluster` does not reconnect: a node redials its `--join` peers
//! with backoff. n2 joined n1; n1 is killed (n2 drops it at once, its
//! session closed) and started again on the same address; n2 reconnects
//! and both rings hold both nodes again.

use crate::support::cluster::{ClusterNode, cluster_files};

#[test]
fn a_killed_and_restarted_peer_is_redialed() {
    let dir = tempfile::tempdir().unwrap();
    let (cookie, config) = cluster_files(dir.path());
    let n1 = ClusterNode::start(dir.path(), "n1", &cookie, &config, &[]);
    let n2 = ClusterNode::start(dir.path(), "n2", &cookie, &config, &[n1.cluster]);
    n1.wait_members(&["n1", "n2"]);
    n2.wait_members(&["n1", "n2"]);

    let addr = n1.cluster;
    drop(n1); // SIGKILL
    n2.wait_members(&["n2"]);
    let n1 = ClusterNode::start_at(dir.path(), "n1", &addr.to_string(), &cookie, &config, &[], &[]);
    n1.wait_members(&["n1", "n2"]);
    n2.wait_members(&["n1", "n2"]);
    n2.wait_event(r#""event":"member_up","node":"n1""#);
}
