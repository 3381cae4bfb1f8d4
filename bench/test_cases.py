"""The suite's --quick cases under pytest-benchmark, on a GPU: ``python -m pytest bench``.

Each test is one variant of one case (a gpuconv algorithm or a baseline), grouped by case so
pytest-benchmark lays the peers side by side. Every variant is first checked exactly as in
``python -m bench`` (bench.runner.Runner.check_case); then pytest-benchmark times it with a
CUDA-synchronized clock (the device is synchronized before every reading). These timings keep
the L2 warm and include launch overhead; the flushed, CUDA-event medians and the roofline are
``python -m bench``'s job. Without a GPU (or without pytest-benchmark) everything here skips.
"""
from __future__ import annotations

import time

import pytest

from bench.environment import gpu_present

if not gpu_present():
    pytest.skip("needs a CUDA GPU with CuPy (none here)", allow_module_level=True)
pytest.importorskip("pytest_benchmark")

from bench.baselines import GPU_CONV_BASELINES, GPU_POOL_BASELINES, GPU_ROI_BASELINES  # noqa: E402
from bench.operations import conv_algorithms  # noqa: E402
from bench.roofline import CONV_DIRECTIONS  # noqa: E402
from bench.suites import build_cases  # noqa: E402

CASES = build_cases(quick=True, directions=CONV_DIRECTIONS)
VARIANTS = {
    "conv": tuple(f"gpuconv:{a}" for a in conv_algorithms()) + GPU_CONV_BASELINES,
    "pool": ("gpuconv:default",) + GPU_POOL_BASELINES,
    "roi": ("gpuconv:default",) + GPU_ROI_BASELINES,
}
PARAMS = [pytest.param(case, variant, id=f"{case.id}:{variant}")
          for case in CASES for variant in VARIANTS[case.layer.op]]


def synchronized_perf_counter() -> float:
    import cupy
    cupy.cuda.runtime.deviceSynchronize()
    return time.perf_counter()


@pytest.fixture(scope="module")
def runner():
    from bench.runner import RunConfig, Runner
    from bench.timing import GPU_QUICK_PLAN
    return Runner(RunConfig(mode="gpu", quick=True, plan=GPU_QUICK_PLAN))


_checked: dict = {}


def checked_case(runner, case):
    """The checked variants of one case; the previous case is dropped (GPU memory)."""
    if case.id not in _checked:
        _checked.clear()
        _checked[case.id] = runner.check_case(case)
    return _checked[case.id]


@pytest.mark.benchmark(timer=synchronized_perf_counter, disable_gc=True)
@pytest.mark.parametrize(("case", "variant"), PARAMS)
def test_case(benchmark, runner, case, variant):
    checked = checked_case(runner, case)
    names = [e.name for e in checked.entries]
    if variant not in names:
        pytest.skip(f"{variant} is not among this run's variants ({', '.join(names)})")
    entry = checked.entry(variant)
    if entry.status in ("mismatch", "error") and entry.is_gpuconv:
        pytest.fail(f"{variant}: {entry.status}: {entry.reason}")
    if entry.status not in ("ok", "unchecked"):
        pytest.skip(f"{variant}: {entry.status}: {entry.reason}")
    benchmark.group = case.id
    benchmark.extra_info.update(status=entry.status, max_rel_error=entry.max_rel_error,
                                oracle=checked.oracle_name)
    with entry.context():
        benchmark.pedantic(entry.run, rounds=20, warmup_rounds=3, iterations=1)
