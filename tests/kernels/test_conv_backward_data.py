"""The data-gradient kernels (gpuconv.grad.conv2d_input on kernels/conv/dgrad_*.cu) under the
CPU simulator: every algorithm x dtype x layout against the NumPy reference over odd shapes,
strides, dilations, groups, asymmetric padding, depthwise and 1x1 cases, in the forward,
reverse and random thread orders; batch and column-buffer chunking; forced-algorithm refusals;
the "auto" choice; and the same checks on a GPU (skipped without one)."""
from __future__ import annotations

import numpy as np
import pytest

import gpuconv
from gpuconv import grad
from gpuconv.conv import launch_bwd_common, launch_bwd_data, launch_winograd
from gpuconv.conv.launch_backward import DATA_ALGORITHMS, choose_data_algorithm
from gpuconv.reference import conv as reference
from kernel_support import record_launches

from test_conv_backward_cases import (CASES, DTYPES, LAYOUTS, ORDERS, Case, assert_close,
                                      assert_same_bits, f64, make_input, one_image_per_launch,
                                      output_shape)


def input_shape(case: Case, data_format: str) -> tuple:
    n, c, h, w = case.x
    return (n, h, w, c) if data_format == "NHWC" else (n, c, h, w)


def expected(case: Case, w, dy, data_format: str):
    geom = case.geometry()
    exact = reference.conv2d_input(geom, f64(w), f64(dy), data_format)
    magnitude = reference.conv2d_input(geom, np.abs(f64(w)), np.abs(f64(dy)), data_format)
    return exact, magnitude


def run(case: Case, w, dy, algorithm: str, data_format: str, order: str, seed: int = 0):
    with gpuconv.simulate(order=order, seed=seed):
        return grad.conv2d_input(input_shape(case, data_format), w, dy, algorithm=algorithm,
                                 data_format=data_format, **case.kwargs)


def runnable(algorithm: str, case: Case, dtype, data_format: str) -> bool:
    return launch_bwd_data.why_not(algorithm, case.geometry(), dtype, data_format) is None


@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("algorithm", DATA_ALGORITHMS)
def test_input_gradient_matches_reference(rng, algorithm, dtype, data_format):
    ran = 0
    for index, case in enumerate(CASES):
        if not runnable(algorithm, case, dtype, data_format):
            continue
        w = make_input(rng, case.w, dtype)
        dy = make_input(rng, output_shape(case, data_format), dtype)
        exact, magnitude = expected(case, w, dy, data_format)
        # float32 runs every case in every order; the other dtypes rotate through the orders.
        orders = ORDERS if dtype == np.float32 else (ORDERS[index % 3],)
        for order in orders:
            got = run(case, w, dy, algorithm, data_format, order, seed=index)
            assert_close(got, exact, magnitude, dtype, f"{algorithm} {data_format} {case} {order}")
        ran += 1
    assert ran >= 3, f"{algorithm} ran only {ran} cases"


@pytest.mark.parametrize("tile", launch_winograd.OUTPUT_TILES, ids=lambda m: f"F{m}x{m}")
@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_winograd_input_gradient_on_both_tiles(rng, monkeypatch, tile, dtype, data_format):
    """"auto" picks Winograd's tile by plane size; each tile forced, in every thread order, on
    a grouped case with asymmetric padding and tiles overhanging the plane."""
    monkeypatch.setitem(launch_winograd.AUTO_TILE, "data_grad", tile)
    names = record_launches(monkeypatch, launch_winograd)
    case = Case("3x3 grouped asym pad", (2, 6, 7, 9), (8, 3, 3, 3),
                dict(padding=((1, 2), (0, 1)), groups=2))
    w = make_input(rng, case.w, dtype)
    dy = make_input(rng, output_shape(case, data_format), dtype)
    exact, magnitude = expected(case, w, dy, data_format)
    for order in ORDERS:
        got = run(case, w, dy, "winograd_nonfused", data_format, order)
        assert_close(got, exact, magnitude, dtype, f"F{tile} {data_format} {order}")
    assert any("filter_transform" in n and n.endswith(f", true, {tile}>") for n in names), names


def test_winograd_input_gradient_is_sized_by_the_rotated_convolution(rng, monkeypatch):
    """Audit 20: a forced Winograd data gradient was refused by the forward's sizes, though it
    runs the rotated convolution, which a large padding makes far smaller (here 1 tile an image
    against 49). LAUNCH_ELEMENTS lowered to sit between the two."""
    monkeypatch.setattr(launch_winograd, "LAUNCH_ELEMENTS", 1000)
    case = Case("1x1 input, padding 6", (1, 4, 1, 1), (4, 4, 3, 3), dict(padding=6))
    geom = case.geometry()
    assert "transformed tensors" in launch_winograd.refusal(geom, 2)
    assert launch_winograd.data_gradient_refusal(geom) is None
    w = make_input(rng, case.w, np.float64)
    dy = make_input(rng, output_shape(case, "NCHW"), np.float64)
    exact, magnitude = expected(case, w, dy, "NCHW")
    assert_close(run(case, w, dy, "winograd_nonfused", "NCHW", "forward"), exact, magnitude,
                 np.float64, "rotated sizes")
    # The filter rules still come from the forward: stride 2 has no rotated convolution.
    strided = Case("stride 2", (1, 4, 5, 5), (4, 4, 3, 3), dict(stride=2))
    assert "stride 1" in launch_winograd.data_gradient_refusal(strided.geometry())


@pytest.fixture
def names(monkeypatch):
    """Names of the kernels launch_bwd_data launches, in order."""
    return record_launches(monkeypatch, launch_bwd_data)


@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("math", ("tensor_cores", "cuda_cores"))
def test_16_bit_implicit_gemm_on_both_maths(rng, names, math, data_format):
    """float16/bfloat16 data gradients run the tensor-core kernel by default (the test above);
    math="cuda_cores" keeps the CUDA-core one, the benchmark's comparison. Two pixel tiles per
    phase, k-tiles of 32 with a ragged last one, groups; every order."""
    case = Case("3x3 stride 2 grouped", (2, 6, 17, 19), (70, 3, 3, 3),
                dict(stride=2, padding=1, groups=2))
    geom = case.geometry()
    for dtype in [d for d in DTYPES if np.dtype(d).itemsize == 2]:
        w = make_input(rng, case.w, dtype)
        dy = make_input(rng, output_shape(case, data_format), dtype)
        exact, magnitude = expected(case, w, dy, data_format)
        for order in ORDERS:
            with gpuconv.simulate(order=order, seed=5):
                got = launch_bwd_data.run("implicit_gemm", geom, w, dy, None, data_format,
                                          "simulator", math=math)
            assert_close(got, exact, magnitude, dtype, f"{math} {data_format} {dtype} {order}")
            assert names[-1].startswith("conv2d_dgrad_implicit_gemm"
                                        + ("_mma<" if math == "tensor_cores" else "<"))


# Channels-last dy with K/groups a multiple of 8: the tensor-core kernel that copies both
# operands 8 channels at a time (cp.async). Two pixel tiles per phase and two channel tiles (the
# last partial), phases of 1, 2 and 4 taps (k of 16 to 64: ragged k-tiles of 32); with dilation 2
# at stride 2 three of the four phases have no tap at all (an empty k: zeros plus the bias).
VECTOR_CASES = [
    Case("3x3 stride 2 grouped, 16 filters per group", (2, 140, 17, 19), (32, 70, 3, 3),
         dict(stride=2, padding=1, groups=2)),
    Case("3x3 stride 2 dilation 2", (1, 24, 13, 12), (24, 24, 3, 3),
         dict(stride=2, padding=2, dilation=2)),
]


# K/groups x taps = 288: deep enough for 4 warps in the forward's rule, not the data gradient's.
DEEP_VECTOR_CASE = Case("3x3, 32 filters", (2, 72, 11, 13), (32, 72, 3, 3), dict(padding=1))


def test_vector_warp_tiles_by_depth(rng, names):
    """"auto" keeps the vector kernel's tile on 8 warps at every depth
    (launch_common.DATA_GRAD_LARGE_WARPS_MIN_K is None: measured); "large" puts it on 4."""
    for case, warps, warp_tiles in [(DEEP_VECTOR_CASE, "small", "auto"),
                                    (VECTOR_CASES[0], "small", "auto"),
                                    (DEEP_VECTOR_CASE, "large", "large")]:
        w = make_input(rng, case.w, np.float16)
        dy = make_input(rng, output_shape(case, "NHWC"), np.float16)
        with gpuconv.simulate():
            got = launch_bwd_data.run("implicit_gemm", case.geometry(), w, dy, None, "NHWC",
                                      "simulator", warp_tiles=warp_tiles)
        assert names[-1].endswith(f"{launch_bwd_data.vector_tile(0, warps).template_args}>")
        assert_close(got, *expected(case, w, dy, "NHWC"), np.float16, case.name)
    with pytest.raises(ValueError, match="warp_tiles must be one of"):
        launch_bwd_data.run("implicit_gemm", case.geometry(), w, dy, None, "NHWC", "simulator",
                            warp_tiles=4)


@pytest.mark.parametrize("case", VECTOR_CASES, ids=lambda c: c.name)
def test_vector_copies(rng, monkeypatch, names, case):
    """conv2d_dgrad_implicit_gemm_mma_vec, its block tile on 4 warps or 8, against the
    reference and, bit for bit, against the scalar tensor-core kernel (same k order, same mma
    steps); bias through conv_transpose2d's epilogue path."""
    geom = case.geometry()
    for dtype in [d for d in DTYPES if np.dtype(d).itemsize == 2]:
        w = make_input(rng, case.w, dtype)
        dy = make_input(rng, output_shape(case, "NHWC"), dtype)
        bias = make_input(rng, (case.x[1],), dtype)
        exact, magnitude = expected(case, w, dy, "NHWC")
        exact = exact + f64(bias)
        magnitude = magnitude + np.abs(f64(bias))
        results = []
        for order, warp_tiles in zip(ORDERS * 2, ("large",) * 3 + ("small",) * 3):
            with gpuconv.simulate(order=order, seed=3):
                results.append(launch_bwd_data.run("implicit_gemm", geom, w, dy, bias, "NHWC",
                                                   "simulator", warp_tiles=warp_tiles))
            tile = launch_bwd_data.vector_tile(0, warp_tiles)
            assert names[-1].startswith("conv2d_dgrad_implicit_gemm_mma_vec<")
            assert names[-1].endswith(f"{tile.template_args}>")
            assert_close(results[-1], exact, magnitude, dtype,
                         f"{case} {dtype} {order} {warp_tiles}")
        with monkeypatch.context() as scalar, gpuconv.simulate(order="forward"):
            scalar.setattr(launch_bwd_data, "vector_kernel", lambda call, tensor_cores: False)
            results.append(launch_bwd_data.run("implicit_gemm", geom, w, dy, bias, "NHWC",
                                               "simulator"))
        assert names[-1].startswith("conv2d_dgrad_implicit_gemm_mma<")
        assert_same_bits(results, f"{case} {dtype}")


def test_vector_copies_need_aligned_filters_of_8(rng, names):
    """K/groups not a multiple of 8, or dy not 16-byte aligned, or NCHW: the scalar kernel."""
    case = VECTOR_CASES[1]
    w = make_input(rng, case.w, np.float16)
    dy = make_input(rng, output_shape(case, "NHWC"), np.float16)
    shifted = np.empty(dy.size + 1, np.float16)[1:].reshape(dy.shape)  # 2 bytes off alignment
    shifted[...] = dy
    exact, magnitude = expected(case, w, dy, "NHWC")
    twelve = Case("12 filters", (1, 8, 9, 9), (12, 8, 3, 3), dict(padding=1))
    for c, weight, grad_output, layout in [
            (case, w, shifted, "NHWC"),
            (twelve, make_input(rng, twelve.w, np.float16),
             make_input(rng, output_shape(twelve, "NHWC"), np.float16), "NHWC"),
            (case, w, make_input(rng, output_shape(case, "NCHW"), np.float16), "NCHW")]:
        with gpuconv.simulate():
            got = launch_bwd_data.run("implicit_gemm", c.geometry(), weight, grad_output, None,
                                      layout, "simulator")
        assert names[-1].startswith("conv2d_dgrad_implicit_gemm_mma<"), (c, layout)
        if grad_output is shifted:
            assert_close(got, exact, magnitude, np.float16, "misaligned dy")


@pytest.mark.parametrize("algorithm", DATA_ALGORITHMS)
def test_input_gradient_is_bitwise_reproducible_across_orders(rng, algorithm):
    # No data-gradient kernel uses atomics: every thread order gives the same bits.
    # A strided case where the algorithm runs one (Winograd: stride 1 only).
    name = {"pointwise": "1x1 stride 2 grouped", "winograd_nonfused": "3x3 grouped asym pad odd plane"}
    case = next(c for c in CASES if c.name == name[algorithm]) if algorithm in name else next(
        c for c in CASES if runnable(algorithm, c, np.float32, "NCHW") and c.geometry().stride_h > 1)
    w = make_input(rng, case.w, np.float32)
    dy = make_input(rng, output_shape(case, "NCHW"), np.float32)
    results = [run(case, w, dy, algorithm, "NCHW", order, seed)
               for order, seed in [("forward", 0), ("reverse", 0), ("random", 1), ("random", 2)]]
    assert_same_bits(results, f"{algorithm} {case}")


@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("algorithm", DATA_ALGORITHMS)
def test_batch_chunks_cover_every_image(rng, monkeypatch, algorithm, data_format):
    # A launch limit of one image forces one launch per image (the 32-bit offset path).
    case = {"pointwise": Case("1x1 stride 2", (3, 4, 5, 6), (6, 4, 1, 1), dict(stride=2)),
            "depthwise": Case("depthwise", (3, 4, 5, 6), (4, 1, 3, 3), dict(groups=4, padding=1)),
            "winograd_nonfused": Case("3x3 grouped", (3, 4, 7, 6), (6, 2, 3, 3), dict(padding=1, groups=2)),
            }.get(algorithm, Case("3x3 stride 2", (3, 4, 7, 6), (6, 2, 3, 3),
                                  dict(stride=2, padding=1, groups=2)))
    one_image_per_launch(monkeypatch, algorithm, case.geometry(), np.float32)
    w = make_input(rng, case.w, np.float32)
    dy = make_input(rng, output_shape(case, data_format), np.float32)
    got = run(case, w, dy, algorithm, data_format, "random", seed=3)
    assert_close(got, *expected(case, w, dy, data_format), np.float32, f"{algorithm} chunked")


def test_column_buffer_chunks_cover_every_image(rng, monkeypatch):
    case = Case("3x3", (3, 3, 5, 6), (4, 3, 3, 3), dict(padding=1))
    geom = case.geometry()
    monkeypatch.setattr(launch_bwd_common, "COLUMN_BUFFER_ELEMENTS",
                        2 * geom.C * geom.R * geom.S * geom.P * geom.Q)  # two images per chunk
    for data_format in LAYOUTS:
        w = make_input(rng, case.w, np.float64)
        dy = make_input(rng, output_shape(case, data_format), np.float64)
        got = run(case, w, dy, "im2col_gemm", data_format, "forward")
        assert_close(got, *expected(case, w, dy, data_format), np.float64, data_format)


def test_input_gradient_matches_finite_differences(rng):
    # d/dx of sum(conv2d(x, w) * dy), by central differences of the reference forward pass.
    case = Case("stride 2 dil 2", (1, 2, 6, 5), (3, 2, 2, 3), dict(stride=2, dilation=(2, 1), padding=1))
    geom = case.geometry()
    x = rng.standard_normal(case.x)
    w = rng.standard_normal(case.w)
    dy = rng.standard_normal(geom.output_shape)
    got = run(case, w, dy, "implicit_gemm", "NCHW", "random")
    eps = 1e-6
    numeric = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        x[index] += eps
        above = np.sum(reference.conv2d(geom, x, w) * dy)
        x[index] -= 2 * eps
        below = np.sum(reference.conv2d(geom, x, w) * dy)
        x[index] += eps
        numeric[index] = (above - below) / (2 * eps)
    np.testing.assert_allclose(got, numeric, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------------------------
# algorithm choice


def geometry(x, w, **kwargs):
    return Case("", x, w, kwargs).geometry()


# The rules of launch_backward.DIRECT_MAX_CHANNELS's comment (measured on an H100).
@pytest.mark.parametrize("x, w, kwargs, dtype, chosen", [
    ((1, 8, 9, 9), (8, 1, 3, 3), dict(groups=8, padding=1), np.float32, "depthwise"),
    ((1, 8, 9, 9), (16, 8, 1, 1), {}, np.float32, "pointwise"),
    ((1, 8, 9, 9), (16, 8, 1, 1), dict(stride=2), np.float32, "pointwise"),
    ((1, 3, 9, 9), (16, 3, 3, 3), dict(stride=2), np.float32, "direct"),    # 3 channels, batch 1
    ((32, 3, 224, 224), (64, 3, 7, 7), dict(stride=2, padding=3), np.float32, "im2col_gemm"),
    ((1, 64, 9, 9), (64, 64, 3, 3), dict(padding=1), np.float32, "im2col_gemm"),
    ((32, 64, 56, 56), (64, 64, 3, 3), dict(padding=1), np.float32, "implicit_gemm"),
    ((32, 128, 56, 56), (128, 128, 3, 3), dict(stride=2, padding=1), np.float32,
     "implicit_gemm"),                                                  # phases skip the zeros
    ((32, 512, 14, 14), (512, 512, 3, 3), dict(stride=2, padding=1), np.float32, "im2col_gemm"),
    ((32, 256, 56, 56), (256, 256, 3, 3), dict(padding=1), np.float32, "winograd_nonfused"),
    ((32, 128, 28, 28), (128, 128, 3, 3), dict(padding=1), np.float64, "winograd_nonfused"),
    ((32, 512, 7, 7), (512, 512, 3, 3), dict(padding=1), np.float32, "winograd_nonfused"),
    # Under 1024 output pixels Winograd's launches cost more than its savings: im2col + GEMM.
    ((1, 128, 28, 28), (128, 128, 3, 3), dict(padding=1), np.float32, "im2col_gemm"),
    ((1, 512, 7, 7), (512, 512, 3, 3), dict(padding=1), np.float32, "im2col_gemm"),
    ((32, 256, 14, 14), (256, 256, 3, 3), dict(padding=1), np.float16, "implicit_gemm"),
    ((32, 256, 14, 14), (256, 256, 3, 3), dict(padding=1, stride=2), np.float32, "im2col_gemm"),
    ((1, 8, 9, 9), (16, 8, 1, 1), {}, np.float16, "implicit_gemm"),      # tensor cores
    ((32, 3, 224, 224), (64, 3, 7, 7), dict(stride=2, padding=3), np.float16, "implicit_gemm"),
    ((1, 8, 9, 9), (8, 1, 3, 3), dict(groups=8, padding=1), np.float16, "depthwise"),
])
def test_auto_choice(x, w, kwargs, dtype, chosen):
    name, why = choose_data_algorithm(geometry(x, w, **kwargs), "auto", dtype, "NCHW")
    assert name == chosen and why


@pytest.mark.parametrize("algorithm, x, w, kwargs, data_format, message", [
    ("pointwise", (1, 4, 6, 6), (4, 4, 3, 3), {}, "NCHW", "needs a 1x1 filter, got 3x3"),
    ("depthwise", (1, 4, 6, 6), (4, 2, 3, 3), dict(groups=2), "NHWC", r"C/groups == 1"),
    # 16 filters of 31x31 per channel: 61504 bytes of float, past 48 KiB of shared memory.
    ("depthwise", (1, 1, 31, 31), (16, 1, 31, 31), {}, "NCHW", "shared memory"),
    # 6x6 with stride 3: two outputs per axis, so the stride counts (with a single output it
    # would be normalized to 1).
    ("implicit_gemm", (1, 8192, 6, 6), (8192, 1, 1, 1), dict(groups=8192, stride=3), "NCHW",
     "z slices"),
])
def test_forcing_an_algorithm_that_cannot_run_is_a_value_error(algorithm, x, w, kwargs,
                                                               data_format, message):
    case = Case("refused", x, w, kwargs)
    weight = np.zeros(w, np.float32)
    dy = np.zeros(output_shape(case, data_format), np.float32)
    with gpuconv.simulate(), pytest.raises(ValueError, match=message) as info:
        grad.conv2d_input(input_shape(case, data_format), weight, dy, algorithm=algorithm,
                          data_format=data_format, **kwargs)
    assert repr(algorithm) in str(info.value)


def test_column_buffer_too_small_for_one_image_is_refused(monkeypatch):
    monkeypatch.setattr(launch_bwd_common, "COLUMN_BUFFER_ELEMENTS", 10)
    with pytest.raises(ValueError, match="column buffer"):
        choose_data_algorithm(geometry((1, 2, 5, 5), (2, 2, 3, 3)), "im2col_gemm", np.float32,
                              "NCHW")


# ---------------------------------------------------------------------------------------------
# on a GPU


@pytest.mark.gpu
@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64], ids=str)
@pytest.mark.parametrize("algorithm", DATA_ALGORITHMS)
def test_input_gradient_on_gpu(rng, algorithm, dtype, data_format):
    import cupy
    for case in CASES:
        if not runnable(algorithm, case, dtype, data_format):
            continue
        w = make_input(rng, case.w, dtype)
        dy = make_input(rng, output_shape(case, data_format), dtype)
        got = grad.conv2d_input(input_shape(case, data_format), cupy.asarray(w), cupy.asarray(dy),
                                algorithm=algorithm, data_format=data_format, **case.kwargs)
        assert isinstance(got, cupy.ndarray)
        assert_close(cupy.asnumpy(got), *expected(case, w, dy, data_format), dtype,
                     f"{algorithm} {data_format} {case} on GPU")


@pytest.mark.gpu
def test_input_gradient_of_non_contiguous_arrays_on_gpu(rng):
    import cupy
    case = CASES[1]
    w = make_input(rng, case.w, np.float32)
    dy = make_input(rng, output_shape(case, "NCHW"), np.float32)
    dy_strided = cupy.asarray(np.concatenate([dy, dy], axis=3))[..., ::2]
    dy_strided[...] = cupy.asarray(dy)
    got = grad.conv2d_input(input_shape(case, "NCHW"), cupy.asarray(w), dy_strided, **case.kwargs)
    assert_close(cupy.asnumpy(got), *expected(case, w, dy, "NCHW"), np.float32, "strided dy")


@pytest.mark.gpu
@pytest.mark.parametrize("warp_tiles", ("auto", "large", "small"))
@pytest.mark.parametrize("case", VECTOR_CASES + [DEEP_VECTOR_CASE], ids=lambda c: c.name)
def test_vector_copies_on_gpu(rng, names, case, warp_tiles):
    """The cp.async data-gradient kernel on the hardware, on 4 warps and on 8 (checked against
    the simulator's model of cp.async and ldmatrix only before)."""
    import cupy
    dtype = np.dtype(np.float16)  # CuPy arrays carry no bfloat16 (torch tensors do)
    w = make_input(rng, case.w, dtype)
    dy = make_input(rng, output_shape(case, "NHWC"), dtype)
    if warp_tiles == "auto":
        got = grad.conv2d_input(input_shape(case, "NHWC"), cupy.asarray(w), cupy.asarray(dy),
                                algorithm="implicit_gemm", data_format="NHWC", **case.kwargs)
    else:
        got = launch_bwd_data.run("implicit_gemm", case.geometry(), cupy.asarray(w),
                                  cupy.asarray(dy), None, "NHWC", "cupy", warp_tiles=warp_tiles)
        assert names[-1].endswith(f"{launch_bwd_data.vector_tile(0, warp_tiles).template_args}>")
    assert names[-1].startswith("conv2d_dgrad_implicit_gemm_mma_vec<")
    assert_close(cupy.asnumpy(got), *expected(case, w, dy, "NHWC"), dtype, f"{case} on GPU")
