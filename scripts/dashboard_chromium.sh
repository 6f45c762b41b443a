#!/usr/bin/env bash
# The dashboard of `nexus run` in headless Chromium: starts `nexus run` on a
# free 127.0.0.1 port with tokens and two pools under a steady load (an echo
# pool and an llm-caller pool over the simulated provider), sets a budget
# through the admin API, loads `/` without a token (it must ask for one and
# show no data), loads `/#token=<viewer>` twice and checks the DOM
# after the page's scripts ran (every tile, pool row, budget row and chart
# holds live values; the handled count moved between the loads), then saves
# a screenshot to <target>/dashboard.png. Installs Debian's chromium when it
# is missing and this runs as root with apt-get; otherwise prints SKIP and
# exits 0. Fails (non-zero) when a check fails.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
CHROMIUM=/usr/bin/chromium

if [ ! -x "$CHROMIUM" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "dashboard browser test: installing chromium (apt-get)" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } \
        >/dev/null 2>&1 || true
fi
if [ ! -x "$CHROMIUM" ]; then
    echo "SKIP: dashboard browser test: chromium is not installed (apt-get install chromium, as root)" >&2
    exit 0
fi
command -v python3 >/dev/null || { echo "dashboard browser test: python3 is needed for the checks" >&2; exit 1; }

cargo build --quiet --bin nexus
NEXUS="$TARGET/debug/nexus"
WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

cat >"$WORK/nexus.toml" <<TOML
[node]
data_dir = "$WORK/data"

[monitor]
interval = "1s"

[run]
shutdown_timeout = "5s"

[[run.pools]]
name = "echoes"
agent = "echo"
size = 2
load_per_second = 200

[[run.pools]]
name = "writers"
agent = "llm-caller"
size = 2
load_per_second = 40

[[llm.providers]]
id = "sim"
kind = "simulated"
seed = 11
latency_median = "30ms"

[[llm.models]]
name = "small"
context_window = 16000
max_output_tokens = 256
input_price = 150000
output_price = 600000
deployments = [{ provider = "sim" }]
TOML

VIEWER="view-$RANDOM$RANDOM"
OPERATOR="op-$RANDOM$RANDOM"
cat >"$WORK/tokens.toml" <<TOML
[[tokens]]
name = "dashboard"
role = "viewer"
sha256 = "$(printf '%s\n' "$VIEWER" | "$NEXUS" tokens hash)"

[[tokens]]
name = "setup"
role = "operator"
sha256 = "$(printf '%s\n' "$OPERATOR" | "$NEXUS" tokens hash)"
TOML

"$NEXUS" run --config "$WORK/nexus.toml" --tokens "$WORK/tokens.toml" --listen 127.0.0.1:0 \
    >"$WORK/stdout" 2>"$WORK/stderr" &
SERVER_PID=$!
ADDR=""
for _ in $(seq 1 300); do
    ADDR="$(sed -n 's|^nexus run: listening on http://\([^ ]*\).*|\1|p' "$WORK/stderr")"
    [ -n "$ADDR" ] && break
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        cat "$WORK/stderr" >&2
        echo "nexus run exited before listening" >&2
        exit 1
    fi
    sleep 0.1
done
[ -n "$ADDR" ] || { cat "$WORK/stderr" >&2; echo "nexus run did not listen within 30 s" >&2; exit 1; }

curl -sf --max-time 10 -X PUT -H "Authorization: Bearer $OPERATOR" \
    -d '{"limit_micro_usd": 200000, "period": "daily", "action": "alert"}' \
    "http://$ADDR/admin/budgets/demo-daily" >/dev/null \
    || { echo "could not set the budget" >&2; exit 1; }

# Wait (at most 20 s) until the monitor has a few samples of every pool, so
# that the first load already has history to draw.
for _ in $(seq 1 200); do
    if curl -sf --max-time 5 -H "Authorization: Bearer $VIEWER" "http://$ADDR/status/history" \
        | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if len(d["pools"]) == 2 and all(len(p["ago_ms"]) >= 3 for p in d["pools"]) and d["budgets"] else 1)'; then
        break
    fi
    sleep 0.1
done

browse() { # browse URL OUT [extra chromium flags...]
    local url="$1" out="$2"
    shift 2
    timeout 60 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$(mktemp -d -p "$WORK")" --virtual-time-budget=5000 "$@" \
        "$url" >"$out" 2>>"$WORK/chromium.log"
}
PAGE="http://$ADDR/#token=$VIEWER"

# Without a token the page is served, shows no data and asks for one.
browse "http://$ADDR/" "$WORK/dom0.html" --dump-dom || { tail -20 "$WORK/chromium.log" >&2; echo "chromium failed (no token)" >&2; exit 1; }
python3 - "$WORK/dom0.html" <<'PY'
import re
import sys

dom = open(sys.argv[1], encoding="utf-8").read()
form = re.search(r'<form id="auth"[^>]*>', dom)
handled = re.search(r'id="handled-total"[^>]*>([^<]*)<', dom)
if not form or "shown" not in form.group(0) or 'data-value=' in re.search(r'<div class="value" id="handled-total"[^>]*>', dom).group(0):
    print("without a token the page should ask for one and show no data:", form and form.group(0), handled and handled.group(0), file=sys.stderr)
    sys.exit(1)
print("dashboard without a token: asks for one, shows nothing")
PY

browse "$PAGE" "$WORK/dom1.html" --dump-dom || { tail -20 "$WORK/chromium.log" >&2; echo "chromium failed (first load)" >&2; exit 1; }
browse "$PAGE" "$WORK/dom2.html" --dump-dom || { tail -20 "$WORK/chromium.log" >&2; echo "chromium failed (second load)" >&2; exit 1; }

python3 - "$WORK/dom1.html" "$WORK/dom2.html" <<'PY'
import re
import sys
from html.parser import HTMLParser


class Dom(HTMLParser):
    """Every element's attributes, by id, plus pool and budget rows' cells."""

    def __init__(self):
        super().__init__()
        self.ids, self.rows, self.row = {}, {}, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids[a["id"]] = a
        if tag == "tr" and ("data-pool" in a or "data-budget" in a):
            self.row = ("pool:" + a["data-pool"]) if "data-pool" in a else ("budget:" + a["data-budget"])
            self.rows[self.row] = {}
        if tag == "td" and self.row and "data-metric" in a:
            self.rows[self.row][a["data-metric"]] = a.get("data-value")


def load(path):
    d = Dom()
    d.feed(open(path, encoding="utf-8").read())
    return d


failures = []


def check(ok, what):
    if not ok:
        failures.append(what)


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


doms = [load(p) for p in sys.argv[1:3]]
for n, d in enumerate(doms, 1):
    ids = d.ids
    check(int(ids.get("updated", {}).get("data-polls", "0")) >= 1, f"load {n}: no poll completed")
    check("shown" not in ids.get("auth", {}).get("class", ""), f"load {n}: the page asked for a token")
    for tile in ["handled-total", "throughput-total", "queued-total", "latency-p50", "latency-p99", "budget-spent", "workers-total"]:
        check(num(ids.get(tile, {}).get("data-value")) is not None, f"load {n}: #{tile} holds no number")
    check((num(ids.get("handled-total", {}).get("data-value")) or 0) > 0, f"load {n}: nothing handled")
    check((num(ids.get("throughput-total", {}).get("data-value")) or 0) > 0, f"load {n}: no throughput")
    check((num(ids.get("latency-p99", {}).get("data-value")) or 0) > 0, f"load {n}: no p99 latency")
    check((num(ids.get("budget-spent", {}).get("data-value")) or 0) > 0, f"load {n}: no budget spend")
    check(num(ids.get("workers-total", {}).get("data-value")) == 4, f"load {n}: not 4 workers")
    check(ids.get("pressure", {}).get("data-value") in ("normal", "moderate", "high", "critical"), f"load {n}: no pressure level")
    check(ids.get("ready", {}).get("data-value") == "true", f"load {n}: not ready")
    for chart in ["chart-throughput", "chart-depth", "chart-latency", "chart-budgets", "chart-pressure", "chart-minutes"]:
        check(int(ids.get(chart, {}).get("data-points", "0")) >= 2, f"load {n}: #{chart} drew fewer than 2 points")
    for pool in ["echoes", "writers"]:
        row = d.rows.get("pool:" + pool)
        check(row is not None, f"load {n}: no row for pool {pool}")
        if row:
            check((num(row.get("handled")) or 0) > 0, f"load {n}: pool {pool} handled nothing")
            check(num(row.get("workers")) == 2, f"load {n}: pool {pool} has not 2 workers")
            for m in ["depth-high", "depth-normal", "depth-low", "latency-p50", "latency-p99", "throughput", "load-sent"]:
                check(num(row.get(m)) is not None, f"load {n}: pool {pool} has no {m}")
    budget = d.rows.get("budget:demo-daily")
    check(budget is not None and (num(budget.get("budget-spent")) or 0) > 0, f"load {n}: budget demo-daily spent nothing")
    check(budget is not None and num(budget.get("budget-limit")) == 200000, f"load {n}: budget demo-daily limit is not 200000")

first, second = (num(d.ids.get("handled-total", {}).get("data-value")) or 0 for d in doms)
check(second > first, f"the handled count did not move between the loads ({first} then {second})")
first_sent, second_sent = (num(d.rows.get("pool:writers", {}).get("load-sent")) or 0 for d in doms)
check(second_sent > first_sent, f"the writers' load did not move between the loads ({first_sent} then {second_sent})")

if failures:
    print("dashboard DOM checks failed:", *failures, sep="\n  ", file=sys.stderr)
    sys.exit(1)
print(f"dashboard DOM checks passed: handled {first:.0f} then {second:.0f}; every tile, row and chart live")
PY

mkdir -p "$TARGET"
SHOT="$TARGET/dashboard.png"
rm -f "$SHOT"
browse "$PAGE" /dev/null --screenshot="$SHOT" --window-size=1280,900 --hide-scrollbars \
    || { tail -20 "$WORK/chromium.log" >&2; echo "chromium failed (screenshot)" >&2; exit 1; }
[ -s "$SHOT" ] || { echo "no screenshot was written to $SHOT" >&2; exit 1; }
echo "dashboard screenshot: $SHOT"
