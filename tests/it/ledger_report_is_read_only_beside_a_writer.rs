//! `nexus report` never writes the ledger: the file's bytes and
//! modification time are unchanged after a report, also when the file is
//! read-only; it reports while a ledger holds the store for writing
//! (reading a consistent snapshot of what was committed); and a 0-byte
//! ledger file is reported corrupt, never initialised as a new ledger.

use crate::support::ledger_fixture as fixture;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use nexus_swarm::actors::cost_ledger::*;
use nexus_swarm::runtime::resources::ResourceKind;
use nexus_swarm::runtime::usage::UsageMeta;

fn report(dir: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nexus"))
        .args(["report", "--format", "json", "--data-dir"])
        .arg(dir)
        .args(extra)
        .output()
        .expect("nexus report runs")
}

fn json_total_records(out: &Output) -> u64 {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the report is JSON");
    v["total_records"].as_u64().expect("total_records")
}

fn stamp(path: &Path) -> (Vec<u8>, SystemTime) {
    (
        std::fs::read(path).unwrap(),
        std::fs::metadata(path).unwrap().modified().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_leaves_the_file_byte_for_byte_and_its_mtime_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    fixture::write_ledger(dir.path(), 200).await;
    let path = dir.path().join(STORE_FILE);
    // Coarse file-system clocks: a write now would show in the mtime.
    std::thread::sleep(Duration::from_millis(20));
    let before = stamp(&path);
    assert_eq!(json_total_records(&report(dir.path(), &[])), 200);
    assert!(stamp(&path) == before, "the report wrote the ledger");

    // A read-only file reads the same (tests run as root, whom permissions
    // do not stop: the bytes and mtime are what prove nothing was written).
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(&path, perms).unwrap();
    let out = report(dir.path(), &["--group-by", "tenant"]);
    assert_eq!(json_total_records(&out), 200);
    assert!(stamp(&path) == before, "the report wrote the read-only ledger");
    let store = RedbStore::open_read_only(dir.path()).unwrap();
    assert!(matches!(
        store.put_prices(&PriceTable::new()),
        Err(LedgerError::ReadOnly { .. })
    ));
    drop(store);
    assert!(stamp(&path) == before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_runs_beside_the_ledger_that_holds_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let (actor, ledger) =
        CostLedger::spawn_unsupervised(CostLedgerArgs::open(LedgerOptions::new(dir.path())).await.unwrap())
            .await
            .unwrap();
    ledger
        .set_model_price("m", ModelRates::new(1_000_000, 2_000_000, 0).unwrap())
        .await
        .unwrap();
    let meta = UsageMeta::default().tenant("t").model("m");
    for _ in 0..7 {
        ledger
            .track_usage(ResourceKind::InputTokens, 10, meta.clone())
            .await
            .unwrap();
    }
    // Another process, while this one holds the store for writing.
    let out = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || report(&dir, &[])
    })
    .await
    .unwrap();
    assert_eq!(json_total_records(&out), 7);

    // In this process too, and later commits show in the next snapshot.
    ledger
        .track_usage(ResourceKind::InputTokens, 10, meta.clone())
        .await
        .unwrap();
    let store = RedbStore::open_read_only(dir.path()).unwrap();
    let r = build_report(&store, ReportQuery::new(TimeRange::all())).unwrap();
    assert_eq!((r.total_records, r.total_cost_micro_usd), (8, 80));
    drop(store);
    // The writer was not disturbed.
    ledger.track_usage(ResourceKind::InputTokens, 10, meta).await.unwrap();
    assert_eq!(ledger.records(TimeRange::all()).await.unwrap().len(), 9);
    actor.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test]
async fn a_zero_byte_ledger_is_corrupt_not_a_new_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STORE_FILE);
    std::fs::write(&path, b"").unwrap();
    let out = report(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("corrupt"));
    assert!(matches!(
        RedbStore::open_read_only(dir.path()),
        Err(LedgerError::Corrupt {
            what: Damaged::File,
            ..
        })
    ));
    let err = CostLedgerArgs::open(LedgerOptions::new(dir.path())).await.unwrap_err();
    assert!(
        matches!(
            err,
            LedgerError::Corrupt {
                what: Damaged::File,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "never initialised");
}
