use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::*;
use crate::agent::{Agent, AgentContext};
use crate::config::{MailboxConfig, NexusConfig};
use crate::error::HandlerError;
use crate::node::Node;
use crate::priority::Priority;
use crate::spawn::SpawnOptions;

const TIMEOUT: Duration = Duration::from_secs(30);
const MIB: u64 = 1 << 20;

fn payload(i: u64, len: usize) -> Vec<u8> {
    let mut p = i.to_le_bytes().to_vec();
    p.resize(len.max(8), (i % 251) as u8);
    p
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

fn take_all(store: &mut SpillStore) -> Vec<(u64, Vec<u8>)> {
    std::iter::from_fn(|| store.take().unwrap()).collect()
}

#[test]
fn records_come_back_in_order_across_segments_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SpillStore::open(dir.path(), MIB, false).unwrap();
    // 1 MiB store: 256 KiB segments; 600 records of 1 KiB span three.
    for i in 0..600 {
        assert_eq!(store.append(&payload(i, 1024)).unwrap(), i);
    }
    assert_eq!(segments(dir.path()).len(), 3);
    let first: Vec<_> = (0..100).map(|_| store.take().unwrap().unwrap()).collect();
    for (seq, _) in &first {
        store.ack(*seq).unwrap();
    }
    // Taken but not acknowledged: delivered again after a reopen.
    let (unacked, _) = store.take().unwrap().unwrap();
    assert_eq!(unacked, 100);
    drop(store);

    let mut store = SpillStore::open(dir.path(), MIB, false).unwrap();
    assert_eq!(store.untaken(), 500);
    let rest = take_all(&mut store);
    let seqs: Vec<u64> = rest.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (100..600).collect::<Vec<_>>());
    for (seq, bytes) in &rest {
        assert_eq!(bytes, &payload(*seq, 1024));
    }
    // New appends continue the sequence.
    assert_eq!(store.append(b"next").unwrap(), 600);
}

#[test]
fn acknowledged_segments_are_deleted_and_free_room() {
    let dir = tempfile::tempdir().unwrap();
    let max = 256 << 10;
    let mut store = SpillStore::open(dir.path(), max, false).unwrap();
    let mut n = 0;
    let full = loop {
        match store.append(&payload(n, 1000)) {
            Ok(_) => n += 1,
            Err(e) => break e,
        }
    };
    assert!(
        matches!(full, SpillError::Full { max_bytes } if max_bytes == max),
        "{full}"
    );
    assert!(store.disk_bytes() <= max);
    let before = store.disk_bytes();
    // Acknowledge out of order: nothing is freed until the prefix is whole.
    let taken = take_all(&mut store);
    assert_eq!(taken.len() as u64, n);
    for (seq, _) in taken.iter().skip(1) {
        assert!(!store.ack(*seq).unwrap());
    }
    assert_eq!(store.unacked(), 1);
    assert!(store.ack(0).unwrap(), "the whole prefix is acknowledged: segments go");
    assert_eq!(store.unacked(), 0);
    assert!(store.disk_bytes() < before);
    assert!(segments(dir.path()).is_empty());
    assert!(store.append(&payload(0, 1000)).is_ok());
}

#[test]
fn out_of_order_acknowledgements_above_the_watermark_are_delivered_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SpillStore::open(dir.path(), MIB, false).unwrap();
    for i in 0..5 {
        store.append(&payload(i, 8)).unwrap();
    }
    let _ = take_all(&mut store);
    store.ack(0).unwrap();
    store.ack(2).unwrap();
    drop(store);
    let mut store = SpillStore::open(dir.path(), MIB, false).unwrap();
    let seqs: Vec<u64> = take_all(&mut store).into_iter().map(|(s, _)| s).collect();
    assert_eq!(
        seqs,
        [1, 2, 3, 4],
        "at least once: 2 was acknowledged above the watermark"
    );
}

#[test]
fn a_damaged_record_is_reported_on_open_and_never_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SpillStore::open(dir.path(), MIB, false).unwrap();
    for i in 0..10 {
        store.append(&payload(i, 100)).unwrap();
    }
    drop(store);
    let seg = segments(dir.path()).remove(0);
    // Flip one payload byte of record 3.
    let record = RECORD_HEADER + 100;
    let at = 3 * record + RECORD_HEADER + 50;
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[at as usize] ^= 0x40;
    std::fs::write(&seg, &bytes).unwrap();

    let err = SpillStore::open(dir.path(), MIB, false).unwrap_err();
    match err {
        SpillError::Corrupt { path, offset, reason } => {
            assert_eq!(path, seg);
            assert_eq!(offset, 3 * record);
            assert!(reason.contains("checksum"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other}"),
    }
}

#[test]
fn a_record_damaged_after_open_is_reported_when_taken_and_nothing_more_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SpillStore::open(dir.path(), MIB, false).unwrap();
    for i in 0..4 {
        store.append(&payload(i, 100)).unwrap();
    }
    let seg = segments(dir.path()).remove(0);
    let mut file = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    file.seek(SeekFrom::Start(RECORD_HEADER + 100 + RECORD_HEADER + 7))
        .unwrap();
    file.write_all(&[0xff]).unwrap();
    drop(file);
    assert_eq!(store.take().unwrap().unwrap().0, 0);
    assert!(matches!(store.take(), Err(SpillError::Corrupt { .. })));
    assert!(store.is_damaged());
    assert_eq!(store.untaken(), 0);
    assert!(store.take().unwrap().is_none());
}

#[test]
fn an_incomplete_last_record_is_cut_off_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SpillStore::open(dir.path(), MIB, false).unwrap();
    for i in 0..3 {
        store.append(&payload(i, 64)).unwrap();
    }
    drop(store);
    let seg = segments(dir.path()).remove(0);
    let whole = std::fs::metadata(&seg).unwrap().len();
    // A write cut short: a header and part of a payload.
    let mut file = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    file.write_all(&[64, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3]).unwrap();
    drop(file);

    let mut store = SpillStore::open(dir.path(), MIB, false).unwrap();
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), whole);
    assert_eq!(store.append(&payload(3, 64)).unwrap(), 3);
    let seqs: Vec<u64> = take_all(&mut store).into_iter().map(|(s, _)| s).collect();
    assert_eq!(seqs, [0, 1, 2, 3]);
}

#[test]
fn a_directory_is_open_in_one_store_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = SpillStore::open(dir.path(), MIB, false).unwrap();
    assert!(matches!(
        SpillStore::open(dir.path(), MIB, false),
        Err(SpillError::Locked { .. })
    ));
    drop(store);
    assert!(SpillStore::open(dir.path(), MIB, false).is_ok());
}

#[test]
fn damaged_acknowledgement_slots_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SpillStore::open(dir.path(), MIB, true).unwrap();
    for i in 0..3 {
        store.append(&payload(i, 8)).unwrap();
    }
    let _ = take_all(&mut store);
    store.ack(0).unwrap();
    store.ack(1).unwrap();
    drop(store);
    let acked = dir.path().join("ACKED");
    let mut bytes = std::fs::read(&acked).unwrap();
    // One torn slot: the other still holds a watermark.
    bytes[3] ^= 1;
    std::fs::write(&acked, &bytes).unwrap();
    let mut store = SpillStore::open(dir.path(), MIB, false).unwrap();
    assert_eq!(
        store.take().unwrap().unwrap().0,
        2,
        "the other slot holds the newest watermark"
    );
    drop(store);
    bytes[16 + 3] ^= 1;
    std::fs::write(&acked, &bytes).unwrap();
    assert!(matches!(
        SpillStore::open(dir.path(), MIB, false),
        Err(SpillError::Corrupt { .. })
    ));
}

/// Reports what it handles, after its gate opens.
struct Gated {
    gate: watch::Receiver<bool>,
    seen: mpsc::UnboundedSender<u64>,
}

impl Agent for Gated {
    type Msg = u64;
    type State = ();

    async fn init(&self, _: &AgentContext<u64>) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn handle(&self, _: &AgentContext<u64>, n: u64, _: &mut ()) -> Result<(), HandlerError> {
        let mut gate = self.gate.clone();
        gate.wait_for(|open| *open).await?;
        self.seen.send(n)?;
        Ok(())
    }
}

#[tokio::test]
async fn a_full_low_lane_spills_and_delivers_in_order_before_newer_messages() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(NexusConfig::default()).await.unwrap();
    let (open, gate) = watch::channel(false);
    let (seen, mut handled) = mpsc::unbounded_channel();
    let mailbox = MailboxConfig::default().with_capacity(4);
    let pool = node
        .spawn_spilling_pool(
            "gated",
            1,
            Gated { gate, seen },
            SpawnOptions::new().mailbox(mailbox),
            SpillConfig::new(dir.path()).max_bytes(MIN_SPILL_BYTES),
        )
        .await
        .unwrap();
    for n in 0..50 {
        // Never waits: past the lane, messages go to disk.
        pool.try_send(n, Priority::Low).unwrap();
    }
    let stats = pool.stats().await.unwrap().spill.unwrap();
    assert!(stats.spilled >= 45, "{stats:?}");
    assert_eq!(stats.on_disk, stats.spilled);
    open.send(true).unwrap();
    // Sent while the spill drains: queued behind it.
    for n in 50..60 {
        pool.send(n, Priority::Low).await.unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 60 {
        got.push(tokio::time::timeout(TIMEOUT, handled.recv()).await.unwrap().unwrap());
    }
    assert_eq!(got, (0..60).collect::<Vec<_>>());
    let stats = pool.spill_stats().unwrap();
    assert_eq!(stats.on_disk, 0);
    assert_eq!(stats.unspilled, stats.spilled);
    assert!(segments(dir.path()).is_empty(), "acknowledged segments are deleted");
    node.shutdown(TIMEOUT).await;
}

#[tokio::test]
async fn a_full_spill_refuses_try_send_and_makes_send_wait() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(NexusConfig::default()).await.unwrap();
    let (open, gate) = watch::channel(false);
    let (seen, mut handled) = mpsc::unbounded_channel();
    let mailbox = MailboxConfig::default().with_capacity(1);
    let pool = node
        .spawn_spilling_pool(
            "tight",
            1,
            Gated { gate, seen },
            SpawnOptions::new().mailbox(mailbox),
            SpillConfig::new(dir.path()).max_bytes(MIN_SPILL_BYTES),
        )
        .await
        .unwrap();
    let mut n = 0;
    let refused = loop {
        match pool.try_send(n, Priority::Low) {
            Ok(()) => n += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(refused, crate::error::SendError::Full(m) if m == n));
    assert!(
        matches!(
            pool.send_timeout(n, Priority::Low, Duration::from_millis(20)).await,
            Err(crate::error::SendError::Timeout(_))
        ),
        "waits for room on disk, then times out"
    );
    let sender = tokio::spawn({
        let pool = pool.clone();
        async move { pool.send(n, Priority::Low).await.is_ok() }
    });
    open.send(true).unwrap();
    assert!(tokio::time::timeout(TIMEOUT, sender).await.unwrap().unwrap());
    let mut got = Vec::new();
    while got.len() as u64 <= n {
        got.push(tokio::time::timeout(TIMEOUT, handled.recv()).await.unwrap().unwrap());
    }
    assert_eq!(got, (0..=n).collect::<Vec<_>>());
    node.shutdown(TIMEOUT).await;
}

#[tokio::test]
async fn a_damaged_spill_fails_the_spawn_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = SpillStore::open(dir.path(), MIB, false).unwrap();
        store.append(&encode(&7u64).unwrap()).unwrap();
    }
    let seg = segments(dir.path()).remove(0);
    let mut bytes = std::fs::read(&seg).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&seg, &bytes).unwrap();
    let node = Node::start(NexusConfig::default()).await.unwrap();
    let (_open, gate) = watch::channel(true);
    let (seen, _handled) = mpsc::unbounded_channel();
    let err = node
        .spawn_spilling_pool(
            "damaged",
            1,
            Gated { gate, seen },
            SpawnOptions::new(),
            SpillConfig::new(dir.path()),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, crate::error::SpawnError::Spill { name, source: SpillError::Corrupt { path, .. } } if name == "damaged" && *path == seg),
        "{err}"
    );
    node.shutdown(TIMEOUT).await;
}
