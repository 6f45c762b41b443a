//! `nexus run`'s shutdown ([`stop_swarm`]): messages admitted to a pool
//! before the shutdown are all handled and the shutdown is judged clean;
//! a pool still busy at the timeout makes it a failure that names the
//! timeout and the messages each pool left unhandled.

use std::collections::BTreeMap;
use std::time::Duration;

use nexus_swarm::actors::swarm::Swarm;
use nexus_swarm::ops::agents::SpawnedPool;
use nexus_swarm::ops::shutdown::{LedgerCheck, stop_swarm};
use nexus_swarm::prelude::*;

use crate::support::http as support;

use support::TIMEOUT;

fn config(dir: &std::path::Path, pool: &str, latency: &str) -> NexusConfig {
    NexusConfig::from_toml_str(&format!(
        r#"
[node]
data_dir = {:?}

[[run.pools]]
name = "workers"
agent = "{pool}"
size = 2

[[llm.providers]]
id = "sim"
kind = "simulated"
seed = 5
latency_median = "{latency}"

[[llm.models]]
name = "small"
context_window = 16000
input_price = 150000
output_price = 600000
deployments = [{{ provider = "sim" }}]
"#,
        dir.join("data")
    ))
    .unwrap()
}

async fn start(config: &NexusConfig) -> (Swarm, BTreeMap<String, SpawnedPool>) {
    let swarm = Swarm::start(config.clone()).await.unwrap();
    let pool = SpawnedPool::spawn(&swarm, &config.run.pools[0]).await.unwrap();
    (swarm, BTreeMap::from([("workers".to_string(), pool)]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_admitted_before_shutdown_is_handled_and_the_shutdown_is_clean() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "echo", "0s");
    let (swarm, pools) = start(&config).await;
    let pool = &pools["workers"].pool;
    let mut answers = Vec::new();
    for i in 0..400 {
        let (reply, answer) = Reply::channel();
        pool.try_send((format!("m{i}"), reply), Priority::Normal)
            .unwrap_or_else(|_| panic!("message {i} admitted"));
        answers.push(answer);
    }
    let facts = stop_swarm(&swarm, &pools, TIMEOUT, &dir.path().join("data"), Ok(())).await;
    assert_eq!(facts.problems(), Vec::<String>::new(), "{facts:?}");
    assert!(matches!(facts.ledger, LedgerCheck::Intact { .. }));
    assert!(facts.unhandled.iter().all(|(_, n)| *n == 0));
    for (i, answer) in answers.into_iter().enumerate() {
        assert_eq!(answer.await.expect("handled before the swarm stopped"), format!("m{i}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_busy_past_the_timeout_fails_the_shutdown_naming_what_it_left() {
    let dir = tempfile::tempdir().unwrap();
    // Each call takes about 10 s; the shutdown gets 1 s.
    let config = config(dir.path(), "llm-caller", "10s");
    let (swarm, pools) = start(&config).await;
    let pool = &pools["workers"].pool;
    let mut answers = Vec::new();
    for i in 0..6 {
        let (reply, answer) = Reply::channel();
        pool.try_send((format!("question {i}"), reply), Priority::Normal)
            .unwrap_or_else(|_| panic!("message {i} admitted"));
        answers.push(answer);
    }
    let facts = tokio::time::timeout(
        TIMEOUT,
        stop_swarm(&swarm, &pools, Duration::from_secs(1), &dir.path().join("data"), Ok(())),
    )
    .await
    .expect("the shutdown ends at its timeout");
    let problems = facts.problems();
    assert!(
        problems.iter().any(|p| p.contains("timed out after 1s")),
        "{problems:?}"
    );
    let left: usize = facts.unhandled.iter().map(|(_, n)| n).sum();
    assert!(left >= 4, "two workers took one message each at most: {facts:?}");
    assert!(
        problems
            .iter()
            .any(|p| p.contains(&format!("left unhandled (queued at the timeout): workers: {left}"))),
        "{problems:?}"
    );
    drop(answers);
}
