"""The register sliding-window depthwise kernel (kernels/conv/depthwise.cu,
``conv2d_depthwise_window``) against the NumPy reference, and the launcher's choice between it
and the direct and tiled kernels (gpuconv/conv/launch_depthwise.py).

The kernel is forced through ``launch.conv2d(..., depthwise_variant="window")`` and runs under
``gpuconv.simulate()`` in the forward, reverse and random thread orders (and on a GPU with the
``gpu`` marker). Shapes are small and odd: widths that are not a multiple of the run of 7
outputs, padding on every side and beyond the filter (filter rows and whole runs on padding),
filters from 1xN to 31x31, odd and even, larger than the image, channel multipliers, N > 1,
several pixel and channel tiles. Every case fuses bias, residual and an activation; outputs
start as NaN so that an element no thread writes fails.
"""
from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gpuconv
from gpuconv.conv import launch, launch_common, launch_depthwise
from gpuconv.conv.geometry import conv2d_geometry, layout_shape

from kernel_support import BFLOAT16, ORDERS, assert_written_and_close, compile_ptx, fma_loops

DTYPES = [np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.float64), *BFLOAT16]
LAYOUTS = ("NCHW", "NHWC")
EXECUTORS = [pytest.param("simulator", id="sim"),
             pytest.param("cupy", id="gpu", marks=pytest.mark.gpu)]
# Relative to max(1, max |reference|): half types round the output; float32 sums at most 961
# products in another order than the float64 reference.
TOLERANCE = {"float16": 4e-3, "bfloat16": 3e-2, "float32": 3e-5, "float64": 1e-12}
KERNELS_DIR = Path(launch_depthwise.__file__).parents[2] / "kernels"


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    x: tuple            # NCHW shape
    w: tuple            # (K, 1, R, S)
    padding: object
    activation: str | None = None

    @property
    def geom(self):
        return conv2d_geometry(self.x, self.w, padding=self.padding, groups=self.x[1])


CASES = [
    Case("5x5_odd_width_two_images", (2, 3, 9, 13), (3, 1, 5, 5), 2),
    Case("4x6_even_padding_every_side", (1, 2, 10, 11), (2, 1, 4, 6), ((1, 3), (0, 5)), "relu"),
    Case("3x3_multiplier_3", (2, 2, 8, 9), (6, 1, 3, 3), 1, "tanh"),
    Case("2x2_padding_beyond_the_filter", (1, 2, 5, 6), (2, 1, 2, 2), ((3, 2), (2, 3)), "sigmoid"),
    Case("13x13_on_7x7", (2, 3, 7, 7), (3, 1, 13, 13), 6),
    Case("31x31_larger_than_the_image_mult2", (1, 2, 12, 9), (4, 1, 31, 31), 15, "relu"),
    Case("16x16_even_asymmetric", (1, 1, 20, 18), (1, 1, 16, 16), ((7, 8), (8, 7))),
    Case("1x9_row", (1, 2, 5, 16), (2, 1, 1, 9), (0, 4)),
    Case("9x1_column", (2, 2, 16, 5), (2, 1, 9, 1), (4, 0), "tanh"),
    Case("7x7_several_pixel_tiles", (1, 2, 40, 60), (2, 1, 7, 7), 3),
    Case("5x5_several_channel_tiles", (1, 40, 7, 7), (40, 1, 5, 5), 2, "relu"),
    Case("3x8_no_padding", (1, 2, 6, 30), (2, 1, 3, 8), 0),
]
CASE_BY_NAME = {c.name: c for c in CASES}


# ------------------------------------------------------------------------------------ helpers


def to_layout(a: np.ndarray, data_format: str) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)) if data_format == "NHWC" else a


def make_inputs(case: Case, dtype, data_format: str, rng):
    """x (in the layout), weight, bias, residual: random values exact in ``dtype``."""
    out_shape = layout_shape(case.geom.output_shape, data_format)
    x = to_layout(rng.standard_normal(case.x), data_format).astype(dtype)
    w = rng.standard_normal(case.w).astype(dtype)
    b = rng.standard_normal(case.w[0]).astype(dtype)
    r = rng.standard_normal(out_shape).astype(dtype)
    return x, w, b, r


def on_executor(a, executor: str):
    if a is None or executor == "simulator":
        return a
    import cupy
    return cupy.asarray(a)


def run_window(case: Case, x, w, b, r, *, data_format, executor="simulator", order="forward",
               variant="window", out=None):
    """conv2d through the launcher with the depthwise kernel ``variant``; out NaN by default."""
    geom = case.geom
    if out is None:
        out = np.full(layout_shape(geom.output_shape, data_format), np.nan, dtype=x.dtype)
    args = [on_executor(a, executor) for a in (x, w, b, r, out)]

    def call():
        return launch.conv2d(geom, *args[:3], residual=args[3], activation=case.activation,
                             algorithm="depthwise", data_format=data_format, out=args[4],
                             executor=executor, depthwise_variant=variant)
    if executor == "simulator":
        with gpuconv.simulate(order=order, seed=11):
            y = call()
    else:
        y = call()
    assert y is args[4]
    return y if isinstance(y, np.ndarray) else y.get()


def reference(case: Case, x, w, b, r, *, data_format):
    return gpuconv.conv2d(x, w, b, padding=case.padding, groups=case.x[1], residual=r,
                          activation=case.activation, data_format=data_format)


def assert_close(actual, expected):
    assert_written_and_close(actual, expected, TOLERANCE)


def check(case, dtype, data_format, rng, **run_options):
    x, w, b, r = make_inputs(case, dtype, data_format, rng)
    expected = reference(case, x, w, b, r, data_format=data_format)
    assert_close(run_window(case, x, w, b, r, data_format=data_format, **run_options), expected)


# ------------------------------------------------------------------------------------ correctness


def test_cases_cover_what_they_claim():
    runs_cut = [c for c in CASES if c.geom.Q % launch_depthwise.WINDOW_RUN]
    assert len(runs_cut) >= 6, "widths that are not a multiple of the run"
    assert {c.geom.S % 2 for c in CASES} == {0, 1} and {c.geom.R % 2 for c in CASES} == {0, 1}
    assert any(c.geom.K > c.geom.C for c in CASES) and any(c.x[0] > 1 for c in CASES)
    assert any(c.geom.R > c.x[2] and c.geom.S > c.x[3] for c in CASES)
    assert any(c.geom.pad_top > c.geom.R - 1 for c in CASES)  # rows that read only padding
    for name, nhwc in (("7x7_several_pixel_tiles", False), ("5x5_several_channel_tiles", False),
                       ("5x5_several_channel_tiles", True)):
        g = CASE_BY_NAME[name].geom
        tile_p, runs, ct = launch_depthwise.window_config(g, np.float32, nhwc)
        tiles = -(-g.P // tile_p) * -(-g.Q // (runs * launch_depthwise.WINDOW_RUN)) * -(-g.C // ct)
        assert tiles > 1 and (ct < g.C or tile_p < g.P or runs * 7 < g.Q), name


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_window_matches_reference(case, data_format, order, rng):
    check(case, np.dtype(np.float32), data_format, rng, order=order)


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("name", ("13x13_on_7x7", "4x6_even_padding_every_side",
                                  "3x3_multiplier_3"))
def test_window_every_dtype(name, data_format, dtype, executor, rng):
    check(CASE_BY_NAME[name], dtype, data_format, rng, executor=executor, order="random")


@pytest.mark.parametrize("data_format", LAYOUTS)
def test_window_writes_into_a_channel_slice(data_format, rng):
    # NCHW writes straight into the slice (the kernels step between images with out_sN); NHWC
    # goes through a contiguous scratch output.
    case = CASE_BY_NAME["5x5_odd_width_two_images"]
    x, w, b, r = make_inputs(case, np.float32, data_format, rng)
    g = case.geom
    buffer = np.full((g.N, g.K + 3, g.P, g.Q), np.nan, np.float32)
    if data_format == "NCHW":
        out = buffer[:, 1:1 + g.K]
    else:
        out = np.full((g.N, g.P, g.Q, g.K), np.nan, np.float32)
    run_window(case, x, w, b, r, data_format=data_format, out=out)
    assert_close(out, reference(case, x, w, b, r, data_format=data_format))
    if data_format == "NCHW":
        assert np.isnan(buffer[:, 0]).all() and np.isnan(buffer[:, 1 + g.K:]).all()


def test_window_splits_the_batch_into_launches(monkeypatch, launched_names, rng):
    case = CASE_BY_NAME["9x1_column"]
    g = case.geom
    monkeypatch.setattr(launch_common, "INDEX_LIMIT", max(g.C * g.H * g.W, g.K * g.P * g.Q) + 1)
    check(case, np.dtype(np.float32), "NCHW", rng)
    assert launched_names == ["conv2d_depthwise_window<float, false>"] * g.N


# Shared-memory limits (bytes) below the float32 tile of a case: the channel tile halves, then
# the rows, then the runs (window_config's order; the sizes come from window_smem_bytes).
@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("name, smem_limit", [("5x5_several_channel_tiles", 9000),
                                              ("7x7_several_pixel_tiles", 3000),
                                              ("7x7_several_pixel_tiles", 1000),
                                              ("7x7_several_pixel_tiles", 700)])
def test_window_tile_shrinks_to_fit_shared_memory(name, smem_limit, data_format, monkeypatch, rng):
    case = CASE_BY_NAME[name]
    g, nhwc = case.geom, data_format == "NHWC"
    full = launch_depthwise.window_config(g, np.float32, nhwc)
    monkeypatch.setattr(launch_depthwise, "SMEM_LIMIT", smem_limit)
    shrunk = launch_depthwise.window_config(g, np.float32, nhwc)
    assert all(a <= b for a, b in zip(shrunk, full)) and shrunk != full
    assert launch_depthwise.window_smem_bytes(g, np.float32, nhwc, *shrunk) <= smem_limit
    check(case, np.dtype(np.float32), data_format, rng, order="random")


def test_shrinking_reaches_one_run_of_one_row_of_one_channel(monkeypatch):
    g = CASE_BY_NAME["31x31_larger_than_the_image_mult2"].geom
    smallest = launch_depthwise.window_smem_bytes(g, np.float32, False, 1, 1, 1)
    monkeypatch.setattr(launch_depthwise, "SMEM_LIMIT", smallest)
    assert launch_depthwise.window_config(g, np.float32, False) == (1, 1, 1)


@given(data=st.data())
@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_window_random_geometries(data):
    r, s = data.draw(st.integers(1, 31)), data.draw(st.integers(1, 31))
    h, w = data.draw(st.integers(1, 20)), data.draw(st.integers(1, 24))
    pads = [data.draw(st.integers(0, k)) for k in (r, r, s, s)]
    if h + pads[0] + pads[1] < r or w + pads[2] + pads[3] < s:
        pads = [r - 1, r - 1, s - 1, s - 1]   # always a valid output
    c, multiplier = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 2))
    case = Case("drawn", (data.draw(st.integers(1, 2)), c, h, w), (c * multiplier, 1, r, s),
                ((pads[0], pads[1]), (pads[2], pads[3])),
                data.draw(st.sampled_from((None, "relu", "sigmoid"))))
    dtype = np.dtype(data.draw(st.sampled_from((np.float32, np.float64))))
    check(case, dtype, data.draw(st.sampled_from(LAYOUTS)), np.random.default_rng(5),
          order=data.draw(st.sampled_from(ORDERS)))


# ------------------------------------------------------------------------------------ routing


@pytest.mark.parametrize("x_shape, w_shape, kwargs, kernel", [
    ((1, 4, 12, 14), (4, 1, 7, 7), dict(padding=3), "window<float, false>"),      # ConvNeXt
    ((1, 4, 14, 14), (4, 1, 27, 27), dict(padding=13), "window<float, false>"),   # RepLKNet
    ((1, 4, 12, 14), (4, 1, 5, 5), dict(padding=2), "window<float, false>"),
    ((1, 4, 12, 14), (4, 1, 3, 3), dict(padding=1), "vector<float, 1, false>"),  # MobileNet
    ((1, 4, 28, 28), (4, 1, 3, 3), dict(padding=1, stride=2), "vector<float, 2, false>"),
    # 3x3 with a channel multiplier (no vector kernel): the window kernel from 28x28 on
    ((1, 4, 12, 14), (8, 1, 3, 3), dict(padding=1), "direct<float, false, 3, 3>"),
    ((1, 4, 28, 28), (8, 1, 3, 3), dict(padding=1), "window<float, false>"),
    ((1, 4, 12, 14), (4, 1, 9, 9), dict(padding=4, stride=2), "tiled<float, false>"),
    ((1, 4, 12, 14), (4, 1, 7, 7), dict(padding=3, stride=2), "direct<float, false, 7, 7>"),
    ((1, 4, 12, 14), (4, 1, 5, 5), dict(padding=4, dilation=2), "direct<float, false, 5, 5>"),
    ((1, 4, 12, 1), (4, 1, 9, 1), dict(padding=(4, 0)), "direct<float, false, 0, 0>"),  # Q = 1
])
def test_auto_routing(x_shape, w_shape, kwargs, kernel, launched_names, rng):
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    geom = conv2d_geometry(x_shape, w_shape, groups=x_shape[1], **kwargs)
    assert launch_depthwise.choose_variant(geom, np.float32, False) == kernel.split("<")[0]
    with gpuconv.simulate():
        y = gpuconv.conv2d(x, w, groups=x_shape[1], **kwargs)
    assert launched_names == [f"conv2d_depthwise_{kernel}"]
    assert_close(y, gpuconv.conv2d(x, w, groups=x_shape[1], **kwargs))


def test_auto_takes_the_window_kernel_for_3x3_in_nhwc_where_the_vector_one_cannot_run():
    """In NHWC, 3x3 stride 1 goes to the vector kernel (test_conv_depthwise_vector.py) when the
    channels come in fours and the arrays are aligned; else to the window kernel on any plane."""
    for hw in ((7, 7), (12, 14), (56, 56)):
        three = conv2d_geometry((1, 3, *hw), (3, 1, 3, 3), groups=3, padding=1)
        four = conv2d_geometry((1, 4, *hw), (4, 1, 3, 3), groups=4, padding=1)
        assert launch_depthwise.choose_variant(three, np.float32, True) == "window"
        assert launch_depthwise.choose_variant(four, np.float32, True, aligned=False) == "window"
        assert launch_depthwise.choose_variant(four, np.float32, True) == "vector"
        assert launch_depthwise.choose_variant(four, np.float32, False) == "vector"


def test_auto_falls_back_when_no_window_tile_fits(monkeypatch):
    g = CASE_BY_NAME["31x31_larger_than_the_image_mult2"].geom
    monkeypatch.setattr(launch_depthwise, "SMEM_LIMIT", 100)
    assert "shared memory" in launch_depthwise.window_refusal(g, np.float32, False)
    assert launch_depthwise.choose_variant(g, np.float32, False) == "direct"


@pytest.mark.parametrize("variant", ("direct", "tiled", "window"))
def test_every_variant_can_be_forced(variant, launched_names, rng):
    case = CASE_BY_NAME["13x13_on_7x7"]
    check(case, np.dtype(np.float32), "NHWC", rng, variant=variant)
    template_args = "float, true, 0, 0" if variant == "direct" else "float, true"
    # The NHWC direct kernel reads the filters as (R, S, K): one layout copy first.
    copies = ["batched_transpose<float, float>"] if variant == "direct" else []
    assert launched_names == copies + [f"{launch_depthwise.KERNELS[variant]}<{template_args}>"]


@pytest.mark.parametrize("kwargs, rule", [(dict(stride=(1, 2)), "needs stride 1, got 1x2"),
                                         (dict(dilation=(2, 1)), "needs dilation 1, got 2x1")])
def test_forced_window_refuses_stride_and_dilation(kwargs, rule):
    geom = conv2d_geometry((1, 2, 9, 9), (2, 1, 3, 3), groups=2, **kwargs)
    with pytest.raises(ValueError, match=f"depthwise variant 'window' cannot run .*{rule}"):
        launch_depthwise.choose_variant(geom, np.float32, False, "window")


@pytest.mark.parametrize("bad", ("sliding", "", None, 7))
def test_unknown_variant_is_refused(bad, rng):
    case = CASE_BY_NAME["3x3_multiplier_3"]
    x, w, b, r = make_inputs(case, np.float32, "NCHW", rng)
    with pytest.raises(ValueError, match="depthwise_variant must be one of 'auto', 'direct', "
                                         "'tiled', 'window'"):
        run_window(case, x, w, b, r, data_format="NCHW", variant=bad)


def test_explain_names_the_window_kernel():
    e = gpuconv.explain((1, 32, 56, 56), (32, 1, 31, 31), padding=15, groups=32)
    assert e.kernel.startswith("conv2d_depthwise_window (tile ")
    assert "7 outputs per thread" in e.kernel


# ------------------------------------------------------------------------------------ the source


def test_constants_match_the_kernel_source():
    text = (KERNELS_DIR / "conv/depthwise.cu").read_text() + \
        (KERNELS_DIR / "conv/depthwise_tile.cuh").read_text()
    for name, value in (("DEPTHWISE_WINDOW_RUN", launch_depthwise.WINDOW_RUN),
                        ("DEPTHWISE_THREADS", launch_depthwise.TILED_THREADS),
                        ("DEPTHWISE_OUT_Q", launch_depthwise.OUT_Q)):
        match = re.search(rf"constexpr int {name} = (\d+);", text)
        assert match and int(match.group(1)) == value, name


def test_window_kernels_are_registered_and_hot():
    family = launch_depthwise.FAMILY
    for t in ("float", "__half", "__nv_bfloat16", "double"):
        for nhwc in ("false", "true"):
            name = f"conv2d_depthwise_window<{t}, {nhwc}>"
            assert name in family.name_expressions
            assert (name in family.hot) == (t in ("float", "__half"))


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc to emit PTX")
def test_window_main_loop_loads_one_input_and_one_weight_per_tap(tmp_path):
    # The offline evidence of kernels/conv/NOTES.md: per unrolled chunk of RUN taps, RUN * RUN
    # FMAs and 2 * RUN shared loads (the tiled kernel: 4 FMAs and 5 loads per tap).
    params = ", ".join(["const float*"] * 2 + ["int"] * 4 + ["gc::ConvShape", "float*"] + ["int"] * 3
                       + ["const float*"] * 2 + ["int"] * 4)
    ptx = compile_ptx(tmp_path, KERNELS_DIR / "conv/depthwise.cu", [
        f"conv2d_depthwise_window<float, {nhwc}>({params})" for nhwc in ("false", "true")])
    run = launch_depthwise.WINDOW_RUN
    for layout in ("Lb0", "Lb1"):
        loop = fma_loops(ptx, f"_Z23conv2d_depthwise_windowIf{layout}")[0]
        assert sum(t.startswith("fma.rn.f32") for t in loop) == run * run
        assert sum(t.startswith("ld.shared") for t in loop) == 2 * run
        assert not any(t.startswith(("ld.local", "st.local", "div.", "rem.")) for t in loop)
