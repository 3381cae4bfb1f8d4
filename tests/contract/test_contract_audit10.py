"""Tenth contract audit (randomized runs of roi_align / roi_pool against a float64 transcription
of torchvision's CPU kernels: ~2 500 roi_align cases through every forward path (separable,
lanes, tabled, grouped) and every backward (separable, gather, atomic, atomic through NHWC) in
float16/32/64, NCHW and NHWC, plus ~500 roi_pool cases; no disagreement there). Edge cases that
disagreed, all on the kernels (the NumPy reference agrees with torchvision):

- Adaptive sampling is capped at 65536 samples per bin along an axis
  (kernels/common/roi_align_sampling.cuh, kMaxSamplingGrid, adaptive_grid), where torchvision
  takes ceil(roi_size / bins) samples for any box the front accepts (|coordinates| <= 2**24):
  a box 131072 pixels tall with one bin gets half of torchvision's samples, at other places.
- The separable passes and the gather backward look for the samples that can name a pixel in a
  window widened by one sample "against rounding" (candidate_samples in roi_align_sampling.cuh,
  used by bin_axis_term in roi_align_spans.cuh and by roi_align_gather.cu). Where the sample step
  is below the rounding error of the coordinates, samples that torchvision's own arithmetic puts
  inside [-1, extent] (and which then carry a full weight, clamped onto the first or last pixel)
  fall outside that window and are dropped.

Runs on both executors (tests/contract/conftest.py); expected values are derived by hand (each
test says how); the float64 ones agree with tests/frameworks/torchvision_semantics.py, whose
geometry is float64 and so does not model torchvision's float32 rounding (the last test).
"""
import numpy as np
import pytest

import gpuconv
from gpuconv import grad

# x[r, c] = 4 r + c on a 5 x 4 map; one box 131072 pixels tall, one pixel wide, one bin.
TALL_X = np.arange(20, dtype=np.float64).reshape(1, 1, 5, 4)
TALL_BOX = np.array([[0, 0.0, 0.0, 1.0, 131072.0]])
# torchvision: grid_h = ceil(131072 / 1) = 131072 samples at y = iy + 0.5, grid_w = 1 at x = 0.5.
# Inside the map (y <= 5): y = 0.5 .. 3.5 average rows r, r + 1; y = 4.5 clamps to row 4. At
# x = 0.5 a row r reads (x[r, 0] + x[r, 1]) / 2 = 4 r + 0.5, so the sum is
# 2.5 + 6.5 + 10.5 + 14.5 + 16.5 = 50.5, over count = 131072 samples.
TALL_COUNT = 131072.0


def test_roi_align_adaptive_sampling_of_a_tall_box_is_not_capped():
    y = gpuconv.roi_align(TALL_X, TALL_BOX, 1, sampling_ratio=0)
    np.testing.assert_allclose(y, [[[[50.5 / TALL_COUNT]]]], rtol=1e-12)


@pytest.mark.parametrize("deterministic", [False, True])
def test_roi_align_gradient_of_a_tall_box_is_not_capped(deterministic):
    # Each inside sample passes 1/count, half to each of columns 0 and 1, to its rows: rows 0 and
    # 1 from y = 0.5, ..., rows 3 and 4 from y = 3.5, all of it to row 4 from y = 4.5.
    rows = np.array([0.5, 1.0, 1.0, 1.0, 1.5])
    expected = np.zeros((1, 1, 5, 4))
    expected[0, 0, :, :2] = rows[:, None] * 0.5 / TALL_COUNT
    dx = grad.roi_align(np.ones((1, 1, 1, 1)), TALL_X, TALL_BOX, 1, sampling_ratio=0,
                        deterministic=deterministic)
    np.testing.assert_allclose(dx, expected, rtol=1e-12, atol=0)


# A float64 box 2**-51 tall straddling y = -1 (aligned: the box is shifted by -0.5), 32 bins of
# one sample each (grid_h = ceil(2**-51 / 32) = 1), two samples across (x = 0 and x = 1).
# torchvision's double arithmetic: y_ph = (-1 - 2**-52) + ph * 2**-56 + 0.5 * 2**-56 rounds to
# -1 - 2**-52 for ph < 8 (outside: nothing) and to -1 or above for ph >= 8 (inside: clamped to
# row 0 with weight 1), so bins 8 .. 31 are 1 on a map of ones.
E = 2.0 ** -52
SMALL_BOX = np.array([[0, 0.0, -0.5 - E, 2.0, -0.5 + E]])
SMALL_EXPECTED = np.array([0.0] * 8 + [1.0] * 24)


def test_roi_align_keeps_samples_that_round_into_the_map_separable():
    y = gpuconv.roi_align(np.ones((1, 1, 3, 3)), SMALL_BOX, (32, 1), sampling_ratio=0,
                          aligned=True)
    np.testing.assert_array_equal(y[0, 0, :, 0], SMALL_EXPECTED)


@pytest.mark.parametrize("sampling_ratio, deterministic", [(0, False), (0, True), (1, True)],
                         ids=["separable", "separable-deterministic", "gather"])
def test_roi_align_gradient_keeps_samples_that_round_into_the_map(sampling_ratio,
                                                                   deterministic):
    # the 24 inside bins each give 1 / count = 1/2 to (0, 0) (x = 0) and to (0, 1) (x = 1)
    expected = np.zeros((1, 1, 3, 3))
    expected[0, 0, 0, :2] = 12.0
    dx = grad.roi_align(np.ones((1, 1, 32, 1)), np.ones((1, 1, 3, 3)), SMALL_BOX, (32, 1),
                        sampling_ratio=sampling_ratio, aligned=True,
                        deterministic=deterministic)
    np.testing.assert_array_equal(dx, expected)


def test_roi_align_float32_tall_map_keeps_samples_that_round_onto_its_last_row():
    # Not aligned, float32 (torchvision computes the geometry in float): a box one pixel tall
    # across y = H on a map 32768 rows tall, 1024 bins of one sample each. Sample ph sits at
    # float32((H - 0.5) + ph / 1024) + 1/2048, rounded; those that round to <= H are inside
    # (clamped onto row H - 1, value 1 on a map of ones), the others add nothing.
    h = 32768
    f = np.float32
    start, bin_size = f(h - 0.5), f(1.0) / f(1024)
    expected = np.array([1.0 if f(f(start + f(ph) * bin_size) + f(0.5) * bin_size / f(1)) <= h
                         else 0.0 for ph in range(1024)])
    assert expected[513] == 1.0     # exactly H + 1/2048 + ..., rounded down onto H
    x = np.ones((1, 1, h, 2), np.float32)
    box = np.array([[0, 0.0, h - 0.5, 1.0, h + 0.5]], np.float32)
    y = gpuconv.roi_align(x, box, (1024, 1), sampling_ratio=0)
    np.testing.assert_array_equal(y[0, 0, :, 0], expected)
