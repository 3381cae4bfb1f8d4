"""The contract tests run twice: on the NumPy reference path (NumPy arrays outside
gpuconv.simulate()) and on the project's CUDA kernels executed by the CPU simulator
(GPUCONV_SIMULATE=1, random thread order), so every documented behaviour is checked on both
executors. Every test runs with the process-wide settings at their defaults and leaves them so."""
import pytest

import gpuconv

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
