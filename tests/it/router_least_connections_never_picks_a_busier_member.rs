//! A least-connections router never picks a member with more in flight than
//! another healthy one; asks count until their reply, one-way messages
//! while they are queued.

use crate::support::router as support;

use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use nexus_swarm::actors::router::RouteAskError;
use nexus_swarm::runtime::config::RoutingStrategyKind;
use nexus_swarm::runtime::error::AskError;
use nexus_swarm::runtime::prelude::*;
use support::{Msg, router_over_pool, stall};

const TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn least_connections_never_picks_a_member_with_more_in_flight() {
    let (node, pool, router) = router_over_pool(RoutingStrategyKind::LeastConnections, 3).await;
    let workers = pool.members();
    let mut releases = Vec::new();
    for w in workers.iter() {
        releases.push(stall(w).await);
    }
    // Uneven starting loads, queued behind the stalled handlers.
    for (w, queued) in workers.iter().zip([5, 0, 2]) {
        for _ in 0..queued {
            w.try_send(Msg::Hit, Priority::Normal).unwrap();
        }
    }
    for _ in 0..30 {
        let before = router.metrics();
        let least = before.members.iter().map(|m| m.in_flight).min().unwrap();
        let picked = router.try_send(Msg::Hit, Priority::Normal, None).unwrap();
        let m = before.member(picked).unwrap();
        assert_eq!(
            m.in_flight, least,
            "picked {picked} with {} in flight: {before:?}",
            m.in_flight
        );
    }
    // 37 queued over 3 members, always topping up the least loaded: 13, 12, 12.
    let mut loads: Vec<u64> = router.metrics().members.iter().map(|m| m.in_flight).collect();
    loads.sort();
    assert_eq!(loads, [12, 12, 13]);
    for r in releases {
        r.notify_one();
    }
    node.shutdown(TIMEOUT).await;
}

#[tokio::test]
async fn asks_count_in_flight_until_their_reply_arrives() {
    let (node, pool, router) = router_over_pool(RoutingStrategyKind::LeastConnections, 3).await;
    let mut asks: Vec<_> = (0..6)
        .map(|_| Box::pin(router.ask(Msg::Hold, Priority::Normal, None, TIMEOUT)))
        .collect();
    // Poll each once: admitted, routed, queued; now waiting for its reply.
    for ask in &mut asks {
        assert!(futures::poll!(ask.as_mut()).is_pending());
    }
    let m = router.metrics();
    let per_member: Vec<u64> = m.members.iter().map(|m| m.asks_in_flight).collect();
    assert_eq!(per_member, [2, 2, 2], "{m:?}");

    for w in pool.members().iter() {
        w.try_send(Msg::ReleaseHeld, Priority::Normal).unwrap();
    }
    for ask in asks {
        assert_eq!(ask.await, Ok(0));
    }
    let m = router.metrics();
    assert!(m.members.iter().all(|m| m.asks_in_flight == 0), "{m:?}");
    node.shutdown(TIMEOUT).await;
}

#[tokio::test(start_paused = true)]
async fn an_ask_that_times_out_no_longer_counts() {
    let (node, pool, router) = router_over_pool(RoutingStrategyKind::LeastConnections, 1).await;
    let err = router
        .ask(Msg::Hold, Priority::Normal, None, Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RouteAskError::Ask {
                error: AskError::Deadline(_),
                ..
            }
        ),
        "{err:?}"
    );
    let m = router.metrics();
    assert_eq!((m.members[0].asks_in_flight, m.members[0].failures), (0, 1));

    // A caller that gives up (drops the ask) stops counting too.
    {
        let mut ask = pin!(router.ask(Msg::Hold, Priority::Normal, None, TIMEOUT));
        assert!(matches!(futures::poll!(ask.as_mut()), Poll::Pending));
        assert_eq!(router.metrics().members[0].asks_in_flight, 1);
    }
    assert_eq!(router.metrics().members[0].asks_in_flight, 0);
    pool.members()[0].try_send(Msg::ReleaseHeld, Priority::Normal).unwrap();
    node.shutdown(TIMEOUT).await;
}
