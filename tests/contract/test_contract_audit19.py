"""Contract findings of the 19th audit (a code reading of the pooling and ROI backward passes):

1. The deterministic roi_pool gradient lost the gradient of a bin that ends one row or column
   past its box (tests/kernels/test_roi_kernels.py pins that on the kernel).
2. uint64 indices of 2^63 and above were cast to int64 by wrapping: 2^64 - 1 became -1, the
   index of a window in the padding, which the kernels took where the reference refuses it.
3. roi_align numbers an axis's samples in int (bin * sampling_ratio + i): with output_size *
   sampling_ratio past 2^31 the tabled forward read outside its tables and the deterministic
   gather's gradient came back 0. Such a call (which torchvision would never finish: 2^62
   samples a box) is refused by name.
"""
import numpy as np
import pytest

import gpuconv


@pytest.mark.parametrize("value", [2 ** 64 - 1, 2 ** 63, 2 ** 63 + 1])
def test_uint64_indices_past_int64_are_refused(value):
    x = go = np.ones((1, 1, 1, 1), np.float32)
    indices = np.array([[[[value]]]], np.uint64)
    # kernel 2, padding 1, dilation 2: the window may lie in the padding (index -1 allowed)
    with pytest.raises(ValueError, match=rf"indices must hold .*\[-1, 1\).*found.*{value}"):
        gpuconv.grad.max_pool2d(go, x, 2, 1, 1, 2, indices=indices)


def test_uint64_indices_in_range_still_work():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    values, indices = gpuconv.max_pool2d(x, 2, return_indices=True)
    go = np.ones((1, 1, 2, 2), np.float32)
    got = gpuconv.grad.max_pool2d(go, x, 2, indices=indices.astype(np.uint64))
    np.testing.assert_array_equal(got, (x >= 5) & (x % 2 == 1) & ((x // 4) % 2 == 1))
    np.testing.assert_array_equal(gpuconv.max_unpool2d(values, indices.astype(np.uint64), 2),
                                  np.where(got, x, 0))


@pytest.mark.parametrize("output_size, ratio", [((2 ** 30, 1), 2), ((2, 1), 2 ** 30),
                                                ((1, 65536), 32768)])
def test_roi_align_samples_per_axis_past_32_bits_are_refused(output_size, ratio):
    x = np.ones((1, 1, 2, 2), np.float32)
    boxes = np.array([[0, 0, 0, 1, 1]], np.float32)
    with pytest.raises(ValueError, match=r"sampling_ratio \* output_size must stay within"):
        gpuconv.roi_align(x, boxes, output_size, sampling_ratio=ratio)
    go = np.ones((1, 1, *output_size), np.float32) if output_size[0] < 2 ** 20 else None
    if go is not None:
        with pytest.raises(ValueError, match=r"sampling_ratio \* output_size must stay within"):
            gpuconv.grad.roi_align(go, x, boxes, output_size, sampling_ratio=ratio,
                                   deterministic=True)

