"""The weight- and bias-gradient kernels (gpuconv.grad.conv2d_weight / conv2d_bias on
kernels/conv/wgrad_*.cu, bias_grad.cu) under the CPU simulator: every algorithm x dtype x layout
against the NumPy reference in the three thread orders, with one split, many splits (split-K
over N*P*Q) and batch chunks, in both summation modes; deterministic mode bitwise identical
across thread orders and runs, and free of atomics; refusals; GPU copies (skipped without one)."""
from __future__ import annotations

import numpy as np
import pytest

import gpuconv
from gpuconv import grad
from gpuconv._call_plans import PLANS
from gpuconv._kernels import cuda_type
from gpuconv.conv import launch_bwd_common, launch_bwd_weight, launch_winograd
from gpuconv.conv.launch_backward import WEIGHT_ALGORITHMS, choose_weight_algorithm
from gpuconv.reference import conv as reference
from kernel_support import record_launches

from test_conv_backward_cases import (CASES, DTYPES, LAYOUTS, ORDERS, Case, assert_close,
                                      assert_same_bits, f64, layout, make_input,
                                      one_image_per_launch, output_shape)

# Few pixels per split, so that the small test shapes run with several splits.
FEW_PIXELS = 8


def x_in_layout(rng, case: Case, dtype, data_format: str):
    return layout(make_input(rng, case.x, dtype), data_format)


def expected(case: Case, x, dy, data_format: str):
    geom = case.geometry()
    exact = reference.conv2d_weight(geom, f64(x), f64(dy), data_format)
    magnitude = reference.conv2d_weight(geom, np.abs(f64(x)), np.abs(f64(dy)), data_format)
    return exact, magnitude


def run(case: Case, x, dy, algorithm: str, data_format: str, order: str, seed: int = 0,
        deterministic: bool = False):
    with gpuconv.simulate(order=order, seed=seed):
        return grad.conv2d_weight(x, case.w, dy, algorithm=algorithm, data_format=data_format,
                                  deterministic=deterministic, **case.kwargs)


def runnable(algorithm: str, case: Case, dtype, data_format: str) -> bool:
    return launch_bwd_weight.why_not(algorithm, case.geometry(), dtype, data_format) is None


@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("algorithm", WEIGHT_ALGORITHMS)
def test_weight_gradient_matches_reference(rng, monkeypatch, algorithm, dtype, data_format):
    ran = 0
    for index, case in enumerate(CASES):
        if not runnable(algorithm, case, dtype, data_format):
            continue
        x = x_in_layout(rng, case, dtype, data_format)
        dy = make_input(rng, output_shape(case, data_format), dtype)
        exact, magnitude = expected(case, x, dy, data_format)
        # Cases alternate between one split (a plain store) and many, and between the default
        # (atomic split sums in the GEMM algorithms) and the deterministic summation.
        monkeypatch.setattr(launch_bwd_common, "MIN_PIXELS_PER_SPLIT",
                            FEW_PIXELS if index % 3 else 10 ** 9)
        deterministic = index % 2 == 1
        orders = ORDERS if dtype == np.float32 else (ORDERS[index % 3],)
        for order in orders:
            got = run(case, x, dy, algorithm, data_format, order, index, deterministic)
            assert_close(got, exact, magnitude, dtype,
                         f"{algorithm} {data_format} {case} {order} deterministic={deterministic}")
        ran += 1
    assert ran >= 3, f"{algorithm} ran only {ran} cases"


@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("dtype", [d for d in DTYPES if np.dtype(d) != np.float64], ids=str)
def test_wide_tile_weight_gradient(rng, monkeypatch, dtype, data_format):
    """The 128 x 128 tile built for bench/tile_sweep.py (launch_bwd_weight.WIDE_TILE) computes
    the CUDA-core implicit GEMM's weight gradient too, with one split and with many."""
    monkeypatch.setattr(launch_bwd_weight, "TILE", launch_bwd_weight.WIDE_TILE)
    names = record_launches(monkeypatch, launch_bwd_weight)
    wide = f"conv2d_wgrad_implicit_gemm<{cuda_type(dtype)}, "
    for index, case in enumerate(CASES[:4]):
        monkeypatch.setattr(launch_bwd_common, "MIN_PIXELS_PER_SPLIT",
                            FEW_PIXELS if index % 2 else 10 ** 9)
        x = x_in_layout(rng, case, dtype, data_format)
        dy = make_input(rng, output_shape(case, data_format), dtype)
        exact, magnitude = expected(case, x, dy, data_format)
        del names[:]
        with gpuconv.simulate(order=ORDERS[index % 3]):
            got = launch_bwd_weight.run("implicit_gemm", case.geometry(), x, dy, data_format,
                                        index % 2 == 1, "simulator", math="cuda_cores")
        assert_close(got, exact, magnitude, dtype, f"{data_format} {case}")
        assert names[0].startswith(wide)
        assert names[0].endswith(f"{launch_bwd_weight.WIDE_TILE.template_args}>")


@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_winograd_weight_gradient_on_4x4_tiles(rng, monkeypatch, dtype, data_format):
    """"auto" keeps F(2x2, 3x3) for the weight gradient (launch_winograd.AUTO_TILE); the
    F(4x4, 3x3) kernels compute it too, within the same tolerance on these sizes."""
    monkeypatch.setitem(launch_winograd.AUTO_TILE, "weight_grad", 4)
    monkeypatch.setattr(launch_bwd_common, "MIN_PIXELS_PER_SPLIT", FEW_PIXELS)
    names = record_launches(monkeypatch, launch_winograd)
    ran = 0
    for index, case in enumerate(CASES):
        if not runnable("winograd_nonfused", case, dtype, data_format):
            continue
        x = x_in_layout(rng, case, dtype, data_format)
        dy = make_input(rng, output_shape(case, data_format), dtype)
        exact, magnitude = expected(case, x, dy, data_format)
        order = ORDERS[index % 3]
        del names[:]
        got = run(case, x, dy, "winograd_nonfused", data_format, order, index)
        assert any(", 4>" in n and "grad_output_transform" in n for n in names), names
        assert_close(got, exact, magnitude, dtype, f"F4 {data_format} {case} {order}")
        ran += 1
    assert ran >= 3, f"ran only {ran} cases"


@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("math", ("tensor_cores", "cuda_cores"))
def test_16_bit_implicit_gemm_on_both_maths(rng, monkeypatch, math, data_format):
    """float16/bfloat16 weight gradients run the tensor-core kernel by default (the test above);
    math="cuda_cores" keeps the CUDA-core one, the benchmark's comparison. Two filter tiles of
    64, taps past one tile of 128, several splits summed by atomics and deterministically;
    every order."""
    case = Case("3x3 grouped", (2, 30, 9, 10), (140, 15, 3, 3), dict(padding=1, groups=2))
    monkeypatch.setattr(launch_bwd_common, "MIN_PIXELS_PER_SPLIT", 32)
    names, args = [], []
    real = launch_bwd_weight.launch

    def recording(family, name, executor, grid, block, arguments, shared_mem=0):
        names.append(name)
        args.append(arguments)
        return real(family, name, executor, grid, block, arguments, shared_mem)

    monkeypatch.setattr(launch_bwd_weight, "launch", recording)
    geom = case.geometry()
    for dtype in [d for d in DTYPES if np.dtype(d).itemsize == 2]:
        x = x_in_layout(rng, case, dtype, data_format)
        dy = make_input(rng, output_shape(case, data_format), dtype)
        exact, magnitude = expected(case, x, dy, data_format)
        for order, deterministic in zip(ORDERS, (False, True, False)):
            names.clear()
            args.clear()
            with gpuconv.simulate(order=order, seed=7):
                got = launch_bwd_weight.run("implicit_gemm", geom, x, dy, data_format,
                                            deterministic, "simulator", math=math)
            assert_close(got, exact, magnitude, dtype, f"{math} {data_format} {dtype} {order}")
            assert names == ["conv2d_wgrad_implicit_gemm" + ("_mma<" if math == "tensor_cores"
                                                             else "<") + names[0].split("<")[1]]
            splits, mode = int(args[0][-5]), int(args[0][-1])  # (..., splits, pps, dw, ws, mode)
            assert splits > 1 and mode == (launch_bwd_common.WGRAD_PARTIAL if deterministic
                                           else launch_bwd_common.WGRAD_ATOMIC)


@pytest.fixture
def names(monkeypatch):
    """Names of the kernels launch_bwd_weight launches, in order."""
    return record_launches(monkeypatch, launch_bwd_weight)


# Channels-last with K/groups and C/groups multiples of 8: the tensor-core kernel that copies
# both operands 8 filters / channels at a time (cp.async). Two filter tiles (the last partial),
# taps past one tile of 128, pixels in ragged k-tiles over several splits; a strided, dilated
# case with asymmetric padding.
VECTOR_CASES = [
    Case("3x3 grouped, 72 filters and 16 channels per group", (2, 32, 9, 10), (144, 16, 3, 3),
         dict(padding=1, groups=2)),
    Case("3x2 stride 2 dilation 2", (1, 8, 13, 12), (24, 8, 3, 2),
         dict(stride=2, dilation=2, padding=(2, 1))),
]


@pytest.mark.parametrize("case", VECTOR_CASES, ids=lambda c: c.name)
def test_vector_copies(rng, monkeypatch, names, case):
    """conv2d_wgrad_implicit_gemm_mma_vec, its block tile on 4 warps or 8, against the reference
    in both summation modes and, bit for bit in the deterministic one, against the scalar
    tensor-core kernel (same pixel order, same mma steps, same split partials)."""
    monkeypatch.setattr(launch_bwd_common, "MIN_PIXELS_PER_SPLIT", 32)
    geom = case.geometry()
    for dtype in [d for d in DTYPES if np.dtype(d).itemsize == 2]:
        x = x_in_layout(rng, case, dtype, "NHWC")
        dy = make_input(rng, output_shape(case, "NHWC"), dtype)
        exact, magnitude = expected(case, x, dy, "NHWC")
        results = []
        for order, warp_tiles in zip(ORDERS * 2, ("large",) * 3 + ("small",) * 3):
            with gpuconv.simulate(order=order, seed=4):
                results.append(launch_bwd_weight.run("implicit_gemm", geom, x, dy, "NHWC", True,
                                                     "simulator", warp_tiles=warp_tiles))
            tile = launch_bwd_weight.vector_tile(0, warp_tiles)
            assert names[-1].startswith("conv2d_wgrad_implicit_gemm_mma_vec<")
            assert names[-1].endswith(f"{tile.template_args}>")
            assert_close(results[-1], exact, magnitude, dtype,
                         f"{case} {dtype} {order} {warp_tiles}")
        with monkeypatch.context() as scalar, gpuconv.simulate(order="forward"):
            scalar.setattr(launch_bwd_weight, "vector_kernel", lambda call, tensor_cores: False)
            results.append(launch_bwd_weight.run("implicit_gemm", geom, x, dy, "NHWC", True,
                                                 "simulator"))
        assert names[-1].startswith("conv2d_wgrad_implicit_gemm_mma<")
        assert_same_bits(results, f"{case} {dtype}")
        with gpuconv.simulate(order="random", seed=9):
            atomic = launch_bwd_weight.run("implicit_gemm", geom, x, dy, "NHWC", False,
                                           "simulator")
        assert_close(atomic, exact, magnitude, dtype, f"{case} {dtype} atomics")


def test_vector_copies_need_aligned_multiples_of_8(rng, names):
    """C/groups or K/groups not a multiple of 8, x not 16-byte aligned, or NCHW: the scalar
    tensor-core kernel."""
    case = VECTOR_CASES[1]
    x = x_in_layout(rng, case, np.float16, "NHWC")
    shifted = np.empty(x.size + 1, np.float16)[1:].reshape(x.shape)  # 2 bytes off alignment
    shifted[...] = x
    dy = make_input(rng, output_shape(case, "NHWC"), np.float16)
    exact, magnitude = expected(case, x, dy, "NHWC")
    odd_channels = Case("12 channels", (1, 12, 7, 7), (16, 12, 3, 3), dict(padding=1))
    odd_filters = Case("12 filters", (1, 16, 7, 7), (12, 16, 3, 3), dict(padding=1))
    runs = [(case, shifted, dy, "NHWC")]
    for c in (odd_channels, odd_filters):
        runs.append((c, x_in_layout(rng, c, np.float16, "NHWC"),
                     make_input(rng, output_shape(c, "NHWC"), np.float16), "NHWC"))
    runs.append((case, x_in_layout(rng, case, np.float16, "NCHW"),
                 make_input(rng, output_shape(case, "NCHW"), np.float16), "NCHW"))
    for c, xs, grad_output, data_format in runs:
        with gpuconv.simulate():
            got = launch_bwd_weight.run("implicit_gemm", c.geometry(), xs, grad_output,
                                        data_format, True, "simulator")
        assert names[-1].startswith("conv2d_wgrad_implicit_gemm_mma<"), (c, data_format)
        if xs is shifted:
            assert_close(got, exact, magnitude, np.float16, "misaligned x")


def record_modes(monkeypatch) -> list[int]:
    """The summation mode (last argument) of every weight/bias-gradient launch."""
    modes = []
    original = launch_bwd_weight.launch

    def recording(family, name, executor, grid, block, args, shared_mem=0):
        if family is not launch_bwd_weight.REDUCE and "im2col<" not in name:
            modes.append(int(args[-1]))
        return original(family, name, executor, grid, block, args, shared_mem)

    monkeypatch.setattr(launch_bwd_weight, "launch", recording)
    return modes


DETERMINISM_CASE = Case("stride 2 grouped", (2, 4, 9, 8), (6, 2, 3, 3),
                        dict(stride=2, padding=1, groups=2))
DEPTHWISE_CASE = Case("depthwise x2", (2, 3, 9, 8), (6, 1, 3, 3), dict(padding=1, groups=3))
WINOGRAD_CASE = Case("3x3 grouped", (2, 4, 9, 8), (6, 2, 3, 3), dict(padding=1, groups=2))
SPECIAL_CASES = {"depthwise": DEPTHWISE_CASE, "winograd_nonfused": WINOGRAD_CASE}


@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("algorithm", WEIGHT_ALGORITHMS)
def test_deterministic_weight_gradient_has_the_same_bits_in_every_order(rng, monkeypatch,
                                                                        algorithm, data_format):
    monkeypatch.setattr(launch_bwd_common, "MIN_PIXELS_PER_SPLIT", FEW_PIXELS)
    # One image per launch: the second chunk accumulates into the same partial sums.
    case = SPECIAL_CASES.get(algorithm, DETERMINISM_CASE)
    one_image_per_launch(monkeypatch, algorithm, case.geometry(), np.float32)
    modes = record_modes(monkeypatch)
    x = x_in_layout(rng, case, np.float32, data_format)
    dy = make_input(rng, output_shape(case, data_format), np.float32)
    results = [run(case, x, dy, algorithm, data_format, order, seed, deterministic=True)
               for order, seed in [("forward", 0), ("reverse", 0), ("random", 1), ("random", 2),
                                   ("forward", 0)]]
    assert_same_bits(results, f"{algorithm} {data_format}")
    assert_close(results[0], *expected(case, x, dy, data_format), np.float32, algorithm)
    assert modes and launch_bwd_common.WGRAD_ATOMIC not in modes
    if algorithm == "winograd_nonfused":
        # Each chunk's transforms get a GEMM of their own, added in chunk order.
        assert len(modes) == len(results) * case.x[0]
    else:
        assert launch_bwd_common.WGRAD_PARTIAL_ACCUMULATE in modes  # the chunks were summed


def test_deterministic_mode_from_the_process_setting(rng, monkeypatch):
    monkeypatch.setattr(launch_bwd_common, "MIN_PIXELS_PER_SPLIT", FEW_PIXELS)
    modes = record_modes(monkeypatch)
    case = DETERMINISM_CASE
    x = make_input(rng, case.x, np.float32)
    dy = make_input(rng, output_shape(case, "NCHW"), np.float32)
    gpuconv.set_deterministic(True)
    try:
        with gpuconv.simulate(order="random"):
            grad.conv2d_weight(x, case.w, dy, **case.kwargs)
    finally:
        gpuconv.set_deterministic(False)
    assert modes == [launch_bwd_common.WGRAD_PARTIAL]
    del modes[:]
    with gpuconv.simulate(order="random"):
        grad.conv2d_weight(x, case.w, dy, **case.kwargs)
    assert modes == [launch_bwd_common.WGRAD_ATOMIC]  # the default mode adds splits atomically


@pytest.mark.parametrize("algorithm", ["implicit_gemm", "im2col_gemm"])
def test_atomic_split_sums_of_halves_go_through_a_float_buffer(rng, monkeypatch, algorithm):
    monkeypatch.setattr(launch_bwd_common, "MIN_PIXELS_PER_SPLIT", FEW_PIXELS)
    modes = record_modes(monkeypatch)
    case = DETERMINISM_CASE
    x = make_input(rng, case.x, np.float16)
    dy = make_input(rng, output_shape(case, "NCHW"), np.float16)
    got = run(case, x, dy, algorithm, "NCHW", "random", 4)
    assert set(modes) == {launch_bwd_common.WGRAD_ATOMIC}
    assert_close(got, *expected(case, x, dy, "NCHW"), np.float16, algorithm)


@pytest.mark.parametrize("algorithm", WEIGHT_ALGORITHMS)
def test_column_and_batch_chunks(rng, monkeypatch, algorithm):
    case = DEPTHWISE_CASE if algorithm == "depthwise" else Case(
        "3x3", (3, 3, 5, 6), (4, 3, 3, 3), dict(padding=1))
    geom = case.geometry()
    monkeypatch.setattr(launch_bwd_common, "COLUMN_BUFFER_ELEMENTS",
                        geom.C * geom.R * geom.S * geom.P * geom.Q)  # one image per chunk
    one_image_per_launch(monkeypatch, algorithm, geom, np.float64)
    for data_format in LAYOUTS:
        for deterministic in (False, True):
            x = x_in_layout(rng, case, np.float64, data_format)
            dy = make_input(rng, output_shape(case, data_format), np.float64)
            got = run(case, x, dy, algorithm, data_format, "reverse", deterministic=deterministic)
            assert_close(got, *expected(case, x, dy, data_format), np.float64,
                         f"{algorithm} {data_format} deterministic={deterministic}")


def test_weight_gradient_matches_finite_differences(rng):
    case = Case("stride 2 dil 2", (2, 2, 6, 5), (3, 2, 2, 3), dict(stride=2, dilation=(2, 1), padding=1))
    geom = case.geometry()
    x = rng.standard_normal(case.x)
    w = rng.standard_normal(case.w)
    dy = rng.standard_normal(geom.output_shape)
    got = run(case, x, dy, "implicit_gemm", "NCHW", "random")
    eps = 1e-6
    numeric = np.zeros_like(w)
    for index in np.ndindex(w.shape):
        w[index] += eps
        above = np.sum(reference.conv2d(geom, x, w) * dy)
        w[index] -= 2 * eps
        below = np.sum(reference.conv2d(geom, x, w) * dy)
        w[index] += eps
        numeric[index] = (above - below) / (2 * eps)
    np.testing.assert_allclose(got, numeric, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------------------------
# algorithm choice and refusals


def test_auto_choice():
    depthwise = Case("", (1, 8, 9, 9), (8, 1, 3, 3), dict(groups=8)).geometry()
    dense = Case("", (1, 8, 9, 9), (8, 8, 3, 3)).geometry()
    assert choose_weight_algorithm(depthwise, "auto", np.float32, "NHWC")[0] == "depthwise"
    assert choose_weight_algorithm(dense, "auto", np.float32, "NCHW")[0] == "implicit_gemm"
    # 3x3 stride 1 over >= 128 channels and filters: Winograd on CUDA cores only.
    wide = Case("", (32, 128, 28, 28), (256, 128, 3, 3), dict(padding=1)).geometry()
    assert choose_weight_algorithm(wide, "auto", np.float32, "NCHW")[0] == "winograd_nonfused"
    assert choose_weight_algorithm(wide, "auto", np.float64, "NHWC")[0] == "winograd_nonfused"
    assert choose_weight_algorithm(wide, "auto", np.float16, "NHWC")[0] == "implicit_gemm"
    strided = Case("", (32, 128, 28, 28), (256, 128, 3, 3), dict(padding=1, stride=2)).geometry()
    assert choose_weight_algorithm(strided, "auto", np.float32, "NCHW")[0] == "implicit_gemm"
    # ... over >= 1024 output pixels: 32 x 7x7 = 1568 takes it, 1 x 28x28 = 784 does not.
    small = Case("", (32, 512, 7, 7), (512, 512, 3, 3), dict(padding=1)).geometry()
    assert choose_weight_algorithm(small, "auto", np.float32, "NCHW")[0] == "winograd_nonfused"
    batch1 = Case("", (1, 128, 28, 28), (128, 128, 3, 3), dict(padding=1)).geometry()
    assert choose_weight_algorithm(batch1, "auto", np.float32, "NCHW")[0] == "implicit_gemm"


@pytest.mark.parametrize("algorithm, w, kwargs, message", [
    ("pointwise", (4, 4, 3, 3), {}, "needs a 1x1 filter, got 3x3"),
    ("depthwise", (4, 2, 3, 3), dict(groups=2), r"C/groups == 1"),
])
def test_forcing_an_algorithm_that_cannot_run_is_a_value_error(algorithm, w, kwargs, message):
    case = Case("refused", (1, 4, 6, 6), w, kwargs)
    x = np.zeros(case.x, np.float32)
    dy = np.zeros(output_shape(case, "NCHW"), np.float32)
    with gpuconv.simulate(), pytest.raises(ValueError, match=message) as info:
        grad.conv2d_weight(x, w, dy, algorithm=algorithm, **kwargs)
    assert repr(algorithm) in str(info.value)


# ---------------------------------------------------------------------------------------------
# bias gradient


@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_bias_gradient(rng, monkeypatch, dtype, data_format):
    shape = (3, 37, 5, 7) if data_format == "NCHW" else (3, 5, 7, 37)  # 37 channels: 2 warps
    dy = make_input(rng, shape, dtype)
    axes = (0, 1, 2) if data_format == "NHWC" else (0, 2, 3)
    exact = f64(dy).sum(axis=axes)
    magnitude = np.abs(f64(dy)).sum(axis=axes)
    names = record_launches(monkeypatch, launch_bwd_weight)
    for few, order in [(False, "forward"), (True, "reverse"), (True, "random")]:
        monkeypatch.setattr(launch_bwd_common, "MIN_PIXELS_PER_SPLIT", FEW_PIXELS if few else 10 ** 9)
        PLANS.clear()       # the first call's plan (no splits) would replay
        del names[:]
        with gpuconv.simulate(order=order, seed=5):
            got = grad.conv2d_bias(dy, data_format=data_format)
        assert names, "the launcher ran"
        assert_close(got, exact, magnitude, dtype, f"bias {data_format} {order} splits={few}")


def test_bias_gradient_is_bitwise_reproducible_with_splits_and_chunks(rng, monkeypatch):
    monkeypatch.setattr(launch_bwd_common, "MIN_PIXELS_PER_SPLIT", FEW_PIXELS)
    monkeypatch.setattr(launch_bwd_common, "LAUNCH_ELEMENTS", 2 * 6 * 9 * 11)  # two images
    dy = make_input(rng, (5, 6, 9, 11), np.float32)
    for data_format in LAYOUTS:
        data = layout(dy, data_format)
        results = []
        for order, seed in [("forward", 0), ("reverse", 0), ("random", 7)]:
            with gpuconv.simulate(order=order, seed=seed):
                results.append(grad.conv2d_bias(data, data_format=data_format, deterministic=True))
        assert_same_bits(results, f"bias {data_format}")
        assert_close(results[0], f64(dy).sum(axis=(0, 2, 3)), np.abs(f64(dy)).sum(axis=(0, 2, 3)),
                     np.float32, f"bias {data_format}")


# ---------------------------------------------------------------------------------------------
# on a GPU


@pytest.mark.gpu
@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64], ids=str)
@pytest.mark.parametrize("algorithm", WEIGHT_ALGORITHMS)
def test_weight_gradient_on_gpu(rng, algorithm, dtype, data_format):
    import cupy
    for index, case in enumerate(CASES):
        if not runnable(algorithm, case, dtype, data_format):
            continue
        x = x_in_layout(rng, case, dtype, data_format)
        dy = make_input(rng, output_shape(case, data_format), dtype)
        got = grad.conv2d_weight(cupy.asarray(x), case.w, cupy.asarray(dy), algorithm=algorithm,
                                 data_format=data_format, deterministic=index % 2 == 1,
                                 **case.kwargs)
        assert_close(cupy.asnumpy(got), *expected(case, x, dy, data_format), dtype,
                     f"{algorithm} {data_format} {case} on GPU")


@pytest.mark.gpu
@pytest.mark.parametrize("algorithm", WEIGHT_ALGORITHMS)
def test_deterministic_weight_gradient_on_gpu_is_bitwise_reproducible(rng, algorithm):
    import cupy
    # Large enough for many splits on a real GPU.
    case = Case("ResNet-ish", (8, 16, 28, 28), (16, 16, 3, 3), dict(padding=1)) \
        if algorithm != "depthwise" else Case("dw", (8, 16, 28, 28), (16, 1, 3, 3),
                                              dict(padding=1, groups=16))
    x = cupy.asarray(make_input(rng, case.x, np.float32))
    dy = cupy.asarray(make_input(rng, output_shape(case, "NCHW"), np.float32))
    results = [cupy.asnumpy(grad.conv2d_weight(x, case.w, dy, algorithm=algorithm,
                                               deterministic=True, **case.kwargs))
               for _ in range(3)]
    assert_same_bits(results, f"{algorithm} on GPU")


@pytest.mark.gpu
def test_bias_gradient_on_gpu(rng):
    import cupy
    dy = make_input(rng, (4, 70, 9, 13), np.float32)
    for data_format in LAYOUTS:
        got = grad.conv2d_bias(cupy.asarray(layout(dy, data_format)), data_format=data_format)
        assert_close(cupy.asnumpy(got), f64(dy).sum(axis=(0, 2, 3)),
                     np.abs(f64(dy)).sum(axis=(0, 2, 3)), np.float32, data_format)


def test_forced_pointwise_weight_gradient_of_a_1x1_filter(rng):
    x = make_input(rng, (2, 6, 5, 4), np.float32)
    dy = make_input(rng, (2, 3, 5, 4), np.float32)
    expected = grad.conv2d_weight(x, (3, 6, 1, 1), dy)
    for order in ("forward", "reverse"):
        with gpuconv.simulate(order=order):
            got = grad.conv2d_weight(x, (3, 6, 1, 1), dy, algorithm="pointwise")
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_vector_warp_tiles_by_depth(rng, names):
    """"auto" puts the vector kernel's tile on 4 warps from WEIGHT_GRAD_LARGE_WARPS_MIN_K pixels
    per split on, on 8 below; another warp_tiles is a ValueError."""
    deep = Case("3x3, 400 pixels", (1, 8, 20, 20), (8, 8, 3, 3), dict(padding=1))
    for case, warps in [(deep, "large"), (VECTOR_CASES[1], "small")]:
        x = x_in_layout(rng, case, np.float16, "NHWC")
        dy = make_input(rng, output_shape(case, "NHWC"), np.float16)
        with gpuconv.simulate():
            got = launch_bwd_weight.run("implicit_gemm", case.geometry(), x, dy, "NHWC", True,
                                        "simulator")
        assert names[-1].endswith(f"{launch_bwd_weight.vector_tile(0, warps).template_args}>")
        assert_close(got, *expected(case, x, dy, "NHWC"), np.float16, case.name)
    with pytest.raises(ValueError, match="warp_tiles must be one of"):
        launch_bwd_weight.run("implicit_gemm", case.geometry(), x, dy, "NHWC", True, "simulator",
                              warp_tiles="huge")


@pytest.mark.gpu
@pytest.mark.parametrize("warp_tiles", ("large", "small"))
@pytest.mark.parametrize("deterministic", (False, True))
@pytest.mark.parametrize("case", VECTOR_CASES, ids=lambda c: c.name)
def test_vector_copies_on_gpu(rng, monkeypatch, names, case, deterministic, warp_tiles):
    """The cp.async weight-gradient kernel on the hardware, on 4 warps and on 8, over several
    splits (checked against the simulator's model of cp.async and ldmatrix only before)."""
    import cupy
    monkeypatch.setattr(launch_bwd_common, "MIN_PIXELS_PER_SPLIT", 32)
    dtype = np.dtype(np.float16)  # CuPy arrays carry no bfloat16 (torch tensors do)
    x = x_in_layout(rng, case, dtype, "NHWC")
    dy = make_input(rng, output_shape(case, "NHWC"), dtype)
    got = launch_bwd_weight.run("implicit_gemm", case.geometry(), cupy.asarray(x),
                                cupy.asarray(dy), "NHWC", deterministic, "cupy",
                                warp_tiles=warp_tiles)
    assert names[-1].startswith("conv2d_wgrad_implicit_gemm_mma_vec<")
    assert names[-1].endswith(f"{launch_bwd_weight.vector_tile(0, warp_tiles).template_args}>")
    assert_close(cupy.asnumpy(got), *expected(case, x, dy, "NHWC"), dtype, f"{case} on GPU")


@pytest.mark.parametrize("data_format", LAYOUTS)
def test_splits_keep_their_partial_sums_within_32_bit_offsets(rng, monkeypatch, data_format):
    """The kernels address split s's partial sum i as s * size + i in int: a weight of more than
    2^25 elements (a 4097 x 4097 depthwise filter) at 64 splits passed 2^31 (audit 19). The
    splits are capped by the gradient's size; here the cap is lowered to two gradients."""
    case = DEPTHWISE_CASE
    size = int(np.prod(case.w))
    monkeypatch.setattr(launch_bwd_common, "MIN_PIXELS_PER_SPLIT", 1)
    monkeypatch.setattr(launch_bwd_common, "PARTIAL_SUMS_ELEMENTS", 2 * size + 1)
    grids = []
    real = launch_bwd_weight.launch
    monkeypatch.setattr(launch_bwd_weight, "launch", lambda family, name, executor, grid, *a, **k: (
        grids.append(grid), real(family, name, executor, grid, *a, **k))[1])
    x = x_in_layout(rng, case, np.float64, data_format)
    dy = make_input(rng, output_shape(case, data_format), np.float64)
    got = run(case, x, dy, "direct", data_format, "random", 5, deterministic=True)
    assert grids and grids[0][1] == 2, grids   # the direct kernel's grid.y: its splits
    assert_close(got, *expected(case, x, dy, data_format), np.float64, data_format)
    assert launch_bwd_common.choose_splits("simulator", 1, 10 ** 9, sum_elements=2 * size) == 1
