//! A pool full of best-effort allocations; a guaranteed request arrives: it
//! is allocated, and exactly the best-effort holders it needs receive a
//! typed `Preempted` event, the others nothing.

use std::time::Duration;

use nexus_swarm::actors::scheduler::{
    AllocationStrategy, Decision, Notifier, PoolSpec, RequestId, ResourceRequest, Scheduler, SchedulerArgs,
    SchedulerCore, SchedulerEvent,
};
use nexus_swarm::runtime::priority::Priority;
use nexus_swarm::runtime::resources::{QosClass, ResourceKind, ResourceVector};
use tokio::sync::mpsc::error::TryRecvError;

const TIMEOUT: Duration = Duration::from_secs(5);

fn cpu_gpu(cpu: u64, gpu: u64) -> ResourceVector {
    ResourceVector::new()
        .with(ResourceKind::Cpu, cpu)
        .with(ResourceKind::Gpu, gpu)
}

#[tokio::test(start_paused = true)]
async fn guaranteed_request_preempts_only_the_best_effort_it_needs() {
    let args = SchedulerArgs::new(SchedulerCore::new(AllocationStrategy::Priority, None, 100));
    let (scheduler, _join) = Scheduler::spawn_unsupervised(args).await.unwrap();
    scheduler
        .register_pool(PoolSpec::new("gpus", cpu_gpu(8000, 8)))
        .await
        .unwrap();

    // Eight best-effort holders of one GPU each fill the pool; the first
    // four are normal priority, the last four low.
    let mut holders = Vec::new();
    for id in 1..=8u64 {
        let (notifier, events) = Notifier::channel();
        let priority = if id <= 4 { Priority::Normal } else { Priority::Low };
        let req = ResourceRequest::new(id, format!("batch-{id}"), cpu_gpu(1000, 1)).priority(priority);
        let decision = scheduler.request(req, notifier).await.unwrap();
        assert!(matches!(decision, Decision::Allocated(_)), "{decision:?}");
        holders.push(events);
    }

    // A guaranteed request needs three GPUs.
    let (notifier, mut own_events) = Notifier::channel();
    let urgent = ResourceRequest::new(100, "inference", cpu_gpu(2000, 3)).qos(QosClass::Guaranteed);
    let Decision::Allocated(grant) = scheduler.request(urgent, notifier).await.unwrap() else {
        panic!("the guaranteed request is allocated");
    };
    assert_eq!(grant.resources, cpu_gpu(2000, 3));
    // Low priority goes first, most recent first: 8, 7, 6.
    assert_eq!(grant.preempted, vec![RequestId(8), RequestId(7), RequestId(6)]);

    for (i, events) in holders.iter_mut().enumerate() {
        let id = RequestId(i as u64 + 1);
        if grant.preempted.contains(&id) {
            let event = tokio::time::timeout(TIMEOUT, events.recv()).await.unwrap().unwrap();
            let SchedulerEvent::Preempted(p) = event else {
                panic!("expected Preempted, got {event:?}");
            };
            assert_eq!((p.id, p.by, p.pool.as_str()), (id, RequestId(100), "gpus"));
            assert_eq!(p.reclaimed, cpu_gpu(1000, 1));
            assert!(p.remaining.is_empty());
            // The allocation is gone, and with it the scheduler's notifier.
            assert_eq!(events.try_recv().unwrap_err(), TryRecvError::Disconnected);
        } else {
            assert_eq!(
                events.try_recv().unwrap_err(),
                TryRecvError::Empty,
                "holder {id} is told nothing"
            );
        }
    }
    assert_eq!(own_events.try_recv().unwrap_err(), TryRecvError::Empty);

    let pools = scheduler.pools().await.unwrap();
    assert_eq!(pools[0].allocated, cpu_gpu(5000 + 2000, 5 + 3));
    let held: Vec<RequestId> = scheduler
        .allocations()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(held, [1, 2, 3, 4, 5, 100].map(RequestId).to_vec());

    // Preempted holders no longer hold anything; the guaranteed one releases
    // exactly what it was granted.
    assert!(scheduler.release(RequestId(8), "batch-8").await.is_err());
    assert_eq!(
        scheduler.release(RequestId(100), "inference").await.unwrap(),
        cpu_gpu(2000, 3)
    );
}
