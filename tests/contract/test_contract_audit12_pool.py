"""Twelfth contract audit, pooling and ROI: randomized runs against torch 2.13 CPU (autograd for
every gradient, with and without ``indices=``, deterministic and not) and against
tests/frameworks/torchvision_semantics.py for roi_align / roi_pool: ~3 700 window, adaptive,
global and pyramid pooling cases, ~600 max_unpool2d and ~800 ROI cases on the reference, ~400,
~100 and ~100 on the simulator, in float16/32/64 (bfloat16 spot checks), NCHW and NHWC,
non-contiguous, broadcast and negatively strided arrays, N == 0, NaN, -inf, ties and windows of
padding alone; plus ~400 invalid-argument probes beside torch. Values and gradients agreed;
these disagreed:

- ``adaptive_avg_pool2d`` / ``adaptive_max_pool2d`` took an output size of 2**31 or more (an int,
  an entry of the pair, a pyramid level of ``spatial_pyramid_pool2d``): the reference then tried
  to allocate its window tables (a MemoryError, or the process killed), the simulator refused
  with an error naming no argument. They are now a ValueError naming output_size (levels), as
  the window sizes and ROI output sizes already were (test_contract_audit6.py).
- ``max_unpool2d`` took a stride of 2**31 or more (an OverflowError from the reference, a
  "FastDivmod divisor" ValueError from the kernels) and an output_size entry past 2**31 - 1;
  a default unpooled size past 2**31 - 1 (huge stride or kernel) failed the same ways.
- ``adaptive_avg_pool2d`` and ``global_avg_pool2d`` (torch's ``adaptive_avg_pool2d(x, 1)``)
  refused 0 channels, which torch takes (its adaptive_avg_pool2d checks the spatial sizes only),
  giving an empty output; their gradients are zeros of x's empty shape (torch's own backward
  fails there). The max poolings still refuse 0 channels, as torch's.

Runs on both executors (tests/contract/conftest.py); expected values come from torch.
"""
import numpy as np
import pytest

import gpuconv
from gpuconv import grad

torch = pytest.importorskip("torch")
F = torch.nn.functional

BIG = 2 ** 31
X = np.random.default_rng(0).standard_normal((1, 2, 4, 5))


@pytest.mark.parametrize("call, name", [
    (lambda: gpuconv.adaptive_avg_pool2d(X, BIG), "output_size"),
    (lambda: gpuconv.adaptive_max_pool2d(X, (3, 2 ** 40), True), r"output_size\[1\]"),
    (lambda: gpuconv.adaptive_avg_pool2d(X, (BIG, None), data_format="NHWC"),
     r"output_size\[0\]"),
    (lambda: grad.adaptive_max_pool2d(np.zeros((1, 2, 1, 1)), X, (None, BIG)),
     r"output_size\[1\]"),
    (lambda: gpuconv.spatial_pyramid_pool2d(X, (1, BIG)), r"levels\[1\]"),
    (lambda: grad.spatial_pyramid_pool2d(np.zeros((1, 2)), X, (BIG,), "avg"), r"levels\[0\]"),
], ids=["avg_int", "max_pair", "avg_nhwc", "grad_max", "spp", "grad_spp"])
def test_adaptive_output_sizes_past_32_bits_are_value_errors_naming_them(call, name):
    with pytest.raises(ValueError, match=f"{name} must be <= 2\\*\\*31 - 1"):
        call()


def test_max_unpool_sizes_past_32_bits_are_value_errors_naming_them():
    y, indices = gpuconv.max_pool2d(X, 2, return_indices=True)     # 2x2 -> unpooled 4x4
    for stride in (BIG, 2 ** 40, (2, BIG)):
        with pytest.raises(ValueError, match=r"stride(\[1\])? must be <= 2\*\*31 - 1"):
            gpuconv.max_unpool2d(y, indices, 2, stride)
        with pytest.raises(ValueError, match=r"stride(\[1\])? must be <= 2\*\*31 - 1"):
            grad.max_unpool2d(np.zeros((1, 2, 4, 4)), y, indices, 2, stride)
    # a stride that fits, whose default unpooled size (1 * stride + 2) does not
    with pytest.raises(ValueError, match=r"kernel_size \(2, 2\) and stride .* 2\*\*31 - 1"):
        gpuconv.max_unpool2d(y, indices, 2, BIG - 1)
    with pytest.raises(ValueError, match=r"output_size\[1\] must be <= 2\*\*31 - 1"):
        gpuconv.max_unpool2d(y, indices, 2, BIG - 1, output_size=(5, BIG))
    # an output_size within stride of that default is small, and computed as torch does
    expected = F.max_unpool2d(torch.from_numpy(y), torch.from_numpy(indices), 2, BIG - 1,
                              output_size=(5, 6))
    np.testing.assert_array_equal(
        gpuconv.max_unpool2d(y, indices, 2, BIG - 1, output_size=(5, 6)), expected.numpy())


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_average_adaptive_pooling_takes_zero_channels_as_torch(data_format):
    x = np.zeros((2, 0, 3, 5), np.float32)
    xt = torch.from_numpy(x)
    nhwc = data_format == "NHWC"
    layout = (lambda a: np.ascontiguousarray(a.transpose(0, 2, 3, 1))) if nhwc else (lambda a: a)
    kw = {"data_format": data_format}
    cases = [(F.adaptive_avg_pool2d(xt, (2, None)),
              lambda: gpuconv.adaptive_avg_pool2d(layout(x), (2, None), **kw),
              lambda g: grad.adaptive_avg_pool2d(g, layout(x), (2, None), **kw)),
             (F.adaptive_avg_pool2d(xt, 1),
              lambda: gpuconv.global_avg_pool2d(layout(x), **kw),
              lambda g: grad.global_avg_pool2d(g, layout(x), **kw))]
    for expected, forward, gradient in cases:
        y = forward()
        assert (y.shape, y.dtype) == (layout(expected.numpy()).shape, np.float32)
        # x's (empty) shape; torch's own backward refuses 0 channels
        dx = gradient(np.zeros(y.shape, np.float32))
        assert (dx.shape, dx.dtype) == (layout(x).shape, np.float32)
    # as torch, the max poolings refuse them
    with pytest.raises(RuntimeError):
        F.adaptive_max_pool2d(xt, 2)
    for call in (lambda: gpuconv.adaptive_max_pool2d(x, 2), lambda: gpuconv.global_max_pool2d(x)):
        with pytest.raises(ValueError, match="x must have non-zero channel"):
            call()
