"""Per-family geometric means of the speed ratios (perf.md: "per family the geometric mean").

A row per (family, direction, dtype, layout, gpuconv variant, baseline): the geometric mean of
baseline time / gpuconv time over the cases where both were timed. For convolutions a
``gpuconv:best`` variant takes, case by case, the fastest gpuconv algorithm that was timed.
Each row also counts the cases where the baseline was timed although its result was less
accurate than the tolerance (cuDNN's FFT / Winograd in float32): a ratio against a baseline
that computed something less exact is flagged in the tables, not silently averaged in.
"""
from __future__ import annotations

from collections import defaultdict

from .roofline import geometric_mean

BEST = "gpuconv:best"


def summarize(records: list[dict]) -> list[dict]:
    groups: dict[tuple, list[float]] = defaultdict(list)
    inexact: dict[tuple, int] = defaultdict(int)  # cases whose baseline missed the tolerance
    order: dict[str, int] = {}                  # variants in the order the runner ran them
    for rec in records:
        for e in rec["results"]:
            order.setdefault(e["name"], len(order))
        key = (rec["family"], rec["direction"], rec["dtype"], rec["layout"])
        outside = {e["name"] for e in rec["results"]
                   if e["kind"] == "baseline" and e.get("within_tolerance") is False}
        timed = [e for e in rec["results"] if e["kind"] == "gpuconv" and e.get("time_s")]
        if rec["op"] == "conv" and timed:
            best = min(timed, key=lambda e: e["time_s"])
            timed.append({**best, "name": BEST})
        for e in timed:
            for baseline, ratio in e["ratios"].items():
                groups[key + (e["name"], baseline)].append(ratio)
                inexact[key + (e["name"], baseline)] += baseline in outside
    order[BEST] = len(order)

    def sort_key(item):
        family, direction, dtype, layout, variant, baseline = item[0]
        return (family, direction, dtype, layout, order.get(baseline, -1), baseline, order[variant])
    rows = []
    for (family, direction, dtype, layout, variant, baseline), ratios in sorted(groups.items(), key=sort_key):
        rows.append({"family": family, "direction": direction, "dtype": dtype, "layout": layout,
                     "variant": variant, "baseline": baseline, "cases": len(ratios),
                     "baseline_outside_tolerance": inexact[(family, direction, dtype, layout,
                                                            variant, baseline)],
                     "geomean_ratio": geometric_mean(ratios),
                     "min_ratio": min(ratios), "max_ratio": max(ratios)})
    return rows
