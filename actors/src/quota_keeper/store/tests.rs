use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use nexus_swarm_runtime::resources::ResourceKind::{Cost, InputTokens};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redb::{Database, ReadableDatabase};

use super::*;
use crate::quota_keeper::{ManualClock, QuotaClock, QuotaError, QuotaHandle, QuotaSpec, QuotaTable};

const MINUTE: Duration = Duration::from_secs(60);

/// system (no period) > acme (per minute) > acme-bot (per minute), and a
/// lone root counting cost without a period.
fn specs() -> Vec<QuotaSpec> {
    vec![
        QuotaSpec::child("acme-bot", "acme", InputTokens, 300).period(MINUTE),
        QuotaSpec::root("system", InputTokens, 10_000),
        QuotaSpec::child("acme", "system", InputTokens, 1_000).period(MINUTE),
        QuotaSpec::root("spend", Cost, 5_000_000),
    ]
}

fn open(clock: &QuotaClock, dir: &Path) -> (QuotaTable, QuotaHandle) {
    let mut table = QuotaTable::open(clock.clone(), dir).unwrap();
    table.define_all(specs()).unwrap();
    let handle = table.handle();
    (table, handle)
}

fn current(h: &QuotaHandle) -> Vec<(String, u64)> {
    h.reports().into_iter().map(|r| (r.id.to_string(), r.current)).collect()
}

fn pairs(items: &[(&str, u64)]) -> Vec<(String, u64)> {
    items.iter().map(|(id, n)| (id.to_string(), *n)).collect()
}

fn started_clock() -> (QuotaClock, ManualClock) {
    let (clock, hand) = QuotaClock::manual();
    // Not at 0, so that periods counted from the start differ from periods
    // counted from the clock's origin.
    hand.advance(Duration::from_secs(3_600) + Duration::from_millis(250));
    (clock, hand)
}

#[test]
fn usage_survives_a_reopen_in_its_period_and_resets_in_a_later_one() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, hand) = started_clock();
    let (mut table, h) = open(&clock, dir.path());
    h.try_consume("acme-bot", 250).unwrap();
    h.try_consume("system", 100).unwrap();
    let estimate = h.try_consume("spend", 40_000).unwrap();
    h.settle(estimate, 15_000).unwrap();
    h.release(h.try_consume("acme", 500).unwrap()).unwrap();
    let before = current(&h);
    assert_eq!(
        before,
        pairs(&[("acme", 250), ("acme-bot", 250), ("spend", 15_000), ("system", 350)])
    );
    hand.advance(Duration::from_secs(10));
    assert_eq!(table.flush().unwrap(), 4);
    assert_eq!(table.flush().unwrap(), 0, "nothing changed since");
    drop((table, h));

    // Same period (10 s into its minute): everything is back, peaks too.
    hand.advance(Duration::from_secs(20));
    let (mut table, h) = open(&clock, dir.path());
    assert_eq!(current(&h), before);
    assert_eq!(h.report("acme").unwrap().peak, 750);
    assert_eq!(h.report("spend").unwrap().peak, 40_000);
    // The period still ends a minute after the first definition, not a
    // minute after this one.
    assert_eq!(h.report("acme").unwrap().resets_in, Some(Duration::from_secs(30)));
    // And the restored usage counts: 50 more fit acme-bot, 51 do not.
    h.try_consume("acme-bot", 50).unwrap();
    assert!(matches!(
        h.try_consume("acme-bot", 1),
        Err(QuotaError::Exhausted { .. })
    ));
    assert_eq!(table.flush().unwrap(), 3);
    drop((table, h));

    // 40 s later the minute has ended: the periodic quotas start at zero,
    // the others keep their usage.
    hand.advance(Duration::from_secs(40));
    let (table, h) = open(&clock, dir.path());
    assert_eq!(
        current(&h),
        pairs(&[("acme", 0), ("acme-bot", 0), ("spend", 15_000), ("system", 400)])
    );
    assert_eq!(h.report("acme-bot").unwrap().peak, 300, "the peak is history");
    assert_eq!(h.report("acme").unwrap().resets_in, Some(Duration::from_secs(50)));
    drop((table, h));

    // Many periods later, still counted from the first start.
    hand.advance(Duration::from_secs(600) + Duration::from_secs(5));
    let (_table, h) = open(&clock, dir.path());
    assert_eq!(h.report("acme").unwrap().resets_in, Some(Duration::from_secs(45)));
}

#[test]
fn a_period_ended_while_stopped_is_not_restored_even_without_a_write_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, hand) = started_clock();
    let (mut table, h) = open(&clock, dir.path());
    h.try_consume("acme", 999).unwrap();
    hand.advance(Duration::from_secs(59));
    table.flush().unwrap();
    drop((table, h));
    hand.advance(Duration::from_secs(2));
    let (_table, h) = open(&clock, dir.path());
    assert_eq!(h.report("acme").unwrap().current, 0);
    assert_eq!(h.report("system").unwrap().current, 999);
    h.try_consume("acme", 1000).unwrap();
}

#[test]
fn a_quota_redefined_with_another_kind_or_period_starts_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, _hand) = started_clock();
    let (mut table, h) = open(&clock, dir.path());
    h.try_consume("acme-bot", 100).unwrap();
    h.try_consume("spend", 100).unwrap();
    table.flush().unwrap();
    drop((table, h));

    let mut table = QuotaTable::open(clock.clone(), dir.path()).unwrap();
    table
        .define_all(vec![
            QuotaSpec::root("acme-bot", InputTokens, 300).period(2 * MINUTE),
            QuotaSpec::root("spend", InputTokens, 300),
        ])
        .unwrap();
    let h = table.handle();
    assert_eq!(current(&h), pairs(&[("acme-bot", 0), ("spend", 0)]));
    // Their new usage replaces the old entries.
    h.try_consume("spend", 7).unwrap();
    assert_eq!(table.flush().unwrap(), 2);
    drop((table, h));
    let mut table = QuotaTable::open(clock, dir.path()).unwrap();
    table.define(QuotaSpec::root("spend", InputTokens, 300)).unwrap();
    assert_eq!(table.report("spend").unwrap().current, 7);
}

#[test]
fn quotas_not_defined_in_a_run_keep_their_entries_for_a_later_one() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, _hand) = started_clock();
    let (mut table, h) = open(&clock, dir.path());
    h.try_consume("spend", 77).unwrap();
    table.flush().unwrap();
    drop((table, h));

    let mut table = QuotaTable::open(clock.clone(), dir.path()).unwrap();
    table.define(QuotaSpec::root("other", Cost, 10)).unwrap();
    table.handle().try_consume("other", 3).unwrap();
    assert_eq!(table.flush().unwrap(), 1);
    drop(table);

    let (_table, h) = open(&clock, dir.path());
    assert_eq!(h.report("spend").unwrap().current, 77);
}

#[test]
fn a_table_without_a_store_flushes_nothing() {
    let (clock, _hand) = QuotaClock::manual();
    let mut table = QuotaTable::new(clock);
    table.define_all(specs()).unwrap();
    table.handle().try_consume("acme", 5).unwrap();
    assert_eq!(table.flush().unwrap(), 0);
}

#[test]
fn a_second_open_of_the_same_store_is_refused_as_locked() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, _hand) = QuotaClock::manual();
    let _first = QuotaTable::open(clock.clone(), dir.path()).unwrap();
    match QuotaTable::open(clock, dir.path()) {
        Err(QuotaError::Store(QuotaStoreError::Locked { path })) => assert_eq!(path, dir.path().join(STORE_FILE)),
        other => panic!("expected Locked, got {other:?}"),
    }
}

/// Writes the usage of `specs()` charged as in the first test, closes it.
fn written_store(dir: &Path) {
    let (clock, _hand) = started_clock();
    let (mut table, h) = open(&clock, dir);
    h.try_consume("acme-bot", 250).unwrap();
    h.try_consume("spend", 15_000).unwrap();
    table.flush().unwrap();
}

fn open_err(dir: &Path) -> QuotaStoreError {
    match QuotaStore::open(dir) {
        Ok(store) => panic!("a damaged store opened: {store:?}"),
        Err(e) => e,
    }
}

fn corrupt_entry(e: &QuotaStoreError) -> &str {
    match e {
        QuotaStoreError::Corrupt { entry, .. } => entry,
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

/// Runs `f` on the store's file directly through redb.
fn tamper(dir: &Path, f: impl FnOnce(&redb::WriteTransaction)) {
    let db = Database::create(dir.join(STORE_FILE)).unwrap();
    let txn = db.begin_write().unwrap();
    f(&txn);
    txn.commit().unwrap();
}

fn stored_value(dir: &Path, id: &str) -> Vec<u8> {
    let db = Database::create(dir.join(STORE_FILE)).unwrap();
    let read = db.begin_read().unwrap();
    let table = read.open_table(USAGE).unwrap();
    table.get(id).unwrap().unwrap().value().to_vec()
}

#[test]
fn a_damaged_value_is_corrupt_naming_the_quota_never_read_back() {
    // Every byte of a value (body or checksum), one bit at a time.
    let dir = tempfile::tempdir().unwrap();
    written_store(dir.path());
    let original = stored_value(dir.path(), "acme-bot");
    for at in 0..original.len() {
        let mut damaged = original.clone();
        damaged[at] ^= 1 << (at % 8);
        tamper(dir.path(), |txn| {
            txn.open_table(USAGE)
                .unwrap()
                .insert("acme-bot", damaged.as_slice())
                .unwrap();
        });
        let err = open_err(dir.path());
        assert_eq!(corrupt_entry(&err), "usage of quota \"acme-bot\"", "byte {at}: {err}");
        assert!(err.to_string().contains("acme-bot"), "{err}");
    }
    // Truncated below its checksum, and a body too short to decode under
    // a valid checksum.
    for value in [vec![1, 2, 3], seal(Domain::Usage, b"acme-bot", vec![0; 12])] {
        tamper(dir.path(), |txn| {
            txn.open_table(USAGE)
                .unwrap()
                .insert("acme-bot", value.as_slice())
                .unwrap();
        });
        assert_eq!(corrupt_entry(&open_err(dir.path())), "usage of quota \"acme-bot\"");
    }
    // A usage above the counters' range under a valid checksum.
    let mut usage = StoredUsage::decode(unseal(Domain::Usage, b"acme-bot", &original).unwrap().0).unwrap();
    usage.counter.used = MAX_QUOTA_AMOUNT + 1;
    tamper(dir.path(), |txn| {
        let value = seal(Domain::Usage, b"acme-bot", usage.encode());
        txn.open_table(USAGE)
            .unwrap()
            .insert("acme-bot", value.as_slice())
            .unwrap();
    });
    let err = open_err(dir.path());
    assert!(err.to_string().contains("above the largest quota amount"), "{err}");
}

#[test]
fn a_value_moved_to_another_quota_or_an_entry_lost_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    written_store(dir.path());
    // A valid value of one quota under another's key.
    let value = stored_value(dir.path(), "acme-bot");
    tamper(dir.path(), |txn| {
        txn.open_table(USAGE).unwrap().insert("acme", value.as_slice()).unwrap();
    });
    assert_eq!(corrupt_entry(&open_err(dir.path())), "usage of quota \"acme\"");

    // An entry gone (as a damaged page could hide it): the digest says so.
    let dir = tempfile::tempdir().unwrap();
    written_store(dir.path());
    tamper(dir.path(), |txn| {
        txn.open_table(USAGE).unwrap().remove("spend").unwrap();
    });
    let err = open_err(dir.path());
    assert_eq!(corrupt_entry(&err), "the usage digest", "{err}");
    assert!(err.to_string().contains("lists 4 entries, 3 were read"), "{err}");

    // An old copy of an entry (as a damaged page could show one).
    let dir = tempfile::tempdir().unwrap();
    written_store(dir.path());
    let old = stored_value(dir.path(), "spend");
    {
        let (clock, _hand) = started_clock();
        let (mut table, h) = open(&clock, dir.path());
        h.try_consume("spend", 1).unwrap();
        table.flush().unwrap();
    }
    tamper(dir.path(), |txn| {
        txn.open_table(USAGE).unwrap().insert("spend", old.as_slice()).unwrap();
    });
    let err = open_err(dir.path());
    assert!(err.to_string().contains("with other contents"), "{err}");
}

#[test]
fn a_file_that_is_not_a_quota_store_of_this_format_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STORE_FILE);
    std::fs::write(&path, b"").unwrap();
    assert_eq!(corrupt_entry(&open_err(dir.path())), "the file");
    assert_eq!(std::fs::read(&path).unwrap(), b"");
    std::fs::write(&path, b"not a database").unwrap();
    assert_eq!(corrupt_entry(&open_err(dir.path())), "the file");
    assert_eq!(std::fs::read(&path).unwrap(), b"not a database");

    // A redb file of something else.
    std::fs::remove_file(&path).unwrap();
    tamper(dir.path(), |txn| {
        let t: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("records");
        txn.open_table(t).unwrap().insert(1, 2).unwrap();
    });
    let err = open_err(dir.path());
    assert!(err.to_string().contains("not a quota store"), "{err}");

    // Another format version, and a damaged one.
    let dir = tempfile::tempdir().unwrap();
    written_store(dir.path());
    tamper(dir.path(), |txn| {
        let value = seal(Domain::Meta, FORMAT_KEY.as_bytes(), 2u64.to_le_bytes().to_vec());
        txn.open_table(META)
            .unwrap()
            .insert(FORMAT_KEY, value.as_slice())
            .unwrap();
    });
    assert!(matches!(
        open_err(dir.path()),
        QuotaStoreError::UnsupportedFormat {
            found: 2,
            supported: FORMAT_VERSION,
            ..
        }
    ));
    tamper(dir.path(), |txn| {
        let mut value = seal(Domain::Meta, FORMAT_KEY.as_bytes(), 1u64.to_le_bytes().to_vec());
        value[0] ^= 2;
        txn.open_table(META)
            .unwrap()
            .insert(FORMAT_KEY, value.as_slice())
            .unwrap();
    });
    assert_eq!(corrupt_entry(&open_err(dir.path())), "the format version");
}

/// The stored entries of an intact store, as a reopened table would see
/// them.
fn entries(store: &QuotaStore) -> HashMap<String, StoredUsage> {
    store.entries.iter().map(|(k, (u, _))| (k.clone(), u.clone())).collect()
}

/// A store holding many quotas gets one bit flipped at seeded positions in
/// every page that holds data (a fresh copy each time): opening the copy
/// gives back exactly the intact entries or a `Corrupt` error, never other
/// usage, and never panics.
#[test]
fn every_flipped_bit_reads_back_the_original_or_a_corrupt_error() {
    const PAGE: usize = 4096;
    const FLIPS_PER_PAGE: usize = 12;
    let dir = tempfile::tempdir().unwrap();
    {
        let (clock, _hand) = started_clock();
        let mut table = QuotaTable::open(clock, dir.path()).unwrap();
        let mut quotas = vec![QuotaSpec::root("root", InputTokens, 1 << 40)];
        quotas.extend((0..200).map(|i| QuotaSpec::child(format!("tenant-{i:03}"), "root", InputTokens, 1 << 30)));
        table.define_all(quotas).unwrap();
        let h = table.handle();
        for i in 0..200u64 {
            h.try_consume(&format!("tenant-{i:03}"), 1 + i * 7).unwrap();
        }
        table.flush().unwrap();
        // A second write, so that the file holds freed pages too.
        h.try_consume("tenant-007", 1).unwrap();
        table.flush().unwrap();
    }
    let original = entries(&QuotaStore::open(dir.path()).unwrap());
    assert_eq!(original.len(), 201);
    let bytes = std::fs::read(dir.path().join(STORE_FILE)).unwrap();

    let mut rng = StdRng::seed_from_u64(0x0097_07a5);
    let scratch = tempfile::tempdir().unwrap();
    let (mut same, mut corrupt) = (0, 0);
    for (page, chunk) in bytes.chunks(PAGE).enumerate() {
        if chunk.iter().all(|b| *b == 0) {
            continue;
        }
        for _ in 0..FLIPS_PER_PAGE {
            let at = page * PAGE + rng.random_range(0..chunk.len());
            let mask = 1u8 << rng.random_range(0..8);
            let mut damaged = bytes.clone();
            damaged[at] ^= mask;
            std::fs::write(scratch.path().join(STORE_FILE), &damaged).unwrap();
            match QuotaStore::open(scratch.path()) {
                Ok(store) => {
                    assert!(
                        entries(&store) == original,
                        "flipping {mask:#04x} at byte {at} read back different usage"
                    );
                    same += 1;
                }
                Err(QuotaStoreError::Corrupt { .. }) => corrupt += 1,
                Err(e) => panic!("flipping {mask:#04x} at byte {at} gave `{e}`, not a Corrupt error"),
            }
        }
    }
    assert!(corrupt > 0 && same > 0, "{corrupt} flips detected, {same} harmless");
}
