use std::collections::HashMap;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::envelope::{self, EnvelopeError, FrameKind, HEADER_LEN};
use super::*;
use crate::routing::RoutingKey;

fn keys(n: usize) -> Vec<RoutingKey> {
    (0..n).map(|i| RoutingKey::new(format!("key-{i}"))).collect()
}

fn owners(ring: &ClusterRing, keys: &[RoutingKey]) -> Vec<String> {
    keys.iter().map(|&k| ring.owner(k).unwrap().to_string()).collect()
}

#[test]
fn same_members_in_any_order_give_the_same_owners() {
    let ks = keys(5000);
    let a = ClusterRing::new(["n1", "n2", "n3"], 64).unwrap();
    let b = ClusterRing::new(vec!["n3".to_string(), "n2".into(), "n1".into(), "n2".into()], 64).unwrap();
    assert_eq!(b.members(), ["n1", "n2", "n3"]);
    assert_eq!(owners(&a, &ks), owners(&b, &ks));
}

#[test]
fn removing_a_node_moves_only_its_keys() {
    let ks = keys(10_000);
    let full = ClusterRing::new(["n1", "n2", "n3", "n4"], 128).unwrap();
    let less = ClusterRing::new(["n1", "n2", "n4"], 128).unwrap();
    let before = owners(&full, &ks);
    let after = owners(&less, &ks);
    let mut moved = 0;
    for (b, a) in before.iter().zip(&after) {
        if b == "n3" {
            assert_ne!(a, "n3");
            moved += 1;
        } else {
            assert_eq!(b, a, "a key not owned by the removed node moved");
        }
    }
    // n3 owned about a quarter of the keys.
    assert!((1500..3500).contains(&moved), "{moved} keys moved");
    // And they come back when it returns.
    assert_eq!(
        owners(&ClusterRing::new(["n4", "n3", "n2", "n1"], 128).unwrap(), &ks),
        before
    );
}

#[test]
fn empty_ring_has_no_owner() {
    let ring = ClusterRing::new(Vec::<String>::new(), 16).unwrap();
    assert_eq!(ring.owner(RoutingKey::new("a")), None);
    assert_eq!(
        ring.assign(&keys(3), Some(LoadBound { epsilon_percent: 25 })),
        vec![None; 3]
    );
}

#[test]
fn bounded_loads_cap_every_member() {
    let ks = keys(1000);
    let ring = ClusterRing::new(["a", "b", "c", "d", "e"], 8).unwrap();
    let bound = LoadBound { epsilon_percent: 10 };
    // With few virtual nodes plain hashing is uneven...
    let mut plain: HashMap<&str, usize> = HashMap::new();
    for o in ring.assign(&ks, None) {
        *plain.entry(o.unwrap()).or_default() += 1;
    }
    assert!(plain.values().any(|&n| n > 220), "{plain:?}");
    // ...bounded loads are not.
    let mut loads: HashMap<&str, usize> = HashMap::new();
    for o in ring.assign(&ks, Some(bound)) {
        *loads.entry(o.unwrap()).or_default() += 1;
    }
    assert_eq!(bound.capacity(1000, 5), 220);
    assert!(loads.values().all(|&n| n <= 220), "{loads:?}");
    assert_eq!(loads.values().sum::<usize>(), 1000);
    // Deterministic: the same batch in another order gets the same owners.
    let mut rev = ks.clone();
    rev.reverse();
    let mut again = ring.assign(&rev, Some(bound));
    again.reverse();
    assert_eq!(again, ring.assign(&ks, Some(bound)));
}

#[test]
fn capacity_rounds_up_and_covers_the_batch() {
    let b = LoadBound { epsilon_percent: 0 };
    assert_eq!(b.capacity(10, 3), 4);
    assert_eq!(b.capacity(1, 3), 1);
    assert_eq!(b.capacity(0, 3), 0);
    assert_eq!(LoadBound { epsilon_percent: 25 }.capacity(100, 4), 32);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn bounded_loads_never_exceed_capacity(n in 1usize..8, m in 0usize..400, eps in 0u32..200) {
        let names: Vec<String> = (0..n).map(|i| format!("node-{i}")).collect();
        let ring = ClusterRing::new(names, 16).unwrap();
        let ks = keys(m);
        let bound = LoadBound { epsilon_percent: eps };
        let cap = bound.capacity(m, n);
        let mut loads: HashMap<&str, usize> = HashMap::new();
        for o in ring.assign(&ks, Some(bound)) {
            *loads.entry(o.expect("every key placed")).or_default() += 1;
        }
        prop_assert!(loads.values().all(|&l| l <= cap));
    }

    #[test]
    fn a_membership_change_moves_only_the_keys_it_must(n in 2usize..8, gone in 0usize..8, seed in any::<u64>()) {
        let gone = gone % n;
        let names: Vec<String> = (0..n).map(|i| format!("n{i}-{seed}")).collect();
        let full = ClusterRing::new(names.clone(), 32).unwrap();
        let less = ClusterRing::new(names.iter().enumerate().filter(|(i, _)| *i != gone).map(|(_, s)| s.clone()), 32).unwrap();
        for k in keys(300) {
            let before = full.owner(k).unwrap();
            let after = less.owner(k).unwrap();
            if before != names[gone] {
                prop_assert_eq!(before, after);
            }
        }
    }
}

#[test]
fn detector_ejects_a_silent_peer_after_the_timeout_only() {
    let t0 = Instant::now();
    let mut d = FailureDetector::new(Duration::from_millis(1000));
    assert_eq!(d.heartbeat("b", 1, t0), Some(MemberChange::Up { node: "b".into() }));
    assert_eq!(d.heartbeat("c", 1, t0), Some(MemberChange::Up { node: "c".into() }));
    // b keeps talking, c falls silent.
    for i in 1..=10 {
        let now = t0 + Duration::from_millis(200 * i);
        assert_eq!(d.heartbeat("b", 1, now), None);
        let changes = d.tick(now);
        if i <= 5 {
            assert!(changes.is_empty(), "at {i}: {changes:?}");
        } else if i == 6 {
            assert_eq!(
                changes,
                vec![MemberChange::Down {
                    node: "c".into(),
                    reason: DownReason::Silent { for_ms: 1200 }
                }]
            );
        } else {
            assert!(changes.is_empty(), "judged once: {changes:?}");
        }
    }
    assert_eq!(d.up().collect::<Vec<_>>(), ["b"]);
    // c comes back (SIGCONT): up again at its next heartbeat.
    let later = t0 + Duration::from_secs(5);
    assert_eq!(d.heartbeat("c", 1, later), Some(MemberChange::Up { node: "c".into() }));
    assert!(d.is_up("c"));
}

#[test]
fn detector_takes_a_closed_session_as_down_at_once() {
    let t0 = Instant::now();
    let mut d = FailureDetector::new(Duration::from_secs(60));
    d.heartbeat("b", 1, t0);
    assert_eq!(
        d.disconnected("b"),
        Some(MemberChange::Down {
            node: "b".into(),
            reason: DownReason::Disconnected
        })
    );
    assert_eq!(d.disconnected("b"), None);
    assert_eq!(d.disconnected("never-seen"), None);
    // A restarted process announces a new incarnation.
    assert!(d.heartbeat("b", 2, t0 + Duration::from_secs(1)).is_some());
    assert_eq!(d.incarnation("b"), Some(2));
}

#[test]
fn backoff_doubles_to_the_cap_and_resets() {
    let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
    let waits: Vec<u64> = (0..5).map(|_| b.failed().as_millis() as u64).collect();
    assert_eq!(waits, [100, 200, 400, 500, 500]);
    b.succeeded();
    assert_eq!(b.failed(), Duration::from_millis(100));
}

#[test]
fn envelope_round_trips_and_compresses_above_the_threshold() {
    let small = Heartbeat {
        node: "n1".into(),
        incarnation: 3,
        seq: 9,
    };
    let bytes = envelope::encode(FrameKind::Heartbeat, 42, &small, 1024).unwrap();
    let frame = envelope::decode(&bytes).unwrap();
    assert_eq!(
        (frame.kind, frame.id, frame.compressed),
        (FrameKind::Heartbeat, 42, false)
    );
    assert_eq!(frame.decode::<Heartbeat>(FrameKind::Heartbeat).unwrap(), small);

    let big = Heartbeat {
        node: "n".repeat(4000),
        incarnation: 1,
        seq: 1,
    };
    let bytes = envelope::encode(FrameKind::Heartbeat, 7, &big, 1024).unwrap();
    assert!(
        bytes.len() < 1000,
        "4 KB of one letter compresses: {} bytes",
        bytes.len()
    );
    let frame = envelope::decode(&bytes).unwrap();
    assert!(frame.compressed);
    assert_eq!(frame.decode::<Heartbeat>(FrameKind::Heartbeat).unwrap(), big);
    // The same payload under a higher threshold travels as is.
    let plain = envelope::encode(FrameKind::Heartbeat, 7, &big, 1 << 20).unwrap();
    assert!(!envelope::decode(&plain).unwrap().compressed);
}

#[test]
fn every_kind_of_damage_is_a_typed_error() {
    let hb = Heartbeat {
        node: "n1".into(),
        incarnation: 1,
        seq: 1,
    };
    let good = envelope::encode(FrameKind::Heartbeat, 1, &hb, 1024).unwrap();
    let with = |i: usize, b: u8| {
        let mut v = good.clone();
        v[i] = b;
        v
    };
    assert!(matches!(
        envelope::decode(&good[..10]),
        Err(EnvelopeError::Truncated { .. })
    ));
    assert!(matches!(
        envelope::decode(&with(0, b'X')),
        Err(EnvelopeError::BadMagic(_))
    ));
    assert!(matches!(
        envelope::decode(&with(2, 9)),
        Err(EnvelopeError::UnsupportedVersion(9))
    ));
    assert!(matches!(
        envelope::decode(&with(3, 200)),
        Err(EnvelopeError::UnknownKind(200))
    ));
    assert!(matches!(
        envelope::decode(&with(4, 0x80)),
        Err(EnvelopeError::UnknownFlags(0x80))
    ));
    assert!(matches!(
        envelope::decode(&good[..good.len() - 1]),
        Err(EnvelopeError::LengthMismatch { .. })
    ));
    assert!(matches!(
        envelope::decode(&with(HEADER_LEN, 0xff)),
        Err(EnvelopeError::Checksum { .. })
    ));
    // A valid frame whose payload is not a heartbeat.
    let junk = envelope::encode_bytes(FrameKind::Heartbeat, 1, &[0xff; 3], 1024).unwrap();
    let frame = envelope::decode(&junk).unwrap();
    assert!(matches!(
        frame.decode::<Heartbeat>(FrameKind::Heartbeat),
        Err(EnvelopeError::Payload { .. })
    ));
    // A compressed frame claiming a huge payload is refused before allocating.
    let mut body = u32::MAX.to_le_bytes().to_vec();
    body.extend_from_slice(&[0u8; 8]);
    let mut bomb = envelope::encode_bytes(FrameKind::Heartbeat, 1, &body, u32::MAX).unwrap();
    bomb[4] = envelope::FLAG_COMPRESSED;
    let end = bomb.len() - 8;
    let sum = xxhash_rust::xxh3::xxh3_64(&bomb[..end]).to_le_bytes();
    bomb[end..].copy_from_slice(&sum);
    assert!(matches!(envelope::decode(&bomb), Err(EnvelopeError::TooLarge { .. })));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(frame) = envelope::decode(&bytes) {
            let _ = frame.decode::<Heartbeat>(FrameKind::Heartbeat);
        }
    }

    #[test]
    fn mutated_frames_never_panic(at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>(), big in any::<bool>()) {
        let hb = Heartbeat { node: if big { "x".repeat(3000) } else { "n1".into() }, incarnation: 1, seq: 2 };
        let mut bytes = envelope::encode(FrameKind::Heartbeat, 5, &hb, 1024).unwrap();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        // Fix the checksum up so the damage reaches the decompressor and bincode.
        let end = bytes.len() - 8;
        let sum = xxhash_rust::xxh3::xxh3_64(&bytes[..end]).to_le_bytes();
        bytes[end..].copy_from_slice(&sum);
        if let Ok(frame) = envelope::decode(&bytes) {
            let _ = frame.decode::<Heartbeat>(FrameKind::Heartbeat);
        }
        let short = &bytes[..cut.index(bytes.len())];
        prop_assert!(envelope::decode(short).is_err());
    }
}

#[test]
fn dedup_handles_a_message_once_within_its_window() {
    use super::dedup::Seen;
    let mut d = Dedup::new(2);
    assert_eq!(d.begin("a", 1), Seen::New);
    assert_eq!(d.begin("a", 1), Seen::InFlight);
    d.finish("a", 1, true);
    assert_eq!(d.begin("a", 1), Seen::Done);
    assert_eq!(d.begin("b", 1), Seen::New, "ids are per sender");
    // A failed handling is forgotten: the next copy is handled anew.
    d.finish("b", 1, false);
    assert_eq!(d.begin("b", 1), Seen::New);
    d.finish("b", 1, true);
    assert_eq!(d.begin("a", 2), Seen::New);
    assert!(d.len() <= 2);
    // ("a", 1) fell out of the window of 2.
    assert_eq!(d.begin("a", 1), Seen::New);
}

#[test]
fn work_and_ack_round_trip() {
    let w = Work {
        from: "n1".into(),
        key: "k".into(),
        body: vec![7; 5000],
        pool: Some("workers".into()),
    };
    let bytes = envelope::encode(FrameKind::Work, 99, &w, 1024).unwrap();
    let frame = envelope::decode(&bytes).unwrap();
    assert!(frame.compressed);
    assert_eq!(frame.id, 99);
    assert_eq!(frame.decode::<Work>(FrameKind::Work).unwrap(), w);
    assert!(matches!(
        frame.decode::<Ack>(FrameKind::Ack),
        Err(EnvelopeError::WrongKind { .. })
    ));
}
