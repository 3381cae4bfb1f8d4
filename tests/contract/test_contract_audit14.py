"""Fourteenth contract audit (randomized and structured cases against torch 2.13 CPU on both
executors: ~9000 convolution, ~30000 pooling and ROI checks; values and gradients agreed). It
found:

- A NumPy array whose first element is not at a multiple of its element size (``np.frombuffer``
  at a byte offset, a field of a packed structured array: ``flags.aligned`` False) went to the
  kernels as it was: under ``simulate()`` the vector and cp.async loads of the pointwise,
  depthwise and implicit-GEMM gradient kernels faulted (KernelFault), and on a GPU every load
  of such an address does. The reference reads them, as torch does. The launchers now copy
  such arrays as they copy non-contiguous ones (gpuconv/_arrays.py ``is_kernel_ready``,
  ``copy_for_kernels``); such an ``out=`` is written through a scratch output; the executor
  refuses a pointer off its element size as the device would trap it
  (tests/simulator/test_arguments.py); a CuPy array off its element size, which neither the
  kernels nor CuPy's copies can read, is a ValueError naming it
  (tests/core/test_arrays_devices.py).
- ``lp_pool2d`` with a float32 or 16-bit input gave the kernels ``norm_type`` rounded to float32
  and let them take its reciprocal there: a ``norm_type`` past float32's range (1e39) became
  inf and ``1 / norm_type`` 0, so every window gave 1 where torch and the reference give 0 or
  inf. The launcher now passes ``1 / norm_type`` computed in double (gpuconv/pool/launch_window.py),
  and the reference's gradient multiplies by ``1 / norm_type`` and ``norm_type`` rounded to the
  accumulator, as PyTorch's pow backward does (NaN where an exponent is inf there, not 0).
- ``spatial_pyramid_pool2d`` (a gpuconv extra) refused ``levels`` as a ``range`` or a 1-D NumPy
  array, where every size argument modelled on torch takes a NumPy array; both are taken now.

Runs on both executors (tests/contract/conftest.py).
"""
import numpy as np
import pytest

import gpuconv
from gpuconv import grad
from contract_support import CASE_NAMES, case_named, results

torch = pytest.importorskip("torch")


def misaligned(a: np.ndarray, offset: int = 1) -> np.ndarray:
    """A C-contiguous copy of ``a`` whose first element sits ``offset`` bytes past a 16-byte
    boundary (so off its element size for any offset that the size does not divide)."""
    raw = np.zeros(a.nbytes + 32, np.uint8)
    start = (-raw.ctypes.data) % 16 + offset
    view = raw[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
    view[...] = a
    assert view.flags.c_contiguous and not view.flags.aligned
    return view


def assert_same(got, want):
    got, want = results(got), results(want)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", CASE_NAMES)
def test_arrays_off_their_element_alignment_give_the_aligned_bits(name, dtype):
    case = case_named(name, dtype)
    want = case.run()
    for arg in case.floats:
        assert_same(case.run(floats=dict(case.floats, **{arg: misaligned(case.floats[arg])})),
                    want)
    for arg in case.ints:
        assert_same(case.run(ints=dict(case.ints, **{arg: misaligned(case.ints[arg], 4)})),
                    want)


# (x shape, weight shape, groups): a 3x3 layer, a 1x1 layer (pointwise), a depthwise layer;
# each algorithm that can run one is forced on it.
LAYERS = [((2, 8, 6, 6), (8, 8, 3, 3), 1), ((2, 8, 6, 6), (16, 8, 1, 1), 1),
          ((2, 8, 6, 6), (8, 1, 3, 3), 8)]


def _runs(algorithm, x, w, groups, data_format) -> bool:
    try:
        gpuconv.conv2d(x, w, groups=groups, padding=1, algorithm=algorithm,
                       data_format=data_format)
    except ValueError as error:
        assert "cannot" in str(error) or "only" in str(error) or "needs" in str(error), error
        return False
    return True


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("layer", range(len(LAYERS)))
def test_every_forced_convolution_reads_misaligned_operands(layer, dtype, data_format):
    rng = np.random.default_rng(layer)
    x_shape, w_shape, groups = LAYERS[layer]
    if data_format == "NHWC":
        x_shape = (x_shape[0], x_shape[2], x_shape[3], x_shape[1])
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    tried = 0
    for algorithm in ("auto",) + tuple(gpuconv.conv_algorithms):
        if not _runs(algorithm, x, w, groups, data_format):
            continue
        tried += 1

        def conv(x, w, b, residual=None, out=None):
            return gpuconv.conv2d(x, w, b, 1, 1, 1, groups, activation="relu", residual=residual,
                                  algorithm=algorithm, data_format=data_format, out=out)

        want = conv(x, w, b)
        residual = rng.standard_normal(want.shape).astype(dtype)
        want_with_residual = conv(x, w, b, residual)
        assert_same(conv(misaligned(x), w, b), want)
        assert_same(conv(x, misaligned(w), b), want)
        assert_same(conv(x, w, misaligned(b)), want)
        assert_same(conv(x, w, b, misaligned(residual)), want_with_residual)
        out = misaligned(np.zeros_like(want))
        assert conv(x, w, b, out=out) is out
        assert_same(out, want)
        # the input gradient and the weight gradient of the same layer
        dy = rng.standard_normal(want.shape).astype(dtype)
        kw = dict(stride=1, padding=1, groups=groups, data_format=data_format)
        assert_same(grad.conv2d_input(x.shape, misaligned(w), misaligned(dy), **kw),
                    grad.conv2d_input(x.shape, w, dy, **kw))
        assert_same(grad.conv2d_weight(misaligned(x), w.shape, misaligned(dy), **kw),
                    grad.conv2d_weight(x, w.shape, dy, **kw))
    assert tried >= 2


def test_a_misaligned_channel_slice_of_out_is_written_in_place():
    rng = np.random.default_rng(14)
    x = rng.standard_normal((2, 4, 5, 5)).astype(np.float32)
    w = rng.standard_normal((3, 4, 3, 3)).astype(np.float32)
    buffer = misaligned(np.full((2, 7, 5, 5), -9, np.float32))
    y = gpuconv.conv2d(x, w, padding=1, out=buffer[:, 2:5])
    assert np.shares_memory(y, buffer)
    assert_same(buffer[:, 2:5], gpuconv.conv2d(x, w, padding=1))
    assert (buffer[:, :2] == -9).all() and (buffer[:, 5:] == -9).all()


def test_a_field_of_a_packed_record_is_pooled_as_torch():
    # the realistic source of a misaligned array: a float field after a 1-byte tag
    record = np.zeros((), np.dtype([("tag", "u1"), ("x", "<f4", (1, 3, 6, 6))]))
    record["x"] = np.random.default_rng(3).standard_normal((1, 3, 6, 6))
    x = record["x"]
    assert not x.flags.aligned
    want = torch.nn.functional.max_pool2d(torch.from_numpy(x.copy()), 3, 2, 1)
    np.testing.assert_array_equal(gpuconv.max_pool2d(x, 3, 2, 1), want.numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("norm_type", [1e39, -1e39, 4e38, -5e38])
def test_lp_pool_norm_types_past_float32_range_as_torch(norm_type, dtype):
    # windows whose powers are all 0, hold an inf, and hold a 1: results 0 / inf / 1 or their
    # reversal, and gradients of inf and NaN, the same in any rounding
    x = np.array([[[[0.5, 0.25, 2.0, 0.5, 1.0, 0.75]]]], dtype)
    x_t = torch.from_numpy(x.astype(np.float32)).requires_grad_()
    y_t = torch.nn.functional.lp_pool2d(x_t, norm_type, (1, 2))
    y_t.backward(torch.ones_like(y_t))
    y = gpuconv.lp_pool2d(x, norm_type, (1, 2))
    np.testing.assert_array_equal(y, y_t.detach().numpy().astype(dtype))
    np.testing.assert_array_equal(grad.lp_pool2d(np.ones_like(y), x, norm_type, (1, 2)),
                                  x_t.grad.numpy().astype(dtype))


def test_lp_pool_gradient_of_a_norm_type_whose_inverse_passes_float32_range_as_torch():
    # 1 / -1e-40 is -inf in float32, which PyTorch's pow backward multiplies by
    x = np.array([[[[0.5, 0.25, 2.0, 0.5]]]], np.float32)
    x_t = torch.from_numpy(x).requires_grad_()
    y_t = torch.nn.functional.lp_pool2d(x_t, -1e-40, (1, 2))
    y_t.backward(torch.ones_like(y_t))
    np.testing.assert_array_equal(grad.lp_pool2d(np.ones((1, 1, 1, 2), np.float32), x, -1e-40,
                                                 (1, 2)), x_t.grad.numpy())


@pytest.mark.parametrize("levels", [range(1, 4), np.array([1, 2, 3]), np.array([1, 2, 3], np.uint8)],
                         ids=["range", "int64 array", "uint8 array"])
def test_pyramid_levels_as_a_range_or_an_integer_array(levels):
    x = np.random.default_rng(5).standard_normal((2, 3, 7, 9))
    want = gpuconv.spatial_pyramid_pool2d(x, (1, 2, 3), "avg")
    assert_same(gpuconv.spatial_pyramid_pool2d(x, levels, "avg"), want)
    dy = np.ones_like(want)
    assert_same(grad.spatial_pyramid_pool2d(dy, x, levels, "avg"),
                grad.spatial_pyramid_pool2d(dy, x, (1, 2, 3), "avg"))
    for bad in (np.array([[1, 2]]), np.array([1.5]), "12"):
        with pytest.raises(TypeError, match="levels"):
            gpuconv.spatial_pyramid_pool2d(x, bad)
