//! A round-robin router gives every member the same number of messages,
//! exactly, in a fixed rotation.

use crate::support::router as support;

use std::collections::HashMap;
use std::time::Duration;

use nexus_swarm::runtime::config::RoutingStrategyKind;
use nexus_swarm::runtime::prelude::*;
use support::{Msg, hits, router_over_pool};

const TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn round_robin_gives_each_member_exactly_the_same_share() {
    let (node, pool, router) = router_over_pool(RoutingStrategyKind::RoundRobin, 4).await;
    let mut picks = Vec::new();
    for _ in 0..400 {
        picks.push(router.send(Msg::Hit, Priority::Normal, None).await.unwrap());
    }
    // A fixed rotation: every window of 4 picks holds each member once.
    for window in picks.chunks(4) {
        let mut w = window.to_vec();
        w.sort();
        w.dedup();
        assert_eq!(w.len(), 4, "{window:?}");
    }
    let mut per_member: HashMap<_, u64> = HashMap::new();
    for p in &picks {
        *per_member.entry(*p).or_default() += 1;
    }
    assert!(per_member.values().all(|&n| n == 100), "{per_member:?}");

    // The agents handled exactly that, and the router counted it.
    for worker in pool.members().iter() {
        assert_eq!(hits(worker).await, 100);
    }
    let metrics = router.metrics();
    assert_eq!(metrics.members.len(), 4);
    for m in &metrics.members {
        assert_eq!((m.sent, m.failures, m.ejections), (100, 0, 0), "{m:?}");
    }
    assert_eq!(metrics.priority(Priority::Normal).admitted, 400);
    node.shutdown(TIMEOUT).await;
}

#[tokio::test]
async fn try_send_and_ask_follow_the_same_rotation() {
    let (node, _pool, router) = router_over_pool(RoutingStrategyKind::RoundRobin, 3).await;
    let mut names = Vec::new();
    for _ in 0..6 {
        names.push(router.ask(Msg::Name, Priority::High, None, TIMEOUT).await.unwrap());
    }
    assert_eq!(names[..3], names[3..]);
    let mut distinct = names[..3].to_vec();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "{names:?}");

    let first: Vec<_> = (0..3)
        .map(|_| router.try_send(Msg::Hit, Priority::Low, None).unwrap())
        .collect();
    let second: Vec<_> = (0..3)
        .map(|_| router.try_send(Msg::Hit, Priority::Low, None).unwrap())
        .collect();
    assert_eq!(first, second);
    node.shutdown(TIMEOUT).await;
}
