//! Damage to a ledger file is detected, never read back as data: a ledger
//! written by the real ledger gets one bit flipped at many seeded positions
//! in every page that holds data (a fresh copy each time). Every read of a
//! damaged copy (reports over all time and over part of a day, every
//! record, budgets and their spend, prices) either returns exactly what the
//! intact file holds or fails with a typed `Corrupt` error; nothing panics.
//! `RedbStore::verify` agrees: it never calls intact a copy whose reads
//! fail.

use crate::support::ledger_fixture as fixture;

use nexus_swarm::actors::cost_ledger::{LedgerError, RedbStore, STORE_FILE};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SEED: u64 = 0xf11b_b175;
const PAGE: usize = 4096;
const FLIPS_PER_PAGE: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flipped_bit_reads_back_the_original_or_a_corrupt_error() {
    let dir = tempfile::tempdir().unwrap();
    fixture::write_ledger(dir.path(), 400).await;
    let original = fixture::read_contents(dir.path()).expect("the intact ledger reads");
    assert_eq!(original.report.total_records, 400);
    assert!(!original.records.is_empty() && !original.budgets.is_empty());
    assert!(RedbStore::verify(dir.path()).unwrap().is_intact());

    let bytes = std::fs::read(dir.path().join(STORE_FILE)).unwrap();
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut flips = Vec::new();
    for (page, chunk) in bytes.chunks(PAGE).enumerate() {
        if chunk.iter().all(|b| *b == 0) {
            continue;
        }
        for _ in 0..FLIPS_PER_PAGE {
            let at = page * PAGE + rng.random_range(0..chunk.len());
            flips.push((at, 1u8 << rng.random_range(0..8)));
        }
    }
    assert!(
        flips.len() >= 10 * FLIPS_PER_PAGE,
        "only {} pages hold data",
        flips.len() / FLIPS_PER_PAGE
    );

    let scratch = tempfile::tempdir().unwrap();
    let (mut same, mut corrupt) = (0, 0);
    for (at, mask) in flips {
        let mut damaged = bytes.clone();
        damaged[at] ^= mask;
        std::fs::write(scratch.path().join(STORE_FILE), &damaged).unwrap();
        let read = fixture::read_contents(scratch.path());
        match &read {
            Ok(contents) => {
                assert!(
                    contents == &original,
                    "flipping {mask:#04x} at byte {at} read back different data"
                );
                same += 1;
            }
            Err(LedgerError::Corrupt { .. }) => corrupt += 1,
            Err(e) => panic!("flipping {mask:#04x} at byte {at} gave `{e}`, not a Corrupt error"),
        }
        let verified = RedbStore::verify(scratch.path());
        if read.is_err() {
            assert!(
                matches!(&verified, Err(LedgerError::Corrupt { .. }))
                    || verified.as_ref().is_ok_and(|v| !v.is_intact()),
                "flipping {mask:#04x} at byte {at}: reads fail but verify says {verified:?}"
            );
        }
        assert_eq!(
            std::fs::read(scratch.path().join(STORE_FILE)).unwrap(),
            damaged,
            "a read wrote the file"
        );
    }
    assert!(corrupt > 0 && same > 0, "{corrupt} flips detected, {same} harmless");
}
