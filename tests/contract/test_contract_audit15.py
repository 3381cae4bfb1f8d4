"""Contract audit 15 (gpuconv.grad against torch autograd, every pooling and ROI gradient, on both
executors; an argument fuzz of every public function). Findings, each fixed and pinned below:

1. grad.lp_pool2d with norm_type +-inf on a bfloat16 (ml_dtypes) input holding a NaN warned
   "invalid value encountered in greater" (an error under -W error); float16/32/64 did not.
"""
import warnings

import numpy as np
import pytest

import gpuconv

ml_dtypes = pytest.importorskip("ml_dtypes")


@pytest.mark.parametrize("norm_type", [np.inf, -np.inf], ids=["inf", "-inf"])
def test_lp_pool_infinite_norm_gradient_of_a_bfloat16_nan_is_silent(norm_type):
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4) - 8
    x[0, 0, 0, 0] = np.nan
    x = x.astype(ml_dtypes.bfloat16)
    g = np.ones((1, 1, 2, 2), ml_dtypes.bfloat16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dx = gpuconv.grad.lp_pool2d(g, x, norm_type, 2)
    # torch.sign(NaN) is 0: the NaN's window sends nothing through the NaN
    assert dx.dtype == x.dtype and float(dx[0, 0, 0, 0]) == 0
