use std::collections::BTreeSet;
use std::time::Duration;

use nexus_swarm_runtime::resources::{ResourceKind, ResourceVector};
use nexus_swarm_runtime::scope::Scope;
use nexus_swarm_runtime::usage::{SpendRefused, UsageMeta};
use proptest::prelude::*;

use super::*;

mod restart;

/// 2024-02-29T00:00:00Z, a leap day, in microseconds.
const LEAP_DAY_US: u64 = 1_709_164_800 * MICROS_PER_SEC;
const HOUR_US: u64 = 3600 * MICROS_PER_SEC;

fn row(at_us: u64, kind: ResourceKind, amount: u64, cost: u64, meta: UsageMeta) -> UsageRow {
    UsageRow {
        at_us,
        kind,
        amount,
        cost_micro_usd: cost,
        records: 1,
        meta,
        compacted: false,
    }
}

#[test]
fn rates_round_up_and_reject_zero_sized_and_absurd_prices() {
    let r = Rate::per_million(150_000).unwrap(); // $0.15 per million tokens
    assert_eq!(r.cost(1_000_000).unwrap(), 150_000);
    assert_eq!(r.cost(1).unwrap(), 1, "a fraction of a micro-dollar rounds up");
    assert_eq!(r.cost(0).unwrap(), 0);
    assert_eq!(Rate::per_cpu_second(20).unwrap().cost(1500).unwrap(), 30);
    assert!(matches!(Rate::new(5, 0), Err(LedgerError::InvalidPrice { .. })));
    assert!(matches!(
        Rate::per_unit(1_000_000_001),
        Err(LedgerError::InvalidPrice { .. })
    ));
    assert!(matches!(
        Rate::per_million(10_000_000_001),
        Err(LedgerError::InvalidPrice { .. })
    ));
    assert!(matches!(
        ModelRates::new(1, 10_000_000_001, 0),
        Err(LedgerError::InvalidPrice { .. })
    ));
    let big = Rate::per_unit(1_000_000_000).unwrap();
    assert_eq!(big.cost(u64::MAX), Err(LedgerError::Overflow));
}

#[test]
fn model_rates_override_kind_rates_and_unpriced_kinds_are_errors() {
    let mut t = PriceTable::new();
    t.set_kind(ResourceKind::InputTokens, Rate::per_million(1_000_000).unwrap())
        .unwrap();
    t.set_model("small", ModelRates::new(100_000, 400_000, 10).unwrap())
        .unwrap();
    assert_eq!(
        t.cost(&ResourceKind::InputTokens, 1_000_000, Some("small")).unwrap(),
        100_000
    );
    assert_eq!(
        t.cost(&ResourceKind::InputTokens, 1_000_000, Some("other")).unwrap(),
        1_000_000
    );
    assert_eq!(t.cost(&ResourceKind::InputTokens, 1_000_000, None).unwrap(), 1_000_000);
    assert_eq!(t.cost(&ResourceKind::LlmRequests, 3, Some("small")).unwrap(), 30);
    assert_eq!(
        t.cost(&ResourceKind::Cost, 77, None).unwrap(),
        77,
        "money is its own cost"
    );
    assert!(matches!(
        t.cost(&ResourceKind::OutputTokens, 5, Some("other")),
        Err(LedgerError::NoPrice { .. })
    ));
    assert!(matches!(
        t.set_kind(ResourceKind::Cost, Rate::per_unit(1).unwrap()),
        Err(LedgerError::InvalidPrice { .. })
    ));
    let v = ResourceVector::new()
        .with(ResourceKind::InputTokens, 1_000_000)
        .with(ResourceKind::OutputTokens, 1_000_000);
    assert_eq!(t.cost_of_vector(Some("small"), &v).unwrap(), 500_000);
    let money = v.clone().with(ResourceKind::Cost, 9);
    assert_eq!(t.cost_of_vector(Some("small"), &money).unwrap(), 9);
}

#[test]
fn labels_parse_and_malformed_sets_are_typed_errors() {
    let l = parse_labels("env=prod, prompt_hash=ab12").unwrap();
    assert_eq!(l.get("env").map(String::as_str), Some("prod"));
    assert_eq!(l.len(), 2);
    assert!(parse_labels("").unwrap().is_empty());
    for bad in [
        "env", "env=", "=x", "1env=x", "a=1,a=2", "a=1,,b=2", "a=b=c", "sp ace=x",
    ] {
        assert!(
            matches!(parse_labels(bad), Err(LedgerError::BadLabels { .. })),
            "{bad} should not parse"
        );
    }
    let meta = UsageMeta::default().label("bad key", "x");
    assert!(matches!(validate_meta(&meta), Err(LedgerError::BadLabels { .. })));
    let meta = UsageMeta::default().tenant("");
    assert!(matches!(validate_meta(&meta), Err(LedgerError::InvalidUsage(_))));
    assert!(validate_meta(&UsageMeta::default().tenant("acme").label("k", "v")).is_ok());
}

#[test]
fn fields_parse_from_names() {
    assert_eq!("label:env".parse::<Field>().unwrap(), Field::Label("env".into()));
    assert_eq!("model".parse::<Field>().unwrap(), Field::Model);
    assert!(matches!("colour".parse::<Field>(), Err(LedgerError::InvalidQuery(_))));
    assert!(matches!("label:".parse::<Field>(), Err(LedgerError::InvalidQuery(_))));
}

#[test]
fn times_past_the_year_9999_are_typed_errors_not_panics() {
    assert_eq!(format_rfc3339(LEAP_DAY_US + 1).unwrap(), "2024-02-29T00:00:00Z");
    assert_eq!(format_rfc3339(0).unwrap(), "1970-01-01T00:00:00Z");
    assert_eq!(format_rfc3339(MAX_RFC3339_US).unwrap(), "9999-12-31T23:59:59Z");
    for at_us in [MAX_RFC3339_US + 1, u64::MAX] {
        assert_eq!(format_rfc3339(at_us), Err(LedgerError::TimeOutOfRange { at_us }));
    }
    // A report over a range ending past the year 9999 says so instead of
    // panicking in the table header; the open end still reads "now".
    let far = ReportBuilder::new(ReportQuery::new(TimeRange::new(0, u64::MAX - 1).unwrap())).finish();
    assert_eq!(far.to_table(), Err(LedgerError::TimeOutOfRange { at_us: u64::MAX - 1 }));
    let open = ReportBuilder::new(ReportQuery::new(TimeRange::all())).finish();
    assert!(
        open.to_table()
            .unwrap()
            .starts_with("cost report 1970-01-01T00:00:00Z .. now\n")
    );
}

#[test]
fn calendar_periods_start_on_utc_boundaries() {
    let at = LEAP_DAY_US + 13 * HOUR_US + 5 * MICROS_PER_SEC;
    assert_eq!(BudgetPeriod::Hourly.bucket_start(at), LEAP_DAY_US + 13 * HOUR_US);
    assert_eq!(BudgetPeriod::Daily.bucket_start(at), LEAP_DAY_US);
    let feb_1 = days_from_civil(2024, 2, 1) as u64 * MICROS_PER_DAY;
    assert_eq!(BudgetPeriod::Monthly.bucket_start(at), feb_1);
    assert_eq!(
        BudgetPeriod::Monthly.bucket_start(LEAP_DAY_US + MICROS_PER_DAY),
        LEAP_DAY_US + MICROS_PER_DAY
    );
    assert_eq!(format_day(at), "2024-02-29");
    let rolling = BudgetPeriod::Rolling(Duration::from_secs(3600));
    assert_eq!(rolling.bucket_start(at), at - at % (60 * MICROS_PER_SEC));
    assert_eq!(
        rolling.window_start(at),
        rolling.bucket_start(at) - 59 * 60 * MICROS_PER_SEC
    );
}

fn halt(limit: u64) -> BudgetCounters {
    BudgetCounters::new(
        Budget::new("b", limit, BudgetPeriod::Hourly, BudgetAction::Halt),
        [],
        LEAP_DAY_US,
    )
}

#[test]
fn a_hard_budget_refuses_the_crossing_reservation_and_everything_after_until_rollover() {
    let mut c = halt(1000);
    let mut ev = Vec::new();
    let now = LEAP_DAY_US;
    assert_eq!(c.try_reserve(600, None, now, &mut ev), Verdict::Fits);
    c.settle(600, 600);
    c.commit(now, 600, now, &mut ev);
    c.uncharge_inflight(600);
    assert_eq!(c.try_reserve(400, None, now, &mut ev), Verdict::Fits);
    c.release(400);
    let Verdict::Refused(refused) = c.try_reserve(401, None, now, &mut ev) else {
        panic!("settled 600 + 401 cannot fit 1000")
    };
    assert!(matches!(refused, SpendRefused::BudgetExceeded { requested: 401, .. }));
    assert!(ev.iter().any(|e| e.kind == BudgetEventKind::Halted));
    // Halted: even a request that would fit is refused in this period.
    assert!(matches!(c.try_reserve(1, None, now + 1, &mut ev), Verdict::Refused(_)));
    ev.clear();
    assert_eq!(c.try_reserve(1000, None, now + HOUR_US, &mut ev), Verdict::Fits);
    assert_eq!(
        ev.iter().map(|e| e.kind).collect::<Vec<_>>(),
        vec![BudgetEventKind::Resumed]
    );
    assert_eq!(c.spent(), 0, "the new period starts from zero");
}

#[test]
fn alerts_fire_once_per_threshold_per_period() {
    let mut c = BudgetCounters::new(
        Budget::new("a", 1000, BudgetPeriod::Daily, BudgetAction::Alert),
        [],
        LEAP_DAY_US,
    );
    let mut ev = Vec::new();
    let now = LEAP_DAY_US;
    let percents = |ev: &Vec<BudgetEvent>| {
        ev.iter()
            .filter_map(|e| match e.kind {
                BudgetEventKind::Threshold { percent } => Some(percent),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    c.commit(now, 499, now, &mut ev);
    assert!(ev.is_empty());
    c.commit(now, 1, now, &mut ev);
    c.commit(now, 100, now, &mut ev);
    assert_eq!(percents(&ev), vec![50]);
    c.commit(now, 1000, now, &mut ev);
    assert_eq!(percents(&ev), vec![50, 80, 100]);
    c.commit(now, 1000, now, &mut ev);
    assert_eq!(percents(&ev), vec![50, 80, 100], "no threshold twice in a period");
    let next = now + MICROS_PER_DAY;
    c.commit(next, 500, next, &mut ev);
    assert_eq!(percents(&ev), vec![50, 80, 100, 50]);
}

#[test]
fn a_throttle_budget_is_throttled_while_over_and_released_at_rollover() {
    let mut c = BudgetCounters::new(
        Budget::new("t", 100, BudgetPeriod::Hourly, BudgetAction::Throttle { permille: 250 }),
        [],
        LEAP_DAY_US,
    );
    let mut ev = Vec::new();
    c.commit(LEAP_DAY_US, 100, LEAP_DAY_US, &mut ev);
    assert_eq!(c.throttle_factor(), Some(250));
    assert!(
        ev.iter()
            .any(|e| e.kind == BudgetEventKind::Throttled { permille: 250 })
    );
    ev.clear();
    c.roll(LEAP_DAY_US + HOUR_US, &mut ev);
    assert_eq!(c.throttle_factor(), None);
    assert!(ev.iter().any(|e| e.kind == BudgetEventKind::Unthrottled));
}

#[test]
fn a_rolling_window_forgets_spend_slice_by_slice() {
    let w = BudgetPeriod::Rolling(Duration::from_secs(600));
    let mut c = BudgetCounters::new(Budget::new("r", 100, w, BudgetAction::Halt), [], LEAP_DAY_US);
    let mut ev = Vec::new();
    c.commit(LEAP_DAY_US, 100, LEAP_DAY_US, &mut ev);
    assert!(matches!(
        c.try_reserve(1, None, LEAP_DAY_US + 1, &mut ev),
        Verdict::Refused(_)
    ));
    let later = LEAP_DAY_US + 599 * MICROS_PER_SEC;
    assert!(
        matches!(c.try_reserve(1, None, later, &mut ev), Verdict::Refused(_)),
        "still in the window"
    );
    let gone = LEAP_DAY_US + 600 * MICROS_PER_SEC;
    assert_eq!(c.try_reserve(1, None, gone, &mut ev), Verdict::Fits);
    assert_eq!(c.spent(), 0);
}

#[test]
fn budgets_are_validated() {
    let ok = Budget::new("ok", 1, BudgetPeriod::Daily, BudgetAction::Alert);
    assert!(ok.validate().is_ok());
    let bad = [
        Budget::new("", 1, BudgetPeriod::Daily, BudgetAction::Alert),
        Budget::new("sp ace", 1, BudgetPeriod::Daily, BudgetAction::Alert),
        Budget::new("zero", 0, BudgetPeriod::Daily, BudgetAction::Alert),
        Budget::new("t", 1, BudgetPeriod::Daily, BudgetAction::Throttle { permille: 1000 }),
        Budget::new(
            "w",
            1,
            BudgetPeriod::Rolling(Duration::from_secs(10)),
            BudgetAction::Halt,
        ),
        Budget::new("s", 1, BudgetPeriod::Daily, BudgetAction::Halt).scope(Scope::all().tenant(" ")),
    ];
    for b in bad {
        assert!(matches!(b.validate(), Err(LedgerError::InvalidBudget { .. })), "{b:?}");
    }
}

#[test]
fn scopes_match_usage_and_cover_narrower_scopes() {
    let meta = UsageMeta::default().tenant("acme").model("m1");
    assert!(Scope::all().matches(&meta));
    assert!(Scope::all().tenant("acme").matches(&meta));
    assert!(!Scope::all().tenant("acme").agent("x").matches(&meta));
    let tenant = Scope::all().tenant("acme");
    assert!(tenant.covers(&Scope::all().tenant("acme").agent("x")));
    assert!(!tenant.covers(&Scope::all()));
    assert!(Scope::all().covers(&tenant));
}

#[test]
fn reports_group_filter_and_export() {
    let a = UsageMeta::default().tenant("a").model("m1");
    let b = UsageMeta::default().tenant("b").model("m1").label("env", "x,y");
    let rows = [
        row(10, ResourceKind::InputTokens, 100, 7, a.clone()),
        row(20, ResourceKind::OutputTokens, 50, 5, a.clone()),
        row(30, ResourceKind::InputTokens, 10, 3, b.clone()),
        row(40, ResourceKind::InputTokens, 10, 1000, b.clone()), // out of range
    ];
    let q = ReportQuery::new(TimeRange::new(0, 40).unwrap()).group_by([Field::Tenant, Field::Kind]);
    let mut rb = ReportBuilder::new(q);
    for r in &rows {
        rb.add(r).unwrap();
    }
    let rep = rb.finish();
    assert_eq!(rep.total_cost_micro_usd, 15);
    assert_eq!(rep.total_records, 3);
    assert_eq!(rep.rows[0].key, vec!["a", "input_tokens"]);
    assert_eq!(rep.rows[0].cost_micro_usd, 7);
    let csv = rep.to_csv();
    assert!(csv.starts_with("tenant,kind,cost_micro_usd,cost_usd,records,input_tokens,output_tokens\n"));
    assert!(csv.contains("a,input_tokens,7,0.000007,1,100,0\n"), "{csv}");
    let json: serde_json::Value = serde_json::from_str(&rep.to_json()).unwrap();
    assert_eq!(json["total_cost_micro_usd"], 15);
    assert!(rep.to_table().unwrap().contains("total: $0.000015 over 3 records"));

    let q = ReportQuery::new(TimeRange::all())
        .filter(Scope::all().tenant("b"))
        .group_by([Field::Label("env".into())]);
    let mut rb = ReportBuilder::new(q);
    for r in &rows {
        rb.add(r).unwrap();
    }
    let rep = rb.finish();
    assert_eq!(rep.total_cost_micro_usd, 1003);
    assert!(rep.to_csv().contains("\"x,y\",1003"), "csv quotes commas");
    assert!(matches!(TimeRange::new(5, 5), Err(LedgerError::InvalidQuery(_))));
}

#[test]
fn optimize_finds_underused_pools_cheaper_models_and_repeated_prompts() {
    let caps = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let catalogue = vec![
        ModelPrice {
            model: "big".into(),
            capabilities: caps(&["chat", "code"]),
            context_window: 128_000,
            rates: ModelRates::new(5_000_000, 15_000_000, 0).unwrap(),
        },
        ModelPrice {
            model: "small".into(),
            capabilities: caps(&["chat", "code", "tools"]),
            context_window: 128_000,
            rates: ModelRates::new(150_000, 600_000, 0).unwrap(),
        },
        ModelPrice {
            model: "tiny-ctx".into(),
            capabilities: caps(&["chat", "code"]),
            context_window: 8_000,
            rates: ModelRates::new(1, 1, 0).unwrap(),
        },
    ];
    let input = OptimizeInput {
        range: TimeRange::all(),
        catalogue,
        pools: vec![
            PoolUsage {
                pool: "workers".into(),
                workers: 10,
                busy_permille: 140,
                worker_cost_micro_usd: 1_000,
            },
            PoolUsage {
                pool: "busy".into(),
                workers: 4,
                busy_permille: 900,
                worker_cost_micro_usd: 1_000,
            },
        ],
    };
    let mut opt = Optimizer::new(input).unwrap();
    let big = UsageMeta::default().model("big");
    opt.add(&row(1, ResourceKind::InputTokens, 1_000_000, 5_000_000, big.clone()));
    opt.add(&row(1, ResourceKind::OutputTokens, 1_000_000, 15_000_000, big.clone()));
    let p = UsageMeta::default().model("small").label(PROMPT_HASH_LABEL, "h1");
    for _ in 0..4 {
        opt.add(&row(2, ResourceKind::LlmRequests, 1, 0, p.clone()));
        opt.add(&row(2, ResourceKind::InputTokens, 1000, 250, p.clone()));
    }
    let ops = opt.finish();
    assert_eq!(ops.len(), 3, "{ops:?}");
    assert_eq!(
        ops[0].kind,
        OpportunityKind::CheaperModel {
            from: "big".into(),
            to: "small".into(),
            input_tokens: 1_000_000,
            output_tokens: 1_000_000,
            requests: 0
        }
    );
    assert_eq!(ops[0].estimated_savings_micro_usd, 20_000_000 - 750_000);
    assert!(ops.iter().any(|o| o.kind
        == OpportunityKind::UnderusedPool {
            pool: "workers".into(),
            workers: 10,
            recommended_workers: 2
        }
        && o.estimated_savings_micro_usd == 8_000));
    assert!(ops.iter().any(
        |o| matches!(&o.kind, OpportunityKind::CacheRepeatedPrompt { requests: 4, .. })
            && o.estimated_savings_micro_usd == 750
    ));
}

#[test]
fn a_garbage_store_file_is_reported_corrupt_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STORE_FILE);
    let garbage: Vec<u8> = (0..10_000u32).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(&path, &garbage).unwrap();
    let err = RedbStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, LedgerError::Corrupt { .. }), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), garbage);
}

#[test]
fn a_truncated_store_file_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = RedbStore::open(dir.path()).unwrap();
        let rec = NewRecord {
            at_us: 1,
            kind: ResourceKind::Cost,
            amount: 5,
            cost_micro_usd: 5,
            meta: UsageMeta::default(),
        };
        s.append(&[rec], &[]).unwrap();
    }
    let path = dir.path().join(STORE_FILE);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 3]).unwrap();
    let err = RedbStore::open(dir.path()).unwrap_err();
    assert!(
        matches!(err, LedgerError::Corrupt { .. } | LedgerError::Io { .. }),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap().len(), bytes.len() / 3, "never replaced");
}

#[test]
fn a_store_open_elsewhere_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let _first = RedbStore::open(dir.path()).unwrap();
    assert!(matches!(RedbStore::open(dir.path()), Err(LedgerError::Locked { .. })));
}

#[test]
fn a_foreign_redb_file_is_not_taken_for_a_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STORE_FILE);
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let t: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("other");
            txn.open_table(t).unwrap().insert("x", 1).unwrap();
        }
        txn.commit().unwrap();
    }
    assert!(matches!(RedbStore::open(dir.path()), Err(LedgerError::Corrupt { .. })));
}

#[test]
fn a_usage_visit_reads_one_snapshot_while_compaction_commits() {
    let dir = tempfile::tempdir().unwrap();
    let s = RedbStore::open(dir.path()).unwrap();
    let meta = UsageMeta::default().tenant("t");
    let recs: Vec<NewRecord> = (0..72u64)
        .map(|i| NewRecord {
            at_us: i * HOUR_US,
            kind: ResourceKind::InputTokens,
            amount: 1,
            cost_micro_usd: i + 1,
            meta: meta.clone(),
        })
        .collect();
    s.append(&recs, &[]).unwrap();
    // Day one is already aggregated, days two and three are raw.
    s.compact(MICROS_PER_DAY, 0, 1000).unwrap();
    let total_cost: u64 = (1..=72).sum();
    let (mut records, mut cost, mut compacted_mid_visit) = (0u64, 0u64, false);
    s.visit_usage(0, u64::MAX, &mut |row| {
        if !compacted_mid_visit {
            // Day two moves from raw records to an aggregate while the
            // visit is under way.
            compacted_mid_visit = true;
            let stats = s.compact(2 * MICROS_PER_DAY, 0, 1000)?;
            assert_eq!(stats.records_compacted, 24);
        }
        records += row.records;
        cost += row.cost_micro_usd;
        Ok(())
    })
    .unwrap();
    assert!(compacted_mid_visit);
    assert_eq!((records, cost), (72, total_cost), "each record counted exactly once");
    // And after it, from the new snapshot, the same totals.
    let (mut records, mut cost) = (0u64, 0u64);
    s.visit_usage(0, u64::MAX, &mut |row| {
        records += row.records;
        cost += row.cost_micro_usd;
        Ok(())
    })
    .unwrap();
    assert_eq!((records, cost), (72, total_cost));
}

#[test]
fn compaction_keeps_report_totals_and_ids_keep_increasing() {
    let dir = tempfile::tempdir().unwrap();
    let s = RedbStore::open(dir.path()).unwrap();
    let meta = UsageMeta::default().tenant("t").label(PROMPT_HASH_LABEL, "h");
    let recs: Vec<NewRecord> = (0..50u64)
        .map(|i| NewRecord {
            at_us: i * HOUR_US,
            kind: ResourceKind::InputTokens,
            amount: 10 + i,
            cost_micro_usd: 3 * i + 1,
            meta: meta.clone(),
        })
        .collect();
    let ids = s.append(&recs, &[]).unwrap();
    assert_eq!(ids, (1..=50).collect::<Vec<_>>());
    let q = || ReportQuery::new(TimeRange::all()).group_by([Field::Day, Field::Tenant]);
    let before = build_report(&s, q()).unwrap();
    let stats = s.compact(MICROS_PER_DAY, 0, 7).unwrap();
    assert_eq!(stats.records_compacted, 24, "the first whole day");
    assert_eq!(s.record_count().unwrap(), 26);
    let after = build_report(&s, q()).unwrap();
    assert_eq!(after, before, "reports over compacted days are unchanged");
    let more = s.append(&recs[..1], &[]).unwrap();
    assert_eq!(more, vec![51]);
}

proptest! {
    /// Law: with actual spend never above the estimate, a hard budget's
    /// committed + in-flight + reserved spend never exceeds its limit.
    #[test]
    fn hard_budgets_never_overshoot(ops in proptest::collection::vec((0u8..4, 1u64..400, 0u64..=100), 1..200)) {
        let mut c = halt(1000);
        let mut ev = Vec::new();
        let now = LEAP_DAY_US;
        let mut holds: Vec<u64> = Vec::new();
        let mut inflight: Vec<u64> = Vec::new();
        for (op, est, pct) in ops {
            match op {
                0 => if c.try_reserve(est, None, now, &mut ev) == Verdict::Fits { holds.push(est) },
                1 => if let Some(e) = holds.pop() { let a = e * pct / 100; c.settle(e, a); inflight.push(a) },
                2 => if let Some(e) = holds.pop() { c.release(e) },
                _ => if let Some(a) = inflight.pop() { c.commit(now, a, now, &mut ev); c.uncharge_inflight(a) },
            }
            prop_assert!(c.used() <= 1000, "used {} over the limit", c.used());
        }
    }

    /// Civil dates round-trip through day counts.
    #[test]
    fn civil_dates_round_trip(days in -100_000i64..200_000) {
        let (y, m, d) = civil_from_days(days);
        prop_assert_eq!(days_from_civil(y, m, d), days);
    }
}
