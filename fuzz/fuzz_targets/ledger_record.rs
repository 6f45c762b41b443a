//! The ledger record decoder (`RecordCodec::decode_entry`, what the store
//! runs on every record it reads) on arbitrary bytes: it never panics, and
//! whatever it accepts re-encodes to exactly the same bytes. Inputs whose
//! first byte is odd get a valid checksum appended to the rest first, so
//! that mutations reach the body decoder behind the checksum.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nexus_swarm_actors::cost_ledger::RecordCodec;

fuzz_target!(|data: &[u8]| {
    let entry = match data.split_first() {
        Some((flag, rest)) if flag & 1 == 1 => RecordCodec::seal_entry_for_fuzzing(rest),
        _ => data.to_vec(),
    };
    if let Ok(record) = RecordCodec::decode_entry(&entry) {
        assert_eq!(
            RecordCodec::encode_entry(&record),
            entry,
            "an accepted entry re-encodes to its bytes"
        );
    }
});
