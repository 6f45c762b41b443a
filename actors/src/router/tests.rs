use super::*;

fn id(n: u64) -> MemberId {
    MemberId(n)
}

#[test]
fn a_member_is_ejected_after_threshold_consecutive_failures() {
    let mut h = HealthTracker::new(3);
    h.insert(id(1), true);
    assert_eq!(h.record(id(1), false), None);
    assert_eq!(h.record(id(1), false), None);
    assert!(h.is_healthy(id(1)));
    assert_eq!(h.record(id(1), false), Some(HealthChange::Ejected));
    assert!(!h.is_healthy(id(1)));
    // Further failures change nothing more.
    assert_eq!(h.record(id(1), false), None);
    assert_eq!(h.failures(id(1)), 4);
}

#[test]
fn a_success_resets_the_count_of_failures() {
    let mut h = HealthTracker::new(3);
    h.insert(id(1), true);
    h.record(id(1), false);
    h.record(id(1), false);
    assert_eq!(h.record(id(1), true), None);
    assert_eq!(h.failures(id(1)), 0);
    h.record(id(1), false);
    h.record(id(1), false);
    assert!(h.is_healthy(id(1)), "failures must be consecutive");
}

#[test]
fn an_ejected_member_is_readmitted_by_its_first_answer() {
    let mut h = HealthTracker::new(1);
    h.insert(id(7), true);
    assert_eq!(h.record(id(7), false), Some(HealthChange::Ejected));
    assert_eq!(h.record(id(7), true), Some(HealthChange::Readmitted));
    assert!(h.is_healthy(id(7)));
    assert_eq!(h.record(id(7), true), None);
}

#[test]
fn closed_lanes_eject_at_once() {
    let mut h = HealthTracker::new(3);
    h.insert(id(2), true);
    assert_eq!(h.eject(id(2)), Some(HealthChange::Ejected));
    assert_eq!(h.eject(id(2)), None);
    assert_eq!(h.record(id(2), true), Some(HealthChange::Readmitted));
}

#[test]
fn unknown_members_are_ignored() {
    let mut h = HealthTracker::new(3);
    assert_eq!(h.record(id(9), false), None);
    assert_eq!(h.eject(id(9)), None);
    assert!(!h.is_healthy(id(9)));
    h.insert(id(9), false);
    assert!(!h.is_healthy(id(9)));
    assert_eq!(h.record(id(9), true), Some(HealthChange::Readmitted));
    h.remove(id(9));
    assert_eq!(h.record(id(9), false), None);
}

#[test]
fn route_errors_give_the_message_back() {
    let e: RouteError<String> = RouteError::NoMember("hello".into());
    assert_eq!(format!("{e:?}"), "NoMember(..)");
    assert_eq!(e.into_inner(), "hello");
    let e: RouteError<u8> = RouteError::Admission {
        msg: 3,
        error: AdmissionError::Suspended {
            priority: Priority::Low,
        },
    };
    assert!(e.admission().is_some());
    assert_eq!(e.into_inner(), 3);
}
