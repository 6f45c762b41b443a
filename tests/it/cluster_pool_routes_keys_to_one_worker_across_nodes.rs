//! Cluster pool `workers` hosted by n1 and n2 (`--cluster-pool`), not by
//! n3 (`--cluster-pool-client`), all three in the ring: every key sent
//! from n1 is handled by one worker of its owner among the hosts, the same
//! worker each time; n3 never gets a key, and what it sends goes to the
//! same owners; what n1 owns is sent to its workers without encoding;
//! a peer's garbage message for the pool is counted and the session lives
//! on; and when the owner hangs, an acknowledged message is handled by the
//! key's next owner.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nexus_swarm::actors::cluster_pool::{PoolProxyMsg, pool_node_group};
use nexus_swarm::runtime::cluster::Work;
use nexus_swarm::runtime::cluster::envelope::{self, FrameKind};
use ractor::{Actor, ActorRef};
use ractor_cluster::NodeServer;
use ractor_cluster::node::NodeConnectionMode;
use serde_json::Value;

use crate::support::cluster::{COOKIE, ClusterNode, TIMEOUT, cluster_files, keys};
use crate::support::http::{http, json};

const POOL: &str = "workers";

fn pool_status(node: &ClusterNode) -> Value {
    let (code, body) = http(&node.http, "GET", &format!("/cluster/pools/{POOL}"), None, None);
    assert_eq!(code, 200, "{body}");
    json(&body)
}

fn workers(node: &ClusterNode) -> BTreeMap<String, u64> {
    serde_json::from_value(pool_status(node)["workers"].clone()).unwrap()
}

fn pool_send(node: &ClusterNode, key: &str, text: &str) -> Value {
    let (code, body) = http(
        &node.http,
        "POST",
        &format!("/cluster/pools/{POOL}/send?key={key}"),
        None,
        Some(text),
    );
    assert_eq!(code, 200, "{body}");
    json(&body)
}

/// The workers whose count grew between two snapshots, and by how much.
fn grown(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> Vec<(String, u64)> {
    after
        .iter()
        .filter_map(|(w, n)| {
            let was = before.get(w).copied().unwrap_or(0);
            (*n > was).then(|| (w.clone(), n - was))
        })
        .collect()
}

fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < TIMEOUT, "never: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_pool_routes_keys_to_one_worker_across_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let (cookie, config) = cluster_files(dir.path());
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[[run.pools]]\nname = \"workers\"\nagent = \"echo\"\nsize = 3\n");
    std::fs::write(&config, text).unwrap();
    let pool = ["--cluster-pool", POOL];
    let (n1, n2, n3) = tokio::task::block_in_place(|| {
        let n1 = ClusterNode::start_with(dir.path(), "n1", &cookie, &config, &[], &pool);
        let n2 = ClusterNode::start_with(dir.path(), "n2", &cookie, &config, &[n1.cluster], &pool);
        let client = ["--cluster-pool-client", POOL];
        let n3 = ClusterNode::start_with(dir.path(), "n3", &cookie, &config, &[n1.cluster, n2.cluster], &client);
        for n in [&n1, &n2, &n3] {
            n.wait_members(&["n1", "n2", "n3"]);
        }
        for n in [&n1, &n2, &n3] {
            wait_until("both hosts seen", || {
                pool_status(n)["hosts"] == serde_json::json!(["n1", "n2"])
            });
        }
        (n1, n2, n3)
    });

    let keys = keys(30);
    tokio::task::block_in_place(|| {
        // n3 is a client: it has no workers; n1 hosts no pool "other".
        assert!(workers(&n3).is_empty());
        let (code, _) = http(&n1.http, "GET", "/cluster/pools/other", None, None);
        assert_eq!(code, 404);
        let whole_ring = n1.owners(&keys);
        assert!(whole_ring.iter().any(|o| o == "n3"), "{whole_ring:?}");
        let mut owned = BTreeMap::<String, u64>::new();
        for (key, whole) in keys.iter().zip(&whole_ring) {
            let before = [workers(&n1), workers(&n2)];
            let mut owner = None;
            for i in 0..3 {
                let ack = pool_send(&n1, key, &format!("{key} #{i}"));
                let o = ack["owner"].as_str().unwrap().to_string();
                assert!(owner.is_none() || owner.as_deref() == Some(o.as_str()), "{key}: {ack}");
                owner = Some(o);
            }
            let owner = owner.unwrap();
            assert_ne!(owner, "n3", "{key}");
            if whole != "n3" {
                assert_eq!(&owner, whole, "{key}: a host keeps the keys it owns on the whole ring");
            }
            *owned.entry(owner.clone()).or_default() += 1;
            let after = [workers(&n1), workers(&n2)];
            let (on, off) = if owner == "n1" { (0, 1) } else { (1, 0) };
            // One worker of the owner handled all three; nobody else any.
            let g = grown(&before[on], &after[on]);
            assert_eq!(g.len(), 1, "{key} on {owner}: {g:?}");
            assert_eq!(g[0].1, 3, "{key} on {owner}: {g:?}");
            assert!(grown(&before[off], &after[off]).is_empty(), "{key}");
        }
        let (on_n1, on_n2) = (owned["n1"], owned["n2"]);
        assert_eq!(on_n1 + on_n2, 30);
        let s1 = pool_status(&n1);
        let s2 = pool_status(&n2);
        // n1's own keys went to its workers unencoded; only n2's were encoded.
        assert_eq!(s1["local_sends"], 3 * on_n1);
        assert_eq!(s1["encoded"], 3 * on_n2);
        assert_eq!(s2["remote_handled"], 3 * on_n2);
        assert_eq!(s2["encoded"], 0);
        assert_eq!(n3.status()["work_handled"], 0);
        // The client n3 sends every key to the same owner n1 did, encoded.
        for (key, whole) in keys.iter().zip(&whole_ring).take(10) {
            let ack = pool_send(&n3, key, "from the client");
            assert_ne!(ack["owner"], "n3", "{key}");
            if whole != "n3" {
                assert_eq!(ack["owner"], whole.as_str(), "{key}");
            }
        }
        let s3 = pool_status(&n3);
        assert_eq!(
            (s3["encoded"].as_u64(), s3["local_sends"].as_u64()),
            (Some(10), Some(0))
        );
        assert_eq!(n3.status()["work_handled"], 0);
    });

    // A probe node casts a pool frame whose body is not a message of the
    // pool to n1's proxy: refused and counted, and the pool serves on.
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
    let proxy: ActorRef<PoolProxyMsg> = loop {
        if let Some(cell) = ractor::pg::get_members(&pool_node_group(POOL, "n1")).into_iter().next() {
            break cell.into();
        }
        assert!(start.elapsed() < TIMEOUT, "n1's pool proxy never appeared");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let work = Work {
        from: "probe".into(),
        key: "k".into(),
        body: vec![0xff; 9],
        pool: Some(POOL.into()),
    };
    proxy
        .cast(PoolProxyMsg(envelope::encode(FrameKind::Work, 1, &work, 1024).unwrap()))
        .unwrap();
    tokio::task::block_in_place(|| {
        wait_until("the garbage counted", || pool_status(&n1)["decode_errors"] == 1);
        assert_eq!(n1.status()["decode_errors"], 0, "the frame itself was sound");
        assert_eq!(n1.status()["work_failed"], 1);
        assert_eq!(pool_send(&n1, "after-garbage", "still here")["attempts"], 1);
    });
    server.stop(None);
    let _ = server_join.await;

    // n2 hangs: a message for one of its keys is resent to the key's next
    // owner among the hosts (n1, not n3) once n2 is ejected, and acknowledged.
    tokio::task::block_in_place(|| {
        let key = keys
            .iter()
            .zip(n1.owners(&keys))
            .find(|(_, o)| o == "n2")
            .map(|(k, _)| k.clone())
            .unwrap();
        n2.signal("STOP");
        let ack = pool_send(&n1, &key, "while n2 hangs");
        assert_eq!(ack["owner"], "n1", "{ack}");
        assert!(ack["attempts"].as_u64().unwrap() >= 2, "{ack}");
        n2.signal("CONT");
    });
}
