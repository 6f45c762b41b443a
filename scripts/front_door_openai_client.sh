#!/usr/bin/env bash
# `nexus serve` against the official `openai` Python client: installs it from
# PyPI into a virtual environment under the target directory, starts a
# server on a free 127.0.0.1 port (simulated provider, three keys: open,
# 1 rpm, 1 micro-dollar budget) and a relay server whose provider is the
# first one over HTTP, runs tests/python/test_front_door.py, stops both. Without python3, venv or PyPI it prints SKIP and what is
# missing, and exits 0 (set NEXUS_REQUIRE_PYTHON_TESTS=1 to fail instead).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
VENV="$TARGET/front-door-venv"
OPENAI_SPEC="openai>=1.40,<2"

skip() {
    echo "SKIP front door openai-client test: $*" >&2
    if [ "${NEXUS_REQUIRE_PYTHON_TESTS:-0}" = 1 ]; then exit 1; fi
    exit 0
}

command -v python3 >/dev/null || skip "python3 is not installed"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" >/dev/null 2>&1 || { rm -rf "$VENV"; skip "python3 -m venv failed (install python3-venv)"; }
fi
if ! "$VENV/bin/python" -c "import openai" >/dev/null 2>&1; then
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "$OPENAI_SPEC" \
        || skip "pip could not install '$OPENAI_SPEC' from PyPI (no network access to pypi.org?)"
fi

cargo build --quiet --bin nexus
NEXUS="$TARGET/debug/nexus"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid"
            wait "$pid" || true
        fi
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

cat >"$WORK/nexus.toml" <<TOML
[node]
data_dir = "$WORK/data"

[[llm.providers]]
id = "sim"
kind = "simulated"
seed = 7
latency_median = "0s"

[[llm.models]]
name = "small"
context_window = 16000
max_output_tokens = 256
input_price = 150000
output_price = 600000
deployments = [{ provider = "sim" }]
TOML

export NEXUS_KEY_OPEN="sk-open-$RANDOM$RANDOM"
export NEXUS_KEY_LIMITED="sk-limited-$RANDOM$RANDOM"
export NEXUS_KEY_POOR="sk-poor-$RANDOM$RANDOM"
hash() { printf '%s\n' "$1" | "$NEXUS" keys hash; }
cat >"$WORK/keys.toml" <<TOML
[[keys]]
name = "open"
sha256 = "$(hash "$NEXUS_KEY_OPEN")"
tenant = "acme"
workflow = "survey"
tokens_per_minute = 100000

[[keys]]
name = "limited"
sha256 = "$(hash "$NEXUS_KEY_LIMITED")"
tenant = "acme"
workflow = "limited"
requests_per_minute = 1

[[keys]]
name = "poor"
sha256 = "$(hash "$NEXUS_KEY_POOR")"
tenant = "poor"
budget_micro_usd = 1
TOML

# Starts `nexus serve` with config $1 (output under $WORK/$2.*) and sets
# ADDR to where it listens.
start() {
    "$NEXUS" serve --config "$1" --keys "$WORK/keys.toml" --listen 127.0.0.1:0 \
        >"$WORK/$2.stdout" 2>"$WORK/$2.stderr" &
    local pid=$!
    PIDS+=("$pid")
    ADDR=""
    for _ in $(seq 1 300); do
        ADDR="$(sed -n 's|^nexus serve: listening on http://||p' "$WORK/$2.stdout")"
        [ -n "$ADDR" ] && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            cat "$WORK/$2.stderr" >&2
            echo "nexus serve ($2) exited before listening" >&2
            exit 1
        fi
        sleep 0.1
    done
    cat "$WORK/$2.stderr" >&2
    echo "nexus serve ($2) did not listen within 30 s" >&2
    exit 1
}

start "$WORK/nexus.toml" direct
DIRECT="$ADDR"

# The relay: the same model, served by the first server over HTTP.
cat >"$WORK/relay.toml" <<TOML
[node]
data_dir = "$WORK/relay-data"

[[llm.providers]]
id = "upstream"
kind = "openai_compatible"
base_url = "http://$DIRECT/v1"
api_key_env = "NEXUS_KEY_OPEN"

[[llm.models]]
name = "small"
context_window = 16000
max_output_tokens = 256
input_price = 150000
output_price = 600000
deployments = [{ provider = "upstream" }]
TOML
start "$WORK/relay.toml" relay
RELAY="$ADDR"

NEXUS_BASE_URL="http://$DIRECT/v1" NEXUS_RELAY_BASE_URL="http://$RELAY/v1" \
    "$VENV/bin/python" tests/python/test_front_door.py
