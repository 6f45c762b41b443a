#!/usr/bin/env bash
# The whole test suite: formatting, lints and rustdoc (warnings are errors), every test.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
cargo test --workspace
# `nexus serve` driven by the official `openai` Python client (prints SKIP
# and why when python3 or PyPI is not available).
scripts/front_door_openai_client.sh
# The dashboard of `nexus run` in headless Chromium (installs Debian's chromium
# when missing and root; prints SKIP and why when it cannot).
scripts/dashboard_chromium.sh
