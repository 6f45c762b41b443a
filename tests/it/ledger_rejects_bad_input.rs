//! Bad input to the cost ledger gives a typed error and changes nothing:
//! unknown budgets, absurd prices (prices are unsigned), label sets that do not parse,
//! zero amounts, unpriced kinds, invalid budgets and queries, and store
//! files that are corrupt or held by another process (never replaced).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use nexus_swarm::actors::cost_ledger::*;
use nexus_swarm::runtime::resources::ResourceKind;
use nexus_swarm::runtime::usage::{UsageMeta, UsageRecord, UsageSink, UsageSinkError};

const TIMEOUT: Duration = Duration::from_secs(30);

async fn started(dir: &std::path::Path) -> (ractor::ActorRef<CostLedgerMsg>, LedgerHandle) {
    let (actor, ledger) = CostLedger::spawn_unsupervised(CostLedgerArgs::open(LedgerOptions::new(dir)).await.unwrap())
        .await
        .unwrap();
    ledger
        .set_model_price("m", ModelRates::new(1_000_000, 2_000_000, 0).unwrap())
        .await
        .unwrap();
    (actor, ledger)
}

async fn record_count(ledger: &LedgerHandle) -> usize {
    ledger.records(TimeRange::all()).await.unwrap().len()
}

#[tokio::test]
async fn unknown_budgets_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (actor, ledger) = started(dir.path()).await;
    assert_eq!(
        ledger.remove_budget("nope").await,
        Err(LedgerError::UnknownBudget("nope".into()))
    );
    assert_eq!(
        ledger.budget_status("nope").unwrap_err(),
        LedgerError::UnknownBudget("nope".into())
    );
    assert!(ledger.budget_statuses().is_empty());
    actor.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test]
async fn absurd_prices_are_refused_and_prices_stay() {
    let dir = tempfile::tempdir().unwrap();
    let (actor, ledger) = started(dir.path()).await;
    assert!(matches!(
        Rate::per_million(10_000_000_001),
        Err(LedgerError::InvalidPrice { .. })
    ));
    assert!(matches!(
        ModelRates::new(0, 0, 1_000_000_001),
        Err(LedgerError::InvalidPrice { .. })
    ));
    let absurd = ModelRates {
        input_per_million: u64::MAX,
        output_per_million: 0,
        per_request: 0,
    };
    assert!(matches!(
        ledger.set_model_price("m", absurd).await,
        Err(LedgerError::InvalidPrice { .. })
    ));
    assert!(matches!(
        ledger
            .set_kind_price(ResourceKind::Cost, Rate::per_unit(1).unwrap())
            .await,
        Err(LedgerError::InvalidPrice { .. })
    ));
    assert_eq!(ledger.prices().model("m").unwrap().input_per_million, 1_000_000);
    actor.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test]
async fn malformed_usage_is_refused_before_anything_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (actor, ledger) = started(dir.path()).await;
    assert!(matches!(
        parse_labels("env=prod,team"),
        Err(LedgerError::BadLabels { .. })
    ));
    let bad_label = UsageMeta::default().model("m").label("1st", "x");
    assert!(matches!(
        ledger.track_usage(ResourceKind::InputTokens, 10, bad_label).await,
        Err(LedgerError::BadLabels { .. })
    ));
    assert!(matches!(
        ledger
            .track_usage(ResourceKind::InputTokens, 0, UsageMeta::default().model("m"))
            .await,
        Err(LedgerError::InvalidUsage(_))
    ));
    assert!(matches!(
        ledger.track_usage(ResourceKind::Gpu, 1, UsageMeta::default()).await,
        Err(LedgerError::NoPrice { .. })
    ));
    // A batch with one bad record stores none of it.
    let batch = vec![
        UsageRecord {
            kind: ResourceKind::InputTokens,
            amount: 5,
            meta: UsageMeta::default().model("m"),
        },
        UsageRecord {
            kind: ResourceKind::Custom("vector_searches".into()),
            amount: 5,
            meta: UsageMeta::default(),
        },
    ];
    assert!(matches!(ledger.record(batch).await, Err(UsageSinkError::Invalid(_))));
    assert_eq!(record_count(&ledger).await, 0);
    let ok = ledger
        .track_usage(ResourceKind::OutputTokens, 10, UsageMeta::default().model("m"))
        .await
        .unwrap();
    assert_eq!(ok.cost_micro_usd, 20);
    assert_eq!(record_count(&ledger).await, 1);
    actor.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test]
async fn invalid_budgets_and_queries_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (actor, ledger) = started(dir.path()).await;
    for b in [
        Budget::new("zero", 0, BudgetPeriod::Daily, BudgetAction::Halt),
        Budget::new("t", 5, BudgetPeriod::Daily, BudgetAction::Throttle { permille: 1000 }),
        Budget::new(
            "short",
            5,
            BudgetPeriod::Rolling(Duration::from_secs(1)),
            BudgetAction::Alert,
        ),
    ] {
        assert!(matches!(
            ledger.put_budget(b).await,
            Err(LedgerError::InvalidBudget { .. })
        ));
    }
    assert!(ledger.budget_statuses().is_empty());
    assert!(matches!(TimeRange::new(10, 5), Err(LedgerError::InvalidQuery(_))));
    assert!(matches!("colour".parse::<Field>(), Err(LedgerError::InvalidQuery(_))));
    actor.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test]
async fn a_corrupt_store_is_reported_and_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STORE_FILE);
    std::fs::write(&path, b"this is not a ledger, and it must survive being opened").unwrap();
    let before = std::fs::read(&path).unwrap();
    let err = CostLedgerArgs::open(LedgerOptions::new(dir.path())).await.unwrap_err();
    assert!(matches!(err, LedgerError::Corrupt { .. }), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before);

    // `nexus report` says so too, with a failing exit code.
    let out = Command::new(env!("CARGO_BIN_EXE_nexus"))
        .args(["report", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("corrupt"));
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_held_by_another_process_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_nexus"))
        .args(["ledger-stress", "--concurrency", "1", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // The first acknowledged record proves the child holds the store.
    let first = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let line = tokio::time::timeout(TIMEOUT, first).await.unwrap().unwrap().unwrap();
    // `<id> <op> <kind>`: the record's id comes first.
    let id = line.split_whitespace().next().unwrap_or_default();
    assert!(id.parse::<u64>().is_ok(), "{line}");
    let err = CostLedgerArgs::open(LedgerOptions::new(dir.path())).await.unwrap_err();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(matches!(err, LedgerError::Locked { .. }), "{err}");
    // Once the other process is gone the store opens, with its records.
    let (actor, ledger) =
        CostLedger::spawn_unsupervised(CostLedgerArgs::open(LedgerOptions::new(dir.path())).await.unwrap())
            .await
            .unwrap();
    assert!(record_count(&ledger).await >= 1);
    actor.stop_and_wait(None, None).await.unwrap();
}
