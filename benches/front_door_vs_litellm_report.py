"""Renders the runs of benches/front_door_vs_litellm.sh: a side-by-side
table on stdout and the figures as JSON in $OUT. Reads the environment the
script sets (RUNS, OUT, CONCURRENCIES, ...) and $RUNS/<name>.json, each
{"load": driver report, "cpu_s": proxy CPU seconds or null, "mock": mock stats}.

With `--readme README.md RESULT.json` it renders the committed RESULT.json
into README.md instead, between `<!-- front-door-table:begin -->` and
`<!-- front-door-table:end -->`: the README's figures come from a result
file, never typed by hand."""

import json
import os
import platform
import sys

BEGIN_MARKER = "<!-- front-door-table:begin -->"
END_MARKER = "<!-- front-door-table:end -->"


def thousands(n):
    return f"{n:,}" if isinstance(n, int) else str(n)


def ms(us):
    return f"{us / 1000:.2f} ms"


def readme_block(result, name):
    """The README's table of one result (its `parameters` name the run)."""
    p = result["parameters"]
    cs = [str(c) for c in p["concurrencies"]]
    top = cs[-1]
    t = result["throughput"]
    floors = result["nexus_floors"]
    joined = lambda proxy, f: " / ".join(f(t[c][proxy]) for c in cs)
    met = lambda key: "met" if floors[key]["met"] else "**missed**"
    ratio = floors["requests_per_core_ratio"]["value"]
    rpm, budget = result["rate_limit_5x"], result["budget"]
    answers = lambda r: f"{r['load']['ok']:,} / {r['load']['rate_limited']:,} / {r['load']['failed'] + r['load']['other_status']:,}"
    spend = lambda b: (
        f"{b['spend_micro_usd']:,} / {b['budget_micro_usd']:,} micro-USD "
        f"({b['upstream_served']} requests for {b['budget_micro_usd'] // p['request_micro_usd']})"
    )
    c_label = "c = " + " / ".join(cs)
    rows = [
        ("metric", "LiteLLM " + p["litellm_version"], "Nexus", "Nexus floor (issue 17)"),
        (f"requests/s, {c_label}", joined("litellm", lambda r: thousands(r["ok_per_s"])),
         joined("nexus", lambda r: thousands(r["ok_per_s"])), ""),
        (f"requests/s per core, {c_label}", joined("litellm", lambda r: thousands(r["ok_per_cpu_s"])),
         joined("nexus", lambda r: thousands(r["ok_per_cpu_s"])),
         f">= 100x LiteLLM at c = {top}: {ratio}x, {met('requests_per_core_ratio')}"),
        (f"added p50, {c_label}", joined("litellm", lambda r: ms(r["added_p50_us"])[:-3]) + " ms",
         joined("nexus", lambda r: ms(r["added_p50_us"])[:-3]) + " ms", ""),
        (f"added p99, {c_label}", joined("litellm", lambda r: ms(r["added_p99_us"])[:-3]) + " ms",
         joined("nexus", lambda r: ms(r["added_p99_us"])[:-3]) + " ms",
         f"< 1 ms at c = {top}: {met('added_p99_us_at_c' + top)}"),
        (f"upstream 429s, {p['rpm']} rpm on the deployment and the mock, 5x offered for {p['rpm_period']}",
         f"{rpm['litellm-default']['upstream_429s']:,} (default routing) / "
         f"{rpm['litellm-enforced']['upstream_429s']:,} (`usage-based-routing-v2`)",
         f"{rpm['nexus']['upstream_429s']:,}", f"0: {met('upstream_429s_at_5x')}"),
        ("5x: calls that reached the upstream",
         f"{rpm['litellm-default']['upstream_served']:,} (default) / {rpm['litellm-enforced']['upstream_served']:,} (v2)",
         f"{rpm['nexus']['upstream_served']:,}", ""),
        ("5x: answered 200 / 429 / not within 15 s",
         f"{answers(rpm['litellm-default'])} (default); {answers(rpm['litellm-enforced'])} (v2)", answers(rpm["nexus"]), ""),
        (f"spend / budget, {p['burst']} concurrent requests", spend(budget["litellm"]), spend(budget["nexus"]),
         f"overshoot <= 1 request: {met('budget_overshoot_requests')}"),
    ]
    line = lambda r: "| " + " | ".join(str(v) for v in r) + " |"
    m = result["machine"]
    steal = lambda proxy: t[top][proxy].get("steal_percent")
    stolen = (
        f" The host stole {steal('litellm')} % of the CPU time during LiteLLM's c = {top} run and "
        f"{steal('nexus')} % during Nexus's."
        if steal("nexus") is not None
        else ""
    )
    out = [
        BEGIN_MARKER,
        f"Rendered from `benches/results/{name}` (rev {result['git_rev']}; {m['cpu']}, {m['cores']} cores, "
        f"load average {m['load_average_before']} before the run; {m['note']}).{stolen}",
        "",
        line(rows[0]),
        "|" + "|".join("---" for _ in rows[0]) + "|",
    ]
    out += [line(r) for r in rows[1:]]
    out.append(END_MARKER)
    return "\n".join(out)


def render_readme(readme_path, result_path):
    with open(result_path) as f:
        result = json.load(f)
    with open(readme_path) as f:
        text = f.read()
    if text.count(BEGIN_MARKER) != 1 or text.count(END_MARKER) != 1:
        sys.exit(f"{readme_path}: expected one {BEGIN_MARKER} and one {END_MARKER}")
    before, rest = text.split(BEGIN_MARKER)
    _, after = rest.split(END_MARKER)
    block = readme_block(result, os.path.basename(result_path))
    with open(readme_path, "w") as f:
        f.write(before + block + after)
    print(f"rendered {result_path} into {readme_path}")


if len(sys.argv) > 1:
    if len(sys.argv) != 4 or sys.argv[1] != "--readme":
        sys.exit("usage: front_door_vs_litellm_report.py [--readme README.md RESULT.json]")
    render_readme(sys.argv[2], sys.argv[3])
    sys.exit(0)

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
            "steal_percent": r.get("steal_percent"),
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
    "parameters": {
        "concurrencies": concurrencies,
        "duration": env["DURATION"],
        "rpm": int(env["RPM"]),
        "rpm_period": env["RPM_PERIOD"],
        "burst": int(env["BURST"]),
        "request_micro_usd": request_micro_usd,
        "litellm_version": env["LITELLM_VERSION"],
    },
    "throughput": throughput,
    "rate_limit_5x": rpm,
    "budget": budget,
    "nexus_floors": floors,
}
with open(env["OUT"], "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")


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
print(f"README table: python3 benches/front_door_vs_litellm_report.py --readme README.md {env['OUT']}")
