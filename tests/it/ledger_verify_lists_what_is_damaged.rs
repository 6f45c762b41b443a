//! `nexus ledger verify` checks a ledger without writing it: exit 0 and
//! "intact" for an intact ledger; exit 1 listing the damaged record when
//! one record's bytes are damaged (and `nexus report` then exits 1 naming
//! it too); exit 2 when there is no ledger to check. An old-format store is
//! a typed error, never misread.

use crate::support::ledger_fixture as fixture;

use fixture::nexus;

use nexus_swarm::actors::cost_ledger::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_passes_an_intact_ledger_and_names_a_damaged_record() {
    let dir = tempfile::tempdir().unwrap();
    fixture::write_ledger(dir.path(), 200).await;
    let path = dir.path().join(STORE_FILE);
    let intact = std::fs::read(&path).unwrap();
    let out = nexus(&["ledger", "verify"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("intact"), "{stdout}");
    assert_eq!(std::fs::read(&path).unwrap(), intact, "verify wrote the ledger");
    let baseline = RedbStore::verify(dir.path()).unwrap();
    assert!(baseline.is_intact() && baseline.records > 0 && baseline.aggregates > 0);

    // Damage one record: a bit of its unique label, still in the file.
    let label = b"op-150";
    let at = intact
        .windows(label.len())
        .position(|w| w == label)
        .expect("the record's label is stored");
    let mut damaged = intact.clone();
    damaged[at + label.len() - 1] ^= 0x01; // "op-150" -> "op-151"
    std::fs::write(&path, &damaged).unwrap();

    let out = nexus(&["ledger", "verify"], dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("DAMAGED") && stdout.contains("damaged: record"),
        "{stdout}"
    );
    let report = RedbStore::verify(dir.path()).unwrap();
    assert!(
        report.damage.iter().any(|d| matches!(d.what, Damaged::Record { .. })),
        "{report:?}"
    );
    assert_eq!(report.records, baseline.records - 1, "every other record is intact");
    assert_eq!(report.damage.len(), 1, "{report:?}");

    let out = nexus(&["report"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("corrupt") && stderr.contains("record"), "{stderr}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        damaged,
        "nothing rewrote the damage away"
    );
}

#[test]
fn verify_without_a_ledger_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = nexus(&["ledger", "verify"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no ledger store"));
    assert!(!dir.path().join(STORE_FILE).exists(), "verify created nothing");
}

#[test]
fn a_store_of_the_old_format_is_refused_with_its_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STORE_FILE);
    {
        // Format 1: the same tables, values without checksums.
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let meta: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
            let mut t = txn.open_table(meta).unwrap();
            t.insert("schema", 1).unwrap();
            t.insert("next_id", 1).unwrap();
        }
        txn.commit().unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let old_format = |err: &LedgerError| {
        matches!(
            err,
            LedgerError::UnsupportedFormat {
                found: 1,
                supported: FORMAT_VERSION,
                ..
            }
        )
    };
    let err = RedbStore::open_read_only(dir.path()).unwrap_err();
    assert!(old_format(&err), "{err}");
    let out = nexus(&["report"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("format version 1"));
    assert_eq!(std::fs::read(&path).unwrap(), before, "read-only opens never write");
    let err = RedbStore::open(dir.path()).unwrap_err();
    assert!(old_format(&err), "{err}");
}
