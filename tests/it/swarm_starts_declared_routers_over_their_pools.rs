//! Routers declared in configuration (`[[routers]]`) start when their pool is
//! spawned through the swarm, route to its workers by the declared strategy,
//! and follow the pool's resizes; asking for one too early, by a wrong name
//! or with the wrong message type is a typed error.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nexus_swarm::actors::swarm::{Swarm, SwarmError};
use nexus_swarm::prelude::*;
use nexus_swarm::runtime::config::RoutingStrategyKind;
use nexus_swarm::runtime::routing::RoutingKey;

const WAIT: Duration = Duration::from_secs(10);

static NEXT_WORKER: AtomicU64 = AtomicU64::new(1);

/// Answers with the id its worker drew at init.
struct Whoami;

impl Agent for Whoami {
    type Msg = Reply<u64>;
    type State = u64;

    async fn init(&self, _ctx: &AgentContext<Self::Msg>) -> Result<u64, HandlerError> {
        Ok(NEXT_WORKER.fetch_add(1, Ordering::Relaxed))
    }

    async fn handle(
        &self,
        _ctx: &AgentContext<Self::Msg>,
        reply: Reply<u64>,
        me: &mut u64,
    ) -> Result<(), HandlerError> {
        reply.send(*me);
        Ok(())
    }
}

fn config(dir: &std::path::Path) -> NexusConfig {
    let text = format!(
        "[node]\ndata_dir = {:?}\n\n[scaling]\nenabled = false\n\n\
         [[routers]]\nname = \"by-key\"\npool = \"workers\"\nstrategy = \"consistent_hash\"\nvirtual_nodes = 64\n\n\
         [[routers]]\nname = \"later\"\npool = \"never-spawned\"\n",
        dir.display().to_string()
    );
    NexusConfig::from_toml_str(&text).expect("valid config")
}

async fn ask(router: &nexus_swarm::actors::RouterHandle<Reply<u64>>, key: &str) -> u64 {
    router
        .ask(|r| r, Priority::Normal, Some(&RoutingKey::new(key)), WAIT)
        .await
        .expect("routed ask answered")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_router_starts_over_its_pool_and_follows_its_resizes() {
    let dir = tempfile::tempdir().unwrap();
    let swarm = Swarm::start(config(dir.path())).await.expect("swarm starts");

    assert!(matches!(
        swarm.router::<Reply<u64>>("by-key"),
        Err(SwarmError::RouterNotStarted { ref pool, .. }) if pool == "workers"
    ));
    assert!(matches!(
        swarm.router::<Reply<u64>>("nope"),
        Err(SwarmError::UnknownRouter(_))
    ));

    let pool = swarm.spawn_pool("workers", 3, Whoami).await.expect("pool spawned");
    let router = swarm
        .router::<Reply<u64>>("by-key")
        .expect("router started with its pool");
    assert_eq!(router.strategy(), RoutingStrategyKind::ConsistentHash);
    assert_eq!(router.members().len(), 3);
    assert!(matches!(
        swarm.router::<String>("by-key"),
        Err(SwarmError::RouterMessageType(_))
    ));

    // Consistent hashing: a key keeps its worker; keys spread over the workers.
    let first = ask(&router, "conversation-1").await;
    for _ in 0..5 {
        assert_eq!(ask(&router, "conversation-1").await, first);
    }
    let mut seen = BTreeSet::new();
    for k in 0..60 {
        seen.insert(ask(&router, &format!("k{k}")).await);
    }
    assert_eq!(seen.len(), 3, "60 keys reach all three workers: {seen:?}");

    // Growing adds the new workers as members; they get traffic.
    swarm.resize_pool(&pool, 5).await.expect("grown");
    assert_eq!(router.members().len(), 5);
    let mut seen = BTreeSet::new();
    for k in 0..100 {
        seen.insert(ask(&router, &format!("k{k}")).await);
    }
    assert_eq!(seen.len(), 5, "100 keys reach all five workers: {seen:?}");

    // Shrinking removes the retired workers; every ask is still answered.
    swarm.resize_pool(&pool, 2).await.expect("shrunk");
    let members = router.members();
    assert_eq!(members.len(), 2);
    let live = pool.members();
    assert!(members.iter().all(|m| live.contains(&m.agent)));
    let mut seen = BTreeSet::new();
    for k in 0..40 {
        seen.insert(ask(&router, &format!("k{k}")).await);
    }
    assert_eq!(seen.len(), 2);

    // The other declared router never started: its pool was never spawned.
    assert!(matches!(
        swarm.router::<Reply<u64>>("later"),
        Err(SwarmError::RouterNotStarted { .. })
    ));
    swarm.shutdown(Duration::from_secs(5)).await;
}

#[test]
fn a_router_declared_twice_is_refused_before_anything_starts() {
    let text = "[[routers]]\nname = \"r\"\npool = \"a\"\n\n[[routers]]\nname = \"r\"\npool = \"b\"\n";
    let err = NexusConfig::from_toml_str(text).unwrap_err();
    assert_eq!(err.field(), "routers[1].name");
}
