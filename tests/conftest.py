"""Shared test fixtures: the `gpu` marker skips cleanly on machines without a CUDA GPU."""
import functools

import numpy as np
import pytest


@functools.lru_cache(maxsize=None)
def gpu_available() -> bool:
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, no driver, or no device: all mean "no GPU here"
        return False


def pytest_collection_modifyitems(config, items):
    if gpu_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU with CuPy (none on this machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def fresh_launch_plans():
    """Each test starts without recorded launch plans (gpuconv/_plans.py): a test that changes
    a launcher's rule (monkeypatch) must not replay a plan recorded under another test's."""
    from gpuconv import _call_plans
    _call_plans.PLANS.clear()
    yield


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
