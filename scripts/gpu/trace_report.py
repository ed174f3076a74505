#!/usr/bin/env python3
"""The median timeline of a replayed CUDA graph (a decode step) from a gs_cupti_trace CSV.

  trace_report.py trace.csv [--min-launches 20] [--full]

Kernels of one cudaGraphLaunch share a correlation id. For each graph launched at least
--min-launches times it prints, per graph node in order of its median start: the start and end
relative to the launch's first kernel, the duration, and "dend" (Δend): how much later this
kernel ends than the last kernel that started before it and ended before it did. With PDL a
kernel starts before its predecessor ends, so on a chain the end-to-end delta is what the kernel
adds to it; a kernel of a side branch gets its delta to whatever ended last before it. (CUPTI's
stream ids of graph nodes follow the graph's branches, not the capture streams, so they are
printed but not used.) Then a per-kernel summary (count per step, summed Δend and duration) and
the step length, with the time no kernel of the step was running ("idle").
"""
import bisect
import argparse
import csv
import re
import statistics
from collections import defaultdict


def short_name(name):
    name = re.sub(r"gs::cuda::(\(anonymous namespace\)::)?", "", name)
    name = re.sub(r"\(anonymous namespace\)::", "", name)
    name = re.sub(r"\(.*\)$", "", name)  # parameter list
    return name if len(name) <= 60 else name[:57] + "..."


def load(path):
    launches = defaultdict(list)  # (graph_id, correlation) -> rows
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            gid = int(r["graph_id"])
            if gid == 0:
                continue
            launches[(gid, int(r["correlation"]))].append({
                "start": int(r["start_ns"]), "end": int(r["end_ns"]),
                "stream": int(r["stream"]), "node": int(r["graph_node"]),
                "grid": int(r["grid"]), "block": int(r["block"]), "name": short_name(r["name"]),
            })
    return launches


def idle_ns(rows):
    spans = sorted((r["start"], r["end"]) for r in rows)
    idle, reach = 0, spans[0][1]
    for s, e in spans[1:]:
        if s > reach:
            idle += s - reach
        reach = max(reach, e)
    return idle


def report(gid, runs, full):
    t = defaultdict(lambda: defaultdict(list))  # node -> field -> samples
    lengths, idles = [], []
    for rows in runs:
        t0 = min(r["start"] for r in rows)
        lengths.append(max(r["end"] for r in rows) - t0)
        idles.append(idle_ns(rows))
        ends = []  # ends of the kernels started so far, sorted
        for r in sorted(rows, key=lambda r: r["start"]):
            n = t[r["node"]]
            n["start"].append(r["start"] - t0)
            n["end"].append(r["end"] - t0)
            n["dur"].append(r["end"] - r["start"])
            i = bisect.bisect_right(ends, r["end"])
            n["dend"].append(r["end"] - (ends[i - 1] if i > 0 else t0))
            bisect.insort(ends, r["end"])
            n["meta"] = (r["name"], r["stream"], r["grid"], r["block"])
    med = lambda xs: statistics.median(xs) / 1000.0
    nodes = sorted(t.values(), key=lambda n: med(n["start"]))
    print(f"\n== graph {gid}: {len(runs)} launches, {len(nodes)} kernels a launch; "
          f"step {med(lengths):.1f} us (median), idle {med(idles):.1f} us ==")
    streams = sorted({n["meta"][1] for n in nodes})
    if full:
        print(f"{'#':>4} {'stream':>6} {'grid':>6} {'start':>8} {'end':>8} {'dur':>7} {'dend':>7}  kernel")
        for i, n in enumerate(nodes):
            name, stream, grid, _ = n["meta"]
            print(f"{i:>4} {streams.index(stream):>6} {grid:>6} {med(n['start']):>8.1f} "
                  f"{med(n['end']):>8.1f} {med(n['dur']):>7.1f} {med(n['dend']):>7.1f}  {name}")
    by_name = defaultdict(lambda: [0, 0.0, 0.0])
    for n in nodes:
        agg = by_name[(n["meta"][0], n["meta"][2])]
        agg[0] += 1
        agg[1] += med(n["dend"])
        agg[2] += med(n["dur"])
    print(f"{'count':>5} {'grid':>6} {'sum dend us':>11} {'sum dur us':>10}  kernel")
    for (name, grid), (count, dend, dur) in sorted(by_name.items(), key=lambda kv: -kv[1][1]):
        print(f"{count:>5} {grid:>6} {dend:>11.1f} {dur:>10.1f}  {name}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv")
    ap.add_argument("--min-launches", type=int, default=20)
    ap.add_argument("--full", action="store_true", help="print every kernel of the median step")
    args = ap.parse_args()
    by_graph = defaultdict(list)
    for (gid, _), rows in load(args.csv).items():
        by_graph[gid].append(rows)
    for gid in sorted(by_graph):
        runs = by_graph[gid]
        sizes = statistics.mode(len(r) for r in runs)
        runs = [r for r in runs if len(r) == sizes]
        if len(runs) >= args.min_launches:
            report(gid, runs, args.full)


if __name__ == "__main__":
    main()
