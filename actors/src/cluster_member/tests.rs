use std::time::Duration;

use nexus_swarm_runtime::cluster::Heartbeat;
use nexus_swarm_runtime::cluster::envelope::{self, FrameKind};
use nexus_swarm_runtime::config::ClusterConfig;
use ractor::Actor;

use super::*;

fn config() -> ClusterConfig {
    ClusterConfig {
        heartbeat_interval: Duration::from_millis(50),
        failure_timeout: Duration::from_millis(200),
        ack_timeout: Duration::from_millis(50),
        ..ClusterConfig::default()
    }
}

fn heartbeat(node: &str) -> Vec<u8> {
    let hb = Heartbeat {
        node: node.into(),
        incarnation: 1,
        seq: 0,
    };
    envelope::encode(FrameKind::Heartbeat, 0, &hb, 1024).unwrap()
}

async fn next_event(rx: &mut broadcast::Receiver<ClusterEvent>) -> ClusterEvent {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn heartbeats_add_a_peer_silence_ejects_it_and_garbage_is_counted() {
    let shared = ClusterShared::new("a", config(), None).unwrap();
    let mut events = shared.events.subscribe();
    let args = ClusterMemberArgs {
        shared: Arc::clone(&shared),
    };
    let (member, join) = Actor::spawn(None, ClusterMember, args).await.unwrap();

    member.cast(ClusterMsg::Frame(heartbeat("b"))).unwrap();
    match next_event(&mut events).await {
        ClusterEvent::MemberUp { node, members } => {
            assert_eq!(node, "b");
            assert_eq!(members, ["a", "b"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(shared.view.load().ring.members(), ["a", "b"]);

    // Garbage: counted, published, and the member carries on.
    member.cast(ClusterMsg::Frame(b"not a frame".to_vec())).unwrap();
    match next_event(&mut events).await {
        ClusterEvent::DecodeError { total, .. } => assert_eq!(total, 1),
        other => panic!("{other:?}"),
    }
    assert_eq!(shared.decode_errors.load(Ordering::Relaxed), 1);

    // b falls silent: ejected after the timeout.
    match next_event(&mut events).await {
        ClusterEvent::MemberDown {
            node, reason, members, ..
        } => {
            assert_eq!((node.as_str(), reason), ("b", "silent"));
            assert_eq!(members, ["a"]);
        }
        other => panic!("{other:?}"),
    }
    // Its own heartbeat echoed back is ignored.
    member.cast(ClusterMsg::Frame(heartbeat("a"))).unwrap();
    // A closed session takes a peer down at once.
    member.cast(ClusterMsg::Frame(heartbeat("c"))).unwrap();
    assert!(matches!(next_event(&mut events).await, ClusterEvent::MemberUp { node, .. } if node == "c"));
    member.cast(ClusterMsg::SessionClosed("c".into())).unwrap();
    assert!(
        matches!(next_event(&mut events).await, ClusterEvent::MemberDown { node, reason: "disconnected", .. } if node == "c")
    );
    assert_eq!(shared.view.load().ring.members(), ["a"]);
    member.stop(None);
    join.await.unwrap();
}

#[test]
fn only_frames_cross_nodes_and_anything_received_is_a_frame() {
    use ractor::Message;
    assert!(ClusterMsg::serializable());
    assert!(ClusterMsg::Tick.serialize().is_err());
    let ser = ClusterMsg::Frame(vec![1, 2, 3]).serialize().unwrap();
    assert!(matches!(ClusterMsg::deserialize(ser), Ok(ClusterMsg::Frame(b)) if b == [1, 2, 3]));
}

#[test]
fn cookie_debug_is_redacted_and_bad_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cookie");
    std::fs::write(&path, "s3cret-value\n").unwrap();
    let cookie = Cookie::from_file(&path).unwrap();
    assert!(!format!("{cookie:?}").contains("s3cret"));
    std::fs::write(&path, " \n").unwrap();
    assert!(matches!(Cookie::from_file(&path), Err(ClusterError::Cookie { .. })));
    assert!(Cookie::from_file(&dir.path().join("missing")).is_err());
}

#[tokio::test]
async fn keyed_work_is_handled_once_and_acknowledged() {
    let shared = ClusterShared::new("a", config(), None).unwrap();
    let args = ClusterMemberArgs {
        shared: Arc::clone(&shared),
    };
    let (member, join) = Actor::spawn(None, ClusterMember, args).await.unwrap();
    let handle = ClusterHandle {
        shared: Arc::clone(&shared),
        transport: Arc::new(transport::Transport::detached(([127, 0, 0, 1], 0).into())),
    };
    // Alone in the ring: the key is ours, handled and acknowledged here.
    let d = handle
        .send_keyed("k", b"hello".to_vec(), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!((d.owner.as_str(), d.attempts), ("a", 1));
    assert_eq!(
        (handle.work_sent(), handle.work_acknowledged(), handle.work_handled()),
        (1, 1, 1)
    );

    // A peer's message and its retried copy: handled once.
    let work = nexus_swarm_runtime::cluster::Work {
        from: "b".into(),
        key: "k".into(),
        body: vec![1],
        pool: None,
    };
    let bytes = envelope::encode(FrameKind::Work, 77, &work, 1024).unwrap();
    member.cast(ClusterMsg::Frame(bytes.clone())).unwrap();
    member.cast(ClusterMsg::Frame(bytes)).unwrap();
    let start = std::time::Instant::now();
    while handle.work_duplicates() < 1 {
        assert!(start.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(handle.work_handled(), 2);
    member.stop(None);
    join.await.unwrap();
}

#[test]
fn tls_files_are_read_or_refused_naming_the_file() {
    use nexus_swarm_runtime::config::ClusterTlsConfig;
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/it/fixtures/tls");
    let good = ClusterTlsConfig {
        cert: fixtures.join("node.pem"),
        key: fixtures.join("node.key"),
        ca: fixtures.join("ca.pem"),
    };
    assert!(super::tls::Tls::load(&good).is_ok());
    // A certificate where the key should be.
    let swapped = ClusterTlsConfig {
        key: fixtures.join("node.pem"),
        ..good.clone()
    };
    match super::tls::Tls::load(&swapped) {
        Err(ClusterError::Tls { path, .. }) => assert_eq!(path, fixtures.join("node.pem")),
        other => panic!("{other:?}"),
    }
    let missing = ClusterTlsConfig {
        ca: fixtures.join("missing.pem"),
        ..good
    };
    assert!(matches!(super::tls::Tls::load(&missing), Err(ClusterError::Tls { .. })));
}

#[tokio::test]
async fn without_a_quorum_keyed_work_is_neither_sent_nor_handled() {
    let shared = ClusterShared::new(
        "a",
        ClusterConfig {
            quorum: Some(2),
            ..config()
        },
        None,
    )
    .unwrap();
    let args = ClusterMemberArgs {
        shared: Arc::clone(&shared),
    };
    let (member, join) = Actor::spawn(None, ClusterMember, args).await.unwrap();
    let handle = ClusterHandle {
        shared: Arc::clone(&shared),
        transport: Arc::new(transport::Transport::detached(([127, 0, 0, 1], 0).into())),
    };
    assert!(!handle.has_quorum());
    let err = handle
        .send_keyed("k", vec![], Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DeliveryError::NoQuorum { members: 1, quorum: 2 }),
        "{err}"
    );
    assert_eq!(handle.work_sent(), 0);

    let work = nexus_swarm_runtime::cluster::Work {
        from: "b".into(),
        key: "k".into(),
        body: vec![],
        pool: None,
    };
    member
        .cast(ClusterMsg::Frame(
            envelope::encode(FrameKind::Work, 1, &work, 1024).unwrap(),
        ))
        .unwrap();
    let start = std::time::Instant::now();
    while handle.work_refused() < 1 {
        assert!(start.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(handle.work_handled(), 0);

    // A peer's heartbeat makes two: a quorum.
    member.cast(ClusterMsg::Frame(heartbeat("b"))).unwrap();
    let start = std::time::Instant::now();
    while !handle.has_quorum() {
        assert!(start.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    member.stop(None);
    join.await.unwrap();
}

#[tokio::test]
async fn a_restarted_member_keeps_its_peers_counters_and_slot() {
    let dir = tempfile::tempdir().unwrap();
    let mut node_config = nexus_swarm_runtime::config::NexusConfig::default();
    node_config.node.data_dir = dir.path().to_path_buf();
    let node = Node::start(node_config).await.unwrap();
    let cookie_file = dir.path().join("cookie");
    std::fs::write(&cookie_file, "c").unwrap();
    let settings = ClusterSettings {
        name: "a".into(),
        listen: ([127, 0, 0, 1], 0).into(),
        cookie: Cookie::from_file(&cookie_file).unwrap(),
        join: vec![],
        config: ClusterConfig {
            failure_timeout: Duration::from_secs(60),
            ..config()
        },
        handler: None,
    };
    let handle = ClusterMember::start(&node, "cluster-member", settings).await.unwrap();
    assert_ne!(handle.listen_addr().port(), 0);
    let first = handle.shared.member().unwrap();
    first.cast(ClusterMsg::Frame(heartbeat("b"))).unwrap();
    first.cast(ClusterMsg::Frame(b"junk".to_vec())).unwrap();
    let start = std::time::Instant::now();
    while handle.decode_errors() < 1 {
        assert!(start.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    assert!(handle.inject_panic());
    let start = std::time::Instant::now();
    loop {
        let restarted = node
            .system_children()
            .await
            .iter()
            .any(|c| c.name == "cluster-member" && c.restarts == 1);
        let replaced = handle.shared.member().is_some_and(|m| m.get_id() != first.get_id());
        if restarted && replaced {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "not restarted");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The new instance has the same peers, counters and pg groups.
    assert_eq!(handle.view().ring.members(), ["a", "b"]);
    assert_eq!(handle.decode_errors(), 1);
    let in_group = ractor::pg::get_members(&node_group("a"));
    assert!(
        in_group
            .iter()
            .any(|c| c.get_id() == handle.shared.member().unwrap().get_id())
    );
    // Keyed work still flows through the new instance ("b" is not really
    // connected, so take a key of "a").
    let key = (0..100)
        .map(|i| format!("k{i}"))
        .find(|k| handle.owner(RoutingKey::new(k)).as_deref() == Some("a"))
        .unwrap();
    let d = handle.send_keyed(&key, vec![], Duration::from_secs(5)).await.unwrap();
    assert_eq!(d.owner, "a");
    handle.stop();
    node.shutdown(Duration::from_secs(5)).await;
}

/// Holds every message until the test lets it through; fails the first.
#[derive(Debug)]
struct Gate {
    open: Arc<tokio::sync::Semaphore>,
    fail_first: std::sync::atomic::AtomicBool,
}

impl WorkHandler for Gate {
    fn handle(&self, _key: String, _body: Vec<u8>) -> futures::future::BoxFuture<'static, Result<(), String>> {
        let open = Arc::clone(&self.open);
        let fail = self.fail_first.swap(false, Ordering::SeqCst);
        Box::pin(async move {
            let _permit = open.acquire().await.map_err(|e| e.to_string())?;
            if fail {
                Err("first attempt fails".into())
            } else {
                Ok(())
            }
        })
    }
}

#[tokio::test]
async fn keyed_work_is_acknowledged_only_once_its_handler_is_done() {
    let open = Arc::new(tokio::sync::Semaphore::new(0));
    let gate = Gate {
        open: Arc::clone(&open),
        fail_first: std::sync::atomic::AtomicBool::new(true),
    };
    let shared = ClusterShared::new("a", config(), Some(Arc::new(gate))).unwrap();
    let args = ClusterMemberArgs {
        shared: Arc::clone(&shared),
    };
    let (member, join) = Actor::spawn(None, ClusterMember, args).await.unwrap();
    let handle = ClusterHandle {
        shared: Arc::clone(&shared),
        transport: Arc::new(transport::Transport::detached(([127, 0, 0, 1], 0).into())),
    };
    let sender = handle.clone();
    let sent = tokio::spawn(async move { sender.send_keyed("k", b"x".to_vec(), Duration::from_secs(10)).await });
    // The first handling waits at the gate: no ack; the copies resent
    // every ack timeout (50 ms) are in flight, so neither handled nor acked.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(handle.work_acknowledged(), 0);
    assert_eq!(handle.work_handled(), 0);
    // It fails: no ack; the next copy is handled anew and succeeds.
    open.add_permits(1000);
    let d = tokio::time::timeout(Duration::from_secs(10), sent)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(d.attempts >= 2, "{d:?}");
    assert_eq!(
        (handle.work_failed(), handle.work_handled(), handle.work_acknowledged()),
        (1, 1, 1)
    );
    member.stop(None);
    join.await.unwrap();
}
