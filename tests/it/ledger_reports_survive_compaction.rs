//! Reports of the cost ledger: grouped totals over time ranges, JSON and CSV
//! export, the `nexus report` command, optimization through the handle, and
//! retention: records past it are compacted into daily aggregates and
//! reports over the compacted days keep their totals.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use nexus_swarm::actors::cost_ledger::*;
use nexus_swarm::runtime::resources::ResourceKind;
use nexus_swarm::runtime::usage::UsageMeta;

/// 2024-02-29T00:00:00Z.
const START_US: u64 = 1_709_164_800 * MICROS_PER_SEC;
const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn reports_group_over_ranges_and_keep_totals_after_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(START_US));
    let options = LedgerOptions {
        retention: Duration::from_secs(24 * 3600),
        ..LedgerOptions::new(dir.path()).clock(clock.clone())
    };
    let (actor, ledger) = CostLedger::spawn_unsupervised(CostLedgerArgs::open(options).await.unwrap())
        .await
        .unwrap();
    ledger
        .set_model_price("big", ModelRates::new(5_000_000, 15_000_000, 0).unwrap())
        .await
        .unwrap();
    ledger
        .set_model_price("small", ModelRates::new(150_000, 600_000, 0).unwrap())
        .await
        .unwrap();
    ledger
        .set_kind_price(ResourceKind::LlmRequests, Rate::per_unit(0).unwrap())
        .await
        .unwrap();
    // Three days, two tenants, one repeated prompt.
    for _day in 0..3 {
        for (tenant, n) in [("acme", 100_000u64), ("globex", 10_000)] {
            let meta = UsageMeta::default()
                .tenant(tenant)
                .model("big")
                .label(PROMPT_HASH_LABEL, "p1");
            ledger
                .track_usage(ResourceKind::InputTokens, n, meta.clone())
                .await
                .unwrap();
            ledger.track_usage(ResourceKind::LlmRequests, 1, meta).await.unwrap();
        }
        clock.advance(24 * HOUR);
    }
    let all = ReportQuery::new(TimeRange::all()).group_by([Field::Day, Field::Tenant]);
    let before = ledger.report(all.clone()).await.unwrap();
    assert_eq!(before.total_cost_micro_usd, 3 * (500_000 + 50_000));
    assert_eq!(before.rows.len(), 6);
    let day2 = TimeRange::new(
        START_US + 24 * 3600 * MICROS_PER_SEC,
        START_US + 48 * 3600 * MICROS_PER_SEC,
    )
    .unwrap();
    let one_day = ledger
        .report(ReportQuery::new(day2).group_by([Field::Tenant]))
        .await
        .unwrap();
    assert_eq!(one_day.total_cost_micro_usd, 550_000);
    assert_eq!(one_day.rows[0].key, vec!["acme"]);
    assert!(one_day.to_csv().contains("acme,500000,0.500000,2,100000,1\n"));
    let json: serde_json::Value = serde_json::from_str(&one_day.to_json()).unwrap();
    assert_eq!(json["rows"][1]["key"][0], "globex");

    let catalogue = vec![
        ModelPrice {
            model: "big".into(),
            capabilities: BTreeSet::from(["chat".to_string()]),
            context_window: 128_000,
            rates: ModelRates::new(5_000_000, 15_000_000, 0).unwrap(),
        },
        ModelPrice {
            model: "small".into(),
            capabilities: BTreeSet::from(["chat".to_string()]),
            context_window: 128_000,
            rates: ModelRates::new(150_000, 600_000, 0).unwrap(),
        },
    ];
    let ops = ledger
        .optimize(OptimizeInput {
            range: TimeRange::all(),
            catalogue,
            pools: Vec::new(),
        })
        .await
        .unwrap();
    assert!(
        ops.iter()
            .any(|o| matches!(&o.kind, OpportunityKind::CheaperModel { to, .. } if to == "small"))
    );
    assert!(
        ops.iter()
            .any(|o| matches!(&o.kind, OpportunityKind::CacheRepeatedPrompt { requests: 6, .. }))
    );

    // Now is day 4: with one day of retention, days 1-2 are compacted.
    let stats = ledger.compact().await.unwrap();
    assert_eq!(stats.records_compacted, 8);
    let after = ledger.report(all).await.unwrap();
    assert_eq!(after, before, "grouped totals survive compaction");
    assert_eq!(ledger.records(TimeRange::all()).await.unwrap().len(), 4);
    actor.stop_and_wait(None, None).await.unwrap();
    drop(ledger);

    let out = Command::new(env!("CARGO_BIN_EXE_nexus"))
        .args(["report", "--group-by", "tenant", "--format", "csv", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let csv = String::from_utf8(out.stdout).unwrap();
    assert!(csv.starts_with("tenant,cost_micro_usd,cost_usd,records,"), "{csv}");
    assert!(csv.contains("acme,1500000,1.500000,6,"), "{csv}");
    assert!(csv.contains("globex,150000,0.150000,6,"), "{csv}");
}
