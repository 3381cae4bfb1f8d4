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


@pytest.fixture
def asked_kernels(monkeypatch) -> list[str]:
    """Name expressions of the kernels the conv launchers ask for (ConvCall.kernel), in order,
    whichever executor then runs them."""
    from gpuconv.conv import launch_common
    names = []
    real = launch_common.ConvCall.kernel

    def spy(self, family, name_expression, *shared_mem):
        names.append(name_expression)
        return real(self, family, name_expression, *shared_mem)

    monkeypatch.setattr(launch_common.ConvCall, "kernel", spy)
    return names
