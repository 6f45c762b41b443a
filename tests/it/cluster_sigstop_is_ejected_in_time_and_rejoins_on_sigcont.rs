//! SIGSTOP of one of three nodes keeps its TCP sessions open, so
//! `ractor_cluster` never notices; our heartbeats and failure detector
//! eject it within the configured timeout, its keys move (only its), and
//! after SIGCONT it rejoins and gets them back.

use crate::support::cluster::{FAILURE_TIMEOUT, HEARTBEAT, keys, three_nodes};

#[test]
fn a_hung_node_is_ejected_within_the_timeout_and_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = three_nodes(dir.path());
    let keys = keys(1000);
    let before = nodes[0].owners(&keys);

    nodes[2].signal("STOP");
    let detected = nodes[0].wait_members(&["n1", "n2"]);
    nodes[1].wait_members(&["n1", "n2"]);
    // Ejected at the first tick after the timeout; allow scheduling slack
    // on a busy machine, but well under what no detector would give.
    let bound = FAILURE_TIMEOUT + HEARTBEAT * 2 + HEARTBEAT * 10;
    assert!(detected <= bound, "detected after {detected:?}, bound {bound:?}");
    nodes[0].wait_event(r#""event":"member_down","node":"n3","reason":"silent""#);

    let during = nodes[0].owners(&keys);
    assert_eq!(nodes[1].owners(&keys), during);
    for (b, d) in before.iter().zip(&during) {
        if b == "n3" {
            assert_ne!(d, "n3");
        } else {
            assert_eq!(d, b, "a key of a live node moved");
        }
    }

    nodes[2].signal("CONT");
    for n in &nodes {
        n.wait_members(&["n1", "n2", "n3"]);
    }
    nodes[0].wait_event(r#""event":"member_up","node":"n3""#);
    for n in &nodes {
        assert_eq!(n.owners(&keys), before, "{} after SIGCONT", n.name);
    }
}
