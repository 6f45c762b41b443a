//! With `[cluster.tls]`, nodes join over TLS (certificates signed by the
//! configured authority, for the address dialed), and a node speaking
//! plain TCP is refused: its session closes before authenticating.

use std::path::Path;

use crate::support::cluster::{ClusterNode, cluster_files};

#[test]
fn tls_nodes_join_and_a_plain_node_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (cookie, plain) = cluster_files(dir.path());
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures/tls");
    let tls = dir.path().join("tls.toml");
    let mut text = std::fs::read_to_string(&plain).unwrap();
    text.push_str(&format!(
        "[cluster.tls]\ncert = {:?}\nkey = {:?}\nca = {:?}\n",
        fixtures.join("node.pem"),
        fixtures.join("node.key"),
        fixtures.join("ca.pem")
    ));
    std::fs::write(&tls, text).unwrap();

    let n1 = ClusterNode::start(dir.path(), "n1", &cookie, &tls, &[]);
    let n2 = ClusterNode::start(dir.path(), "n2", &cookie, &tls, &[n1.cluster]);
    n1.wait_members(&["n1", "n2"]);
    n2.wait_members(&["n1", "n2"]);

    let x = ClusterNode::start(dir.path(), "x", &cookie, &plain, &[n1.cluster]);
    x.wait_event(r#""event":"session_refused""#);
    n1.wait_log("Error establishing secure socket");
    assert_eq!(x.members(), ["x"]);
    assert_eq!(n1.members(), ["n1", "n2"]);
}
