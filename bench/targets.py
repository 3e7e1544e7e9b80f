#!/usr/bin/env python3
"""coru's targets (issue 6) from a results-*.json of the shared harness.

    targets.py [--check] results.json

Prints a Markdown table: each target, coru's value, the peer it is compared
with, the ratio (median of per-round ratios, measured in the same round,
with min..max) and whether it is met. With --check (the SMOKE run of make
test) it prints coru's failures and exits 1 if any coru entry point that
exists failed (missing and unsupported entry points are not failures).
"""
import json
import statistics
import sys

CORU = "coru"


def load(path):
    with open(path) as f:
        raw = json.load(f)
    res = {tuple(r["key"]): {int(k): v for k, v in r["runs"].items()} for r in raw["results"]}
    fails = {tuple(f["key"]): f["why"] for f in raw["failures"]}
    return raw, res, fails


def vals(res, key, metric):
    return {rep: run[metric] for rep, run in res.get(key, {}).items() if run.get(metric) is not None}


def ratios(res, key_a, key_b, metric):
    a, b = vals(res, key_a, metric), vals(res, key_b, metric)
    return [a[r] / b[r] for r in a if r in b and b[r]]


def fmt(x):
    if x is None:
        return "-"
    if abs(x) >= 1e6:
        return f"{x / 1e6:.2f}M"
    if abs(x) >= 1e4:
        return f"{x / 1e3:.1f}k"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.2f}"


def pct(x):
    return f"{x * 100:.0f}%" if x >= 0.01 else f"{x * 100:.2f}%"


def main(argv):
    check = "--check" in argv
    paths = [a for a in argv if not a.startswith("--")]
    raw, res, fails = load(paths[0])
    rows = []

    def ratio_row(label, key_c, key_p, metric, goal, higher=True):
        rs = ratios(res, key_c, key_p, metric)
        c = vals(res, key_c, metric)
        p = vals(res, key_p, metric)
        cv = statistics.median(c.values()) if c else None
        pv = statistics.median(p.values()) if p else None
        if not rs:
            rows.append((label, fmt(cv), f"{key_p[1]} {fmt(pv)}", "-", f"{'>=' if higher else '<='} {goal}x", "no data"))
            return
        m = statistics.median(rs)
        ok = m >= goal if higher else m <= goal
        rng = f"{m:.2f} ({min(rs):.2f}..{max(rs):.2f}, {len(rs)} rounds)" if len(rs) > 1 else f"{m:.2f}"
        rows.append((label, fmt(cv), f"{key_p[1]} {fmt(pv)}", rng, f"{'>=' if higher else '<='} {goal}x",
                     "met" if ok else f"MISSED by {pct(abs(goal - m) / goal)}"))

    def abs_row(label, key, metric, goal, lower_is_better=True, strict=False):
        v = vals(res, key, metric)
        if not v:
            rows.append((label, "-", "", "", f"{'<' if strict else '<='} {fmt(goal)}", "no data"))
            return
        m = statistics.median(v.values())
        ok = (m < goal if strict else m <= goal) if lower_is_better else m >= goal
        rows.append((label, fmt(m), "", "", f"{'<' if strict else '<='} {fmt(goal)}",
                     "met" if ok else f"MISSED by {pct(abs(m - goal) / goal)}"))

    ratio_row("W1 sched ops/s vs cqueues-luajit", ("w1", CORU, "sched"), ("w1", "cqueues-luajit", "sched"), "ops_per_s", 1.0)
    abs_row("W1 sched instructions/op", ("callgrind", CORU, "sched"), "instr_per_op", 450, strict=True)
    ratio_row("W1 loop ops/s vs raw libuv C", ("w1", CORU, "loop"), ("w1", "c-libuv", "loop"), "ops_per_s", 0.95)
    abs_row("W1 loop instructions/op", ("callgrind", CORU, "loop"), "instr_per_op", 1500)
    for kind in ("same", "c-client"):
        ratio_row(f"W2 C=50 req/s vs raw libuv C ({kind})", ("rpc", CORU, kind, 50), ("rpc", "c-libuv", kind, 50), "req_per_s", 0.9)
        ratio_row(f"W2 C=50 req/s vs Node.js ({kind})", ("rpc", CORU, kind, 50), ("rpc", "node", kind, 50), "req_per_s", 1.4)
    abs_row("W2 C=50 server CPU us/req (c-client)", ("rpc", CORU, "c-client", 50), "server_cpu_us_per_req", 15)
    abs_row("W2 C=50 server CPU us/req (same)", ("rpc", CORU, "same", 50), "server_cpu_us_per_req", 15)
    v = vals(res, ("rpc", CORU, "same", 50), "server_peak_rss_kb")
    rows.append(("W2 C=50 server peak RSS kB (same)", fmt(statistics.median(v.values())) if v else "-", "", "", "report", "-"))
    abs_row("W3 bytes per idle connection", ("idle", CORU), "bytes_per_conn", 2000, strict=True)

    m = raw.get("machine", {})
    print(f"## coru targets (issue 6)\n")
    print(f"run: {raw.get('log', [''])[0][:8] if raw.get('log') else '?'} · "
          f"machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores · load at start {m.get('loadavg at start', '?')} · "
          f"{m.get('cpu time during run', '')}\n")
    print("| target | coru (median) | peer (median) | ratio coru/peer (median of per-round ratios) | goal | verdict |")
    print("|---|---:|---:|---:|---:|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print()

    if check:
        bad = []
        for key, why in fails.items():
            if CORU not in key:
                continue
            if why.startswith("unsupported") or why.startswith("no ") and "entry point" in why:
                continue
            bad.append(f"{'/'.join(map(str, key))}: {why}")
        for key, runs in res.items():
            if key[0] == "check" and key[1] == CORU:
                for run in runs.values():
                    if not str(run.get("verdict", "")).startswith("pass"):
                        bad.append(f"check/{key[2]}: {run.get('verdict')}")
        if CORU in raw.get("skipped", {}):
            bad.append(f"peer skipped: {raw['skipped'][CORU]}")
        if "w1" in raw.get("config", {}).get("workloads", ["w1"]):
            for v in ("loop", "sched"):
                if ("w1", CORU, v) not in res:
                    bad.append(f"w1/{v}: no result")
        if bad:
            print("SMOKE: coru entry points broken:")
            for b in bad:
                print("  - " + b)
            return 1
        print("SMOKE: coru entry points OK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
