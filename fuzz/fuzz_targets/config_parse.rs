//! Arbitrary bytes into the configuration reader: it never panics, and a
//! configuration it accepts is written back by `to_toml_string` as text it
//! accepts again, unchanged.
//!
//! ```text
//! RUSTC_BOOTSTRAP=1 cargo fuzz run config_parse -- -max_total_time=600
//! ```

#![no_main]

use libfuzzer_sys::fuzz_target;
use nexus_swarm_runtime::config::NexusConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = NexusConfig::from_toml_str(text) else {
        return;
    };
    let written = config.to_toml_string();
    let back = NexusConfig::from_toml_str(&written)
        .unwrap_or_else(|e| panic!("accepted config written back is refused: {e}\n--- written:\n{written}"));
    assert_eq!(back, config, "round trip changed the config\n--- written:\n{written}");
});
