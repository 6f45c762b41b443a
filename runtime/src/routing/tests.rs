use std::collections::HashMap;
use std::sync::atomic::AtomicU64;

use proptest::prelude::*;

use super::Strategy;
use super::*;
use crate::config::RoutingStrategyKind;

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("member-{i}")).collect()
}

fn keys(n: u64) -> Vec<RoutingKey> {
    (0..n).map(|i| RoutingKey::new(format!("conversation-{i}"))).collect()
}

/// Owner name of each key on a ring built over `members`.
fn owners<'a>(members: &'a [String], virtual_nodes: u32, keys: &[RoutingKey]) -> Vec<&'a str> {
    let ring = HashRing::new(members, virtual_nodes).unwrap();
    keys.iter().map(|k| members[ring.lookup(k).unwrap()].as_str()).collect()
}

// ---- routing keys ----

#[test]
fn routing_keys_are_the_stable_xxh3_of_their_bytes() {
    // Pinned: a key must map to the same point on every node and release.
    assert_eq!(RoutingKey::new("").hash(), 0x2d06_8005_38d3_94c2);
    assert_eq!(RoutingKey::new("tenant-7"), RoutingKey::from("tenant-7"));
    assert_eq!(RoutingKey::from_id(7), RoutingKey::new(7u64.to_le_bytes()));
    assert_eq!(RoutingKey::from_hash(42).hash(), 42);
}

// ---- round-robin ----

#[test]
fn round_robin_visits_members_in_order() {
    let rr = RoundRobin::new(3);
    let picks: Vec<usize> = (0..7).map(|_| rr.pick(None).unwrap()).collect();
    assert_eq!(picks, [0, 1, 2, 0, 1, 2, 0]);
    assert_eq!(RoundRobin::new(0).pick(None), None);
}

proptest! {
    #[test]
    fn round_robin_is_exact(n in 1usize..64, rounds in 1usize..20) {
        let rr = RoundRobin::new(n);
        let mut counts = vec![0usize; n];
        for _ in 0..n * rounds {
            counts[rr.pick(None).unwrap()] += 1;
        }
        prop_assert!(counts.iter().all(|&c| c == rounds), "{counts:?}");
    }
}

// ---- least-connections ----

#[test]
fn least_connections_picks_the_least_loaded_and_rotates_ties() {
    let loads: Vec<AtomicU64> = [3, 1, 4, 1].into_iter().map(AtomicU64::new).collect();
    let lc = LeastConnections::new(loads.iter().collect());
    let picks: Vec<usize> = (0..4).map(|_| lc.pick(None).unwrap()).collect();
    assert!(picks.iter().all(|&p| p == 1 || p == 3), "{picks:?}");
    assert!(picks.contains(&1) && picks.contains(&3), "ties rotate: {picks:?}");
    loads[3].store(0, std::sync::atomic::Ordering::Relaxed);
    assert!((0..8).all(|_| lc.pick(None) == Some(3)));
    assert_eq!(LeastConnections::<AtomicU64>::new(vec![]).pick(None), None);
}

proptest! {
    #[test]
    fn least_connections_never_picks_a_busier_member(
        loads in prop::collection::vec(0u64..20, 1..40),
        ops in prop::collection::vec((any::<bool>(), 0usize..40), 0..200),
    ) {
        let loads: Vec<AtomicU64> = loads.into_iter().map(AtomicU64::new).collect();
        let lc = LeastConnections::new(loads.iter().collect());
        for (complete, which) in ops {
            // Either a message completes somewhere, or one is routed.
            if complete {
                let l = &loads[which % loads.len()];
                let v = l.load(std::sync::atomic::Ordering::Relaxed);
                l.store(v.saturating_sub(1), std::sync::atomic::Ordering::Relaxed);
            } else {
                let picked = lc.pick(None).unwrap();
                let min = lc.loads().into_iter().min().unwrap();
                prop_assert_eq!(lc.loads()[picked], min);
                loads[picked].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
}

// ---- smooth weighted round-robin ----

/// nginx's algorithm, step by step, as the reference model.
fn nginx_model(weights: &[u32], picks: usize) -> Vec<u32> {
    let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::new();
    for _ in 0..picks {
        let mut best: Option<usize> = None;
        for i in 0..weights.len() {
            current[i] += i64::from(weights[i]);
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        let b = best.unwrap();
        current[b] -= total;
        out.push(b as u32);
    }
    out
}

#[test]
fn weighted_spreads_picks_like_nginx() {
    let w = SmoothWeighted::new(&[5, 1, 1]).unwrap();
    let picks: Vec<usize> = (0..14).map(|_| w.pick(None).unwrap()).collect();
    assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0]);
}

#[test]
fn weighted_refuses_bad_weights() {
    assert_eq!(
        SmoothWeighted::new(&[3, 0]).unwrap_err(),
        RoutingError::ZeroWeight { member: 1 }
    );
    // Co-prime large weights make a cycle too long to precompute.
    let err = SmoothWeighted::new(&[u32::MAX, u32::MAX - 1]).unwrap_err();
    assert!(
        matches!(err, RoutingError::WeightCycleTooLong { members: 2, .. }),
        "{err:?}"
    );
    assert_eq!(SmoothWeighted::new(&[]).unwrap().pick(None), None);
}

#[test]
fn weighted_divides_weights_by_their_gcd() {
    let big = SmoothWeighted::new(&[500, 100, 100]).unwrap();
    let small = SmoothWeighted::new(&[5, 1, 1]).unwrap();
    assert_eq!(big.cycle(), small.cycle());
    assert_eq!(big.cycle().len(), 7);
}

proptest! {
    #[test]
    fn weighted_proportions_are_exact_over_each_cycle(weights in prop::collection::vec(1u32..30, 1..12)) {
        let w = SmoothWeighted::new(&weights).unwrap();
        let g = weights.iter().fold(0u32, |g, &x| gcd_u32(g, x));
        let cycle: usize = weights.iter().map(|&x| (x / g) as usize).sum();
        for _ in 0..3 {
            let mut counts = vec![0u32; weights.len()];
            for _ in 0..cycle {
                counts[w.pick(None).unwrap()] += 1;
            }
            for (i, &c) in counts.iter().enumerate() {
                prop_assert_eq!(c, weights[i] / g, "member {} over a cycle", i);
            }
        }
    }

    #[test]
    fn weighted_is_the_nginx_sequence(weights in prop::collection::vec(1u32..20, 1..10)) {
        let w = SmoothWeighted::new(&weights).unwrap();
        let total: usize = weights.iter().map(|&x| x as usize).sum();
        let picks: Vec<u32> = (0..2 * total).map(|_| w.pick(None).unwrap() as u32).collect();
        prop_assert_eq!(picks, nginx_model(&weights, 2 * total));
    }

    /// No bursts: after any number of picks `k`, no member is a whole pick
    /// ahead of its exact share `k * w / W`, and none is `n - 1` picks
    /// behind. These are the smooth algorithm's bounds: its current weights
    /// `k * w_i - c_i * W` sum to zero and each stays above `-W` (the pick
    /// is the largest, which is at least `W / n`, before `W` is taken off),
    /// so each also stays below `(n - 1) * W`. (Being behind by a whole
    /// pick does happen: weights [29, 1, 8, 17, 32, 29] leave member 5 at
    /// 9 picks after 40, its share being 10.)
    #[test]
    fn weighted_never_runs_ahead_by_a_whole_pick(weights in prop::collection::vec(1u32..40, 1..12)) {
        let w = SmoothWeighted::new(&weights).unwrap();
        let total: u64 = weights.iter().map(|&x| u64::from(x)).sum();
        let n = weights.len() as u64;
        let mut counts = vec![0u64; weights.len()];
        for k in 1..=2 * total {
            counts[w.pick(None).unwrap()] += 1;
            for (i, &c) in counts.iter().enumerate() {
                let ideal = k * u64::from(weights[i]);
                // ahead:  c - k*w/W < 1        <=>  c*W < k*w + W
                prop_assert!(c * total < ideal + total,
                    "member {} is a pick ahead: {} picks after {} (weights {:?})", i, c, k, weights);
                // behind: k*w/W - c < n - 1    <=>  k*w < c*W + (n-1)*W   (trivial for n = 1)
                prop_assert!(n == 1 || ideal < c * total + (n - 1) * total,
                    "member {} is {} picks behind after {} (weights {:?})", i, n - 1, k, weights);
            }
        }
    }
}

fn gcd_u32(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd_u32(b, a % b) }
}

// ---- consistent hashing ----

#[test]
fn ring_refuses_bad_input() {
    assert_eq!(HashRing::new(&["a"], 0).unwrap_err(), RoutingError::ZeroVirtualNodes);
    assert_eq!(
        HashRing::new(&["a", "b", "a"], 4).unwrap_err(),
        RoutingError::DuplicateName("a".into())
    );
    assert!(matches!(
        HashRing::new(&names(1000), 1 << 20).unwrap_err(),
        RoutingError::RingTooLarge { .. }
    ));
    let empty = HashRing::new::<&str>(&[], 160).unwrap();
    assert_eq!(empty.lookup(&RoutingKey::new("x")), None);
    assert_eq!(empty.pick(None), None);
}

#[test]
fn ring_maps_a_key_to_the_same_member_while_membership_is_unchanged() {
    let members = names(10);
    let ring = HashRing::new(&members, 160).unwrap();
    assert_eq!(ring.points(), 1600);
    let again = HashRing::new(&members, 160).unwrap();
    for key in keys(10_000) {
        let m = ring.lookup(&key).unwrap();
        assert_eq!(ring.lookup(&key), Some(m));
        assert_eq!(again.lookup(&key), Some(m), "a rebuilt ring agrees");
    }
}

#[test]
fn ring_ownership_does_not_depend_on_member_order() {
    let members = names(12);
    let mut reversed = members.clone();
    reversed.reverse();
    let k = keys(5000);
    assert_eq!(owners(&members, 40, &k), owners(&reversed, 40, &k));
}

#[test]
fn ring_spreads_keys_roughly_evenly() {
    let members = names(10);
    let k = keys(100_000);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for o in owners(&members, 160, &k) {
        *counts.entry(o).or_default() += 1;
    }
    // 160 virtual nodes: each member's share is within 30% of 1/10.
    for (m, c) in counts {
        assert!((7_000..=13_000).contains(&c), "{m} owns {c} of 100k keys");
    }
}

#[test]
fn keyless_ring_picks_go_round_robin() {
    let ring = HashRing::new(&names(3), 8).unwrap();
    let picks: Vec<usize> = (0..6).map(|_| ring.pick(None).unwrap()).collect();
    assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
}

/// A linear search of all points: the reference for the indexed lookup.
fn naive_lookup(members: &[String], virtual_nodes: u32, hash: u64) -> usize {
    let mut points: Vec<(u64, u64, usize)> = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let id = xxhash_rust::xxh3::xxh3_64(m.as_bytes());
        for v in 0..virtual_nodes {
            points.push((xxhash_rust::xxh3::xxh3_64_with_seed(m.as_bytes(), u64::from(v)), id, i));
        }
    }
    points.sort_unstable();
    points.iter().find(|p| p.0 >= hash).unwrap_or(&points[0]).2
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn indexed_lookup_agrees_with_a_linear_search(
        n in 1usize..30,
        virtual_nodes in 1u32..50,
        hashes in prop::collection::vec(any::<u64>(), 1..200),
    ) {
        let members = names(n);
        let ring = HashRing::new(&members, virtual_nodes).unwrap();
        for h in hashes.into_iter().chain([0, u64::MAX]) {
            prop_assert_eq!(ring.lookup_hash(h).unwrap(), naive_lookup(&members, virtual_nodes, h));
        }
    }

    /// Adding a member moves keys only onto it, and about 1/(N+1) of them:
    /// at most 1.5x that share plus 1% of the keys (10k keys, 160 virtual
    /// nodes, so the new member's share has a relative spread of ~8%).
    #[test]
    fn adding_a_member_moves_only_its_share_onto_it(n in 1usize..24, seed in any::<u32>()) {
        let before: Vec<String> = (0..n).map(|i| format!("node-{seed}-{i}")).collect();
        let mut after = before.clone();
        after.push(format!("node-{seed}-new"));
        let k = keys(10_000);
        let a = owners(&before, 160, &k);
        let b = owners(&after, 160, &k);
        let mut moved = 0usize;
        for (x, y) in a.iter().zip(&b) {
            if x != y {
                prop_assert_eq!(*y, after[n].as_str(), "a key moved between old members");
                moved += 1;
            }
        }
        let share = k.len() as f64 / (n + 1) as f64;
        prop_assert!((moved as f64) <= 1.5 * share + 100.0, "moved {} keys, share {}", moved, share);
    }

    /// Removing a member moves exactly its keys, and nothing else.
    #[test]
    fn removing_a_member_moves_only_its_keys(n in 2usize..24, removed in any::<prop::sample::Index>()) {
        let before = names(n);
        let gone = removed.index(n);
        let after: Vec<String> = before.iter().enumerate().filter(|(i, _)| *i != gone).map(|(_, m)| m.clone()).collect();
        let k = keys(5_000);
        let a = owners(&before, 64, &k);
        let b = owners(&after, 64, &k);
        for (x, y) in a.iter().zip(&b) {
            if *x == before[gone] {
                prop_assert_ne!(*y, before[gone].as_str());
            } else {
                prop_assert_eq!(x, y, "a key of a remaining member moved");
            }
        }
    }
}

// ---- the enum ----

#[test]
fn strategy_build_dispatches_on_the_configured_kind() {
    let loads: Vec<AtomicU64> = (0..3).map(|_| AtomicU64::new(0)).collect();
    let members = |w: [u32; 3]| -> Vec<StrategyMember<'_, &AtomicU64>> {
        ["a", "b", "c"]
            .into_iter()
            .zip(w)
            .zip(&loads)
            .map(|((name, weight), load)| StrategyMember { name, weight, load })
            .collect()
    };
    for kind in [
        RoutingStrategyKind::RoundRobin,
        RoutingStrategyKind::LeastConnections,
        RoutingStrategyKind::Weighted,
        RoutingStrategyKind::ConsistentHash,
    ] {
        let s = Strategy::build(kind, members([1, 2, 3]), 16).unwrap();
        assert_eq!(s.kind(), kind);
        assert_eq!(s.len(), 3);
        assert!(s.pick(Some(&RoutingKey::new("k"))).unwrap() < 3);
    }
    assert_eq!(
        Strategy::build(RoutingStrategyKind::Weighted, members([1, 0, 1]), 16).unwrap_err(),
        RoutingError::ZeroWeight { member: 1 }
    );
}

#[test]
fn check_refuses_exactly_what_build_refuses() {
    let weights: [&[u32]; 5] = [&[5, 1, 1], &[3, 0], &[u32::MAX, u32::MAX - 1], &[], &[u32::MAX; 3]];
    for w in weights {
        assert_eq!(SmoothWeighted::check(w), SmoothWeighted::new(w).map(|_| ()), "{w:?}");
    }
    let rings: [(Vec<String>, u32); 4] = [
        (names(3), 160),
        (names(2), 0),
        (vec!["a".into(), "a".into()], 4),
        (names(1000), 1 << 20),
    ];
    for (members, vnodes) in &rings {
        assert_eq!(
            HashRing::check(members, *vnodes),
            HashRing::new(members, *vnodes).map(|_| ())
        );
        let members: Vec<StrategyMember<'_, AtomicU64>> = members
            .iter()
            .map(|name| StrategyMember {
                name,
                weight: 1,
                load: AtomicU64::new(0),
            })
            .collect();
        assert_eq!(
            Strategy::check(RoutingStrategyKind::ConsistentHash, &members, *vnodes),
            HashRing::check(&names_of(&members), *vnodes)
        );
    }
}

fn names_of<'a>(members: &[StrategyMember<'a, AtomicU64>]) -> Vec<&'a str> {
    members.iter().map(|m| m.name).collect()
}
