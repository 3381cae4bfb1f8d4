"""The contract tests check the NumPy reference path (NumPy arrays outside gpuconv.simulate()):
every test runs with the process-wide settings at their defaults and leaves them so."""
import pytest

import gpuconv


@pytest.fixture(autouse=True)
def reference_executor_and_default_settings(monkeypatch):
    # GPUCONV_SIMULATE=1 would route NumPy arrays to the CPU-simulated kernels (another tier).
    monkeypatch.delenv("GPUCONV_SIMULATE", raising=False)
    gpuconv.set_deterministic(False)
    yield
    gpuconv.set_deterministic(False)
