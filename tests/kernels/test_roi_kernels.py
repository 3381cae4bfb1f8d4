"""The ROI kernels (roi_align, roi_pool and their gradients) against the NumPy reference, under
``gpuconv.simulate()`` in three thread orders, and, marked ``gpu``, on a GPU with CuPy.

Boxes cover torchvision's corner cases: inside, partly and wholly outside the image, tiny and
huge, inverted (x2 < x1), on both images of the batch. The default backward scatters with
atomics (compared with a tolerance); the deterministic one is a gather whose bits must not depend
on the thread order. Outputs the launchers allocate with ``empty`` are poisoned with NaN. The
separable passes of few adaptive boxes are off here (test_roi_align_separable.py tests them).
"""
from __future__ import annotations

import importlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gpuconv
from gpuconv import grad
from gpuconv._call_plans import PLANS
from gpuconv.pool.launch_common import ctype
from kernel_support import (BFLOAT16, DTYPE_IDS, DTYPES, ORDERS, bitwise_equal,
                            poison_launcher_outputs, record_launches, simulated, to_layout)

TOLERANCE = {np.dtype(np.float16): 5e-3, np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-12,
             **{d: 2e-2 for d in BFLOAT16}}
LAUNCHER_MODULES = ("gpuconv.roi.launch_align", "gpuconv.roi.launch_pool",
                    "gpuconv.roi.launch_accumulator", "gpuconv.roi.launch_transpose")

# [batch_index, x1, y1, x2, y2] in image coordinates; the feature map is the image at
# spatial_scale (0.5 below: a 10 x 12 map of a 20 x 24 image). Values are exact in float16.
BOXES = np.array([
    [0, 2.0, 2.0, 19.0, 17.0],       # inside
    [1, -6.0, -4.5, 9.25, 7.0],      # partly outside, top left
    [0, 14.5, 9.0, 31.0, 26.0],      # partly outside, bottom right
    [1, 44.0, 40.0, 60.0, 52.0],     # wholly outside
    [0, 6.5, 8.25, 6.75, 8.5],       # tiny (a quarter pixel)
    [1, -30.0, -22.0, 58.0, 47.0],   # huge: covers the map and far beyond
    [0, 11.0, 4.0, 5.5, 13.0],       # inverted in x (x2 < x1)
    [1, 3.0, 12.0, 12.0, 12.0],      # zero height
])
SCALE = 0.5
X_SHAPE = (2, 3, 10, 12)


@pytest.fixture(autouse=True)
def poisoned_outputs(monkeypatch):
    poison_launcher_outputs(monkeypatch, LAUNCHER_MODULES)


@pytest.fixture(autouse=True)
def without_separable_passes(monkeypatch):
    """The lanes, tabled, atomic and gather kernels for every sampling here: adaptive samplings
    of few boxes would take the separable passes, tested in test_roi_align_separable.py."""
    monkeypatch.setattr(importlib.import_module("gpuconv.roi.launch_align"),
                        "SEPARABLE_MAX_ROW_SUMS", 0)


def assert_matches(got, expected):
    assert type(got) is type(expected)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    tol = TOLERANCE[expected.dtype]
    np.testing.assert_allclose(got.astype(np.float64), expected.astype(np.float64),
                               rtol=tol, atol=tol, equal_nan=True)


def assert_gpu_matches(fn, *arrays, **kwargs):
    """``fn`` on CuPy copies of ``arrays`` matches ``fn`` on the NumPy arrays (the reference)."""
    import cupy
    got = fn(*(cupy.asarray(a) for a in arrays), **kwargs)
    assert_matches(cupy.asnumpy(got), fn(*arrays, **kwargs))


def inputs(rng, dtype, data_format, kind="normal"):
    x = rng.integers(-2, 3, size=X_SHAPE) if kind == "ties" else rng.standard_normal(X_SHAPE)
    return to_layout(x.astype(dtype), data_format), BOXES.astype(dtype)


def map_of(rng, dtype, channels, data_format):
    """A random 2 x channels x 10 x 12 feature map (the shape under BOXES) in ``data_format``:
    the wide-channel cases of the grouped and separable kernels' tests."""
    return to_layout(rng.standard_normal((2, channels, 10, 12)).astype(dtype), data_format)


def grad_output_for(rng, y):
    return rng.standard_normal(y.shape).astype(y.dtype)


# --------------------------------------------------------------------------------------------
# roi_align

ALIGN_OPTIONS = {
    "adaptive": dict(output_size=(3, 4), sampling_ratio=-1, aligned=False),
    "adaptive_aligned": dict(output_size=(3, 4), sampling_ratio=0, aligned=True),
    "ratio1_aligned": dict(output_size=2, sampling_ratio=1, aligned=True),
    "ratio2": dict(output_size=(4, 3), sampling_ratio=2, aligned=False),
    "ratio3_aligned": dict(output_size=(2, 5), sampling_ratio=3, aligned=True),
}


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("option", list(ALIGN_OPTIONS))
def test_roi_align_and_grads(rng, option, dtype, data_format):
    x, boxes = inputs(rng, dtype, data_format)
    kwargs = dict(ALIGN_OPTIONS[option], spatial_scale=SCALE, data_format=data_format)
    expected = gpuconv.roi_align(x, boxes, **kwargs)
    go = grad_output_for(rng, expected)
    expected_grad = grad.roi_align(go, x, boxes, **kwargs)
    deterministic = []
    for order in ORDERS:
        assert_matches(simulated(gpuconv.roi_align, x, boxes, order=order, **kwargs), expected)
        assert_matches(simulated(grad.roi_align, go, x, boxes, order=order,
                                 deterministic=False, **kwargs), expected_grad)
        deterministic.append(simulated(grad.roi_align, go, x, boxes, order=order,
                                       deterministic=True, **kwargs))
        assert_matches(deterministic[-1], expected_grad)
    assert all(bitwise_equal(deterministic[0], d) for d in deterministic[1:])


@pytest.mark.parametrize("lanes_target", [1, 1 << 20])
def test_roi_align_one_lane_and_many_lanes_per_bin(rng, monkeypatch, lanes_target):
    """TARGET_THREADS 1 forces one lane per bin (torchvision's loop); the default lets the tiny
    test grid use up to 32 lanes per bin (the warp-shuffle path)."""
    align = importlib.import_module("gpuconv.roi.launch_align")
    monkeypatch.setattr(align, "TARGET_THREADS", lanes_target)
    x, boxes = inputs(rng, np.float32, "NCHW")
    kwargs = dict(output_size=(2, 3), spatial_scale=SCALE, sampling_ratio=-1)
    expected = gpuconv.roi_align(x, boxes, **kwargs)
    assert_matches(simulated(gpuconv.roi_align, x, boxes, order="random", **kwargs), expected)
    go = grad_output_for(rng, expected)
    assert_matches(simulated(grad.roi_align, go, x, boxes, order="random", **kwargs),
                   grad.roi_align(go, x, boxes, **kwargs))


@pytest.mark.parametrize("per_thread", [4, 2])
@pytest.mark.parametrize("channels", [1, 2, 4, 6, 9])
@pytest.mark.parametrize("lanes_target", [1, 1 << 20])
def test_roi_align_forward_channel_groups(rng, monkeypatch, channels, lanes_target, per_thread):
    """The NCHW forward computes 4 channels per thread while x fits in L2, 2 beyond
    (forward_channels; the simulator's L2 is L2_BYTES_WITHOUT_GPU, 0 here for 2): whole groups, a
    partial last group, fewer channels than a group; with one lane and with several per bin."""
    align = importlib.import_module("gpuconv.roi.launch_align")
    monkeypatch.setattr(align, "TARGET_THREADS", lanes_target)
    if per_thread == 2:
        monkeypatch.setattr(align, "L2_BYTES_WITHOUT_GPU", 0)
    x = rng.standard_normal((2, channels, 10, 12)).astype(np.float32)
    assert align.forward_channels(x, "NCHW", "simulator") == per_thread
    assert align.forward_channels(x, "NHWC", "simulator") == 1
    boxes = BOXES.astype(np.float32)
    for kwargs in (dict(output_size=(3, 2), sampling_ratio=2),
                   dict(output_size=2, sampling_ratio=-1, aligned=True)):
        expected = gpuconv.roi_align(x, boxes, spatial_scale=SCALE, **kwargs)
        for order in ("forward", "random"):
            assert_matches(simulated(gpuconv.roi_align, x, boxes, order=order,
                                     spatial_scale=SCALE, **kwargs), expected)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_roi_align_forward_two_channels_per_thread_every_dtype(rng, monkeypatch, dtype):
    """The 2-channel forward (feature maps beyond L2) in every dtype and thread order."""
    monkeypatch.setattr(importlib.import_module("gpuconv.roi.launch_align"),
                        "L2_BYTES_WITHOUT_GPU", 0)
    x, boxes = inputs(rng, dtype, "NCHW")
    kwargs = dict(ALIGN_OPTIONS["ratio3_aligned"], spatial_scale=SCALE)
    expected = gpuconv.roi_align(x, boxes, **kwargs)
    for order in ORDERS:
        assert_matches(simulated(gpuconv.roi_align, x, boxes, order=order, **kwargs), expected)


def _tabled(monkeypatch, tables: bool) -> list[str]:
    """Make the forward take (or not take) the tabled kernel whatever the size; returns the
    launches' names from now on."""
    align = importlib.import_module("gpuconv.roi.launch_align")
    monkeypatch.setattr(align, "TABLED_MIN_ELEMENTS", 0 if tables else 1 << 62)
    return record_launches(monkeypatch, align)


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("option", list(ALIGN_OPTIONS))
def test_roi_align_tabled_forward(rng, monkeypatch, option, dtype, data_format):
    """The per-box tables (roi_align_tables.cu): every box kind, sampling (the ratio-2 constant
    grid included), dtype, layout and thread order against the reference."""
    launched = _tabled(monkeypatch, True)
    x, boxes = inputs(rng, dtype, data_format)
    kwargs = dict(ALIGN_OPTIONS[option], spatial_scale=SCALE, data_format=data_format)
    expected = gpuconv.roi_align(x, boxes, **kwargs)
    for order in ORDERS:
        assert_matches(simulated(gpuconv.roi_align, x, boxes, order=order, **kwargs), expected)
    grid = 2 if kwargs["sampling_ratio"] == 2 else 0
    layout = "true" if data_format == "NHWC" else "false"
    assert set(launched) == {f"roi_align_forward_tabled<{ctype(dtype)}, {layout}, {grid}>"}


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64],
                         ids=["float32", "float16", "float64"])
def test_roi_align_tabled_forward_gives_the_same_bits(rng, monkeypatch, dtype, data_format):
    """The tables hold the same factors, multiplied and summed in the same order as the lanes
    kernel's per-sample weights (one lane per bin): identical outputs."""
    align = importlib.import_module("gpuconv.roi.launch_align")
    monkeypatch.setattr(align, "TARGET_THREADS", 1)
    launched = record_launches(monkeypatch, align)
    x, boxes = inputs(rng, dtype, data_format)
    for option in ALIGN_OPTIONS.values():
        kwargs = dict(option, spatial_scale=SCALE, data_format=data_format)
        results = []
        for tables in (True, False):
            PLANS.clear()       # a recorded plan would replay the other kernel
            launched.clear()
            monkeypatch.setattr(align, "TABLED_MIN_ELEMENTS", 0 if tables else 1 << 62)
            results.append(simulated(gpuconv.roi_align, x, boxes, **kwargs))
            assert launched and all(("tabled" in name) == tables for name in launched)
        assert bitwise_equal(*results), option


@pytest.mark.parametrize("entries", [1, 3, 8])
def test_roi_align_tabled_forward_past_its_tables(rng, monkeypatch, entries):
    """Boxes whose sample grids need more entries than the tables hold compute their samples
    per element (the huge box always; with 1 entry every box)."""
    _tabled(monkeypatch, True)
    monkeypatch.setattr(importlib.import_module("gpuconv.roi.launch_align"),
                        "MAX_TABLE_ENTRIES", entries)
    x, boxes = inputs(rng, np.float32, "NHWC")
    for option in ("adaptive", "ratio2", "ratio3_aligned"):
        kwargs = dict(ALIGN_OPTIONS[option], spatial_scale=SCALE, data_format="NHWC")
        assert_matches(simulated(gpuconv.roi_align, x, boxes, order="random", **kwargs),
                       gpuconv.roi_align(x, boxes, **kwargs))


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_roi_align_tabled_forward_several_blocks_per_box(rng, monkeypatch, data_format):
    """A box of 37 x 3 x 4 = 444 output elements: two blocks, the second partly idle."""
    _tabled(monkeypatch, True)
    x = to_layout(rng.standard_normal((2, 37, 10, 12)).astype(np.float32), data_format)
    boxes = BOXES.astype(np.float32)
    kwargs = dict(output_size=(3, 4), spatial_scale=SCALE, sampling_ratio=2,
                  data_format=data_format)
    expected = gpuconv.roi_align(x, boxes, **kwargs)
    for order in ("forward", "reverse"):
        assert_matches(simulated(gpuconv.roi_align, x, boxes, order=order, **kwargs), expected)


def test_roi_align_forward_kernel_by_size():
    align = importlib.import_module("gpuconv.roi.launch_align")
    from gpuconv.roi.geometry import RoiGeometry
    fpn = RoiGeometry(N=2, C=256, H=200, W=304, K=1024, PH=7, PW=7, spatial_scale=0.25,
                      sampling_ratio=2)
    assert align.uses_tables(fpn) and align.table_entries(fpn) == 14
    adaptive = RoiGeometry(N=1, C=256, H=50, W=76, K=1000, PH=7, PW=7, spatial_scale=1 / 16)
    assert align.uses_tables(adaptive) and align.table_entries(adaptive) == 7 * 11
    huge = RoiGeometry(N=1, C=256, H=800, W=800, K=8, PH=7, PW=7, spatial_scale=1.0)
    assert not align.uses_tables(huge)
    assert align.table_entries(huge) == align.MAX_TABLE_ENTRIES


def _scatter_through_nhwc(monkeypatch, through: bool) -> tuple[list[str], list[str]]:
    """Make NCHW atomic backwards add into an NHWC scratch (or not) whatever the size; returns
    the launches' names (launch_align's, the layout copies') from now on."""
    align = importlib.import_module("gpuconv.roi.launch_align")
    monkeypatch.setattr(align, "NHWC_SCATTER_MIN_ATOMICS_PER_ELEMENT", 0 if through else 1 << 62)
    return (record_launches(monkeypatch, align),
            record_launches(monkeypatch,
                            importlib.import_module("gpuconv.layout.launch_transpose")))


@pytest.mark.parametrize("through", [True, False])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_roi_align_nchw_scatter_through_an_nhwc_scratch(rng, monkeypatch, dtype, through):
    """The NCHW atomic backward with its threads in NHWC order, adding into an NHWC scratch that
    batched_transpose transposes (and rounds) once, or directly into NCHW: every sampling
    option, dtype and thread order against the reference."""
    scattered, finished = _scatter_through_nhwc(monkeypatch, through)
    x, boxes = inputs(rng, dtype, "NCHW")
    for option in ALIGN_OPTIONS.values():
        kwargs = dict(option, spatial_scale=SCALE)
        go = grad_output_for(rng, gpuconv.roi_align(x, boxes, **kwargs))
        expected = grad.roi_align(go, x, boxes, **kwargs)
        for order in ORDERS:
            assert_matches(simulated(grad.roi_align, go, x, boxes, order=order,
                                     deterministic=False, **kwargs), expected)
    t = ctype(dtype)
    assert set(scattered) == {f"roi_align_backward_atomic<{t}, {'true' if through else 'false'}, "
                              "false>"}
    scratch = "float" if t in ("__half", "__nv_bfloat16") else t
    assert set(finished) == ({f"batched_transpose<{scratch}, {t}>"} if through else set())


def test_roi_align_scatter_layout_by_size():
    """NCHW atomic backwards scatter through NHWC where the sample-corner atomics outnumber the
    input's elements: every FPN and mask-head case of the bench, not a few huge boxes."""
    align = importlib.import_module("gpuconv.roi.launch_align")
    from gpuconv.roi.geometry import RoiGeometry

    def case(N, H, W, K, P, ratio):
        return RoiGeometry(N=N, C=256, H=H, W=W, K=K, PH=P, PW=P, spatial_scale=0.25,
                           sampling_ratio=ratio)
    assert align.scatters_through_nhwc(case(2, 200, 304, 1024, 7, 2))     # FPN P2
    assert align.scatters_through_nhwc(case(1, 50, 76, 1000, 7, 2))       # FPN P4
    assert align.scatters_through_nhwc(case(1, 200, 304, 100, 14, 2))     # mask head
    assert not align.scatters_through_nhwc(case(16, 160, 160, 6, 7, 0))   # few huge, adaptive
    assert not align.scatters_through_nhwc(case(1, 200, 304, 10, 7, 2))   # few boxes


def test_roi_align_boxes_as_a_list_and_a_wide_feature_map(rng):
    """A list of per-image boxes; a map wider than one gather tile (16 columns) and taller than
    one (4 rows), with more boxes than one 256-roi compaction chunk."""
    x = rng.standard_normal((2, 2, 9, 37)).astype(np.float32)
    k = 300
    corners = rng.uniform(-10.0, 80.0, size=(k, 4)).astype(np.float32)
    corners[:, 2:] = corners[:, :2] + rng.uniform(0.0, 30.0, size=(k, 2)).astype(np.float32)
    boxes = [corners[: k // 2], corners[k // 2:]]
    kwargs = dict(output_size=2, spatial_scale=0.5, sampling_ratio=2, aligned=True)
    expected = gpuconv.roi_align(x, boxes, **kwargs)
    assert_matches(simulated(gpuconv.roi_align, x, boxes, **kwargs), expected)
    go = grad_output_for(rng, expected)
    assert_matches(simulated(grad.roi_align, go, x, boxes, deterministic=True, **kwargs),
                   grad.roi_align(go, x, boxes, **kwargs))


def test_roi_align_gather_takes_several_passes_over_many_rois(rng):
    """600 boxes on one small map: each tile lists more rois than one pass holds (512)."""
    x = rng.standard_normal((1, 2, 6, 7)).astype(np.float64)
    boxes = np.zeros((600, 5))
    boxes[:, 1:3] = rng.uniform(-2.0, 5.0, size=(600, 2))
    boxes[:, 3:5] = boxes[:, 1:3] + rng.uniform(0.5, 4.0, size=(600, 2))
    kwargs = dict(output_size=2, sampling_ratio=1)
    go = rng.standard_normal((600, 2, 2, 2))
    expected = grad.roi_align(go, x, boxes, **kwargs)
    results = [simulated(grad.roi_align, go, x, boxes, order=order, deterministic=True, **kwargs)
               for order in ("forward", "reverse")]
    assert_matches(results[0], expected)
    assert bitwise_equal(results[0], results[1])


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_boxes_match_the_reference(data):
    """Random boxes anywhere around a random small map (inverted, tiny, huge), random output
    size, sampling ratio and alignment, both layouts; roi_align and roi_pool with both backward
    modes."""
    draw = data.draw
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    N, C, H, W = 2, draw(st.integers(1, 3)), draw(st.integers(1, 11)), draw(st.integers(1, 11))
    K = draw(st.integers(1, 12))
    boxes = np.concatenate([rng.integers(0, N, size=(K, 1)),
                            rng.uniform(-8.0, 30.0, size=(K, 4)) * rng.choice([0.1, 1.0, 3.0],
                                                                               size=(K, 1))],
                           axis=1)
    data_format = draw(st.sampled_from(["NCHW", "NHWC"]))
    x = to_layout(rng.standard_normal((N, C, H, W)), data_format)
    kwargs = dict(output_size=(draw(st.integers(1, 4)), draw(st.integers(1, 4))),
                  spatial_scale=draw(st.sampled_from([0.25, 0.5, 1.0])), data_format=data_format)
    align = dict(sampling_ratio=draw(st.integers(-1, 3)), aligned=draw(st.booleans()))
    order = draw(st.sampled_from(ORDERS))
    for forward, gradient, options in ((gpuconv.roi_align, grad.roi_align, align),
                                       (gpuconv.roi_pool, grad.roi_pool, {})):
        expected = forward(x, boxes, **kwargs, **options)
        assert_matches(simulated(forward, x, boxes, order=order, **kwargs, **options), expected)
        go = rng.standard_normal(expected.shape)
        expected_grad = gradient(go, x, boxes, **kwargs, **options)
        for deterministic in (False, True):
            assert_matches(simulated(gradient, go, x, boxes, order=order,
                                     deterministic=deterministic, **kwargs, **options),
                           expected_grad)


def assert_same_non_finites_and_close(got, expected):
    """NaN, +inf and -inf at the same places; the finite values within tolerance."""
    for where in (np.isnan, np.isposinf, np.isneginf):
        np.testing.assert_array_equal(where(got), where(expected))
    finite = np.isfinite(expected)
    tol = TOLERANCE[expected.dtype]
    np.testing.assert_allclose(got[finite].astype(np.float64),
                               expected[finite].astype(np.float64), rtol=tol, atol=tol)


# Boxes whose samples fall on pixel centres (a bilinear term of weight 0 towards the next
# pixel), on the last row and column (clamped: both terms on one pixel, one of weight 0) and in
# [-1, 0] (clamped to 0: a weight-0 term on pixel 1), on a 1 x 2 x 5 x 6 map.
EDGE_BOXES = np.array([
    [0, 0.0, 0.0, 2.0, 2.0],      # ratio 1, one bin: the sample at (1, 1)
    [0, 1.0, 1.0, 3.0, 3.0],      # the sample at (2, 2)
    [0, 3.0, 2.0, 7.0, 6.0],      # samples past the last row and column
    [0, -1.5, -1.25, 0.5, 0.75],  # samples in [-1, 0]
    [0, -0.5, 0.0, 4.0, 1.5],
])


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64],
                         ids=["float32", "float16", "float64"])
@pytest.mark.parametrize("sampling_ratio", [1, 2, -1])
def test_roi_align_gradient_of_infinities_and_nans(rng, sampling_ratio, dtype, data_format):
    """torchvision adds every bilinear term of a sample, weight 0 included, so an infinite or
    NaN gradient gives NaN on the pixels a weight-0 term names: both backward modes too."""
    x = to_layout(np.zeros((1, 2, 5, 6), dtype), data_format)
    boxes = EDGE_BOXES.astype(dtype)
    kwargs = dict(output_size=(1, 2), spatial_scale=1.0, sampling_ratio=sampling_ratio,
                  data_format=data_format)
    go = rng.standard_normal(gpuconv.roi_align(x, boxes, **kwargs).shape)
    go.flat[::3] = np.inf
    go.flat[1::7] = -np.inf
    go.flat[2::11] = np.nan
    go = go.astype(dtype)
    expected = grad.roi_align(go, x, boxes, **kwargs)
    assert np.isnan(expected).any() and np.isinf(expected).any()
    for deterministic in (False, True):
        for order in ORDERS:
            got = simulated(grad.roi_align, go, x, boxes, order=order,
                            deterministic=deterministic, **kwargs)
            assert_same_non_finites_and_close(got, expected)


@pytest.mark.parametrize("box,expected", [
    ([0, 0.0, 0.0, 2.0, 2.0], [[0, 0, 0], [0, np.inf, np.nan], [0, np.nan, np.nan]]),
    ([0, 1.0, 1.0, 3.0, 3.0], [[0, 0, 0], [0, 0, 0], [0, 0, np.nan]]),
])
def test_roi_align_gather_adds_the_weight_zero_terms(box, expected):
    """The two cases of the eighth audit: one sample of gradient +inf at (1, 1), whose terms
    towards row 2 and column 2 have weight 0, and at (2, 2), the last pixel (clamped)."""
    go = np.full((1, 1, 1, 1), np.inf, np.float32)
    x = np.zeros((1, 1, 3, 3), np.float32)
    got = simulated(grad.roi_align, go, x, np.array([box], np.float32), output_size=1,
                    sampling_ratio=1, deterministic=True)
    np.testing.assert_array_equal(got[0, 0], np.array(expected, np.float32))


# --------------------------------------------------------------------------------------------
# roi_pool


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("output_size", [(3, 4), 2, (7, 5)])
def test_roi_pool_and_grads(rng, output_size, dtype, data_format):
    x, boxes = inputs(rng, dtype, data_format, kind="ties")
    kwargs = dict(output_size=output_size, spatial_scale=SCALE, data_format=data_format)
    expected = gpuconv.roi_pool(x, boxes, **kwargs)
    go = grad_output_for(rng, expected)
    expected_grad = grad.roi_pool(go, x, boxes, **kwargs)
    deterministic = []
    for order in ORDERS:
        assert_matches(simulated(gpuconv.roi_pool, x, boxes, order=order, **kwargs), expected)
        assert_matches(simulated(grad.roi_pool, go, x, boxes, order=order, deterministic=False,
                                 **kwargs), expected_grad)
        deterministic.append(simulated(grad.roi_pool, go, x, boxes, order=order,
                                       deterministic=True, **kwargs))
        assert_matches(deterministic[-1], expected_grad)
    assert all(bitwise_equal(deterministic[0], d) for d in deterministic[1:])


@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_roi_pool_backward_from_the_forwards_own_argmax(rng, monkeypatch, data_format,
                                                        deterministic):
    """The framework wrappers keep the forward's argmax and rois (roi_pool_with_argmax) and the
    backward takes them instead of running the forward again and scanning the rois again."""
    from gpuconv.roi import api as roi_api, grad as roi_grad, launch_pool
    x, boxes = inputs(rng, np.float32, data_format, kind="ties")
    kwargs = dict(output_size=(3, 4), spatial_scale=SCALE, data_format=data_format)
    expected = gpuconv.roi_pool(x, boxes, **kwargs)
    go = grad_output_for(rng, expected)
    expected_grad = grad.roi_pool(go, x, boxes, **kwargs)
    assert roi_api.roi_pool_with_argmax(x, boxes, **kwargs)[1] is None  # the reference's own way
    box_list = [boxes[boxes[:, 0] == i, 1:] for i in range(2)]
    y, argmax, rois = simulated(roi_api.roi_pool_with_argmax, x, box_list, **kwargs)
    assert_matches(y, simulated(gpuconv.roi_pool, x, box_list, **kwargs))
    assert argmax.dtype == np.int64 and argmax.shape == y.shape
    assert rois.shape == boxes.shape and rois.flags.c_contiguous
    y, argmax, rois = simulated(roi_api.roi_pool_with_argmax, x, boxes, **kwargs)
    assert_matches(y, expected)
    forwards, scans = _count_forwards_and_scans(monkeypatch, launch_pool, "_forward")
    got = simulated(roi_grad.roi_pool_with_own_argmax, go, x, rois, argmax=argmax,
                    deterministic=deterministic, order="random", **kwargs)
    assert forwards == [] and scans == []
    assert_matches(got, expected_grad)
    simulated(grad.roi_pool, go, x, boxes, deterministic=deterministic, **kwargs)
    # without an argmax the backward recomputes it; the public gradient scans its boxes
    assert len(forwards) == 1 and len(scans) == 1
    for wrong, message in ((argmax[:1], "shape"), (argmax.astype(np.int32), "int64"),
                           (argmax.astype(np.float64), "integer dtype")):
        with pytest.raises((ValueError, TypeError), match=message):
            simulated(roi_grad.roi_pool_with_own_argmax, go, x, rois, argmax=wrong, **kwargs)


def _count_forwards_and_scans(monkeypatch, module, forward_name):
    """Lists that grow by one with each call of ``module.forward_name`` and of the rois value
    scan (geometry._scan_box_values) from now on."""
    from gpuconv.roi import geometry
    forwards, scans = [], []
    real_forward, real_scan = getattr(module, forward_name), geometry._scan_box_values
    monkeypatch.setattr(module, forward_name, lambda *a, **k: (
        forwards.append(k), real_forward(*a, **k))[1])
    monkeypatch.setattr(geometry, "_scan_box_values", lambda *a, **k: (
        scans.append(a), real_scan(*a, **k))[1])
    return forwards, scans


@pytest.mark.parametrize("deterministic", [False, True])
def test_roi_align_backward_from_the_forwards_checked_rois(rng, monkeypatch, deterministic):
    """roi_align_keeping_rois returns the checked rois (built from a list too);
    roi_align_from_checked_rois takes them without scanning their values again, and checks
    everything else."""
    from gpuconv.roi import api as roi_api, grad as roi_grad, launch_align
    x, boxes = inputs(rng, np.float32, "NCHW")
    kwargs = dict(output_size=(3, 4), spatial_scale=SCALE, sampling_ratio=2)
    box_list = [boxes[boxes[:, 0] == i, 1:] for i in range(2)]
    for given in (boxes, box_list):
        y, rois = simulated(roi_api.roi_align_keeping_rois, x, given, **kwargs)
        assert_matches(y, gpuconv.roi_align(x, given, **kwargs))
        assert rois.shape[1] == 5 and rois.flags.c_contiguous
        go = grad_output_for(rng, y)
        _, scans = _count_forwards_and_scans(monkeypatch, launch_align, "roi_align")
        got = simulated(roi_grad.roi_align_from_checked_rois, go, x, rois,
                        deterministic=deterministic, **kwargs)
        assert scans == []
        assert_matches(got, grad.roi_align(go, x, given, **kwargs))
        with pytest.raises(ValueError, match="grad_output"):
            roi_grad.roi_align_from_checked_rois(go[:1], x, rois, **kwargs)
        monkeypatch.undo()
        poison_launcher_outputs(monkeypatch, LAUNCHER_MODULES)


def test_roi_pool_ignores_nan_and_tiny_values(rng):
    """torchvision's running maximum starts at -FLT_MAX and takes only larger values: NaN never
    wins, and a bin of -inf gives -FLT_MAX with no gradient."""
    x = rng.standard_normal(X_SHAPE).astype(np.float32)
    x[0, :, 1:4, 1:5] = np.nan
    x[1, 0] = -np.inf
    kwargs = dict(output_size=(3, 2), spatial_scale=SCALE)
    expected = gpuconv.roi_pool(x, BOXES.astype(np.float32), **kwargs)
    assert_matches(simulated(gpuconv.roi_pool, x, BOXES.astype(np.float32), **kwargs), expected)
    go = grad_output_for(rng, expected)
    for deterministic in (False, True):
        assert_matches(simulated(grad.roi_pool, go, x, BOXES.astype(np.float32),
                                 deterministic=deterministic, **kwargs),
                       grad.roi_pool(go, x, BOXES.astype(np.float32), **kwargs))


# A box whose last bin ends one row (column) past it, ceil(bins * float32(size / bins)) =
# size + 1, at the first row (column) of one of the gather's tiles (kernels/common/roi_tiles.cuh:
# 4 rows x 16 columns), where its maximum sits: rows 1..7 in 13 bins end at row 8; columns 1..15
# in 19 bins end at column 16.
PAST_THE_BOX = {
    "rows": ((1, 1, 12, 4), (8, slice(None)), [0, 0, 1, 3, 7], (13, 1)),
    "columns": ((1, 1, 4, 20), (slice(None), 16), [0, 1, 0, 15, 3], (1, 19)),
}


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("axis", sorted(PAST_THE_BOX))
def test_roi_pool_gather_reaches_the_row_past_the_box(data_format, axis):
    """The deterministic gather lists a box for the tile its last bin reaches past the box."""
    shape, maximum, box, output_size = PAST_THE_BOX[axis]
    x = np.zeros(shape, np.float32)
    x[0, 0][maximum] = 5.0
    boxes = np.array([box], np.float32)
    go = np.ones((1, 1, *output_size), np.float32)
    if data_format == "NHWC":
        x, go = x.transpose(0, 2, 3, 1).copy(), go.transpose(0, 2, 3, 1).copy()
    kwargs = dict(output_size=output_size, data_format=data_format)
    expected = grad.roi_pool(go, x, boxes, **kwargs)
    bins = output_size[0] * output_size[1]
    assert expected.sum() == bins and expected[x == 5].sum() == 1  # the last bin's, past the box
    for deterministic in (False, True):
        assert_matches(simulated(grad.roi_pool, go, x, boxes, deterministic=deterministic,
                                 **kwargs), expected)


# --------------------------------------------------------------------------------------------
# on a GPU (skipped without one)


@pytest.mark.gpu
@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_gpu_matches_reference(rng, dtype, data_format, deterministic):
    import cupy
    x, boxes = inputs(rng, dtype, data_format)
    for forward, gradient, kwargs in (
            (gpuconv.roi_align, grad.roi_align, dict(output_size=(3, 4), sampling_ratio=2)),
            (gpuconv.roi_align, grad.roi_align, dict(output_size=7, aligned=True)),
            (gpuconv.roi_pool, grad.roi_pool, dict(output_size=(3, 4)))):
        kwargs = dict(kwargs, spatial_scale=SCALE, data_format=data_format)
        expected = forward(x, boxes, **kwargs)
        go = grad_output_for(rng, expected)
        x_gpu, boxes_gpu = cupy.asarray(x), cupy.asarray(boxes)
        assert_matches(cupy.asnumpy(forward(x_gpu, boxes_gpu, **kwargs)), expected)
        assert_matches(cupy.asnumpy(gradient(cupy.asarray(go), x_gpu, boxes_gpu,
                                             deterministic=deterministic, **kwargs)),
                       gradient(go, x, boxes, **kwargs))


@pytest.mark.gpu
@pytest.mark.parametrize("through", [True, False])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_gpu_nchw_scatter_layouts_match_reference(rng, monkeypatch, dtype, through):
    """Both NCHW atomic backwards (directly, through the NHWC scratch) on the GPU, on a map
    larger than one transpose tile in both directions."""
    _scatter_through_nhwc(monkeypatch, through)
    x = rng.standard_normal((2, 45, 10, 12)).astype(dtype)
    boxes = BOXES.astype(dtype)
    for kwargs in (dict(output_size=(3, 4), sampling_ratio=2), dict(output_size=7, aligned=True)):
        kwargs = dict(kwargs, spatial_scale=SCALE)
        go = grad_output_for(rng, gpuconv.roi_align(x, boxes, **kwargs))
        assert_gpu_matches(grad.roi_align, go, x, boxes, deterministic=False, **kwargs)


@pytest.mark.parametrize("tables", [True, False])
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_roi_align_tall_boxes_take_every_sample_the_map_holds(monkeypatch, rng, data_format,
                                                              tables):
    """Adaptive grids of 131072 and 300000 samples per bin (no cap: torchvision takes
    ceil(extent / bins)), of which the loops visit only those that can lie in the map
    (gc::bin_samples_inside): the lanes or tabled forward (past its tables), the atomic and the
    gather backward, against the reference."""
    _tabled(monkeypatch, tables)
    x = to_layout(rng.standard_normal((2, 3, 5, 4)), data_format)
    boxes = np.array([[0, 0.0, 0.0, 1.0, 131072.0], [1, -150000.0, 1.0, 150000.0, 3.0],
                      [1, 0.5, -70000.5, 3.0, 2.0]])
    kwargs = dict(output_size=(1, 2), sampling_ratio=0, data_format=data_format)
    expected = gpuconv.roi_align(x, boxes, **kwargs)
    assert_matches(simulated(gpuconv.roi_align, x, boxes, order="random", **kwargs), expected)
    dy = rng.standard_normal(expected.shape)
    for deterministic in (False, True):
        assert_matches(simulated(grad.roi_align, dy, x, boxes, order="random",
                                 deterministic=deterministic, **kwargs),
                       grad.roi_align(dy, x, boxes, deterministic=deterministic, **kwargs))
