"""``python -m bench --executor gpu`` end to end on a pretend device (fake_cuda.py, beside).

CuPy arrays are NumPy arrays in disguise, gpuconv's "cupy" launch path runs the real kernels
through the simulator, and the torch baselines compute on the CPU behind a faked torch.cuda.
What passing proves: every line the bench runs only on a GPU (the CUDA-event clock and its L2
flush, the ceilings by cudaMemcpyAsync and cupy.matmul, the device/driver/cuDNN record, DLPack
between CuPy and torch, the cuBLAS GEMM view, the NumPy oracle on host copies, the memory-pool
releases, the GPU report, JSON and plots) executes and records what a GPU run must record. It
proves nothing about speed or about what only real CUDA can refuse (fake_cuda's docstring).
Shapes are the CPU reduction of the suite's layers, so a run takes seconds.
"""
import json
import time

import numpy as np
import pytest

import fake_cuda
from bench import ceilings, environment
from bench import runner as bench_runner
from bench.__main__ import default_out, main
from bench.suites import CPU_QUICK

pytest.importorskip("torch")

GPU_RUN = ["--executor", "gpu", "--no-progress", "--suite", "resnet50_b1,pooling,roi",
           "--warmup", "1", "--rounds", "2", "--runs-per-round", "1"]
# A 3x3 and a plain 1x1 conv (the cuBLAS baseline's two kinds), every pooling kind whose torch
# backward differs (max, avg, global avg, adaptive max), both ROI ops.
EVERY_FAMILY = ("resnet50_b1/l1\\.(b1\\.conv1|conv2)|pooling/(vgga\\.pool1|avg3x3|resnet50\\.gap$"
                "|adaptive max)|roi/(mask head|Fast R-CNN VGG16)")
CONV_BASELINES = ["cudnn", "cudnn_nhwc", "torch_native", "cublas"]
FAKE_NAME = fake_cuda.DEVICE_NAME.decode()


@pytest.fixture
def fake_gpu(monkeypatch, tmp_path):
    counters = fake_cuda.install(monkeypatch, tmp_path)
    real_build_cases = bench_runner.build_cases

    def reduced(*args, **kwargs):
        return real_build_cases(*args, **{**kwargs, "reduction": CPU_QUICK})
    monkeypatch.setattr(bench_runner, "build_cases", reduced)
    # The ceilings' 1 GiB copy and 8192^3 GEMM, shrunk to what a CPU does in milliseconds.
    monkeypatch.setattr(ceilings, "GPU_COPY_BYTES", 1 << 20)
    monkeypatch.setattr(ceilings, "GPU_GEMM_N", 64)
    return counters


def strict_json(path):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


def by_name(case):
    return {e["name"]: e for e in case["results"]}


def test_gpu_run_of_every_family_records_device_ceilings_and_ratios(fake_gpu, tmp_path, capsys):
    out = tmp_path / "out"
    code = main([*GPU_RUN, "--direction", "fwd,dgrad,wgrad", "--layers", EVERY_FAMILY,
                 "--algorithm", "auto,pointwise", "--out", str(out)])
    printed = capsys.readouterr().out
    doc = strict_json(out / "results.json")
    assert code == 0, doc["failures"]
    assert doc["mode"] == "gpu" and doc["executors"] == ["gpu"] and not doc["interrupted"]
    assert printed.startswith(f"gpuconv bench -- GPU timings on {FAKE_NAME}")

    device = doc["environment"]["device"]
    assert device["name"] == FAKE_NAME and device["compute_capability"] == "90"
    assert device["driver_version"] == "580.159.04" and device["max_sm_clock"] == "1980 MHz"
    assert device["driver_api_version"] == fake_cuda.DRIVER_VERSION
    assert device["cuda_runtime_version"] == fake_cuda.RUNTIME_VERSION
    assert device["sm_count"] == fake_cuda.MULTIPROCESSORS and device["memory_GiB"] == 80.0
    assert device["torch_cuda"] == "13.0" and device["cudnn_version"] == fake_cuda.CUDNN_VERSION
    git = doc["environment"]["git"]
    assert len(git["commit"]) == 40 and git["source"] == "git"
    assert doc["baseline_settings"]["torch.backends.cudnn.allow_tf32"] is False
    assert "L2 flushed" in doc["timing"]["clock"] and "2 MiB memset" in doc["timing"]["clock"]
    assert "held behind a 300 us one-thread kernel" in doc["timing"]["clock"]
    ceiling = doc["ceilings"]["float32"]
    assert ceiling["bandwidth"] > 0 and ceiling["peak_flops"] > 0
    assert "cudaMemcpyAsync D2D of 1 MiB" in ceiling["how"] and "cupy.matmul" in ceiling["how"]

    cases = doc["cases"]
    assert [c["op"] for c in cases] == ["conv"] * 6 + ["pool"] * 8 + ["roi"] * 4
    runs = doc["config"]["plan"]["rounds"] * doc["config"]["plan"]["runs_per_round"]
    for case in cases:
        results = by_name(case)
        gpuconv = [e for e in case["results"] if e["kind"] == "gpuconv"]
        assert all(e["executor"] == "gpu" for e in gpuconv)
        timed_baselines = [e["name"] for e in case["results"]
                           if e["kind"] == "baseline" and e["time_s"]]
        for e in gpuconv:
            if e["status"] == "not-applicable":
                assert e["name"] == "gpuconv:pointwise" and "3x3" in case["layer"]
                continue
            assert e["status"] == "ok" and e["runs"] == runs and e["time_s"] > 0
            assert 0 <= e["host_bound_runs"] <= runs   # the simulator's calls outlast holds
            assert e["max_rel_error"] < 1e-4 and 0 < e["roofline_fraction"]
            assert sorted(e["ratios"]) == sorted(timed_baselines)
            for baseline, ratio in e["ratios"].items():
                assert ratio == pytest.approx(results[baseline]["time_s"] / e["time_s"])
        if case["op"] == "conv":
            assert [e["name"] for e in case["results"][:4]] == CONV_BASELINES
            # the float64 oracle checks every baseline, cuDNN's float32 result included
            assert case["checked_against"] == "cudnn in float64, NCHW (inputs upcast)"
            assert timed_baselines == CONV_BASELINES
            for name in ("cudnn", "cudnn_nhwc", "torch_native"):
                assert results[name]["status"] == "ok" and results[name]["max_rel_error"] < 1e-4
            plain_gemm = case["shape"]["R"] == 1
            assert (results["cublas"]["max_rel_error"] is not None) == plain_gemm
        elif case["op"] == "pool":
            # the float64 NCHW oracle checks torch's own result too (its channels_last
            # avg_pool2d backward ignored the padding: pytorch/pytorch#188344)
            assert case["checked_against"] == "torch in float64, NCHW (inputs upcast)"
            assert timed_baselines == ["torch"] and results["torch"]["max_rel_error"] < 1e-4
        else:
            tv = results["torchvision"]
            if tv["status"] == "unavailable":     # no torchvision: the NumPy reference checks
                assert case["checked_against"] == "reference (NumPy, host copies)"
            else:
                assert tv["status"] == "ok" and tv["max_rel_error"] < 1e-4
                assert case["checked_against"] == "torchvision in float64, NCHW (inputs upcast)"

    rows = {(r["family"], r["direction"], r["variant"], r["baseline"]) for r in doc["summary"]}
    assert ("conv.dense", "weight_grad", "gpuconv:best", "cudnn") in rows
    assert ("pool.max", "data_grad", "gpuconv:default", "torch") in rows
    assert doc["failures"] == []
    summary = (out / "summary.md").read_text()
    assert summary.startswith(f"## gpuconv bench -- GPU timings on {FAKE_NAME}")
    pytest.importorskip("matplotlib")
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == sorted({"roofline.png"} | {f"ratio_{c['family']}.png" for c in cases})
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in out.glob("*.png"))

    # The GPU-only machinery really ran: kernels launched through the fake RawModule, events,
    # the ceilings' memcpy, and the memory pools released after every case.
    launched = " ".join(fake_gpu.launches)
    for kernel in ("conv2d_", "max_pool2d", "avg_pool2d", "global", "adaptive_max", "roi_align",
                   "roi_pool"):
        assert kernel in launched
    assert fake_gpu.memcpys > 0 and fake_gpu.events_recorded > 0
    timed_runs = sum(e["runs"] for c in cases for e in c["results"] if e.get("runs"))
    ceiling_runs = 2 * 10 * len(doc["ceilings"])        # a copy and a GEMM, 10 runs each
    assert fake_gpu.launches["spin"] == timed_runs + ceiling_runs   # a hold before every run
    assert fake_gpu.pool_frees == fake_gpu.torch_empty_cache == len(cases)
    assert fake_gpu.torch_set_device == [0]
    assert default_out(doc).name.endswith("-NVIDIA-H100-80GB-HBM3-fake")


def test_a_bench_crash_on_the_gpu_is_recorded_and_the_device_memory_released(fake_gpu, tmp_path,
                                                                           monkeypatch):
    real = bench_runner.make_inputs

    def crash_on_pooling(case, xp, seed):
        if case.layer.op == "pool":
            raise RuntimeError("bench bug")
        return real(case, xp, seed)
    monkeypatch.setattr(bench_runner, "make_inputs", crash_on_pooling)
    out = tmp_path / "out"
    code = main([*GPU_RUN, "--layers", "l1\\.conv2|vgga\\.pool1", "--direction", "fwd",
                 "--algorithm", "auto", "--no-plots", "--out", str(out)])
    doc = strict_json(out / "results.json")
    assert code == 1
    (failure,) = doc["failures"]
    assert failure["variant"] == "bench" and "RuntimeError: bench bug" in failure["reason"]
    assert fake_gpu.pool_frees == len(doc["cases"]) == 2


def test_a_failed_device_stops_the_run_and_keeps_the_cases_done(fake_gpu, tmp_path, monkeypatch):
    def context_lost(pool, stream=None):
        raise fake_cuda.CUDARuntimeError("cudaErrorIllegalAddress: an illegal memory access")
    monkeypatch.setattr(fake_cuda._MemoryPool, "free_all_blocks", context_lost)
    out = tmp_path / "out"
    code = main([*GPU_RUN, "--layers", "l1\\.conv2|vgga\\.pool1", "--direction", "fwd",
                 "--algorithm", "auto", "--no-plots", "--out", str(out)])
    doc = strict_json(out / "results.json")
    assert code == 1 and doc["interrupted"] and doc["failures"] == []
    assert [c["op"] for c in doc["cases"]] == ["conv"]
    assert any("1 of 2 cases (the device failed: CUDARuntimeError: cudaErrorIllegalAddress"
               in note for note in doc["notes"])


def test_without_git_the_commit_comes_from_the_environment(monkeypatch, tmp_path):
    # The device machine's copy of the tree has no .git (bench/gpu_session.sh).
    monkeypatch.setattr(environment, "REPO", tmp_path)
    monkeypatch.delenv(environment.COMMIT_VARIABLE, raising=False)
    assert environment.git_state() == {"commit": "unknown", "dirty": None, "source": None}
    monkeypatch.setenv(environment.COMMIT_VARIABLE, "0123abc")
    assert environment.git_state() == {"commit": "0123abc", "dirty": None,
                                       "source": environment.COMMIT_VARIABLE}


def test_the_commit_variable_wins_over_a_stale_git(monkeypatch):
    # The device machine's copy may carry the .git of the session's first checkout, whose HEAD
    # is not the commit sent: the variable the run was started with says which it is.
    monkeypatch.setenv(environment.COMMIT_VARIABLE, "4567def")
    assert environment.git_state()["commit"] == "4567def"
    monkeypatch.delenv(environment.COMMIT_VARIABLE)
    assert environment.git_state()["source"] == "git"


def test_the_fake_refuses_what_cupy_refuses(monkeypatch, tmp_path):
    """The fake is only worth its passes if it fails where CuPy would."""
    fake_cuda.install(monkeypatch, tmp_path)
    import cupy
    x = cupy.arange(6, dtype=cupy.float32)
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(x)
    with pytest.raises(TypeError, match="Unsupported type"):
        cupy.matmul(x, np.ones(6, np.float32))
    with pytest.raises(TypeError, match="expected tuple"):
        cupy.RawModule(code="", options=["-std=c++17"])
    assert float(x.sum()) == 15.0 and isinstance(x.sum(), cupy.ndarray)   # 0-d, as CuPy
    assert not hasattr(x.flags, "writeable")
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    start.record()
    with pytest.raises(fake_cuda.CUDARuntimeError, match="never recorded"):
        cupy.cuda.get_elapsed_time(start, end)

    module = cupy.RawModule(code=SCALE, options=("-std=c++17",), name_expressions=["scale<float>"])
    scale = module.get_function("scale<float>")
    y = cupy.ones(4, dtype=cupy.float32)
    scale((1,), (4,), (y, np.float32(2.5), np.int32(4)))
    assert y.get().tolist() == [2.5] * 4
    with pytest.raises(TypeError, match="'grid' has incorrect type"):
        scale([1], (4,), (y, np.float32(2.5), np.int32(4)))
    with pytest.raises(TypeError, match="Unsupported type"):       # a host array
        scale((1,), (4,), (np.ones(4, np.float32), np.float32(2.5), np.int32(4)))
    with pytest.raises(TypeError, match="float"):                   # a Python float is a double
        scale((1,), (4,), (y, 2.5, np.int32(4)))


SCALE = """
template <typename T>
__global__ void scale(T* x, float a, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = x[i] * a;
}
"""


def test_the_event_clock_holds_each_run_and_counts_those_whose_host_time_outlasts_it(fake_gpu):
    from bench.timing import CudaEventClock, Timed, TimingPlan, measure_interleaved
    clock = CudaEventClock(hold_us=2000)
    quick, slow = Timed("quick", lambda: None), Timed("slow", lambda: time.sleep(0.004))
    measure_interleaved([quick, slow], clock, TimingPlan(warmup=0, rounds=2, runs_per_round=3))
    assert fake_gpu.launches["spin"] == 12
    assert (quick.host_bound_runs, slow.host_bound_runs) == (0, 6)
    assert clock.host_bound_runs == 6
    # The fake's events read the host clock, recorded after the hold: the sleep alone is timed.
    assert min(slow.times) >= 0.004 and max(quick.times) < 0.004
    assert "not timed" in clock.description
    assert "held" not in CudaEventClock(hold_us=0).description
