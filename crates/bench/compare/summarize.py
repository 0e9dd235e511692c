#!/usr/bin/env python3
"""Summarizes series.sh output (JSON lines on stdin or in the files named) as a Markdown
table, one row per run, with each run's p99 latency and server CPU per delivery as a ratio
to the minimal server's (signalhub-minimal) in the same phase, round and reader."""

import json
import sys


def load(lines):
    runs = []
    for line in lines:
        line = line.strip()
        if line.startswith("{"):
            runs.append(json.loads(line))
    return runs


def ratio(value, base):
    if value is None or not base:
        return "-"
    return f"{value / base:.2f}x"


def num(value, fmt="{:.1f}"):
    return "-" if value is None else fmt.format(value)


def table(runs):
    """The summary table's lines."""
    key = lambda r: (r.get("series_phase"), r.get("series_round"), r.get("series_reader"))
    minimal = {key(r): r for r in runs if r.get("series_server") == "minimal" and "error" not in r}
    out = [
        "| phase | round | reader | server | delivered | p50 ms | p99 ms | max ms | server CPU us/delivery "
        "| bench CPU us/delivery | publications/s | p99 / minimal | server CPU / minimal |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        labels = [str(r.get("series_phase")), str(r.get("series_round")), str(r.get("series_reader")),
                  str(r.get("series_server"))]
        if "error" in r:
            out.append("| " + " | ".join(labels + [f"failed: {r['error']}"] + ["-"] * 8) + " |")
            continue
        lat = r.get("latency_ms") or {}
        base = minimal.get(key(r)) or {}
        base_lat = base.get("latency_ms") or {}
        out.append("| " + " | ".join(labels + [
            f"{r.get('delivered')} / {r.get('expected')}" + ("" if r.get("in_order") else " (not in order)"),
            num(lat.get("p50")), num(lat.get("p99")), num(lat.get("max")),
            num(r.get("server_cpu_us_per_delivery"), "{:.2f}"),
            num(r.get("bench_cpu_us_per_delivery"), "{:.2f}"),
            num(r.get("published_per_sec")),
            ratio(lat.get("p99"), base_lat.get("p99")),
            ratio(r.get("server_cpu_us_per_delivery"), base.get("server_cpu_us_per_delivery")),
        ]) + " |")
    return out


def main():
    if len(sys.argv) > 1:
        lines = []
        for name in sys.argv[1:]:
            with open(name, encoding="utf-8") as f:
                lines.extend(f)
    else:
        lines = sys.stdin
    print("\n".join(table(load(lines))))


if __name__ == "__main__":
    main()
