"""``python -m bench`` end to end in its no-GPU mode (NumPy reference + CPU executor, reduced
shapes), and how it records what a gpuconv call does: agree, disagree, raise."""
import contextlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import gpuconv
from bench.__main__ import main
from bench.environment import REPO

TINY = ["--executor", "cpu", "--quick", "--no-progress",
        "--suite", "resnet50_b1,pooling,roi", "--layers", r"l1\.conv2|vgga\.pool1|mask head"]
STATUSES = {"ok", "unchecked", "unavailable", "not-applicable", "mismatch", "error"}


def run(tmp_path, *extra):
    code = main([*TINY, "--out", str(tmp_path), *extra])
    return code, json.loads((tmp_path / "results.json").read_text())


def results(doc, name):
    return [e for case in doc["cases"] for e in case["results"] if e["name"] == name]


def test_tiny_suite_end_to_end_writes_json_summary_and_plots(tmp_path, capsys):
    # "auto" only: every algorithm's kernels are the kernel tests' business, and each one
    # costs a simulator build here.
    code, doc = run(tmp_path, "--direction", "fwd,dgrad,wgrad", "--algorithm", "auto")
    out = capsys.readouterr().out
    assert code == 0, doc["failures"]
    assert doc["mode"] == "cpu" and doc["executors"] == ["cpu-simulator", "cpu-reference"]
    assert "say nothing about GPU speed" in doc["note"]
    assert "CPU TIMINGS" in out.splitlines()[0] and "CPU TIMINGS" in out.splitlines()[-2]
    ids = [c["id"] for c in doc["cases"]]
    assert len(ids) == 7            # conv x 3 directions, pool x 2, roi x 2
    for case in doc["cases"]:
        assert case["reduced"] and case["original_shape"]["N"] >= case["shape"]["N"]
        assert case["flops"] > 0 and case["bytes"] > 0 and case["floor_s"] > 0
        ref = case["results"][0]
        assert ref["name"] == "reference" and ref["executor"] == "cpu-reference"
        assert ref["status"] == "ok" and ref["time_s"] > 0 and 0 < ref["roofline_fraction"]
        for e in case["results"][1:]:
            assert e["kind"] == "gpuconv" and e["executor"] == "cpu-simulator"
            assert e["status"] in STATUSES - {"mismatch", "error"}, e
    conv = [c for c in doc["cases"] if c["op"] == "conv"][0]
    assert [e["name"] for e in conv["results"][1:]] == ["gpuconv:auto"]
    env = doc["environment"]
    assert env["git"]["commit"] and "numpy" in env["libraries"]
    assert doc["ceilings"]["float32"]["bandwidth"] > 0 and doc["ceilings"]["float32"]["peak_flops"] > 0
    assert (tmp_path / "summary.md").read_text().startswith("## gpuconv bench -- CPU TIMINGS")
    pytest.importorskip("matplotlib")
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == ["ratio_conv.dense.png", "ratio_pool.max.png", "ratio_roi.align.png", "roofline.png"]
    assert all((tmp_path / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


@pytest.mark.parametrize("option", ["--suite", "--dtype", "--layout", "--algorithm", "--direction"])
def test_an_empty_name_list_is_refused_not_read_as_everything(option, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--executor", "cpu", option, " , "])
    assert exit_.value.code == 2 and f"argument {option}: no name in" in capsys.readouterr().err


def test_settings_that_change_the_measurement_are_recorded(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GPUCONV_AUTOTUNE", "1")
    monkeypatch.setenv("CUPY_TF32", "1")
    monkeypatch.delenv("GPUCONV_WORKSPACE_BYTES", raising=False)
    code = main(["--executor", "cpu", "--no-progress", "--no-plots", "--suite", "pooling",
                 "--layers", "global max", "--out", str(tmp_path)])
    doc = json.loads((tmp_path / "results.json").read_text())
    assert code == 0
    settings = doc["environment"]["settings"]
    assert settings["GPUCONV_AUTOTUNE"] == "1" and settings["CUPY_TF32"] == "1"
    assert "GPUCONV_WORKSPACE_BYTES" not in settings
    assert "settings: GPUCONV_AUTOTUNE=1, CUPY_TF32=1" in capsys.readouterr().out
    assert "settings: GPUCONV_AUTOTUNE=1, CUPY_TF32=1" in (tmp_path / "summary.md").read_text()


def test_the_global_max_gradient_is_handed_the_forward_s_indices(tmp_path, monkeypatch):
    # As PyTorch's backward gets them and as the bytes model counts them (without, the kernel
    # scans x again for each plane's maximum).
    real, seen = gpuconv.grad.global_max_pool2d, []

    def spy(*args, **kwargs):
        seen.append(kwargs.get("indices"))
        return real(*args, **kwargs)
    monkeypatch.setattr(gpuconv.grad, "global_max_pool2d", spy)
    code = main(["--executor", "cpu", "--no-progress", "--no-plots", "--suite", "pooling",
                 "--layers", "global max", "--direction", "dgrad", "--out", str(tmp_path)])
    assert code == 0 and seen and all(i is not None and i.shape[2:] == (1, 1) for i in seen)


class FakeKernels:
    """Stands in for the CPU executor: ``gpuconv.simulate`` flips a flag, and ``gpuconv.conv2d``
    behaves as told while it is set (the reference answers outside it)."""

    def __init__(self, monkeypatch, behaviour):
        self.simulating = False
        real = gpuconv.conv2d

        @contextlib.contextmanager
        def simulate(*args, **kwargs):
            self.simulating = True
            try:
                yield
            finally:
                self.simulating = False

        def conv2d(*args, **kwargs):
            return behaviour(real, *args, **kwargs) if self.simulating else real(*args, **kwargs)

        monkeypatch.setattr(gpuconv, "simulate", simulate)
        monkeypatch.setattr(gpuconv, "conv2d", conv2d)


CONV_ONLY = ["--suite", "resnet50_b1", "--layers", r"l1\.conv2"]
NOT_FOR_DENSE_3X3 = {"gpuconv:pointwise", "gpuconv:depthwise"}


def test_agreeing_kernels_are_timed_and_compared(tmp_path, monkeypatch):
    FakeKernels(monkeypatch, lambda real, *a, **k: real(*a, **k))
    code, doc = run(tmp_path, *CONV_ONLY, "--no-plots")
    assert code == 0 and not doc["failures"]
    (case,) = doc["cases"]
    ref = case["results"][0]
    # A 3x3 dense layer: the 1x1 and depthwise algorithms refuse it, whatever the executor.
    refused = {e["name"] for e in case["results"][1:] if e["status"] == "not-applicable"}
    assert refused == NOT_FOR_DENSE_3X3
    ran = [e for e in case["results"][1:] if e["name"] not in refused]
    for e in ran:
        assert e["status"] == "ok" and e["max_rel_error"] == 0.0
        assert e["runs"] == doc["config"]["plan"]["rounds"] * doc["config"]["plan"]["runs_per_round"]
        assert e["ratios"]["reference"] == pytest.approx(ref["time_s"] / e["time_s"])
    rows = {r["variant"]: r for r in doc["summary"]}
    assert set(rows) == {"gpuconv:best", *(e["name"] for e in ran)}
    assert rows["gpuconv:auto"]["family"] == "conv.dense" and rows["gpuconv:auto"]["cases"] == 1
    best = min(e["time_s"] for e in ran)
    assert rows["gpuconv:best"]["geomean_ratio"] == pytest.approx(ref["time_s"] / best)


def test_a_wrong_result_is_flagged_not_timed_and_fails_the_run(tmp_path, monkeypatch, capsys):
    FakeKernels(monkeypatch, lambda real, *a, **k: real(*a, **k) * 1.01)
    code, doc = run(tmp_path, *CONV_ONLY, "--no-plots")
    assert code == 1
    gpu = results(doc, "gpuconv:auto")[0]
    assert gpu["status"] == "mismatch" and gpu["time_s"] is None
    assert gpu["max_rel_error"] == pytest.approx(0.01, rel=1e-3)
    assert {f["variant"] for f in doc["failures"]} == {
        f"gpuconv:{a}" for a in ("auto", *gpuconv.conv_algorithms)} - NOT_FOR_DENSE_3X3
    assert "FAILURES" in capsys.readouterr().out


def test_an_unexpected_exception_is_an_error(tmp_path, monkeypatch):
    def broken(real, *a, **k):
        raise ValueError("x must be 4-D")
    FakeKernels(monkeypatch, broken)
    code, doc = run(tmp_path, *CONV_ONLY, "--no-plots")
    assert code == 1
    assert results(doc, "gpuconv:auto")[0]["status"] == "error"
    # "auto" rejected the arguments, so a forced algorithm's ValueError is an error too
    assert results(doc, "gpuconv:direct")[0]["status"] == "error"


def test_a_forced_algorithm_that_cannot_run_the_case_is_not_applicable(tmp_path, monkeypatch):
    def picky(real, *a, **k):
        if k.get("algorithm") == "depthwise":
            raise ValueError("algorithm='depthwise' needs groups == C")
        return real(*a, **k)
    FakeKernels(monkeypatch, picky)
    code, doc = run(tmp_path, *CONV_ONLY, "--no-plots")
    assert code == 0
    entry = results(doc, "gpuconv:depthwise")[0]
    assert entry["status"] == "not-applicable" and "groups == C" in entry["reason"]
    assert results(doc, "gpuconv:auto")[0]["status"] == "ok"


def test_missing_kernels_are_unavailable_and_the_suite_goes_on(tmp_path, monkeypatch):
    def missing(real, *a, **k):
        raise NotImplementedError("conv kernels not written yet")
    FakeKernels(monkeypatch, missing)
    code, doc = run(tmp_path, *CONV_ONLY, "--no-plots")
    assert code == 0
    assert {e["status"] for e in results(doc, "gpuconv:auto")} == {"unavailable"}
    assert doc["summary"] == []


def test_command_line(tmp_path):
    listed = subprocess.run([sys.executable, "-m", "bench", "--list"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and "resnet50_b32" in listed.stdout and "groups:" in listed.stdout
    bad = subprocess.run([sys.executable, "-m", "bench", "--dtype", "int8"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--dtype must be one of" in bad.stderr
    quick = subprocess.run([sys.executable, "-m", "bench", "--quick", "--executor", "cpu",
                            "--suite", "roi", "--no-plots", "--out", str(tmp_path)],
                           cwd=REPO, capture_output=True, text=True, timeout=120)
    assert quick.returncode == 0, quick.stdout + quick.stderr
    assert (tmp_path / "results.json").is_file()


def test_a_bench_crash_is_recorded_as_a_failure_and_the_run_goes_on(tmp_path, monkeypatch):
    import bench.runner
    real = bench.runner.make_inputs

    def crash_on_pooling(case, xp, seed):
        if case.layer.op == "pool":
            raise RuntimeError("bench bug")
        return real(case, xp, seed)
    monkeypatch.setattr(bench.runner, "make_inputs", crash_on_pooling)
    # "auto" only: the crash handling is the same for every variant, and each other algorithm
    # would cost a simulator build here (the first use of most conv families in the suite).
    code, doc = run(tmp_path, "--algorithm", "auto", "--no-plots")
    assert code == 1
    (failure,) = doc["failures"]
    assert failure["variant"] == "bench" and "RuntimeError: bench bug" in failure["reason"]
    assert {c["op"] for c in doc["cases"]} == {"conv", "pool", "roi"}


def test_an_interrupted_run_writes_the_cases_done_and_fails(tmp_path, monkeypatch):
    # bench/gpu_session.sh stops the bench with SIGINT before the device command's time limit.
    import bench.runner
    real = bench.runner.Runner.run_case
    done = []

    def interrupted_at_the_second_case(self, case, ceiling):
        if done:
            raise KeyboardInterrupt
        done.append(case.id)
        return real(self, case, ceiling)
    monkeypatch.setattr(bench.runner.Runner, "run_case", interrupted_at_the_second_case)
    code, doc = run(tmp_path, *CONV_ONLY, "--algorithm", "auto", "--direction", "fwd,dgrad",
                    "--no-plots")
    assert code == 1 and doc["interrupted"]
    assert [c["id"] for c in doc["cases"]] == done
    assert any(n.startswith("INTERRUPTED after 1 of 2 cases (SIGINT)") for n in doc["notes"])


def test_gpuconv_simulate_in_the_environment_is_lifted_for_the_run_and_restored(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUCONV_SIMULATE", "1")
    seen = []
    real = gpuconv.conv2d

    def conv2d(*a, **k):
        seen.append(os.environ.get("GPUCONV_SIMULATE"))
        return real(*a, **k)
    monkeypatch.setattr(gpuconv, "conv2d", conv2d)
    code, doc = run(tmp_path, *CONV_ONLY, "--no-plots")
    assert code == 0 and seen and set(seen) == {None}
    assert results(doc, "reference")[0]["status"] == "ok"
    assert any("GPUCONV_SIMULATE" in n for n in doc["notes"])
    assert os.environ["GPUCONV_SIMULATE"] == "1"


@pytest.mark.parametrize("value, noted", [("off", False), ("no", False), ("bogus", True)])
def test_gpuconv_simulate_is_noted_only_when_it_would_simulate(tmp_path, monkeypatch, value,
                                                               noted):
    monkeypatch.setenv("GPUCONV_SIMULATE", value)
    code, doc = run(tmp_path, *CONV_ONLY, "--no-plots")
    assert code == 0
    assert any("GPUCONV_SIMULATE" in n for n in doc["notes"]) is noted
    assert os.environ["GPUCONV_SIMULATE"] == value


def test_without_a_gpu_the_default_run_is_the_quick_selection(tmp_path, capsys):
    code = main(["--executor", "cpu", "--no-progress", "--no-plots", "--suite", "roi",
                 "--out", str(tmp_path)])
    doc = json.loads((tmp_path / "results.json").read_text())
    assert code == 0 and "quick selection" in capsys.readouterr().err
    assert {case["direction"] for case in doc["cases"]} == {"forward"}
    with pytest.raises(SystemExit):
        main(["--executor", "cpu", "--quick", "--full"])


def test_kernel_variants_are_opt_in_algorithms(tmp_path):
    # The launcher's forward variants, timed side by side: each on the cases its algorithm can
    # run, "not-applicable" elsewhere.
    code = main(["--executor", "cpu", "--quick", "--no-progress", "--no-plots",
                 "--suite", "convnext_t_dw7,resnet50_b1", "--layers", r"dw7\.stage3|l1\.conv2",
                 "--algorithm", "implicit_gemm:analytic,depthwise:window,direct:v1",
                 "--out", str(tmp_path)])
    doc = json.loads((tmp_path / "results.json").read_text())
    assert code == 0, doc["failures"]
    by_variant = {}
    for case in doc["cases"]:
        for e in case["results"]:
            if e["kind"] == "gpuconv":
                by_variant.setdefault(e["name"], set()).add(e["status"])
    # the implicit GEMM and v1 run any convolution; the window kernel only the depthwise 7x7
    assert by_variant["gpuconv:implicit_gemm:analytic"] == {"ok"}
    assert by_variant["gpuconv:depthwise:window"] == {"ok", "not-applicable"}
    assert by_variant["gpuconv:direct:v1"] == {"ok"}


def test_warp_tile_variants_run_forward_and_gradients(tmp_path):
    # implicit_gemm's 4- and 8-warp tensor-core tiles on the 8-channel kernels, forward and
    # both gradients (their launchers take warp_tiles); split_k stays forward-only, loads
    # reaches the data gradient's launcher only.
    code = main(["--executor", "cpu", "--quick", "--no-progress", "--no-plots",
                 "--suite", "resnet50_b1", "--layers", r"l1\.conv2", "--dtype", "float16",
                 "--layout", "NHWC", "--direction", "forward,data_grad,weight_grad",
                 "--algorithm", "implicit_gemm:large_warps,implicit_gemm:small_warps,"
                 "implicit_gemm:split_k,implicit_gemm:registers", "--out", str(tmp_path)])
    doc = json.loads((tmp_path / "results.json").read_text())
    assert code == 0, doc["failures"]
    status = {(case["direction"], e["name"]): e["status"] for case in doc["cases"]
              for e in case["results"] if e["kind"] == "gpuconv"}
    for direction in ("forward", "data_grad", "weight_grad"):
        assert status[direction, "gpuconv:implicit_gemm:large_warps"] == "ok"
        assert status[direction, "gpuconv:implicit_gemm:small_warps"] == "ok"
    assert status["forward", "gpuconv:implicit_gemm:split_k"] == "ok"
    assert status["data_grad", "gpuconv:implicit_gemm:split_k"] == "not-applicable"
    assert status["data_grad", "gpuconv:implicit_gemm:registers"] == "ok"
    assert status["weight_grad", "gpuconv:implicit_gemm:registers"] == "not-applicable"


def test_variants_take_the_library_of_a_data_gradients_dy():
    """A data-gradient case has no x: its variants ran on the executor of None's library (the
    reference), so the H100 run of session 47 reported them not applicable."""
    from bench.operations import Inputs, array_library

    class CupyArray:      # stands in for cupy.ndarray: only its module is read
        pass
    CupyArray.__module__ = "cupy._core.core"
    assert array_library(Inputs(None, x=None, dy=CupyArray())) == "cupy"
    assert array_library(Inputs(None, x=CupyArray(), dy=None)) == "cupy"
    assert array_library(Inputs(None, x=None, dy=np.zeros(1))) == "numpy"


def test_an_unknown_variant_is_refused():
    with pytest.raises(SystemExit):
        main(["--executor", "cpu", "--algorithm", "implicit_gemm:optimized"])


@pytest.mark.parametrize("tool,argv", [("host_overhead", []), ("tile_sweep", []),
                                       ("tile_sweep", ["--direction", "weight_grad"]),
                                       ("launch_cost", []), ("roi_align_kernels", []),
                                       ("filter_transpose", []), ("ncu_forward", [])])
def test_a_gpu_tool_without_cupy_exits_naming_what_it_needs(tool, argv, monkeypatch):
    import importlib
    monkeypatch.setitem(sys.modules, "cupy", None)     # an import of cupy fails, as without it
    module = importlib.import_module(f"bench.{tool}")
    with pytest.raises(SystemExit) as exit_:
        module.main(argv)
    assert str(exit_.value).startswith(f"python -m bench.{tool} needs cupy")


@pytest.mark.parametrize("tool", ["bridge_host", "host_overhead", "tile_sweep", "launch_cost",
                                  "roi_align_kernels", "models", "model_profile",
                                  "filter_transpose", "ncu_forward"])
def test_each_tool_s_help_names_its_command(tool, capsys):
    import importlib
    with pytest.raises(SystemExit):
        importlib.import_module(f"bench.{tool}").main(["--help"])
    assert capsys.readouterr().out.startswith(f"usage: python -m bench.{tool} ")


@pytest.mark.parametrize("error", [RuntimeError, NotImplementedError])
def test_a_variant_failing_while_timed_keeps_no_time_ratio_or_mean(tmp_path, monkeypatch, error):
    from gpuconv._state import executor_for
    real, calls = gpuconv.max_pool2d, []

    def failing_after_its_check(*args, **kwargs):
        if executor_for("numpy") != "reference":     # the simulated variant, not the oracle
            calls.append(1)
            if len(calls) >= 3:                       # its check passed: the timing fails
                raise error("lost the device")
        return real(*args, **kwargs)
    monkeypatch.setattr(gpuconv, "max_pool2d", failing_after_its_check)
    code = main(["--quick", "--no-progress", "--no-plots", "--suite", "pooling", "--layers",
                 "resnet50.maxpool", "--direction", "fwd", "--out", str(tmp_path)])
    doc = json.loads((tmp_path / "results.json").read_text())
    (entry,) = results(doc, "gpuconv:default")
    assert entry["status"] == "error" and entry["reason"].startswith("while timing")
    assert entry.get("time_s") is None and not entry.get("ratios")
    assert code == 1 and doc["failures"]
    assert "pool.max" not in (tmp_path / "summary.md").read_text()
