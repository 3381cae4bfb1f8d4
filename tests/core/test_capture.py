"""gpuconv/_capture.py without a GPU: a stand-in CuPy module whose current stream says it is
being captured. (On a GPU, tests/frameworks/test_cuda_graphs_gpu.py captures real graphs.)"""
import sys
import types

import numpy as np
import pytest

from gpuconv import _capture
from gpuconv.pool.launch_indices import first_bad_index
from gpuconv.roi.launch_check import first_bad_row


class DeviceArray:
    """Stands in for a CuPy array holding a scan's answer."""

    def __init__(self, value):
        self.value = value

    def item(self):
        return self.value


@pytest.fixture
def stand_in_cupy(monkeypatch):
    state = types.SimpleNamespace(capturing=False)
    stream = types.SimpleNamespace(is_capturing=lambda: state.capturing)
    module = types.SimpleNamespace(ndarray=DeviceArray,
                                   cuda=types.SimpleNamespace(get_current_stream=lambda: stream))
    monkeypatch.setitem(sys.modules, "cupy", module)
    return state


def test_only_the_cupy_executor_can_be_capturing(stand_in_cupy):
    stand_in_cupy.capturing = True
    assert _capture.is_capturing("cupy")
    assert not _capture.is_capturing("simulator") and not _capture.is_capturing("reference")
    stand_in_cupy.capturing = False
    assert not _capture.is_capturing("cupy")


def test_no_cupy_means_no_capture(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    assert not _capture.is_capturing("cupy")
    _capture.refuse_host_read(np.zeros(1, np.int32), "anything")


@pytest.mark.parametrize("read, what", [
    (lambda answer: first_bad_index(answer, 10), "the indices' values"),
    (lambda answer: first_bad_row(answer, 10), "the boxes' values"),
], ids=["indices", "boxes"])
def test_a_scans_answer_is_read_only_outside_a_capture(stand_in_cupy, read, what):
    assert read(DeviceArray(3)) == 7              # 3 rows/outputs after the first bad one
    assert read(DeviceArray(0)) is None
    stand_in_cupy.capturing = True
    with pytest.raises(RuntimeError, match=f"checks {what} on the device .* CUDA graph capture "
                                           "forbids"):
        read(DeviceArray(3))
    # the simulator's answers are NumPy arrays, read on the host whatever CuPy's stream does
    assert read(np.array([3], np.int32)) == 7
