"""Contract findings of the 20th audit (a code reading of the array handling of every function):

1. A numpy.ma.MaskedArray with masked elements passed as out= came back unmasked from the
   reference (an assignment clears the mask) and all-masked from the kernels (they write its
   data in place): it is now refused, on both executors alike (one with nothing masked still
   works: tests/contract/test_contract_audit13_conv.py).
2. spatial_pyramid_pool2d(mode="avg") refused x with 0 channels, which its levels
   (adaptive_avg_pool2d, as torch's) take: it now gives the empty (N, 0) result and gradient;
   mode="max" still refuses them, as torch's adaptive_max_pool2d does.
"""
import numpy as np
import pytest
import torch

import gpuconv


def test_a_masked_out_is_refused():
    x, w = np.random.rand(1, 2, 4, 4), np.random.rand(3, 2, 3, 3)
    out = np.ma.masked_all((1, 3, 2, 2))
    with pytest.raises(ValueError, match="out is a numpy.ma.MaskedArray with masked elements"):
        gpuconv.conv2d(x, w, out=out)
    assert out.count() == 0                         # nothing written
    out[0, 0, 0, 0] = 1.0                           # one element unmasked, the others not
    with pytest.raises(ValueError, match="masked elements"):
        gpuconv.conv2d(x, w, out=out)
    out.mask = False
    assert gpuconv.conv2d(x, w, out=out) is out and out.count() == out.size
    np.testing.assert_allclose(out.data, gpuconv.conv2d(x, w))


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_spatial_pyramid_avg_takes_zero_channels(data_format):
    x = np.random.rand(2, 0, 5, 5).astype(np.float32)
    if data_format == "NHWC":
        x = x.transpose(0, 2, 3, 1)
    y = gpuconv.spatial_pyramid_pool2d(x, (1, 3), mode="avg", data_format=data_format)
    want = torch.cat([torch.nn.functional.adaptive_avg_pool2d(torch.zeros(2, 0, 5, 5), l)
                      .reshape(2, -1) for l in (1, 3)], 1)
    assert y.shape == tuple(want.shape) == (2, 0) and y.dtype == np.float32
    g = gpuconv.grad.spatial_pyramid_pool2d(np.zeros((2, 0), np.float32), x, (1, 3), mode="avg",
                                            data_format=data_format)
    assert g.shape == x.shape
    with pytest.raises(ValueError, match="x must have non-zero channel"):
        gpuconv.spatial_pyramid_pool2d(x, (1, 3), mode="max", data_format=data_format)
    with pytest.raises(ValueError, match="mode must be one of"):
        gpuconv.spatial_pyramid_pool2d(x, (1, 3), mode="sum", data_format=data_format)
