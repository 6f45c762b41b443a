//! Under high memory pressure a swarm acts as its `[pressure]` section
//! says: the gateway's memory cache is emptied (its disk tier answers
//! the next repeat), best-effort pools scale in
//! to their minimum first (a burstable pool beside them keeps its size),
//! and at critical, new low-priority LLM requests are refused with a
//! typed error while normal ones still pass. When the pressure falls,
//! every response is released. The samples are given to the swarm's own
//! detector as the monitor gives them (`system/memory`, in permille), so
//! the test does not depend on this machine's memory.

use std::time::Duration;

use nexus_swarm::actors::llm::{GatewayError, LlmRequest, ResponseSource};
use nexus_swarm::actors::pressure::{PressureAction, PressureEvent, ResponseOutcome};
use nexus_swarm::actors::scaler::{GroupSpec, Metric, Trigger};
use nexus_swarm::actors::swarm::Swarm;
use nexus_swarm::prelude::*;
use nexus_swarm::runtime::config::NexusConfig;

/// A worker that does nothing but declare its QoS class.
struct Idle(QosClass);

impl Agent for Idle {
    type Msg = u64;
    type State = ();

    fn profile(&self) -> ResourceProfile {
        match self.0 {
            QosClass::BestEffort => ResourceProfile::best_effort(),
            _ => ResourceProfile::burstable(
                ResourceVector::new().with(ResourceKind::Cpu, 100),
                ResourceVector::new().with(ResourceKind::Cpu, 200),
            ),
        }
    }

    async fn init(&self, _ctx: &AgentContext<u64>) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn handle(&self, _ctx: &AgentContext<u64>, _msg: u64, _: &mut ()) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn config(dir: &std::path::Path) -> NexusConfig {
    let text = format!(
        r#"
[node]
data_dir = {dir:?}

[monitor]
enabled = false

[scaling]
interval = "50ms"

[pressure]
responses = [
  {{ at = "high", resource = "memory", action = "shrink_caches" }},
  {{ at = "high", resource = "memory", action = "shed_best_effort" }},
  {{ at = "critical", resource = "memory", action = "reject_low_priority" }},
]

[[llm.providers]]
id = "sim"
kind = "simulated"
seed = 3
latency_median = "0s"

[[llm.models]]
name = "small"
context_window = 16000
input_price = 1000000
output_price = 2000000
deployments = [{{ provider = "sim" }}]
"#
    );
    NexusConfig::from_toml_str(&text).expect("the configuration is valid")
}

/// Scales only on a queue nobody fills, and never in on its own within
/// the test (an hour's stabilization): any change is the pressure's.
fn spec() -> GroupSpec {
    GroupSpec::default()
        .trigger(Metric::Cpu, None)
        .trigger(Metric::Memory, None)
        .trigger(Metric::QueueWait, None)
        .trigger(
            Metric::QueueLength,
            Some(Trigger {
                threshold: 1000,
                sustain: Duration::ZERO,
            }),
        )
        .workers(1, 8)
        .stabilization(Duration::from_secs(3600))
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn high_memory_pressure_shrinks_caches_sheds_best_effort_first_and_critical_rejects_low_priority() {
    let dir = tempfile::tempdir().unwrap();
    let swarm = Swarm::start(config(dir.path())).await.unwrap();
    let gateway = swarm.gateway().expect("a gateway").clone();
    let pressure = swarm.pressure().expect("a pressure detector").clone();
    let scaler = swarm.scaler().expect("a scaler").clone();
    let mut events = pressure.subscribe();

    let spare = swarm.spawn_pool("spare", 4, Idle(QosClass::BestEffort)).await.unwrap();
    let core = swarm.spawn_pool("core", 4, Idle(QosClass::Burstable)).await.unwrap();
    swarm.autoscale_with(&spare, spec()).await.unwrap();
    swarm.autoscale_with(&core, spec()).await.unwrap();

    let ask = || LlmRequest::user("what is pressure?");
    assert_eq!(gateway.complete(ask()).await.unwrap().source, ResponseSource::Provider);
    assert_eq!(
        gateway.complete(ask()).await.unwrap().source,
        ResponseSource::MemoryCache
    );

    // Memory goes high: the cache is emptied once and the best-effort pool
    // goes to its minimum; the burstable one keeps its size.
    pressure.observe("system/memory", 800);
    pressure.observe("system/memory", 920);
    until("the best-effort pool is at its minimum", || spare.size() == 1).await;
    assert!(scaler.sheds_best_effort());
    assert_eq!(core.size(), 4, "the burstable pool is not shed");
    assert_eq!(
        gateway.complete(ask()).await.unwrap().source,
        ResponseSource::DiskCache,
        "the memory cache was emptied; its disk tier keeps answering"
    );
    // Low priority still passes below critical.
    let mut low = LlmRequest::user("a background question");
    low.priority = Priority::Low;
    low.cacheable = false;
    assert!(gateway.complete(low.clone()).await.is_ok());

    // Critical: new low-priority requests are refused, normal ones pass.
    pressure.observe("system/memory", 970);
    let report = pressure.report().await.unwrap();
    assert_eq!(
        report.engaged,
        [
            PressureAction::ShrinkCaches,
            PressureAction::ShedBestEffort,
            PressureAction::RejectLowPriority
        ]
    );
    match gateway.complete(low.clone()).await {
        Err(GatewayError::Shed { priority }) => assert_eq!(priority, Priority::Low),
        other => panic!("a low-priority request under critical pressure: {other:?}"),
    }
    assert!(gateway.complete(LlmRequest::user("urgent")).await.is_ok());

    // The pressure falls: every response is released; the best-effort
    // pool may grow again by its policy.
    pressure.observe("system/memory", 500);
    let report = pressure.report().await.unwrap();
    assert!(report.engaged.is_empty(), "{report:?}");
    assert!(!scaler.sheds_best_effort());
    assert!(!gateway.rejects_low_priority());
    assert!(gateway.complete(low).await.is_ok());
    assert_eq!(core.size(), 4);

    let mut applied = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let PressureEvent::Response {
            action,
            engaged,
            outcome,
            ..
        } = e
        {
            assert!(
                matches!(outcome, ResponseOutcome::Applied(_)),
                "{action} {engaged}: {outcome:?}"
            );
            applied.push((action, engaged));
        }
    }
    assert_eq!(
        applied,
        [
            (PressureAction::ShrinkCaches, true),
            (PressureAction::ShedBestEffort, true),
            (PressureAction::RejectLowPriority, true),
            (PressureAction::ShrinkCaches, false),
            (PressureAction::ShedBestEffort, false),
            (PressureAction::RejectLowPriority, false),
        ],
        "each action applied once and released once"
    );
    swarm.shutdown(Duration::from_secs(5)).await;
}
