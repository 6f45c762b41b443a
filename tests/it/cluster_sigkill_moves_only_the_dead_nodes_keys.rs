//! SIGKILL of one of three nodes: the survivors notice (its session
//! closes), agree on the new owners, and only the dead node's keys move.

use crate::support::cluster::{keys, three_nodes};

#[test]
fn killing_a_node_moves_only_its_keys() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = three_nodes(dir.path());
    let keys = keys(1000);
    let before = nodes[0].owners(&keys);

    let n3 = nodes.pop().unwrap();
    let mut guard = n3.guard;
    let mut child = guard.0.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    for n in &nodes {
        n.wait_members(&["n1", "n2"]);
    }
    let down = nodes[0].wait_event(r#""event":"member_down","node":"n3""#);
    assert!(
        down.contains(r#""reason":"disconnected""#),
        "noticed by its session closing: {down}"
    );

    let after = nodes[0].owners(&keys);
    assert_eq!(nodes[1].owners(&keys), after, "the survivors agree");
    let mut moved = 0;
    for (b, a) in before.iter().zip(&after) {
        if b == "n3" {
            assert_ne!(a, "n3");
            moved += 1;
        } else {
            assert_eq!(a, b, "a key of a live node moved");
        }
    }
    assert!(moved > 100, "n3 owned {moved} of 1000 keys");
}
