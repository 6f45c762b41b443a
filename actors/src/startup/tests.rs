use std::sync::atomic::{AtomicU32, Ordering};

use nexus_swarm_runtime::agent::{Agent, AgentContext};
use nexus_swarm_runtime::agent_ref::Reply;
use nexus_swarm_runtime::config::NexusConfig;
use nexus_swarm_runtime::error::HandlerError;
use nexus_swarm_runtime::priority::Priority;
use parking_lot::Mutex as PlMutex;

use crate::swarm::Swarm;

use super::*;

const MS: Duration = Duration::from_millis(1);

/// A start that logs `name+` when it begins and `name-` when it ends.
fn logged(
    log: &Arc<PlMutex<Vec<String>>>,
    name: &'static str,
    takes: Duration,
) -> impl FnOnce() -> BoxFuture<'static, Result<(), ComponentError>> + Send + 'static {
    let log = Arc::clone(log);
    move || {
        Box::pin(async move {
            log.lock().push(format!("{name}+"));
            tokio::time::sleep(takes).await;
            log.lock().push(format!("{name}-"));
            Ok(())
        })
    }
}

#[tokio::test(start_paused = true)]
async fn tiers_start_in_order_and_a_tier_concurrently() {
    let log = Arc::new(PlMutex::new(Vec::new()));
    let mut s = Startup::new(StartupMode::Eager);
    s.component("bg", Tier::Background, logged(&log, "bg", 10 * MS));
    s.component("ess", Tier::Essential, logged(&log, "ess", 10 * MS));
    s.component("c1", Tier::Critical, logged(&log, "c1", 50 * MS));
    s.component("c2", Tier::Critical, logged(&log, "c2", 30 * MS));
    let (report, deferred) = s.run().await.unwrap();
    assert_eq!(*log.lock(), ["c1+", "c2+", "c2-", "c1-", "ess+", "ess-", "bg+", "bg-"]);
    let names: Vec<&str> = report.components.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["c1", "c2", "ess", "bg"]);
    assert_eq!(report.components[0].took, 50 * MS);
    assert_eq!(
        report.total,
        70 * MS,
        "the critical tier takes its slowest, then 10 + 10"
    );
    assert!(report.components.iter().all(|c| c.outcome == Outcome::Started));
    assert_eq!(deferred.wait().await, StartupReport::default(), "eager defers nothing");
}

#[tokio::test(start_paused = true)]
async fn a_slow_component_is_reported_over_its_budget_and_still_started() {
    let log = Arc::new(PlMutex::new(Vec::new()));
    let mut s = Startup::new(StartupMode::Hybrid);
    s.component("slow-critical", Tier::Critical, logged(&log, "a", 150 * MS));
    s.component("fine-essential", Tier::Essential, logged(&log, "b", 499 * MS));
    let (report, _) = s.run().await.unwrap();
    let over: Vec<&str> = report.over_budget().map(|c| c.name.as_str()).collect();
    assert_eq!(over, ["slow-critical"]);
    assert_eq!(report.components[1].outcome, Outcome::Started);
    assert!(report.to_string().contains("over its 100ms budget"), "{report}");
}

#[tokio::test(start_paused = true)]
async fn a_failed_critical_component_fails_the_run_and_nothing_after_it_starts() {
    let log = Arc::new(PlMutex::new(Vec::new()));
    let mut s = Startup::new(StartupMode::Eager);
    s.component("config", Tier::Critical, || async {
        Err::<(), ComponentError>("no such file".into())
    });
    s.component("ok", Tier::Critical, logged(&log, "ok", MS));
    s.component("ledger", Tier::Essential, logged(&log, "ledger", MS));
    let err = s.run().await.unwrap_err();
    assert_eq!((err.name.as_str(), err.error.as_str()), ("config", "no such file"));
    assert_eq!(err.report.components.len(), 2, "the critical tier ran whole");
    assert_eq!(*log.lock(), ["ok+", "ok-"], "the essential tier never started");

    // A failed essential component is reported; the run goes on.
    let mut s = Startup::new(StartupMode::Eager);
    s.component("ledger", Tier::Essential, || async {
        Err::<(), ComponentError>("locked".into())
    });
    s.component("cache", Tier::Background, logged(&log, "cache", MS));
    let (report, _) = s.run().await.unwrap();
    assert_eq!(report.components[0].outcome, Outcome::Failed("locked".into()));
    assert_eq!(report.components[1].outcome, Outcome::Started);
}

#[tokio::test(start_paused = true)]
async fn hybrid_defers_the_background_tier_until_after_the_run() {
    let log = Arc::new(PlMutex::new(Vec::new()));
    let mut s = Startup::new(StartupMode::Hybrid);
    s.component("c", Tier::Critical, logged(&log, "c", MS));
    s.component("bg", Tier::Background, logged(&log, "bg", 3 * 1000 * MS));
    let (report, deferred) = s.run().await.unwrap();
    assert_eq!(report.components.len(), 1);
    assert!(!log.lock().contains(&"bg-".to_string()), "not waited for");
    let background = deferred.wait().await;
    assert_eq!(background.components[0].name, "bg");
    assert_eq!(background.components[0].outcome, Outcome::OverBudget, "3 s against 2 s");
    assert_eq!(log.lock().last().unwrap(), "bg-");
}

#[tokio::test(start_paused = true)]
async fn lazy_components_start_on_first_use_once() {
    let starts = Arc::new(AtomicU32::new(0));
    let mut s = Startup::new(StartupMode::Lazy);
    assert!(s.component("c", Tier::Critical, || async { Ok(()) }).is_none());
    let counted = Arc::clone(&starts);
    let lazy = s
        .component("gateway", Tier::Essential, move || async move {
            counted.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(20 * MS).await;
            Ok(())
        })
        .expect("lazy mode hands back a handle");
    let (report, _) = s.run().await.unwrap();
    assert_eq!(report.components.len(), 1);
    assert!(!lazy.is_started());
    assert_eq!(starts.load(Ordering::Relaxed), 0);
    let (a, b) = tokio::join!(lazy.get(), lazy.get());
    assert_eq!(a, b);
    assert_eq!(a.took, 20 * MS);
    assert_eq!(starts.load(Ordering::Relaxed), 1, "started once for both callers");
    assert!(lazy.is_started());
    assert_eq!(lazy.name(), "gateway");
}

/// Answers 1.
#[derive(Clone)]
struct One;

impl Agent for One {
    type Msg = Reply<u32>;
    type State = ();

    async fn init(&self, _: &AgentContext<Reply<u32>>) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn handle(&self, _: &AgentContext<Reply<u32>>, reply: Reply<u32>, _: &mut ()) -> Result<(), HandlerError> {
        reply.send(1);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_pool_hands_out_started_agents_and_refills() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = NexusConfig::default();
    config.node.data_dir = dir.path().to_path_buf();
    config.scaling.enabled = false;
    let swarm = Swarm::start(config).await.unwrap();
    let pool = WarmPool::start(&swarm, "helper", One, 2, 1).await.unwrap();
    assert_eq!(pool.stats().ready, 2);

    let a = pool.claim().await.unwrap();
    let b = pool.claim().await.unwrap();
    let c = pool.claim().await.unwrap();
    for agent in [&a, &b, &c] {
        assert_eq!(
            agent
                .ask(|r| r, Priority::Normal, Duration::from_secs(5))
                .await
                .unwrap(),
            1
        );
    }
    let stats = pool.stats();
    // The first two were warm; the third found none ready unless a refill
    // had landed already.
    assert!(stats.warm_claims >= 2, "{stats:?}");
    assert_eq!(stats.warm_claims + stats.cold_claims, 3);
    let deadline = Instant::now() + Duration::from_secs(10);
    while pool.stats().ready < 2 {
        assert!(Instant::now() < deadline, "never refilled: {:?}", pool.stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(pool.warm(), 2);
    swarm.shutdown(Duration::from_secs(5)).await;
}
