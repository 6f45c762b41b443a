//! With `cluster.quorum = 2` of three nodes, a node that sees only itself
//! (the other two hung, as they would look from a node cut off by a
//! partition) takes no keyed work: `POST /cluster/send` answers 503 rather
//! than handling work the others may now give to another owner. Once they
//! come back it takes work again.

use crate::support::cluster::{ClusterNode, cluster_files};

#[test]
fn a_node_alone_refuses_keyed_work_until_its_peers_return() {
    let dir = tempfile::tempdir().unwrap();
    let (cookie, config) = cluster_files(dir.path());
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("quorum = 2\n");
    std::fs::write(&config, text).unwrap();
    let n1 = ClusterNode::start(dir.path(), "n1", &cookie, &config, &[]);
    let n2 = ClusterNode::start(dir.path(), "n2", &cookie, &config, &[n1.cluster]);
    let n3 = ClusterNode::start(dir.path(), "n3", &cookie, &config, &[n1.cluster, n2.cluster]);
    for n in [&n1, &n2, &n3] {
        n.wait_members(&["n1", "n2", "n3"]);
    }
    let (code, _) = n1.send("k", "with quorum");
    assert_eq!(code, 200);

    n2.signal("STOP");
    n3.signal("STOP");
    n1.wait_members(&["n1"]);
    let (code, answer) = n1.send("k", "alone");
    assert_eq!(code, 503, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("no quorum"), "{answer}");
    assert_eq!(n1.status()["has_quorum"], false);

    n2.signal("CONT");
    n3.signal("CONT");
    n1.wait_members(&["n1", "n2", "n3"]);
    let (code, answer) = n1.send("k", "back");
    assert_eq!(code, 200, "{answer}");
    let status = n1.status();
    assert_eq!(
        (status["work_sent"].as_u64(), status["work_acknowledged"].as_u64()),
        (Some(2), Some(2))
    );
}
