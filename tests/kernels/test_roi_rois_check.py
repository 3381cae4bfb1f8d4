"""The device-side check of rois values (kernels/roi/rois_check.cu) under the simulator: it
flags exactly the rows the NumPy rules of gpuconv/roi/geometry.py refuse, names the first one in
every thread order, in every dtype; and the front's two paths describe the same row."""
import numpy as np
import pytest

import gpuconv
from gpuconv.roi.geometry import MAX_COORDINATE
from gpuconv.roi.launch_check import first_bad_row
from kernel_support import BFLOAT16, ORDERS

DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)) + BFLOAT16
GOOD = [[0, 1.0, 2.0, 30.5, 40.0], [1, -5.0, -3.0, 7.25, 8.0], [2, 0.0, 0.0, 0.0, 0.0]]
N_IMAGES = 3


def device_check(rois, spatial_scale=1.0):
    answers = set()
    for order in ORDERS:
        with gpuconv.simulate(order=order):
            answers.add(first_bad_row(rois, N_IMAGES, spatial_scale, MAX_COORDINATE,
                                      executor="simulator"))
    assert len(answers) == 1, answers
    return answers.pop()


def with_bad_rows(dtype, bad_rows):
    rows = GOOD * 3
    for position, row in bad_rows.items():
        rows[position] = row
    return np.asarray(rows, dtype=np.float64).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_good_rois_pass(dtype):
    assert device_check(with_bad_rows(dtype, {})) is None


BAD = {
    "index past N": [3, 1, 2, 3, 4],
    "negative index": [-1, 1, 2, 3, 4],
    "fractional index": [0.5, 1, 2, 3, 4],
    "nan index": [np.nan, 1, 2, 3, 4],
    "nan coordinate": [0, 1, np.nan, 3, 4],
    "infinite coordinate": [0, 1, 2, -np.inf, 4],
}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kind", list(BAD))
def test_the_first_bad_row_is_named(kind, dtype):
    rois = with_bad_rows(dtype, {7: BAD[kind], 4: BAD[kind]})
    assert device_check(rois) == 4


def test_coordinates_beyond_the_limit_after_scaling():
    rois = with_bad_rows(np.float64, {5: [0, 1, 2, 3, 2 ** 22]})
    assert device_check(rois, spatial_scale=1.0) is None
    assert device_check(rois, spatial_scale=8.0) == 5     # 2**25 feature-map pixels


@pytest.mark.parametrize("kind", list(BAD))
def test_the_front_refuses_the_row_the_kernel_names(kind):
    """The NumPy path of the front raises for the same row, whatever rule it breaks."""
    x = np.zeros((N_IMAGES, 2, 8, 8))
    rois = with_bad_rows(np.float64, {6: BAD[kind], 2: [0, 1, 2, 3, 1e30]})
    assert device_check(rois) == 2
    with pytest.raises(ValueError, match="row 2 "):
        gpuconv.roi_align(x, rois, 2)
