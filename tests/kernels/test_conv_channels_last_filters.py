"""Filters laid out channels_last ((K, R, S, C/groups) in memory, viewed as (K, C/groups, R, S)):
what a channels_last PyTorch model hands every NHWC convolution. The NHWC forward implicit GEMM
reads them in place (its GEMM k runs r, s, c), and so do Winograd's filter transform and direct
fallback (forward and data gradient: they take the layout); every other forward kernel reads a
contiguous KCRS copy, as before; the other data-gradient kernels transpose the filters from
whatever layout they come in, in one copy. Each case is checked bit for bit against the same call with contiguous filters
(the kernels read the same values in the same order) and against the NumPy reference.
"""
import numpy as np
import pytest

import gpuconv
from gpuconv import _plans
from gpuconv.conv import plans

from kernel_support import misaligned_copy
from test_conv_launch_plans import TOLERANCE


def channels_last(w: np.ndarray) -> np.ndarray:
    """``w`` (K, C, R, S) with the same values, its memory laid out (K, R, S, C)."""
    view = np.ascontiguousarray(w.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    assert not view.flags.c_contiguous or w.shape[1] == 1 or w.shape[2:] == (1, 1)
    return view


def inputs(rng, x_shape, w_shape, dtype):
    x = np.ascontiguousarray(rng.standard_normal(x_shape).astype(dtype).transpose(0, 2, 3, 1))
    w = (rng.standard_normal(w_shape) * 0.3).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    return x, w, b


def assert_matches_reference(got, expected, dtype):
    scale = max(float(np.abs(expected.astype(np.float64)).max()), 1.0)
    err = float(np.abs(got.astype(np.float64) - expected).max()) / scale
    assert err <= TOLERANCE[np.dtype(dtype).name], err


CASES = [
    # (x shape NCHW, weight shape, options): every forward kernel that runs NHWC
    ((2, 8, 9, 9), (16, 8, 3, 3), dict(padding=1, algorithm="implicit_gemm")),
    ((2, 16, 7, 6), (24, 16, 3, 3), dict(padding=1, stride=2, algorithm="implicit_gemm")),
    ((1, 12, 6, 7), (8, 6, 3, 2), dict(padding=(1, 0), groups=2, algorithm="implicit_gemm")),
    ((2, 8, 9, 9), (16, 8, 3, 3), dict(padding=1, algorithm="im2col_gemm")),
    ((2, 8, 9, 9), (16, 8, 3, 3), dict(padding=1, algorithm="direct")),
    ((2, 8, 9, 9), (16, 8, 3, 3), dict(padding=1, algorithm="winograd_nonfused")),
    ((2, 12, 7, 5), (10, 12, 1, 1), dict(stride=2, algorithm="pointwise")),
    ((2, 8, 9, 9), (8, 1, 3, 3), dict(padding=1, groups=8, algorithm="depthwise")),
]


@pytest.mark.parametrize("x_shape, w_shape, options", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["float32", "float16"])
def test_channels_last_filters_give_the_contiguous_filters_bits(x_shape, w_shape, options,
                                                                dtype, rng):
    x, w, b = inputs(rng, x_shape, w_shape, dtype)
    options = dict(options, data_format="NHWC")
    with gpuconv.simulate():
        want = gpuconv.conv2d(x, w, b, **options)
        got = gpuconv.conv2d(x, channels_last(w), b, **options)
    np.testing.assert_array_equal(got, want)
    assert_matches_reference(got, gpuconv.conv2d(x, w, b, **options), dtype)  # NumPy reference


def test_nchw_calls_copy_channels_last_filters(rng):
    x = rng.standard_normal((2, 8, 9, 9)).astype(np.float32)
    w = (rng.standard_normal((16, 8, 3, 3)) * 0.3).astype(np.float32)
    with gpuconv.simulate():
        want = gpuconv.conv2d(x, w, padding=1, algorithm="implicit_gemm")
        got = gpuconv.conv2d(x, channels_last(w), padding=1, algorithm="implicit_gemm")
    np.testing.assert_array_equal(got, want)


def made_arrays(plan) -> int:
    """How many arrays a replay of ``plan`` allocates or computes (the output among them)."""
    return sum(1 for step in plan.steps if step[0] == _plans._MAKE and step[1] is not None)


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["float32", "float16"])
def test_the_nhwc_implicit_gemm_reads_channels_last_filters_in_place(dtype, rng):
    """Recorded plans show the copy: contiguous filters are transposed into a new array on
    every call; channels_last ones are launched as a view (the plan holds no second array)."""
    made = {}
    for name, layout in (("contiguous", lambda w: w), ("channels_last", channels_last)):
        plans.PLANS.clear()
        for _ in range(2):      # record, then replay over new arrays
            x, w, b = inputs(rng, (2, 16, 9, 9), (16, 16, 3, 3), dtype)
            with gpuconv.simulate():
                y = gpuconv.conv2d(x, layout(w), b, padding=1, algorithm="implicit_gemm",
                                   data_format="NHWC")
            assert_matches_reference(y, gpuconv.conv2d(x, w, b, padding=1, data_format="NHWC"),
                                     dtype)
        assert plans.PLANS.replays >= 1
        (plan,) = plans.PLANS._plans.values()
        made[name] = made_arrays(plan)
    assert made == {"contiguous": 2, "channels_last": 1}   # the output, and the KRSC copy


GRADIENT_CASES = [
    # (x shape NCHW, weight shape, options): every data-gradient kernel that runs NHWC
    ((2, 8, 9, 9), (16, 8, 3, 3), dict(padding=1, algorithm="implicit_gemm")),
    ((2, 12, 7, 6), (8, 6, 3, 3), dict(padding=1, stride=2, groups=2,
                                       algorithm="implicit_gemm")),
    ((2, 8, 9, 9), (16, 8, 3, 3), dict(padding=1, algorithm="im2col_gemm")),
    ((2, 8, 9, 9), (16, 8, 3, 3), dict(padding=1, algorithm="direct")),
    ((2, 8, 9, 9), (16, 8, 3, 3), dict(padding=1, algorithm="winograd_nonfused")),
    ((2, 12, 7, 5), (10, 12, 1, 1), dict(stride=2, algorithm="pointwise")),
    ((2, 8, 9, 9), (8, 1, 3, 3), dict(padding=1, groups=8, algorithm="depthwise")),
]


def gradient_inputs(rng, x_shape, w_shape, options, dtype):
    n, c, h, w_ = x_shape
    y_shape = gpuconv.conv2d_output_shape(x_shape, w_shape, **{
        k: v for k, v in options.items() if k in ("stride", "padding", "dilation", "groups")})
    dy = np.ascontiguousarray(rng.standard_normal(y_shape).astype(dtype).transpose(0, 2, 3, 1))
    w = (rng.standard_normal(w_shape) * 0.3).astype(dtype)
    return (n, h, w_, c), w, dy


@pytest.mark.parametrize("x_shape, w_shape, options", GRADIENT_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["float32", "float16"])
def test_data_gradient_of_channels_last_filters(x_shape, w_shape, options, dtype, rng):
    input_shape, w, dy = gradient_inputs(rng, x_shape, w_shape, options, dtype)
    options = dict(options, data_format="NHWC")
    with gpuconv.simulate():
        want = gpuconv.grad.conv2d_input(input_shape, w, dy, **options)
        got = gpuconv.grad.conv2d_input(input_shape, channels_last(w), dy, **options)
    np.testing.assert_array_equal(got, want)
    assert_matches_reference(got, gpuconv.grad.conv2d_input(input_shape, w, dy, **options), dtype)


def test_data_gradient_of_misaligned_filters_laid_out_for_its_vector_kernel(rng):
    """The tensor-core data gradient reads the filters as (R, S, C, K) in 16-byte vectors: filters
    whose memory is already in that order but one element off alignment are copied, not read
    in place (a GPU faults on a misaligned vector load; the simulator traps it)."""
    input_shape, w, dy = gradient_inputs(rng, (2, 8, 6, 6), (16, 8, 3, 3), dict(padding=1),
                                         np.float16)
    rsck = misaligned_copy(np.ascontiguousarray(w.transpose(2, 3, 1, 0))).transpose(3, 2, 0, 1)
    assert rsck.shape == w.shape and not rsck.flags.c_contiguous
    options = dict(padding=1, algorithm="implicit_gemm", data_format="NHWC")
    with gpuconv.simulate():
        want = gpuconv.grad.conv2d_input(input_shape, w, dy, **options)
        got = gpuconv.grad.conv2d_input(input_shape, rsck, dy, **options)
    np.testing.assert_array_equal(got, want)


def test_misaligned_channels_last_filters_leave_the_forward_vector_kernel(rng):
    """The 8-channel forward kernel reads the KRSC filters in 16-byte vectors: channels_last
    filters one element off alignment run a kernel of one element per load instead."""
    x, w, b = inputs(rng, (2, 16, 6, 6), (16, 16, 3, 3), np.float16)
    krsc = misaligned_copy(np.ascontiguousarray(w.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
    options = dict(padding=1, algorithm="implicit_gemm", data_format="NHWC")
    with gpuconv.simulate():
        want = gpuconv.conv2d(x, w, b, **options)
        got = gpuconv.conv2d(x, krsc, b, **options)
    np.testing.assert_array_equal(got, want)


def _winograd_plan_arrays(rng, layout, gradient: bool) -> int:
    """Arrays a recorded NHWC Winograd call (forward, or data gradient) makes on replay, with
    its filters in ``layout``; the results checked against the reference on the way."""
    plans.PLANS.clear()
    options = dict(padding=1, algorithm="winograd_nonfused", data_format="NHWC")
    for _ in range(2):          # record, then replay over new arrays
        if gradient:
            input_shape, w, dy = gradient_inputs(rng, (2, 8, 9, 9), (16, 8, 3, 3), options,
                                                 np.float32)
            with gpuconv.simulate():
                got = gpuconv.grad.conv2d_input(input_shape, layout(w), dy, **options)
            want = gpuconv.grad.conv2d_input(input_shape, w, dy, **options)
        else:
            x, w, b = inputs(rng, (2, 8, 9, 9), (16, 8, 3, 3), np.float32)
            with gpuconv.simulate():
                got = gpuconv.conv2d(x, layout(w), b, **options)
            want = gpuconv.conv2d(x, w, b, **options)
        assert_matches_reference(got, want, np.float32)
    assert plans.PLANS.replays >= 1
    (plan,) = plans.PLANS._plans.values()
    return made_arrays(plan)


@pytest.mark.parametrize("gradient", [False, True], ids=["forward", "data_gradient"])
def test_winograd_reads_channels_last_filters_in_place(gradient, rng):
    """The filter transform and the output transform's direct fallback read the filters with
    their strides: channels_last filters cost no copy (as many arrays made as contiguous
    ones); filters in another layout (RSCK-laid) are copied once."""
    def rsck_laid(w):
        return np.ascontiguousarray(w.transpose(2, 3, 1, 0)).transpose(3, 2, 0, 1)

    contiguous = _winograd_plan_arrays(rng, lambda w: w, gradient)
    assert _winograd_plan_arrays(rng, channels_last, gradient) == contiguous
    assert _winograd_plan_arrays(rng, rsck_laid, gradient) == contiguous + 1


@pytest.mark.parametrize("gradient", [False, True], ids=["forward", "data_gradient"])
def test_winograd_direct_fallback_reads_channels_last_filters(gradient, rng):
    """An infinite tap sends the tiles it reaches to the direct sums of the output transform
    (kernels/conv/winograd.cu, winograd_direct_tile), which read the filters with their
    strides too: the same bits as with contiguous filters (NaN where they are NaN)."""
    options = dict(padding=1, algorithm="winograd_nonfused", data_format="NHWC")
    if gradient:
        input_shape, w, dy = gradient_inputs(rng, (2, 8, 9, 9), (16, 8, 3, 3), options,
                                             np.float32)
        w[3, 5, 0, 2] = np.inf

        def run(filters):
            return gpuconv.grad.conv2d_input(input_shape, filters, dy, **options)
    else:
        x, w, b = inputs(rng, (2, 8, 9, 9), (16, 8, 3, 3), np.float32)
        w[3, 5, 0, 2] = np.inf

        def run(filters):
            return gpuconv.conv2d(x, filters, b, **options)
    with gpuconv.simulate():
        want, got = run(w), run(channels_last(w))
    assert np.isinf(want).any()
    np.testing.assert_array_equal(got, want)
    reference = run(w)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(reference))
    finite = np.isfinite(reference)
    np.testing.assert_array_equal(np.isinf(got), np.isinf(reference))
    assert_matches_reference(got[finite], reference[finite], np.float32)
