//! A peer with the right cookie sends a node frames that are not our
//! envelope: the node counts them (`decode_errors`), prints a
//! `decode_error` event, and the same session then delivers a valid
//! heartbeat that takes the peer into the ring: nothing panicked, nothing
//! was closed.

use std::time::{Duration, Instant};

use nexus_swarm::actors::cluster_member::{ClusterMsg, node_group};
use nexus_swarm::runtime::cluster::Heartbeat;
use nexus_swarm::runtime::cluster::envelope::{self, FrameKind};
use ractor::{Actor, ActorRef};
use ractor_cluster::NodeServer;
use ractor_cluster::node::NodeConnectionMode;

use crate::support::cluster::{COOKIE, ClusterNode, TIMEOUT, cluster_files};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_counted_and_the_session_lives_on() {
    let dir = tempfile::tempdir().unwrap();
    let (cookie, config) = cluster_files(dir.path());
    let (n1, n2) = tokio::task::block_in_place(|| {
        let n1 = ClusterNode::start(dir.path(), "n1", &cookie, &config, &[]);
        let n2 = ClusterNode::start(dir.path(), "n2", &cookie, &config, &[n1.cluster]);
        n1.wait_members(&["n1", "n2"]);
        (n1, n2)
    });

    // This test process joins n1 as node "probe".
    let server = NodeServer::new(
        0,
        COOKIE.to_string(),
        "probe".to_string(),
        "127.0.0.1".to_string(),
        None,
        Some(NodeConnectionMode::Isolated),
    )
    .with_listen_addr([127, 0, 0, 1].into());
    let (server, server_join) = Actor::spawn(None, server, ()).await.unwrap();
    ractor_cluster::client_connect(&server, n1.cluster).await.unwrap();
    let start = Instant::now();
    let member: ActorRef<ClusterMsg> = loop {
        if let Some(cell) = ractor::pg::get_members(&node_group("n1")).into_iter().next() {
            break cell.into();
        }
        assert!(start.elapsed() < TIMEOUT, "n1's member never appeared in its pg group");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };

    // Random bytes, and a heartbeat cut short.
    let hb = Heartbeat {
        node: "probe".into(),
        incarnation: 1,
        seq: 0,
    };
    let good = envelope::encode(FrameKind::Heartbeat, 0, &hb, 1024).unwrap();
    member
        .cast(ClusterMsg::Frame(b"\x00\xffnot an envelope at all".to_vec()))
        .unwrap();
    member.cast(ClusterMsg::Frame(good[..good.len() - 3].to_vec())).unwrap();

    tokio::task::block_in_place(|| {
        n1.wait_event(r#""event":"decode_error""#);
        let start = Instant::now();
        while n1.status()["decode_errors"] != 2 {
            assert!(start.elapsed() < TIMEOUT, "{}", n1.status());
            std::thread::sleep(Duration::from_millis(10));
        }
    });

    // The same session carries a valid heartbeat: the probe joins n1's ring.
    member.cast(ClusterMsg::Frame(good)).unwrap();
    tokio::task::block_in_place(|| {
        n1.wait_members(&["n1", "n2", "probe"]);
        assert_eq!(n1.status()["decode_errors"], 2);
        // n2 never saw the garbage.
        assert_eq!(n2.status()["decode_errors"], 0);
    });
    server.stop(None);
    let _ = server_join.await;
}
