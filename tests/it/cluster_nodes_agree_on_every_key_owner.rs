//! Three `nexus node` processes: once they see each other, every node maps
//! every key to the same owner, and each node owns a share of the keys.

use std::collections::HashMap;

use crate::support::cluster::{keys, three_nodes};
use crate::support::http::{http, json};

#[test]
fn every_node_maps_a_key_to_the_same_owner() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = three_nodes(dir.path());
    let keys = keys(1000);
    let first = nodes[0].owners(&keys);
    for n in &nodes[1..] {
        assert_eq!(n.owners(&keys), first, "{} maps keys differently", n.name);
    }
    let mut share: HashMap<&str, usize> = HashMap::new();
    for o in &first {
        *share.entry(o.as_str()).or_default() += 1;
    }
    for n in ["n1", "n2", "n3"] {
        let owned = share.get(n).copied().unwrap_or(0);
        assert!((150..550).contains(&owned), "{n} owns {owned} of 1000: {share:?}");
    }
    // The single-key route agrees with the batch.
    let (code, body) = http(&nodes[2].http, "GET", "/cluster/owner?key=conversation-7", None, None);
    assert_eq!(code, 200);
    assert_eq!(json(&body)["owner"], first[7].as_str());
    // Heartbeats flow and none failed to decode.
    let status = nodes[0].status();
    assert!(status["frames_received"].as_u64().unwrap() > 0, "{status}");
    assert_eq!(status["decode_errors"], 0);
}
