"""Renders the runs of benches/front_door_vs_litellm.sh: a side-by-side
table on stdout and the figures as JSON in $OUT. Reads the environment the
script sets (RUNS, OUT, CONCURRENCIES, ...) and $RUNS/<name>.json, each
{"load": driver report, "cpu_s": proxy CPU seconds or null, "mock": mock stats}."""

import json
import os
import platform
import subprocess

env = os.environ
runs_dir = env["RUNS"]
concurrencies = [int(c) for c in env["CONCURRENCIES"].split()]
request_micro_usd = int(env["REQUEST_MICRO_USD"])
budget_micro_usd = int(env["BUDGET_MICRO_USD"])


def run(name):
    with open(os.path.join(runs_dir, name + ".json")) as f:
        return json.load(f)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def per_core(r):
    cpu = r["cpu_s"]
    return round(r["load"]["ok"] / cpu) if cpu else None


throughput = {}
for c in concurrencies:
    direct = run(f"direct-c{c}")
    row = {"direct": {"ok_per_s": direct["load"]["ok_per_s"], "latency_us": direct["load"]["latency_us"]}}
    for proxy in ("litellm", "nexus"):
        r = run(f"{proxy}-c{c}")
        lat = r["load"]["latency_us"]
        row[proxy] = {
            "ok_per_s": r["load"]["ok_per_s"],
            "proxy_cpu_s": r["cpu_s"],
            "ok_per_cpu_s": per_core(r),
            "latency_us": lat,
            "added_p50_us": lat["p50"] - direct["load"]["latency_us"]["p50"],
            "added_p99_us": lat["p99"] - direct["load"]["latency_us"]["p99"],
            "load": r["load"],
            "upstream_served": r["mock"]["served"],
        }
    throughput[str(c)] = row

rpm = {}
for name in ("rpm-litellm-default", "rpm-litellm-enforced", "rpm-nexus"):
    r = run(name)
    rpm[name[4:]] = {
        "upstream_429s": r["mock"]["rate_limited"],
        "upstream_served": r["mock"]["served"],
        "load": r["load"],
    }

budget = {}
for proxy in ("litellm", "nexus"):
    r = run(f"budget-{proxy}")
    served = r["mock"]["served"]
    spend = served * request_micro_usd
    budget[proxy] = {
        "upstream_served": served,
        "spend_micro_usd": spend,
        "budget_micro_usd": budget_micro_usd,
        "spend_over_budget_percent": round(100 * spend / budget_micro_usd),
        "overshoot_requests": max(0, served - budget_micro_usd // request_micro_usd),
        "load": r["load"],
    }

top = str(max(concurrencies))
ll_core = throughput[top]["litellm"]["ok_per_cpu_s"]
nx_core = throughput[top]["nexus"]["ok_per_cpu_s"]
ratio = round(nx_core / ll_core, 1) if ll_core and nx_core else None
floors = {
    "requests_per_core_ratio": {"floor": ">= 100x LiteLLM", "value": ratio, "met": ratio is not None and ratio >= 100},
    "added_p99_us_at_c" + top: {
        "floor": "< 1000",
        "value": throughput[top]["nexus"]["added_p99_us"],
        "met": throughput[top]["nexus"]["added_p99_us"] < 1000,
    },
    "upstream_429s_at_5x": {"floor": "0", "value": rpm["nexus"]["upstream_429s"], "met": rpm["nexus"]["upstream_429s"] == 0},
    "budget_overshoot_requests": {
        "floor": "<= 1",
        "value": budget["nexus"]["overshoot_requests"],
        "met": budget["nexus"]["overshoot_requests"] <= 1,
    },
}

result = {
    "benchmark": "front door vs LiteLLM proxy, same local mock upstream",
    "command": "benches/front_door_vs_litellm.sh",
    "git_rev": env["GITREV"],
    "litellm": env["LITELLM_VERSION"] + " (litellm[proxy], 1 worker, no database, master key)",
    "machine": {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_average_before": env["LOADAVG_START"],
        "note": "driver, mock upstream and proxy share these cores",
    },
    "method": {
        "throughput": f"closed loop, keep-alive, C workers for {env['DURATION']} per run after a 2 s warm-up; "
        "requests/s = answers with status 200 per second of the run",
        "per_core": "answers with status 200 / CPU seconds (user + system, all threads) the proxy process used during the run",
        "added_latency": "percentile through the proxy minus the same percentile of the same driver straight "
        "to the mock at the same concurrency, measured in the same run",
        "rate_limits": f"rpm {env['RPM']} on the proxy's deployment and on the mock (sliding minute); "
        f"open loop {env['RATE']} requests/s (5x) for {env['RPM_PERIOD']}, each request given up after 15 s; "
        "upstream 429s counted by the mock",
        "budget": f"budget of {budget_micro_usd} micro-USD ({budget_micro_usd // request_micro_usd} requests at "
        f"{request_micro_usd} each), {env['BURST']} concurrent requests; spend = requests the mock served x price "
        "(LiteLLM: deployment max_budget; Nexus: key budget)",
    },
    "throughput": throughput,
    "rate_limit_5x": rpm,
    "budget": budget,
    "nexus_floors": floors,
}
with open(env["OUT"], "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")


def ms(us):
    return f"{us / 1000:.2f} ms"


rows = []
for c in concurrencies:
    t = throughput[str(c)]
    rows.append((f"requests/s, c={c}", t["litellm"]["ok_per_s"], t["nexus"]["ok_per_s"], ""))
for c in concurrencies:
    t = throughput[str(c)]
    floor = ">= 100x LiteLLM" if str(c) == top else ""
    rows.append((f"requests/s per core, c={c}", t["litellm"]["ok_per_cpu_s"], t["nexus"]["ok_per_cpu_s"], floor))
for c in concurrencies:
    t = throughput[str(c)]
    rows.append((f"added p50, c={c}", ms(t["litellm"]["added_p50_us"]), ms(t["nexus"]["added_p50_us"]), ""))
    floor = "< 1 ms" if str(c) == top else ""
    rows.append((f"added p99, c={c}", ms(t["litellm"]["added_p99_us"]), ms(t["nexus"]["added_p99_us"]), floor))
rows.append(
    (
        "upstream 429s at 5x demand",
        f"{rpm['litellm-default']['upstream_429s']} (default) / {rpm['litellm-enforced']['upstream_429s']} (usage-based-routing-v2)",
        rpm["nexus"]["upstream_429s"],
        "0",
    )
)
answers = lambda r: f"{r['load']['ok']}/{r['load']['rate_limited']}/{r['load']['failed'] + r['load']['other_status']}"
rows.append(
    (
        "5x: proxy answers 200/429/none in 15 s",
        f"{answers(rpm['litellm-default'])} / {answers(rpm['litellm-enforced'])}",
        answers(rpm["nexus"]),
        "",
    )
)
rows.append(
    (
        "upstream served at 5x demand",
        f"{rpm['litellm-default']['upstream_served']} / {rpm['litellm-enforced']['upstream_served']}",
        rpm["nexus"]["upstream_served"],
        "",
    )
)
for_budget = lambda b: f"{b['spend_micro_usd']} / {b['budget_micro_usd']} ({b['spend_over_budget_percent']}%)"
rows.append(("spend / budget (micro-USD)", for_budget(budget["litellm"]), for_budget(budget["nexus"]), "<= budget + 1 request"))
rows.append(("requests over budget", budget["litellm"]["overshoot_requests"], budget["nexus"]["overshoot_requests"], "<= 1"))

header = ("metric", "LiteLLM " + env["LITELLM_VERSION"], "Nexus", "Nexus floor (issue 17)")
widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(4)]
line = lambda r: "| " + " | ".join(str(v).ljust(w) for v, w in zip(r, widths)) + " |"
print(line(header))
print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
for r in rows:
    print(line(r))
print()
print("added latency = the percentile through the proxy minus the same driver's percentile straight to the mock, same concurrency, same run")
print("per core = successful requests / CPU seconds the proxy process used during the run")
for name, f in floors.items():
    print(f"floor {name}: {f['value']} (floor {f['floor']}): {'met' if f['met'] else 'MISSED'}")
print(f"wrote {env['OUT']}")
