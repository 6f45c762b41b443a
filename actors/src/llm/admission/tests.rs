use std::time::Duration;

use super::*;

fn w(group: usize, deadline_s: u64, id: u32) -> Waiter<u32> {
    Waiter {
        group,
        deadline: Duration::from_secs(deadline_s),
        payload: id,
    }
}

#[test]
fn higher_priorities_are_admitted_first_and_fifo_within_one() {
    let mut q = WaitQueue::new(10);
    q.push(Priority::Low, w(0, 100, 1)).unwrap();
    q.push(Priority::Normal, w(0, 100, 2)).unwrap();
    q.push(Priority::High, w(0, 100, 3)).unwrap();
    q.push(Priority::High, w(0, 100, 4)).unwrap();
    let mut budget = 3;
    let scan = q.scan(
        Duration::ZERO,
        |_| false,
        |_| {
            if budget > 0 {
                budget -= 1;
                Attempt::<(), ()>::Admitted(())
            } else {
                Attempt::NotBefore(Duration::from_secs(5))
            }
        },
    );
    let order: Vec<u32> = scan.admitted.iter().map(|(w, _)| w.payload).collect();
    assert_eq!(order, vec![3, 4, 2]);
    assert_eq!(scan.next, Some(Duration::from_secs(5)));
    assert_eq!(q.len(), 1);
}

#[test]
fn a_blocked_group_does_not_hold_back_other_groups() {
    let mut q = WaitQueue::new(10);
    q.push(Priority::High, w(0, 100, 1)).unwrap();
    q.push(Priority::Normal, w(0, 100, 2)).unwrap();
    q.push(Priority::Normal, w(1, 100, 3)).unwrap();
    let scan = q.scan(
        Duration::ZERO,
        |_| false,
        |w| {
            if w.group == 0 {
                Attempt::<(), ()>::NotBefore(Duration::from_secs(9))
            } else {
                Attempt::Admitted(())
            }
        },
    );
    assert_eq!(scan.admitted.len(), 1);
    assert_eq!(scan.admitted[0].0.payload, 3);
    // Waiter 2 was skipped without an attempt: its group was blocked by 1.
    assert_eq!(q.len(), 2);
}

#[test]
fn expired_and_departed_waiters_are_removed_and_refusals_answered() {
    let mut q = WaitQueue::new(10);
    q.push(Priority::Normal, w(0, 1, 1)).unwrap();
    q.push(Priority::Normal, w(1, 100, 2)).unwrap();
    q.push(Priority::Normal, w(2, 100, 3)).unwrap();
    let scan = q.scan(
        Duration::from_secs(1),
        |w| w.payload == 2,
        |_| Attempt::<(), &str>::Refused("too large"),
    );
    let expired: Vec<u32> = scan.expired.iter().map(|w| w.payload).collect();
    assert_eq!(expired, vec![1, 2]);
    assert_eq!(scan.refused.len(), 1);
    assert!(q.is_empty());
    assert_eq!(scan.next, None);
}

#[test]
fn the_queue_is_bounded() {
    let mut q = WaitQueue::new(2);
    q.push(Priority::Low, w(0, 1, 1)).unwrap();
    q.push(Priority::Low, w(0, 1, 2)).unwrap();
    assert_eq!(q.push(Priority::High, w(0, 1, 3)).unwrap_err().payload, 3);
    assert!(q.has_waiters_at_or_above(Priority::Low));
    assert!(!q.has_waiters_at_or_above(Priority::Normal));
}

#[test]
fn next_wake_is_the_earliest_of_admission_times_and_deadlines() {
    let mut q = WaitQueue::new(10);
    q.push(Priority::Normal, w(0, 3, 1)).unwrap();
    q.push(Priority::Normal, w(1, 100, 2)).unwrap();
    let scan = q.scan(
        Duration::ZERO,
        |_| false,
        |_| Attempt::<(), ()>::NotBefore(Duration::from_secs(7)),
    );
    assert_eq!(scan.next, Some(Duration::from_secs(3)));
}

#[test]
fn within_a_priority_groups_are_tried_in_arrival_order() {
    let mut q = WaitQueue::new(10);
    q.push(Priority::Normal, w(0, 100, 1)).unwrap();
    q.push(Priority::Normal, w(1, 100, 2)).unwrap();
    q.push(Priority::Normal, w(0, 100, 3)).unwrap();
    q.push(Priority::Normal, w(2, 100, 4)).unwrap();
    let mut tried = Vec::new();
    let scan = q.scan(
        Duration::ZERO,
        |_| false,
        |w| {
            tried.push(w.payload);
            Attempt::<(), ()>::Admitted(())
        },
    );
    assert_eq!(tried, vec![1, 2, 3, 4]);
    assert_eq!(scan.admitted.len(), 4);
    assert!(q.is_empty());
}
