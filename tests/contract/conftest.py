"""The contract tests run twice: on the NumPy reference path (NumPy arrays outside
gpuconv.simulate()) and on the project's CUDA kernels executed by the CPU simulator
(GPUCONV_SIMULATE=1, random thread order), so every documented behaviour is checked on both
executors. Every test runs with the process-wide settings at their defaults and leaves them so."""
import sys

import pytest

import gpuconv

GRID_LIMIT = 8      # grid.y and grid.z under the grid_limit fixture, lowered from 65535

EXECUTORS = ("reference", "simulator")


@pytest.fixture(autouse=True, params=EXECUTORS)
def contract_executor(request, monkeypatch):
    """The executor NumPy calls go to in this test: "reference" or "simulator"."""
    if request.param == "simulator":
        monkeypatch.setenv("GPUCONV_SIMULATE", "1")
        monkeypatch.setenv("GPUCONV_SIMULATE_ORDER", "random")
        monkeypatch.setenv("GPUCONV_SIMULATE_SEED", "7")
    else:
        monkeypatch.delenv("GPUCONV_SIMULATE", raising=False)
    gpuconv.set_deterministic(False)
    yield request.param
    gpuconv.set_deterministic(False)


def _lowered_grid_limit(monkeypatch, limit: int):
    """CUDA's grid.y/z limit lowered to ``limit`` for the simulator and every convolution
    launcher, so that layers past the limit stay small."""
    from gpuconv.conv import launch_depthwise
    from gpuconv.simulator import _module
    monkeypatch.setattr(_module, "MAX_GRID", (2**31 - 1, limit, limit))
    for name, module in list(sys.modules.items()):
        if name.startswith("gpuconv.conv.") and hasattr(module, "GRID_YZ_LIMIT"):
            monkeypatch.setattr(module, "GRID_YZ_LIMIT", limit)
    launch_depthwise.plan.cache_clear()
    yield
    launch_depthwise.plan.cache_clear()


@pytest.fixture
def grid_limit(monkeypatch):
    yield from _lowered_grid_limit(monkeypatch, GRID_LIMIT)


WINOGRAD_GRID_LIMIT = 64    # room for Winograd's 36 GEMMs (F(4x4, 3x3)) on grid.z


@pytest.fixture
def winograd_grid_limit(monkeypatch):
    yield from _lowered_grid_limit(monkeypatch, WINOGRAD_GRID_LIMIT)
