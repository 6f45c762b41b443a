use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use nexus_swarm_runtime::cluster::envelope::{self, FrameKind};
use nexus_swarm_runtime::cluster::{ClusterRing, LoadBound, Work};
use nexus_swarm_runtime::config::{NexusConfig, RoutingStrategyKind};
use nexus_swarm_runtime::prelude::*;
use parking_lot::Mutex;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use super::*;
use crate::cluster_member::{ClusterMember, ClusterSettings, Cookie};
use crate::router::Router;

const TIMEOUT: Duration = Duration::from_secs(10);

fn names(n: &[&str]) -> Vec<String> {
    n.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_key_goes_only_to_a_host_and_keeps_its_owner_when_that_owner_hosts() {
    let members = names(&["a", "b", "c", "d"]);
    let full = ClusterRing::new(members.clone(), 64).unwrap();
    let ring = PoolRing::new(&members, |m| m != "c", 64).unwrap();
    assert_eq!(ring.hosts(), ["a", "b", "d"]);
    let mut moved = 0;
    for i in 0..2000 {
        let key = RoutingKey::new(format!("k{i}"));
        let owner = ring.owner(key).unwrap();
        assert_ne!(owner, "c");
        match full.owner(key).unwrap() {
            "c" => moved += 1,
            whole => assert_eq!(owner, whole, "a host's key stays with it"),
        }
    }
    // Only c's keys moved, and c owned some.
    assert!(moved > 0);
    let none = PoolRing::new(&members, |_| false, 64).unwrap();
    assert!(none.hosts().is_empty());
    assert_eq!(none.owner(RoutingKey::new("k")), None);
    assert_eq!(none.assign(&[RoutingKey::new("k")], None), [None]);
}

#[test]
fn bounded_loads_spread_keys_over_hosts_only() {
    let members = names(&["a", "b", "c"]);
    let ring = PoolRing::new(&members, |m| m != "b", 32).unwrap();
    let keys: Vec<RoutingKey> = (0..100).map(|i| RoutingKey::new(format!("k{i}"))).collect();
    let bound = LoadBound { epsilon_percent: 10 };
    let owners = ring.assign(&keys, Some(bound));
    let mut per: BTreeMap<&str, usize> = BTreeMap::new();
    for o in owners {
        *per.entry(o.unwrap()).or_default() += 1;
    }
    assert_eq!(per.keys().copied().collect::<Vec<_>>(), ["a", "c"]);
    assert!(per.values().all(|&n| n <= bound.capacity(100, 2)), "{per:?}");
}

#[test]
fn the_cached_ring_is_rebuilt_only_when_the_hosts_change() {
    let cache = PoolRingCache::default();
    let members = names(&["a", "b", "c"]);
    let first = cache.get(&members, |m| m != "b", 16).unwrap();
    let again = cache.get(&members, |m| m != "b", 16).unwrap();
    assert!(Arc::ptr_eq(&first, &again));
    let more = cache.get(&members, |_| true, 16).unwrap();
    assert_eq!(more.hosts(), ["a", "b", "c"]);
    assert!(!Arc::ptr_eq(&first, &more));
}

proptest! {
    /// Whatever the members and hosts, the owner is a host up, and every
    /// node computing it from the same view picks the same one.
    #[test]
    fn the_owner_is_always_a_host_and_the_same_for_every_order(
        hosts in proptest::collection::btree_set(0u8..8, 1..8),
        extra in proptest::collection::btree_set(0u8..8, 0..8),
        key in "[a-z0-9]{1,12}",
    ) {
        let mut members: Vec<String> = hosts.iter().chain(&extra).map(|i| format!("n{i}")).collect();
        members.sort();
        members.dedup();
        let is_host = |m: &str| hosts.iter().any(|i| format!("n{i}") == m);
        let ring = PoolRing::new(&members, is_host, 16).unwrap();
        let owner = ring.owner(RoutingKey::new(&key)).unwrap().to_string();
        prop_assert!(is_host(&owner));
        members.reverse();
        let reversed = PoolRing::new(&members, is_host, 16).unwrap();
        prop_assert_eq!(reversed.owner(RoutingKey::new(&key)).unwrap(), owner.as_str());
    }
}

#[test]
fn names_and_bodies_are_checked() {
    assert!(valid_name("workers-1_a"));
    assert!(!valid_name(""));
    assert!(!valid_name("a.b"));
    assert!(!valid_name(&"x".repeat(MAX_POOL_NAME + 1)));
    let body = encode("p", &Greet { n: 7 }).unwrap();
    assert_eq!(decode::<Greet>("p", &body).unwrap(), Greet { n: 7 });
    let mut long = body.clone();
    long.push(0);
    assert!(matches!(
        decode::<Greet>("p", &long),
        Err(ClusterPoolError::TrailingBytes { extra: 1, .. })
    ));
    assert!(matches!(
        decode::<Greet>("p", &[]),
        Err(ClusterPoolError::Decode { .. })
    ));
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Greet {
    n: u64,
}

/// What the workers saw: (worker, key, message id, n).
type Seen = Arc<Mutex<Vec<(usize, String, MessageId, u64)>>>;

#[derive(Clone)]
struct Recorder(Seen);

impl Agent for Recorder {
    type Msg = (Delivered<Greet>, Reply<()>);
    type State = ();

    async fn init(&self, _: &AgentContext<Self::Msg>) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn handle(
        &self,
        ctx: &AgentContext<Self::Msg>,
        (d, done): Self::Msg,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        self.0.lock().push((ctx.worker(), d.key, d.id, d.msg.n));
        done.send(());
        Ok(())
    }
}

struct Fixture {
    node: Node,
    cluster: ClusterHandle,
    pool: ClusterPool<Greet>,
    seen: Seen,
    _dir: tempfile::TempDir,
}

async fn fixture(name: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut config = NexusConfig::default();
    config.node.data_dir = dir.path().to_path_buf();
    config.router.strategy = RoutingStrategyKind::ConsistentHash;
    config.cluster.ack_timeout = Duration::from_millis(50);
    let node = Node::start(config.clone()).await.unwrap();
    std::fs::write(dir.path().join("cookie"), "c").unwrap();
    // Names are process-wide in ractor's registry: one per fixture.
    let cluster = ClusterMember::start(
        &node,
        &format!("cluster-member-{name}"),
        ClusterSettings {
            name: name.into(),
            listen: ([127, 0, 0, 1], 0).into(),
            cookie: Cookie::from_file(&dir.path().join("cookie")).unwrap(),
            join: vec![],
            config: config.cluster.clone(),
            handler: None,
        },
    )
    .await
    .unwrap();
    let seen: Seen = Arc::default();
    let workers = node
        .spawn_pool("recorders", 3, Recorder(Arc::clone(&seen)))
        .await
        .unwrap();
    let router = Router::start(&node, "recorders-router", config.router.clone())
        .await
        .unwrap();
    router.add_pool(&workers).await.unwrap();
    let pool = ClusterPool::register(&node, &cluster, &format!("greeters-{name}"), router, |d, r| (d, r))
        .await
        .unwrap();
    Fixture {
        node,
        cluster,
        pool,
        seen,
        _dir: dir,
    }
}

impl Fixture {
    async fn stop(self) {
        self.cluster.stop();
        self.node.shutdown(Duration::from_secs(5)).await;
    }
}

async fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < TIMEOUT, "never: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn local_sends_encode_nothing_and_each_key_keeps_its_worker() {
    let f = fixture("solo").await;
    assert_eq!(f.pool.hosts().unwrap(), ["solo"]);
    for round in 0..3u64 {
        for k in 0..20 {
            let d = f
                .pool
                .send_acked(&format!("key-{k}"), Greet { n: round }, TIMEOUT)
                .await
                .unwrap();
            assert_eq!((d.owner.as_str(), d.attempts), ("solo", 1));
        }
    }
    // Handled before acknowledged: all 60 are there.
    assert_eq!(f.seen.lock().len(), 60);
    f.pool.send("key-0", Greet { n: 9 }).await.unwrap();
    wait_for("the unacked send handled", || f.seen.lock().len() == 61).await;
    assert_eq!(f.pool.encoded(), 0);
    assert_eq!(f.pool.local_sends(), 61);
    assert_eq!(f.cluster.work_sent(), 0);

    let seen = f.seen.lock().clone();
    let mut workers: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for (worker, key, id, _) in &seen {
        workers.entry(key.clone()).or_default().insert(*worker);
        assert_eq!(id.node, "solo");
        assert!(ids.insert(id.id), "ids are distinct");
    }
    assert!(workers.values().all(|w| w.len() == 1), "{workers:?}");
    let used: BTreeSet<usize> = workers.values().flatten().copied().collect();
    assert!(used.len() > 1, "keys spread over workers: {used:?}");
    f.stop().await;
}

#[tokio::test]
async fn a_peers_message_is_decoded_routed_by_key_and_garbage_is_refused() {
    let f = fixture("own").await;
    let pool_name = f.pool.name().to_string();
    let proxy: ActorRef<PoolProxyMsg> = ractor::pg::get_members(&pool_node_group(&pool_name, "own"))
        .into_iter()
        .find(|c| c.get_id().is_local())
        .expect("the proxy joined its node group")
        .into();
    assert!(
        ractor::pg::get_members(&pool_group(&pool_name))
            .iter()
            .any(|c| c.get_id() == proxy.get_id())
    );
    let frame = |id: u64, key: &str, body: Vec<u8>, pool: &str| {
        let work = Work {
            from: "peer".into(),
            key: key.into(),
            body,
            pool: Some(pool.into()),
        };
        envelope::encode(FrameKind::Work, id, &work, 1024).unwrap()
    };
    // Garbage for the pool: refused, counted, not handled, and the next
    // message is.
    proxy
        .cast(PoolProxyMsg(frame(
            1,
            "k",
            b"\xff\xff\xff\xff\xff\xff".to_vec(),
            &pool_name,
        )))
        .unwrap();
    wait_for("the garbage refused", || f.cluster.work_failed() == 1).await;
    assert_eq!(f.pool.decode_errors(), 1);
    // A pool this node does not host: refused, not given to any handler.
    proxy
        .cast(PoolProxyMsg(frame(
            2,
            "k",
            encode("x", &Greet { n: 1 }).unwrap(),
            "other",
        )))
        .unwrap();
    wait_for("the unknown pool refused", || f.cluster.work_failed() == 2).await;
    // Two copies of one message (a resend): handled once.
    let good = frame(3, "k", encode("x", &Greet { n: 5 }).unwrap(), &pool_name);
    proxy.cast(PoolProxyMsg(good.clone())).unwrap();
    proxy.cast(PoolProxyMsg(good)).unwrap();
    wait_for("the message handled", || f.pool.remote_handled() == 1).await;
    wait_for("the copy seen", || f.cluster.work_duplicates() == 1).await;
    let seen = f.seen.lock().clone();
    assert_eq!(seen.len(), 1);
    let (_, key, id, n) = &seen[0];
    assert_eq!((key.as_str(), n), ("k", &5));
    assert_eq!(
        *id,
        MessageId {
            node: "peer".into(),
            id: 3
        }
    );
    assert_eq!(f.cluster.work_handled(), 1);
    assert_eq!(f.pool.encoded(), 0);
    f.stop().await;
}

#[tokio::test]
async fn a_client_sends_only_to_peers_and_finds_none_here() {
    let f = fixture("cli").await;
    // Same node, not a host: the registered share is this node's, so the
    // client sees no host (its peers would).
    let client = ClusterPool::<Greet>::client(&f.cluster, "greeters-elsewhere").unwrap();
    assert!(client.hosts().unwrap().is_empty());
    let err = client.send_acked("k", Greet { n: 1 }, TIMEOUT).await.unwrap_err();
    assert!(matches!(err, ClusterPoolError::NoHost(_)), "{err}");
    assert!(matches!(
        client.send("k", Greet { n: 1 }).await,
        Err(ClusterPoolError::NoHost(_))
    ));
    assert_eq!((client.encoded(), client.local_sends()), (0, 0));
    // A client of a pool this node hosts still never uses the local share.
    let own = ClusterPool::<Greet>::client(&f.cluster, f.pool.name()).unwrap();
    assert!(own.hosts().unwrap().is_empty());
    assert!(matches!(
        ClusterPool::<Greet>::client(&f.cluster, ""),
        Err(ClusterPoolError::BadName(_))
    ));
    assert!(f.seen.lock().is_empty());
    f.stop().await;
}

#[tokio::test]
async fn registration_refuses_bad_names_unkeyed_routers_and_a_second_pool_of_a_name() {
    let f = fixture("reg").await;
    let config = f.node.config().clone();
    let keyed = Router::<(Delivered<Greet>, Reply<()>)>::start(&f.node, "r2", config.router.clone())
        .await
        .unwrap();
    let taken = ClusterPool::<Greet>::register(&f.node, &f.cluster, f.pool.name(), keyed.clone(), |d, r| (d, r))
        .await
        .unwrap_err();
    assert!(matches!(taken, ClusterPoolError::Taken(_)), "{taken}");
    let bad = ClusterPool::<Greet>::register(&f.node, &f.cluster, "a.b", keyed, |d, r| (d, r))
        .await
        .unwrap_err();
    assert!(matches!(bad, ClusterPoolError::BadName(_)), "{bad}");
    let mut rr = config.router.clone();
    rr.strategy = RoutingStrategyKind::RoundRobin;
    let unkeyed = Router::<(Delivered<Greet>, Reply<()>)>::start(&f.node, "r3", rr)
        .await
        .unwrap();
    let err = ClusterPool::<Greet>::register(&f.node, &f.cluster, "rr", unkeyed, |d, r| (d, r))
        .await
        .unwrap_err();
    assert!(matches!(err, ClusterPoolError::NotKeyed { .. }), "{err}");
    f.stop().await;
}
