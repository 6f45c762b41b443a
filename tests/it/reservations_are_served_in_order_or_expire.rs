//! Reservations wait until their deadline: a release serves them highest
//! priority first, and one whose deadline passes is told `Expired` by the
//! scheduler's own timer (driven here by paused tokio time).

use std::time::Duration;

use nexus_swarm::actors::scheduler::{
    AllocationStrategy, Decision, Notifier, PoolSpec, RejectReason, RequestId, ResourceRequest, Scheduler,
    SchedulerArgs, SchedulerCore, SchedulerError, SchedulerEvent,
};
use nexus_swarm::runtime::priority::Priority;
use nexus_swarm::runtime::resources::{QosClass, ResourceKind, ResourceVector};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

const TIMEOUT: Duration = Duration::from_secs(5);

fn mem(gib: u64) -> ResourceVector {
    ResourceVector::new().with(ResourceKind::Memory, gib << 30)
}

async fn next(events: &mut UnboundedReceiver<SchedulerEvent>) -> SchedulerEvent {
    tokio::time::timeout(TIMEOUT, events.recv()).await.unwrap().unwrap()
}

#[tokio::test(start_paused = true)]
async fn reservations_are_served_in_order_or_expire() {
    let args = SchedulerArgs::new(SchedulerCore::new(AllocationStrategy::Priority, None, 100));
    let (scheduler, _join) = Scheduler::spawn_unsupervised(args).await.unwrap();
    scheduler.register_pool(PoolSpec::new("memory", mem(16))).await.unwrap();
    let holder = ResourceRequest::new(1, "holder", mem(16)).qos(QosClass::Guaranteed);
    assert!(matches!(
        scheduler.request(holder, Notifier::ignore()).await.unwrap(),
        Decision::Allocated(_)
    ));

    let t0 = Instant::now();
    let at = |s| t0 + Duration::from_secs(s);
    let reserve = async |id: u64, gib: u64, priority: Priority, deadline: u64| {
        let (notifier, events) = Notifier::channel();
        let req = ResourceRequest::new(id, format!("r{id}"), mem(gib))
            .priority(priority)
            .deadline(at(deadline))
            .qos(QosClass::Guaranteed);
        assert_eq!(
            scheduler.request(req, notifier).await.unwrap(),
            Decision::Reserved { id: RequestId(id) }
        );
        events
    };
    let mut soon = reserve(2, 4, Priority::High, 10).await;
    let mut low = reserve(3, 8, Priority::Low, 60).await;
    let mut normal = reserve(4, 8, Priority::Normal, 120).await;
    let mut high = reserve(5, 4, Priority::High, 30).await;
    assert_eq!(scheduler.waiting().await.unwrap(), [2, 5, 4, 3].map(RequestId).to_vec());

    // A request that cannot wait is rejected, not queued.
    let impatient = ResourceRequest::new(6, "r6", mem(1));
    assert!(matches!(
        scheduler.request(impatient, Notifier::ignore()).await.unwrap(),
        Decision::Rejected {
            reason: RejectReason::WaitingAhead { .. } | RejectReason::Insufficient,
            ..
        }
    ));

    // Deadline of #2 passes: the timer expires it.
    tokio::time::advance(Duration::from_secs(11)).await;
    assert!(matches!(
        next(&mut soon).await,
        SchedulerEvent::Expired { id: RequestId(2) }
    ));
    assert_eq!(scheduler.waiting().await.unwrap(), [5, 4, 3].map(RequestId).to_vec());

    // Only the holder may release; then high (4) and normal (8) are served,
    // and low (8) no longer fits.
    assert!(matches!(
        scheduler.release(RequestId(1), "r3").await,
        Err(SchedulerError::WrongRequester { .. })
    ));
    assert_eq!(scheduler.release(RequestId(1), "holder").await.unwrap(), mem(16));
    assert!(
        matches!(next(&mut high).await, SchedulerEvent::Allocated(g) if g.id == RequestId(5) && g.resources == mem(4))
    );
    assert!(matches!(next(&mut normal).await, SchedulerEvent::Allocated(g) if g.id == RequestId(4)));
    assert!(low.try_recv().is_err());

    // Low waits until its deadline, then expires.
    tokio::time::advance(Duration::from_secs(50)).await;
    assert!(matches!(
        next(&mut low).await,
        SchedulerEvent::Expired { id: RequestId(3) }
    ));
    assert!(scheduler.waiting().await.unwrap().is_empty());
    assert_eq!(scheduler.pools().await.unwrap()[0].allocated, mem(12));
}

/// Aging alone wakes the scheduler: a low reservation that ages above a
/// best-effort holder preempts it at that aging step, with no release or
/// request to prompt it.
#[tokio::test(start_paused = true)]
async fn an_aged_reservation_is_served_at_its_aging_step() {
    let aging = Duration::from_secs(10);
    let args = SchedulerArgs::new(SchedulerCore::new(AllocationStrategy::Priority, Some(aging), 100));
    let (scheduler, _join) = Scheduler::spawn_unsupervised(args).await.unwrap();
    scheduler.register_pool(PoolSpec::new("memory", mem(16))).await.unwrap();
    let (notifier, mut batch) = Notifier::channel();
    let holder = ResourceRequest::new(1, "batch", mem(16));
    assert!(matches!(
        scheduler.request(holder, notifier).await.unwrap(),
        Decision::Allocated(_)
    ));
    let (notifier, mut low) = Notifier::channel();
    let waiting = ResourceRequest::new(2, "low", mem(16))
        .priority(Priority::Low)
        .deadline(Instant::now() + Duration::from_secs(600));
    assert_eq!(
        scheduler.request(waiting, notifier).await.unwrap(),
        Decision::Reserved { id: RequestId(2) }
    );

    // Two aging steps later it ranks above the normal holder.
    tokio::time::advance(2 * aging).await;
    assert!(
        matches!(next(&mut low).await, SchedulerEvent::Allocated(g) if g.id == RequestId(2) && g.preempted == [RequestId(1)])
    );
    assert!(matches!(next(&mut batch).await, SchedulerEvent::Preempted(p) if p.id == RequestId(1)));
    assert!(scheduler.waiting().await.unwrap().is_empty());
}
