"""Audit 17 (a reading of the sources rather than a fuzz). Each finding is fixed and pinned below:

1. CUDA's grid.y and grid.z hold at most 65535 blocks, and legal layers could ask for more:
   - the forward GEMM kernels (pointwise, implicit_gemm, im2col_gemm, winograd's products) put a
     group's filters on grid.y in tiles of 32 to 128: millions of filters failed at the launch,
     while auto and explain() called them runnable;
   - the direct kernel refused more than 65535 blocks of filters (groups * K/groups / 16) and
     sent the caller to implicit_gemm, which refused it too;
   - the depthwise window and tiled kernels put blocks of channels on grid.y: auto picked them
     for more than 65535 channels and the launch refused;
   - the NHWC pointwise data gradient checked its channel blocks as NCHW's (128 per block, NHWC
     has 64).
   Now the GEMM algorithms refuse such layers (launch_common.gemm_grid_refusal) and auto takes
   the direct kernel, which falls back to its one-dimensional v1 grid; the depthwise window and
   tiled kernels give way to the direct one; the NHWC data gradient checks its own extent. The
   tests run small layers under a grid limit lowered for the occasion (the simulator's and the
   launchers' alike), so every fallback is exercised in milliseconds.
2. A padding that is none of the forms (three values, an int beside a pair, a float) named only
   the int and (h, w) forms, not ((top, bottom), (left, right)).
3. max_unpool2d and roi_align on the kernels allocated their output before the 32-bit size check
   (a MemoryError, or a zero-filled 16 GB buffer, before the refusal); the check comes first.
4. max_unpool2d: a negative output_size entry blamed the padding (torch names output_size); an
   unpooled size no array can hold was NumPy's unnamed "array is too big".
5. A list of boxes longer than x's batch was refused even where the extra arrays are empty:
   torchvision concatenates the list, and empty arrays add no rows.
6. conv_transpose2d with a string padding was a ValueError; torch's is a TypeError (it has no
   string forms there).
7. GPUCONV_WORKSPACE_BYTES=0 (or negative) named the launchers' workspace_bytes parameter, not
   the variable.
8. A forced im2col_gemm whose column buffer for one image passes 2**31 elements was refused only
   at the launch: explain() called it runnable and the reference computed it. The refusal is
   now the algorithm's (heuristics.refusal), as every other algorithm's.
9. explain() named the depthwise vector kernel for NHWC arrays that the launcher finds
   misaligned for its vectors (it then runs another kernel); it says so now.
10. The reference (the oracle of every other path):
   - lp_pool2d's special exponent -2 squared in float64: past float32's range torch's square is
     inf and its reciprocal 0 (the p = -2 forward, the p = -1 backward), the reference's finite;
   - the pooling window tables listed every tap of the kernel: a legal huge kernel over a small
     input (2**30 + 1 taps, padding 2**29) asked for 8 GiB, where torch answers at once;
   - the convolution and ROI references obeyed the caller's np.seterr: under
     np.seterr(under="raise") a sigmoid epilogue or a tiny product raised FloatingPointError.
11. The avg_pool2d kernels multiplied a window's row and column extents in int: a legal kernel
   of 3 x (2**30 + 1) taps (over a small input, with as much padding) overflowed the divisor and
   gave means of the wrong sign. The product is taken in the accumulator type, as PyTorch's
   int64 divide_factor meets its float sum (found by the huge-kernel test of item 10).
"""
import importlib

import numpy as np
import pytest

import gpuconv
from gpuconv.conv import launch, launch_depthwise

from conftest import GRID_LIMIT as LIMIT    # the grid_limit fixture's grid.y and grid.z


def _random(shape, seed, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", [
    # (x NCHW shape, weight shape, kwargs): more than LIMIT * 32 filters, a 1x1 and a 3x3
    ((1, 3, 2, 3), (LIMIT * 32 + 5, 3, 1, 1), {}),
    ((2, 2, 4, 3), (LIMIT * 32 + 1, 2, 3, 3), {"padding": 1}),
    # more than LIMIT groups
    ((1, 2 * (LIMIT + 3), 3, 3), (3 * (LIMIT + 3), 2, 3, 3), {"groups": LIMIT + 3, "padding": 1}),
], ids=["1x1 filters", "3x3 filters", "groups"])
def test_a_layer_past_the_gemm_grid_runs_on_the_direct_kernel(case, data_format, grid_limit):
    x_shape, w_shape, kwargs = case
    x, w, b = _random(x_shape, 1), _random(w_shape, 2), _random(w_shape[:1], 3)
    if data_format == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    explanation = gpuconv.explain(x, w, b, data_format=data_format, **kwargs)
    assert explanation.algorithm == "direct"
    for gemm in ("pointwise", "implicit_gemm", "im2col_gemm"):
        if w_shape[2:] == (1, 1) or gemm != "pointwise":
            assert "its grid has" in explanation.refusals[gemm]
            with pytest.raises(ValueError, match=f"algorithm='{gemm}' cannot run .* its grid has"):
                gpuconv.conv2d(x, w, b, algorithm=gemm, data_format=data_format, **kwargs)
    expected = gpuconv.conv2d(x, w, b, data_format=data_format, **kwargs)
    with gpuconv.simulate():
        y = gpuconv.conv2d(x, w, b, data_format=data_format, **kwargs)
        forced = gpuconv.conv2d(x, w, b, algorithm="direct", data_format=data_format, **kwargs)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(forced, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_depthwise_channels_past_the_grid_run_on_the_direct_kernel(data_format, grid_limit):
    # 5x5, stride 1: auto's window (or tiled) kernel, whose channel blocks would pass the limit
    C = 40 * LIMIT
    x, w = _random((1, C, 9, 7), 4), _random((C, 1, 5, 5), 5)
    geom = gpuconv.conv.geometry.conv2d_geometry(x.shape, w.shape, 1, 2, 1, C)
    nhwc = data_format == "NHWC"
    assert launch_depthwise.choose_variant(geom, np.float64, nhwc) == "direct"
    assert "blocks of channels" in launch_depthwise.window_refusal(geom, np.float64, nhwc)
    expected = gpuconv.conv2d(x, w, padding=2, groups=C)
    out = np.full(geom.output_shape, np.nan)
    with gpuconv.simulate():
        y = gpuconv.conv2d(x, w, padding=2, groups=C)
        # the stride-1 data gradient runs the same kernels on the rotated filters
        dx = gpuconv.grad.conv2d_input(x.shape, w, expected, padding=2, groups=C)
        for variant in ("window", "tiled"):
            with pytest.raises(ValueError, match=f"variant '{variant}' cannot run .* blocks of "
                                                 "channels"):
                launch.conv2d(geom, x, w, None, algorithm="depthwise", out=out,
                              executor="simulator", depthwise_variant=variant)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, gpuconv.grad.conv2d_input(x.shape, w, expected, padding=2,
                                                             groups=C), rtol=1e-12, atol=1e-12)


def test_the_nhwc_pointwise_data_gradient_checks_its_own_channel_blocks(grid_limit):
    # NHWC blocks hold 64 channels, NCHW's 128: between the two limits only NCHW fits
    C = LIMIT * 64 + 1
    w, dy = _random((3, C, 1, 1), 6), _random((2, 3, 2, 2), 7)
    expected = gpuconv.grad.conv2d_input((2, C, 2, 2), w, dy)
    with gpuconv.simulate():
        nchw = gpuconv.grad.conv2d_input((2, C, 2, 2), w, dy)
        nhwc = gpuconv.grad.conv2d_input((2, 2, 2, C), w, dy.transpose(0, 2, 3, 1),
                                         data_format="NHWC")
    np.testing.assert_allclose(nchw, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(nhwc, expected.transpose(0, 2, 3, 1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("padding,error", [
    ((1, 2, 3), ValueError), (((1, 2), 3), TypeError), (1.5, TypeError), ([1, [0, 1]], TypeError),
])
def test_a_padding_of_no_form_is_told_every_form(padding, error):
    x, w = np.ones((1, 2, 5, 5)), np.ones((3, 2, 3, 3))
    with pytest.raises(error, match=r"padding must be an int, a pair \(ph, pw\), a pair of pairs "
                                    r"\(\(top, bottom\), \(left, right\)\), 'valid' or 'same'"):
        gpuconv.conv2d(x, w, padding=padding)


def test_a_short_side_of_a_pair_of_pairs_names_that_side():
    x, w = np.ones((1, 2, 5, 5)), np.ones((3, 2, 3, 3))
    with pytest.raises(ValueError, match=r"padding\[1\] must be a pair \(left, right\), got 1 "):
        gpuconv.conv2d(x, w, padding=((1, 2), (3,)))


X = np.ones((1, 1, 2, 2), np.float32)
INDICES = np.zeros((1, 1, 2, 2), np.int64)


@pytest.mark.parametrize("call", [
    lambda: gpuconv.max_unpool2d(X, INDICES, 2**19, 2**19),
    lambda: gpuconv.roi_align(X, np.array([[0, 0, 0, 2, 2]], np.float32), 2**20),
], ids=["max_unpool2d", "roi_align"])
def test_the_kernels_refuse_a_32_bit_overflow_before_allocating(call, monkeypatch):
    def no_allocation(xp, shape, dtype):
        raise AssertionError(f"allocated {shape} before the size check")
    for name in ("pool.launch_unpool", "roi.launch_align"):
        module = importlib.import_module(f"gpuconv.{name}")
        for allocate in ("empty", "zeros"):
            if hasattr(module, allocate):
                monkeypatch.setattr(module, allocate, no_allocation)
    with gpuconv.simulate(), pytest.raises(ValueError, match="32-bit ints"):
        call()


@pytest.mark.parametrize("output_size,message", [
    ((-1, 0), r"output_size\[0\] must be >= 0, got -1"),
    ((1, 1, 2, -2), r"output_size\[3\] must be >= 0, got -2"),
])
def test_max_unpool2d_names_a_negative_output_size(output_size, message):
    x, indices = np.ones((1, 1, 1, 1)), np.zeros((1, 1, 1, 1), np.int64)
    with pytest.raises(ValueError, match=message):
        gpuconv.max_unpool2d(x, indices, 2, 2, 1, output_size)
    with pytest.raises(ValueError, match=message):
        gpuconv.grad.max_unpool2d(np.ones((1, 1, 1, 1)), x, indices, 2, 2, 1, output_size)


def test_max_unpool2d_names_what_makes_an_output_no_array_can_hold():
    with pytest.raises(ValueError, match=r"kernel_size \(1073741823, 1073741823\) and stride "
                                         r"\(1073741824, 1073741824\) give .* more than an array"):
        gpuconv.max_unpool2d(X, INDICES, 2**30 - 1, 2**30)


def test_empty_box_arrays_past_the_batch_add_no_rows():
    x = np.arange(2 * 3 * 6 * 6, dtype=np.float64).reshape(2, 3, 6, 6)
    boxes = [np.array([[0.5, 1.0, 4.0, 5.0]]), np.array([[1.0, 0.0, 3.0, 2.5]])]
    empty = np.zeros((0, 4))
    for function in (gpuconv.roi_align, gpuconv.roi_pool):
        np.testing.assert_array_equal(function(x, boxes + [empty, empty], 2),
                                      function(x, boxes, 2))
    with pytest.raises(ValueError, match=r"boxes\[2\] holds 1 boxes, but x holds 2 images"):
        gpuconv.roi_align(x, boxes + [boxes[0]], 2)


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_conv_transpose2d_refuses_a_string_padding_as_torch_a_type_error(padding):
    with pytest.raises(TypeError, match="padding must be an int or a pair"):
        gpuconv.conv_transpose2d(np.zeros((1, 2, 4, 4)), np.zeros((2, 3, 3, 3)), padding=padding)


@pytest.mark.parametrize("value", ["0", "-5"])
def test_a_workspace_variable_below_one_byte_is_named(value, monkeypatch):
    monkeypatch.setenv("GPUCONV_WORKSPACE_BYTES", value)
    with gpuconv.simulate(), pytest.raises(ValueError, match=f"GPUCONV_WORKSPACE_BYTES must be "
                                                             f"an integer >= 1 .*'{value}'"):
        gpuconv.conv2d(np.ones((1, 2, 5, 5)), np.ones((3, 2, 3, 3)), algorithm="im2col_gemm")


def test_im2col_gemm_refuses_a_column_buffer_past_32_bits_up_front():
    x, w = np.ones((1, 1, 1531, 1531), np.float32), np.ones((1, 1, 1500, 1500), np.float32)
    why = gpuconv.explain(x, w).refusals["im2col_gemm"]
    assert why == "the column buffer of one image (2250000 x 1024) has 2^31 or more elements"
    with pytest.raises(ValueError, match="algorithm='im2col_gemm' cannot run this convolution: "
                                         "the column buffer"):
        gpuconv.conv2d(x, w, algorithm="im2col_gemm")     # the reference refuses it too


def test_explain_says_the_depthwise_vector_kernel_needs_aligned_nhwc_arrays():
    x, w = np.zeros((2, 6, 6, 8), np.float32), np.zeros((8, 1, 3, 3), np.float32)
    kernel = gpuconv.explain(x, w, groups=8, padding=1, data_format="NHWC").kernel
    assert kernel.startswith("conv2d_depthwise_vector (")
    assert "; when the arrays are aligned to its vectors, else conv2d_depthwise_" in kernel


def test_lp_pool2d_minus_two_squares_in_float32_as_torch():
    torch = pytest.importorskip("torch")
    x = np.full((1, 1, 2, 2), 1e20, np.float32)
    expected = torch.nn.functional.lp_pool2d(torch.tensor(x), -2, 2).numpy()
    assert np.isinf(expected).all()
    np.testing.assert_array_equal(gpuconv.lp_pool2d(x, -2, 2), expected)
    x = np.array([1e20, 1, 1, 1], np.float32).reshape(1, 1, 2, 2)
    t = torch.tensor(x, requires_grad=True)
    torch.nn.functional.lp_pool2d(t, -1, 2).sum().backward()
    np.testing.assert_allclose(gpuconv.grad.lp_pool2d(np.ones((1, 1, 1, 1), np.float32), x, -1, 2),
                               t.grad.numpy(), rtol=1e-6, atol=0)


@pytest.mark.parametrize("call", [
    lambda x: gpuconv.max_pool2d(x, (2**30 + 1, 1), 1, (2**29, 0), return_indices=True),
    lambda x: gpuconv.avg_pool2d(x, (3, 2**30 + 1), 1, (1, 2**29)),
    lambda x: gpuconv.grad.avg_pool2d(np.ones((1, 2, 3, 3)), x, (2**30 + 1, 3), 1, (2**29, 1)),
], ids=["max_pool2d", "avg_pool2d", "grad.avg_pool2d"])
def test_a_huge_pooling_kernel_over_a_small_input_tabulates_only_its_input_taps(call):
    x = np.random.default_rng(8).standard_normal((1, 2, 3, 3))
    got = call(x)       # was a MemoryError (8 GiB of window tables)
    with gpuconv.simulate():
        kernels = call(x)
    for a, b in zip(got if isinstance(got, tuple) else (got,),
                    kernels if isinstance(kernels, tuple) else (kernels,)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=0)


@pytest.mark.parametrize("call", [
    lambda: gpuconv.conv2d(np.full((1, 1, 3, 3), 1e3), np.ones((1, 1, 2, 2)), activation="sigmoid"),
    lambda: gpuconv.conv2d(np.full((1, 1, 3, 3), 1e-200), np.full((1, 1, 2, 2), 1e-200)),
    lambda: gpuconv.grad.conv2d_weight(np.full((1, 1, 3, 3), 1e-200), (1, 1, 2, 2),
                                       np.full((1, 1, 2, 2), 1e-200)),
    lambda: gpuconv.roi_align(np.full((1, 1, 4, 4), 1e-300),
                              np.array([[0, 0.1, 0.1, 2.3, 2.7]]), 2, sampling_ratio=2),
], ids=["sigmoid", "conv2d", "grad.conv2d_weight", "roi_align"])
def test_the_reference_ignores_the_caller_s_numpy_error_settings(call):
    with np.errstate(all="raise"):
        call()
