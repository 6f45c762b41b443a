//! `[[run.pools]]` agent types: an `echo` pool answers with what it is
//! sent; an `llm-caller` pool calls the swarm's LLM gateway as itself (its
//! usage lands in the ledger under the pool's name), and is refused at
//! spawn in a swarm without LLM providers.

use std::time::Duration;

use nexus_swarm::actors::cost_ledger::TimeRange;
use nexus_swarm::actors::swarm::Swarm;
use nexus_swarm::ops::agents::{SpawnPoolError, SpawnedPool};
use nexus_swarm::prelude::*;

use crate::support::http as support;

use support::TIMEOUT;

fn config(dir: &std::path::Path, llm: bool) -> NexusConfig {
    let mut text = format!(
        "[node]\ndata_dir = {:?}\n\n[[run.pools]]\nname = \"echoes\"\nagent = \"echo\"\nsize = 2\n\n\
         [[run.pools]]\nname = \"callers\"\nagent = \"llm-caller\"\nsize = 1\n",
        dir.join("data")
    );
    if llm {
        text.push_str(
            r#"
[[llm.providers]]
id = "sim"
kind = "simulated"
seed = 3
latency_median = "0s"

[[llm.models]]
name = "small"
context_window = 16000
input_price = 150000
output_price = 600000
deployments = [{ provider = "sim" }]
"#,
        );
    }
    NexusConfig::from_toml_str(&text).unwrap()
}

async fn ask(pool: &SpawnedPool, text: &str) -> String {
    let text = text.to_string();
    pool.pool
        .ask(|r| (text, r), Priority::Normal, Duration::from_secs(10))
        .await
        .expect("answered")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_answers_and_llm_caller_spends_as_its_pool() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), true);
    let swarm = Swarm::start(config.clone()).await.unwrap();
    let echoes = SpawnedPool::spawn(&swarm, &config.run.pools[0]).await.unwrap();
    let callers = SpawnedPool::spawn(&swarm, &config.run.pools[1]).await.unwrap();
    assert_eq!(echoes.pool.size(), 2);
    assert_eq!(ask(&echoes, "ping").await, "ping");

    let answer = tokio::time::timeout(TIMEOUT, ask(&callers, "write a haiku"))
        .await
        .unwrap();
    assert!(!answer.is_empty());
    let records = swarm
        .ledger()
        .records(TimeRange::new(0, u64::MAX).unwrap())
        .await
        .unwrap();
    assert!(!records.is_empty(), "the call was recorded");
    assert!(
        records.iter().all(|r| r.meta.scope.agent.as_deref() == Some("callers")),
        "charged to the pool: {records:?}"
    );
    assert_eq!(callers.queued(), 0);
    swarm.shutdown(TIMEOUT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_llm_caller_pool_without_a_gateway_is_refused_at_spawn() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), false);
    let swarm = Swarm::start(config.clone()).await.unwrap();
    let err = SpawnedPool::spawn(&swarm, &config.run.pools[1]).await.unwrap_err();
    assert!(
        matches!(&err, SpawnPoolError::NoGateway(name) if name == "callers"),
        "{err}"
    );
    assert!(err.to_string().contains("[[llm.providers]]"));
    swarm.shutdown(TIMEOUT).await;
}
