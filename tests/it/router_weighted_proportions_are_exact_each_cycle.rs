//! A weighted router gives each member exactly its weight's share over
//! every cycle (sum of the weights), spread out rather than in bursts.

use crate::support::router as support;

use std::collections::HashMap;
use std::time::Duration;

use nexus_swarm::actors::router::{MemberId, Router, RouterError};
use nexus_swarm::runtime::config::RoutingStrategyKind;
use nexus_swarm::runtime::prelude::*;
use nexus_swarm::runtime::routing::RoutingError;
use support::{Msg, Probe, strategy_config};

const TIMEOUT: Duration = Duration::from_secs(5);

fn counts(picks: &[MemberId]) -> HashMap<MemberId, u32> {
    let mut c = HashMap::new();
    for p in picks {
        *c.entry(*p).or_default() += 1;
    }
    c
}

#[tokio::test]
async fn weighted_proportions_match_the_weights_exactly_over_each_cycle() {
    let node = Node::start(NexusConfig::default()).await.unwrap();
    let pool = node.spawn_pool("probes", 3, Probe).await.unwrap();
    let router = Router::start(&node, "weighted", strategy_config(RoutingStrategyKind::Weighted))
        .await
        .unwrap();
    let workers = pool.members();
    let a = router.add_member(workers[0].clone(), 5).await.unwrap();
    let b = router.add_member(workers[1].clone(), 3).await.unwrap();
    let c = router.add_member(workers[2].clone(), 1).await.unwrap();

    let mut picks = Vec::new();
    for _ in 0..9 * 50 {
        picks.push(router.send(Msg::Hit, Priority::Normal, None).await.unwrap());
    }
    for cycle in picks.chunks(9) {
        let n = counts(cycle);
        assert_eq!((n[&a], n[&b], n[&c]), (5, 3, 1), "{cycle:?}");
    }
    // No bursts: the heaviest member never gets more than two in a row.
    let longest_run = picks.chunk_by(|x, y| x == y).map(<[MemberId]>::len).max().unwrap();
    assert!(longest_run <= 2, "longest run {longest_run}");

    // A new weight applies from the next pick on, cycle by cycle.
    router.set_weight(c, 2).await.unwrap();
    let picks: Vec<MemberId> = (0..10 * 20).map(|_| router.pick(None).unwrap()).collect();
    for cycle in picks.chunks(10) {
        let n = counts(cycle);
        assert_eq!((n[&a], n[&b], n[&c]), (5, 3, 2), "{cycle:?}");
    }

    // Bad weights are refused and change nothing.
    assert_eq!(router.set_weight(c, 0).await, Err(RouterError::ZeroWeight));
    assert_eq!(
        router.add_member(workers[0].clone(), 1).await,
        Err(RouterError::AlreadyMember(a))
    );
    assert_eq!(router.members().iter().map(|m| m.weight).collect::<Vec<_>>(), [5, 3, 2]);
    node.shutdown(TIMEOUT).await;
}

/// Weights are checked with every member counted, ejected ones included:
/// a weight whose cycle would be too long once the ejected member is back
/// is refused with a typed error, and re-admission restores the exact
/// proportions.
#[tokio::test(start_paused = true)]
async fn weights_are_checked_with_ejected_members_counted() {
    let (node, pool, router) = support::router_over_pool(RoutingStrategyKind::Weighted, 2).await;
    let ids: Vec<MemberId> = router.members().iter().map(|m| m.id).collect();
    let release = support::stall(&pool.members()[1]).await;
    for _ in 0..3 {
        router.check_health().await.unwrap();
    }
    assert!(!router.metrics().member(ids[1]).unwrap().healthy);

    for id in &ids {
        assert!(
            matches!(
                router.set_weight(*id, u32::MAX).await,
                Err(RouterError::Routing(RoutingError::WeightCycleTooLong {
                    members: 2,
                    ..
                }))
            ),
            "weight of {id} accepted"
        );
    }
    let extra = node.spawn_pool("extra", 1, Probe).await.unwrap();
    assert!(matches!(
        router.add_member(extra.members()[0].clone(), u32::MAX).await,
        Err(RouterError::Routing(RoutingError::WeightCycleTooLong {
            members: 3,
            ..
        }))
    ));

    release.notify_one();
    assert_eq!(router.check_health().await.unwrap().readmitted, [ids[1]]);
    let picks: Vec<MemberId> = (0..10).map(|_| router.pick(None).unwrap()).collect();
    let n = counts(&picks);
    assert_eq!((n[&ids[0]], n[&ids[1]]), (5, 5), "{picks:?}");
    node.shutdown(TIMEOUT).await;
}
