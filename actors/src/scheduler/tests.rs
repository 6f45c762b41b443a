use std::collections::HashMap;
use std::time::Duration;

use nexus_swarm_runtime::priority::Priority;
use nexus_swarm_runtime::resources::ResourceKind::{Cpu, Gpu, Memory};
use nexus_swarm_runtime::resources::{QosClass, ResourceVector};
use proptest::prelude::*;
use tokio::time::Instant;

use super::*;

type Core = SchedulerCore<u64>;

fn cpu(m: u64) -> ResourceVector {
    ResourceVector::new().with(Cpu, m)
}

fn cpu_mem(c: u64, m: u64) -> ResourceVector {
    ResourceVector::new().with(Cpu, c).with(Memory, m)
}

fn core_with(strategy: AllocationStrategy, pools: &[(&str, ResourceVector)], t0: Instant) -> Core {
    let mut core = Core::new(strategy, None, 1000);
    for (id, cap) in pools {
        core.register_pool(PoolSpec::new(*id, cap.clone()), t0).unwrap();
    }
    core
}

fn req(id: u64, who: &str, r: ResourceVector) -> ResourceRequest {
    ResourceRequest::new(id, who, r)
}

/// Everything observable, to check that refused operations change nothing.
fn fingerprint(core: &Core, now: Instant) -> (Vec<PoolReport>, Vec<AllocationReport>, Vec<RequestId>) {
    (core.pools(), core.allocations(), core.waiting(now))
}

fn allocated_event(n: &Notice<u64>) -> Option<RequestId> {
    match &n.event {
        SchedulerEvent::Allocated(g) => Some(g.id),
        _ => None,
    }
}

#[test]
fn allocate_then_release_restores_the_pool_exactly() {
    let t0 = Instant::now();
    let mut core = core_with(AllocationStrategy::Priority, &[("p", cpu_mem(1000, 1 << 30))], t0);
    let before = core.pools();
    let (d, _) = core.request(req(1, "a", cpu_mem(300, 1 << 20)), 1, t0).unwrap();
    let Decision::Allocated(grant) = d else { panic!("{d:?}") };
    assert_eq!((grant.pool.as_str(), &grant.resources), ("p", &cpu_mem(300, 1 << 20)));
    assert_eq!(core.pools()[0].available, cpu_mem(700, (1 << 30) - (1 << 20)));
    let (held, notices) = core.release(RequestId(1), &"a".into(), t0).unwrap();
    assert_eq!(held, cpu_mem(300, 1 << 20));
    assert!(notices.is_empty());
    assert_eq!(core.pools(), before);
}

#[test]
fn requests_that_cannot_fit_are_reserved_or_rejected_with_a_reason() {
    let t0 = Instant::now();
    let mut core = core_with(AllocationStrategy::Priority, &[("p", cpu(1000))], t0);
    core.request(req(1, "a", cpu(800)), 1, t0).unwrap();
    let rejected = |d: Decision| match d {
        Decision::Rejected { reason, .. } => reason,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        rejected(core.request(req(2, "b", cpu(300)), 2, t0).unwrap().0),
        RejectReason::Insufficient
    );
    assert_eq!(
        rejected(
            core.request(req(3, "b", cpu(5000)).deadline(t0 + Duration::from_secs(9)), 3, t0)
                .unwrap()
                .0
        ),
        RejectReason::NeverFits
    );
    assert_eq!(
        rejected(
            core.request(req(4, "b", ResourceVector::new().with(Gpu, 1)), 4, t0)
                .unwrap()
                .0
        ),
        RejectReason::NeverFits
    );
    assert_eq!(
        rejected(core.request(req(5, "b", cpu(1)).deadline(t0), 5, t0).unwrap().0),
        RejectReason::DeadlinePassed
    );
    let (d, _) = core
        .request(req(6, "b", cpu(300)).deadline(t0 + Duration::from_secs(5)), 6, t0)
        .unwrap();
    assert_eq!(d, Decision::Reserved { id: RequestId(6) });
    // A small request that would fit must not overtake the reservation.
    assert_eq!(
        rejected(
            core.request(req(7, "c", cpu(100)).priority(Priority::Low), 7, t0)
                .unwrap()
                .0
        ),
        RejectReason::WaitingAhead { ahead: 1 }
    );
    // One of higher priority may.
    let (d, _) = core
        .request(req(8, "c", cpu(100)).priority(Priority::High), 8, t0)
        .unwrap();
    assert!(matches!(d, Decision::Allocated(_)));

    let mut full = Core::new(AllocationStrategy::Priority, None, 1);
    full.register_pool(PoolSpec::new("p", cpu(10)), t0).unwrap();
    full.request(req(1, "a", cpu(10)), 1, t0).unwrap();
    let later = t0 + Duration::from_secs(1);
    full.request(req(2, "a", cpu(5)).deadline(later), 2, t0).unwrap();
    assert_eq!(
        rejected(full.request(req(3, "a", cpu(5)).deadline(later), 3, t0).unwrap().0),
        RejectReason::QueueFull { max: 1 }
    );
}

#[test]
fn release_serves_reservations_by_priority_then_deadline() {
    let t0 = Instant::now();
    let mut core = core_with(AllocationStrategy::Priority, &[("p", cpu(400))], t0);
    core.request(req(1, "holder", cpu(400)).qos(QosClass::Guaranteed), 1, t0)
        .unwrap();
    let at = |s| t0 + Duration::from_secs(s);
    for (id, prio, deadline) in [
        (10, Priority::Low, 5),
        (11, Priority::Normal, 50),
        (12, Priority::High, 90),
        (13, Priority::Normal, 20),
        (14, Priority::High, 60),
    ] {
        let (d, _) = core
            .request(req(id, "w", cpu(100)).priority(prio).deadline(at(deadline)), id, t0)
            .unwrap();
        assert_eq!(d, Decision::Reserved { id: RequestId(id) });
    }
    assert_eq!(
        core.waiting(t0),
        [14, 12, 13, 11, 10].map(RequestId).to_vec(),
        "high (earliest deadline first), then normal, then low"
    );
    let (_, notices) = core.release(RequestId(1), &"holder".into(), at(1)).unwrap();
    let served: Vec<RequestId> = notices.iter().filter_map(allocated_event).collect();
    assert_eq!(served, [14, 12, 13, 11].map(RequestId).to_vec());
    assert!(notices.iter().all(|n| n.to == allocated_event(n).unwrap().0));
    assert_eq!(core.waiting(at(1)), vec![RequestId(10)]);
}

#[test]
fn a_reservation_past_its_deadline_expires_and_unblocks_the_queue() {
    let t0 = Instant::now();
    let mut core = core_with(AllocationStrategy::Priority, &[("p", cpu(100))], t0);
    core.request(req(1, "a", cpu(60)).qos(QosClass::Guaranteed), 1, t0)
        .unwrap();
    let at = |s| t0 + Duration::from_secs(s);
    // A big high-priority reservation blocks a small low one behind it.
    core.request(req(2, "b", cpu(100)).priority(Priority::High).deadline(at(10)), 2, t0)
        .unwrap();
    core.request(req(3, "c", cpu(30)).priority(Priority::Low).deadline(at(30)), 3, t0)
        .unwrap();
    assert_eq!(core.next_deadline(), Some(at(10)));
    assert!(core.expire(at(9)).is_empty());
    let notices = core.expire(at(10));
    let events: Vec<&SchedulerEvent> = notices.iter().map(|n| &n.event).collect();
    assert!(matches!(events[0], SchedulerEvent::Expired { id: RequestId(2) }));
    assert!(matches!(events[1], SchedulerEvent::Allocated(g) if g.id == RequestId(3)));
    assert_eq!((notices[0].to, notices[1].to), (2, 3));
    assert_eq!(core.next_deadline(), None);
}

#[test]
fn a_reservation_past_its_deadline_is_expired_not_served_late() {
    let t0 = Instant::now();
    let at = |s| t0 + Duration::from_secs(s);
    let mut core = core_with(AllocationStrategy::Priority, &[("p", cpu(100))], t0);
    core.request(req(1, "a", cpu(100)).qos(QosClass::Guaranteed), 1, t0)
        .unwrap();
    let (d, _) = core.request(req(2, "b", cpu(50)).deadline(at(10)), 2, t0).unwrap();
    assert_eq!(d, Decision::Reserved { id: RequestId(2) });
    // The release comes after the deadline, before the timer's wake-up:
    // the reservation is answered Expired, not allocated.
    let (_, notices) = core.release(RequestId(1), &"a".into(), at(15)).unwrap();
    let events: Vec<(u64, &SchedulerEvent)> = notices.iter().map(|n| (n.to, &n.event)).collect();
    assert!(
        matches!(events[..], [(2, SchedulerEvent::Expired { id: RequestId(2) })]),
        "{events:?}"
    );
    assert!(core.allocations().is_empty());
    assert_eq!(core.pools()[0].allocated, ResourceVector::new());
    assert!(core.waiting(at(15)).is_empty());

    // An expired reservation holds nobody back either: a new request is
    // served, and the expired one is answered with it.
    core.request(req(3, "a", cpu(60)).qos(QosClass::Guaranteed), 3, at(15))
        .unwrap();
    core.request(
        req(4, "b", cpu(100)).priority(Priority::High).deadline(at(20)),
        4,
        at(15),
    )
    .unwrap();
    assert_eq!(core.waiting(at(19)), vec![RequestId(4)]);
    assert!(
        core.waiting(at(20)).is_empty(),
        "past its deadline it would never be served"
    );
    let (d, notices) = core
        .request(req(5, "c", cpu(30)).priority(Priority::Low), 5, at(25))
        .unwrap();
    assert!(matches!(d, Decision::Allocated(ref g) if g.id == RequestId(5)), "{d:?}");
    assert!(
        matches!(
            notices[..],
            [Notice {
                to: 4,
                event: SchedulerEvent::Expired { id: RequestId(4) }
            }]
        ),
        "{notices:?}"
    );
}

#[test]
fn the_next_wakeup_is_the_earliest_deadline_or_aging_step() {
    let t0 = Instant::now();
    let at = |s| t0 + Duration::from_secs(s);
    let mut core = Core::new(AllocationStrategy::Priority, Some(Duration::from_secs(10)), 100);
    core.register_pool(PoolSpec::new("p", cpu(100)), t0).unwrap();
    assert_eq!(core.next_wakeup(t0), None);
    // A best-effort batch job holds the pool at normal priority.
    let (d, _) = core.request(req(1, "batch", cpu(100)), 1, t0).unwrap();
    assert!(matches!(d, Decision::Allocated(_)));
    // A low one may not preempt it, so it waits.
    let (d, _) = core
        .request(req(2, "low", cpu(100)).priority(Priority::Low).deadline(at(600)), 2, t0)
        .unwrap();
    assert_eq!(d, Decision::Reserved { id: RequestId(2) });
    assert_eq!(core.next_wakeup(t0), Some(at(10)));
    // At 10 s it counts as normal: still no higher than the holder.
    assert!(core.expire(at(10)).is_empty());
    assert_eq!(core.next_wakeup(at(10)), Some(at(20)));
    // At 20 s it counts as high: it preempts the batch job then, with no
    // other event needed.
    let notices = core.expire(at(20));
    let events: Vec<(u64, &SchedulerEvent)> = notices.iter().map(|n| (n.to, &n.event)).collect();
    assert!(
        matches!(
            events[..],
            [(2, SchedulerEvent::Allocated(g)), (1, SchedulerEvent::Preempted(p))]
                if g.id == RequestId(2) && p.id == RequestId(1)
        ),
        "{events:?}"
    );
    assert_eq!(core.next_wakeup(at(20)), None);

    // A deadline before the next aging step comes first; a request at the
    // top priority does not age.
    let (d, _) = core
        .request(req(3, "normal", cpu(10)).deadline(at(25)), 3, at(20))
        .unwrap();
    assert_eq!(d, Decision::Reserved { id: RequestId(3) });
    assert_eq!(core.next_wakeup(at(20)), Some(at(25)));
    core.request(
        req(4, "high", cpu(10)).priority(Priority::High).deadline(at(900)),
        4,
        at(20),
    )
    .unwrap();
    let notices = core.expire(at(25));
    assert!(matches!(
        notices[..],
        [Notice {
            to: 3,
            event: SchedulerEvent::Expired { .. }
        }]
    ));
    assert_eq!(core.next_wakeup(at(25)), Some(at(900)));
}

#[test]
fn low_priority_ages_past_newer_higher_priority() {
    let t0 = Instant::now();
    let mut core = Core::new(AllocationStrategy::Priority, Some(Duration::from_secs(10)), 100);
    core.register_pool(PoolSpec::new("p", cpu(100)), t0).unwrap();
    core.request(req(1, "hog", cpu(100)).qos(QosClass::Guaranteed), 1, t0)
        .unwrap();
    let at = |s| t0 + Duration::from_secs(s);
    core.request(req(2, "low", cpu(100)).priority(Priority::Low).deadline(at(600)), 2, t0)
        .unwrap();
    // Ten seconds later the low request counts as normal: it was first.
    core.request(req(3, "normal", cpu(100)).deadline(at(600)), 3, at(10))
        .unwrap();
    assert_eq!(core.waiting(at(10)), [2, 3].map(RequestId).to_vec());
    // A high one still goes first until the low one has aged twice.
    core.request(
        req(4, "high", cpu(100)).priority(Priority::High).deadline(at(600)),
        4,
        at(15),
    )
    .unwrap();
    assert_eq!(core.waiting(at(15)), [4, 2, 3].map(RequestId).to_vec());
    // At 20 s the low one has aged twice and the normal one once: all are
    // "high", and arrival order decides.
    assert_eq!(core.waiting(at(20)), [2, 3, 4].map(RequestId).to_vec());
    let (_, notices) = core.release(RequestId(1), &"hog".into(), at(20)).unwrap();
    assert_eq!(
        notices.iter().filter_map(allocated_event).collect::<Vec<_>>(),
        vec![RequestId(2)]
    );
}

#[test]
fn best_fit_picks_the_pool_left_least_fragmented() {
    let t0 = Instant::now();
    let pools = [("big", cpu(1000)), ("small", cpu(300)), ("mid", cpu(500))];
    let mut core = core_with(AllocationStrategy::BestFit, &pools, t0);
    let pool_of = |d: Decision| match d {
        Decision::Allocated(g) => g.pool.to_string(),
        other => panic!("{other:?}"),
    };
    assert_eq!(pool_of(core.request(req(1, "a", cpu(250)), 1, t0).unwrap().0), "small");
    assert_eq!(pool_of(core.request(req(2, "a", cpu(250)), 2, t0).unwrap().0), "mid");
    assert_eq!(pool_of(core.request(req(3, "a", cpu(250)), 3, t0).unwrap().0), "mid");
    // Priority strategy takes the first that fits.
    let mut first = core_with(AllocationStrategy::Priority, &pools, t0);
    assert_eq!(pool_of(first.request(req(1, "a", cpu(250)), 1, t0).unwrap().0), "big");
}

#[test]
fn a_scaling_pool_grows_in_steps_within_its_maximum_and_shrinks_when_idle() {
    let t0 = Instant::now();
    let mut core = Core::new(AllocationStrategy::Priority, None, 10);
    let policy = ScalingPolicy {
        max: cpu(1000),
        step: cpu(200),
    };
    core.register_pool(PoolSpec::new("p", cpu(400)).scaling(policy), t0)
        .unwrap();
    core.request(req(1, "a", cpu(300)), 1, t0).unwrap();
    // 100 free; 250 more needs 150 -> one step of 200.
    assert!(matches!(
        core.request(req(2, "a", cpu(250)), 2, t0).unwrap().0,
        Decision::Allocated(_)
    ));
    assert_eq!(core.pools()[0].capacity, cpu(600));
    // 50 free; 500 more would need 1050 in all: above the maximum.
    assert!(matches!(
        core.request(req(3, "a", cpu(500)), 3, t0).unwrap().0,
        Decision::Rejected {
            reason: RejectReason::Insufficient,
            ..
        }
    ));
    assert!(matches!(
        core.request(req(4, "a", cpu(450)), 4, t0).unwrap().0,
        Decision::Allocated(_)
    ));
    assert_eq!(core.pools()[0].capacity, cpu(1000));
    core.release(RequestId(4), &"a".into(), t0).unwrap();
    assert_eq!(core.pools()[0].capacity, cpu(600), "idle growth given back in steps");
    core.release(RequestId(2), &"a".into(), t0).unwrap();
    assert_eq!(
        core.pools()[0].capacity,
        cpu(400),
        "never below the registered capacity"
    );
    assert_eq!(core.pools()[0].allocated, cpu(300));
}

#[test]
fn invalid_input_is_a_typed_error_and_changes_nothing() {
    let t0 = Instant::now();
    let mut core = core_with(AllocationStrategy::Priority, &[("p", cpu(100))], t0);
    core.request(req(1, "a", cpu(100)), 1, t0).unwrap();
    core.request(req(2, "b", cpu(50)).deadline(t0 + Duration::from_secs(5)), 2, t0)
        .unwrap();
    let before = fingerprint(&core, t0);

    let err = |r: Result<(Decision, Vec<Notice<u64>>), SchedulerError>| r.map(|(d, _)| d).unwrap_err();
    assert_eq!(
        err(core.request(req(3, "a", cpu(1)).pool("nope"), 3, t0)),
        SchedulerError::UnknownPool("nope".into())
    );
    assert_eq!(
        err(core.request(req(3, "a", ResourceVector::new()), 3, t0)),
        SchedulerError::EmptyRequest(RequestId(3))
    );
    assert_eq!(
        err(core.request(req(1, "a", cpu(1)), 1, t0)),
        SchedulerError::DuplicateRequest(RequestId(1))
    );
    assert_eq!(
        err(core.request(req(2, "a", cpu(1)), 2, t0)),
        SchedulerError::DuplicateRequest(RequestId(2))
    );
    assert_eq!(
        err(core.request(req(3, "a", cpu(10)).burstable(cpu(5)), 3, t0)),
        SchedulerError::InvalidLimits(RequestId(3))
    );
    let mut guaranteed_with_limits = req(3, "a", cpu(10)).burstable(cpu(20));
    guaranteed_with_limits.qos = QosClass::Guaranteed;
    assert_eq!(
        err(core.request(guaranteed_with_limits, 3, t0)),
        SchedulerError::InvalidLimits(RequestId(3))
    );
    assert_eq!(
        core.release(RequestId(9), &"a".into(), t0).unwrap_err(),
        SchedulerError::NotHeld(RequestId(9))
    );
    assert_eq!(
        core.release(RequestId(2), &"b".into(), t0).unwrap_err(),
        SchedulerError::NotHeld(RequestId(2)),
        "a waiting reservation is not held"
    );
    assert!(matches!(
        core.release(RequestId(1), &"b".into(), t0).unwrap_err(),
        SchedulerError::WrongRequester { .. }
    ));
    assert!(matches!(
        core.cancel(RequestId(2), &"a".into(), t0).unwrap_err(),
        SchedulerError::WrongRequester { .. }
    ));
    assert_eq!(
        core.cancel(RequestId(1), &"a".into(), t0).unwrap_err(),
        SchedulerError::NotWaiting(RequestId(1))
    );
    assert_eq!(
        core.register_pool(PoolSpec::new("p", cpu(1)), t0).unwrap_err(),
        SchedulerError::PoolExists("p".into())
    );
    assert!(matches!(
        core.register_pool(PoolSpec::new("q", ResourceVector::new()), t0),
        Err(SchedulerError::InvalidPool {
            reason: InvalidPool::EmptyCapacity,
            ..
        })
    ));
    assert!(matches!(
        core.register_pool(PoolSpec::new("", cpu(1)), t0),
        Err(SchedulerError::InvalidPool {
            reason: InvalidPool::EmptyId,
            ..
        })
    ));
    let shrinking = ScalingPolicy {
        max: cpu(50),
        step: ResourceVector::new(),
    };
    assert!(matches!(
        core.register_pool(PoolSpec::new("q", cpu(100)).scaling(shrinking), t0),
        Err(SchedulerError::InvalidPool {
            reason: InvalidPool::MaxBelowCapacity { .. },
            ..
        })
    ));
    assert_eq!(
        core.register_pool(PoolSpec::new("huge", cpu(u64::MAX)), t0)
            .unwrap_err(),
        SchedulerError::Overflow { kind: Cpu }
    );
    assert_eq!(fingerprint(&core, t0), before);

    // The legitimate holder can still release.
    core.cancel(RequestId(2), &"b".into(), t0).unwrap();
    assert_eq!(core.release(RequestId(1), &"a".into(), t0).unwrap().0, cpu(100));
}

/// A pool full of best-effort allocations: `needed` best-effort holders are
/// preempted for a guaranteed request, no more.
#[test]
fn a_guaranteed_request_preempts_exactly_the_best_effort_it_needs() {
    let t0 = Instant::now();
    let mut core = core_with(AllocationStrategy::Priority, &[("p", cpu(1000))], t0);
    for id in 1..=10 {
        let r = req(id, "batch", cpu(100)).priority(if id <= 5 { Priority::Normal } else { Priority::Low });
        core.request(r, id, t0).unwrap();
    }
    let (d, notices) = core
        .request(req(100, "api", cpu(250)).qos(QosClass::Guaranteed), 100, t0)
        .unwrap();
    let Decision::Allocated(grant) = d else { panic!("{d:?}") };
    // Three of 100 are needed: the lowest priority, most recent first.
    assert_eq!(grant.preempted, [10, 9, 8].map(RequestId).to_vec());
    let told: Vec<u64> = notices.iter().map(|n| n.to).collect();
    assert_eq!(told, vec![10, 9, 8]);
    for n in &notices {
        let SchedulerEvent::Preempted(p) = &n.event else {
            panic!()
        };
        assert_eq!(
            (p.reclaimed.clone(), p.remaining.clone(), p.by),
            (cpu(100), ResourceVector::new(), RequestId(100))
        );
    }
    assert_eq!(core.pools()[0].allocated, cpu(950));
    assert_eq!(core.allocations().len(), 8);

    // Guaranteed holders are never preempted: another guaranteed request
    // that only guaranteed capacity could satisfy waits.
    let mut g = core_with(AllocationStrategy::Priority, &[("p", cpu(100))], t0);
    g.request(
        req(1, "g", cpu(100)).qos(QosClass::Guaranteed).priority(Priority::Low),
        1,
        t0,
    )
    .unwrap();
    let (d, n) = g
        .request(
            req(2, "h", cpu(10)).qos(QosClass::Guaranteed).priority(Priority::High),
            2,
            t0,
        )
        .unwrap();
    assert!(matches!(d, Decision::Rejected { .. }) && n.is_empty());
}

#[test]
fn priority_preempts_lower_best_effort_first_then_bursts() {
    let t0 = Instant::now();
    let mut core = core_with(AllocationStrategy::Priority, &[("p", cpu(1000))], t0);
    // A burstable holder: requests 200, granted its 500 limit.
    let (d, _) = core
        .request(req(1, "burst", cpu(200)).burstable(cpu(500)), 1, t0)
        .unwrap();
    assert!(matches!(d, Decision::Allocated(ref g) if g.resources == cpu(500)));
    core.request(req(2, "guaranteed", cpu(300)).qos(QosClass::Guaranteed), 2, t0)
        .unwrap();
    core.request(req(3, "be-low", cpu(200)).priority(Priority::Low), 3, t0)
        .unwrap();
    // Full. A low best-effort request may not preempt its equals.
    let (d, _) = core
        .request(req(4, "x", cpu(100)).priority(Priority::Low), 4, t0)
        .unwrap();
    assert!(matches!(d, Decision::Rejected { .. }));
    // A high-priority one takes the best-effort holder, then a burst.
    let (d, notices) = core
        .request(req(5, "y", cpu(400)).priority(Priority::High), 5, t0)
        .unwrap();
    let Decision::Allocated(grant) = d else { panic!("{d:?}") };
    assert_eq!(grant.preempted, [3, 1].map(RequestId).to_vec());
    let SchedulerEvent::Preempted(burst) = &notices[1].event else {
        panic!()
    };
    assert_eq!((burst.reclaimed.clone(), burst.remaining.clone()), (cpu(300), cpu(200)));
    let held: HashMap<RequestId, ResourceVector> = core.allocations().into_iter().map(|a| (a.id, a.granted)).collect();
    assert_eq!(held[&RequestId(1)], cpu(200));
    assert_eq!(held[&RequestId(2)], cpu(300));
    assert_eq!(core.release(RequestId(1), &"burst".into(), t0).unwrap().0, cpu(200));
}

#[test]
fn fair_share_serves_the_tenant_with_the_lowest_dominant_share() {
    let t0 = Instant::now();
    // The DRF paper's example: 9 CPUs, 18 GB; A asks <1 CPU, 4 GB>, B <3 CPU, 1 GB>.
    let mut core = core_with(AllocationStrategy::FairShare, &[("p", cpu_mem(9, 18))], t0);
    core.request(req(1, "filler", cpu_mem(9, 18)).tenant("z"), 0, t0)
        .unwrap();
    let later = t0 + Duration::from_secs(60);
    for i in 0..10 {
        core.request(req(10 + i, "a", cpu_mem(1, 4)).tenant("A").deadline(later), 10 + i, t0)
            .unwrap();
        core.request(req(30 + i, "b", cpu_mem(3, 1)).tenant("B").deadline(later), 30 + i, t0)
            .unwrap();
    }
    core.release(RequestId(1), &"filler".into(), t0).unwrap();
    let held = core.allocations();
    let count = |t: &str| held.iter().filter(|a| a.tenant.as_str() == t).count();
    // DRF's answer: A gets 3 tasks (12 GB of 18 = 2/3), B gets 2 (6 CPUs of 9 = 2/3).
    assert_eq!((count("A"), count("B")), (3, 2));
    assert_eq!(core.dominant_share(&"A".into()), core.dominant_share(&"B".into()));
    assert_eq!(core.dominant_share(&"A".into()).ppm(), 666_666);
}

#[test]
fn le_sum_is_exact_for_the_largest_values() {
    let max = u64::MAX;
    // 1 <= 1/max + (max-1)/max, which is exactly 1.
    let one = Share::new(max, max);
    let a = Share::new(1, max);
    let b = Share::new(max - 1, max);
    assert!(one.le_sum(&a, &b));
    assert!(one.le_sum(&b, &a));
    // Just above 1 is not.
    assert!(!Share::new(max, max - 1).le_sum(&a, &b));
    // Large numerators and denominators on every side.
    let big = Share::new(max, 1);
    assert!(big.le_sum(&Share::new(max - 1, 1), &Share::new(max, max)));
    assert!(!big.le_sum(&Share::new(max - 2, 1), &Share::new(max - 1, max)));
    assert!(Share::new(max - 1, max).le_sum(&Share::new(max - 2, max - 1), &Share::new(1, max - 1)));
    assert!(Share::ZERO.le_sum(&Share::ZERO, &Share::ZERO));
}

#[derive(Debug, Clone)]
enum Op {
    Request {
        cpu: u64,
        mem: u64,
        prio: u8,
        wait: Option<u64>,
        pool: Option<usize>,
    },
    Release(usize),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u64..600, 0u64..600, 0u8..3, proptest::option::of(1u64..30), proptest::option::of(0usize..2))
            .prop_map(|(cpu, mem, prio, wait, pool)| Op::Request { cpu, mem, prio, wait, pool }),
        3 => (0usize..64).prop_map(Op::Release),
        1 => (1u64..10).prop_map(Op::Advance),
    ]
}

fn prio(p: u8) -> Priority {
    Priority::from_index(usize::from(p)).expect("0..3")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Random requests (some waiting, some pinned to a pool), releases and
    /// passing time, with every strategy: no pool is ever allocated beyond
    /// its capacity, pools' allocations are the sum of the holders', a
    /// release returns exactly the grant, and the pool's availability after
    /// it is what it was plus the release minus what was served from it.
    #[test]
    fn allocations_never_exceed_capacity_and_release_restores_exactly(
        strategy in prop_oneof![Just(AllocationStrategy::Priority), Just(AllocationStrategy::FairShare), Just(AllocationStrategy::BestFit)],
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let t0 = Instant::now();
        let mut core = core_with(strategy, &[("p0", cpu_mem(1000, 1000)), ("p1", cpu_mem(500, 2000))], t0);
        let mut now = t0;
        let mut granted: HashMap<RequestId, (String, ResourceVector)> = HashMap::new();
        let mut next = 1u64;
        let pool_index = |name: &str| usize::from(name == "p1");
        let record = |notices: &[Notice<u64>], granted: &mut HashMap<RequestId, (String, ResourceVector)>| -> Vec<(usize, ResourceVector)> {
            let mut served = Vec::new();
            for n in notices {
                match &n.event {
                    SchedulerEvent::Allocated(g) => {
                        served.push((pool_index(g.pool.as_str()), g.resources.clone()));
                        granted.insert(g.id, (g.pool.to_string(), g.resources.clone()));
                    }
                    SchedulerEvent::Preempted(p) => {
                        if p.remaining.is_empty() { granted.remove(&p.id); } else { granted.get_mut(&p.id).unwrap().1 = p.remaining.clone(); }
                    }
                    _ => {}
                }
            }
            served
        };
        for op in ops {
            match op {
                Op::Request { cpu, mem, prio: p, wait, pool } => {
                    let id = next;
                    next += 1;
                    let mut r = req(id, "r", cpu_mem(cpu, mem)).priority(prio(p)).tenant(format!("t{}", id % 3));
                    if let Some(w) = wait { r = r.deadline(now + Duration::from_secs(w)); }
                    if let Some(p) = pool { r = r.pool(["p0", "p1"][p]); }
                    let (d, notices) = core.request(r, id, now).unwrap();
                    record(&notices, &mut granted);
                    if let Decision::Allocated(g) = d {
                        granted.insert(g.id, (g.pool.to_string(), g.resources.clone()));
                    }
                }
                Op::Release(k) => {
                    let mut ids: Vec<RequestId> = granted.keys().copied().collect();
                    ids.sort();
                    if ids.is_empty() { continue; }
                    let id = ids[k % ids.len()];
                    let (pool_name, grant) = granted.remove(&id).unwrap();
                    let p = pool_index(&pool_name);
                    let before = core.pools()[p].available.clone();
                    let (held, notices) = core.release(id, &"r".into(), now).unwrap();
                    prop_assert_eq!(&held, &grant);
                    let served = record(&notices, &mut granted);
                    // Serving may preempt holders of the same pool: what
                    // they give back is then served too.
                    let mut expect = before.checked_add(&held).unwrap();
                    for n in &notices {
                        if let SchedulerEvent::Preempted(pr) = &n.event {
                            if pool_index(pr.pool.as_str()) == p {
                                expect = expect.checked_add(&pr.reclaimed).unwrap();
                            }
                        }
                    }
                    for (_, v) in served.iter().filter(|(sp, _)| *sp == p) {
                        expect = expect.checked_sub(v).unwrap();
                    }
                    prop_assert_eq!(&core.pools()[p].available, &expect);
                }
                Op::Advance(s) => {
                    now += Duration::from_secs(s);
                    let notices = core.expire(now);
                    record(&notices, &mut granted);
                }
            }
            for (i, pool) in core.pools().iter().enumerate() {
                prop_assert!(pool.allocated.fits_within(&pool.capacity), "pool {} over capacity: {:?}", i, pool);
                let sum = core.allocations().iter().filter(|a| a.pool == pool.id)
                    .fold(ResourceVector::new(), |acc, a| acc.checked_add(&a.granted).unwrap());
                prop_assert_eq!(&sum, &pool.allocated);
            }
            let mut ours: Vec<(RequestId, ResourceVector)> = granted.iter().map(|(k, v)| (*k, v.1.clone())).collect();
            ours.sort_by_key(|(k, _)| *k);
            let theirs: Vec<(RequestId, ResourceVector)> = core.allocations().into_iter().map(|a| (a.id, a.granted)).collect();
            prop_assert_eq!(ours, theirs);
        }
    }

    /// Guaranteed requests (never preempted) waiting on one pool: whenever
    /// one is served, none still waiting comes before it by (priority,
    /// deadline, arrival).
    #[test]
    fn reservations_are_served_in_priority_then_deadline_order(
        reqs in proptest::collection::vec((1u64..500, 0u8..3, 1u64..100), 1..40),
        releases in proptest::collection::vec(0usize..64, 1..40),
    ) {
        let t0 = Instant::now();
        let mut core = core_with(AllocationStrategy::Priority, &[("p", cpu(1000))], t0);
        core.request(req(0, "hog", cpu(1000)).qos(QosClass::Guaranteed), 0, t0).unwrap();
        let mut order_key: HashMap<RequestId, (u8, Instant, u64)> = HashMap::new();
        for (i, (c, p, d)) in reqs.iter().enumerate() {
            let id = i as u64 + 1;
            let deadline = t0 + Duration::from_secs(1000 + d);
            let r = req(id, "w", cpu(*c)).priority(prio(*p)).deadline(deadline).qos(QosClass::Guaranteed);
            let (decision, _) = core.request(r, id, t0).unwrap();
            let reserved = matches!(decision, Decision::Reserved { .. });
            prop_assert!(reserved, "{:?}", decision);
            order_key.insert(RequestId(id), (*p, deadline, id));
        }
        let mut held: Vec<RequestId> = vec![RequestId(0)];
        for k in releases {
            if held.is_empty() { break; }
            let id = held.remove(k % held.len());
            let who = if id == RequestId(0) { "hog" } else { "w" };
            let (_, notices) = core.release(id, &who.into(), t0).unwrap();
            let waiting = core.waiting(t0);
            for n in &notices {
                let served = allocated_event(n).expect("only allocations");
                held.push(served);
                for w in &waiting {
                    prop_assert!(order_key[w] > order_key[&served], "{:?} served before waiting {:?}", served, w);
                }
            }
        }
    }

    /// `le_sum` agrees with exact arithmetic (small values, where the
    /// products fit in u128) and is consistent at any size.
    #[test]
    fn le_sum_agrees_with_exact_arithmetic(
        s in (0u64..1000, 1u64..1000), a in (0u64..1000, 1u64..1000), b in (0u64..1000, 1u64..1000),
        big in (any::<u64>(), 1u64.., any::<u64>(), 1u64..),
    ) {
        let exact = u128::from(s.0) * u128::from(a.1) * u128::from(b.1)
            <= (u128::from(a.0) * u128::from(b.1) + u128::from(b.0) * u128::from(a.1)) * u128::from(s.1);
        let (ss, sa, sb) = (Share::new(s.0, s.1), Share::new(a.0, a.1), Share::new(b.0, b.1));
        prop_assert_eq!(ss.le_sum(&sa, &sb), exact);
        prop_assert_eq!(ss.le_sum(&sb, &sa), exact);
        // Anything is at most itself plus something; a sum is at least each part.
        let (x, y) = (Share::new(big.0, big.1), Share::new(big.2, big.3));
        prop_assert!(x.le_sum(&x, &y));
        prop_assert!(x.le_sum(&y, &x));
        prop_assert!(x.le_sum(&Share::ZERO, &x));
    }

    /// All tenants backlogged with different demand vectors: after the
    /// capacity is handed out, each tenant's dominant share is within one of
    /// its own requests of every other tenant's.
    #[test]
    fn drf_keeps_dominant_shares_within_one_request(
        demands in proptest::collection::vec((5u64..40, 5u64..40), 2..5),
        cap_cpu in 50u64..200,
        cap_mem in 50u64..200,
    ) {
        let t0 = Instant::now();
        let capacity = cpu_mem(cap_cpu, cap_mem);
        let mut core = core_with(AllocationStrategy::FairShare, &[("p", capacity.clone())], t0);
        core.request(req(0, "filler", capacity.clone()).tenant("filler"), 0, t0).unwrap();
        let later = t0 + Duration::from_secs(60);
        let mut id = 1;
        // 60 requests of at least 5 units each: every tenant alone wants
        // more than the pool holds.
        for round in 0..60 {
            for (t, (c, m)) in demands.iter().enumerate() {
                let r = req(id, "w", cpu_mem(*c, *m)).tenant(format!("t{t}")).deadline(later + Duration::from_millis(round));
                core.request(r, id, t0).unwrap();
                id += 1;
            }
        }
        core.release(RequestId(0), &"filler".into(), t0).unwrap();
        let shares: Vec<Share> = (0..demands.len()).map(|t| core.dominant_share(&format!("t{t}").into())).collect();
        for (i, (c, m)) in demands.iter().enumerate() {
            let one = std::cmp::max(
                Share::new(*c, cap_cpu),
                Share::new(*m, cap_mem),
            );
            for (j, other) in shares.iter().enumerate() {
                prop_assert!(shares[i].le_sum(other, &one), "tenant {} share {:?} vs tenant {} {:?} (+{:?})", i, shares[i], j, other, one);
            }
        }
        // Everyone is still backlogged, so nobody got everything.
        prop_assert!(!core.waiting(t0).is_empty());
    }
}

#[test]
fn from_config_validates_the_section_first() {
    use nexus_swarm_runtime::config::{PoolConfig, SchedulerConfig};
    let t0 = Instant::now();
    let zero_aging = SchedulerConfig {
        aging_interval: Duration::ZERO,
        ..SchedulerConfig::default()
    };
    let Err(err) = Core::from_config(&zero_aging, t0) else {
        panic!("a zero aging interval is refused");
    };
    assert!(
        matches!(&err, SchedulerError::InvalidConfig { field, .. } if field == "scheduler.aging_interval"),
        "{err:?}"
    );
    let misspelt = SchedulerConfig {
        pools: vec![PoolConfig {
            name: "gpu".into(),
            capacity: [("gpus".to_string(), 4)].into(),
            max: Default::default(),
            step: Default::default(),
        }],
        ..SchedulerConfig::default()
    };
    let Err(err) = Core::from_config(&misspelt, t0) else {
        panic!("a misspelt kind is refused");
    };
    assert!(
        matches!(&err, SchedulerError::InvalidConfig { field, .. } if field == "scheduler.pools[0].capacity.gpus"),
        "{err:?}"
    );
    assert!(Core::from_config(&SchedulerConfig::default(), t0).is_ok());
}

#[test]
fn a_partial_release_gives_back_exactly_its_part_and_serves_waiters() {
    let t0 = Instant::now();
    let mut core = core_with(AllocationStrategy::Priority, &[("p", cpu(1000))], t0);
    let (d, _) = core.request(req(1, "pool", cpu(800)), 1, t0).unwrap();
    assert!(matches!(d, Decision::Allocated(_)));
    let waiter = req(2, "b", cpu(400)).deadline(t0 + Duration::from_secs(10));
    let (d, _) = core.request(waiter, 2, t0).unwrap();
    assert!(matches!(d, Decision::Reserved { .. }));

    // Refused partial releases change nothing.
    let before = fingerprint(&core, t0);
    let err = core
        .release_part(RequestId(1), &"pool".into(), &cpu(900), t0)
        .unwrap_err();
    assert!(matches!(err, SchedulerError::ReleaseExceedsHeld { .. }), "{err}");
    let err = core
        .release_part(RequestId(1), &"other".into(), &cpu(100), t0)
        .unwrap_err();
    assert!(matches!(err, SchedulerError::WrongRequester { .. }), "{err}");
    let err = core
        .release_part(RequestId(1), &"pool".into(), &cpu_mem(100, 1), t0)
        .unwrap_err();
    assert!(matches!(err, SchedulerError::ReleaseExceedsHeld { .. }), "{err}");
    assert_eq!(fingerprint(&core, t0), before);

    // Giving back 200 makes room for the waiter (200 free + 200 = 400).
    let (rest, notices) = core.release_part(RequestId(1), &"pool".into(), &cpu(200), t0).unwrap();
    assert_eq!(rest, cpu(600));
    assert_eq!(
        notices.iter().filter_map(allocated_event).collect::<Vec<_>>(),
        vec![RequestId(2)]
    );
    assert_eq!(core.pools()[0].available, ResourceVector::new());

    // Giving back the rest releases it whole.
    let (rest, _) = core.release_part(RequestId(1), &"pool".into(), &cpu(600), t0).unwrap();
    assert!(rest.is_empty());
    assert!(matches!(
        core.release(RequestId(1), &"pool".into(), t0),
        Err(SchedulerError::NotHeld(_))
    ));
    assert_eq!(core.pools()[0].available, cpu(600));
}
