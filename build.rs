//! Records the compiler's version for the benchmark's saved results
//! (`nexus bench --save`): the rustc that built the binary, not whichever
//! is on the PATH when it runs.

use std::process::Command;

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    if let Ok(out) = Command::new(rustc).arg("--version").output() {
        if out.status.success() {
            let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
            println!("cargo:rustc-env=NEXUS_RUSTC_VERSION={version}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
