//! The ledger record decoder (`RecordCodec::decode_entry`, what the store
//! runs on every record it reads) on arbitrary bytes: it never panics, and
//! whatever it accepts re-encodes to exactly the same bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nexus_swarm_actors::cost_ledger::RecordCodec;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = RecordCodec::decode_entry(data) {
        assert_eq!(
            RecordCodec::encode_entry(&record),
            data,
            "an accepted entry re-encodes to its bytes"
        );
    }
});
