"""roi_align's separable forward and backward (kernels/roi/roi_align_separable.cu: row sums, then
column sums; roi_align_separable_grad.cu, its transpose: for few boxes with adaptive sampling)
under ``gpuconv.simulate()`` against the NumPy reference. Outputs and the scratch the launcher
allocates with ``empty`` are poisoned with NaN, so a second pass that reads an entry the first
did not write gives NaN.
"""
from __future__ import annotations

import importlib

import numpy as np
import pytest

import gpuconv
from gpuconv._call_plans import PLANS
from gpuconv.pool.launch_common import ctype
from gpuconv.roi.geometry import RoiGeometry
from kernel_support import (DTYPE_IDS, DTYPES, ORDERS, bitwise_equal, poison_launcher_outputs,
                            record_launches, sanitized, simulated, to_layout)
from test_roi_kernels import (ALIGN_OPTIONS, BOXES, EDGE_BOXES, SCALE, assert_gpu_matches,
                              assert_matches, assert_same_non_finites_and_close, map_of)

align = importlib.import_module("gpuconv.roi.launch_align")
# 3: a partial block of row sums per bin row; 300: two blocks of channels in pass 2 (256 each)
CHANNELS = (3, 300)


@pytest.fixture(autouse=True)
def poisoned_outputs(monkeypatch):
    poison_launcher_outputs(monkeypatch, ("gpuconv.roi.launch_align",))


def _separable(monkeypatch) -> list[str]:
    """Make the forward and the gradient take the separable kernels whatever the sampling and
    size; returns the launches' names from now on."""
    monkeypatch.setattr(align, "uses_separable", lambda geom: True)
    return record_launches(monkeypatch, align)


def _names(dtype, data_format, passes=("rows", "columns")) -> set[str]:
    """The separable kernels' names: the forward's passes, or ``GRAD_PASSES``."""
    t, layout = ctype(dtype), "true" if data_format == "NHWC" else "false"
    return {f"roi_align_separable_{name}<{t}, {layout}>" for name in passes}


GRAD_PASSES = ("grad_columns", "grad_rows")


def _inputs(rng, dtype, data_format, channels, option):
    """(x, boxes, keywords): a 2 x channels x 10 x 12 map, the kernel tests' boxes and the
    sampling ``option`` of ALIGN_OPTIONS."""
    x = map_of(rng, dtype, channels, data_format)
    kwargs = dict(ALIGN_OPTIONS[option], spatial_scale=SCALE, data_format=data_format)
    return x, BOXES.astype(dtype), kwargs


@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("option", list(ALIGN_OPTIONS))
def test_separable_forward_matches_the_reference(rng, monkeypatch, option, dtype, data_format,
                                                 channels):
    """Every box kind of the kernel tests (inside, partly and wholly outside, a quarter pixel,
    far beyond the map, inverted, zero height), every sampling option (the fixed ratios leave
    rows and columns between samples untouched), dtype, layout and thread order."""
    launched = _separable(monkeypatch)
    x, boxes, kwargs = _inputs(rng, dtype, data_format, channels, option)
    expected = gpuconv.roi_align(x, boxes, **kwargs)
    for order in ORDERS:
        assert_matches(simulated(gpuconv.roi_align, x, boxes, order=order, **kwargs), expected)
    assert set(launched) == _names(dtype, data_format)


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64],
                         ids=["float32", "float16", "float64"])
@pytest.mark.parametrize("sampling_ratio", [-1, 1, 2])
def test_separable_forward_of_infinities_and_nans(rng, sampling_ratio, dtype, data_format,
                                                   monkeypatch):
    """torchvision adds all four terms of a sample, weight 0 included: a non-finite pixel under a
    weight-0 term gives NaN, one under positive weights keeps its infinity, one no sample names
    changes nothing. Boxes on pixel centres, past the last row and column and in [-1, 0]."""
    _separable(monkeypatch)
    x = rng.standard_normal((1, 2, 5, 6)).astype(dtype)
    x[0, 0, 1, 1] = np.inf
    x[0, 0, 2, 3] = -np.inf
    x[0, 1, 4, 5] = np.nan
    x[0, 1, 0, 1] = np.inf
    x = to_layout(x, data_format)
    boxes = EDGE_BOXES.astype(dtype)
    kwargs = dict(output_size=(2, 3), spatial_scale=1.0, sampling_ratio=sampling_ratio,
                  aligned=False, data_format=data_format)
    expected = gpuconv.roi_align(x, boxes, **kwargs)
    assert not np.isfinite(expected).all() and np.isfinite(expected).any()
    for order in ORDERS:
        assert_same_non_finites_and_close(
            simulated(gpuconv.roi_align, x, boxes, order=order, **kwargs), expected)


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_separable_forward_over_several_chunks(rng, monkeypatch, data_format):
    """One bin spanning more than 256 rows and columns (the weight tables' chunk) with adaptive
    sampling, and a box whose corners lie beyond 2^20 (its span is the whole axis) with a fixed
    ratio (adaptive, its grid would be capped at 65536 samples per bin)."""
    launched = _separable(monkeypatch)
    x = to_layout(rng.standard_normal((2, 2, 300, 280)).astype(np.float32), data_format)
    cases = ((np.array([[0, -4.0, -3.0, 284.0, 303.0], [1, 100.5, 40.25, 180.0, 299.0]],
                       np.float32), -1),
             (np.array([[1, -3e6, 2.0, 3e6, 298.0], [0, 10.0, -2e6, 30.0, 2e6]], np.float32), 2))
    for boxes, sampling_ratio in cases:
        kwargs = dict(output_size=1, spatial_scale=1.0, sampling_ratio=sampling_ratio,
                      data_format=data_format)
        assert_matches(simulated(gpuconv.roi_align, x, boxes, order="random", **kwargs),
                       gpuconv.roi_align(x, boxes, **kwargs))
    assert set(launched) == _names(np.float32, data_format)


def test_separable_forward_replays_its_plan(rng, monkeypatch):
    """A second call with the same signature and new boxes replays the recorded launches and
    row-sum scratch: still the reference's values."""
    _separable(monkeypatch)
    x = rng.standard_normal((2, 3, 10, 12)).astype(np.float32)
    kwargs = dict(output_size=(3, 4), spatial_scale=SCALE, sampling_ratio=-1)
    replays = PLANS.replays
    for scale in (1.0, 0.75):
        boxes = BOXES.astype(np.float32)
        boxes[:, 1:] *= np.float32(scale)
        assert_matches(simulated(gpuconv.roi_align, x, boxes, **kwargs),
                       gpuconv.roi_align(x, boxes, **kwargs))
    assert PLANS.replays == replays + 1


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_lanes_forward_with_adaptive_sampling(rng, monkeypatch, dtype, data_format):
    """The lanes kernel still runs adaptive samplings whose row sums would not fit
    SEPARABLE_MAX_ROW_SUMS: every box kind, both adaptive options, every thread order."""
    monkeypatch.setattr(align, "SEPARABLE_MAX_ROW_SUMS", 0)
    launched = record_launches(monkeypatch, align)
    x = map_of(rng, dtype, 3, data_format)
    boxes = BOXES.astype(dtype)
    for option in ("adaptive", "adaptive_aligned"):
        kwargs = dict(ALIGN_OPTIONS[option], spatial_scale=SCALE, data_format=data_format)
        expected = gpuconv.roi_align(x, boxes, **kwargs)
        for order in ORDERS:
            assert_matches(simulated(gpuconv.roi_align, x, boxes, order=order, **kwargs),
                           expected)
    assert launched and all(name.startswith("roi_align_forward<") for name in launched)


def test_forward_kernel_for_few_boxes():
    """The bench's few huge boxes with adaptive sampling take the separable kernels; a fixed
    ratio keeps the lanes kernel, as do outputs for the tabled kernels, row sums past
    SEPARABLE_MAX_ROW_SUMS and (box, bin row) pairs past SEPARABLE_MAX_PAIRS."""
    def case(K, C, H, W, P, ratio):
        return RoiGeometry(N=16, C=C, H=H, W=W, K=K, PH=P, PW=P, spatial_scale=1 / 16,
                           sampling_ratio=ratio)
    assert align.uses_separable(case(6, 256, 160, 160, 7, -1))
    assert align.uses_separable(case(6, 256, 160, 160, 7, 0))
    assert not align.uses_separable(case(6, 256, 160, 160, 7, 2))
    assert not align.uses_separable(case(1000, 256, 160, 160, 7, -1))     # tabled
    assert not align.uses_separable(case(4, 1024, 64, 8192, 7, -1))       # 2^28 row sums
    assert align.uses_separable(case(146, 4, 160, 160, 7, -1))            # 1022 pairs
    assert not align.uses_separable(case(147, 4, 160, 160, 7, -1))        # 1029 pairs


# --------------------------------------------------------------------------------------------
# on a GPU (skipped without one)


@pytest.mark.gpu
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_gpu_separable_forward_matches_reference(rng, monkeypatch, dtype, data_format):
    """The two passes on the GPU: every box kind, adaptive and fixed sampling, both channel
    counts, and bins spanning several weight chunks."""
    _separable(monkeypatch)
    for channels in CHANNELS:
        for option in ("adaptive", "adaptive_aligned", "ratio2"):
            x, boxes, kwargs = _inputs(rng, dtype, data_format, channels, option)
            assert_gpu_matches(gpuconv.roi_align, x, boxes, **kwargs)
    x = to_layout(rng.standard_normal((1, 2, 300, 280)).astype(dtype), data_format)
    boxes = np.array([[0, -4.0, -3.0, 284.0, 303.0]], dtype)
    assert_gpu_matches(gpuconv.roi_align, x, boxes, output_size=(2, 3), spatial_scale=1.0,
                       sampling_ratio=-1, data_format=data_format)


@pytest.mark.slow       # each sanitizer builds its own copy of the kernels
@pytest.mark.parametrize("sanitize", ["address", "thread"])
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_separable_forward_sanitized(rng, monkeypatch, data_format, sanitize):
    """Under the simulator's AddressSanitizer (each array in a block of exactly its size: the
    last block's idle threads and the boxes past the map must not touch past the map, the row
    sums or the output) and ThreadSanitizer (the weight chunks' barriers), with the plain run's
    bits."""
    _separable(monkeypatch)
    x = map_of(rng, np.float32, 3, data_format)
    boxes = BOXES.astype(np.float32)
    kwargs = dict(output_size=(3, 4), spatial_scale=SCALE, sampling_ratio=-1,
                  data_format=data_format)
    results = [sanitized(mode, gpuconv.roi_align, x, boxes, **kwargs)
               for mode in (None, sanitize)]
    assert bitwise_equal(*results)


# --------------------------------------------------------------------------------------------
# the backward (kernels/roi/roi_align_separable_grad.cu)


@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("option", list(ALIGN_OPTIONS))
def test_separable_gradient_matches_the_reference(rng, monkeypatch, option, dtype, data_format,
                                                  channels):
    """Every box kind, sampling option, dtype, layout and both modes (the same kernels: no
    atomics), the same bits in every thread order (each element sums in a fixed order)."""
    launched = _separable(monkeypatch)
    x, boxes, kwargs = _inputs(rng, dtype, data_format, channels, option)
    go = rng.standard_normal(gpuconv.roi_align(x, boxes, **kwargs).shape).astype(dtype)
    expected = gpuconv.grad.roi_align(go, x, boxes, **kwargs)
    for deterministic in (False, True):
        results = [simulated(gpuconv.grad.roi_align, go, x, boxes, order=order,
                             deterministic=deterministic, **kwargs) for order in ORDERS]
        assert_matches(results[0], expected)
        assert all(bitwise_equal(results[0], other) for other in results[1:])
    assert set(launched) == _names(dtype, data_format, GRAD_PASSES)


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64],
                         ids=["float32", "float16", "float64"])
@pytest.mark.parametrize("sampling_ratio", [-1, 1, 2])
def test_separable_gradient_of_infinities_and_nans(rng, sampling_ratio, dtype, data_format,
                                                    monkeypatch):
    """torchvision adds every term of a sample, weight 0 included: an infinite or NaN gradient
    reaches the pixels its samples name with weight 0 as NaN. Boxes on pixel centres, past the
    last row and column and in [-1, 0]."""
    _separable(monkeypatch)
    x = to_layout(np.zeros((1, 2, 5, 6), dtype), data_format)
    boxes = EDGE_BOXES.astype(dtype)
    kwargs = dict(output_size=(2, 3), spatial_scale=1.0, sampling_ratio=sampling_ratio,
                  aligned=False, data_format=data_format)
    go = rng.standard_normal(gpuconv.roi_align(x, boxes, **kwargs).shape).astype(dtype)
    go.flat[::3] = np.inf
    go.flat[1::7] = -np.inf
    go.flat[2::11] = np.nan
    expected = gpuconv.grad.roi_align(go, x, boxes, **kwargs)
    assert not np.isfinite(expected).all() and np.isfinite(expected).any()
    for order in ORDERS:
        assert_same_non_finites_and_close(
            simulated(gpuconv.grad.roi_align, go, x, boxes, order=order, **kwargs), expected)


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_separable_gradient_over_several_passes(rng, monkeypatch, data_format):
    """80 boxes of 7 bin rows: 560 (box, bin row) pairs, more than one pass's list scans
    (kRoiListCapacity 512), so each row's second pass adds to what the first wrote; rows of 300
    pixels and images without boxes (written as zeros)."""
    _separable(monkeypatch)
    x = to_layout(rng.standard_normal((3, 2, 30, 28)).astype(np.float32), data_format)
    corners = np.sort(rng.uniform(-4, 32, size=(80, 2, 2)), axis=1)
    boxes = np.concatenate([rng.integers(0, 2, size=(80, 1)), corners[:, :, 0],
                            corners[:, :, 1]], axis=1)[:, [0, 1, 3, 2, 4]].astype(np.float32)
    kwargs = dict(output_size=7, spatial_scale=1.0, sampling_ratio=-1, data_format=data_format)
    go = rng.standard_normal(gpuconv.roi_align(x, boxes, **kwargs).shape).astype(np.float32)
    expected = gpuconv.grad.roi_align(go, x, boxes, **kwargs)
    assert np.abs(expected[2]).max() == 0 and np.abs(expected[:2]).max() > 0
    assert_matches(simulated(gpuconv.grad.roi_align, go, x, boxes, order="random", **kwargs),
                   expected)


def test_separable_gradient_replays_its_plan(rng, monkeypatch):
    """A second call with the same signature and new boxes replays the two passes, the scratch
    and the gradient's allocation."""
    _separable(monkeypatch)
    x = rng.standard_normal((2, 3, 10, 12)).astype(np.float32)
    kwargs = dict(output_size=(3, 4), spatial_scale=SCALE, sampling_ratio=-1)
    go = rng.standard_normal((len(BOXES), 3, 3, 4)).astype(np.float32)
    replays = PLANS.replays
    for scale in (1.0, 0.75):
        boxes = BOXES.astype(np.float32)
        boxes[:, 1:] *= np.float32(scale)
        assert_matches(simulated(gpuconv.grad.roi_align, go, x, boxes, **kwargs),
                       gpuconv.grad.roi_align(go, x, boxes, **kwargs))
    assert PLANS.replays == replays + 1


@pytest.mark.gpu
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_gpu_separable_gradient_matches_reference(rng, monkeypatch, dtype, data_format):
    """The two backward passes on the GPU in both modes, bitwise repeatable."""
    import cupy
    _separable(monkeypatch)
    for option in ("adaptive", "adaptive_aligned", "ratio2"):
        x, boxes, kwargs = _inputs(rng, dtype, data_format, 300, option)
        go = rng.standard_normal(gpuconv.roi_align(x, boxes, **kwargs).shape).astype(dtype)
        expected = gpuconv.grad.roi_align(go, x, boxes, **kwargs)
        args = (cupy.asarray(go), cupy.asarray(x), cupy.asarray(boxes))
        for deterministic in (False, True):
            first = cupy.asnumpy(gpuconv.grad.roi_align(*args, deterministic=deterministic,
                                                        **kwargs))
            assert_matches(first, expected)
            again = cupy.asnumpy(gpuconv.grad.roi_align(*args, deterministic=deterministic,
                                                        **kwargs))
            assert bitwise_equal(first, again)


@pytest.mark.slow       # each sanitizer builds its own copy of the kernels
@pytest.mark.parametrize("sanitize", ["address", "thread"])
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_separable_gradient_sanitized(rng, monkeypatch, data_format, sanitize):
    """AddressSanitizer (the scratch, the gradient and the last blocks' idle threads) and
    ThreadSanitizer (the list's and the weights' barriers, the second pass over a row), with
    the plain run's bits."""
    _separable(monkeypatch)
    x = map_of(rng, np.float32, 3, data_format)
    boxes = np.concatenate([BOXES] * 12).astype(np.float32)     # 96 x 7 pairs: two passes
    kwargs = dict(output_size=7, spatial_scale=SCALE, sampling_ratio=-1,
                  data_format=data_format)
    go = rng.standard_normal((len(boxes), 3, 7, 7)).astype(np.float32)
    if data_format == "NHWC":
        go = np.ascontiguousarray(go.transpose(0, 2, 3, 1))
    results = [sanitized(mode, gpuconv.grad.roi_align, go, x, boxes, **kwargs)
               for mode in (None, sanitize)]
    assert bitwise_equal(*results)
