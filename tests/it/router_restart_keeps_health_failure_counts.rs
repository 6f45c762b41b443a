//! A router restarted by its supervisor goes on counting its members'
//! consecutive failed health checks where its predecessor stopped: a
//! member one failure short of ejection is ejected by the next failure
//! after the restart, and an ejected member stays ejected, its count
//! still growing, until it answers again.

use crate::support::router as support;

use std::time::Duration;

use nexus_swarm::actors::router::{MemberId, Router, RouterArgs, RouterHandle, RouterMsg};
use nexus_swarm::runtime::config::RoutingStrategyKind;
use nexus_swarm::runtime::prelude::*;
use ractor::{Actor, ActorRef};
use support::{Msg, Probe, stall, strategy_config};
use tokio::task::JoinHandle;

const TIMEOUT: Duration = Duration::from_secs(5);

fn health_failures(router: &RouterHandle<Msg>, id: MemberId) -> u32 {
    router.metrics().member(id).expect("a member").health_failures
}

/// What a supervisor does when the router fails: the actor stops and a new
/// one starts from the same arguments.
async fn restart(
    (actor, join): (ActorRef<RouterMsg<Msg>>, JoinHandle<()>),
    args: &RouterArgs<Msg>,
) -> (ActorRef<RouterMsg<Msg>>, JoinHandle<()>) {
    actor.stop(None);
    join.await.unwrap();
    Actor::spawn(None, Router::new(), args.clone()).await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn router_restart_keeps_health_failure_counts() {
    let node = Node::start(NexusConfig::default()).await.unwrap();
    let pool = node.spawn_pool("probes", 2, Probe).await.unwrap();
    let workers = pool.members();
    let cfg = strategy_config(RoutingStrategyKind::RoundRobin);
    assert_eq!(cfg.health.unhealthy_threshold, 3);
    let (args, router) = RouterArgs::<Msg>::new("restarted-router", cfg, &node.config().mailbox).unwrap();
    let mut running = Actor::spawn(None, Router::new(), args.clone()).await.unwrap();
    let ids = router.add_pool(&pool).await.unwrap();
    let (flaky, steady) = (ids[1], ids[0]);

    let release = stall(&workers[1]).await;
    for round in 1..=2 {
        let report = router.check_health().await.unwrap();
        assert_eq!(report.failed, [flaky], "round {round}");
        assert!(report.ejected.is_empty(), "round {round}: {report:?}");
    }
    assert_eq!(health_failures(&router, flaky), 2);

    running = restart(running, &args).await;
    assert_eq!(health_failures(&router, flaky), 2, "the count survives the restart");
    assert_eq!(health_failures(&router, steady), 0);
    // Third failure in a row: ejected, though the new router saw only one.
    let report = router.check_health().await.unwrap();
    assert_eq!(report.ejected, [flaky]);
    assert!(!router.metrics().member(flaky).unwrap().healthy);

    // Ejected across a restart: still out of the strategy, still counting.
    running = restart(running, &args).await;
    let report = router.check_health().await.unwrap();
    assert_eq!(report.failed, [flaky]);
    assert!(report.ejected.is_empty(), "an ejected member is not ejected twice");
    assert_eq!(health_failures(&router, flaky), 4);
    for _ in 0..10 {
        assert_eq!(router.try_send(Msg::Hit, Priority::Normal, None).unwrap(), steady);
    }
    assert_eq!(router.metrics().member(flaky).unwrap().ejections, 1);

    // Its first answer re-admits it and clears the count.
    release.notify_one();
    let report = router.check_health().await.unwrap();
    assert_eq!(report.readmitted, [flaky]);
    assert_eq!(health_failures(&router, flaky), 0);

    let (actor, join) = running;
    actor.stop(None);
    join.await.unwrap();
    node.shutdown(TIMEOUT).await;
}
