//! Unit tests of the redb store: the record codec, the hour index and the
//! guards around redb.

use super::*;
use crate::cost_ledger::MICROS_PER_DAY;

const HOUR: u64 = HOUR_US;

fn record(at_us: u64, tenant: &str) -> NewRecord {
    NewRecord {
        at_us,
        kind: ResourceKind::InputTokens,
        amount: 7,
        cost_micro_usd: 11,
        meta: UsageMeta::default().tenant(tenant).label("op", format!("op-{at_us}")),
    }
}

fn count(store: &RedbStore, from_us: u64, to_us: u64) -> Result<u64, LedgerError> {
    let mut n = 0;
    store.visit_usage(from_us, to_us, &mut |row| {
        n += row.records;
        Ok(())
    })?;
    Ok(n)
}

#[test]
fn the_record_codec_round_trips_and_refuses_any_changed_byte() {
    let r = record(42, "acme").with_id(9);
    let entry = RecordCodec::encode_entry(&r);
    assert_eq!(RecordCodec::decode_entry(&entry).unwrap(), r);
    for i in 0..entry.len() {
        for bit in 0..8 {
            let mut damaged = entry.clone();
            damaged[i] ^= 1 << bit;
            assert!(RecordCodec::decode_entry(&damaged).is_err(), "byte {i} bit {bit}");
        }
    }
    assert!(matches!(
        RecordCodec::decode_entry(&entry[..entry.len() - 1]),
        Err(EntryDamage::Checksum { .. })
    ));
    assert!(matches!(
        RecordCodec::decode_entry(&entry[..3]),
        Err(EntryDamage::Truncated { .. })
    ));
}

#[test]
fn a_record_the_index_does_not_list_is_corrupt_in_every_range_that_covers_its_hour() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path()).unwrap();
    let recs: Vec<NewRecord> = (0..30).map(|i| record(i * HOUR / 3, "t")).collect();
    store.append(&recs, &[]).unwrap();
    assert_eq!(count(&store, 0, u64::MAX).unwrap(), 30);
    assert_eq!(
        count(&store, HOUR + 1, 2 * HOUR).unwrap(),
        2,
        "whole hours are read, the range is visited"
    );
    // A record vanishes behind the index's back (as a damaged page would
    // hide it).
    let Some(Engine::Writable(db)) = &store.engine else {
        panic!("writable")
    };
    let txn = db.begin_write().unwrap();
    txn.open_table(RECORDS).unwrap().remove((4 * HOUR / 3, 5)).unwrap();
    txn.commit().unwrap();
    for (from, to) in [(0, u64::MAX), (4 * HOUR / 3 + 1, 4 * HOUR / 3 + 2), (HOUR, 2 * HOUR)] {
        let err = count(&store, from, to).unwrap_err();
        assert!(
            matches!(
                err,
                LedgerError::Corrupt {
                    what: Damaged::Index { hour_us: HOUR },
                    ..
                }
            ),
            "{from}..{to}: {err}"
        );
    }
    assert_eq!(count(&store, 2 * HOUR, u64::MAX).unwrap(), 24, "other hours read");
    // Verify works on a snapshot beside the writer and lists the hour.
    let report = RedbStore::verify(dir.path()).unwrap();
    assert_eq!(
        report.damage.iter().map(|d| &d.what).collect::<Vec<_>>(),
        vec![&Damaged::Index { hour_us: HOUR }],
        "{report:?}"
    );
}

#[test]
fn compaction_keeps_the_index_exact() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = RedbStore::open(dir.path()).unwrap();
        let recs: Vec<NewRecord> = (0..96)
            .map(|i| record(i * HOUR / 2, if i % 2 == 0 { "a" } else { "b" }))
            .collect();
        store.append(&recs, &[]).unwrap();
        store.compact(MICROS_PER_DAY, 0, 7).unwrap();
        store.append(&[record(10, "a")], &[]).unwrap();
        store.compact(MICROS_PER_DAY, 0, 7).unwrap();
        assert_eq!(count(&store, 0, u64::MAX).unwrap(), 97);
        assert_eq!(count(&store, 0, MICROS_PER_DAY).unwrap(), 49);
    }
    let report = RedbStore::verify(dir.path()).unwrap();
    assert!(report.is_intact(), "{report:?}");
    // Each record has its own `op` label: one aggregate per record.
    assert_eq!((report.records, report.aggregates), (48, 49));
}

#[test]
fn a_visitor_panic_is_the_callers_not_damage() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path()).unwrap();
    store.append(&[record(1, "t")], &[]).unwrap();
    let caught = catch_unwind(AssertUnwindSafe(|| {
        let _ = store.visit_records(0, u64::MAX, &mut |_| panic!("the visitor's own bug"));
    }));
    let payload = caught.expect_err("the visitor's panic reaches its caller");
    assert_eq!(panic_message(payload.as_ref()), "the visitor's own bug");
    assert_eq!(count(&store, 0, u64::MAX).unwrap(), 1, "the store still reads");
}

#[test]
fn a_damaged_next_id_stops_appends_instead_of_reusing_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path()).unwrap();
    store.append(&[record(1, "t")], &[]).unwrap();
    let Some(Engine::Writable(db)) = &store.engine else {
        panic!("writable")
    };
    let txn = db.begin_write().unwrap();
    txn.open_table(META).unwrap().insert(NEXT_ID_KEY, 1).unwrap();
    txn.commit().unwrap();
    let err = store.append(&[record(2, "t")], &[]).unwrap_err();
    assert!(
        matches!(
            err,
            LedgerError::Corrupt {
                what: Damaged::Meta { .. },
                ..
            }
        ),
        "{err}"
    );
}
