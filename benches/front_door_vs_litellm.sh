#!/usr/bin/env bash
# The front door (`nexus serve`) against the LiteLLM proxy, in front of the
# same local mock upstream, from a fresh clone with one command:
#
#     benches/front_door_vs_litellm.sh
#
# 1. installs `litellm[proxy]` (pinned) from PyPI into a virtual environment
#    under the target directory; without python3, venv or PyPI it prints
#    SKIP with the reason and exits 0;
# 2. builds `nexus` in release mode;
# 3. starts one mock OpenAI-compatible upstream (`nexus mock-upstream`:
#    answers at once with fixed usage: 10 prompt tokens, what OpenAI's
#    formula counts for the driver's one short message, and 10 completion
#    tokens, the driver's max_tokens;
#    429 past its own rpm limit, counts at GET /stats);
# 4. starts LiteLLM (one worker, no database, master key) and `nexus serve`
#    (an openai_compatible provider), both pointing at the mock;
# 5. throughput and added latency: the same closed-loop load
#    (`nexus front-door-load`, keep-alive, C workers for DURATION) straight
#    at the mock, then through each proxy, at each concurrency; added
#    latency = percentile through the proxy minus the same percentile
#    straight to the mock at the same concurrency, in the same run;
#    requests/s per core = successful requests / CPU seconds the proxy
#    process used during the run (from /proc);
# 6. upstream 429s under 5x demand: the same rpm limit R on each proxy's
#    deployment and on the mock; 5R per minute offered (open loop) for
#    RPM_PERIOD; the mock's 429s counted. LiteLLM twice: its default
#    routing (where `rpm` only weighs deployments) and
#    `routing_strategy: usage-based-routing-v2` (which enforces it);
# 7. spend against a small budget (BUDGET_REQUESTS requests' worth) under
#    200 concurrent requests: LiteLLM's deployment `max_budget`, Nexus's key
#    budget; spend = requests the mock served x the price of one;
# 8. prints a table and writes benches/results/<date>-<gitrev>-front-door-vs-litellm.json.
#
# Knobs (environment): BENCH_CONCURRENCIES (default "1 8 32"),
# BENCH_DURATION (10s), BENCH_RPM (600), BENCH_RPM_PERIOD (60s),
# BENCH_BUDGET_REQUESTS (10). Not part of scripts/test.sh: it takes minutes
# and wants the machine to itself.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
VENV="$TARGET/litellm-venv"
LITELLM_SPEC="litellm[proxy]==1.74.0"
CONCURRENCIES="${BENCH_CONCURRENCIES:-1 8 32}"
DURATION="${BENCH_DURATION:-10s}"
RPM="${BENCH_RPM:-600}"
RPM_PERIOD="${BENCH_RPM_PERIOD:-60s}"
BUDGET_REQUESTS="${BENCH_BUDGET_REQUESTS:-10}"
BURST=200
# Prices of every model on both sides: $5 per million tokens in and out, so
# one answer of the mock (10 + 10 tokens) costs 100 micro-dollars.
PRICE_PER_MILLION=5000000
PROMPT_TOKENS=10
COMPLETION_TOKENS=10
REQUEST_MICRO_USD=$(((PROMPT_TOKENS + COMPLETION_TOKENS) * PRICE_PER_MILLION / 1000000))
BUDGET_MICRO_USD=$((BUDGET_REQUESTS * REQUEST_MICRO_USD))
MASTER_KEY="sk-bench-master-$RANDOM$RANDOM"
NEXUS_KEY="sk-bench-open-$RANDOM$RANDOM"
NEXUS_BUDGET_KEY="sk-bench-budget-$RANDOM$RANDOM"

skip() {
    echo "SKIP front door vs LiteLLM: $*" >&2
    exit 0
}

command -v python3 >/dev/null || skip "python3 is not installed"
command -v curl >/dev/null || skip "curl is not installed"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" >/dev/null 2>&1 || { rm -rf "$VENV"; skip "python3 -m venv failed (install python3-venv)"; }
fi
if ! "$VENV/bin/python" -c "import litellm.proxy.proxy_server" >/dev/null 2>&1; then
    echo "installing $LITELLM_SPEC into $VENV ..." >&2
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "$LITELLM_SPEC" \
        || skip "pip could not install '$LITELLM_SPEC' from PyPI (no network access to pypi.org?)"
fi
LITELLM_VERSION="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))')"

cargo build --quiet --release --bin nexus
NEXUS="$TARGET/release/nexus"
# Other work on the machine skews every figure: the load average before the
# run goes into the result.
LOADAVG_START="$(cut -d' ' -f1-3 /proc/loadavg)"

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

# wait_for FILE SED-EXPR PID WHAT: the address a server printed.
wait_for() {
    local addr=""
    for _ in $(seq 1 600); do
        addr="$(sed -n "$2" "$1")"
        [ -n "$addr" ] && { echo "$addr"; return 0; }
        kill -0 "$3" 2>/dev/null || { tail -20 "$1" "$1.err" >&2 || true; echo "$4 exited before listening" >&2; return 1; }
        sleep 0.1
    done
    echo "$4 did not listen within 60 s" >&2
    return 1
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# LiteLLM: one worker, no database; ready once its liveliness route answers.
start_litellm() { # CONFIG -> sets LL_PID, LL_ADDR
    local port
    port="$(free_port)"
    LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_LOG=ERROR \
        "$VENV/bin/litellm" --config "$1" --host 127.0.0.1 --port "$port" --num_workers 1 \
        >"$1.out" 2>&1 &
    LL_PID=$!
    PIDS+=("$LL_PID")
    LL_ADDR="127.0.0.1:$port"
    for _ in $(seq 1 1200); do
        curl -sf -o /dev/null "http://$LL_ADDR/health/liveliness" && return 0
        kill -0 "$LL_PID" 2>/dev/null || { tail -30 "$1.out" >&2; echo "litellm exited before listening" >&2; return 1; }
        sleep 0.1
    done
    echo "litellm did not listen within 120 s" >&2
    return 1
}

stop_pid() {
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

CLK_TCK="$(getconf CLK_TCK)"
cpu_ticks() { # user + system time of a process (all its threads), in clock ticks
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}

mock_reset() { # [RPM]
    local body='{}'
    [ -n "${1:-}" ] && body="{\"requests_per_minute\": $1}"
    curl -sf -X POST "http://$MOCK_ADDR/reset" -H 'content-type: application/json' -d "$body" >/dev/null
}
mock_stats() { curl -sf "http://$MOCK_ADDR/stats"; }

# The machine's CPU time so far: "total steal" in clock ticks (/proc/stat).
# On a virtual machine, time stolen by the host during a run makes every
# figure of that run worse; each run records the share it lost.
machine_ticks() {
    awk '$1 == "cpu" { t = 0; for (i = 2; i <= NF; i++) t += $i; print t, $9; exit }' /proc/stat
}

# load NAME PID-or-"" DRIVER-ARGS...: runs the driver, writes
# $WORK/runs/NAME.json = {"load": report, "cpu_s": proxy CPU seconds|null,
# "steal_percent": CPU time the host stole during the run, "mock": stats}.
mkdir -p "$WORK/runs"
load() {
    local name="$1" pid="$2" before after report cpu="null" machine_before machine_after steal
    shift 2
    if [ -n "$pid" ]; then before="$(cpu_ticks "$pid")"; fi
    machine_before="$(machine_ticks)"
    report="$("$NEXUS" front-door-load "$@")"
    machine_after="$(machine_ticks)"
    if [ -n "$pid" ]; then
        after="$(cpu_ticks "$pid")"
        cpu="$(awk -v a="$after" -v b="$before" -v t="$CLK_TCK" 'BEGIN { printf "%.2f", (a - b) / t }')"
    fi
    steal="$(echo "$machine_before $machine_after" | awk '{ d = $3 - $1; printf "%.1f", (d > 0 ? 100 * ($4 - $2) / d : 0) }')"
    printf '{"load": %s, "cpu_s": %s, "steal_percent": %s, "mock": %s}\n' "$report" "$cpu" "$steal" "$(mock_stats)" \
        >"$WORK/runs/$name.json"
    echo "  $name: $report cpu_s=$cpu steal=$steal% mock=$(mock_stats)" >&2
}

# --- the mock upstream ------------------------------------------------------
"$NEXUS" mock-upstream --listen 127.0.0.1:0 --prompt-tokens "$PROMPT_TOKENS" --completion-tokens "$COMPLETION_TOKENS" \
    >"$WORK/mock.out" 2>"$WORK/mock.out.err" &
MOCK_PID=$!
PIDS+=("$MOCK_PID")
MOCK_ADDR="$(wait_for "$WORK/mock.out" 's|^mock-upstream: listening on http://||p' "$MOCK_PID" "mock-upstream")"

# --- nexus serve ------------------------------------------------------------
cat >"$WORK/nexus.toml" <<TOML
[node]
data_dir = "$WORK/nexus-data"

[llm]
# The provider's own limits out of the way: only the deployments' count.
requests_per_minute = 1000000000
tokens_per_minute = 1000000000
max_connections = 512
max_connections_per_host = 512

[[llm.providers]]
id = "mock"
kind = "openai_compatible"
base_url = "http://$MOCK_ADDR/v1"

[[llm.models]]
name = "fast"
context_window = 16000
input_price = $PRICE_PER_MILLION
output_price = $PRICE_PER_MILLION
deployments = [{ provider = "mock" }]

[[llm.models]]
name = "limited"
context_window = 16000
input_price = $PRICE_PER_MILLION
output_price = $PRICE_PER_MILLION
deployments = [{ provider = "mock", requests_per_minute = $RPM }]

[[llm.models]]
name = "budget"
context_window = 16000
input_price = $PRICE_PER_MILLION
output_price = $PRICE_PER_MILLION
deployments = [{ provider = "mock" }]
TOML
hash() { printf '%s\n' "$1" | "$NEXUS" keys hash; }
cat >"$WORK/keys.toml" <<TOML
[[keys]]
name = "bench"
sha256 = "$(hash "$NEXUS_KEY")"
tenant = "bench"

[[keys]]
name = "budget"
sha256 = "$(hash "$NEXUS_BUDGET_KEY")"
tenant = "budget"
budget_micro_usd = $BUDGET_MICRO_USD
TOML
"$NEXUS" serve --config "$WORK/nexus.toml" --keys "$WORK/keys.toml" --listen 127.0.0.1:0 \
    >"$WORK/nexus.out" 2>"$WORK/nexus.out.err" &
NEXUS_PID=$!
PIDS+=("$NEXUS_PID")
NEXUS_ADDR="$(wait_for "$WORK/nexus.out" 's|^nexus serve: listening on http://||p' "$NEXUS_PID" "nexus serve")"

# --- LiteLLM ----------------------------------------------------------------
COST_PER_TOKEN="$(awk -v p="$PRICE_PER_MILLION" 'BEGIN { printf "%.12f", p / 1e12 }')"
BUDGET_USD="$(awk -v b="$BUDGET_MICRO_USD" 'BEGIN { printf "%.6f", b / 1e6 }')"
litellm_model() { # NAME [EXTRA litellm_params lines]
    cat <<YAML
  - model_name: $1
    litellm_params:
      model: openai/$1
      api_base: http://$MOCK_ADDR/v1
      api_key: none
      input_cost_per_token: $COST_PER_TOKEN
      output_cost_per_token: $COST_PER_TOKEN
${2:-}
YAML
}
{
    echo "model_list:"
    litellm_model fast
    litellm_model limited "      rpm: $RPM"
    litellm_model budget "      max_budget: $BUDGET_USD
      budget_duration: 1d"
    cat <<YAML
general_settings:
  master_key: $MASTER_KEY
litellm_settings:
  telemetry: false
YAML
} >"$WORK/litellm.yaml"
{
    echo "model_list:"
    litellm_model limited "      rpm: $RPM"
    cat <<YAML
router_settings:
  routing_strategy: usage-based-routing-v2
general_settings:
  master_key: $MASTER_KEY
litellm_settings:
  telemetry: false
YAML
} >"$WORK/litellm-enforced.yaml"
start_litellm "$WORK/litellm.yaml"
LITELLM_PID="$LL_PID"
LITELLM_ADDR="$LL_ADDR"

echo "mock $MOCK_ADDR, nexus $NEXUS_ADDR, litellm $LITELLM_VERSION $LITELLM_ADDR" >&2

# --- 5. throughput and added latency ----------------------------------------
MOCK_URL="http://$MOCK_ADDR/v1/chat/completions"
NEXUS_URL="http://$NEXUS_ADDR/v1/chat/completions"
LITELLM_URL="http://$LITELLM_ADDR/v1/chat/completions"
echo "throughput: closed loop, $DURATION per run" >&2
for c in $CONCURRENCIES; do
    common=(--model fast --max-tokens "$COMPLETION_TOKENS" --concurrency "$c")
    # A short warm-up of each target (connections, caches) is not recorded.
    for url in "$MOCK_URL|none" "$LITELLM_URL|$MASTER_KEY" "$NEXUS_URL|$NEXUS_KEY"; do
        "$NEXUS" front-door-load --url "${url%%|*}" --key "${url#*|}" "${common[@]}" --duration 2s >/dev/null
    done
    mock_reset
    load "direct-c$c" "" --url "$MOCK_URL" "${common[@]}" --duration "$DURATION"
    mock_reset
    load "litellm-c$c" "$LITELLM_PID" --url "$LITELLM_URL" --key "$MASTER_KEY" "${common[@]}" --duration "$DURATION"
    mock_reset
    load "nexus-c$c" "$NEXUS_PID" --url "$NEXUS_URL" --key "$NEXUS_KEY" "${common[@]}" --duration "$DURATION"
done

# --- 6. upstream 429s under 5x demand ---------------------------------------
RATE=$(((5 * RPM + 59) / 60))
echo "rate limits: $RPM rpm on each deployment and on the mock, $RATE requests/s offered for $RPM_PERIOD" >&2
five_x() { # NAME URL KEY
    mock_reset "$RPM"
    sleep 1
    load "$1" "" --url "$2" --key "$3" --model limited --max-tokens "$COMPLETION_TOKENS" \
        --rate "$RATE" --concurrency 5000 --duration "$RPM_PERIOD" --timeout 15s
}
five_x "rpm-litellm-default" "$LITELLM_URL" "$MASTER_KEY"
stop_pid "$LITELLM_PID"
start_litellm "$WORK/litellm-enforced.yaml"
five_x "rpm-litellm-enforced" "http://$LL_ADDR/v1/chat/completions" "$MASTER_KEY"
stop_pid "$LL_PID"
five_x "rpm-nexus" "$NEXUS_URL" "$NEXUS_KEY"

# --- 7. spend against a small budget under 200 concurrent requests ----------
echo "budget: $BUDGET_MICRO_USD micro-dollars ($BUDGET_REQUESTS requests), $BURST concurrent requests" >&2
start_litellm "$WORK/litellm.yaml"
mock_reset
load "budget-litellm" "" --url "http://$LL_ADDR/v1/chat/completions" --key "$MASTER_KEY" --model budget \
    --max-tokens "$COMPLETION_TOKENS" --concurrency "$BURST" --requests "$BURST"
stop_pid "$LL_PID"
mock_reset
load "budget-nexus" "" --url "$NEXUS_URL" --key "$NEXUS_BUDGET_KEY" --model budget \
    --max-tokens "$COMPLETION_TOKENS" --concurrency "$BURST" --requests "$BURST"

# --- 8. table and JSON --------------------------------------------------------
mkdir -p benches/results
OUT="benches/results/$(date -u +%Y-%m-%d)-$(git rev-parse --short HEAD)-front-door-vs-litellm.json"
RUNS="$WORK/runs" OUT="$OUT" CONCURRENCIES="$CONCURRENCIES" DURATION="$DURATION" RPM="$RPM" \
    RPM_PERIOD="$RPM_PERIOD" RATE="$RATE" BURST="$BURST" BUDGET_MICRO_USD="$BUDGET_MICRO_USD" \
    REQUEST_MICRO_USD="$REQUEST_MICRO_USD" LITELLM_VERSION="$LITELLM_VERSION" \
    GITREV="$(git rev-parse --short HEAD)" LOADAVG_START="$LOADAVG_START" \
    python3 "$ROOT/benches/front_door_vs_litellm_report.py"
