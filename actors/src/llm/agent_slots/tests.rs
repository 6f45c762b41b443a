use std::collections::VecDeque;
use std::time::Duration;

use proptest::prelude::*;

use super::*;

fn s(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

fn key(agent: &str) -> AgentKey {
    AgentKey::of(&UsageMeta::default().tenant("t").agent(agent)).unwrap()
}

fn slots(limit: u32) -> AgentSlots<u32> {
    AgentSlots::new(NonZeroU32::new(limit).unwrap())
}

#[test]
fn the_key_is_tenant_workflow_and_agent_and_needs_an_agent() {
    assert_eq!(AgentKey::of(&UsageMeta::default().tenant("t").workflow("w")), None);
    let a = AgentKey::of(&UsageMeta::default().tenant("t").workflow("w").agent("a")).unwrap();
    let b = AgentKey::of(&UsageMeta::default().tenant("u").workflow("w").agent("a")).unwrap();
    assert_ne!(a, b, "the same agent name under two tenants is two agents");
    assert_eq!(a.to_string(), "t/w/a");
    assert_eq!(AgentKey::of(&UsageMeta::default().agent("a")).unwrap().to_string(), "a");
    // The model and labels are not part of who the agent is.
    let c = AgentKey::of(&UsageMeta::default().tenant("t").workflow("w").agent("a").model("m")).unwrap();
    assert_eq!(a, c);
}

#[test]
fn an_agent_takes_up_to_the_limit_and_others_are_not_affected() {
    let mut sl = slots(2);
    assert!(sl.try_take(&key("a")));
    assert!(sl.try_take(&key("a")));
    assert!(!sl.try_take(&key("a")), "the third call of the agent must wait");
    assert!(sl.try_take(&key("b")), "another agent has its own slots");
    assert_eq!(
        sl.load(&key("a")),
        AgentLoad {
            in_flight: 2,
            waiting: 0
        }
    );
    assert_eq!(sl.in_flight(), 3);
}

#[test]
fn a_release_hands_the_slot_to_the_oldest_waiter_without_a_gap() {
    let mut sl = slots(1);
    assert!(sl.try_take(&key("a")));
    sl.enqueue(&key("a"), s(10), 1);
    sl.enqueue(&key("a"), s(10), 2);
    let r = sl.release(s(1), &key("a"), |_| false);
    assert_eq!(r.next, Some(1));
    assert!(r.expired.is_empty());
    assert_eq!(
        sl.load(&key("a")),
        AgentLoad {
            in_flight: 1,
            waiting: 1
        },
        "the slot passed on: still one held"
    );
    // A newcomer does not pass the waiter left, even with a slot about to free.
    assert!(!sl.try_take(&key("a")));
    assert_eq!(sl.release(s(2), &key("a"), |_| false).next, Some(2));
    let r = sl.release(s(3), &key("a"), |_| false);
    assert_eq!(r.next, None);
    assert_eq!(sl.load(&key("a")), AgentLoad::default());
    assert_eq!(sl.active_agents(), 0, "an idle agent is forgotten");
    assert!(sl.try_take(&key("a")));
}

#[test]
fn a_newcomer_waits_behind_waiters_even_below_the_limit() {
    let mut sl = slots(1);
    assert!(sl.try_take(&key("a")));
    sl.enqueue(&key("a"), s(10), 7);
    // Nothing released yet: the waiter is first in line.
    assert!(!sl.try_take(&key("a")));
    assert_eq!(sl.waiting(), 1);
}

#[test]
fn waiters_past_their_deadline_or_gone_are_skipped_and_take_no_slot() {
    let mut sl = slots(1);
    assert!(sl.try_take(&key("a")));
    sl.enqueue(&key("a"), s(5), 1); // deadline passes
    sl.enqueue(&key("a"), s(50), 2); // gone
    sl.enqueue(&key("a"), s(50), 3);
    let r = sl.release(s(5), &key("a"), |p| *p == 2);
    assert_eq!(r.expired, vec![1, 2]);
    assert_eq!(r.next, Some(3));
    assert_eq!(
        sl.load(&key("a")),
        AgentLoad {
            in_flight: 1,
            waiting: 0
        }
    );
    // Everyone left expired: the slot becomes free.
    sl.enqueue(&key("a"), s(6), 4);
    let r = sl.release(s(6), &key("a"), |_| false);
    assert_eq!((r.next, r.expired), (None, vec![4]));
    assert_eq!(sl.load(&key("a")), AgentLoad::default());
    assert_eq!(sl.in_flight(), 0);
    assert_eq!(sl.waiting(), 0);
}

#[test]
fn a_waiter_that_leaves_takes_nothing_and_a_handed_one_cannot_leave() {
    let mut sl = slots(1);
    assert!(sl.try_take(&key("a")));
    let t1 = sl.enqueue(&key("a"), s(10), 1);
    let t2 = sl.enqueue(&key("a"), s(10), 2);
    assert_eq!(sl.leave(&key("a"), t1), Some(1));
    assert_eq!(sl.leave(&key("a"), t1), None);
    assert_eq!(sl.release(s(1), &key("a"), |_| false).next, Some(2));
    assert_eq!(
        sl.leave(&key("a"), t2),
        None,
        "already handed a slot: its holder releases it"
    );
    assert_eq!(sl.load(&key("a")).in_flight, 1);
}

#[test]
fn releasing_what_is_not_held_changes_nothing() {
    let mut sl = slots(2);
    let r = sl.release(s(0), &key("nobody"), |_| false);
    assert!(r.next.is_none() && r.expired.is_empty());
    assert!(sl.try_take(&key("a")));
    sl.release(s(0), &key("a"), |_| false);
    sl.release(s(0), &key("a"), |_| false);
    assert_eq!(sl.in_flight(), 0);
    assert!(sl.try_take(&key("a")) && sl.try_take(&key("a")));
    assert!(!sl.try_take(&key("a")), "a spurious release did not create a slot");
}

#[derive(Debug, Clone)]
enum Op {
    /// A request of agent `.0` arrives with a deadline `.1` s from now.
    Arrive(usize, u64),
    /// The `.0`-th running request (modulo) ends.
    End(usize),
    /// The `.0`-th waiter (modulo) stops waiting.
    Leave(usize),
    /// Time passes.
    Tick(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..3, 1u64..20).prop_map(|(a, d)| Op::Arrive(a, d)),
        (0usize..16).prop_map(Op::End),
        (0usize..16).prop_map(Op::Leave),
        (1u64..5).prop_map(Op::Tick),
    ]
}

proptest! {
    /// The laws: an agent never holds more than the limit; slots go to its
    /// waiters in arrival order (never to one past its deadline); and the
    /// totals match the agents' own counts.
    #[test]
    fn never_above_the_limit_and_first_come_first_served(limit in 1u32..4, ops in proptest::collection::vec(op(), 1..200)) {
        let mut sl: AgentSlots<u64> = AgentSlots::new(NonZeroU32::new(limit).unwrap());
        let keys = [key("a"), key("b"), key("c")];
        let mut now = Duration::ZERO;
        let mut next_id = 0u64;
        // Running requests: (agent, id); waiters: (agent, id, ticket, deadline).
        let mut running: Vec<(usize, u64)> = Vec::new();
        let mut waiting: Vec<(usize, u64, Ticket, Duration)> = Vec::new();
        let mut arrivals: [VecDeque<u64>; 3] = Default::default();
        for op in ops {
            match op {
                Op::Arrive(a, d) => {
                    let id = next_id;
                    next_id += 1;
                    if sl.try_take(&keys[a]) {
                        running.push((a, id));
                    } else {
                        let t = sl.enqueue(&keys[a], now + Duration::from_secs(d), id);
                        waiting.push((a, id, t, now + Duration::from_secs(d)));
                        arrivals[a].push_back(id);
                    }
                }
                Op::End(i) if !running.is_empty() => {
                    let (a, _) = running.remove(i % running.len());
                    let r = sl.release(now, &keys[a], |_| false);
                    for id in &r.expired {
                        let w = waiting.iter().position(|w| w.1 == *id).unwrap();
                        prop_assert!(waiting[w].3 <= now, "only waiters past their deadline expire");
                        waiting.remove(w);
                        arrivals[a].retain(|x| x != id);
                    }
                    if let Some(id) = r.next {
                        prop_assert_eq!(arrivals[a].pop_front(), Some(id), "the oldest waiter goes first");
                        let w = waiting.iter().position(|w| w.1 == id).unwrap();
                        prop_assert!(waiting[w].3 > now, "a waiter past its deadline takes no slot");
                        waiting.remove(w);
                        running.push((a, id));
                    }
                }
                Op::Leave(i) if !waiting.is_empty() => {
                    let (a, id, t, _) = waiting.remove(i % waiting.len());
                    prop_assert_eq!(sl.leave(&keys[a], t), Some(id));
                    arrivals[a].retain(|x| *x != id);
                }
                Op::Tick(secs) => now += Duration::from_secs(secs),
                _ => {}
            }
            for (a, k) in keys.iter().enumerate() {
                let load = sl.load(k);
                prop_assert!(load.in_flight <= limit);
                prop_assert_eq!(load.in_flight as usize, running.iter().filter(|r| r.0 == a).count());
                prop_assert_eq!(load.waiting, waiting.iter().filter(|w| w.0 == a).count());
            }
            prop_assert_eq!(sl.in_flight(), running.len() as u64);
            prop_assert_eq!(sl.waiting(), waiting.len());
        }
    }
}
