"""Thirteenth contract audit, pooling and ROI: randomized runs against torch 2.13 CPU (float64,
forward and autograd gradients, with and without ``indices=``, deterministic or not, NCHW and
NHWC: ~1 500 window / adaptive / unpooling cases on the reference, ~200 on the simulator) and
against tests/frameworks/torchvision_semantics.py (~800 roi_align / roi_pool cases, list boxes
with empty entries, inverted and outside boxes, every sampling_ratio form; ~150 on the
simulator), plus probes of argument forms (NumPy scalars and arrays, index dtypes, box forms,
empty and degenerate shapes). Values and gradients agreed; these disagreed:

- The NumPy reference computed float32 (and half) poolings in float64 throughout, where the
  kernels and PyTorch accumulate in float32: ``lp_pool2d`` of a large norm_type (x ** 50 of
  x = 7 is inf in float32) gave a finite value and gradient where the kernels and torch give
  inf and NaN; an ``avg_pool2d`` / ``adaptive_avg_pool2d`` / ``global_avg_pool2d`` window of
  float32 values summing past 3.4e38 gave a finite mean where they give inf. Its window sums
  and lp_pool2d's powers are now rounded to the accumulator type (gpuconv/reference/pool.py).
  Likewise ``roi_align``'s bin sums (torchvision sums a bin's samples in float): a float32 bin
  of four samples of 3e38 is inf there, and was 3e38 (gpuconv/reference/roi.py).
- ``roi_align`` / ``roi_pool`` (and their gradients) refused a 1-D NumPy array as output_size,
  which torchvision's ``_pair`` takes (any iterable), as gpuconv's other output sizes take it
  (test_contract_audit6.py).

Runs on both executors (tests/contract/conftest.py); expected values come from torch or from
the torchvision transcription.
"""
import sys
from pathlib import Path

import numpy as np
import pytest

import gpuconv
from gpuconv import grad

torch = pytest.importorskip("torch")
F = torch.nn.functional


def torch_forward_backward(function, x, *args):
    """(output, gradient of sum(output)) of ``function(x, *args)`` in torch, as NumPy."""
    t = torch.from_numpy(x).requires_grad_()
    y = function(t, *args)
    y.backward(torch.ones_like(y))
    return y.detach().numpy(), t.grad.numpy()


def assert_same(got, expected, rtol=1e-5):
    """Equal up to float32 rounding, with inf and NaN where the expected ones are."""
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(got) & (got > 0), np.isinf(expected) & (expected > 0))
    np.testing.assert_array_equal(np.isinf(got) & (got < 0), np.isinf(expected) & (expected < 0))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(got[finite], expected[finite], rtol=rtol, atol=1e-37)


# One 2x4 plane, two 2x2 windows: the first holds 7, whose 50th power (1.8e42) and 49th
# (2.6e41) are past float32's range; 7 ** 45.5 is not, but 45.5 * 7 ** 44.5 is.
LP_X = np.array([[[[7.0, 1.0, 0.5, 2.0], [1.0, 1.0, 3.0, 1.0]]]], np.float32)


@pytest.mark.parametrize("norm_type", [50, 45.5, -50])
def test_float32_lp_pool_overflows_in_float32_as_torch(norm_type):
    expected_y, expected_dx = torch_forward_backward(F.lp_pool2d, LP_X, norm_type, 2)
    if norm_type == 50:
        assert np.isinf(expected_y[0, 0, 0, 0]) and np.isnan(expected_dx[0, 0, 0, 0])
    if norm_type == 45.5:
        assert np.isfinite(expected_y).all() and np.isinf(expected_dx[0, 0, 0, 0])
    y = gpuconv.lp_pool2d(LP_X, norm_type, 2)
    assert_same(y, expected_y)
    dx = grad.lp_pool2d(np.ones(y.shape, np.float32), LP_X, norm_type, 2)
    assert_same(dx, expected_dx)


def test_half_lp_pool_overflows_in_its_float32_accumulator():
    # api.md: float16 accumulates in float32. 7 ** 50 is inf there, so the first window is inf
    # (torch's float32 result, rounded to float16); its gradient is NaN where x = 7.
    expected_y, expected_dx = torch_forward_backward(F.lp_pool2d, LP_X, 50, 2)
    x = LP_X.astype(np.float16)
    y = gpuconv.lp_pool2d(x, 50, 2)
    assert_same(y, expected_y.astype(np.float16), rtol=1e-3)
    dx = grad.lp_pool2d(np.ones(y.shape, np.float16), x, 50, 2)
    assert np.isnan(dx[0, 0, 0, 0]) and not np.isnan(dx.ravel()[1:]).any()


BIG = np.full((1, 2, 2, 2), 3e38, np.float32)     # each plane sums to 1.2e39: inf in float32


@pytest.mark.parametrize("name, call, expected", [
    ("avg_pool2d", lambda x: gpuconv.avg_pool2d(x, 2), lambda t: F.avg_pool2d(t, 2)),
    ("avg_pool2d[nhwc]", lambda x: gpuconv.avg_pool2d(x.transpose(0, 2, 3, 1), 2,
                                                      data_format="NHWC").transpose(0, 3, 1, 2),
     lambda t: F.avg_pool2d(t, 2)),
    ("adaptive_avg_pool2d", lambda x: gpuconv.adaptive_avg_pool2d(x, (1, None)),
     lambda t: F.adaptive_avg_pool2d(t, (1, None))),
    ("global_avg_pool2d", gpuconv.global_avg_pool2d, lambda t: F.adaptive_avg_pool2d(t, 1)),
    ("spatial_pyramid_pool2d", lambda x: gpuconv.spatial_pyramid_pool2d(x, (1,), "avg"),
     lambda t: F.adaptive_avg_pool2d(t, 1).reshape(1, 2)),
], ids=lambda v: v if isinstance(v, str) else "")
def test_float32_window_sums_overflow_as_torch(name, call, expected):
    want = expected(torch.from_numpy(BIG)).numpy()
    assert np.isinf(want).any()
    assert_same(np.ascontiguousarray(call(BIG)), want)


# ------------------------------------------------------------------------------------------
# ROI output sizes: a 1-D NumPy array, as torchvision's _pair takes it

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "frameworks"))
import torchvision_semantics as tv  # noqa: E402

ROI_X = np.random.default_rng(3).standard_normal((2, 2, 5, 6))
ROI_BOXES = np.array([[0, 0.5, 0.5, 4.0, 3.0], [1, 1.0, 0.0, 5.5, 4.5]])


@pytest.mark.parametrize("name", ["roi_align", "roi_pool"])
def test_roi_output_size_as_a_numpy_array(name):
    size = np.array([2, 3])
    args = (0.5, 2, True) if name == "roi_align" else (0.5,)
    expected_y, expected_dx = torch_forward_backward(
        getattr(tv, name), ROI_X, torch.from_numpy(ROI_BOXES), (2, 3), *args)
    y = getattr(gpuconv, name)(ROI_X, ROI_BOXES, size, *args)
    np.testing.assert_allclose(y, expected_y, rtol=1e-10, atol=1e-12)
    dx = getattr(grad, name)(np.ones(y.shape), ROI_X, ROI_BOXES, size, *args)
    np.testing.assert_allclose(dx, expected_dx, rtol=1e-10, atol=1e-12)
    for bad, error in ((np.array([2]), ValueError), (np.array([2.0, 3.0]), TypeError)):
        with pytest.raises(error, match="output_size"):
            getattr(gpuconv, name)(ROI_X, ROI_BOXES, bad, *args)


def test_float32_roi_align_bin_sums_overflow_as_torchvision():
    x = np.full((1, 1, 4, 4), 3e38, np.float32)
    boxes = np.array([[0, 0.0, 0.0, 3.0, 3.0]], np.float32)     # one bin, 2 x 2 samples
    expected = tv.roi_align(torch.from_numpy(x), torch.from_numpy(boxes), 1, 1.0, 2).numpy()
    assert np.isinf(expected).all()
    assert_same(gpuconv.roi_align(x, boxes, 1, 1.0, 2), expected)
