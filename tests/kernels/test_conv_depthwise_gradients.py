"""The depthwise backward paths under the CPU simulator, against the NumPy reference:

- the data gradient of stride-1, one-filter-per-channel depthwise convolutions, which runs the
  forward depthwise kernels over dy with the filters rotated (``flip``), in each of their
  three variants, every dtype and layout, paddings past the filter (a cropping forward pass),
  asymmetric padding and dilation;
- conv2d_wgrad_depthwise_tiled, the weight gradient (staged dy and x tiles, a run of taps per
  thread): multipliers, strides, dilations, ragged row and column tiles, several parts of the
  rows per block, several chunks of taps per channel, splits and batch chunks, bitwise
  reproducibility; its shared-memory plan; the fallback kernels where it does not fit.
The generic algorithm tests (test_conv_backward_*.py) run these paths too, on fewer shapes."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import gpuconv
from gpuconv import grad
from gpuconv.conv import launch_bwd_data, launch_bwd_weight, launch_depthwise
from gpuconv.conv.geometry import data_gradient_geometry
from gpuconv.conv.launch_common import SMEM_LIMIT
from gpuconv.reference import conv as reference
from kernel_support import compile_ptx, fma_loops, record_launches

from test_conv_backward_transpose import expected as transpose_expected
from test_conv_backward_transpose import geometry as transpose_geometry
from test_conv_backward_cases import (DTYPES, LAYOUTS, ORDERS, Case, assert_close,
                                      assert_same_bits, f64, layout, make_input,
                                      one_image_per_launch, output_shape)

KERNELS_DIR = Path(launch_depthwise.__file__).parents[2] / "kernels"

DATA_CASES = [
    Case("3x3 pad 1", (2, 5, 9, 11), (5, 1, 3, 3), dict(padding=1, groups=5)),
    Case("5x5 asym pad", (1, 3, 8, 10), (3, 1, 5, 5), dict(padding=((2, 1), (0, 3)), groups=3)),
    Case("7x7 pad 3 wide", (1, 2, 9, 23), (2, 1, 7, 7), dict(padding=3, groups=2)),
    # Padding past the filter: the forward pass over dy starts cropped (negative padding).
    Case("3x3 pad 4", (1, 2, 5, 6), (2, 1, 3, 3), dict(padding=4, groups=2)),
    Case("3x2 dilation 2", (2, 3, 9, 8), (3, 1, 3, 2), dict(padding=(2, 1), dilation=2, groups=3)),
    Case("1x7 no padding", (1, 4, 6, 12), (4, 1, 1, 7), dict(groups=4)),
]

WEIGHT_CASES = [
    Case("3x3 pad 1", (2, 5, 9, 11), (5, 1, 3, 3), dict(padding=1, groups=5)),
    Case("multiplier 2 asym pad", (2, 3, 7, 9), (6, 1, 3, 3),
         dict(padding=((0, 2), (1, 1)), groups=3)),
    Case("9x8 stride 1", (1, 2, 10, 9), (2, 1, 9, 8), dict(padding=4, groups=2)),
    Case("stride 2 dil 2 multiplier 3", (1, 2, 12, 11), (6, 1, 3, 2),
         dict(stride=2, dilation=2, padding=((2, 1), (0, 3)), groups=2)),
    Case("stride (1, 2)", (2, 3, 8, 13), (3, 1, 3, 5), dict(stride=(1, 2), padding=2, groups=3)),
    # 19 rows and 70 columns: two row tiles (the second ragged) and two column tiles of 35.
    Case("ragged tiles", (1, 2, 19, 70), (2, 1, 3, 3), dict(padding=1, groups=2)),
]


def _in_layout(a, data_format):
    return layout(a, data_format)


def _input_shape(case: Case, data_format: str) -> tuple:
    n, c, h, w = case.x
    return (n, h, w, c) if data_format == "NHWC" else (n, c, h, w)


# ---------------------------------------------------------------------------------------------
# data gradient through the forward kernels


@pytest.fixture
def forward_runs(monkeypatch):
    """(variant, flip) of every launch_depthwise.run call from launch_bwd_data."""
    runs = []
    real = launch_depthwise.run

    def recording(call, variant="auto", flip=False):
        runs.append((launch_depthwise.choose_variant(call.geom, call.dtype, call.nhwc, variant),
                     flip))
        return real(call, variant=variant, flip=flip)

    monkeypatch.setattr(launch_depthwise, "run", recording)
    return runs


def data_gradient(case, w, dy, data_format, variant, order="forward", seed=0, bias=None):
    geom = case.geometry()
    call = launch_bwd_data._Call(geom, w, dy, bias, data_format, "simulator")
    with gpuconv.simulate(order=order, seed=seed):
        launch_bwd_data.depthwise(call, variant=variant)
    return call.dx


def expected_dx(case, w, dy, data_format):
    geom = case.geometry()
    return (reference.conv2d_input(geom, f64(w), f64(dy), data_format),
            reference.conv2d_input(geom, np.abs(f64(w)), np.abs(f64(dy)), data_format))


@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("variant", ["direct", "tiled", "window"])
def test_data_gradient_on_the_forward_kernels(rng, forward_runs, variant, dtype, data_format):
    ran = 0
    for index, case in enumerate(DATA_CASES):
        forward = data_gradient_geometry(case.geometry())
        if variant == "window" and launch_depthwise.window_refusal(forward, dtype, False):
            continue
        w = make_input(rng, case.w, dtype)
        dy = make_input(rng, output_shape(case, data_format), dtype)
        got = data_gradient(case, w, dy, data_format, variant, ORDERS[index % 3], index)
        assert_close(got, *expected_dx(case, w, dy, data_format), dtype,
                     f"{variant} {data_format} {case}")
        assert forward_runs[-1] == (variant, True)
        ran += 1
    assert ran >= 4


def test_data_gradient_geometry_is_the_rotated_convolution():
    geom = Case("", (2, 3, 10, 9), (3, 1, 5, 3),
                dict(padding=((1, 3), (0, 2)), dilation=(2, 1), groups=3)).geometry()
    forward = data_gradient_geometry(geom)
    assert (forward.N, forward.C, forward.H, forward.W) == (2, 3, geom.P, geom.Q)
    assert (forward.K, forward.P, forward.Q) == (3, geom.H, geom.W)
    # dilation * (R - 1) - pad on each side: 2 * 4 - 1, 2 * 4 - 3, 1 * 2 - 0, 1 * 2 - 2
    pads = (forward.pad_top, forward.pad_bottom, forward.pad_left, forward.pad_right)
    assert pads == (7, 5, 2, 0)
    assert (forward.dil_h, forward.dil_w, forward.groups) == (2, 1, 3)
    # Grouped: the channels and filters swap roles (Winograd's data gradient).
    grouped = data_gradient_geometry(Case("", (1, 4, 6, 6), (6, 2, 3, 3),
                                          dict(padding=1, groups=2)).geometry())
    assert (grouped.C, grouped.K, grouped.groups, grouped.pad_top) == (6, 4, 2, 1)
    with pytest.raises(ValueError, match="stride-1"):
        data_gradient_geometry(Case("", (1, 4, 6, 6), (4, 1, 3, 3),
                                    dict(stride=2, groups=4)).geometry())


@pytest.mark.parametrize("x, w, kwargs, runs_forward", [
    ((1, 4, 6, 6), (4, 1, 3, 3), dict(groups=4, padding=1), True),
    ((1, 4, 6, 6), (4, 1, 3, 3), dict(groups=4, dilation=2, padding=2), True),
    ((1, 4, 6, 6), (4, 1, 3, 3), dict(groups=4, stride=2, padding=1), False),   # strided
    ((1, 4, 6, 6), (8, 1, 3, 3), dict(groups=4, padding=1), False),             # multiplier 2
])
def test_which_data_gradients_run_on_the_forward_kernels(x, w, kwargs, runs_forward):
    geom = Case("", x, w, kwargs).geometry()
    assert launch_depthwise.runs_data_gradient(geom) is runs_forward


def test_public_data_gradient_and_bias_take_the_forward_kernels(rng, forward_runs):
    """grad.conv2d_input ("auto" and forced) and conv_transpose2d's bias epilogue."""
    case = DATA_CASES[0]
    for data_format in LAYOUTS:
        w = make_input(rng, case.w, np.float32)
        dy = make_input(rng, output_shape(case, data_format), np.float32)
        for algorithm in ("auto", "depthwise"):
            with gpuconv.simulate(order="reverse"):
                got = grad.conv2d_input(_input_shape(case, data_format), w, dy,
                                        algorithm=algorithm, data_format=data_format,
                                        **case.kwargs)
            assert_close(got, *expected_dx(case, w, dy, data_format), np.float32, data_format)
            # auto's kernel for 3x3 stride 1 over 5 channels: the window one in NHWC (the vector
            # one takes channels in fours there), the vector one in NCHW
            assert forward_runs.pop() == ("window" if data_format == "NHWC" else "vector", True)
    # conv_transpose2d: x (N, C, P, Q) is dy; stride 1, dilation 2, output_padding 1, bias.
    x = make_input(rng, (2, 3, 5, 4), np.float32)
    w = make_input(rng, (3, 1, 3, 3), np.float32)
    bias = make_input(rng, (3,), np.float32)
    kwargs = dict(padding=1, groups=3, dilation=2, output_padding=1)
    with gpuconv.simulate(order="random", seed=2):
        got = gpuconv.conv_transpose2d(x, w, bias, **kwargs)
    geom = transpose_geometry(x.shape, w.shape, kwargs)
    assert_close(got, *transpose_expected(geom, x, w, bias), np.float32, "conv_transpose2d")
    assert forward_runs.pop() == ("direct", True)


# ---------------------------------------------------------------------------------------------
# weight gradient: conv2d_wgrad_depthwise_tiled


@pytest.fixture
def names(monkeypatch):
    return record_launches(monkeypatch, launch_bwd_weight)


def weight_gradient(case, x, dy, data_format, variant="auto", order="forward", seed=0,
                    deterministic=False):
    call = launch_bwd_weight._Call(case.geometry(), x, dy, data_format, "simulator")
    with gpuconv.simulate(order=order, seed=seed):
        return launch_bwd_weight.depthwise(call, deterministic, variant=variant)


def expected_dw(case, x, dy, data_format):
    geom = case.geometry()
    return (reference.conv2d_weight(geom, f64(x), f64(dy), data_format),
            reference.conv2d_weight(geom, np.abs(f64(x)), np.abs(f64(dy)), data_format))


def make_operands(rng, case, dtype, data_format):
    x = _in_layout(make_input(rng, case.x, dtype), data_format)
    dy = make_input(rng, output_shape(case, data_format), dtype)
    return x, dy


@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_tiled_weight_gradient(rng, names, dtype, data_format):
    for index, case in enumerate(WEIGHT_CASES):
        x, dy = make_operands(rng, case, dtype, data_format)
        got = weight_gradient(case, x, dy, data_format, "auto", ORDERS[index % 3], index)
        assert_close(got, *expected_dw(case, x, dy, data_format), dtype,
                     f"{data_format} {case}")
        assert names[0].startswith("conv2d_wgrad_depthwise_tiled<"), names
        names.clear()


def test_tiled_weight_gradient_sums_row_parts_and_tap_chunks(rng):
    """NCHW 3x3: many parts of the rows per block (their sums meet in shared memory); a
    31x31 filter with 2 filters per channel: 310 tap items, two chunks of 256 per channel."""
    small = WEIGHT_CASES[0]
    tile_p, tile_q, ct, parts = launch_bwd_weight.depthwise_tile_config(
        small.geometry(), np.float32, nhwc=False)
    assert parts > 1
    large = Case("31x31 multiplier 2", (1, 1, 6, 7), (2, 1, 31, 31), dict(padding=15))
    geom = large.geometry()
    tile_p, tile_q, ct, parts = launch_bwd_weight.depthwise_tile_config(geom, np.float32, False)
    assert (ct, parts) == (1, 1)
    assert 2 * 31 * 5 > launch_bwd_weight.DEPTHWISE_TILE_THREADS
    for case in (small, large):
        for data_format in LAYOUTS:
            x, dy = make_operands(rng, case, np.float64, data_format)
            got = weight_gradient(case, x, dy, data_format, "tiled", "random", 4)
            assert_close(got, *expected_dw(case, x, dy, data_format), np.float64,
                         f"{data_format} {case}")


@pytest.mark.parametrize("data_format", LAYOUTS)
def test_tiled_weight_gradient_is_bitwise_reproducible(rng, monkeypatch, data_format):
    """Several splits, two batch chunks (the partial sums accumulate), every thread order."""
    case = Case("3x3 x2", (3, 4, 9, 10), (8, 1, 3, 3), dict(padding=1, groups=4))
    x, dy = make_operands(rng, case, np.float32, data_format)
    monkeypatch.setattr(launch_bwd_weight, "DEPTHWISE_BLOCKS_PER_SM", 64)  # many splits
    one_image_per_launch(monkeypatch, "depthwise", case.geometry(), np.float32)
    results = [weight_gradient(case, x, dy, data_format, "tiled", order, seed)
               for order, seed in [("forward", 0), ("reverse", 0), ("random", 1), ("random", 2)]]
    assert_same_bits(results, data_format)
    assert_close(results[0], *expected_dw(case, x, dy, data_format), np.float32, data_format)


@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_fallback_weight_gradient_kernels(rng, names, dtype, data_format):
    case = WEIGHT_CASES[1]
    x, dy = make_operands(rng, case, dtype, data_format)
    for seed, order in enumerate(ORDERS):
        got = weight_gradient(case, x, dy, data_format, "fallback", order, seed)
        assert_close(got, *expected_dw(case, x, dy, data_format), dtype, f"{data_format} {order}")
        assert names[0].startswith("conv2d_wgrad_depthwise_nhwc<" if data_format == "NHWC"
                                   else "conv2d_wgrad_direct<")
        names.clear()


@pytest.mark.parametrize("nhwc", [False, True])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64], ids=str)
@pytest.mark.parametrize("x, w, kwargs", [
    ((32, 144, 56, 56), (144, 1, 3, 3), dict(padding=1, groups=144)),         # MobileNetV2
    ((32, 960, 7, 7), (960, 1, 3, 3), dict(padding=1, groups=960)),
    ((32, 96, 112, 112), (96, 1, 3, 3), dict(stride=2, padding=1, groups=96)),
    ((32, 96, 56, 56), (96, 1, 7, 7), dict(padding=3, groups=96)),            # ConvNeXt
    ((32, 512, 14, 14), (512, 1, 27, 27), dict(padding=13, groups=512)),      # RepLKNet
    ((32, 128, 56, 56), (128, 1, 31, 31), dict(padding=15, groups=128)),
])
def test_tile_plans_of_real_layers_fit(x, w, kwargs, dtype, nhwc):
    geom = Case("", x, w, kwargs).geometry()
    tile_p, tile_q, ct, parts = launch_bwd_weight.depthwise_tile_config(geom, dtype, nhwc)
    assert launch_bwd_weight.depthwise_tile_refusal(geom, dtype, nhwc) is None
    smem = launch_bwd_weight.depthwise_tile_smem_bytes(geom, dtype, tile_p, tile_q, ct)
    assert smem <= SMEM_LIMIT
    items = ct * geom.R * -(-geom.S // launch_depthwise.WINDOW_RUN)
    assert items * parts <= launch_bwd_weight.DEPTHWISE_TILE_THREADS or parts == 1
    assert 1 <= tile_p <= geom.P and 1 <= tile_q <= geom.Q
    # Every row of the tile has a part (no thread group without rows when rows are plenty).
    assert parts <= tile_p or tile_p == geom.P


def test_a_tile_that_cannot_fit_falls_back(rng, names):
    """A 21x21 filter with dilation 9 spans 181 x 181 input pixels for one output: past 48 KiB,
    so auto runs the fallback kernel."""
    case = Case("21x21 dil 9", (1, 1, 3, 3), (1, 1, 21, 21), dict(padding=90, dilation=9))
    geom = case.geometry()
    assert launch_bwd_weight.depthwise_tile_refusal(geom, np.float64, False) is not None
    x, dy = make_operands(rng, case, np.float64, "NCHW")
    got = weight_gradient(case, x, dy, "NCHW")
    assert_close(got, *expected_dw(case, x, dy, "NCHW"), np.float64, "fallback")
    assert names[0].startswith("conv2d_wgrad_direct<")


def test_constants_match_the_kernel_source():
    text = (KERNELS_DIR / "conv/wgrad_depthwise.cu").read_text()
    match = re.search(r"constexpr int WGRAD_DEPTHWISE_TILE_THREADS = (\d+);", text)
    assert match and int(match.group(1)) == launch_bwd_weight.DEPTHWISE_TILE_THREADS
    run = re.search(r"constexpr int DEPTHWISE_WINDOW_RUN = (\d+);",
                    (KERNELS_DIR / "conv/depthwise_tile.cuh").read_text())
    assert run and int(run.group(1)) == launch_depthwise.WINDOW_RUN


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc to emit PTX")
def test_tiled_weight_gradient_slides_a_register_window(tmp_path):
    """kernels/conv/NOTES_backward.md's instruction model: with unit steps, per unrolled chunk
    of RUN columns, RUN * RUN FMAs from 2 * RUN shared loads (an x and a dy per column); the
    strided loop RUN FMAs from RUN + 1 loads per column; no local memory, no division."""
    params = ", ".join(["const float*"] * 2 + ["int"] * 5 + ["gc::ConvShape", "float*", "float*", "int"])
    ptx = compile_ptx(tmp_path, KERNELS_DIR / "conv/wgrad_depthwise.cu", [
        f"conv2d_wgrad_depthwise_tiled<float, {nhwc}>({params})" for nhwc in ("false", "true")])
    run = launch_depthwise.WINDOW_RUN
    for mangled_layout in ("Lb0", "Lb1"):
        loops = fma_loops(ptx, f"_Z28conv2d_wgrad_depthwise_tiledIf{mangled_layout}")
        counts = [(sum(t.startswith("fma.rn.f32") for t in loop),
                   sum(t.startswith("ld.shared") for t in loop)) for loop in loops]
        slide = counts.index((run * run, 2 * run))
        # the strided loop, unrolled u times by the compiler
        strided = next(i for i, (f, n) in enumerate(counts)
                       if f % run == 0 and f // run * (run + 1) == n)
        for i in (slide, strided):
            assert not any(t.startswith(("ld.local", "st.local", "div.", "rem."))
                           for t in loops[i]), counts


@pytest.mark.parametrize("data_format", LAYOUTS)
def test_narrow_depthwise_weight_gradient_splits_past_the_gemm_limit(rng, monkeypatch,
                                                                    data_format):
    """A narrow layer (one channel block) over many images gets more splits than the GEMMs'
    MAX_SPLITS (its partial buffers are K * R * S values), summed in order: same bits in every
    thread order, equal to the reference."""
    case = Case("3x3 narrow, 80 images", (80, 4, 5, 6), (4, 1, 3, 3), dict(padding=1, groups=4))
    x, dy = make_operands(rng, case, np.float32, data_format)
    grids = []
    real = launch_bwd_weight.launch
    monkeypatch.setattr(launch_bwd_weight, "launch", lambda family, name, executor, grid, *a, **k: (
        grids.append((name, tuple(grid))), real(family, name, executor, grid, *a, **k)))
    results = [weight_gradient(case, x, dy, data_format, "tiled", order, seed)
               for order, seed in [("forward", 0), ("reverse", 0), ("random", 1)]]
    splits = [grid[1] for name, grid in grids if name.startswith("conv2d_wgrad_depthwise_tiled")]
    assert splits and min(splits) > launch_bwd_weight.MAX_SPLITS, grids
    assert_same_bits(results, data_format)
    assert_close(results[0], *expected_dw(case, x, dy, data_format), np.float32, data_format)
