//! With `--work-pool`, the keyed work a node owns is asked of an agent of
//! its local `[[run.pools]]` pool, and acknowledged once the agent replied;
//! a `--work-pool` naming no pool is refused at start.

use crate::support::cluster::{ClusterNode, cluster_files, keys};
use crate::support::nexus_cli::NEXUS;

#[test]
fn keyed_work_is_handled_by_an_agent_of_the_owners_pool() {
    let dir = tempfile::tempdir().unwrap();
    let (cookie, config) = cluster_files(dir.path());
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[[run.pools]]\nname = \"workers\"\nagent = \"echo\"\nsize = 2\n");
    std::fs::write(&config, text).unwrap();
    let pool = ["--work-pool", "workers"];
    let n1 = ClusterNode::start_with(dir.path(), "n1", &cookie, &config, &[], &pool);
    let n2 = ClusterNode::start_with(dir.path(), "n2", &cookie, &config, &[n1.cluster], &pool);
    n1.wait_members(&["n1", "n2"]);
    n2.wait_members(&["n1", "n2"]);

    let keys = keys(20);
    let owners = n1.owners(&keys);
    for (key, owner) in keys.iter().zip(&owners) {
        let (code, ack) = n1.send(key, "hello agent");
        assert_eq!(code, 200, "{ack}");
        assert_eq!(ack["owner"], owner.as_str());
    }
    let on_n1 = owners.iter().filter(|o| *o == "n1").count() as u64;
    assert_eq!(n1.status()["work_handled"].as_u64(), Some(on_n1));
    assert_eq!(n2.status()["work_handled"].as_u64(), Some(20 - on_n1));
    assert_eq!(n1.status()["work_failed"], 0);

    let out = std::process::Command::new(NEXUS)
        .args([
            "node",
            "--name",
            "x",
            "--listen",
            "127.0.0.1:0",
            "--work-pool",
            "nope",
            "--cookie-file",
        ])
        .arg(&cookie)
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("x"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--work-pool \"nope\""));
}
