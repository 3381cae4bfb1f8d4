"""roi_align's grouped forward (kernels/roi/roi_align_tables.cu `roi_align_forward_grouped`: blocks
ordered by groups of 32 channels over an NHWC map) and the layout copies of the ROI passes
(kernels/layout/transpose.cu), under ``gpuconv.simulate()`` against the NumPy reference and
bit for bit against the tabled kernel they stand in for. Outputs the launchers allocate with
``empty`` are poisoned with NaN.
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
                            record_launches, sanitized, simulated)
from test_roi_kernels import (ALIGN_OPTIONS, BOXES, SCALE, assert_gpu_matches, assert_matches,
                              map_of)

align = importlib.import_module("gpuconv.roi.launch_align")
transpose = importlib.import_module("gpuconv.roi.launch_transpose")
layout_transpose = importlib.import_module("gpuconv.layout.launch_transpose")
# 37: one whole group of 32 channels and a partial one; 70: two whole and a partial
CHANNELS = (37, 70)


@pytest.fixture(autouse=True)
def poisoned_outputs(monkeypatch):
    poison_launcher_outputs(monkeypatch, ("gpuconv.roi.launch_align",
                                          "gpuconv.roi.launch_transpose"))


def _grouped(monkeypatch, groups: bool = True) -> tuple[list[str], list[str]]:
    """Make the forward take the tabled kernels whatever the size, and among them the grouped
    one (NCHW through its NHWC copy) or not; returns the launches' names from now on
    (launch_align's, the layout copies')."""
    monkeypatch.setattr(align, "TABLED_MIN_ELEMENTS", 0)
    monkeypatch.setattr(align, "NHWC_READ_MIN_SAMPLES_PER_PIXEL", 0 if groups else 1 << 62)
    monkeypatch.setattr(align, "GROUPED_MIN_CHANNELS", 1 if groups else 1 << 30)
    return (record_launches(monkeypatch, align),
            record_launches(monkeypatch, layout_transpose))


@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("option", list(ALIGN_OPTIONS))
def test_grouped_forward_matches_the_reference(rng, monkeypatch, option, dtype, data_format,
                                               channels):
    """Every box kind of the kernel tests, sampling option (the ratio-2 constant grid
    included), dtype, layout and thread order; the NCHW map is read through one NHWC copy."""
    launched, copies = _grouped(monkeypatch)
    x = map_of(rng, dtype, channels, data_format)
    boxes = BOXES.astype(dtype)
    kwargs = dict(ALIGN_OPTIONS[option], spatial_scale=SCALE, data_format=data_format)
    expected = gpuconv.roi_align(x, boxes, **kwargs)
    for order in ORDERS:
        assert_matches(simulated(gpuconv.roi_align, x, boxes, order=order, **kwargs), expected)
    t = ctype(dtype)
    grid = 2 if kwargs["sampling_ratio"] == 2 else 0
    layout = "true" if data_format == "NHWC" else "false"
    assert set(launched) == {f"roi_align_forward_grouped<{t}, {layout}, {grid}>"}
    assert set(copies) == (set() if data_format == "NHWC" else {f"batched_transpose<{t}, {t}>"})


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64],
                         ids=["float32", "float16", "float64"])
def test_grouped_forward_gives_the_tabled_bits(rng, monkeypatch, dtype, data_format):
    """The same samples, factors and sums as roi_align_forward_tabled: identical outputs."""
    x = map_of(rng, dtype, 70, data_format)
    boxes = BOXES.astype(dtype)
    for option in ALIGN_OPTIONS.values():
        kwargs = dict(option, spatial_scale=SCALE, data_format=data_format)
        results = []
        for groups in (True, False):
            PLANS.clear()       # a recorded plan would replay the other kernel
            with monkeypatch.context() as patch:
                launched, _ = _grouped(patch, groups)
                results.append(simulated(gpuconv.roi_align, x, boxes, order="random",
                                         **kwargs))
            assert launched and all(("grouped" in name) == groups for name in launched)
        assert bitwise_equal(*results), option


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("min_blocks,stage_bytes", [(1 << 30, 16 * 1024), (0, 32 * 4 * 10)])
def test_grouped_forward_splits_a_boxs_bins(rng, monkeypatch, data_format, min_blocks,
                                            stage_bytes):
    """A box's 7 x 5 = 35 bins over several blocks: split down to 8 bins per block (one per
    warp) to fill the grid, or capped by the stage (9 bins of 32 float32 channels): the last
    block of each box partly idle."""
    _grouped(monkeypatch)
    monkeypatch.setattr(align, "GROUPED_MIN_BLOCKS", min_blocks)
    monkeypatch.setattr(align, "STAGE_BYTES", stage_bytes)
    x = map_of(rng, np.float32, 37, data_format)
    boxes = BOXES.astype(np.float32)
    geom = RoiGeometry(N=2, C=37, H=10, W=12, K=len(boxes), PH=7, PW=5, spatial_scale=SCALE,
                       sampling_ratio=2)
    assert align.bins_per_block(geom, 4) == (8 if min_blocks else 9)
    kwargs = dict(output_size=(7, 5), spatial_scale=SCALE, sampling_ratio=2,
                  data_format=data_format)
    expected = gpuconv.roi_align(x, boxes, **kwargs)
    for order in ("forward", "reverse", "random"):
        assert_matches(simulated(gpuconv.roi_align, x, boxes, order=order, **kwargs), expected)


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("entries", [1, 3, 8])
def test_grouped_forward_past_its_tables(rng, monkeypatch, data_format, entries):
    """Boxes whose sample grids need more entries than the tables hold compute their samples
    per element (the huge box always; with 1 entry every box)."""
    _grouped(monkeypatch)
    monkeypatch.setattr(align, "MAX_TABLE_ENTRIES", entries)
    x = map_of(rng, np.float32, 37, data_format)
    boxes = BOXES.astype(np.float32)
    for option in ("adaptive", "ratio2", "ratio3_aligned"):
        kwargs = dict(ALIGN_OPTIONS[option], spatial_scale=SCALE, data_format=data_format)
        assert_matches(simulated(gpuconv.roi_align, x, boxes, order="random", **kwargs),
                       gpuconv.roi_align(x, boxes, **kwargs))


def test_forward_kernel_by_shape():
    """The bench's detection heads: the dense FPN and mask-head samplings read NCHW maps through
    an NHWC copy; few huge boxes take no tabled kernel (the separable ones); fewer than 32
    channels, or too few samples per pixel of the map, keep the NCHW tabled kernel; NHWC takes
    the groups from 32 channels on."""
    def case(N, C, H, W, K, P, ratio, scale=0.25):
        return RoiGeometry(N=N, C=C, H=H, W=W, K=K, PH=P, PW=P, spatial_scale=scale,
                           sampling_ratio=ratio)
    for geom, per_block in ((case(2, 256, 200, 304, 1024, 7, 2), 49),      # FPN P2 train
                            (case(1, 256, 200, 304, 1000, 7, 2), 49),      # FPN P2 test
                            (case(1, 256, 50, 76, 1000, 7, 2), 49),        # FPN P4
                            (case(1, 256, 200, 304, 100, 14, 2), 32)):     # mask head
        assert align.uses_tables(geom) and align.reads_through_nhwc(geom)
        assert align.uses_groups(geom, "NCHW") and align.uses_groups(geom, "NHWC")
        # 8192, 8000, 8000 blocks of a whole box's bins; the mask head's 196 bins in 7 blocks
        assert align.bins_per_block(geom, 4) == per_block
    huge = case(16, 256, 160, 160, 6, 7, -1, 1 / 16)
    assert not align.uses_tables(huge) and not align.reads_through_nhwc(huge)
    assert align.uses_separable(huge)
    sparse = case(8, 256, 200, 304, 512, 7, 2)             # 0.2 samples per pixel
    assert align.uses_tables(sparse) and not align.uses_groups(sparse, "NCHW")
    assert align.uses_groups(sparse, "NHWC")
    narrow = case(2, 16, 200, 304, 1024, 7, 2)
    assert not align.uses_groups(narrow, "NCHW") and not align.uses_groups(narrow, "NHWC")


@pytest.mark.parametrize("grid_images", [1, 65535])
@pytest.mark.parametrize("rows,cols", [(1, 63), (37, 63), (70, 5), (63, 70), (300, 2)])
def test_transpose_planes_moves_every_element(rng, monkeypatch, rows, cols, grid_images):
    """Row and column counts under, across and past a tile (launch_transpose.tile_shape: all
    of up to 64 columns, else 32; 32-256 rows), three images visited by one grid row
    (grid_images 1) or one each: exact copies in every dtype, one rounding from a float32
    scratch to a half type."""
    monkeypatch.setattr(layout_transpose, "MAX_BATCH_BLOCKS", grid_images)
    pairs = [(d, d) for d in DTYPES] + [(np.float32, d) for d in DTYPES
                                         if np.dtype(d).itemsize == 2]
    for src_dtype, dst_dtype in pairs:
        src = rng.standard_normal((3, rows, cols)).astype(src_dtype)
        for order in ("forward", "random"):
            dst = np.full((3, cols, rows), np.nan, dtype=dst_dtype)
            with gpuconv.simulate(order=order):
                transpose.transpose_planes(src, dst, 3, rows, cols, "simulator")
            assert bitwise_equal(dst, np.ascontiguousarray(src.transpose(0, 2, 1))
                                 .astype(dst_dtype))


# --------------------------------------------------------------------------------------------
# on a GPU (skipped without one)


@pytest.mark.gpu
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_gpu_grouped_forward_matches_reference(rng, monkeypatch, dtype, data_format):
    """The grouped forward and the NCHW map's NHWC copy on the GPU: two partial-group channel
    counts, the constant and the run-time grid, a box's bins in one block and split."""
    _grouped(monkeypatch)
    boxes = BOXES.astype(dtype)
    for channels, min_blocks in ((37, 0), (70, 1 << 30)):
        monkeypatch.setattr(align, "GROUPED_MIN_BLOCKS", min_blocks)
        x = map_of(rng, dtype, channels, data_format)
        for kwargs in (dict(output_size=(7, 5), sampling_ratio=2), dict(output_size=3)):
            kwargs = dict(kwargs, spatial_scale=SCALE, data_format=data_format)
            assert_gpu_matches(gpuconv.roi_align, x, boxes, **kwargs)


@pytest.mark.slow       # each sanitizer builds its own copy of the kernels
@pytest.mark.parametrize("sanitize", ["address", "thread"])
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_grouped_forward_sanitized(rng, monkeypatch, data_format, sanitize):
    """Under the simulator's AddressSanitizer (each array in a block of exactly its size: a
    partial channel group's lanes must not touch past the map or the output) and
    ThreadSanitizer (the tables' and the NCHW stage's barriers), with the plain run's bits."""
    _grouped(monkeypatch)
    monkeypatch.setattr(align, "GROUPED_MIN_BLOCKS", 1 << 30)     # bins split over blocks
    x = map_of(rng, np.float32, 37, data_format)
    boxes = BOXES.astype(np.float32)
    kwargs = dict(output_size=(7, 5), spatial_scale=SCALE, sampling_ratio=2,
                  data_format=data_format)
    results = [sanitized(mode, gpuconv.roi_align, x, boxes, **kwargs)
               for mode in (None, sanitize)]
    assert bitwise_equal(*results)
