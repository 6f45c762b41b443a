//! The `[scheduler]` and `[quotas]` sections configure both actors, which
//! run supervised under a node and are reached by name; the keeper keeps
//! its usage under the node's data directory.

use std::time::Duration;

use nexus_swarm::actors::quota_keeper::{QuotaError, QuotaKeeper, QuotaKeeperArgs};
use nexus_swarm::actors::scheduler::{
    AllocationStrategy, Decision, Notifier, RequestId, ResourceRequest, Scheduler, SchedulerArgs,
};
use nexus_swarm::runtime::prelude::*;

const TIMEOUT: Duration = Duration::from_secs(5);

const CONFIG: &str = r#"
[scheduler]
strategy = "best_fit"

[[scheduler.pools]]
name = "large"
capacity = { cpu = 8000, memory = 17179869184 }

[[scheduler.pools]]
name = "small"
capacity = { cpu = 2000, memory = 4294967296 }
max = { cpu = 4000 }
step = { cpu = 1000 }

[[quotas.quotas]]
id = "acme-agent"
parent = "acme"
kind = "llm_requests"
limit = 2
borrow_ceiling = 1

[[quotas.quotas]]
id = "system"
kind = "llm_requests"
limit = 100

[[quotas.quotas]]
id = "acme"
parent = "system"
kind = "llm_requests"
limit = 10
"#;

#[tokio::test]
async fn scheduler_and_quota_keeper_start_from_config_under_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = NexusConfig::from_toml_str(CONFIG).unwrap();
    config.node.data_dir = dir.path().to_path_buf();
    let node = Node::start(config.clone()).await.unwrap();
    let quotas = QuotaKeeper::start(
        &node,
        "node-quota-keeper",
        QuotaKeeperArgs::from_config(&config).unwrap(),
    )
    .await
    .unwrap();
    let scheduler = Scheduler::start(
        &node,
        "node-scheduler",
        SchedulerArgs::from_config(&config.scheduler).unwrap(),
    )
    .await
    .unwrap();
    let children: Vec<String> = node.system_children().await.into_iter().map(|c| c.name).collect();
    assert!(children.contains(&"node-quota-keeper".to_string()));
    assert!(children.contains(&"node-scheduler".to_string()));

    // The quota tree came from the file (its parents listed after the leaf).
    for _ in 0..3 {
        quotas.try_consume("acme-agent", 1).unwrap();
    }
    assert!(matches!(
        quotas.try_consume("acme-agent", 1),
        Err(QuotaError::Exhausted { .. })
    ));
    let tree = quotas.tree();
    assert_eq!(tree[0].quota.id.as_str(), "system");
    assert_eq!(tree[0].children[0].children[0].quota.borrowed, 1);

    // Best fit: a small request goes to the small pool; one it cannot hold
    // grows it by a step.
    let cpu = |m| ResourceVector::new().with(ResourceKind::Cpu, m);
    let placed = |d: Decision| match d {
        Decision::Allocated(g) => g.pool.to_string(),
        other => panic!("{other:?}"),
    };
    let d = scheduler
        .request(ResourceRequest::new(1, "a", cpu(1500)), Notifier::ignore())
        .await
        .unwrap();
    assert_eq!(placed(d), "small");
    scheduler.set_strategy(AllocationStrategy::Priority).await.unwrap();
    let d = scheduler
        .request(
            ResourceRequest::new(2, "a", cpu(1000)).pool("small"),
            Notifier::ignore(),
        )
        .await
        .unwrap();
    assert_eq!(placed(d), "small");
    let pools = scheduler.pools().await.unwrap();
    assert_eq!(pools[1].capacity.get(&ResourceKind::Cpu), 3000);
    assert_eq!(scheduler.release(RequestId(2), "a").await.unwrap(), cpu(1000));
    assert_eq!(
        scheduler.pools().await.unwrap()[1].capacity.get(&ResourceKind::Cpu),
        2000
    );

    node.shutdown(TIMEOUT).await;
    assert!(quotas.actor().is_none());
    assert!(matches!(quotas.flush().await, Err(QuotaError::Unavailable)));

    // The keeper wrote its usage when the node shut it down: a keeper
    // started again from the same configuration resumes it.
    drop((quotas, node));
    let again = QuotaKeeperArgs::from_config(&config).unwrap();
    assert_eq!(again.handle().report("acme-agent").unwrap().current, 3);
    assert_eq!(again.handle().report("system").unwrap().current, 3);
}
