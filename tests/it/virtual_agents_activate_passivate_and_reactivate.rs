//! Virtual agents through the public API, on a node: a counter keyed by
//! name is activated by its first message, passivated when idle and
//! reactivated from its snapshot by the next one; its snapshot outlives
//! the host in a redb file, and damage to that file is a typed error, not a
//! wrong count. One million distinct keys are addressed with at most 64
//! resident at once, each message handled exactly once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use nexus_swarm::actors::virtual_agents::{
    ActivationError, CorruptReason, HandleError, MemoryStore, RedbStore, SNAPSHOTS_TABLE, StoreError, VirtualAgent,
    VirtualAgents, VirtualAgentsArgs, VirtualAgentsConfig, VirtualAgentsHandle, VirtualEvent,
};
use nexus_swarm::prelude::*;
use redb::{ReadableDatabase, TableDefinition};

const TIMEOUT: Duration = Duration::from_secs(30);
const IDLE: Duration = Duration::from_secs(60);

/// A count kept as its snapshot.
struct Counter(u64);

enum CounterMsg {
    Add(u64),
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
        }
        Ok(())
    }

    fn snapshot(&self) -> Option<Vec<u8>> {
        Some(self.0.to_le_bytes().to_vec())
    }
}

async fn counters(node: &Node, name: &str, store: Arc<RedbStore>) -> VirtualAgentsHandle<Counter> {
    let config = VirtualAgentsConfig {
        idle_timeout: IDLE,
        ..VirtualAgentsConfig::default()
    };
    let args = VirtualAgentsArgs::new(config, store, ()).unwrap();
    VirtualAgents::<Counter>::start(node, name, args).await.unwrap()
}

async fn node() -> Node {
    Node::start(NexusConfig::default()).await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_counter_is_passivated_when_idle_reactivated_from_disk_and_damage_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snapshots.redb");

    // Activated by its first message; passivated after the idle timeout.
    let first = node().await;
    let h = counters(&first, "it-counters-1", Arc::new(RedbStore::open(&path).unwrap())).await;
    assert_eq!(h.resident(), 0);
    for _ in 0..3 {
        h.send("ada", CounterMsg::Add(1)).await.unwrap();
    }
    assert_eq!(h.ask("ada", CounterMsg::Get, TIMEOUT).await.unwrap(), 3);
    assert_eq!((h.resident(), h.activations()), (1, 1));
    tokio::time::sleep(IDLE * 2).await;
    assert_eq!((h.resident(), h.passivations()), (0, 1));

    // Reactivated from its snapshot by the next message.
    h.send("ada", CounterMsg::Add(1)).await.unwrap();
    assert_eq!(h.ask("ada", CounterMsg::Get, TIMEOUT).await.unwrap(), 4);
    assert_eq!(h.activations(), 2);
    // Stopping the node saves the resident activation (it added 10 more).
    h.send("ada", CounterMsg::Add(10)).await.unwrap();
    first.shutdown(Duration::from_secs(5)).await;
    drop((first, h));

    // A new host on the same file finds the count.
    let second = node().await;
    let h = counters(&second, "it-counters-2", Arc::new(RedbStore::open(&path).unwrap())).await;
    assert_eq!(h.ask("ada", CounterMsg::Get, TIMEOUT).await.unwrap(), 14);
    second.shutdown(Duration::from_secs(5)).await;
    drop((second, h));

    // One bit of the stored count flipped (a well-formed redb write, so
    // only the snapshot's own checksum can catch it).
    {
        let table: TableDefinition<&str, &[u8]> = TableDefinition::new(SNAPSHOTS_TABLE);
        let db = redb::Database::create(&path).unwrap();
        let mut row = {
            let read = db.begin_read().unwrap();
            let t = read.open_table(table).unwrap();
            t.get("ada").unwrap().unwrap().value().to_vec()
        };
        let last = row.len() - 1;
        row[last] ^= 0x01;
        let write = db.begin_write().unwrap();
        write.open_table(table).unwrap().insert("ada", row.as_slice()).unwrap();
        write.commit().unwrap();
    }
    let third = node().await;
    let h = counters(&third, "it-counters-3", Arc::new(RedbStore::open(&path).unwrap())).await;
    let mut events = h.subscribe();
    let err = h.deliver("ada", CounterMsg::Add(1), TIMEOUT).await.unwrap_err();
    let HandleError::Activation { key, source } = err else {
        panic!("a damaged snapshot was used: {err:?}")
    };
    assert_eq!(key, "ada");
    assert!(
        matches!(
            &*source,
            ActivationError::Store(StoreError::Corrupt {
                reason: CorruptReason::Checksum { .. },
                ..
            })
        ),
        "{source:?}"
    );
    let VirtualEvent::ActivationFailed { key, .. } = events.recv().await.unwrap() else {
        panic!("no activation failure published")
    };
    assert_eq!(&*key, "ada");
    let stats = h.stats();
    assert_eq!(
        (
            stats.handled,
            stats.activations,
            stats.activation_failures,
            stats.resident
        ),
        (0, 0, 1, 0)
    );
    // Other keys are unaffected.
    h.send("bob", CounterMsg::Add(2)).await.unwrap();
    assert_eq!(h.ask("bob", CounterMsg::Get, TIMEOUT).await.unwrap(), 2);
    third.shutdown(Duration::from_secs(5)).await;
}

/// Marks its key's slot once per message; keeps no state.
struct Marker {
    index: usize,
    seen: Arc<Seen>,
}

struct Seen {
    slots: Vec<AtomicBool>,
    twice: AtomicU64,
}

impl VirtualAgent for Marker {
    type Msg = ();
    type Context = Arc<Seen>;

    fn activate(seen: &Arc<Seen>, key: &str, _: Option<Vec<u8>>) -> Result<Self, HandlerError> {
        Ok(Marker {
            index: key.parse()?,
            seen: Arc::clone(seen),
        })
    }

    async fn handle(&mut self, (): ()) -> Result<(), HandlerError> {
        if self.seen.slots[self.index].swap(true, Ordering::Relaxed) {
            self.seen.twice.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn snapshot(&self) -> Option<Vec<u8>> {
        None
    }
}

/// Keys addressed: a million in an optimized build; 200,000 in a debug
/// build, where a million take about a minute.
const KEYS: usize = if cfg!(debug_assertions) { 200_000 } else { 1_000_000 };

#[tokio::test]
async fn a_million_keys_are_addressed_with_at_most_64_resident() {
    const MAX_RESIDENT: usize = 64;
    let seen = Arc::new(Seen {
        slots: (0..KEYS).map(|_| AtomicBool::new(false)).collect(),
        twice: AtomicU64::new(0),
    });
    let node = node().await;
    let config = VirtualAgentsConfig {
        idle_timeout: IDLE,
        max_resident: Some(MAX_RESIDENT),
        max_pending: 4096,
    };
    let args = VirtualAgentsArgs::new(config, Arc::new(MemoryStore::new()), Arc::clone(&seen)).unwrap();
    let h = VirtualAgents::<Marker>::start(&node, "it-markers", args).await.unwrap();
    let started = std::time::Instant::now();
    for k in 0..KEYS {
        h.send(&k.to_string(), ()).await.unwrap();
    }
    h.passivate_all().await.unwrap();
    let stats = h.stats();
    eprintln!("{KEYS} keys in {:?}: {stats:?}", started.elapsed());
    assert!(stats.peak_resident <= MAX_RESIDENT, "{stats:?}");
    assert_eq!(stats.peak_resident, MAX_RESIDENT);
    assert_eq!(stats.handled, KEYS as u64);
    assert_eq!((stats.activations, stats.passivations), (KEYS as u64, KEYS as u64));
    assert_eq!(seen.twice.load(Ordering::Relaxed), 0);
    assert!(
        seen.slots.iter().all(|s| s.load(Ordering::Relaxed)),
        "a key was never handled"
    );
    assert_eq!(stats.resident, 0);
    node.shutdown(Duration::from_secs(5)).await;
}
