use std::time::Duration;

use nexus_swarm_runtime::resources::ResourceKind::{self, Cost, InputTokens, LlmRequests, OutputTokens};
use nexus_swarm_runtime::resources::ResourceVector;
use nexus_swarm_runtime::scope::Scope;
use nexus_swarm_runtime::usage::{SpendGate, SpendRefused, UsageMeta};
use proptest::prelude::*;

use super::*;

/// system (100) > tenant (60) > agent (40), no periods, no borrowing.
fn three_levels() -> (QuotaTable, QuotaHandle, ManualClock) {
    let (clock, hand) = QuotaClock::manual();
    let mut table = QuotaTable::new(clock);
    table
        .define_all(vec![
            QuotaSpec::child("agent", "tenant", InputTokens, 40),
            QuotaSpec::root("system", InputTokens, 100),
            QuotaSpec::child("tenant", "system", InputTokens, 60),
        ])
        .unwrap();
    let handle = table.handle();
    (table, handle, hand)
}

fn used(h: &QuotaHandle, q: &str) -> u64 {
    h.report(q).unwrap().current
}

fn usage(h: &QuotaHandle) -> Vec<(QuotaId, u64, u64, u64, bool)> {
    h.reports()
        .into_iter()
        .map(|r| (r.id, r.current, r.limit, r.borrow_ceiling, r.recalling))
        .collect()
}

#[test]
fn a_charge_goes_to_every_level() {
    let (_t, h, _) = three_levels();
    let agent = h.try_consume("agent", 30).unwrap();
    let tenant = h.try_consume("tenant", 10).unwrap();
    assert_eq!(
        (used(&h, "agent"), used(&h, "tenant"), used(&h, "system")),
        (30, 40, 40)
    );
    h.settle(agent, 25).unwrap();
    assert_eq!(
        (used(&h, "agent"), used(&h, "tenant"), used(&h, "system")),
        (25, 35, 35)
    );
    h.release(tenant).unwrap();
    assert_eq!(
        (used(&h, "agent"), used(&h, "tenant"), used(&h, "system")),
        (25, 25, 25)
    );
}

/// A receipt gives its charge back at the quota and ancestors it was made
/// at, whichever handle or ref is used: two charges at different levels
/// released in any order leave every level exactly where it started.
#[test]
fn a_receipt_gives_back_at_the_levels_it_was_charged() {
    let (_t, h, _) = three_levels();
    let at_agent = h.try_consume("agent", 7).unwrap();
    let at_tenant = h.resolve("tenant").unwrap().try_consume(11).unwrap();
    assert_eq!(h.quota_of(&at_agent).unwrap().as_str(), "agent");
    assert_eq!(h.quota_of(&at_tenant).unwrap().as_str(), "tenant");
    // Released through a ref on another quota: still the tenant's charge.
    h.resolve("agent").unwrap().release(at_tenant).unwrap();
    assert_eq!((used(&h, "agent"), used(&h, "tenant"), used(&h, "system")), (7, 7, 7));
    h.release(at_agent).unwrap();
    assert_eq!((used(&h, "agent"), used(&h, "tenant"), used(&h, "system")), (0, 0, 0));
    let peak = h.report("agent").unwrap().peak;
    assert_eq!(peak, 7, "a release records the usage it ends as a peak");
}

/// Dropping a receipt keeps its charge (the usage happened); settling above
/// the amount charged adds the difference at every level, past the limit.
#[test]
fn a_dropped_receipt_keeps_its_charge_and_settling_above_adds_the_rest() {
    let (_t, h, _) = three_levels();
    // The receipt is dropped at once.
    let _ = h.try_consume("agent", 30).unwrap();
    assert_eq!(
        (used(&h, "agent"), used(&h, "tenant"), used(&h, "system")),
        (30, 30, 30)
    );
    let estimate = h.try_consume("agent", 5).unwrap();
    assert_eq!(estimate.amount(), 5);
    h.settle(estimate, 15).unwrap();
    let agent = h.report("agent").unwrap();
    assert_eq!((agent.current, agent.limit), (45, 40));
    assert_eq!((used(&h, "tenant"), used(&h, "system")), (45, 45));
    assert!(matches!(h.try_consume("agent", 1), Err(QuotaError::Exhausted { .. })));
    let same = h.try_consume("tenant", 2).unwrap();
    h.settle(same, 2).unwrap();
    assert_eq!(used(&h, "tenant"), 47);
}

#[test]
fn a_refusal_at_any_level_charges_no_level() {
    let (mut t, h, _) = three_levels();
    // Refused at the leaf.
    h.try_consume("agent", 30).unwrap();
    let before = usage(&h);
    let err = h.try_consume("agent", 11).unwrap_err();
    assert!(
        matches!(err, QuotaError::Exhausted { ref quota, used: 30, requested: 11, .. } if quota.as_str() == "agent")
    );
    assert_eq!(usage(&h), before);

    // Refused at the root after the two lower levels admitted it.
    t.adjust("system", 35).unwrap();
    let before = usage(&h);
    let err = h.try_consume("agent", 6).unwrap_err();
    assert!(matches!(err, QuotaError::Exhausted { ref quota, limit: 35, used: 30, .. } if quota.as_str() == "system"));
    assert_eq!(usage(&h), before);
    h.try_consume("agent", 5).unwrap();
    assert_eq!(used(&h, "system"), 35);
}

#[test]
fn invalid_input_is_a_typed_error_and_changes_nothing() {
    let (mut t, h, _) = three_levels();
    h.try_consume("agent", 10).unwrap();
    let before = usage(&h);
    let tree_before = h.tree();

    assert!(matches!(h.try_consume("agent", 0), Err(QuotaError::ZeroAmount(_))));
    assert!(matches!(
        h.try_consume("agent", MAX_QUOTA_AMOUNT + 1),
        Err(QuotaError::AmountTooLarge { .. })
    ));
    assert!(matches!(h.try_consume("nobody", 1), Err(QuotaError::UnknownQuota(_))));
    // A receipt from another tree (same names, same shape) is refused.
    let (_other_table, other, _) = three_levels();
    let foreign = other.try_consume("agent", 5).unwrap();
    assert!(matches!(
        h.release(foreign),
        Err(QuotaError::ForeignCharge { amount: 5, .. })
    ));
    assert_eq!(used(&other, "agent"), 5, "a refused receipt keeps its charge");
    assert!(matches!(h.resolve("nobody"), Err(QuotaError::UnknownQuota(_))));

    assert!(matches!(t.adjust("nobody", 5), Err(QuotaError::UnknownQuota(_))));
    assert!(matches!(t.adjust("agent", 0), Err(QuotaError::ZeroAmount(_))));
    assert!(matches!(
        t.adjust("agent", MAX_QUOTA_AMOUNT + 1),
        Err(QuotaError::AmountTooLarge { .. })
    ));
    assert!(matches!(
        t.set_borrow_ceiling("system", 5),
        Err(QuotaError::RootCannotBorrow(_))
    ));
    assert!(matches!(
        t.set_borrow_ceiling("nobody", 5),
        Err(QuotaError::UnknownQuota(_))
    ));

    type Expect = fn(&QuotaError) -> bool;
    let bad_batches: Vec<(Vec<QuotaSpec>, Expect)> = vec![
        (vec![QuotaSpec::child("x", "ghost", InputTokens, 5)], |e| {
            matches!(e, QuotaError::UnknownParent { .. })
        }),
        (vec![QuotaSpec::root("system", InputTokens, 5)], |e| {
            matches!(e, QuotaError::AlreadyDefined(_))
        }),
        (
            vec![
                QuotaSpec::root("y", InputTokens, 5),
                QuotaSpec::root("y", InputTokens, 6),
            ],
            |e| matches!(e, QuotaError::AlreadyDefined(_)),
        ),
        (vec![QuotaSpec::root("", InputTokens, 5)], |e| {
            matches!(e, QuotaError::EmptyId)
        }),
        (vec![QuotaSpec::root("z", InputTokens, 0)], |e| {
            matches!(e, QuotaError::ZeroAmount(_))
        }),
        (vec![QuotaSpec::root("z", InputTokens, MAX_QUOTA_AMOUNT + 1)], |e| {
            matches!(e, QuotaError::AmountTooLarge { .. })
        }),
        (vec![QuotaSpec::root("z", InputTokens, 5).borrow_ceiling(1)], |e| {
            matches!(e, QuotaError::RootCannotBorrow(_))
        }),
        (vec![QuotaSpec::child("z", "tenant", Cost, 5)], |e| {
            matches!(e, QuotaError::KindMismatch { .. })
        }),
        (
            vec![QuotaSpec::root("z", InputTokens, 5).period(Duration::from_micros(10))],
            |e| matches!(e, QuotaError::PeriodTooShort { .. }),
        ),
        (
            vec![QuotaSpec::child("self", "self", InputTokens, 5)],
            |e| matches!(e, QuotaError::Cycle(p) if p.len() == 2),
        ),
        // A valid quota first, then a cycle a -> b -> c -> a: none is defined.
        (
            vec![
                QuotaSpec::child("fine", "system", InputTokens, 5),
                QuotaSpec::child("a", "c", InputTokens, 5),
                QuotaSpec::child("b", "a", InputTokens, 5),
                QuotaSpec::child("c", "b", InputTokens, 5),
            ],
            |e| matches!(e, QuotaError::Cycle(p) if p.len() == 4 && p.first() == p.last()),
        ),
    ];
    for (batch, expected) in bad_batches {
        let err = t.define_all(batch.clone()).unwrap_err();
        assert!(expected(&err), "unexpected error {err:?} for {batch:?}");
    }

    // Too deep: a chain of MAX_QUOTA_DEPTH + 1 levels.
    let mut chain = vec![QuotaSpec::root("d0", LlmRequests, 5)];
    for i in 1..=MAX_QUOTA_DEPTH {
        chain.push(QuotaSpec::child(format!("d{i}"), format!("d{}", i - 1), LlmRequests, 5));
    }
    assert!(matches!(t.define_all(chain), Err(QuotaError::TooDeep { .. })));

    assert_eq!(usage(&h), before);
    assert_eq!(h.tree(), tree_before);
    assert_eq!(t.reports().len(), 3);
}

#[test]
fn periods_reset_usage_and_keep_the_peak() {
    let (clock, hand) = QuotaClock::manual();
    let mut t = QuotaTable::new(clock);
    t.define_all(vec![
        QuotaSpec::root("per-minute", OutputTokens, 100).period(Duration::from_secs(60)),
        QuotaSpec::child("per-second", "per-minute", OutputTokens, 10).period(Duration::from_secs(1)),
    ])
    .unwrap();
    let h = t.handle();
    h.try_consume("per-second", 10).unwrap();
    assert!(matches!(
        h.try_consume("per-second", 1),
        Err(QuotaError::Exhausted { .. })
    ));
    assert_eq!(h.report("per-second").unwrap().resets_in, Some(Duration::from_secs(1)));

    hand.advance(Duration::from_millis(999));
    assert!(h.try_consume("per-second", 1).is_err());
    hand.advance(Duration::from_millis(1));
    for _ in 0..9 {
        h.try_consume("per-second", 10).unwrap();
        hand.advance(Duration::from_secs(1));
    }
    // 100 in the minute so far: the minute refuses though the second is fresh.
    assert!(matches!(
        h.try_consume("per-second", 1),
        Err(QuotaError::Exhausted { ref quota, .. }) if quota.as_str() == "per-minute"
    ));
    assert_eq!(used(&h, "per-second"), 0);
    hand.advance(Duration::from_secs(50));
    let seven = h.try_consume("per-second", 7).unwrap();
    let minute = h.report("per-minute").unwrap();
    assert_eq!((minute.current, minute.peak), (7, 100));
    // A release after a level's period ended gives nothing back there (the
    // reset dropped the charge), and gives back at the levels still in the
    // period it was made in.
    hand.advance(Duration::from_secs(1));
    h.try_consume("per-second", 2).unwrap();
    h.release(seven).unwrap();
    assert_eq!((used(&h, "per-second"), used(&h, "per-minute")), (2, 2));
    // In the next minute, the first charge of the old one gives nothing back.
    let old = h.try_consume("per-second", 1).unwrap();
    hand.advance(Duration::from_secs(60));
    h.try_consume("per-second", 4).unwrap();
    h.release(old).unwrap();
    assert_eq!((used(&h, "per-second"), used(&h, "per-minute")), (4, 4));
}

#[test]
fn a_sweep_rewrites_idle_counters_to_the_current_period() {
    let (clock, hand) = QuotaClock::manual();
    let mut t = QuotaTable::new(clock);
    t.define(QuotaSpec::root("q", Cost, 10).period(Duration::from_millis(1)))
        .unwrap();
    let h = t.handle();
    h.try_consume("q", 10).unwrap();
    assert_eq!(t.sweep(), 0);
    hand.advance(Duration::from_millis(20_000));
    assert_eq!(t.sweep(), 1);
    assert_eq!(t.sweep(), 0);
    // 2^16 periods later the 16-bit tag is the same again: the sweep is what
    // keeps an idle counter from looking current.
    hand.advance(Duration::from_millis(65_536));
    assert_eq!(used(&h, "q"), 0);
    h.try_consume("q", 10).unwrap();
}

/// parent (100) with children a (50, may borrow 30) and b (50).
fn lending() -> (QuotaTable, QuotaHandle) {
    let (clock, _) = QuotaClock::manual();
    let mut t = QuotaTable::new(clock);
    t.define_all(vec![
        QuotaSpec::root("parent", Cost, 100),
        QuotaSpec::child("a", "parent", Cost, 50).borrow_ceiling(30),
        QuotaSpec::child("b", "parent", Cost, 50),
    ])
    .unwrap();
    let h = t.handle();
    (t, h)
}

/// An amount larger than some level can ever hold (its limit plus its
/// ceiling) is refused with a typed error before anything is charged: no
/// level's usage or peak moves and no lender starts recalling. A refusal
/// after lower levels admitted the charge leaves their peaks alone too.
#[test]
fn a_refused_charge_changes_no_usage_peak_or_recall() {
    let (mut t, h) = lending();
    t.define(QuotaSpec::child("big", "parent", Cost, 500)).unwrap();
    h.try_consume("a", 70).unwrap(); // a borrows 20 of parent's 100
    let before = h.reports();

    // "big" alone could take 200, but its parent can never hold it.
    let err = h.try_consume("big", 200).unwrap_err();
    assert_eq!(
        err,
        QuotaError::AboveCapacity {
            quota: "parent".into(),
            kind: Cost,
            limit: 100,
            borrow_ceiling: 0,
            requested: 200,
        }
    );
    // Above a's own limit plus ceiling (80).
    assert!(matches!(
        h.try_consume("a", 81),
        Err(QuotaError::AboveCapacity { ref quota, limit: 50, borrow_ceiling: 30, .. }) if quota.as_str() == "a"
    ));
    assert_eq!(h.reports(), before);
    // a keeps its loan and may still borrow: nothing was recalled.
    let five = h.try_consume("a", 5).unwrap();
    h.release(five).unwrap();

    // Fits every level's capacity, refused by the parent's usage: "big" is
    // charged, then given back, and that is no peak of its own.
    assert!(matches!(
        h.try_consume("big", 40),
        Err(QuotaError::Exhausted { ref quota, .. }) if quota.as_str() == "parent"
    ));
    assert_eq!(h.report("big").unwrap().peak, 0);

    // Through the spend gate: refused for the leaf's capacity, or by a
    // later quota after the others were charged; no peak either way.
    let (_t, h) = gated();
    let meta = UsageMeta::default().tenant("acme").agent("bot");
    let before = h.reports();
    assert!(matches!(
        h.reserve(&meta, &tokens(10).with(Cost, 1_001)),
        Err(SpendRefused::QuotaExceeded { ref quota, requested: 1_001, .. }) if quota == "spend"
    ));
    assert!(matches!(
        h.reserve(&meta, &tokens(501)),
        Err(SpendRefused::QuotaExceeded { ref quota, requested: 501, .. }) if quota == "bot"
    ));
    h.try_consume("spend", 995).unwrap();
    let spent = h.reports();
    assert!(matches!(
        h.reserve(&meta, &tokens(10).with(Cost, 6)),
        Err(SpendRefused::QuotaExceeded { ref quota, used: 995, .. }) if quota == "spend"
    ));
    assert_eq!(h.reports(), spent);
    assert_eq!(
        h.report("bot").unwrap().peak,
        before.iter().find(|r| r.id.as_str() == "bot").unwrap().peak
    );
    assert_eq!(h.holds_in_flight(), 0);
}

#[test]
fn borrowing_takes_idle_parent_capacity_up_to_the_ceiling() {
    let (_t, h) = lending();
    h.try_consume("a", 80).unwrap();
    let a = h.report("a").unwrap();
    assert_eq!((a.current, a.borrowed, a.utilization_permille), (80, 30, 1600));
    assert!(matches!(
        h.try_consume("a", 1),
        Err(QuotaError::Exhausted { ref quota, borrow_ceiling: 30, .. }) if quota.as_str() == "a"
    ));
    // b may not borrow at all.
    h.try_consume("b", 20).unwrap();
    assert!(matches!(
        h.try_consume("b", 1),
        Err(QuotaError::Exhausted { ref quota, .. }) if quota.as_str() == "parent"
    ));
}

#[test]
fn borrowing_needs_idle_capacity_in_the_parent() {
    let (_t, h) = lending();
    h.try_consume("b", 50).unwrap();
    // a may borrow 30 by its ceiling, but the parent has nothing idle.
    let err = h.try_consume("a", 60).unwrap_err();
    assert!(matches!(err, QuotaError::Exhausted { ref quota, .. } if quota.as_str() == "parent"));
    assert_eq!(used(&h, "a"), 0);
    // A borrower refused is not a lender in need: no recall.
    assert!(!h.report("parent").unwrap().recalling);
    h.try_consume("a", 50).unwrap();
}

#[test]
fn a_lender_in_need_recalls_its_loans() {
    let (_t, h) = lending();
    let first = h.try_consume("a", 45).unwrap();
    let loan = h.try_consume("a", 35).unwrap(); // borrows 30
    h.try_consume("b", 20).unwrap(); // parent full
    // b is within its own 50 but the parent is full because of a's loan.
    assert!(matches!(
        h.try_consume("b", 10),
        Err(QuotaError::Exhausted { ref quota, .. }) if quota.as_str() == "parent"
    ));
    assert!(h.report("parent").unwrap().recalling);

    // a releases 10 and may not borrow it again: it goes to b.
    h.settle(loan, 25).unwrap();
    assert!(matches!(
        h.try_consume("a", 5),
        Err(QuotaError::BorrowRecalled { ref quota, ref lender }) if quota.as_str() == "a" && lender.as_str() == "parent"
    ));
    h.try_consume("b", 10).unwrap();
    // Within its own limit a is still served (the recall is about loans).
    h.settle(first, 20).unwrap(); // a at 45, b at 30
    h.try_consume("a", 5).unwrap();
    // Every loan is repaid: the next borrow lifts the recall.
    assert!(h.report("parent").unwrap().recalling);
    h.try_consume("a", 15).unwrap(); // a at 65: borrows 15
    let parent = h.report("parent").unwrap();
    assert!(!parent.recalling);
    assert_eq!((parent.current, used(&h, "a"), used(&h, "b")), (95, 65, 30));
}

#[test]
fn the_sweep_lifts_a_recall_once_loans_are_repaid() {
    let (mut t, h) = lending();
    let a = h.try_consume("a", 80).unwrap();
    h.try_consume("b", 20).unwrap();
    assert!(h.try_consume("b", 1).is_err());
    assert!(h.report("parent").unwrap().recalling);
    t.sweep();
    assert!(h.report("parent").unwrap().recalling, "a still borrows");
    h.settle(a, 50).unwrap();
    t.sweep();
    assert!(!h.report("parent").unwrap().recalling);
}

#[test]
fn adjust_takes_effect_at_once_and_keeps_usage() {
    let (mut t, h, _) = three_levels();
    let forty = h.try_consume("agent", 40).unwrap();
    assert_eq!(t.adjust("agent", 50).unwrap(), 40);
    h.try_consume("agent", 10).unwrap();
    assert_eq!(t.adjust("agent", 20).unwrap(), 50);
    assert_eq!(used(&h, "agent"), 50);
    assert!(h.try_consume("agent", 1).is_err());
    h.settle(forty, 9).unwrap();
    h.try_consume("agent", 1).unwrap();
    assert_eq!(t.set_borrow_ceiling("agent", 10).unwrap(), 0);
    h.try_consume("agent", 10).unwrap();
    assert_eq!(h.report("agent").unwrap().borrowed, 10);
}

#[test]
fn reports_form_a_tree_with_peaks_and_utilization() {
    let (t, h, _) = three_levels();
    let agent = h.resolve("agent").unwrap();
    let thirty = agent.try_consume(30).unwrap();
    agent.settle(thirty, 10).unwrap();
    let tree = t.tree();
    assert_eq!(tree.len(), 1);
    let ids: Vec<&str> = tree[0].iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["system", "tenant", "agent"]);
    let system = &tree[0].quota;
    assert_eq!(
        (system.current, system.peak, system.utilization_permille),
        (10, 30, 100)
    );
    let leaf = &tree[0].children[0].children[0].quota;
    assert_eq!(
        (leaf.limit, leaf.current, leaf.peak, leaf.utilization_permille),
        (40, 10, 30, 250)
    );
    assert_eq!(leaf.parent.as_ref().map(QuotaId::as_str), Some("tenant"));
}

/// system {} > acme {tenant} > triage {tenant, workflow}, plus a per-agent
/// quota under acme and a cost quota for every request.
fn gated() -> (QuotaTable, QuotaHandle) {
    let (clock, _) = QuotaClock::manual();
    let mut t = QuotaTable::new(clock);
    t.define_all(vec![
        QuotaSpec::root("system", InputTokens, 1000).selector(Scope::all()),
        QuotaSpec::child("acme", "system", InputTokens, 500).selector(Scope::all().tenant("acme")),
        QuotaSpec::child("triage", "acme", InputTokens, 300).selector(Scope::all().tenant("acme").workflow("triage")),
        QuotaSpec::child("bot", "acme", InputTokens, 200).selector(Scope::all().tenant("acme").agent("bot")),
        QuotaSpec::root("spend", Cost, 1_000).selector(Scope::all()),
        // No selector: never charged by the gate.
        QuotaSpec::child("manual", "system", InputTokens, 1),
    ])
    .unwrap();
    let h = t.handle();
    (t, h)
}

fn tokens(n: u64) -> ResourceVector {
    ResourceVector::new().with(InputTokens, n)
}

#[test]
fn the_gate_charges_the_most_specific_quotas_and_their_ancestors_once() {
    let (_t, h) = gated();
    let meta = UsageMeta::default().tenant("acme").workflow("triage").agent("bot");
    let hold = h.reserve(&meta, &tokens(100).with(Cost, 40)).unwrap();
    // triage and bot both match: acme and system are charged once.
    let got: Vec<(String, u64)> = h.reports().into_iter().map(|r| (r.id.to_string(), r.current)).collect();
    assert_eq!(
        got,
        [
            ("acme".into(), 100),
            ("bot".into(), 100),
            ("manual".into(), 0),
            ("spend".into(), 40),
            ("system".into(), 100),
            ("triage".into(), 100),
        ]
    );
    assert_eq!(h.holds_in_flight(), 1);
    SpendGate::settle(&h, hold, &tokens(60).with(Cost, 25));
    assert_eq!(
        (
            used(&h, "triage"),
            used(&h, "bot"),
            used(&h, "system"),
            used(&h, "spend")
        ),
        (60, 60, 60, 25)
    );
    assert_eq!(h.holds_in_flight(), 0);

    // Another tenant is charged only to the system-wide quotas.
    let other = UsageMeta::default().tenant("globex");
    let hold = h.reserve(&other, &tokens(10)).unwrap();
    assert_eq!((used(&h, "system"), used(&h, "acme")), (70, 60));
    SpendGate::release(&h, hold);
    assert_eq!(used(&h, "system"), 60);
}

#[test]
fn the_gate_refuses_all_or_nothing_and_names_the_quota() {
    let (_t, h) = gated();
    let meta = UsageMeta::default().tenant("acme").agent("bot");
    let before = usage(&h);
    let err = h.reserve(&meta, &tokens(201).with(Cost, 10)).unwrap_err();
    assert!(matches!(
        err,
        SpendRefused::QuotaExceeded { ref quota, kind: ResourceKind::InputTokens, limit: 200, used: 0, requested: 201 }
            if quota == "bot"
    ));
    assert_eq!(usage(&h), before);
    assert_eq!(h.holds_in_flight(), 0);
    // The cost quota refuses too, after tokens were charged: all given back.
    let err = h.reserve(&meta, &tokens(10).with(Cost, 1_001)).unwrap_err();
    assert!(matches!(err, SpendRefused::QuotaExceeded { ref quota, .. } if quota == "spend"));
    assert_eq!(usage(&h), before);
}

#[test]
fn settle_charges_actuals_above_the_estimate_and_unestimated_kinds() {
    let (_t, h) = gated();
    let meta = UsageMeta::default().tenant("acme");
    let hold = h.reserve(&meta, &tokens(100)).unwrap();
    // The spend happened: charged even past acme's limit.
    SpendGate::settle(&h, hold, &tokens(550).with(Cost, 7).with(OutputTokens, 3));
    assert_eq!((used(&h, "acme"), used(&h, "system"), used(&h, "spend")), (550, 550, 7));
    assert_eq!(h.report("acme").unwrap().borrowed, 50);
    // Kinds no quota selects are not limited by the gate.
    let hold = h
        .reserve(&meta, &ResourceVector::new().with(OutputTokens, 1 << 40))
        .unwrap();
    SpendGate::release(&h, hold);
}

#[derive(Debug, Clone)]
enum Op {
    Consume(usize, u64),
    /// Settles the receipt at this position (mod the number held) at this
    /// share of its amount, in percent (0: a release).
    Settle(usize, u64),
    /// Drops the receipt at this position: its charge stays.
    Drop(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0usize..4, 1u64..40).prop_map(|(q, n)| Op::Consume(q, n)),
        2 => (0usize..64, 0u64..=100).prop_map(|(i, p)| Op::Settle(i, p)),
        1 => (0usize..64).prop_map(Op::Drop),
    ]
}

proptest! {
    /// Random charges, settlements (down to 0: releases) and dropped
    /// receipts on root (100) > {a (50, borrows 30), b (40, borrows 10)},
    /// a > leaf (30, borrows 20): each level's usage is exactly the sum of
    /// the successful charges through it minus what their receipts gave
    /// back, never above its limit plus ceiling, and a refused operation
    /// changes nothing.
    #[test]
    fn usage_is_the_sum_of_successful_charges(ops in proptest::collection::vec(op(), 1..200)) {
        let (clock, _) = QuotaClock::manual();
        let mut t = QuotaTable::new(clock);
        t.define_all(vec![
            QuotaSpec::root("root", Cost, 100),
            QuotaSpec::child("a", "root", Cost, 50).borrow_ceiling(30),
            QuotaSpec::child("b", "root", Cost, 40).borrow_ceiling(10),
            QuotaSpec::child("leaf", "a", Cost, 30).borrow_ceiling(20),
        ]).unwrap();
        let h = t.handle();
        let names = ["root", "a", "b", "leaf"];
        let paths: [&[usize]; 4] = [&[0], &[1, 0], &[2, 0], &[3, 1, 0]];
        let caps = [100u64, 80, 50, 50];
        let mut model = [0u64; 4];
        let mut held: Vec<(usize, QuotaCharge)> = Vec::new();
        for op in ops {
            let before: Vec<u64> = names.iter().map(|n| used(&h, n)).collect();
            match op {
                Op::Consume(q, n) => {
                    let fits = paths[q].iter().all(|&l| model[l] + n <= caps[l]);
                    match h.try_consume(names[q], n) {
                        Ok(charge) => {
                            prop_assert!(fits);
                            prop_assert_eq!(charge.amount(), n);
                            let quota = h.quota_of(&charge).unwrap();
                            prop_assert_eq!(quota.as_str(), names[q]);
                            for &l in paths[q] { model[l] += n; }
                            held.push((q, charge));
                        }
                        Err(QuotaError::BorrowRecalled { .. }) => {}
                        Err(e) => {
                            prop_assert!(!fits, "refused {:?} though it fits", e);
                            let exhausted = matches!(e, QuotaError::Exhausted { .. });
                            prop_assert!(exhausted, "{:?}", e);
                        }
                    }
                }
                Op::Settle(i, percent) if !held.is_empty() => {
                    let (q, charge) = held.swap_remove(i % held.len());
                    let used_now = charge.amount() * percent / 100;
                    let back = charge.amount() - used_now;
                    h.settle(charge, used_now).unwrap();
                    for &l in paths[q] { model[l] -= back; }
                }
                Op::Drop(i) if !held.is_empty() => {
                    // Removed from `held` and dropped at once.
                    let _ = held.swap_remove(i % held.len());
                }
                Op::Settle(..) | Op::Drop(_) => {}
            }
            let after: Vec<u64> = names.iter().map(|n| used(&h, n)).collect();
            prop_assert_eq!(&after, &model.to_vec(), "before {:?}", before);
            for l in 0..4 { prop_assert!(model[l] <= caps[l]); }
        }
    }
}

#[tokio::test]
async fn a_bad_sweep_or_flush_interval_is_refused_naming_the_field() {
    use nexus_swarm_runtime::config::{NexusConfig, QuotaConfig};

    let dir = tempfile::tempdir().unwrap();
    let mut base = NexusConfig::default();
    base.node.data_dir = dir.path().to_path_buf();
    let refused = |config: &NexusConfig, want: &str| match QuotaKeeperArgs::from_config(config) {
        Err(QuotaError::InvalidConfig { field, .. }) => assert_eq!(field, want),
        other => panic!("expected InvalidConfig at {want}, got {other:?}"),
    };

    let mut zero = base.clone();
    zero.quotas.sweep_interval = Duration::ZERO;
    refused(&zero, "quotas.sweep_interval");
    let mut too_long = base.clone();
    too_long.quotas.sweep_interval = Duration::from_secs(60);
    too_long.quotas.quotas = vec![QuotaConfig {
        id: "per-ms".into(),
        parent: None,
        kind: "cost".into(),
        limit: 5,
        period: Some(Duration::from_millis(1)),
        borrow_ceiling: 0,
        selector: None,
    }];
    refused(&too_long, "quotas.sweep_interval");
    let mut no_flush = base.clone();
    no_flush.quotas.flush_interval = Duration::ZERO;
    refused(&no_flush, "quotas.flush_interval");
    // Refused before the store is opened: nothing was created.
    assert!(!dir.path().join(STORE_FILE).exists());

    // Built in code with a zero interval, the keeper refuses to start
    // rather than run without sweeps or writes.
    let args = QuotaKeeperArgs::default().sweep_interval(Duration::ZERO);
    assert!(QuotaKeeper::spawn_unsupervised(args).await.is_err());
    let args = QuotaKeeperArgs::open(QuotaClock::tokio(), dir.path())
        .unwrap()
        .flush_interval(Duration::ZERO);
    assert!(QuotaKeeper::spawn_unsupervised(args).await.is_err());
    // Without a store the flush interval is not used.
    let args = QuotaKeeperArgs::default().flush_interval(Duration::ZERO);
    let (keeper, join) = QuotaKeeper::spawn_unsupervised(args).await.unwrap();
    assert_eq!(keeper.flush().await, Ok(0));
    keeper.actor().unwrap().stop(None);
    join.await.unwrap();
}

/// A keeper on a data directory, its quotas defined, spawned unsupervised.
async fn persistent_keeper(
    dir: &std::path::Path,
    flush_every: Duration,
) -> (QuotaHandle, ractor::concurrency::JoinHandle<()>) {
    let args = QuotaKeeperArgs::open(QuotaClock::tokio(), dir)
        .unwrap()
        .with_quotas(vec![
            QuotaSpec::root("system", LlmRequests, 1_000),
            QuotaSpec::child("hourly", "system", LlmRequests, 100).period(Duration::from_secs(3_600)),
        ])
        .unwrap()
        .flush_interval(flush_every);
    QuotaKeeper::spawn_unsupervised(args).await.unwrap()
}

fn current_of(keeper: &QuotaHandle, quota: &str) -> u64 {
    keeper.report(quota).unwrap().current
}

/// A clean stop writes what no timer wrote yet; a restarted keeper on the
/// same directory resumes it.
#[tokio::test(start_paused = true)]
async fn a_stopped_keeper_writes_its_usage_and_a_new_one_resumes_it() {
    let dir = tempfile::tempdir().unwrap();
    let (keeper, join) = persistent_keeper(dir.path(), Duration::from_secs(3_600)).await;
    keeper.try_consume("hourly", 7).unwrap();
    keeper.try_consume("system", 3).unwrap();
    keeper.actor().unwrap().stop(None);
    join.await.unwrap();
    drop(keeper);

    let (keeper, join) = persistent_keeper(dir.path(), Duration::from_secs(3_600)).await;
    assert_eq!((current_of(&keeper, "hourly"), current_of(&keeper, "system")), (7, 10));
    assert_eq!(keeper.flush().await, Ok(0), "nothing changed since the restart");
    keeper.try_consume("hourly", 1).unwrap();
    assert_eq!(keeper.flush().await, Ok(2));
    keeper.actor().unwrap().stop(None);
    join.await.unwrap();
}

/// The keeper's timer writes usage every flush interval; a keeper killed
/// (no clean stop) loses only what was charged since the last write.
#[tokio::test(start_paused = true)]
async fn a_killed_keeper_loses_only_the_charges_since_its_last_timed_write() {
    let dir = tempfile::tempdir().unwrap();
    let (keeper, join) = persistent_keeper(dir.path(), Duration::from_secs(1)).await;
    keeper.try_consume("hourly", 5).unwrap();
    // Past one interval: the timer's write is queued before this call.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    ractor::call!(keeper.actor().unwrap(), QuotaKeeperMsg::Tree).unwrap();
    keeper.try_consume("hourly", 4).unwrap();
    keeper.actor().unwrap().kill();
    let _ = join.await;
    drop(keeper);

    let (keeper, join) = persistent_keeper(dir.path(), Duration::from_secs(1)).await;
    assert_eq!(
        current_of(&keeper, "hourly"),
        5,
        "the timed write is kept, the 4 after it are lost"
    );
    assert_eq!(current_of(&keeper, "system"), 5);
    keeper.actor().unwrap().stop(None);
    join.await.unwrap();
}

#[tokio::test]
async fn a_keeper_from_config_keeps_usage_under_the_data_directory() {
    use nexus_swarm_runtime::config::NexusConfig;

    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[node]\ndata_dir = {:?}\n[quotas]\nflush_interval = \"250ms\"\n\
         [[quotas.quotas]]\nid = \"daily\"\nkind = \"cost\"\nlimit = 1000\nperiod = \"1day\"\n",
        dir.path().join("data")
    );
    let config = NexusConfig::from_toml_str(&text).unwrap();
    assert_eq!(config.quotas.flush_interval, Duration::from_millis(250));
    let (keeper, join) = QuotaKeeper::spawn_unsupervised(QuotaKeeperArgs::from_config(&config).unwrap())
        .await
        .unwrap();
    assert!(dir.path().join("data").join(STORE_FILE).exists());
    // One keeper per data directory.
    assert!(matches!(
        QuotaKeeperArgs::from_config(&config),
        Err(QuotaError::Store(QuotaStoreError::Locked { .. }))
    ));
    keeper.try_consume("daily", 600).unwrap();
    assert_eq!(keeper.flush().await, Ok(1));
    keeper.actor().unwrap().stop(None);
    join.await.unwrap();
    drop(keeper);

    let args = QuotaKeeperArgs::from_config(&config).unwrap();
    assert_eq!(args.handle().report("daily").unwrap().current, 600);
    assert!(matches!(
        args.handle().try_consume("daily", 401),
        Err(QuotaError::Exhausted { .. })
    ));
}
