//! Consistent hashing through the router: a key keeps its member while
//! membership is unchanged; adding a member moves about 1/(N+1) of the keys,
//! all onto the new member; removing one moves only its own keys.
//!
//! Tolerance: with 160 virtual nodes per member a member's share of the
//! ring deviates from 1/(N+1) by about 1/sqrt(160), i.e. 8% (one standard
//! deviation). Adding one member to N = 10 must move at most 1.25 x
//! 100,000 / 11 = 11,363 of 100,000 keys (about three standard deviations
//! above the expected 9,091), and at least 0.75 x that share (it does take
//! its share).

use crate::support::router as support;

use std::time::Duration;

use nexus_swarm::actors::router::{MemberId, Router, RouterHandle};
use nexus_swarm::runtime::config::RoutingStrategyKind;
use nexus_swarm::runtime::prelude::*;
use nexus_swarm::runtime::routing::RoutingKey;
use support::{Msg, Probe, strategy_config};

const TIMEOUT: Duration = Duration::from_secs(5);
const KEYS: u64 = 100_000;
const N: usize = 10;

fn keys() -> Vec<RoutingKey> {
    (0..KEYS)
        .map(|i| RoutingKey::new(format!("conversation-{i}")))
        .collect()
}

fn owners(router: &RouterHandle<Msg>, keys: &[RoutingKey]) -> Vec<MemberId> {
    keys.iter().map(|k| router.pick(Some(k)).unwrap()).collect()
}

/// A consistent-hash router named `name` over `members` agents; the
/// members are named `shard-{i}` in the ring whatever the router.
async fn ring_router(node: &Node, name: &str, members: usize) -> (RouterHandle<Msg>, Vec<MemberId>) {
    let router = Router::start(node, name, strategy_config(RoutingStrategyKind::ConsistentHash))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..members {
        let agent = node.spawn_agent(&format!("{name}-shard-{i}"), Probe).await.unwrap();
        ids.push(router.add_named_member(agent, format!("shard-{i}"), 1).await.unwrap());
    }
    (router, ids)
}

#[tokio::test]
async fn the_same_key_always_maps_to_the_same_member() {
    let node = Node::start(NexusConfig::default()).await.unwrap();
    let (router, _) = ring_router(&node, "ring", 5).await;
    let keys: Vec<RoutingKey> = (0..300).map(|i| RoutingKey::new(format!("tenant-{i}"))).collect();
    let first = owners(&router, &keys);
    for _ in 0..3 {
        for (key, owner) in keys.iter().zip(&first) {
            assert_eq!(
                router.send(Msg::Hit, Priority::Normal, Some(key)).await.unwrap(),
                *owner
            );
        }
    }
    // A second router naming its members alike maps every key alike.
    let (other, _) = ring_router(&node, "other-ring", 5).await;
    let names = |r: &RouterHandle<Msg>, ids: &[MemberId]| -> Vec<String> {
        let members = r.members();
        ids.iter()
            .map(|id| members.iter().find(|m| m.id == *id).unwrap().name.clone())
            .collect()
    };
    assert_eq!(names(&router, &first), names(&other, &owners(&other, &keys)));
    node.shutdown(TIMEOUT).await;
}

#[tokio::test]
async fn adding_a_member_moves_about_its_share_of_100k_keys_only_onto_it() {
    let node = Node::start(NexusConfig::default()).await.unwrap();
    let (router, _) = ring_router(&node, "ring", N).await;
    let keys = keys();
    let before = owners(&router, &keys);

    let agent = node.spawn_agent("shard-new", Probe).await.unwrap();
    let new = router.add_named_member(agent, "shard-new", 1).await.unwrap();
    let after = owners(&router, &keys);

    let mut moved = 0u64;
    for (b, a) in before.iter().zip(&after) {
        if b != a {
            assert_eq!(*a, new, "a key moved between two old members");
            moved += 1;
        }
    }
    let share = KEYS as f64 / (N + 1) as f64;
    assert!(moved as f64 <= 1.25 * share, "moved {moved} keys, share {share:.0}");
    assert!(moved as f64 >= 0.75 * share, "moved {moved} keys, share {share:.0}");
    node.shutdown(TIMEOUT).await;
}

#[tokio::test]
async fn removing_a_member_moves_only_its_keys() {
    let node = Node::start(NexusConfig::default()).await.unwrap();
    let (router, ids) = ring_router(&node, "ring", N).await;
    let keys = keys();
    let before = owners(&router, &keys);
    let gone = ids[3];
    router.remove_member(gone).await.unwrap();
    let after = owners(&router, &keys);
    let mut moved = 0;
    for (b, a) in before.iter().zip(&after) {
        if *b == gone {
            assert_ne!(*a, gone);
            moved += 1;
        } else {
            assert_eq!(b, a, "a key of a remaining member moved");
        }
    }
    assert!(moved > 0);
    assert!(router.members().iter().all(|m| m.id != gone));
    node.shutdown(TIMEOUT).await;
}
