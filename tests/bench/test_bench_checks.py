"""The pieces between a call and a number: result checks, exception triage, the interleaved
timing loop, per-family summaries and the terminal formatting."""
import io

import numpy as np
import pytest

from bench import report
from bench.operations import NotApplicable, Unavailable, filters_in_layout
from bench.runner import classify, compare
from bench.summary import BEST, summarize
from bench.timing import Timed, TimingPlan, measure_interleaved


def test_compare_tolerances_shapes_and_nonfinite_values():
    want = np.linspace(-2, 2, 24, dtype=np.float32).reshape(1, 2, 3, 4)
    assert compare(np, want.copy(), want, "float32") == (True, 0.0, None)
    ok, rel, _ = compare(np, want + np.float32(1e-5), want, "float32")
    assert ok and rel == pytest.approx(0.5e-5, rel=1e-2)
    ok, rel, why = compare(np, want * np.float32(1.01), want, "float32")
    assert not ok and rel == pytest.approx(0.01, rel=1e-3) and "relative error" in why
    ok, _, why = compare(np, want.reshape(1, 2, 4, 3), want, "float32")
    assert not ok and "shape" in why
    bad = want.copy()
    bad[0, 0, 0, 0] = np.nan
    assert compare(np, bad, want, "float32")[2] == "non-finite values in the result"
    half = want.astype(np.float16)
    assert compare(np, half, want.astype(np.float64), "float16")[0]   # fp16 rounding is fine


def test_classify():
    kw = dict(forced=False, auto_rejected_args=False)
    assert classify(NotImplementedError("no kernel"), **kw)[0] == "unavailable"
    assert classify(ImportError("no launch"), **kw)[0] == "unavailable"
    # On a GPU an AttributeError is most likely a wrong CuPy/torch API: it must fail the run.
    assert classify(AttributeError("module 'cupy.cuda' has no attribute 'Evnt'"), **kw)[0] == "error"
    assert classify(Unavailable("gpuconv.roi_pool does not exist yet"), **kw)[0] == "unavailable"
    assert classify(NotApplicable("no algorithm= argument"), **kw)[0] == "not-applicable"
    assert classify(ValueError("bad"), **kw)[0] == "error"
    assert classify(RuntimeError("bad"), **kw)[0] == "error"
    assert classify(ValueError("needs 1x1"), forced=True, auto_rejected_args=False)[0] == "not-applicable"
    assert classify(ValueError("needs 1x1"), forced=True, auto_rejected_args=True)[0] == "error"
    assert classify(TypeError("bad"), forced=True, auto_rejected_args=False)[0] == "error"


class StepClock:
    """Each call 'takes' a fixed time per variant; records the order variants were run in."""
    def __init__(self, seconds):
        self.seconds, self.order = seconds, []

    def measure(self, fn, runs):
        name = fn()
        self.order.append(name)
        return [self.seconds[name]] * runs


def test_interleaved_rounds_rotate_the_order_and_drop_a_failing_variant():
    calls = {"a": 0}

    def flaky():
        calls["a"] += 1
        if calls["a"] > 2:                 # fine while warming up, fails when timed later
            raise RuntimeError("launch failed")
        return "a"
    variants = [Timed("a", flaky), Timed("b", lambda: "b"), Timed("c", lambda: "c")]
    clock = StepClock({"a": 1.0, "b": 2.0, "c": 3.0})
    measure_interleaved(variants, clock, TimingPlan(warmup=1, rounds=3, runs_per_round=2))
    # round 1: a b c; round 2: b c (a fails); round 3: c b (a dropped)
    assert clock.order == ["a", "b", "c", "b", "c", "c", "b"]
    a, b, c = variants
    assert isinstance(a.error, RuntimeError) and a.times == [1.0, 1.0]
    assert b.times == [2.0] * 6 and c.times == [3.0] * 6 and b.error is None


def record(family, results, op="conv"):
    return {"family": family, "direction": "forward", "dtype": "float32", "layout": "NCHW",
            "op": op, "results": results}


def gpu(name, t, **ratios):
    return {"kind": "gpuconv", "name": name, "time_s": t, "ratios": ratios}


def test_summary_geometric_means_and_best_variant():
    recs = [
        record("conv.dense", [gpu("gpuconv:auto", 1.0, cudnn=2.0), gpu("gpuconv:direct", 0.5, cudnn=4.0)]),
        record("conv.dense", [gpu("gpuconv:auto", 1.0, cudnn=0.5), gpu("gpuconv:direct", 2.0, cudnn=0.25)]),
        record("pool.max", [gpu("gpuconv:default", 1.0, torch=3.0)], op="pool"),
        record("pool.max", [{"kind": "gpuconv", "name": "gpuconv:default", "time_s": None}], op="pool"),
    ]
    rows = {(r["family"], r["variant"], r["baseline"]): r for r in summarize(recs)}
    assert rows[("conv.dense", "gpuconv:auto", "cudnn")]["geomean_ratio"] == pytest.approx(1.0)
    assert rows[("conv.dense", "gpuconv:direct", "cudnn")]["geomean_ratio"] == pytest.approx(1.0)
    # best: direct (ratio 4) in the first case, auto (ratio 0.5) in the second
    best = rows[("conv.dense", BEST, "cudnn")]
    assert best["geomean_ratio"] == pytest.approx(2 ** 0.5) and best["cases"] == 2
    assert (best["min_ratio"], best["max_ratio"]) == (0.5, 4.0)
    assert rows[("pool.max", "gpuconv:default", "torch")]["cases"] == 1
    assert ("pool.max", BEST, "torch") not in rows


def baseline(name, within_tolerance):
    return {"kind": "baseline", "name": name, "time_s": 1.0, "within_tolerance": within_tolerance}


def test_summary_flags_ratios_against_a_baseline_less_accurate_than_the_tolerance():
    # cuDNN's FFT / Winograd may miss the float32 tolerance: still timed, as the standard, but a
    # mean over such cases must say how many there were (here 1 of 2 for each variant and best).
    recs = [
        record("conv.dense", [baseline("cudnn", False), baseline("torch", True),
                              gpu("gpuconv:auto", 1.0, cudnn=2.0, torch=1.0)]),
        record("conv.dense", [baseline("cudnn", True), baseline("torch", None),
                              gpu("gpuconv:auto", 1.0, cudnn=0.5, torch=1.0)]),
    ]
    rows = {(r["variant"], r["baseline"]): r for r in summarize(recs)}
    assert rows[("gpuconv:auto", "cudnn")]["baseline_outside_tolerance"] == 1
    assert rows[(BEST, "cudnn")]["baseline_outside_tolerance"] == 1
    assert rows[("gpuconv:auto", "torch")]["baseline_outside_tolerance"] == 0
    doc = {"summary": summarize(recs)}
    assert [line for line in report.summary_lines(doc) if "2 (1 inexact)" in line]
    assert report.INEXACT_LEGEND in report.summary_lines(doc)[-1]
    doc["summary"] = [r for r in doc["summary"] if r["baseline"] == "torch"]
    assert not [line for line in report.summary_lines(doc) if "inexact" in line]


def test_formatting_helpers():
    assert report.fmt_time(None) == "-"
    assert report.fmt_time(12.5e-6) == "12.5 us"
    assert report.fmt_time(3.25e-3) == "3.25 ms"
    assert report.fmt_time(2.0) == "2.00 s"
    assert report.fmt_ratio(1.234) == "1.23x"
    assert report.fmt_num(None) == "-" and report.fmt_num(0.000123) == "1.23e-04"


class Terminal(io.StringIO):
    def isatty(self):
        return True


def run_progress(stream, total, **kw):
    bar = report.Progress(stream, **kw)
    bar.start(total)
    for i in range(total):
        bar.step(f"case {i}")
    bar.finish()
    return stream.getvalue()


def test_progress_bar_on_a_terminal():
    text = run_progress(Terminal(), 4, width=10)
    assert "\r[..........] 1/4 case 0" in text and "\r[#######...] 4/4 case 3" in text
    assert text.endswith("done" + " " * 70 + "\n")


def test_progress_in_a_log_is_a_line_per_tenth_and_silent_when_disabled():
    lines = run_progress(io.StringIO(), 25).splitlines()
    assert len(lines) == 10 and lines[0] == "[1/25] case 0" and lines[-1] == "[24/25] case 23"
    assert run_progress(io.StringIO(), 3, enabled=False) == ""


def test_nhwc_cases_hand_gpuconv_channels_last_filters_as_the_channels_last_baseline():
    w = np.arange(5 * 3 * 2 * 4, dtype=np.float32).reshape(5, 3, 2, 4)
    assert filters_in_layout(np, w, "NCHW") is w
    cl = filters_in_layout(np, w, "NHWC")
    np.testing.assert_array_equal(cl, w)
    assert cl.transpose(0, 2, 3, 1).flags.c_contiguous and not cl.flags.c_contiguous
