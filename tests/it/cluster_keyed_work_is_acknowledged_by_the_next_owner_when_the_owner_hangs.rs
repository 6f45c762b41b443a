//! Keyed work is acknowledged by its owner after handling. When the owner
//! hangs (SIGSTOP) the sender resends after its ack timeout, the hung node
//! is ejected, and the key's next owner handles and acknowledges the
//! message: the sender's answer is never lost. After SIGCONT the hung node
//! handles its late copy too (at least once), and the sender ignores the
//! late ack.

use std::time::{Duration, Instant};

use crate::support::cluster::{TIMEOUT, keys, three_nodes};

#[test]
fn work_for_a_hung_owner_is_acknowledged_by_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = three_nodes(dir.path());
    let keys = keys(200);
    let owners = nodes[0].owners(&keys);
    let of = |node: &str| keys[owners.iter().position(|o| o == node).unwrap()].clone();

    // Across nodes: sent from n3, handled and acknowledged by n1.
    let (code, ack) = nodes[2].send(&of("n1"), "hello");
    assert_eq!(code, 200, "{ack}");
    assert_eq!((ack["owner"].as_str(), ack["attempts"].as_u64()), (Some("n1"), Some(1)));
    assert_eq!(nodes[0].status()["work_handled"], 1);

    let hung_key = of("n3");
    nodes[2].signal("STOP");
    let (code, ack) = nodes[0].send(&hung_key, "for n3");
    assert_eq!(code, 200, "{ack}");
    let next_owner = ack["owner"].as_str().unwrap().to_string();
    assert_ne!(next_owner, "n3");
    assert!(ack["attempts"].as_u64().unwrap() >= 2, "{ack}");
    assert_eq!(nodes[0].owners(std::slice::from_ref(&hung_key)), [next_owner]);
    let sender = nodes[0].status();
    assert_eq!(
        (sender["work_sent"].as_u64(), sender["work_acknowledged"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(sender["work_resent"].as_u64().unwrap() >= 1);

    nodes[2].signal("CONT");
    for n in &nodes {
        n.wait_members(&["n1", "n2", "n3"]);
    }
    // n3 handles the copy it received while hung.
    let start = Instant::now();
    while nodes[2].status()["work_handled"] != 1 {
        assert!(start.elapsed() < TIMEOUT, "{}", nodes[2].status());
        std::thread::sleep(Duration::from_millis(10));
    }
    // The key is n3's again, and new work for it goes there.
    let (code, ack) = nodes[1].send(&hung_key, "again");
    assert_eq!(code, 200, "{ack}");
    assert_eq!(ack["owner"], "n3");
}
