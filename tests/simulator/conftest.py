"""The simulator's tests choose thread orders explicitly; a process-wide GPUCONV_SIMULATE_ORDER
must not change what a test without simulate() runs."""
import pytest


@pytest.fixture(autouse=True)
def default_simulation_environment(monkeypatch):
    for name in ("GPUCONV_SIMULATE", "GPUCONV_SIMULATE_ORDER", "GPUCONV_SIMULATE_SEED",
                 "GPUCONV_SIMULATE_SANITIZE", "GPUCONV_SIMULATE_STACK_KB"):
        monkeypatch.delenv(name, raising=False)
