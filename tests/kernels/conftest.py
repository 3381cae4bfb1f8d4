"""Fixtures shared by the kernel tests."""
import pytest

from gpuconv.simulator import Function


@pytest.fixture
def launched_names(monkeypatch) -> list[str]:
    """Names of the simulated kernels launched during the test, in launch order."""
    names = []
    simulated_launch = Function.__call__

    def recording_launch(self, *args, **kwargs):
        simulated_launch(self, *args, **kwargs)
        names.append(self.name)
    monkeypatch.setattr(Function, "__call__", recording_launch)
    return names
