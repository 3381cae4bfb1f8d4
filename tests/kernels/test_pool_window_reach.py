"""The window kernels form a window's bounds in 32-bit ints before they clip them
(kernels/common/pool_window.cuh); a plane of ~2^30 rows with a window or padding as large
wrapped such a sum and the window came out empty: -inf and index -1 from max_pool2d, 0 from
avg_pool2d and lp_pool2d, a lost gradient row (audit 19). The launchers refuse those
geometries. The inputs are lazily allocated zeros: the refusal comes before a kernel reads them.
"""
import numpy as np
import pytest

import gpuconv

H = 2 ** 30 + 2
TALL = np.zeros((1, 1, H, 1), np.float16)
GRAD = np.ones((1, 1, 2, 1), np.float16)
HUGE_AVG = dict(kernel_size=(2 ** 31 - 1, 1), stride=(2 ** 30 + 1, 1), padding=(2 ** 30 - 1, 0),
                divisor_override=1)

CASES = {
    "max_pool2d dilated": lambda: gpuconv.max_pool2d(TALL, (2, 1), stride=1, padding=(1, 0),
                                                     dilation=(2 ** 30, 1)),
    "avg_pool2d": lambda: gpuconv.avg_pool2d(TALL, **HUGE_AVG),
    "grad.avg_pool2d": lambda: gpuconv.grad.avg_pool2d(GRAD, TALL, **HUGE_AVG),
    "grad.max_pool2d": lambda: gpuconv.grad.max_pool2d(
        GRAD, TALL, (2 ** 31 - 1, 1), stride=(2 ** 30 + 1, 1), padding=(2 ** 30 - 1, 0),
        indices=np.array([0, H - 1], np.int64).reshape(1, 1, 2, 1), deterministic=True),
    "lp_pool2d ceil_mode": lambda: gpuconv.lp_pool2d(TALL[:, :, :2 ** 30 + 1], 2, (2 ** 30, 1),
                                                     (2 ** 30, 1), ceil_mode=True),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_windows_past_32_bit_arithmetic_are_refused_on_the_kernels(name):
    with gpuconv.simulate(), pytest.raises(ValueError, match="too large for the kernels' 32-bit"):
        CASES[name]()


def test_a_tall_plane_with_an_ordinary_window_still_runs():
    with gpuconv.simulate():
        y = gpuconv.max_pool2d(TALL[:, :, :1000], 3, 2, 1)
    assert y.shape == (1, 1, 500, 1) and not y.any()
