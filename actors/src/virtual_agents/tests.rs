use std::sync::Arc;
use std::time::Duration;

use nexus_swarm_runtime::agent_ref::Reply;
use nexus_swarm_runtime::config::NexusConfig;
use nexus_swarm_runtime::error::HandlerError;
use nexus_swarm_runtime::node::Node;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::idle::IdleList;
use super::redb_store::{frame, unframe};
use super::*;
use crate::cluster_member::WorkHandler;

const TIMEOUT: Duration = Duration::from_secs(3600);
const IDLE: Duration = Duration::from_secs(60);

/// Counts; its count is its snapshot.
struct Counter(u64);

#[derive(Debug, Serialize, Deserialize)]
enum CounterMsg {
    Add(u64),
    Panic,
    Fail,
    #[serde(skip)]
    Get(Reply<u64>),
}

impl VirtualAgent for Counter {
    type Msg = CounterMsg;
    type Context = ();

    fn activate(_: &(), _key: &str, snapshot: Option<Vec<u8>>) -> Result<Self, HandlerError> {
        Ok(Counter(match snapshot {
            Some(bytes) => u64::from_le_bytes(bytes.as_slice().try_into()?),
            None => 0,
        }))
    }

    async fn handle(&mut self, msg: CounterMsg) -> Result<(), HandlerError> {
        match msg {
            CounterMsg::Add(n) => self.0 += n,
            CounterMsg::Get(reply) => reply.send(self.0),
            CounterMsg::Panic => {
                self.0 += 1000;
                panic!("told to panic");
            }
            CounterMsg::Fail => return Err("told to fail".into()),
        }
        Ok(())
    }

    fn snapshot(&self) -> Option<Vec<u8>> {
        Some(self.0.to_le_bytes().to_vec())
    }
}

/// Keeps nothing: counts the messages of its current activation only.
struct Fresh(u64);

impl VirtualAgent for Fresh {
    type Msg = Reply<u64>;
    type Context = ();

    fn activate(_: &(), _key: &str, snapshot: Option<Vec<u8>>) -> Result<Self, HandlerError> {
        assert!(snapshot.is_none(), "a stateless agent is never given a snapshot");
        Ok(Fresh(0))
    }

    async fn handle(&mut self, reply: Reply<u64>) -> Result<(), HandlerError> {
        self.0 += 1;
        reply.send(self.0);
        Ok(())
    }

    fn snapshot(&self) -> Option<Vec<u8>> {
        None
    }
}

async fn host<A: VirtualAgent<Context = ()>>(
    name: &str,
    config: VirtualAgentsConfig,
    store: Arc<dyn SnapshotStore>,
) -> (Node, VirtualAgentsHandle<A>) {
    let node = Node::start(NexusConfig::default()).await.unwrap();
    let args = VirtualAgentsArgs::new(config, store, ()).unwrap();
    let handle = VirtualAgents::<A>::start(&node, name, args).await.unwrap();
    (node, handle)
}

fn config(max_resident: Option<usize>) -> VirtualAgentsConfig {
    VirtualAgentsConfig {
        idle_timeout: IDLE,
        max_resident,
        ..VirtualAgentsConfig::default()
    }
}

async fn get(h: &VirtualAgentsHandle<Counter>, key: &str) -> u64 {
    h.ask(key, CounterMsg::Get, TIMEOUT).await.unwrap()
}

#[test]
fn idle_list_gives_the_least_recently_used_and_the_expired_in_order() {
    let t0 = Instant::now();
    let mut idle = IdleList::default();
    idle.idle("a".into(), t0);
    idle.idle("b".into(), t0 + Duration::from_secs(1));
    idle.idle("c".into(), t0 + Duration::from_secs(2));
    idle.idle("a".into(), t0 + Duration::from_secs(3)); // used again: now the newest
    idle.busy("b");
    assert_eq!(idle.len(), 2);
    assert_eq!(
        idle.pop_expired(t0 + Duration::from_secs(2)),
        vec![Arc::<str>::from("c")]
    );
    assert_eq!(idle.pop_oldest().as_deref(), Some("a"));
    assert_eq!(idle.pop_oldest(), None);
}

#[test]
fn same_instant_idles_leave_in_arrival_order() {
    let t0 = Instant::now();
    let mut idle = IdleList::default();
    for k in ["x", "y", "z"] {
        idle.idle(k.into(), t0);
    }
    let order: Vec<String> = idle.pop_expired(t0).iter().map(|k| k.to_string()).collect();
    assert_eq!(order, ["x", "y", "z"]);
}

#[test]
fn config_refuses_zeroes_naming_the_field() {
    let zero_idle = VirtualAgentsConfig {
        idle_timeout: Duration::ZERO,
        ..VirtualAgentsConfig::default()
    };
    assert!(
        zero_idle
            .validate()
            .unwrap_err()
            .to_string()
            .contains("virtual_agents.idle_timeout")
    );
    let zero_max = config(Some(0));
    assert!(
        zero_max
            .validate()
            .unwrap_err()
            .to_string()
            .contains("virtual_agents.max_resident")
    );
    let zero_pending = VirtualAgentsConfig {
        max_pending: 0,
        ..VirtualAgentsConfig::default()
    };
    assert!(
        zero_pending
            .validate()
            .unwrap_err()
            .to_string()
            .contains("virtual_agents.max_pending")
    );
    assert!(VirtualAgentsConfig::default().validate().is_ok());
    let parsed: VirtualAgentsConfig = toml::from_str("idle_timeout = \"5m\"\nmax_resident = 100").unwrap();
    assert_eq!(parsed.idle_timeout, Duration::from_secs(300));
    assert_eq!(parsed.max_resident, Some(100));
    assert_eq!(parsed.max_pending, 10_000);
}

#[test]
fn framed_snapshots_round_trip_and_damage_is_typed() {
    let row = frame("k", b"hello");
    assert_eq!(unframe("k", &row).unwrap(), b"hello");
    for bit in 0..row.len() * 8 {
        let mut bad = row.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        assert!(
            matches!(unframe("k", &bad), Err(StoreError::Corrupt { .. })),
            "bit {bit} flipped was read back"
        );
    }
    assert!(matches!(
        unframe("other", &row),
        Err(StoreError::Corrupt {
            reason: CorruptReason::Checksum { .. },
            ..
        })
    ));
    assert!(matches!(
        unframe("k", &row[..4]),
        Err(StoreError::Corrupt {
            reason: CorruptReason::Truncated { len: 4, .. },
            ..
        })
    ));
}

#[test]
fn redb_store_saves_loads_removes_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snapshots.redb");
    {
        let store = RedbStore::open(&path).unwrap();
        assert_eq!(store.load("k").unwrap(), None);
        store.save("k", b"one").unwrap();
        store.save("k", b"two").unwrap();
        store.save("gone", b"x").unwrap();
        store.remove("gone").unwrap();
        store.remove("never").unwrap();
    }
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(store.load("k").unwrap().as_deref(), Some(&b"two"[..]));
    assert_eq!(store.load("gone").unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn first_message_activates_and_state_survives_passivation() {
    let store = Arc::new(MemoryStore::new());
    let (node, h) = host::<Counter>("va-counter", config(None), store.clone()).await;
    assert_eq!(h.resident(), 0);
    for _ in 0..3 {
        h.send("c", CounterMsg::Add(1)).await.unwrap();
    }
    assert_eq!(get(&h, "c").await, 3);
    assert_eq!((h.resident(), h.activations()), (1, 1));
    assert!(store.is_empty(), "nothing is saved while resident");

    tokio::time::sleep(IDLE + IDLE / 2).await;
    assert_eq!(h.resident(), 0);
    assert_eq!(h.passivations(), 1);
    assert_eq!(store.load("c").unwrap(), Some(3u64.to_le_bytes().to_vec()));

    h.send("c", CounterMsg::Add(1)).await.unwrap();
    assert_eq!(get(&h, "c").await, 4);
    assert_eq!(h.activations(), 2);
    node.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn an_activation_in_use_is_not_passivated() {
    let (node, h) = host::<Counter>("va-busy", config(None), Arc::new(MemoryStore::new())).await;
    for _ in 0..10 {
        h.send("c", CounterMsg::Add(1)).await.unwrap();
        tokio::time::sleep(IDLE / 2).await;
    }
    assert_eq!(get(&h, "c").await, 10);
    assert_eq!((h.activations(), h.passivations()), (1, 0));
    node.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn a_stateless_agent_starts_fresh_and_leaves_no_snapshot() {
    let store = Arc::new(MemoryStore::new());
    let (node, h) = host::<Fresh>("va-fresh", config(None), store.clone()).await;
    assert_eq!(h.ask("s", |r| r, TIMEOUT).await.unwrap(), 1);
    assert_eq!(h.ask("s", |r| r, TIMEOUT).await.unwrap(), 2);
    h.passivate_all().await.unwrap();
    assert_eq!(h.resident(), 0);
    assert_eq!(
        h.ask("s", |r| r, TIMEOUT).await.unwrap(),
        1,
        "a stateless agent starts fresh"
    );
    assert!(store.is_empty(), "nothing saved for a stateless agent");
    assert_eq!((h.activations(), h.passivations()), (2, 1));
    node.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn resident_never_exceeds_the_bound_and_every_message_is_handled_once() {
    const KEYS: u64 = 5_000;
    let store = Arc::new(MemoryStore::new());
    let (node, h) = host::<Counter>("va-bound", config(Some(8)), store.clone()).await;
    for round in 1..=2u64 {
        for k in 0..KEYS {
            h.send(&format!("k{k}"), CounterMsg::Add(k + 1)).await.unwrap();
        }
        h.passivate_all().await.unwrap();
        let stats = h.stats();
        assert!(stats.peak_resident <= 8, "{stats:?}");
        assert_eq!(stats.handled, round * KEYS);
        for k in (0..KEYS).step_by(97) {
            assert_eq!(
                store.load(&format!("k{k}")).unwrap(),
                Some((round * (k + 1)).to_le_bytes().to_vec())
            );
        }
    }
    assert_eq!(store.len(), KEYS as usize);
    assert_eq!(h.stats().peak_resident, 8);
    node.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn a_panicking_key_is_reactivated_from_its_last_snapshot_and_others_run_on() {
    let (node, h) = host::<Counter>("va-panic", config(None), Arc::new(MemoryStore::new())).await;
    let mut events = h.subscribe();
    h.send("bad", CounterMsg::Add(5)).await.unwrap();
    h.send("good", CounterMsg::Add(7)).await.unwrap();
    h.passivate_all().await.unwrap(); // bad = 5 saved
    h.send("bad", CounterMsg::Add(1)).await.unwrap(); // 6, not saved
    let err = h.deliver("bad", CounterMsg::Panic, TIMEOUT).await.unwrap_err();
    assert!(
        matches!(err, HandleError::Panicked { ref key, .. } if key == "bad"),
        "{err:?}"
    );
    assert_eq!(get(&h, "bad").await, 5, "reactivated from the last snapshot");
    assert_eq!(get(&h, "good").await, 7);
    assert!(matches!(events.recv().await.unwrap(), VirtualEvent::Panicked { key, .. } if &*key == "bad"));
    assert_eq!(h.stats().panics, 1);
    node.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn messages_queued_behind_a_panic_are_handled_in_order_by_the_next_activation() {
    let (node, h) = host::<Counter>("va-behind", config(None), Arc::new(MemoryStore::new())).await;
    h.send("k", CounterMsg::Panic).await.unwrap();
    h.send("k", CounterMsg::Add(2)).await.unwrap();
    h.send("k", CounterMsg::Add(3)).await.unwrap();
    assert_eq!(get(&h, "k").await, 5);
    assert_eq!((h.stats().panics, h.stats().handled), (1, 3));
    node.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn an_agent_error_fails_only_its_message() {
    let (node, h) = host::<Counter>("va-fail", config(None), Arc::new(MemoryStore::new())).await;
    h.send("k", CounterMsg::Add(2)).await.unwrap();
    let err = h.deliver("k", CounterMsg::Fail, TIMEOUT).await.unwrap_err();
    assert!(matches!(err, HandleError::Failed { .. }), "{err:?}");
    assert_eq!(get(&h, "k").await, 2);
    assert_eq!(h.activations(), 1);
    node.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn a_snapshot_the_agent_refuses_fails_the_message_with_a_typed_error() {
    let store = Arc::new(MemoryStore::new());
    store.save("k", b"not eight bytes").unwrap();
    let (node, h) = host::<Counter>("va-refuse", config(None), store.clone()).await;
    let err = h.deliver("k", CounterMsg::Add(1), TIMEOUT).await.unwrap_err();
    let HandleError::Activation { source, .. } = err else {
        panic!("{err:?}")
    };
    assert!(matches!(*source, ActivationError::Agent(_)));
    assert_eq!(
        (h.activations(), h.stats().activation_failures, h.stats().handled),
        (0, 1, 0)
    );
    assert_eq!(h.resident(), 0);
    // Mended, the next message activates it.
    store.save("k", &40u64.to_le_bytes()).unwrap();
    assert_eq!(get(&h, "k").await, 40);
    node.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn try_send_gives_the_message_back_when_full() {
    let config = VirtualAgentsConfig {
        max_pending: 2,
        ..config(None)
    };
    let (node, h) = host::<Counter>("va-full", config, Arc::new(MemoryStore::new())).await;
    // Nothing runs until this task yields: the two permits stay taken.
    h.try_send("k", CounterMsg::Add(1)).unwrap();
    h.try_send("k", CounterMsg::Add(1)).unwrap();
    let Err(SendError::Full(CounterMsg::Add(5))) = h.try_send("k", CounterMsg::Add(5)) else {
        panic!("a third message was accepted")
    };
    assert_eq!(h.pending(), 2);
    assert_eq!(get(&h, "k").await, 2);
    assert_eq!(h.pending(), 0);
    node.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn stopping_the_node_saves_every_resident_snapshot() {
    let store = Arc::new(MemoryStore::new());
    let (node, h) = host::<Counter>("va-stop", config(None), store.clone()).await;
    for k in 0..10u64 {
        h.send(&format!("k{k}"), CounterMsg::Add(k)).await.unwrap();
    }
    assert_eq!(get(&h, "k9").await, 9);
    node.shutdown(Duration::from_secs(5)).await;
    assert_eq!(store.len(), 10);
    assert_eq!(store.load("k3").unwrap(), Some(3u64.to_le_bytes().to_vec()));
    let err = h.send("k1", CounterMsg::Add(1)).await.unwrap_err();
    assert!(matches!(err, SendError::Unavailable(CounterMsg::Add(1))));
}

#[tokio::test(start_paused = true)]
async fn cluster_work_is_acknowledged_only_once_handled() {
    let (node, h) = host::<Counter>("va-cluster", config(None), Arc::new(MemoryStore::new())).await;
    let work = VirtualWork::new(h.clone(), TIMEOUT);
    let body = encode_work(&CounterMsg::Add(4)).unwrap();
    work.handle("k".into(), body.clone()).await.unwrap();
    work.handle("k".into(), body).await.unwrap();
    assert_eq!(get(&h, "k").await, 8);
    assert!(
        work.handle("k".into(), vec![0xff, 0xff, 0xff]).await.is_err(),
        "garbage is not acked"
    );
    let panic = encode_work(&CounterMsg::Panic).unwrap();
    assert!(work.handle("k".into(), panic).await.is_err(), "a panic is not acked");
    assert_eq!(get(&h, "k").await, 0, "reactivated from its (absent) snapshot");
    node.shutdown(Duration::from_secs(5)).await;
}

/// A store whose calls fail as told.
#[derive(Debug, Default)]
struct Faulty {
    inner: MemoryStore,
    panic_on_load: bool,
    damage_on_save: bool,
}

impl SnapshotStore for Faulty {
    fn blocks(&self) -> bool {
        // Exercise the blocking-pool path too.
        self.panic_on_load
    }

    fn load(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        assert!(!self.panic_on_load, "store told to panic");
        self.inner.load(key)
    }

    fn save(&self, key: &str, snapshot: &[u8]) -> Result<(), StoreError> {
        if self.damage_on_save {
            return Err(StoreError::Corrupt {
                key: key.to_string(),
                reason: CorruptReason::Version(9),
            });
        }
        self.inner.save(key, snapshot)
    }

    fn remove(&self, key: &str) -> Result<(), StoreError> {
        self.inner.remove(key)
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_store_fails_the_activation_with_a_typed_error() {
    let store = Arc::new(Faulty {
        panic_on_load: true,
        ..Faulty::default()
    });
    let (node, h) = host::<Counter>("va-store-panic", config(None), store).await;
    let err = h.deliver("k", CounterMsg::Add(1), TIMEOUT).await.unwrap_err();
    let HandleError::Activation { source, .. } = err else {
        panic!("{err:?}")
    };
    assert!(
        matches!(*source, ActivationError::Store(StoreError::Panicked(_))),
        "{source:?}"
    );
    assert_eq!((h.resident(), h.stats().activation_failures), (0, 1));
    node.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn a_snapshot_that_cannot_be_saved_is_published() {
    let store = Arc::new(Faulty {
        damage_on_save: true,
        ..Faulty::default()
    });
    let (node, h) = host::<Counter>("va-save-fails", config(None), store).await;
    let mut events = h.subscribe();
    h.send("k", CounterMsg::Add(3)).await.unwrap();
    h.passivate_all().await.unwrap();
    assert!(matches!(events.recv().await.unwrap(), VirtualEvent::SaveFailed { key, .. } if &*key == "k"));
    let stats = h.stats();
    assert_eq!((stats.save_failures, stats.passivations, stats.resident), (1, 1, 0));
    node.shutdown(Duration::from_secs(5)).await;
}

mod idle_law {
    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Idle(u8, u8),
        Busy(u8),
        PopOldest,
        PopExpired(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..6u8, 0..4u8).prop_map(|(k, dt)| Op::Idle(k, dt)),
            (0..6u8).prop_map(Op::Busy),
            Just(Op::PopOldest),
            (0..40u8).prop_map(Op::PopExpired),
        ]
    }

    proptest! {
        /// The list agrees with a plain model: a vector of (key, idle
        /// since) in the order they became idle, where a key appears once.
        #[test]
        fn idle_list_matches_a_model(ops in proptest::collection::vec(op(), 1..60)) {
            let t0 = Instant::now();
            let mut now = 0u64;
            let mut list = IdleList::default();
            let mut model: Vec<(String, u64)> = Vec::new();
            for op in ops {
                match op {
                    Op::Idle(k, dt) => {
                        now += u64::from(dt);
                        let key = format!("k{k}");
                        model.retain(|(m, _)| *m != key);
                        model.push((key.clone(), now));
                        list.idle(key.into(), t0 + Duration::from_secs(now));
                    }
                    Op::Busy(k) => {
                        let key = format!("k{k}");
                        model.retain(|(m, _)| *m != key);
                        list.busy(&key);
                    }
                    Op::PopOldest => {
                        let want = (!model.is_empty()).then(|| model.remove(0).0);
                        prop_assert_eq!(list.pop_oldest().map(|k| k.to_string()), want);
                    }
                    Op::PopExpired(at) => {
                        let cutoff = u64::from(at);
                        let want: Vec<String> =
                            model.iter().filter(|(_, t)| *t <= cutoff).map(|(k, _)| k.clone()).collect();
                        model.retain(|(_, t)| *t > cutoff);
                        let got: Vec<String> = list
                            .pop_expired(t0 + Duration::from_secs(cutoff))
                            .iter()
                            .map(|k| k.to_string())
                            .collect();
                        prop_assert_eq!(got, want);
                    }
                }
                prop_assert_eq!(list.len(), model.len());
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_restarted_host_resumes_its_resident_activations() {
    let store = Arc::new(MemoryStore::new());
    let (node, h) = host::<Counter>("va-restart", config(None), store.clone()).await;
    h.send("k", CounterMsg::Add(5)).await.unwrap();
    assert_eq!(get(&h, "k").await, 5);
    h.inject_panic().unwrap();
    tokio::time::timeout(TIMEOUT, async {
        loop {
            let restarts = node
                .system_children()
                .await
                .into_iter()
                .find(|c| c.name == "va-restart")
                .map(|c| c.restarts);
            if restarts == Some(1) {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the host was not restarted");
    // The same activation, unsaved, still holds the count.
    h.send("k", CounterMsg::Add(1)).await.unwrap();
    assert_eq!(get(&h, "k").await, 6);
    assert_eq!((h.activations(), h.resident()), (1, 1));
    assert!(store.is_empty());
    // The restarted host passivates it when idle.
    tokio::time::sleep(IDLE * 2).await;
    assert_eq!((h.resident(), h.passivations()), (0, 1));
    assert_eq!(store.load("k").unwrap(), Some(6u64.to_le_bytes().to_vec()));
    node.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_cluster_work_activates_the_keys_agent_and_is_acknowledged_once_handled() {
    use crate::cluster_member::{ClusterMember, ClusterSettings, Cookie};

    let dir = tempfile::tempdir().unwrap();
    let mut node_config = NexusConfig::default();
    node_config.node.data_dir = dir.path().to_path_buf();
    let node = Node::start(node_config).await.unwrap();
    let args = VirtualAgentsArgs::new(config(None), Arc::new(MemoryStore::new()), ()).unwrap();
    let counters = VirtualAgents::<Counter>::start(&node, "va-cluster-counters", args)
        .await
        .unwrap();
    let cookie_file = dir.path().join("cookie");
    std::fs::write(&cookie_file, "c").unwrap();
    let settings = ClusterSettings {
        name: "va-node".into(),
        listen: ([127, 0, 0, 1], 0).into(),
        cookie: Cookie::from_file(&cookie_file).unwrap(),
        join: vec![],
        config: nexus_swarm_runtime::config::ClusterConfig::default(),
        handler: Some(Arc::new(VirtualWork::new(counters.clone(), Duration::from_secs(5)))),
    };
    let cluster = ClusterMember::start(&node, "va-cluster-member", settings)
        .await
        .unwrap();
    for n in 1..=3u64 {
        let body = encode_work(&CounterMsg::Add(n)).unwrap();
        let delivery = cluster
            .send_keyed("user-9", body, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(delivery.owner, "va-node");
    }
    // Acknowledged means handled: the count is there with no waiting.
    assert_eq!(counters.stats().handled, 3);
    assert_eq!(get(&counters, "user-9").await, 6);
    assert_eq!(counters.activations(), 1);
    cluster.stop();
    node.shutdown(Duration::from_secs(5)).await;
}
