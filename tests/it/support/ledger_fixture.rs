//! A ledger written by the real ledger (prices, budgets, records over four
//! days, the first two compacted into daily aggregates), and everything a
//! reader can get back from it, for the damage and read-only tests.

#![allow(dead_code, unreachable_pub)] // each test file uses a subset

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nexus_swarm::actors::Scope;
use nexus_swarm::actors::cost_ledger::*;
use nexus_swarm::runtime::resources::ResourceKind;
use nexus_swarm::runtime::usage::{UsageMeta, UsageRecord};

/// 2026-01-01T00:00:00Z.
pub(crate) const START_US: u64 = 1_767_225_600_000_000;
/// A day in microseconds.
pub(crate) const DAY_US: u64 = 86_400_000_000;
/// Records per tracking call.
const BATCH: u64 = 20;

/// Writes `records` records (in calls of [`BATCH`]) spread over four days
/// from [`START_US`] into a ledger in `dir`, compacts the first two days,
/// and stops the ledger (the file is closed cleanly).
pub(crate) async fn write_ledger(dir: &Path, records: u64) {
    let clock = Arc::new(ManualClock::new(START_US));
    let mut options = LedgerOptions::new(dir).clock(clock.clone());
    options.retention = Duration::from_secs(2 * 86_400);
    let (actor, ledger) = CostLedger::spawn_unsupervised(CostLedgerArgs::open(options).await.expect("ledger starts"))
        .await
        .unwrap();
    for model in ["gpt-a", "gpt-b"] {
        ledger
            .set_model_price(model, ModelRates::new(150_000, 600_000, 0).unwrap())
            .await
            .unwrap();
    }
    ledger
        .put_budget(Budget::new(
            "all-daily",
            1 << 50,
            BudgetPeriod::Daily,
            BudgetAction::Alert,
        ))
        .await
        .unwrap();
    ledger
        .put_budget(
            Budget::new("t0-monthly", 1 << 40, BudgetPeriod::Monthly, BudgetAction::Alert)
                .scope(Scope::all().tenant("t0")),
        )
        .await
        .unwrap();
    let step = 4 * DAY_US / records.max(1);
    let mut i = 0;
    while i < records {
        clock.set(START_US + i * step);
        let batch: Vec<UsageRecord> = (i..(i + BATCH).min(records))
            .map(|n| UsageRecord {
                kind: if n % 2 == 0 {
                    ResourceKind::InputTokens
                } else {
                    ResourceKind::OutputTokens
                },
                amount: 1 + n % 997,
                meta: UsageMeta::default()
                    .tenant(format!("t{}", n % 3))
                    .model(if n % 5 < 2 { "gpt-a" } else { "gpt-b" })
                    .agent(format!("agent-{}", n % 7))
                    .label("op", format!("op-{n}")),
            })
            .collect();
        i += batch.len() as u64;
        ledger.track_many(batch).await.expect("records commit");
    }
    clock.set(START_US + 4 * DAY_US);
    let stats = ledger.compact().await.unwrap();
    assert!(stats.records_compacted > 0, "the fixture has aggregates");
    actor.stop_and_wait(None, None).await.unwrap();
}

/// Everything a reader gets back from a ledger.
#[derive(Debug, PartialEq)]
pub(crate) struct Contents {
    /// All time, grouped by day, tenant, model and kind.
    pub(crate) report: Report,
    /// Part of day three, grouped by agent.
    pub(crate) partial: Report,
    /// Every raw record.
    pub(crate) records: Vec<LedgerRecord>,
    /// Every budget with its spend.
    pub(crate) budgets: Vec<StoredBudget>,
    /// The price table.
    pub(crate) prices: PriceTable,
}

/// Reads everything from the store in `dir`, opened read-only.
pub(crate) fn read_contents(dir: &Path) -> Result<Contents, LedgerError> {
    let store = RedbStore::open_read_only(dir)?;
    let report = build_report(
        &store,
        ReportQuery::new(TimeRange::all()).group_by([Field::Day, Field::Tenant, Field::Model, Field::Kind]),
    )?;
    let partial = build_report(
        &store,
        ReportQuery::new(TimeRange::new(
            START_US + 2 * DAY_US + DAY_US / 2,
            START_US + 3 * DAY_US + DAY_US / 3,
        )?)
        .group_by([Field::Agent]),
    )?;
    let mut records = Vec::new();
    store.visit_records(0, u64::MAX, &mut |r| {
        records.push(r);
        Ok(())
    })?;
    Ok(Contents {
        report,
        partial,
        records,
        budgets: store.load_budgets()?,
        prices: store.load_prices()?,
    })
}

/// Runs the `nexus` binary with `args` and `--data-dir dir`.
pub fn nexus(args: &[&str], dir: &Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_nexus"))
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .expect("nexus runs")
}
