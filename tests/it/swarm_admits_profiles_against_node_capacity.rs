//! Agents' declared resources take effect: spawning through a `Swarm` asks
//! the scheduler for the profile's requests in the node's capacity. With 4
//! CPUs, four agents of 1 CPU start and a fifth is refused (or waits, per
//! `node.admission_wait`, saying why, and starts once one stops); stopping
//! an agent gives its CPU back, a restart does not take it twice; a pool is
//! admitted whole or not at all; a guaranteed agent preempts a best-effort
//! one, which gets its notice and is stopped after the grace period.

use std::time::Duration;

use nexus_swarm::actors::swarm::{AGENT_POOL, AdmissionStatus, Refusal, Swarm, SwarmError};
use nexus_swarm::prelude::*;
use nexus_swarm::runtime::resources::ResourceKind::Cpu;
use nexus_swarm::runtime::spawn::Preemption;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(20);

/// An agent that declares `profile`, answers pings, panics on request and
/// reports its preemption notice.
struct Declared {
    profile: ResourceProfile,
    notices: Option<mpsc::UnboundedSender<Preemption>>,
}

enum Msg {
    Ping(Reply<u32>),
    Panic,
}

impl Declared {
    fn cpu(millicores: u64, qos: QosClass) -> Self {
        let requests = ResourceVector::new().with(Cpu, millicores);
        let profile = match qos {
            QosClass::Guaranteed => ResourceProfile::guaranteed(requests),
            other => ResourceProfile {
                requests,
                limits: ResourceVector::new(),
                qos: other,
            },
        };
        Self { profile, notices: None }
    }

    fn reporting(mut self, tx: mpsc::UnboundedSender<Preemption>) -> Self {
        self.notices = Some(tx);
        self
    }
}

impl Agent for Declared {
    type Msg = Msg;
    type State = ();

    fn profile(&self) -> ResourceProfile {
        self.profile.clone()
    }

    async fn init(&self, _ctx: &AgentContext<Msg>) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn handle(&self, ctx: &AgentContext<Msg>, msg: Msg, _: &mut ()) -> Result<(), HandlerError> {
        match msg {
            Msg::Ping(reply) => reply.send(ctx.restarts()),
            Msg::Panic => panic!("asked to"),
        }
        Ok(())
    }

    async fn on_preempt(&self, ctx: &AgentContext<Msg>, _: &mut (), notice: &Preemption) {
        assert_eq!(ctx.preemption(), Some(notice), "the context carries the notice");
        if let Some(tx) = &self.notices {
            let _ = tx.send(notice.clone());
        }
    }
}

fn config(dir: &std::path::Path, admission_wait: Duration) -> NexusConfig {
    let mut config = NexusConfig::default();
    config.node.data_dir = dir.to_path_buf();
    config.node.capacity = [("cpu".to_string(), 4000), ("memory".to_string(), 1 << 30)].into();
    config.node.admission_wait = admission_wait;
    config.node.preemption_grace = Duration::from_millis(300);
    config
}

async fn free_cpu(swarm: &Swarm) -> u64 {
    let pools = swarm.scheduler().pools().await.unwrap();
    let pool = pools.iter().find(|p| p.id.as_str() == AGENT_POOL).unwrap();
    pool.available.get(&Cpu)
}

async fn until<F: std::future::Future<Output = bool>>(what: &str, mut cond: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn ping(agent: &AgentRef<Msg>) -> Result<u32, AskError> {
    agent.ask(Msg::Ping, Priority::Normal, Duration::from_secs(5)).await
}

#[tokio::test]
async fn four_of_one_cpu_fit_in_four_the_fifth_is_refused_and_a_stop_makes_room() {
    let dir = tempfile::tempdir().unwrap();
    let swarm = Swarm::start(config(dir.path(), Duration::ZERO)).await.unwrap();
    let mut agents = Vec::new();
    for i in 0..4 {
        let a = swarm
            .spawn_agent(&format!("a{i}"), Declared::cpu(1000, QosClass::Guaranteed))
            .await
            .unwrap();
        assert_eq!(ping(&a).await.unwrap(), 0);
        agents.push(a);
    }
    assert_eq!(free_cpu(&swarm).await, 0);

    let err = swarm
        .spawn_agent("a4", Declared::cpu(1000, QosClass::Guaranteed))
        .await
        .unwrap_err();
    let SwarmError::NotAdmitted { name, refusal } = &err else {
        panic!("{err}")
    };
    assert_eq!(name, "a4");
    let Refusal::Insufficient { shortfall, holders } = refusal else {
        panic!("{err}")
    };
    assert_eq!(
        (shortfall[0].kind.clone(), shortfall[0].requested, shortfall[0].free),
        (Cpu, 1000, 0)
    );
    let mut names: Vec<&str> = holders.iter().map(|h| h.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["a0", "a1", "a2", "a3"]);
    assert!(
        err.to_string().contains("1000 millicores cpu requested, 0 free"),
        "{err}"
    );
    // Refused means not started: the name is free and nothing runs under it.
    assert!(swarm.node().children().await.iter().all(|c| c.name != "a4"));
    assert!(swarm.admission("a4").await.is_none());

    // A request the node can never hold says so.
    let err = swarm
        .spawn_agent("huge", Declared::cpu(5000, QosClass::Guaranteed))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            SwarmError::NotAdmitted {
                refusal: Refusal::NeverFits { .. },
                ..
            }
        ),
        "{err}"
    );

    // A restart keeps the allocation: not released, not taken twice.
    agents[0].try_send(Msg::Panic, Priority::Normal).unwrap();
    until("a0 restarts", || {
        let a = agents[0].clone();
        async move { ping(&a).await.is_ok_and(|r| r == 1) }
    })
    .await;
    assert_eq!(free_cpu(&swarm).await, 0);
    assert_eq!(swarm.scheduler().allocations().await.unwrap().len(), 4);
    assert!(matches!(
        swarm.admission("a0").await,
        Some(AdmissionStatus::Admitted { granted, qos: QosClass::Guaranteed }) if granted.get(&Cpu) == 1000
    ));

    // Stopping one gives its CPU back, and the fifth fits.
    agents[1].stop();
    until("a1's CPU is released", || async { free_cpu(&swarm).await == 1000 }).await;
    assert!(swarm.admission("a1").await.is_none());
    let fifth = swarm
        .spawn_agent("a4", Declared::cpu(1000, QosClass::Guaranteed))
        .await
        .unwrap();
    assert_eq!(ping(&fifth).await.unwrap(), 0);
    assert_eq!(free_cpu(&swarm).await, 0);
    swarm.shutdown(WAIT).await;
}

#[tokio::test]
async fn a_spawn_that_does_not_fit_waits_saying_why_and_starts_when_one_stops() {
    let dir = tempfile::tempdir().unwrap();
    let swarm = Swarm::start(config(dir.path(), Duration::from_secs(15))).await.unwrap();
    let mut agents = Vec::new();
    for i in 0..4 {
        agents.push(
            swarm
                .spawn_agent(&format!("w{i}"), Declared::cpu(1000, QosClass::Guaranteed))
                .await
                .unwrap(),
        );
    }
    // A spawn abandoned while it waits leaves no reservation behind.
    let abandoned = {
        let swarm = swarm.clone();
        tokio::spawn(async move {
            swarm
                .spawn_agent("gave-up", Declared::cpu(1000, QosClass::Guaranteed))
                .await
        })
    };
    until("the abandoned spawn waits", || async {
        swarm.scheduler().waiting().await.unwrap().len() == 1
    })
    .await;
    abandoned.abort();
    until("its reservation is withdrawn", || async {
        swarm.scheduler().waiting().await.unwrap().is_empty() && swarm.admission("gave-up").await.is_none()
    })
    .await;

    let waiting = {
        let swarm = swarm.clone();
        tokio::spawn(async move {
            swarm
                .spawn_agent("late", Declared::cpu(1000, QosClass::Guaranteed))
                .await
        })
    };
    until("the late agent waits", || async {
        matches!(swarm.admission("late").await, Some(AdmissionStatus::Waiting { .. }))
    })
    .await;
    let Some(AdmissionStatus::Waiting {
        requested,
        shortfall,
        holders,
        ..
    }) = swarm.admission("late").await
    else {
        panic!("not waiting")
    };
    assert_eq!(requested.get(&Cpu), 1000);
    assert_eq!((shortfall[0].kind.clone(), shortfall[0].free), (Cpu, 0));
    assert_eq!(holders.len(), 4);
    assert!(!waiting.is_finished());

    agents[2].stop();
    let late = tokio::time::timeout(WAIT, waiting).await.unwrap().unwrap().unwrap();
    assert_eq!(ping(&late).await.unwrap(), 0);
    assert!(matches!(
        swarm.admission("late").await,
        Some(AdmissionStatus::Admitted { .. })
    ));
    swarm.shutdown(WAIT).await;
}

#[tokio::test]
async fn a_pool_is_admitted_whole_or_not_at_all_and_resizes_by_the_difference() {
    let dir = tempfile::tempdir().unwrap();
    let swarm = Swarm::start(config(dir.path(), Duration::ZERO)).await.unwrap();
    // 2,500 free: room for 5 workers of 500, so a pool of 8 is refused whole.
    let hog = swarm
        .spawn_agent("hog", Declared::cpu(1500, QosClass::Guaranteed))
        .await
        .unwrap();
    let err = swarm
        .spawn_pool("eight", 8, Declared::cpu(500, QosClass::Guaranteed))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            SwarmError::NotAdmitted {
                refusal: Refusal::Insufficient { .. },
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(free_cpu(&swarm).await, 2500, "a refused pool holds nothing");
    assert!(
        swarm.node().children().await.iter().all(|c| c.name != "eight"),
        "and runs nothing"
    );
    hog.stop();
    until("the hog's CPU is released", || async { free_cpu(&swarm).await == 4000 }).await;
    let err = swarm
        .spawn_pool("nine", 9, Declared::cpu(500, QosClass::Guaranteed))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            SwarmError::NotAdmitted {
                refusal: Refusal::NeverFits { .. },
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(free_cpu(&swarm).await, 4000);

    let pool = swarm
        .spawn_pool("six", 6, Declared::cpu(500, QosClass::Guaranteed))
        .await
        .unwrap();
    assert_eq!(free_cpu(&swarm).await, 1000);
    // Growing by 3 needs 1500: refused whole, the pool keeps its size.
    let err = swarm.resize_pool(&pool, 9).await.unwrap_err();
    assert!(matches!(err, SwarmError::NotAdmitted { .. }), "{err}");
    assert_eq!(pool.size(), 6);
    assert_eq!(free_cpu(&swarm).await, 1000);
    // Growing by 2 fits exactly.
    assert_eq!(swarm.resize_pool(&pool, 8).await.unwrap(), 8);
    assert_eq!(free_cpu(&swarm).await, 0);
    // Shrinking gives back the difference, across both allocations.
    assert_eq!(swarm.resize_pool(&pool, 3).await.unwrap(), 3);
    assert_eq!(free_cpu(&swarm).await, 2500);
    pool.stop().unwrap();
    until("the pool's CPU is released", || async {
        free_cpu(&swarm).await == 4000
    })
    .await;
    swarm.shutdown(WAIT).await;
}

#[tokio::test]
async fn a_guaranteed_agent_preempts_a_best_effort_one_which_gets_its_notice_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let swarm = Swarm::start(config(dir.path(), Duration::ZERO)).await.unwrap();
    let (tx, mut notices) = mpsc::unbounded_channel();
    let batch = swarm
        .spawn_agent("batch", Declared::cpu(3000, QosClass::BestEffort).reporting(tx))
        .await
        .unwrap();
    let keeper = swarm
        .spawn_agent("keeper", Declared::cpu(1000, QosClass::Guaranteed))
        .await
        .unwrap();
    assert_eq!(free_cpu(&swarm).await, 0);

    let gold = swarm
        .spawn_agent("gold", Declared::cpu(2000, QosClass::Guaranteed))
        .await
        .unwrap();
    let notice = tokio::time::timeout(WAIT, notices.recv()).await.unwrap().unwrap();
    assert_eq!(notice.by, "gold");
    assert_eq!(notice.grace, Duration::from_millis(300));
    assert!(matches!(
        swarm.admission("batch").await,
        Some(AdmissionStatus::Preempted { by, .. }) if by == "gold"
    ));
    until("the preempted agent stops after its grace", || {
        let b = batch.clone();
        async move { b.is_closed() }
    })
    .await;
    until("the swarm forgets it", || async {
        swarm.admission("batch").await.is_none()
    })
    .await;
    // The guaranteed agents are untouched; the best-effort one's CPU went to gold.
    assert_eq!(ping(&keeper).await.unwrap(), 0);
    assert_eq!(ping(&gold).await.unwrap(), 0);
    assert_eq!(free_cpu(&swarm).await, 1000);
    let holders: Vec<String> = swarm
        .scheduler()
        .allocations()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.requester.as_str().to_string())
        .collect();
    assert_eq!(holders.len(), 2, "{holders:?}");
    swarm.shutdown(WAIT).await;
}
