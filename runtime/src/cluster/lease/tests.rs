use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

const TTL: Duration = Duration::from_secs(10);

fn book(limit: u64, chunk: u64) -> LeaseBook {
    LeaseBook::new(limit, LeasePolicy { chunk, ttl: TTL }).unwrap()
}

fn holder(want: u64, low_water: u64) -> LeaseHolder {
    LeaseHolder::new(HolderPolicy {
        want,
        low_water,
        renew_before: Duration::from_secs(2),
        idle_after: Duration::from_secs(5),
    })
}

/// Sends `h`'s request to `b` and hands the answer back, as a node would.
fn ask(b: &mut LeaseBook, name: &str, h: &mut LeaseHolder, now: Instant) -> Result<Grant, LeaseError> {
    let report = h.report(now);
    let answer = b.request(name, report.held, report.used, h.want(), now);
    match answer {
        Ok(grant) => h.granted(report, grant),
        Err(_) => h.refused(report),
    }
    answer
}

#[test]
fn policies_without_units_or_time_are_refused() {
    let zero_chunk = LeasePolicy { chunk: 0, ttl: TTL };
    assert_eq!(LeaseBook::new(10, zero_chunk).unwrap_err(), LeaseError::ZeroChunk);
    let zero_ttl = LeasePolicy {
        chunk: 1,
        ttl: Duration::ZERO,
    };
    assert_eq!(LeaseBook::new(10, zero_ttl).unwrap_err(), LeaseError::ZeroTtl);
}

#[test]
fn a_grant_is_bounded_by_the_chunk_and_by_what_is_left() {
    let t0 = Instant::now();
    let mut b = book(25, 10);
    assert_eq!(b.request("a", None, 0, 100, t0).unwrap().units, 10);
    assert_eq!(b.request("b", None, 0, 4, t0).unwrap().units, 4);
    assert_eq!(b.request("c", None, 0, 100, t0).unwrap().units, 10);
    assert_eq!(b.available(), 1);
    assert_eq!(b.request("d", None, 0, 100, t0).unwrap().units, 1);
    assert_eq!(
        b.request("e", None, 0, 1, t0).unwrap_err(),
        LeaseError::Exhausted {
            limit: 25,
            committed: 0,
            outstanding: 25
        }
    );
    assert_eq!(b.held_by("e"), 0);
}

#[test]
fn a_request_commits_the_report_and_tops_the_lease_up() {
    let t0 = Instant::now();
    let mut b = book(100, 10);
    let g = b.request("a", None, 0, 10, t0).unwrap();
    let g2 = b.request("a", Some(g.id), 7, 10, t0 + Duration::from_secs(1)).unwrap();
    assert_ne!(g.id, g2.id);
    assert_eq!((g2.units, b.committed(), b.outstanding()), (10, 7, 10));
    // Renewed from the second request: alive at t0 + 10s, gone at t0 + 11s.
    assert!(b.expire(t0 + TTL).is_empty());
    assert_eq!(b.expire(t0 + TTL + Duration::from_secs(1)).len(), 1);
    assert_eq!((b.committed(), b.outstanding()), (17, 0));
}

#[test]
fn an_expired_lease_counts_as_wholly_spent_and_its_late_report_is_ignored() {
    let t0 = Instant::now();
    let mut b = book(100, 10);
    let g = b.request("a", None, 0, 10, t0).unwrap();
    let forfeited = b.expire(t0 + TTL);
    assert_eq!(
        forfeited,
        vec![Forfeited {
            holder: "a".into(),
            units: 10
        }]
    );
    assert_eq!(b.committed(), 10);
    // The late report of 3 units is not added to the 10 counted.
    let g2 = b.request("a", Some(g.id), 3, 5, t0 + TTL).unwrap();
    assert_eq!((g2.units, b.committed(), b.outstanding()), (5, 10, 5));
    assert_eq!(
        b.release("a", g.id, 3, t0 + TTL),
        5,
        "an unpresented lease is counted whole"
    );
    assert_eq!((b.committed(), b.outstanding()), (15, 0));
}

#[test]
fn a_lease_not_presented_is_counted_whole() {
    let t0 = Instant::now();
    let mut b = book(100, 10);
    let g = b.request("a", None, 0, 10, t0).unwrap();
    // The reply granting `g2` was lost: the holder presents `g` again.
    let _g2 = b.request("a", Some(g.id), 4, 10, t0).unwrap();
    let g3 = b.request("a", Some(g.id), 4, 10, t0).unwrap();
    assert_eq!((g3.units, b.committed(), b.outstanding()), (10, 4 + 10, 10));
}

#[test]
fn a_request_never_cuts_a_lease_below_what_was_left() {
    let t0 = Instant::now();
    let mut b = book(100, 10);
    let g = b.request("a", None, 0, 10, t0).unwrap();
    // 2 spent and reported, and asking for only 3: the 8 left stay leased.
    let g2 = b.request("a", Some(g.id), 2, 3, t0).unwrap();
    assert_eq!((g2.units, b.committed(), b.outstanding()), (8, 2, 8));
}

#[test]
fn a_release_commits_what_was_used_and_frees_the_rest() {
    let t0 = Instant::now();
    let mut b = book(20, 10);
    let g = b.request("a", None, 0, 10, t0).unwrap();
    assert_eq!(b.release("a", g.id, 3, t0), 3);
    assert_eq!((b.committed(), b.outstanding(), b.available()), (3, 0, 17));
    assert_eq!(b.release("a", g.id, 3, t0), 0, "a second release changes nothing");
    assert_eq!(b.committed(), 3);
}

#[test]
fn a_holder_spends_only_from_a_live_lease() {
    let t0 = Instant::now();
    let mut b = book(100, 10);
    let mut h = holder(10, 3);
    assert_eq!(h.spend(1, t0), Err(NotLeased { wanted: 1, left: 0 }));
    assert!(h.wants_more(t0));
    ask(&mut b, "a", &mut h, t0).unwrap();
    assert!(!h.wants_more(t0));
    h.spend(6, t0).unwrap();
    assert_eq!(h.spend(5, t0), Err(NotLeased { wanted: 5, left: 4 }));
    h.spend(2, t0).unwrap();
    assert!(h.wants_more(t0), "below the low-water mark");
    // Its copy of the lease expires with the book's.
    assert_eq!(h.left(t0 + TTL), 0);
    assert_eq!(h.spend(1, t0 + TTL), Err(NotLeased { wanted: 1, left: 0 }));
    assert!(h.wants_more(t0 + TTL - Duration::from_secs(1)), "close to expiry");
}

#[test]
fn spends_after_a_report_come_out_of_the_next_lease() {
    let t0 = Instant::now();
    let mut b = book(100, 10);
    let mut h = holder(10, 3);
    ask(&mut b, "a", &mut h, t0).unwrap();
    h.spend(8, t0).unwrap();
    let report = h.report(t0);
    // Spent while the request travels.
    h.spend(2, t0).unwrap();
    let grant = b.request("a", report.held, report.used, 10, t0).unwrap();
    h.granted(report, grant);
    assert_eq!((b.committed(), b.outstanding()), (8, 10));
    assert_eq!(h.left(t0), 8, "the 2 units spent meanwhile came out of the 10");
    let (id, used) = h.give_back(t0).unwrap();
    assert_eq!(b.release("a", id, used, t0), 2);
    assert_eq!((b.committed(), b.outstanding()), (10, 0));
    assert_eq!(h.left(t0), 0);
}

#[test]
fn an_idle_holder_gives_its_lease_back() {
    let t0 = Instant::now();
    let mut b = book(100, 10);
    let mut h = holder(10, 3);
    assert!(!h.idle(t0), "nothing to give back");
    ask(&mut b, "a", &mut h, t0).unwrap();
    h.spend(1, t0).unwrap();
    assert!(!h.idle(t0 + Duration::from_secs(4)));
    assert!(h.idle(t0 + Duration::from_secs(5)));
    let (id, used) = h.give_back(t0 + Duration::from_secs(5)).unwrap();
    assert_eq!(b.release("a", id, used, t0 + Duration::from_secs(5)), 1);
    assert_eq!(b.available(), 99);
}

#[test]
fn one_holder_can_spend_the_whole_limit_and_no_more() {
    let t0 = Instant::now();
    let mut b = book(1000, 64);
    let mut h = holder(64, 8);
    let mut spent = 0;
    for _ in 0..2000 {
        if h.spend(3, t0).is_ok() {
            spent += 3;
            continue;
        }
        if ask(&mut b, "a", &mut h, t0).is_err() {
            break;
        }
    }
    if let Some((id, used)) = h.give_back(t0) {
        b.release("a", id, used, t0);
    }
    assert!(spent <= 1000 && spent > 1000 - 3 - 64, "spent {spent}");
    assert_eq!(b.committed(), spent);
}

#[test]
fn a_restored_book_overshoots_by_at_most_the_leases_it_never_saw() {
    let t0 = Instant::now();
    let mut old = book(100, 10);
    let mut hs: Vec<LeaseHolder> = (0..3).map(|_| holder(10, 1)).collect();
    for (i, h) in hs.iter_mut().enumerate() {
        ask(&mut old, &format!("n{i}"), h, t0).unwrap();
        h.spend(5, t0).unwrap();
        ask(&mut old, &format!("n{i}"), h, t0).unwrap();
    }
    assert_eq!((old.committed(), old.outstanding()), (15, 30));
    // The owner dies; the next one knows the 15 committed, not the leases.
    let mut new = LeaseBook::restore(100, old.policy, old.committed(), 1).unwrap();
    let mut spent = 15;
    for (i, h) in hs.iter_mut().enumerate() {
        loop {
            if h.spend(1, t0).is_ok() {
                spent += 1;
            } else if ask(&mut new, &format!("n{i}"), h, t0).is_err() {
                break;
            }
        }
    }
    assert!(spent > 100 && spent <= 100 + 30, "spent {spent}");
    assert_eq!(new.committed() + new.outstanding(), 100);
}

#[derive(Debug, Clone)]
enum Op {
    Spend(usize, u64),
    Ask(usize),
    AskFor(usize, u64),
    AskSpendingMeanwhile(usize, u64, u64),
    AskLosingTheReply(usize),
    GiveBack(usize),
    Wait(u64),
    Failover,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, 1..20u64).prop_map(|(h, n)| Op::Spend(h, n)),
        3 => (0..3usize).prop_map(Op::Ask),
        1 => (0..3usize, 1..10u64).prop_map(|(h, w)| Op::AskFor(h, w)),
        2 => (0..3usize, 1..20u64, 1..10u64).prop_map(|(h, n, w)| Op::AskSpendingMeanwhile(h, n, w)),
        1 => (0..3usize).prop_map(Op::AskLosingTheReply),
        1 => (0..3usize).prop_map(Op::GiveBack),
        1 => (0..4_000u64).prop_map(Op::Wait),
        1 => Just(Op::Failover),
    ]
}

proptest! {
    /// Whatever the interleaving of spends, requests (some losing their
    /// reply), returns, waits and failovers: what holders spent never
    /// exceeds the limit plus the leases the current owner does not know
    /// of (those outstanding at each failover), the book never loses a
    /// unit spent, and once every lease is returned or expired, nothing
    /// spent passes the limit unless an owner died.
    #[test]
    fn spent_is_bounded_by_the_limit_and_the_outstanding_leases(
        limit in 0..500u64,
        chunk in 1..60u64,
        want in 1..80u64,
        ops in proptest::collection::vec(op(), 1..300),
    ) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut b = LeaseBook::new(limit, LeasePolicy { chunk, ttl: TTL }).unwrap();
        let mut hs: Vec<LeaseHolder> = (0..3).map(|_| holder(want, want / 4)).collect();
        let names = ["n0", "n1", "n2"];
        let mut spent = 0u64;
        let mut unseen = 0u64;
        for op in ops {
            match op {
                Op::Spend(h, n) => {
                    if hs[h].spend(n, now).is_ok() {
                        spent += n;
                    }
                }
                Op::Ask(h) => {
                    let _ = ask(&mut b, names[h], &mut hs[h], now);
                }
                Op::AskFor(h, w) => {
                    let r = hs[h].report(now);
                    match b.request(names[h], r.held, r.used, w, now) {
                        Ok(g) => hs[h].granted(r, g),
                        Err(_) => hs[h].refused(r),
                    }
                }
                Op::AskSpendingMeanwhile(h, n, w) => {
                    let r = hs[h].report(now);
                    if hs[h].spend(n, now).is_ok() {
                        spent += n;
                    }
                    match b.request(names[h], r.held, r.used, w, now) {
                        Ok(g) => hs[h].granted(r, g),
                        Err(_) => hs[h].refused(r),
                    }
                }
                Op::AskLosingTheReply(h) => {
                    let r = hs[h].report(now);
                    let _ = b.request(names[h], r.held, r.used, hs[h].want(), now);
                }
                Op::GiveBack(h) => {
                    if let Some((id, used)) = hs[h].give_back(now) {
                        b.release(names[h], id, used, now);
                    }
                }
                Op::Wait(ms) => now += Duration::from_millis(ms),
                Op::Failover => {
                    unseen += b.outstanding();
                    b = LeaseBook::restore(limit, b.policy, b.committed(), b.epoch + 1).unwrap();
                }
            }
            b.expire(now);
            prop_assert!(b.committed() + b.outstanding() <= limit.max(b.committed()));
            prop_assert!(spent <= b.committed() + b.outstanding() + unseen,
                "spent {} > committed {} + outstanding {} + unseen {}",
                spent, b.committed(), b.outstanding(), unseen);
            prop_assert!(spent <= limit + unseen);
        }
        // Every lease returned or expired.
        for (h, name) in hs.iter_mut().zip(names) {
            if let Some((id, used)) = h.give_back(now) {
                b.release(name, id, used, now);
            }
        }
        b.expire(now + TTL);
        prop_assert_eq!(b.outstanding(), 0);
        prop_assert!(spent <= b.committed() + unseen);
        if unseen == 0 {
            prop_assert!(spent <= limit);
            prop_assert!(b.committed() <= limit);
        }
    }
}

#[test]
fn a_refund_puts_back_only_unreported_units() {
    let t0 = Instant::now();
    let mut b = book(100, 10);
    let mut h = holder(10, 0);
    ask(&mut b, "a", &mut h, t0).unwrap();
    h.spend(6, t0).unwrap();
    assert_eq!(h.refund(2), 2);
    assert_eq!(h.left(t0), 6);
    // Reported units stay committed: a refund after the report puts back nothing.
    ask(&mut b, "a", &mut h, t0).unwrap();
    assert_eq!(b.committed(), 4);
    assert_eq!(h.refund(3), 0);
    h.spend(1, t0).unwrap();
    assert_eq!(h.refund(5), 1);
    let mut lone = holder(10, 0);
    assert_eq!(lone.refund(1), 0, "no lease, nothing to put back");
}

#[test]
fn a_new_window_forgets_what_was_committed_but_keeps_the_leases() {
    let t0 = Instant::now();
    let mut b = book(20, 10);
    let mut h = holder(10, 0);
    ask(&mut b, "a", &mut h, t0).unwrap();
    h.spend(10, t0).unwrap();
    ask(&mut b, "a", &mut h, t0).unwrap();
    assert_eq!((b.committed(), b.outstanding()), (10, 10));
    assert_eq!(
        b.request("b", None, 0, 10, t0).unwrap_err(),
        LeaseError::Exhausted {
            limit: 20,
            committed: 10,
            outstanding: 10
        }
    );
    b.roll(1);
    assert_eq!((b.window(), b.committed(), b.outstanding()), (1, 0, 10));
    // The lease carried over still counts: only 10 more to lease.
    assert_eq!(b.request("b", None, 0, 100, t0).unwrap().units, 10);
    assert_eq!(b.available(), 0);
    // An earlier window changes nothing.
    h.spend(4, t0).unwrap();
    ask(&mut b, "a", &mut h, t0).unwrap();
    b.roll(0);
    assert_eq!((b.window(), b.committed()), (1, 4));
}
