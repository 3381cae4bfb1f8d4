"""How a traced gpuconv.jax call runs (gpuconv/jax/_traced.py): a buffer_callback on XLA's own
buffers where JAX has one (CPU buffers here; GPU buffers on a pretend device, fake_cuda.py, whose
CuPy runs the real kernels on the simulator), and the pure_callback host round trip where it
does not. The values of every function under jax.jit are in test_jax_functions.py."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = jax.numpy

import gpuconv  # noqa: E402
import gpuconv.jax as GJ  # noqa: E402
from gpuconv.jax import _traced  # noqa: E402

X = np.random.default_rng(0).standard_normal((2, 3, 6, 7)).astype(np.float32)


def _jaxpr(f, *args) -> str:
    return str(jax.make_jaxpr(f)(*args))


def test_a_jitted_call_is_a_buffer_callback():
    if _traced.buffer_callback is None:
        pytest.skip("this JAX has no jax.experimental.buffer_callback")
    jaxpr = _jaxpr(jax.jit(lambda x: GJ.avg_pool2d(x, 2)), X)
    assert "buffer_callback" in jaxpr and "pure_callback" not in jaxpr


def test_without_buffer_callback_the_call_runs_on_the_host(monkeypatch):
    monkeypatch.setattr(_traced, "buffer_callback", None)
    pooled = jax.jit(lambda x: GJ.max_pool2d(x, 2, return_indices=True))
    assert "pure_callback" in _jaxpr(pooled, X)
    values, indices = pooled(X)
    expected_values, expected_indices = gpuconv.max_pool2d(X, 2, return_indices=True)
    np.testing.assert_array_equal(values, expected_values)
    np.testing.assert_array_equal(indices, expected_indices)
    grad = jax.jit(jax.grad(lambda x: GJ.avg_pool2d(x, 3, 2).sum()))(X)
    np.testing.assert_array_equal(
        grad, gpuconv.grad.avg_pool2d(np.ones((2, 3, 2, 3), np.float32), X, 3, 2))


def _fake_cuda():
    spec = importlib.util.spec_from_file_location(
        "fake_cuda", Path(__file__).parents[1] / "bench" / "fake_cuda.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _GpuBuffer:
    """What buffer_callback hands a callback for a GPU buffer: a DLPack device and a
    ``__cuda_array_interface__`` (here over host memory, which is the fake device's)."""

    def __init__(self, array: np.ndarray):
        self.array = array
        self.dtype = array.dtype
        # XLA's typestr is NumPy's: "<V2" for bfloat16 (a raw 2-byte type)
        self.__cuda_array_interface__ = {
            "shape": array.shape, "typestr": array.dtype.str, "strides": None,
            "data": (array.ctypes.data, False), "version": 3}

    def __dlpack_device__(self):
        return (2, 0)       # kDLCUDA, device 0

    def __array__(self, *args, **kwargs):
        raise AssertionError("a GPU buffer is not readable as a NumPy array")


class _Context:
    stream = 0x5150         # XLA's stream, as an address


def test_gpu_buffers_run_the_kernels_on_xla_stream(monkeypatch, tmp_path):
    fake_cuda = _fake_cuda()
    fake_cuda.install(monkeypatch, tmp_path, fake_torch=False)
    import cupy
    seen = []

    def pool(x):
        seen.append((type(x), cupy.cuda.get_current_stream().ptr))
        return gpuconv.max_pool2d(x, 2, return_indices=True)

    values, indices = np.full((2, 3, 3, 3), np.nan, np.float32), np.zeros((2, 3, 3, 3), np.int32)
    out_spec = (jax.ShapeDtypeStruct(values.shape, values.dtype),
                jax.ShapeDtypeStruct(indices.shape, indices.dtype))
    treedef = jax.tree_util.tree_structure((0,))
    run = _traced._on_buffers(pool, out_spec, treedef, None)
    run(_Context(), (_GpuBuffer(values), _GpuBuffer(indices)), _GpuBuffer(X))

    assert seen == [(cupy.ndarray, _Context.stream)]
    assert fake_cuda.counters.launches, "no kernel ran"
    expected_values, expected_indices = gpuconv.max_pool2d(X, 2, return_indices=True)
    np.testing.assert_array_equal(values, expected_values)       # written in place
    np.testing.assert_array_equal(indices, expected_indices)


def test_gpu_buffers_of_bfloat16(monkeypatch, tmp_path):
    """XLA describes a bfloat16 buffer to CuPy as "<V2"; the callback views it as the buffer's
    dtype (audit 19: gpuconv's dtype check refused the void array, every bfloat16 call failed)."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    fake_cuda = _fake_cuda()
    fake_cuda.install(monkeypatch, tmp_path, fake_torch=False)
    x = X.astype(ml_dtypes.bfloat16)
    assert _GpuBuffer(x).__cuda_array_interface__["typestr"] == "<V2"
    out = np.zeros((2, 3, 3, 3), ml_dtypes.bfloat16)
    run = _traced._on_buffers(lambda a: gpuconv.avg_pool2d(a, 2),
                              jax.ShapeDtypeStruct(out.shape, out.dtype),
                              jax.tree_util.tree_structure((0,)), None)
    run(_Context(), _GpuBuffer(out), _GpuBuffer(x))
    assert fake_cuda.counters.launches, "no kernel ran"
    np.testing.assert_array_equal(out, gpuconv.avg_pool2d(x, 2))
