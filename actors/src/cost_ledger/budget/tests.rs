//! The hard budget's decision without a runtime: fits, waits or refuses;
//! which waiters a change wakes; first come, first served.

use nexus_swarm_runtime::usage::SpendRefused;
use proptest::prelude::*;

use super::*;

/// 2024-02-29T00:00:00Z, in microseconds.
const NOW: u64 = 1_709_164_800 * MICROS_PER_SEC;
const LIMIT: u64 = 1000;

fn hard() -> BudgetCounters {
    BudgetCounters::new(
        Budget::new("hard", LIMIT, BudgetPeriod::Hourly, BudgetAction::Halt),
        [],
        NOW,
    )
}

fn t(n: u64) -> WaitTicket {
    WaitTicket(n)
}

/// A waiter: queued, then decided with its ticket.
fn wait(c: &mut BudgetCounters, ticket: WaitTicket, estimate: u64) -> Verdict {
    c.enqueue(ticket, estimate);
    let mut ev = Vec::new();
    let v = c.try_reserve(estimate, Some(ticket), NOW, &mut ev);
    if v == Verdict::Fits {
        c.dequeue(ticket);
    }
    v
}

fn reserve(c: &mut BudgetCounters, estimate: u64) -> Verdict {
    c.try_reserve(estimate, None, NOW, &mut Vec::new())
}

#[test]
fn a_reservation_that_fits_is_held_at_once() {
    let mut c = hard();
    assert_eq!(reserve(&mut c, 600), Verdict::Fits);
    assert_eq!(reserve(&mut c, 400), Verdict::Fits, "exactly the limit fits");
    let s = c.status();
    assert_eq!((s.reserved_micro_usd, s.waiting, s.halted), (1000, 0, false));
}

#[test]
fn a_reservation_held_back_only_by_holds_waits_and_does_not_halt() {
    let mut c = hard();
    assert_eq!(reserve(&mut c, 600), Verdict::Fits);
    let mut ev = Vec::new();
    let v = c.try_reserve(500, None, NOW, &mut ev);
    assert_eq!(
        v,
        Verdict::Wait(SpendRefused::HoldsInFlight {
            budget: "hard".into(),
            limit: LIMIT,
            spent: 0,
            reserved: 600,
            requested: 500,
        })
    );
    assert!(ev.is_empty(), "no halt event: {ev:?}");
    assert!(!c.status().halted);
    assert_eq!(c.status().reserved_micro_usd, 600, "a wait holds nothing");
    // Something small still fits beside the hold.
    assert_eq!(reserve(&mut c, 400), Verdict::Fits);
}

#[test]
fn a_reservation_settled_spend_leaves_no_room_for_is_refused_and_halts() {
    let mut c = hard();
    assert_eq!(reserve(&mut c, 600), Verdict::Fits);
    c.settle(600, 550);
    let mut ev = Vec::new();
    let v = c.try_reserve(451, None, NOW, &mut ev);
    assert_eq!(
        v,
        Verdict::Refused(SpendRefused::BudgetExceeded {
            budget: "hard".into(),
            limit: LIMIT,
            spent: 550,
            reserved: 0,
            requested: 451,
        })
    );
    assert_eq!(
        ev.iter().map(|e| e.kind).collect::<Vec<_>>(),
        vec![BudgetEventKind::Halted]
    );
    assert!(c.status().halted);
    assert!(
        matches!(reserve(&mut c, 1), Verdict::Refused(_)),
        "halted: the rest of the period is refused"
    );
    // A single request over the whole limit can never fit either.
    let mut fresh = hard();
    assert!(matches!(reserve(&mut fresh, LIMIT + 1), Verdict::Refused(_)));
}

#[test]
fn settling_a_hold_wakes_the_waiter_it_makes_room_for() {
    let mut c = hard();
    assert_eq!(reserve(&mut c, 600), Verdict::Fits);
    assert!(matches!(wait(&mut c, t(1), 500), Verdict::Wait(_)));
    assert_eq!(c.waiting(), 1);
    assert!(c.wakeable().is_empty(), "nothing changed: nobody to wake");
    c.settle(600, 450);
    assert_eq!(c.wakeable(), vec![t(1)]);
    assert_eq!(wait(&mut c, t(1), 500), Verdict::Fits);
    let s = c.status();
    assert_eq!((s.reserved_micro_usd, s.inflight_micro_usd, s.waiting), (500, 450, 0));
}

#[test]
fn releasing_a_hold_wakes_the_waiter_it_makes_room_for() {
    let mut c = hard();
    assert_eq!(reserve(&mut c, 900), Verdict::Fits);
    assert!(matches!(wait(&mut c, t(1), 300), Verdict::Wait(_)));
    c.release(900);
    assert_eq!(c.wakeable(), vec![t(1)]);
    assert_eq!(wait(&mut c, t(1), 300), Verdict::Fits);
}

#[test]
fn a_waiter_whose_room_was_spent_is_woken_to_be_refused() {
    let mut c = hard();
    assert_eq!(reserve(&mut c, 600), Verdict::Fits);
    assert_eq!(reserve(&mut c, 300), Verdict::Fits);
    assert!(matches!(wait(&mut c, t(1), 450), Verdict::Wait(_)));
    assert!(matches!(wait(&mut c, t(2), 50), Verdict::Wait(_)));
    // The 600 hold is spent whole: 600 + 450 can never fit.
    c.settle(600, 600);
    assert_eq!(
        c.wakeable(),
        vec![t(1)],
        "woken to be refused, not left to its deadline"
    );
    assert!(matches!(wait(&mut c, t(1), 450), Verdict::Refused(_)));
    assert!(c.dequeue(t(1)));
    assert_eq!(c.wakeable(), vec![t(2)], "halted: every waiter is refused");
    assert!(matches!(wait(&mut c, t(2), 50), Verdict::Refused(_)));
}

#[test]
fn waiters_keep_their_room_from_newcomers_and_those_behind() {
    let mut c = hard();
    assert_eq!(reserve(&mut c, 600), Verdict::Fits);
    assert!(matches!(wait(&mut c, t(1), 500), Verdict::Wait(_)));
    // 600 + 300 would fit, but the room is the first waiter's.
    assert!(matches!(reserve(&mut c, 300), Verdict::Wait(_)));
    assert!(matches!(wait(&mut c, t(2), 300), Verdict::Wait(_)));
    c.settle(600, 200);
    // 200 + 500 + 300 = 1000: both fit, in order.
    assert_eq!(c.wakeable(), vec![t(1), t(2)]);
    assert!(
        matches!(reserve(&mut c, 1), Verdict::Wait(_)),
        "a newcomer stays behind them"
    );
    assert_eq!(wait(&mut c, t(1), 500), Verdict::Fits);
    assert_eq!(wait(&mut c, t(2), 300), Verdict::Fits);
    assert_eq!(c.used(), 1000);
}

#[test]
fn a_waiter_that_leaves_lets_the_one_behind_through() {
    let mut c = hard();
    assert_eq!(reserve(&mut c, 400), Verdict::Fits);
    assert!(matches!(wait(&mut c, t(1), 700), Verdict::Wait(_)));
    assert!(matches!(wait(&mut c, t(2), 300), Verdict::Wait(_)));
    assert!(c.wakeable().is_empty());
    // The first gives up (its deadline passed): it leaves nothing behind.
    assert!(c.dequeue(t(1)));
    assert!(!c.dequeue(t(1)), "once");
    assert_eq!(c.status().reserved_micro_usd, 400, "a waiter never held anything");
    assert_eq!(c.wakeable(), vec![t(2)]);
    assert_eq!(wait(&mut c, t(2), 300), Verdict::Fits);
    assert_eq!(c.status().waiting, 0);
}

#[test]
fn budgets_that_are_not_hard_never_wait_or_queue() {
    let mut c = BudgetCounters::new(
        Budget::new("soft", LIMIT, BudgetPeriod::Hourly, BudgetAction::Alert),
        [],
        NOW,
    );
    assert_eq!(reserve(&mut c, 900), Verdict::Fits);
    assert_eq!(reserve(&mut c, 900), Verdict::Fits);
    c.enqueue(t(1), 10);
    assert_eq!(c.waiting(), 0);
}

#[test]
fn a_removed_budget_hands_its_waiters_back() {
    let mut c = hard();
    assert_eq!(reserve(&mut c, 900), Verdict::Fits);
    assert!(matches!(wait(&mut c, t(1), 200), Verdict::Wait(_)));
    assert!(matches!(wait(&mut c, t(2), 200), Verdict::Wait(_)));
    assert_eq!(c.drain_queue(), vec![t(1), t(2)]);
    assert_eq!(c.waiting(), 0);
    assert_eq!(reserve(&mut c, 100), Verdict::Fits, "no waiter ahead any more");
}

/// One step of a random schedule of a hard budget.
#[derive(Debug, Clone)]
enum Op {
    /// A newcomer reserves, or waits (queued under a fresh ticket).
    Arrive(u64),
    /// The n-th hold settles at this permille of its estimate.
    Settle(usize, u64),
    /// The n-th hold is released.
    Release(usize),
    /// The n-th waiter gives up.
    GiveUp(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1u64..400).prop_map(Op::Arrive),
        (0usize..8, 0u64..=1000).prop_map(|(i, p)| Op::Settle(i, p)),
        (0usize..8).prop_map(Op::Release),
        (0usize..8).prop_map(Op::GiveUp),
    ]
}

proptest! {
    /// Laws of a hard budget with waiters, actuals never above estimates:
    /// used never exceeds the limit; a refusal happens only when settled
    /// spend leaves no room (or once halted), a wait only when it does;
    /// and whenever a waiter could go or must be refused, one is woken, so
    /// with no hold in flight no waiter is left asleep.
    #[test]
    fn hard_budgets_with_waiters_never_overshoot_and_never_strand_a_waiter(ops in proptest::collection::vec(op(), 1..300)) {
        let mut c = hard();
        let mut holds: Vec<u64> = Vec::new();
        let mut waiters: Vec<(WaitTicket, u64)> = Vec::new();
        let mut next = 0u64;
        for op in ops {
            match op {
                Op::Arrive(est) => {
                    let settled = c.settled();
                    let halted_before = c.status().halted;
                    match reserve(&mut c, est) {
                        Verdict::Fits => holds.push(est),
                        Verdict::Wait(_) => {
                            prop_assert!(settled + est <= LIMIT);
                            next += 1;
                            c.enqueue(t(next), est);
                            waiters.push((t(next), est));
                        }
                        Verdict::Refused(_) => prop_assert!(halted_before || settled + est > LIMIT),
                    }
                }
                Op::Settle(i, permille) if !holds.is_empty() => {
                    let est = holds.remove(i % holds.len());
                    c.settle(est, est * permille / 1000);
                }
                Op::Release(i) if !holds.is_empty() => {
                    let est = holds.remove(i % holds.len());
                    c.release(est);
                }
                Op::GiveUp(i) if !waiters.is_empty() => {
                    let (ticket, _) = waiters.remove(i % waiters.len());
                    prop_assert!(c.dequeue(ticket));
                }
                _ => {}
            }
            // Serve every waiter a change woke, until none is woken.
            loop {
                let woken = c.wakeable();
                if woken.is_empty() {
                    break;
                }
                for ticket in woken {
                    let Some(at) = waiters.iter().position(|(w, _)| *w == ticket) else { continue };
                    let est = waiters[at].1;
                    let settled = c.settled();
                    let halted_before = c.status().halted;
                    match c.try_reserve(est, Some(ticket), NOW, &mut Vec::new()) {
                        Verdict::Fits => {
                            c.dequeue(ticket);
                            waiters.remove(at);
                            holds.push(est);
                        }
                        Verdict::Refused(_) => {
                            prop_assert!(halted_before || settled + est > LIMIT);
                            c.dequeue(ticket);
                            waiters.remove(at);
                        }
                        Verdict::Wait(_) => prop_assert!(false, "woken {ticket:?} must fit or be refused"),
                    }
                }
            }
            prop_assert!(c.used() <= LIMIT, "used {} over the limit", c.used());
            prop_assert_eq!(c.waiting(), waiters.len());
            if holds.is_empty() {
                prop_assert!(waiters.is_empty(), "waiters stranded with no hold in flight: {:?}", waiters);
            }
        }
    }
}
