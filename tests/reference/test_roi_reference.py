"""The ROI reference (gpuconv.reference.roi) against a line-by-line transcription of torchvision's
CPU kernels (roi_align_kernel.cpp, roi_pool_kernel.cpp), hand-computed cases and gradients.

The transcription keeps torchvision's loops and expression order, with coordinates in its ``T``
(float32 for float16/float32 inputs, float64 for float64) and values in float64, as the
reference does; both therefore place every sample identically and agree to rounding.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from gpuconv.reference import roi as reference
from gpuconv.roi.geometry import check_roi_arguments

FLT_MAX = float(np.finfo(np.float32).max)


# ------------------------------------------------------------------ torchvision, transcribed

def coordinate_type(dtype):
    return np.float64 if np.dtype(dtype) == np.float64 else np.float32


def bilinear_corners(height, width, y, x, T):
    """torchvision's bilinear_interpolate_gradient: four (weight, y, x) corners, or []."""
    if not (y >= -1.0 and y <= height and x >= -1.0 and x <= width):
        return []
    if y <= 0:
        y = T(0)
    if x <= 0:
        x = T(0)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_high = y_low = height - 1
        y = T(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_high = x_low = width - 1
        x = T(x_low)
    else:
        x_high = x_low + 1
    ly, lx = float(y - T(y_low)), float(x - T(x_low))
    hy, hx = 1.0 - ly, 1.0 - lx
    return [(hy * hx, y_low, x_low), (hy * lx, y_low, x_high),
            (ly * hx, y_high, x_low), (ly * lx, y_high, x_high)]


def loop_roi_align_samples(x_dtype, roi, ph, pw, H, W, PH, PW, spatial_scale, sampling_ratio,
                           aligned):
    """Yields (corners, count) for every sample of output bin (ph, pw) of one roi."""
    T = coordinate_type(x_dtype)
    offset = T(0.5) if aligned else T(0.0)
    roi_start_w = T(roi[1]) * T(spatial_scale) - offset
    roi_start_h = T(roi[2]) * T(spatial_scale) - offset
    roi_end_w = T(roi[3]) * T(spatial_scale) - offset
    roi_end_h = T(roi[4]) * T(spatial_scale) - offset
    roi_width = roi_end_w - roi_start_w
    roi_height = roi_end_h - roi_start_h
    if not aligned:
        roi_width = max(roi_width, T(1.0))
        roi_height = max(roi_height, T(1.0))
    bin_size_h = roi_height / T(PH)
    bin_size_w = roi_width / T(PW)
    grid_h = sampling_ratio if sampling_ratio > 0 else int(np.ceil(roi_height / T(PH)))
    grid_w = sampling_ratio if sampling_ratio > 0 else int(np.ceil(roi_width / T(PW)))
    count = max(grid_h * grid_w, 1)
    for iy in range(grid_h):
        y = roi_start_h + T(ph) * bin_size_h + T(iy + 0.5) * bin_size_h / T(grid_h)
        for ix in range(grid_w):
            x = roi_start_w + T(pw) * bin_size_w + T(ix + 0.5) * bin_size_w / T(grid_w)
            yield bilinear_corners(H, W, y, x, T), count


def loop_roi_align(x, rois, PH, PW, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    N, C, H, W = x.shape
    out = np.zeros((len(rois), C, PH, PW))
    for n, roi in enumerate(rois):
        for c in range(C):
            plane = x[int(roi[0]), c].astype(np.float64)
            for ph in range(PH):
                for pw in range(PW):
                    val, count = 0.0, 1
                    for corners, count in loop_roi_align_samples(
                            x.dtype, roi, ph, pw, H, W, PH, PW, spatial_scale, sampling_ratio,
                            aligned):
                        val += sum(w * plane[yy, xx] for w, yy, xx in corners)
                    out[n, c, ph, pw] = val / count
    return out


def loop_grad_roi_align(grad_output, x_shape, x_dtype, rois, spatial_scale=1.0,
                        sampling_ratio=-1, aligned=False):
    N, C, H, W = x_shape
    K, _, PH, PW = grad_output.shape
    grad = np.zeros(x_shape)
    for n, roi in enumerate(rois):
        for c in range(C):
            for ph in range(PH):
                for pw in range(PW):
                    g = float(grad_output[n, c, ph, pw])
                    for corners, count in loop_roi_align_samples(
                            x_dtype, roi, ph, pw, H, W, PH, PW, spatial_scale, sampling_ratio,
                            aligned):
                        for w, yy, xx in corners:
                            grad[int(roi[0]), c, yy, xx] += g * w / count
    return grad


def loop_roi_pool(x, rois, PH, PW, spatial_scale=1.0):
    T = coordinate_type(x.dtype)
    N, C, H, W = x.shape
    out = np.zeros((len(rois), C, PH, PW))
    argmax = np.zeros(out.shape, dtype=np.int64)
    for n, roi in enumerate(rois):
        def c_round(v):
            return float(np.sign(v) * np.floor(abs(float(v)) + 0.5))
        roi_start_w = c_round(T(roi[1]) * T(spatial_scale))
        roi_start_h = c_round(T(roi[2]) * T(spatial_scale))
        roi_end_w = c_round(T(roi[3]) * T(spatial_scale))
        roi_end_h = c_round(T(roi[4]) * T(spatial_scale))
        roi_width = max(roi_end_w - roi_start_w + 1, 1)
        roi_height = max(roi_end_h - roi_start_h + 1, 1)
        bin_size_h = T(roi_height) / T(PH)
        bin_size_w = T(roi_width) / T(PW)
        for ph in range(PH):
            for pw in range(PW):
                hstart = int(np.floor(T(ph) * bin_size_h))
                wstart = int(np.floor(T(pw) * bin_size_w))
                hend = int(np.ceil(T(ph + 1) * bin_size_h))
                wend = int(np.ceil(T(pw + 1) * bin_size_w))
                hstart = int(min(max(hstart + roi_start_h, 0), H))
                hend = int(min(max(hend + roi_start_h, 0), H))
                wstart = int(min(max(wstart + roi_start_w, 0), W))
                wend = int(min(max(wend + roi_start_w, 0), W))
                is_empty = hend <= hstart or wend <= wstart
                for c in range(C):
                    maxval = 0.0 if is_empty else -FLT_MAX
                    maxidx = -1
                    plane = x[int(roi[0]), c].astype(np.float64)
                    for h in range(hstart, hend):
                        for w in range(wstart, wend):
                            if plane[h, w] > maxval:
                                maxval, maxidx = plane[h, w], h * W + w
                    out[n, c, ph, pw], argmax[n, c, ph, pw] = maxval, maxidx
    return out, argmax


# ---------------------------------------------------------------------------------- helpers

def geometry(x, rois, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False,
             data_format="NCHW"):
    return check_roi_arguments(x, rois, output_size, spatial_scale, sampling_ratio, aligned,
                               data_format=data_format).geometry


def align(x, rois, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    geom = geometry(x, rois, output_size, spatial_scale, sampling_ratio, aligned)
    return reference.roi_align(geom, x, rois)


def grad_align(g, x, rois, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    geom = geometry(x, rois, output_size, spatial_scale, sampling_ratio, aligned)
    return reference.grad_roi_align(geom, g, rois)


def pool(x, rois, output_size, spatial_scale=1.0):
    return reference.roi_pool_with_argmax(geometry(x, rois, output_size, spatial_scale), x, rois)


def grad_pool(g, x, rois, output_size, spatial_scale=1.0):
    return reference.grad_roi_pool(geometry(x, rois, output_size, spatial_scale), g, x, rois)


def random_rois(rng, n_images, k, low, high, dtype=np.float64):
    corners = rng.uniform(low, high, size=(k, 4))
    return np.concatenate([rng.integers(0, n_images, size=(k, 1)), corners], axis=1).astype(dtype)


# Boxes inside, partly outside, wholly outside, sub-pixel, inverted, and far larger than the
# 7 x 9 image; integer corners put samples and bin edges exactly on pixel boundaries.
BOX_CASES = {
    "inside": [[0, 1.2, 0.7, 6.3, 5.9], [1, 0.0, 0.0, 8.0, 6.0]],
    "partly_outside": [[0, -2.5, -1.7, 3.1, 2.2], [1, 5.5, 4.1, 11.0, 9.3]],
    "wholly_outside": [[0, -9.0, -8.0, -2.5, -1.5], [1, 10.5, 8.2, 14.0, 12.0]],
    "subpixel": [[0, 2.3, 3.1, 2.4, 3.15], [1, 4.0, 4.0, 4.0, 4.0]],
    "inverted": [[0, 5.0, 4.0, 2.0, 1.0], [1, 3.0, 2.0, 2.8, 1.9]],
    "huge": [[0, -40.0, -35.0, 48.0, 41.0], [1, -3.0, -2.0, 30.0, 25.0]],
    "integer_corners": [[0, 1.0, 2.0, 5.0, 6.0], [1, 0.0, 0.0, 3.0, 3.0]],
}


# ------------------------------------------------------------------------ roi_align forward

@pytest.mark.parametrize("boxes", BOX_CASES.values(), ids=BOX_CASES.keys())
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 1, 2, 3])
def test_roi_align_matches_torchvision_loops(rng, boxes, aligned, sampling_ratio):
    x = rng.standard_normal((2, 2, 7, 9))
    rois = np.array(boxes)
    got = align(x, rois, (3, 2), 1.0, sampling_ratio, aligned)
    want = loop_roi_align(x, rois, 3, 2, 1.0, sampling_ratio, aligned)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("spatial_scale", [0.5, 0.25, 1 / 3])
def test_roi_align_spatial_scale_matches_loops(rng, spatial_scale):
    x = rng.standard_normal((2, 3, 6, 5))
    rois = random_rois(rng, 2, 4, -4, 24)
    for aligned in (False, True):
        np.testing.assert_allclose(align(x, rois, 2, spatial_scale, -1, aligned),
                                   loop_roi_align(x, rois, 2, 2, spatial_scale, -1, aligned),
                                   rtol=1e-12, atol=1e-12)


def test_roi_align_float32_coordinates_match_loops(rng):
    # float32(14.1) - float32(0.1) is 14 in float32 arithmetic (2 samples per bin of 7) but
    # 14.0000004 in float64 (3 samples): the grid follows torchvision's float32 arithmetic.
    x = rng.standard_normal((1, 2, 16, 16)).astype(np.float32)
    rois = np.array([[0, 0.1, 0.1, 14.1, 14.1], [0, 0.3, 1.7, 7.3, 15.9]], dtype=np.float32)
    for aligned in (False, True):
        got = align(x, rois, 7, 1.0, -1, aligned)
        np.testing.assert_allclose(got, loop_roi_align(x, rois, 7, 7, 1.0, -1, aligned),
                                   rtol=1e-6, atol=1e-6)    # the result is rounded to float32
        in_float64 = align(x.astype(np.float64), rois.astype(np.float64), 7, 1.0, -1, aligned)
        assert np.abs(got[0] - in_float64[0]).max() > 1e-3


def test_roi_align_constant_image_gives_the_constant():
    x = np.full((1, 2, 6, 8), 3.25)
    rois = np.array([[0, 0.5, 0.5, 6.5, 4.5], [0, 1.0, 1.0, 1.2, 1.1], [0, 0.0, 0.0, 7.0, 5.0]])
    for aligned in (False, True):
        for sampling_ratio in (-1, 1, 2, 3):
            np.testing.assert_allclose(align(x, rois, (2, 3), 1.0, sampling_ratio, aligned),
                                       3.25, rtol=1e-14)


@pytest.mark.parametrize("sampling_ratio", [-1, 1, 2, 3])
def test_roi_align_linear_ramp_gives_the_ramp_at_bin_centres(sampling_ratio):
    # aligned=True: pixel centres are integers, so a ramp's average over a bin's symmetric
    # samples is the ramp at the bin centre (no clamping while samples stay in [0, H-1]).
    H, W = 10, 12
    yy, xx = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    x = (2.0 * yy - 0.5 * xx + 1.0)[None, None]
    x1, y1, x2, y2 = 1.5, 2.0, 9.5, 8.0
    got = align(x, np.array([[0, x1, y1, x2, y2]]), (3, 4), 1.0, sampling_ratio, True)[0, 0]
    cy = (y1 - 0.5) + (np.arange(3) + 0.5) * (y2 - y1) / 3
    cx = (x1 - 0.5) + (np.arange(4) + 0.5) * (x2 - x1) / 4
    np.testing.assert_allclose(got, 2.0 * cy[:, None] - 0.5 * cx[None, :] + 1.0, rtol=1e-13)


def test_roi_align_hand_computed_single_sample():
    # One sample per bin at (y, x) = (1.25, 2.5): rows 1, 2 weights .75/.25, cols 2, 3 .5/.5.
    x = np.arange(20.0).reshape(1, 1, 4, 5)
    got = align(x, np.array([[0, 2.0, 0.75, 3.0, 1.75]]), 1, 1.0, 1, False)
    want = 0.75 * (0.5 * 7 + 0.5 * 8) + 0.25 * (0.5 * 12 + 0.5 * 13)
    assert got.item() == pytest.approx(want, abs=1e-14)


def test_roi_align_out_of_image_rule():
    # Samples at y = -1 (inside: clamped to row 0) and y = -1.5 (outside: 0), and at x = W
    # (inside: last column) and x = W + 0.5 (outside).
    x = np.arange(1.0, 13.0).reshape(1, 1, 3, 4)
    at = lambda y, x_: align(x, np.array([[0, x_ - 0.5, y - 0.5, x_ + 0.5, y + 0.5]]), 1,
                             1.0, 1, False).item()
    assert at(-1.0, 1.0) == 2.0
    assert at(-1.5, 1.0) == 0.0
    assert at(1.0, 4.0) == 8.0
    assert at(1.0, 4.5) == 0.0


def test_roi_align_inverted_aligned_box_has_no_samples():
    x = np.ones((1, 1, 5, 5))
    got = align(x, np.array([[0, 3.0, 3.0, 1.0, 1.0]]), 2, 1.0, -1, True)
    np.testing.assert_array_equal(got, 0.0)
    # A fixed sampling ratio still samples an inverted aligned box (torchvision does too).
    assert np.all(align(x, np.array([[0, 3.0, 3.0, 1.0, 1.0]]), 2, 1.0, 2, True) == 1.0)


def test_roi_align_nan_reaches_only_the_bins_that_touch_it():
    x = np.zeros((1, 1, 8, 8))
    x[0, 0, 1, 1] = np.nan
    rois = np.array([[0, 0.0, 0.0, 8.0, 8.0]])
    got = align(x, rois, 4, 1.0, 2, False)
    want = loop_roi_align(x, rois, 4, 4, 1.0, 2, False)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert 0 < np.isnan(got).sum() < got.size


# ----------------------------------------------------------------------- roi_align backward

@pytest.mark.parametrize("boxes", BOX_CASES.values(), ids=BOX_CASES.keys())
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
def test_grad_roi_align_matches_torchvision_loops(rng, boxes, aligned, sampling_ratio):
    x = rng.standard_normal((2, 2, 7, 9))
    rois = np.array(boxes)
    g = rng.standard_normal((2, 2, 3, 2))
    got = grad_align(g, x, rois, (3, 2), 1.0, sampling_ratio, aligned)
    want = loop_grad_roi_align(g, x.shape, x.dtype, rois, 1.0, sampling_ratio, aligned)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("chunk_elements", [1, 2 * 9 * 5, 2 * 9 * 12])
def test_roi_align_in_pieces_matches_torchvision_loops(rng, monkeypatch, chunk_elements):
    """Boxes with many samples are taken a few sample rows at a time (CHUNK_ELEMENTS): one row
    (pieces of a bin), whole bins several rows long, several bins at a time; the forward and
    the backward still match torchvision's loops."""
    monkeypatch.setattr(reference, "CHUNK_ELEMENTS", chunk_elements)
    x = rng.standard_normal((2, 2, 7, 9))
    rois = np.array(BOX_CASES["huge"] + BOX_CASES["partly_outside"] + BOX_CASES["inside"])
    g = rng.standard_normal((6, 2, 3, 2))
    for sampling_ratio in (-1, 3):
        np.testing.assert_allclose(align(x, rois, (3, 2), 1.0, sampling_ratio, True),
                                   loop_roi_align(x, rois, 3, 2, 1.0, sampling_ratio, True),
                                   rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(
            grad_align(g, x, rois, (3, 2), 1.0, sampling_ratio, True),
            loop_grad_roi_align(g, x.shape, x.dtype, rois, 1.0, sampling_ratio, True),
            rtol=1e-12, atol=1e-12)


def test_roi_align_of_a_box_with_a_million_samples_per_bin_stays_small():
    """A box in image coordinates passed without its spatial_scale: adaptive sampling gives
    1000 x 1000 samples per bin; the pieces keep every temporary under CHUNK_ELEMENTS."""
    import tracemalloc
    x = np.ones((1, 64, 32, 32), dtype=np.float32)
    box = np.array([[0, 0, 0, 1000, 1000]], dtype=np.float32)
    tracemalloc.start()
    try:
        y = align(x, box, 1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # samples at 0.5, 1.5, ...: the 32 x 32 at most 32 read the ones, the others (past the
    # map) nothing, and the sum is divided by all 1000 x 1000
    np.testing.assert_allclose(y, np.full((1, 64, 1, 1), 32 * 32 / 1000 ** 2), rtol=1e-6)
    assert peak < 8 * reference.CHUNK_ELEMENTS * 8


def test_grad_roi_align_matches_finite_differences(rng):
    # roi_align is linear in x, so a central difference is exact up to rounding anywhere.
    x = rng.standard_normal((2, 3, 6, 7))
    rois = random_rois(rng, 2, 5, -2, 9)
    g = rng.standard_normal((5, 3, 2, 3))
    grad = grad_align(g, x, rois, (2, 3), 1.0, -1, True)
    for _ in range(3):
        v = rng.standard_normal(x.shape)
        eps = 1e-3
        f = lambda t: np.sum(align(t, rois, (2, 3), 1.0, -1, True) * g)
        numeric = (f(x + eps * v) - f(x - eps * v)) / (2 * eps)
        assert numeric == pytest.approx(np.sum(grad * v), rel=1e-9, abs=1e-9)


# ------------------------------------------------------------------------- roi_pool forward

@pytest.mark.parametrize("boxes", BOX_CASES.values(), ids=BOX_CASES.keys())
@pytest.mark.parametrize("output_size", [(2, 3), (4, 4), (1, 1)])
def test_roi_pool_matches_torchvision_loops(rng, boxes, output_size):
    x = rng.standard_normal((2, 2, 7, 9))
    rois = np.array(boxes)
    out, argmax = pool(x, rois, output_size)
    want, want_argmax = loop_roi_pool(x, rois, *output_size)
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(argmax, want_argmax)


@pytest.mark.parametrize("spatial_scale", [0.5, 0.25, 1 / 3, 0.1])
def test_roi_pool_spatial_scale_and_rounding_match_loops(rng, spatial_scale):
    x = rng.standard_normal((2, 2, 6, 7))
    # Corners whose scaled value is an exact half test C's round (half away from zero).
    rois = np.concatenate([random_rois(rng, 2, 5, -6, 30),
                           [[0, 1.0 / spatial_scale * 2.5, 0.5 / spatial_scale,
                             4.5 / spatial_scale, -0.5 / spatial_scale]]])
    for dtype in (np.float64, np.float32):
        out, argmax = pool(x.astype(dtype), rois.astype(dtype), (3, 2), spatial_scale)
        want, want_argmax = loop_roi_pool(x.astype(dtype), rois.astype(dtype), 3, 2,
                                          spatial_scale)
        np.testing.assert_array_equal(out, want)
        np.testing.assert_array_equal(argmax, want_argmax)


def test_roi_pool_bin_edges_follow_the_dtypes_arithmetic():
    # roi height 29 in 7 bins: the last bin ends at ceil(7 * (29 / 7)), which is 30 in float64
    # arithmetic and 29 in float32: row 29 belongs to the last bin only for float64 inputs.
    assert np.ceil(7 * (29 / 7)) == 30
    assert np.ceil(np.float32(7) * (np.float32(29) / np.float32(7))) == 29
    x = np.zeros((1, 1, 31, 2))
    x[0, 0, 29, 0] = 5.0
    rois = np.array([[0, 0.0, 0.0, 0.0, 28.0]])
    out32, _ = pool(x.astype(np.float32), rois.astype(np.float32), (7, 1))
    out64, _ = pool(x, rois, (7, 1))
    assert out32[0, 0, 6, 0] == 0.0 and out64[0, 0, 6, 0] == 5.0
    np.testing.assert_array_equal(out32, loop_roi_pool(x.astype(np.float32),
                                                       rois.astype(np.float32), 7, 1)[0])


def test_roi_pool_hand_computed():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    out, argmax = pool(x, np.array([[0, 0.0, 0.0, 3.0, 3.0]]), 2)
    np.testing.assert_array_equal(out[0, 0], [[5, 7], [13, 15]])
    np.testing.assert_array_equal(argmax[0, 0], [[5, 7], [13, 15]])


def test_roi_pool_empty_bins_ties_nan_and_tiny_values():
    x = np.array([[[[1.0, 1.0, np.nan], [-np.inf, -1e300, 0.0]]]])
    rois = np.array([[0, 0.0, 0.0, 2.0, 1.0],      # 3 x 2 box: bins of the whole plane
                     [0, 3.0, 0.0, 6.0, 1.0],      # right of the image: empty bins
                     [0, 0.0, 1.0, 1.0, 1.0]])     # only values below -FLT_MAX
    out, argmax = pool(x, rois, (1, 3))
    want, want_argmax = loop_roi_pool(x, rois, 1, 3)
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(argmax, want_argmax)
    assert argmax[0, 0, 0, 0] == 0                 # a tie keeps the first in row-major order
    assert out[0, 0, 0, 2] == 0.0 and argmax[0, 0, 0, 2] == 5    # NaN skipped
    np.testing.assert_array_equal(argmax[1], -1)
    np.testing.assert_array_equal(out[1], 0.0)
    assert out[2, 0, 0, 0] == -FLT_MAX and argmax[2, 0, 0, 0] == -1


# ------------------------------------------------------------------------ roi_pool backward

def test_grad_roi_pool_routes_each_bin_to_its_argmax(rng):
    x = rng.permutation(2 * 2 * 7 * 9).reshape(2, 2, 7, 9).astype(np.float64)  # no ties
    rois = np.array(BOX_CASES["inside"] + BOX_CASES["partly_outside"] + BOX_CASES["huge"])
    g = rng.standard_normal((len(rois), 2, 3, 3))
    grad = grad_pool(g, x, rois, 3)
    _, argmax = loop_roi_pool(x, rois, 3, 3)
    want = np.zeros(x.shape)
    for k, c, ph, pw in np.ndindex(argmax.shape):
        if argmax[k, c, ph, pw] >= 0:
            h, w = divmod(argmax[k, c, ph, pw], 9)
            want[int(rois[k, 0]), c, h, w] += g[k, c, ph, pw]
    np.testing.assert_allclose(grad, want, rtol=1e-14, atol=1e-14)
    # away from ties the max is locally linear: a central difference agrees
    v = rng.standard_normal(x.shape)
    f = lambda t: np.sum(pool(t, rois, 3)[0] * g)
    assert (f(x + 1e-4 * v) - f(x - 1e-4 * v)) / 2e-4 == pytest.approx(np.sum(grad * v),
                                                                     rel=1e-8)


def test_grad_roi_pool_skips_empty_bins():
    x = np.ones((1, 1, 3, 3))
    g = np.ones((1, 1, 2, 2))
    np.testing.assert_array_equal(grad_pool(g, x, np.array([[0, 5.0, 5.0, 9.0, 9.0]]), 2), 0)


# ----------------------------------------------------------------------- property tests

box_rows = st.lists(st.tuples(st.integers(0, 1), *[st.floats(-6, 14, allow_nan=False)] * 4),
                    min_size=1, max_size=3)


@settings(max_examples=30, deadline=None)
@given(boxes=box_rows, ph=st.integers(1, 3), pw=st.integers(1, 3),
       sampling_ratio=st.sampled_from([-1, 0, 1, 2]), aligned=st.booleans(),
       spatial_scale=st.sampled_from([1.0, 0.5, 0.75]), seed=st.integers(0, 2**16))
def test_property_roi_align_forward_and_backward_match_loops(boxes, ph, pw, sampling_ratio,
                                                             aligned, spatial_scale, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 1, 5, 6))
    rois = np.array(boxes, dtype=np.float64)
    got = align(x, rois, (ph, pw), spatial_scale, sampling_ratio, aligned)
    np.testing.assert_allclose(
        got, loop_roi_align(x, rois, ph, pw, spatial_scale, sampling_ratio, aligned),
        rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(got.shape)
    grad = grad_align(g, x, rois, (ph, pw), spatial_scale, sampling_ratio, aligned)
    # the backward is the adjoint of the (linear) forward
    assert np.sum(grad * x) == pytest.approx(np.sum(got * g), rel=1e-10, abs=1e-10)


@settings(max_examples=30, deadline=None)
@given(boxes=box_rows, ph=st.integers(1, 4), pw=st.integers(1, 4),
       spatial_scale=st.sampled_from([1.0, 0.5, 0.3]), seed=st.integers(0, 2**16),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_property_roi_pool_matches_loops(boxes, ph, pw, spatial_scale, seed, dtype):
    rng = np.random.default_rng(seed)
    # a few repeated values make ties likely
    x = rng.integers(-3, 4, size=(2, 2, 5, 6)).astype(dtype)
    rois = np.array(boxes).astype(dtype)
    out, argmax = pool(x, rois, (ph, pw), spatial_scale)
    want, want_argmax = loop_roi_pool(x, rois, ph, pw, spatial_scale)
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(argmax, want_argmax)
