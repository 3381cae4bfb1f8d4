"""What a run shows a person: the progress bar, the terminal table, the JSON and summary files.

The PNG plots are drawn by ``bench.plots`` (matplotlib, the "bench" extra).
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

JSON_NAME = "results.json"
SUMMARY_NAME = "summary.md"
REASON_WIDTH = 90


class Progress:
    """Progress on stderr while cases run: a redrawn bar on a terminal; elsewhere (a log, CI)
    a plain line at every tenth of the run; nothing when disabled."""

    def __init__(self, stream=None, enabled: bool = True, width: int = 30):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.redraw = enabled and self.stream.isatty()
        self.width = width
        self.total = self.done = 0

    def start(self, total: int) -> None:
        self.total, self.done = total, 0

    def step(self, label: str) -> None:
        if self.redraw:
            filled = self.width * self.done // max(self.total, 1)
            bar = "#" * filled + "." * (self.width - filled)
            self.stream.write(f"\r[{bar}] {self.done + 1}/{self.total} {label[:70]:<70}")
            self.stream.flush()
        elif self.enabled and self.done * 10 // max(self.total, 1) != (self.done - 1) * 10 // max(self.total, 1):
            self.stream.write(f"[{self.done + 1}/{self.total}] {label}\n")
            self.stream.flush()
        self.done += 1

    def finish(self) -> None:
        if self.redraw:
            self.stream.write(f"\r[{'#' * self.width}] {self.total}/{self.total} done{' ' * 70}\n")
            self.stream.flush()


# ---- numbers ------------------------------------------------------------------------------

def fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def fmt_num(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0 or 1e-2 <= abs(value) < 1e4:
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return f"{value:.2e}"


def fmt_ratio(value: float) -> str:
    return f"{value:.2f}x" if value < 100 else f"{value:.0f}x"


# ---- header -------------------------------------------------------------------------------

def headline(doc: dict) -> str:
    if doc["mode"] == "cpu":
        return ("gpuconv bench -- CPU TIMINGS, REDUCED SHAPES (cpu-simulator vs cpu-reference): "
                "they say nothing about GPU speed")
    return f"gpuconv bench -- GPU timings on {doc['environment']['device'].get('name', '?')}"


def header_lines(doc: dict) -> list[str]:
    env = doc["environment"]
    git = env["git"]
    commit = git["commit"][:12] + (" (dirty)" if git["dirty"] else "")
    if git.get("source") not in (None, "git"):
        commit += f" (from {git['source']})"
    device = env["device"]
    dev = device.get("name", "?")
    if doc["mode"] == "gpu":
        dev += (f" | driver {device.get('driver_version', device.get('driver_api_version'))}"
                f" | CUDA runtime {device.get('cuda_runtime_version')}"
                f" | cuDNN {device.get('cudnn_version', '-')}")
    libs = ", ".join(f"{k} {v}" for k, v in env["libraries"].items())
    settings = ", ".join(f"{k}={v}" for k, v in env.get("settings", {}).items())
    lines = [headline(doc), f"device: {dev}", f"commit: {commit} | {libs}",
             f"settings: {settings or 'defaults (none of bench.environment.SETTINGS set)'}",
             f"timing: {doc['timing']['clock']}; {doc['timing']['statistic']} of "
             f"{doc['config']['plan']['rounds'] * doc['config']['plan']['runs_per_round']} runs, "
             f"{doc['timing']['order']}"]
    for dtype, c in doc["ceilings"].items():
        lines.append(f"ceilings {dtype}: copy {c['bandwidth_GBps']:.1f} GB/s, "
                     f"GEMM {c['peak_TFLOPs'] * 1e3:.4g} GFLOP/s ({c['how']})")
    lines += [f"note: {n}" for n in doc["notes"]]
    lines.append("ratio = baseline time / gpuconv time (> 1: gpuconv faster); "
                 "floor% = roofline floor / time")
    return lines


# ---- the per-case table -------------------------------------------------------------------

def case_lines(rec: dict) -> list[str]:
    shape = rec["shape"]["text"]
    if rec["reduced"]:
        shape += f"  (reduced from {rec['original_shape']['text']})"
    lines = [f"{rec['suite']}/{rec['layer']}  {rec['direction']} {rec['dtype']} {rec['layout']}  "
             f"[{rec['family']}]  {shape}  floor {fmt_time(rec['floor_s'])}"]
    for e in rec["results"]:
        ratios = "  ".join(f"{b} {fmt_ratio(r)}" for b, r in e.get("ratios", {}).items())
        status = e["status"]
        if e["reason"] and status != "ok":
            status += ": " + e["reason"]
        elif e["reason"]:
            status += f" ({e['reason'].split(':')[0]})"
        if e.get("host_bound_runs"):     # the time holds host time (timing.CudaEventClock)
            status = f"host-bound {e['host_bound_runs']}/{e['runs']} runs; {status}"
        if len(status) > REASON_WIDTH:
            status = status[:REASON_WIDTH - 3] + "..."
        floor = "-" if e.get("roofline_fraction") is None else f"{100 * e['roofline_fraction']:.1f}%"
        lines.append(f"  {e['name']:<34}{fmt_time(e['time_s']):>11}{fmt_num(e.get('tflops')):>10}"
                     f"{fmt_num(e.get('gbps')):>10}{floor:>8}  {ratios:<40} {status}")
    return lines


INEXACT_LEGEND = ("cases 'n (k inexact)': in k of the n cases the baseline's result was less "
                  "accurate than the tolerance (timed anyway, as the standard; see each case)")


def fmt_cases(row: dict) -> str:
    k = row.get("baseline_outside_tolerance", 0)
    return f"{row['cases']} ({k} inexact)" if k else str(row["cases"])


def summary_lines(doc: dict) -> list[str]:
    rows = doc["summary"]
    if not rows:
        return ["per-family geometric means: none (no gpuconv variant was timed against a baseline)"]
    out = ["per-family geometric mean of baseline time / gpuconv time (> 1: gpuconv faster)",
           f"  {'family':<16}{'direction':<12}{'dtype':<9}{'layout':<7}{'variant':<34}"
           f"{'baseline':<14}{'geomean':>9}{'cases':>7}  range"]
    for r in rows:
        out.append(f"  {r['family']:<16}{r['direction']:<12}{r['dtype']:<9}{r['layout']:<7}"
                   f"{r['variant']:<34}{r['baseline']:<14}{fmt_ratio(r['geomean_ratio']):>9}"
                   f"{fmt_cases(r):>7}  {fmt_ratio(r['min_ratio'])}-{fmt_ratio(r['max_ratio'])}")
    if any(r.get("baseline_outside_tolerance") for r in rows):
        out.append("  " + INEXACT_LEGEND)
    return out


def status_counts(doc: dict) -> dict[str, int]:
    counts: dict[str, int] = {}
    for rec in doc["cases"]:
        for e in rec["results"]:
            if e["kind"] == "gpuconv":
                counts[e["status"]] = counts.get(e["status"], 0) + 1
    return counts


def format_report(doc: dict) -> str:
    lines = header_lines(doc)
    lines.append("")
    lines.append(f"  {'variant':<34}{'time':>11}{'TFLOP/s':>10}{'GB/s':>10}{'floor%':>8}  "
                 f"{'ratio vs baselines':<40} status")
    for rec in doc["cases"]:
        lines += case_lines(rec)
    lines.append("")
    lines += summary_lines(doc)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(status_counts(doc).items()))
    lines.append("")
    lines.append(f"{len(doc['cases'])} cases; gpuconv variants: {counts or 'none'}")
    if doc["failures"]:
        lines.append(f"FAILURES ({len(doc['failures'])}):")
        lines += [f"  {f['case']} {f['variant']}: {f['status']}: {f['reason']}" for f in doc["failures"]]
    lines.append(headline(doc))
    return "\n".join(lines)


# ---- files --------------------------------------------------------------------------------

def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def write_json(doc: dict, out_dir: Path) -> Path:
    path = Path(out_dir) / JSON_NAME
    path.write_text(json.dumps(_jsonable(doc), indent=1) + "\n")
    return path


def summary_markdown(doc: dict) -> str:
    lines = [f"## {headline(doc)}", ""]
    lines += [f"- {line}" for line in header_lines(doc)[1:]]
    lines += ["", "| family | direction | dtype | layout | variant | baseline | geomean | cases | range |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in doc["summary"]:
        lines.append(f"| {r['family']} | {r['direction']} | {r['dtype']} | {r['layout']} | "
                     f"{r['variant']} | {r['baseline']} | {fmt_ratio(r['geomean_ratio'])} | "
                     f"{fmt_cases(r)} | {fmt_ratio(r['min_ratio'])}-{fmt_ratio(r['max_ratio'])} |")
    if not doc["summary"]:
        lines.append("| (no gpuconv variant was timed against a baseline) ||||||||| ")
    if any(r.get("baseline_outside_tolerance") for r in doc["summary"]):
        lines += ["", INEXACT_LEGEND]
    return "\n".join(lines) + "\n"


def write_summary(doc: dict, out_dir: Path) -> Path:
    path = Path(out_dir) / SUMMARY_NAME
    path.write_text(summary_markdown(doc))
    return path
