//! A requester's notifier that panics loses its own event only: the
//! scheduler keeps running and other holders still hear of theirs.

use std::time::Duration;

use nexus_swarm::actors::scheduler::{
    AllocationStrategy, Decision, Notifier, PoolSpec, RequestId, ResourceRequest, Scheduler, SchedulerArgs,
    SchedulerCore, SchedulerEvent,
};
use nexus_swarm::runtime::resources::{QosClass, ResourceKind, ResourceVector};

const TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test(start_paused = true)]
async fn a_panicking_notifier_does_not_stop_the_scheduler() {
    let args = SchedulerArgs::new(SchedulerCore::new(AllocationStrategy::Priority, None, 10));
    let (scheduler, _join) = Scheduler::spawn_unsupervised(args).await.unwrap();
    let gpu = |n| ResourceVector::new().with(ResourceKind::Gpu, n);
    scheduler.register_pool(PoolSpec::new("gpus", gpu(2))).await.unwrap();

    let bad = Notifier::new(|_| panic!("a buggy requester"));
    scheduler
        .request(ResourceRequest::new(1, "bad", gpu(1)), bad)
        .await
        .unwrap();
    let (good, mut events) = Notifier::channel();
    scheduler
        .request(ResourceRequest::new(2, "good", gpu(1)), good)
        .await
        .unwrap();

    let urgent = ResourceRequest::new(3, "urgent", gpu(2)).qos(QosClass::Guaranteed);
    let Decision::Allocated(grant) = scheduler.request(urgent, Notifier::ignore()).await.unwrap() else {
        panic!("allocated by preempting both");
    };
    assert_eq!(grant.preempted.len(), 2);
    let event = tokio::time::timeout(TIMEOUT, events.recv()).await.unwrap().unwrap();
    assert!(matches!(event, SchedulerEvent::Preempted(p) if p.id == RequestId(2)));
    assert_eq!(scheduler.release(RequestId(3), "urgent").await.unwrap(), gpu(2));
    assert!(scheduler.allocations().await.unwrap().is_empty());
}
