//! A node with the wrong cookie is refused: both sides log it and print a
//! `session_refused` event, neither takes the other into its ring, and the
//! cookie appears in no output.

use crate::support::cluster::{COOKIE, ClusterNode, cluster_files};

#[test]
fn a_wrong_cookie_is_refused_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let (cookie, config) = cluster_files(dir.path());
    let wrong = dir.path().join("wrong-cookie");
    std::fs::write(&wrong, "not-the-cookie\n").unwrap();

    let n1 = ClusterNode::start(dir.path(), "n1", &cookie, &config, &[]);
    let x = ClusterNode::start(dir.path(), "x", &wrong, &config, &[n1.cluster]);

    let refused = n1.wait_event(r#""event":"session_refused""#);
    x.wait_event(r#""event":"session_refused""#);
    let log = n1.wait_log("cluster session refused");
    // Redialed with backoff, and refused again.
    n1.wait_event(r#""event":"session_refused""#);
    assert_eq!(n1.members(), ["n1"]);
    assert_eq!(x.members(), ["x"]);
    for line in [refused, log] {
        assert!(!line.contains(COOKIE) && !line.contains("not-the-cookie"), "{line}");
    }
    let seen: Vec<String> = n1
        .events
        .try_iter()
        .chain(n1.logs.try_iter())
        .chain(x.events.try_iter())
        .chain(x.logs.try_iter())
        .collect();
    assert!(
        seen.iter()
            .all(|l| !l.contains(COOKIE) && !l.contains("not-the-cookie"))
    );
}
