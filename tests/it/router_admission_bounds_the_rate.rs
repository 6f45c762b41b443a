//! Token-bucket admission at the router (seed defaults: 1000 messages/s,
//! burst 100): over a window of paused time t it admits rate x t + burst
//! messages and no more; by priority an empty bucket makes senders wait for
//! their slot or refuses them with when to retry; budgets throttle it.

use crate::support::router as support;

use std::time::Duration;

use nexus_swarm::actors::router::{RouteError, Router, RouterHandle};
use nexus_swarm::runtime::admission::AdmissionError;
use nexus_swarm::runtime::config::{AdmissionPolicy, MailboxConfig, RouterConfig};
use nexus_swarm::runtime::prelude::*;
use nexus_swarm::runtime::usage::RateControl;
use support::{Msg, Probe};

const TIMEOUT: Duration = Duration::from_secs(5);

/// A node whose lanes hold everything a test sends, and a router with the
/// seed admission defaults over two probes.
async fn setup() -> (Node, RouterHandle<Msg>) {
    let config = NexusConfig {
        mailbox: MailboxConfig::default().with_capacity(100_000),
        ..NexusConfig::default()
    };
    let node = Node::start(config).await.unwrap();
    let pool = node.spawn_pool("probes", 2, Probe).await.unwrap();
    let router = Router::start(&node, "router", RouterConfig::default()).await.unwrap();
    router.add_pool(&pool).await.unwrap();
    (node, router)
}

/// Sends with `try_send` as long as it is admitted; returns how many were.
fn send_all_admitted(router: &RouterHandle<Msg>) -> u64 {
    let mut n = 0;
    loop {
        match router.try_send(Msg::Hit, Priority::Normal, None) {
            Ok(_) => n += 1,
            Err(RouteError::Admission { .. }) => return n,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn admits_rate_times_t_plus_burst_over_paused_time_and_no_more() {
    let (node, router) = setup().await;
    let cfg = RouterConfig::default().admission;
    assert_eq!((cfg.rate_per_sec, cfg.burst), (1000, 100));

    let window = Duration::from_secs(3);
    let step = Duration::from_micros(100);
    let start = tokio::time::Instant::now();
    let mut admitted = send_all_admitted(&router);
    assert_eq!(admitted, 100, "a full bucket admits its burst at once");
    while start.elapsed() < window {
        tokio::time::advance(step).await;
        admitted += send_all_admitted(&router);
    }
    assert_eq!(start.elapsed(), window);
    assert_eq!(admitted, 1000 * 3 + 100);

    let m = router.metrics();
    assert_eq!(m.priority(Priority::Normal).admitted, 3100);
    assert!(m.priority(Priority::Normal).rejected > 0);
    assert_eq!(m.members.iter().map(|m| m.sent).sum::<u64>(), 3100);
    node.shutdown(TIMEOUT).await;
}

#[tokio::test(start_paused = true)]
async fn a_rejected_message_comes_back_with_when_to_retry() {
    let (node, router) = setup().await;
    // Default policy for low priority: reject.
    assert_eq!(RouterConfig::default().admission.policy.low, AdmissionPolicy::Reject);
    for _ in 0..100 {
        router.send(Msg::Hit, Priority::Low, None).await.unwrap();
    }
    let err = router.send(Msg::Hit, Priority::Low, None).await.unwrap_err();
    let Some(AdmissionError::RateLimited { priority, retry_after }) = err.admission().copied() else {
        panic!("expected a rate limit, got {err:?}");
    };
    assert_eq!((priority, retry_after), (Priority::Low, Duration::from_millis(1)));
    assert!(matches!(err.into_inner(), Msg::Hit));

    tokio::time::advance(retry_after).await;
    router.send(Msg::Hit, Priority::Low, None).await.unwrap();
    let m = router.metrics().priority(Priority::Low);
    assert_eq!((m.admitted, m.rejected, m.waited), (101, 1, 0));
    node.shutdown(TIMEOUT).await;
}

#[tokio::test(start_paused = true)]
async fn waiting_priorities_wait_for_their_slot_in_order() {
    let (node, router) = setup().await;
    // Default policy for high and normal priority: wait (up to the lane timeout).
    assert_eq!(RouterConfig::default().admission.policy.high, AdmissionPolicy::Wait);
    let start = tokio::time::Instant::now();
    for _ in 0..100 {
        router.send(Msg::Hit, Priority::High, None).await.unwrap();
    }
    assert_eq!(start.elapsed(), Duration::ZERO);
    for i in 1..=20u32 {
        router.send(Msg::Hit, Priority::High, None).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(1) * i);
    }
    let m = router.metrics().priority(Priority::High);
    assert_eq!((m.admitted, m.rejected, m.waited), (120, 0, 20));

    // An ask waits at most until its deadline: refused if the slot is later.
    for _ in 0..100 {
        let _ = router.admission().reserve(Priority::Normal, None);
    }
    let err = router
        .ask(Msg::Count, Priority::Normal, None, Duration::from_millis(10))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("would wait"), "{err}");
    node.shutdown(TIMEOUT).await;
}

#[tokio::test(start_paused = true)]
async fn a_budget_throttles_the_router_and_restores_it() {
    let (node, router) = setup().await;
    send_all_admitted(&router);
    // A budget over its limit scales the rate to a tenth.
    let control: &dyn RateControl = &router;
    control.set_rate_factor(100);
    assert_eq!(router.metrics().admission.rate_factor_permille, 100);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(send_all_admitted(&router), 100);

    control.set_rate_factor(0);
    let err = router.try_send(Msg::Hit, Priority::High, None).unwrap_err();
    assert!(
        matches!(err.admission(), Some(AdmissionError::Suspended { .. })),
        "{err:?}"
    );

    control.set_rate_factor(1000);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(send_all_admitted(&router), 100, "back to 1000/s, bucket full at 100");
    node.shutdown(TIMEOUT).await;
}
