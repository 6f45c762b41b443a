//! Health checks: a member that fails `unhealthy_threshold` consecutive
//! checks is ejected and gets no message; it is re-admitted when it answers
//! again; with consistent hashing its keys go to the next members on the
//! ring and come back.

use crate::support::router as support;

use std::time::Duration;

use nexus_swarm::actors::router::{HealthChange, MemberId, Router, RouterHandle};
use nexus_swarm::runtime::config::{RouterConfig, RoutingStrategyKind};
use nexus_swarm::runtime::prelude::*;
use nexus_swarm::runtime::routing::RoutingKey;
use support::{Msg, hits, router_over_pool, stall, strategy_config};

const TIMEOUT: Duration = Duration::from_secs(5);

async fn eject(router: &RouterHandle<Msg>, member: MemberId) {
    for round in 1..=3 {
        let report = router.check_health().await.unwrap();
        assert_eq!(report.failed, [member]);
        assert_eq!(
            report.ejected.contains(&member),
            round == 3,
            "round {round}: {report:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_ejected_member_gets_no_message_until_it_answers_again() {
    let (node, pool, router) = router_over_pool(RoutingStrategyKind::RoundRobin, 3).await;
    let workers = pool.members();
    let ids: Vec<MemberId> = router.members().iter().map(|m| m.id).collect();
    let release = stall(&workers[1]).await;
    eject(&router, ids[1]).await;

    let m = router.metrics();
    assert!(!m.member(ids[1]).unwrap().healthy);
    assert_eq!(m.member(ids[1]).unwrap().ejections, 1);
    for _ in 0..100 {
        let to = router.send(Msg::Hit, Priority::Normal, None).await.unwrap();
        assert_ne!(to, ids[1], "an ejected member was picked");
    }
    let m = router.metrics();
    assert_eq!(m.member(ids[1]).unwrap().sent, 0);
    assert_eq!(m.member(ids[1]).unwrap().queued, 0);
    assert_eq!(m.member(ids[0]).unwrap().sent + m.member(ids[2]).unwrap().sent, 100);

    // It answers again: one good check re-admits it, and traffic returns.
    release.notify_one();
    let report = router.check_health().await.unwrap();
    assert_eq!(report.readmitted, [ids[1]]);
    let picks: Vec<MemberId> = (0..30)
        .map(|_| router.try_send(Msg::Hit, Priority::Normal, None).unwrap())
        .collect();
    assert_eq!(picks.iter().filter(|&&p| p == ids[1]).count(), 10);
    assert_eq!(hits(&workers[1]).await, 10);
    node.shutdown(TIMEOUT).await;
}

#[tokio::test(start_paused = true)]
async fn with_consistent_hashing_an_ejected_members_keys_move_to_the_next_and_come_back() {
    let (node, pool, router) = router_over_pool(RoutingStrategyKind::ConsistentHash, 5).await;
    let ids: Vec<MemberId> = router.members().iter().map(|m| m.id).collect();
    let keys: Vec<RoutingKey> = (0..5000).map(RoutingKey::from_id).collect();
    let before: Vec<MemberId> = keys.iter().map(|k| router.pick(Some(k)).unwrap()).collect();

    let release = stall(&pool.members()[2]).await;
    eject(&router, ids[2]).await;
    let during: Vec<MemberId> = keys.iter().map(|k| router.pick(Some(k)).unwrap()).collect();
    let mut moved = 0;
    for (b, d) in before.iter().zip(&during) {
        if *b == ids[2] {
            assert_ne!(*d, ids[2]);
            moved += 1;
        } else {
            assert_eq!(b, d, "only the ejected member's keys move");
        }
    }
    assert!(moved > 0);

    release.notify_one();
    assert_eq!(router.check_health().await.unwrap().readmitted, [ids[2]]);
    let after: Vec<MemberId> = keys.iter().map(|k| router.pick(Some(k)).unwrap()).collect();
    assert_eq!(before, after, "every key came back to its member");
    node.shutdown(TIMEOUT).await;
}

#[tokio::test(start_paused = true)]
async fn health_checks_follow_the_seed_schedule() {
    // Seed defaults: every 30 s, 5 s timeout, ejected after 3 failures.
    let cfg = RouterConfig::default();
    assert_eq!(cfg.health.interval, Duration::from_secs(30));
    assert_eq!(cfg.health.timeout, Duration::from_secs(5));
    assert_eq!(cfg.health.unhealthy_threshold, 3);

    let node = Node::start(NexusConfig::default()).await.unwrap();
    let agent = node.spawn_agent("slow", support::Probe).await.unwrap();
    let router = Router::start(&node, "router", strategy_config(RoutingStrategyKind::RoundRobin))
        .await
        .unwrap();
    let id = router.add_member(agent.clone(), 1).await.unwrap();
    let mut events = router.subscribe();
    let start = tokio::time::Instant::now();
    let release = stall(&agent).await;

    let event = tokio::time::timeout(Duration::from_secs(200), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((event.member, event.change), (id, HealthChange::Ejected));
    // Checks at 30, 60 and 90 s, the third failing 5 s later.
    assert_eq!(start.elapsed(), Duration::from_secs(95));

    release.notify_one();
    let event = tokio::time::timeout(Duration::from_secs(200), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((event.member, event.change), (id, HealthChange::Readmitted));
    assert_eq!(start.elapsed(), Duration::from_secs(120));
    node.shutdown(TIMEOUT).await;
}

#[tokio::test(start_paused = true)]
async fn a_member_found_closed_is_ejected_at_once() {
    let (node, pool, router) = router_over_pool(RoutingStrategyKind::RoundRobin, 2).await;
    let ids: Vec<MemberId> = router.members().iter().map(|m| m.id).collect();
    let mut events = router.subscribe();
    // Shrinking the pool retires (closes) its second worker.
    pool.resize(1).await.unwrap();
    let mut refused = 0;
    for _ in 0..4 {
        if router.try_send(Msg::Hit, Priority::Normal, None).is_err() {
            refused += 1;
        }
    }
    assert!(refused >= 1);
    let event = tokio::time::timeout(TIMEOUT, events.recv()).await.unwrap().unwrap();
    assert_eq!((event.member, event.change), (ids[1], HealthChange::Ejected));
    for _ in 0..10 {
        assert_eq!(router.try_send(Msg::Hit, Priority::Normal, None).unwrap(), ids[0]);
    }
    assert!(router.metrics().member(ids[1]).unwrap().failures >= 1);
    node.shutdown(TIMEOUT).await;
}
