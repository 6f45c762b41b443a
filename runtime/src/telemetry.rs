//! `tracing` set-up for binaries and examples.

use tracing_subscriber::EnvFilter;

/// Installs a `fmt` subscriber on stderr filtered by `RUST_LOG` (default:
/// `warn`). Safe to call more than once: later calls do nothing.
pub fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    // An error means a subscriber is already installed, which is fine.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
