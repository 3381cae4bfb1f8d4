"""PNG plots of a run (matplotlib, the "bench" extra), labelled as CPU timings when they are.

- ``ratio_<family>.png``: per layer, baseline time / gpuconv time for every gpuconv variant,
  one panel per (direction, baseline), log scale, 1.0 marked;
- ``roofline.png``: achieved FLOP/s against arithmetic intensity under the measured roofs, per
  dtype; filled marks are gpuconv's fastest variant per case, hollow ones the first baseline.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path


MAX_WIDTH_IN = 40
CPU_LABEL = "CPU TIMINGS, REDUCED SHAPES: they say nothing about GPU speed"


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _title(doc: dict, text: str) -> str:
    return f"{text}\n{CPU_LABEL}" if doc["mode"] == "cpu" else text


def _case_label(rec: dict, many_dtypes: bool, many_layouts: bool) -> str:
    label = f"{rec['suite']}/{rec['layer']}"
    if len(label) > 40:
        label = label[:37] + "..."
    if many_dtypes:
        label += f" {rec['dtype']}"
    if many_layouts:
        label += f" {rec['layout']}"
    return label


def _no_data(plt, doc: dict, title: str, path: Path, message: str) -> Path:
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    fig.suptitle(_title(doc, title), fontsize=10)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def ratio_plot(doc: dict, family: str, records: list[dict], out_dir: Path) -> Path:
    plt = _pyplot()
    path = Path(out_dir) / f"ratio_{family}.png"
    title = f"{family}: baseline time / gpuconv time per layer (> 1: gpuconv faster)"
    directions = list(dict.fromkeys(r["direction"] for r in records))
    baselines = list(dict.fromkeys(b for r in records for e in r["results"]
                                   for b in e.get("ratios", {})))
    variants = list(dict.fromkeys(e["name"] for r in records for e in r["results"]
                                  if e.get("ratios")))
    if not baselines or not variants:
        return _no_data(plt, doc, title, path, "no gpuconv variant of this family was timed "
                        "against a baseline (see the JSON for each variant's status)")
    many_dtypes = len({r["dtype"] for r in records}) > 1
    many_layouts = len({r["layout"] for r in records}) > 1
    n_layers = max(sum(1 for r in records if r["direction"] == d) for d in directions)
    width = min(MAX_WIDTH_IN, max(6.0, 0.12 * n_layers * len(variants) + 2))
    fig, axes = plt.subplots(len(directions), len(baselines), squeeze=False,
                             figsize=(width * len(baselines), 3.2 * len(directions) + 1.5))
    bar = 0.8 / len(variants)
    from matplotlib.ticker import FuncFormatter
    ratio_format = FuncFormatter(lambda v, _: f"{v:g}x")
    for i, direction in enumerate(directions):
        recs = [r for r in records if r["direction"] == direction]
        labels = [_case_label(r, many_dtypes, many_layouts) for r in recs]
        for j, baseline in enumerate(baselines):
            ax = axes[i][j]
            for k, variant in enumerate(variants):
                xs, ys = [], []
                for x, rec in enumerate(recs):
                    ratio = next((e["ratios"].get(baseline) for e in rec["results"]
                                  if e["name"] == variant and e.get("ratios")), None)
                    if ratio:
                        xs.append(x - 0.4 + bar * (k + 0.5))
                        ys.append(ratio)
                ax.bar(xs, ys, width=bar, label=variant)
            ax.axhline(1.0, color="black", linewidth=0.8)
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(ratio_format)
            ax.yaxis.set_minor_formatter(ratio_format)
            ax.set_xticks(range(len(recs)))
            ax.set_xticklabels(labels, rotation=90, fontsize=7)
            ax.set_title(f"{direction} vs {baseline}", fontsize=9)
            ax.set_ylabel("ratio")
    axes[0][0].legend(fontsize=7, loc="best")
    fig.suptitle(_title(doc, title), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def roofline_plot(doc: dict, out_dir: Path) -> Path:
    plt = _pyplot()
    path = Path(out_dir) / "roofline.png"
    title = "roofline: achieved FLOP/s vs arithmetic intensity (filled: gpuconv best, hollow: baseline)"
    points = defaultdict(list)        # dtype -> [(family, ai, gpuconv flop/s | None, baseline flop/s | None)]
    for rec in doc["cases"]:
        timed = [e for e in rec["results"] if e["kind"] == "gpuconv" and e.get("time_s")]
        base = next((e for e in rec["results"] if e["kind"] == "baseline" and e.get("time_s")), None)
        best = min(timed, key=lambda e: e["time_s"]) if timed else None
        if best or base:
            points[rec["dtype"]].append((rec["family"], rec["arithmetic_intensity"],
                                         best and rec["flops"] / best["time_s"],
                                         base and rec["flops"] / base["time_s"]))
    if not points:
        return _no_data(plt, doc, title, path, "no case was timed (see the JSON for each "
                        "variant's status)")
    dtypes = list(points)
    fig, axes = plt.subplots(1, len(dtypes), squeeze=False, figsize=(7 * len(dtypes), 5.5))
    families = sorted({p[0] for pts in points.values() for p in pts})
    colors = {f: plt.get_cmap("tab20")(i % 20) for i, f in enumerate(families)}
    for ax, dtype in zip(axes[0], dtypes):
        ceiling = doc["ceilings"][dtype]
        peak, bw = ceiling["peak_flops"], ceiling["bandwidth"]
        ais = [p[1] for p in points[dtype]]
        lo, hi = min(ais + [peak / bw]) / 4, max(ais + [peak / bw]) * 4
        xs = [lo * (hi / lo) ** (i / 200) for i in range(201)]
        ax.plot(xs, [min(peak, x * bw) for x in xs], color="black", linewidth=1.2,
                label=f"roof: {bw / 1e9:.0f} GB/s, {peak / 1e12:.3g} TFLOP/s")
        for family, ai, ours, theirs in points[dtype]:
            if ours:
                ax.scatter([ai], [ours], color=colors[family], s=22)
            if theirs:
                ax.scatter([ai], [theirs], facecolors="none", edgecolors=[colors[family]], s=30)
        for family in families:
            ax.scatter([], [], color=colors[family], s=22, label=family)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("arithmetic intensity (FLOP/byte)")
        ax.set_ylabel("FLOP/s")
        ax.set_title(dtype, fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(_title(doc, title), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_plots(doc: dict, out_dir: Path) -> list[Path]:
    """Every plot of the run; ImportError when matplotlib is missing."""
    _pyplot()
    by_family = defaultdict(list)
    for rec in doc["cases"]:
        by_family[rec["family"]].append(rec)
    paths = [ratio_plot(doc, family, recs, out_dir) for family, recs in sorted(by_family.items())]
    paths.append(roofline_plot(doc, out_dir))
    return paths
