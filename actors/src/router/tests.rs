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

/// An agent that takes messages and does nothing with them.
struct Sink;

impl nexus_swarm_runtime::agent::Agent for Sink {
    type Msg = ();
    type State = ();

    async fn init(
        &self,
        _ctx: &nexus_swarm_runtime::agent::AgentContext<()>,
    ) -> Result<(), nexus_swarm_runtime::error::HandlerError> {
        Ok(())
    }

    async fn handle(
        &self,
        _ctx: &nexus_swarm_runtime::agent::AgentContext<()>,
        _msg: (),
        _state: &mut (),
    ) -> Result<(), nexus_swarm_runtime::error::HandlerError> {
        Ok(())
    }
}

/// A router restarted by its supervisor starts again from its arguments:
/// a member added after the restart gets a fresh id, never that of a
/// member removed before it, so a stale id names nobody.
#[tokio::test]
async fn a_restarted_router_never_reuses_a_removed_members_id() {
    let node = Node::start(nexus_swarm_runtime::config::NexusConfig::default())
        .await
        .unwrap();
    let workers = node.spawn_pool("sinks", 3, Sink).await.unwrap().members();
    let (args, router) = RouterArgs::<()>::new("restart-ids", RouterConfig::default(), &node.config().mailbox).unwrap();
    let (actor, join) = Actor::spawn(None, Router::new(), args.clone()).await.unwrap();
    let a = router.add_member(workers[0].clone(), 1).await.unwrap();
    let b = router.add_member(workers[1].clone(), 1).await.unwrap();
    router.remove_member(b).await.unwrap();

    // What a supervisor does on a failure: the actor stops, and a new one
    // starts with the same arguments.
    actor.stop(None);
    join.await.unwrap();
    let (actor, join) = Actor::spawn(None, Router::new(), args).await.unwrap();
    let c = router.add_member(workers[2].clone(), 1).await.unwrap();
    assert!(c > b, "member {c} added after the restart reuses the id of removed {b}");
    assert_eq!(router.remove_member(b).await, Err(RouterError::UnknownMember(b)));
    // A late closed-lanes report about the removed member ejects nobody.
    router.report_closed(b);
    router.set_weight(c, 2).await.unwrap(); // processed after the report
    let members: Vec<(MemberId, bool)> = router.members().iter().map(|m| (m.id, m.healthy)).collect();
    assert_eq!(members, [(a, true), (c, true)]);

    actor.stop(None);
    join.await.unwrap();
    node.shutdown(Duration::from_secs(5)).await;
}
