"""CuPy arrays must live on CuPy's current device (the kernels launch there): checked with a
stand-in ``cupy`` module, since CI has no GPU. The real multi-GPU case is a GPU test."""
import sys
import types

import numpy as np
import pytest

import gpuconv
from gpuconv._arrays import library_of


class FakeDevice:
    current = 0

    def __init__(self, id=None):
        self.id = FakeDevice.current if id is None else id


class FakeArray:
    def __init__(self, device: int, address: int = 0x7F0000000000):
        self.device = FakeDevice(device)
        self.dtype = np.dtype(np.float32)
        self.data = types.SimpleNamespace(ptr=address)    # cupy.cuda.MemoryPointer's address


@pytest.fixture
def fake_cupy(monkeypatch):
    module = types.ModuleType("cupy")
    module.ndarray = FakeArray
    module.cuda = types.SimpleNamespace(Device=FakeDevice)
    monkeypatch.setitem(sys.modules, "cupy", module)
    monkeypatch.setattr(FakeDevice, "current", 0)
    return module


def test_an_array_on_the_current_device_is_a_cupy_array(fake_cupy):
    assert library_of("x", FakeArray(0)) == "cupy"


def test_an_array_on_another_device_is_a_value_error_naming_it(fake_cupy):
    with pytest.raises(ValueError, match=r"weight is on GPU 1 but the current CuPy device is GPU 0"):
        library_of("weight", FakeArray(1))


def test_a_cupy_array_off_its_element_alignment_is_a_value_error_naming_it(fake_cupy):
    # a CUDA load faults there, and CuPy's own copy would too: nothing can read it
    with pytest.raises(ValueError, match=r"residual's data pointer .* 4-byte element size"):
        library_of("residual", FakeArray(0, address=0x7F0000000002))


def test_numpy_arrays_need_no_device(fake_cupy):
    assert library_of("x", np.zeros(1)) == "numpy"


@pytest.mark.gpu
def test_a_cupy_array_on_another_gpu_is_refused_before_any_launch():
    import cupy
    if cupy.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("needs two GPUs")
    with cupy.cuda.Device(1):
        x = cupy.ones((1, 1, 4, 4), cupy.float32)
    with cupy.cuda.Device(0), pytest.raises(ValueError, match="x is on GPU 1"):
        gpuconv.max_pool2d(x, 2)


@pytest.mark.gpu
def test_a_cupy_array_off_its_element_size_is_refused_before_any_launch():
    import cupy
    base = cupy.zeros(17, cupy.float32)
    x = cupy.ndarray((1, 1, 4, 4), cupy.float32, memptr=base.data + 2)
    with pytest.raises(ValueError, match="x's data pointer .* 4-byte element size"):
        gpuconv.max_pool2d(x, 2)
