//! Waiting for holds in flight, on tokio's paused clock: a settle or a
//! release wakes a waiter, a deadline gives a typed error and leaves
//! nothing behind, a reservation that can never fit is refused at once,
//! and reservations spanning several budgets neither deadlock nor strand.

use std::time::Duration;

use nexus_swarm_runtime::resources::{ResourceKind, ResourceVector};
use nexus_swarm_runtime::usage::{SpendGate, SpendRefused, UsageMeta};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::*;
use crate::cost_ledger::{BudgetAction, ManualClock};

/// 2024-02-29T00:00:00Z, in microseconds.
const NOW: u64 = 1_709_164_800 * 1_000_000;
const PATIENCE: Duration = Duration::from_secs(30);

fn money(micro_usd: u64) -> ResourceVector {
    ResourceVector::new().with(ResourceKind::Cost, micro_usd)
}

fn gate(budgets: &[(&str, u64, Scope)]) -> BudgetHandle {
    let book = BudgetBook::new(PriceTable::new(), Arc::new(ManualClock::new(NOW)), 60_000_000);
    for (id, limit, scope) in budgets {
        book.install(
            Budget::new(*id, *limit, BudgetPeriod::Daily, BudgetAction::Halt).scope(scope.clone()),
            Vec::new(),
        );
    }
    BudgetHandle { book: Arc::new(book) }
}

fn hard(limit: u64) -> BudgetHandle {
    gate(&[("hard", limit, Scope::all())])
}

fn acme() -> UsageMeta {
    UsageMeta::default().tenant("acme")
}

/// A reservation of `micro_usd` that may wait up to `PATIENCE`, on its own
/// task; the hold is settled at once at the estimate if it is granted.
fn waiter(gate: &BudgetHandle, meta: UsageMeta, micro_usd: u64) -> JoinHandle<Result<(), SpendRefused>> {
    let gate = gate.clone();
    tokio::spawn(async move {
        let hold = gate
            .reserve_until(&meta, &money(micro_usd), Instant::now() + PATIENCE)
            .await?;
        gate.settle(hold, &money(micro_usd));
        Ok(())
    })
}

/// Lets spawned tasks run until they wait (paused time does not move).
async fn settle_down() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn settling_a_hold_serves_the_reservation_waiting_for_it() {
    let gate = hard(1000);
    let big = gate.reserve(&acme(), &money(600)).unwrap();
    let started = Instant::now();
    let w = waiter(&gate, acme(), 500);
    settle_down().await;
    assert_eq!(gate.waiting(), 1);
    assert_eq!(gate.status("hard").unwrap().waiting, 1);
    gate.settle(big, &money(450));
    w.await.unwrap().unwrap();
    assert_eq!(Instant::now(), started, "served at the settle, not at a deadline");
    let s = gate.status("hard").unwrap();
    assert_eq!((s.inflight_micro_usd, s.reserved_micro_usd, s.waiting), (950, 0, 0));
    assert!(!s.halted);
    assert_eq!((gate.holds(), gate.waiting()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn releasing_a_hold_serves_the_reservation_waiting_for_it() {
    let gate = hard(1000);
    let big = gate.reserve(&acme(), &money(900)).unwrap();
    let w = waiter(&gate, acme(), 900);
    settle_down().await;
    assert_eq!(gate.waiting(), 1);
    gate.release(big);
    w.await.unwrap().unwrap();
    assert_eq!(gate.status("hard").unwrap().inflight_micro_usd, 900);
}

#[tokio::test(start_paused = true)]
async fn a_wait_past_its_deadline_is_a_typed_error_and_leaves_nothing_behind() {
    let gate = hard(1000);
    let big = gate.reserve(&acme(), &money(900)).unwrap();
    let started = Instant::now();
    let refused = gate
        .reserve_until(&acme(), &money(500), started + Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(
        Instant::now() - started,
        Duration::from_secs(5),
        "it waited until its deadline"
    );
    assert_eq!(
        refused,
        SpendRefused::HoldsInFlight {
            budget: "hard".into(),
            limit: 1000,
            spent: 0,
            reserved: 900,
            requested: 500,
        }
    );
    let s = gate.status("hard").unwrap();
    assert_eq!((s.reserved_micro_usd, s.waiting, s.halted), (900, 0, false));
    assert_eq!((gate.holds(), gate.waiting()), (1, 0), "only the hold in flight");
    gate.release(big);
    let all = gate.reserve(&acme(), &money(1000)).unwrap();
    gate.release(all);
}

#[tokio::test(start_paused = true)]
async fn a_caller_that_stops_waiting_leaves_nothing_behind() {
    let gate = hard(1000);
    let big = gate.reserve(&acme(), &money(900)).unwrap();
    let gave_up = tokio::time::timeout(
        Duration::from_secs(1),
        gate.reserve_until(&acme(), &money(500), Instant::now() + PATIENCE),
    )
    .await;
    assert!(gave_up.is_err(), "still waiting when the caller gave up");
    assert_eq!((gate.holds(), gate.waiting()), (1, 0));
    assert_eq!(gate.status("hard").unwrap().waiting, 0);
    // The queue is empty again: a newcomer is not kept behind a ghost.
    gate.settle(big, &money(400));
    let next = gate.reserve(&acme(), &money(600)).unwrap();
    gate.release(next);
}

#[tokio::test(start_paused = true)]
async fn a_reservation_that_can_never_fit_is_refused_at_once() {
    let gate = hard(1000);
    let spent = gate.reserve(&acme(), &money(600)).unwrap();
    gate.settle(spent, &money(600));
    let started = Instant::now();
    let refused = gate
        .reserve_until(&acme(), &money(401), started + PATIENCE)
        .await
        .unwrap_err();
    assert_eq!(Instant::now(), started, "no wait for what cannot fit");
    assert!(
        matches!(refused, SpendRefused::BudgetExceeded { requested: 401, .. }),
        "{refused:?}"
    );
    assert!(gate.status("hard").unwrap().halted);
    assert_eq!(gate.waiting(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_synchronous_reserve_never_waits_and_never_halts_for_holds() {
    let gate = hard(1000);
    let big = gate.reserve(&acme(), &money(600)).unwrap();
    let refused = gate.reserve(&acme(), &money(500)).unwrap_err();
    assert!(matches!(refused, SpendRefused::HoldsInFlight { .. }), "{refused:?}");
    assert!(!gate.status("hard").unwrap().halted);
    gate.settle(big, &money(100));
    let next = gate.reserve(&acme(), &money(500)).unwrap();
    gate.release(next);
}

#[tokio::test(start_paused = true)]
async fn waiters_that_can_no_longer_fit_are_refused_when_the_spend_settles() {
    let gate = hard(1000);
    let a = gate.reserve(&acme(), &money(600)).unwrap();
    let b = gate.reserve(&acme(), &money(300)).unwrap();
    let big = waiter(&gate, acme(), 450);
    let small = waiter(&gate, acme(), 50);
    settle_down().await;
    assert_eq!(gate.waiting(), 2);
    let started = Instant::now();
    gate.settle(a, &money(600));
    let refused = big.await.unwrap().unwrap_err();
    assert!(matches!(refused, SpendRefused::BudgetExceeded { .. }), "{refused:?}");
    assert!(
        small.await.unwrap().is_err(),
        "halted: the rest of the period is refused"
    );
    assert_eq!(Instant::now(), started, "refused at the settle, not at their deadline");
    gate.release(b);
    assert_eq!((gate.holds(), gate.waiting()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn reservations_spanning_several_budgets_are_served_without_deadlock() {
    let gate = gate(&[("all", 1000, Scope::all()), ("acme", 500, Scope::all().tenant("acme"))]);
    let other = UsageMeta::default().tenant("other");
    let first = gate.reserve(&acme(), &money(400)).unwrap();
    // Held back by "all" only, then by both (and behind the first waiter in "all").
    let w_other = waiter(&gate, other.clone(), 700);
    settle_down().await;
    let w_acme = waiter(&gate, acme(), 200);
    settle_down().await;
    assert_eq!(gate.waiting(), 2);
    assert_eq!(gate.status("all").unwrap().waiting, 2);
    assert_eq!(gate.status("acme").unwrap().waiting, 1);
    gate.release(first);
    w_other.await.unwrap().unwrap();
    w_acme.await.unwrap().unwrap();
    assert_eq!(gate.status("all").unwrap().inflight_micro_usd, 900);
    assert_eq!(gate.status("acme").unwrap().inflight_micro_usd, 200);
    assert_eq!((gate.holds(), gate.waiting()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn removing_a_budget_lets_its_waiters_decide_again() {
    let gate = hard(1000);
    let big = gate.reserve(&acme(), &money(900)).unwrap();
    let w = waiter(&gate, acme(), 500);
    settle_down().await;
    assert_eq!(gate.waiting(), 1);
    assert!(gate.book.uninstall("hard"));
    w.await.unwrap().unwrap();
    assert_eq!(gate.waiting(), 0);
    gate.release(big);
}
