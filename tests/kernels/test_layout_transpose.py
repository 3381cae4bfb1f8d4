"""The layout copies (kernels/layout/transpose.cu, gpuconv/layout/launch_transpose.py): filters
made C-contiguous in the order a kernel reads them, from KCRS, channels_last or any other dense
order, under ``gpuconv.simulate()`` in every thread order and on a GPU, bit for bit against
NumPy's transposed copy; the plans that reduce a permutation to batched 2-D transposes, and the
cases left to the array library's copy."""
import importlib
import itertools

import numpy as np
import pytest

import gpuconv
from gpuconv.pool.launch_common import ctype

from kernel_support import DTYPE_IDS, DTYPES, ORDERS, bitwise_equal, record_launches

layout = importlib.import_module("gpuconv.layout.launch_transpose")

# (K, C, R, S): a 3x3 filter's 9 taps (one tile row, 224 filters per tile), 7x7 with C = 3 (the
# stem: x shorter than a tile), 9x9 (81 taps: two tiles and a part along y), 1x1 (only K and C
# move), C = 1 (depthwise), x past one tile (300 > 256), ones along R or S.
SHAPES = [(5, 3, 3, 3), (64, 3, 7, 7), (37, 70, 3, 3), (40, 50, 9, 9), (8, 300, 1, 1),
          (300, 8, 1, 1), (6, 1, 9, 9), (3, 2, 1, 5), (33, 4, 5, 1), (230, 6, 3, 3)]
# The orders the launchers ask for: KCRS, KRSC (NHWC forward), RSCK and RSKC (data gradient).
AXES = [(0, 1, 2, 3), (0, 2, 3, 1), (2, 3, 1, 0), (2, 3, 0, 1)]
# Memory orders of the filters handed in: KCRS, channels_last (KRSC) and one no layout has.
MEMORY = [(0, 1, 2, 3), (0, 2, 3, 1), (1, 3, 0, 2)]


def laid_out(w, memory):
    """``w``'s values (K, C, R, S) with its memory in the axis order ``memory``."""
    return np.ascontiguousarray(w.transpose(memory)).transpose(np.argsort(memory))


def permuted(a, axes, order="forward"):
    with gpuconv.simulate(order=order):
        return layout.permuted(np, a, axes, "simulator")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_permuted_filters_are_numpys_transposed_copy(rng, monkeypatch, dtype):
    """Every shape, target order, memory order and thread order: the same bits as NumPy's copy,
    C-contiguous, through the kernel exactly where a plan exists (the output is NaN-poisoned
    under the simulator: an element it misses fails)."""
    launched = record_launches(monkeypatch, layout)
    for shape, memory in itertools.product(SHAPES, MEMORY):
        w = laid_out(rng.standard_normal(shape).astype(dtype), memory)
        for axes in AXES:
            view = w.transpose(axes)
            expected = np.ascontiguousarray(view)
            plan = layout.transpose_plan(view.shape, [s // w.itemsize for s in view.strides])
            for order in ORDERS:
                before = len(launched)
                got = permuted(w, axes, order)
                assert got.flags.c_contiguous and bitwise_equal(got, expected), \
                    (shape, memory, axes, order)
                ran = len(launched) - before
                if view.flags.c_contiguous:
                    assert ran == 0 and np.shares_memory(got, w)     # the view itself
                else:
                    assert ran == (plan is not None)
    assert set(launched) == {f"batched_transpose<{ctype(dtype)}, {ctype(dtype)}>"}


def test_the_launchers_orders_take_the_kernel():
    """KCRS filters in every order a launcher asks for, and channels_last ones as KCRS and as
    RSCK, are transposes; channels_last as RSKC keeps C last: whole rows, the library's copy."""
    def plan(memory, axes, shape=(64, 32, 3, 3)):
        w = laid_out(np.zeros(shape, np.float32), memory)
        view = w.transpose(axes)
        return layout.transpose_plan(view.shape, [s // 4 for s in view.strides])

    kcrs, krsc = (0, 1, 2, 3), (0, 2, 3, 1)
    # (batch, X, Y, src_b, src_x, dst_b, dst_y)
    assert plan(kcrs, (0, 2, 3, 1)) == (64, 32, 9, 288, 9, 288, 32)    # KRSC: per filter
    assert plan(kcrs, (2, 3, 0, 1)) == (1, 2048, 9, 0, 9, 0, 2048)     # RSKC: one transpose
    assert plan(kcrs, (2, 3, 1, 0)) == (32, 64, 9, 9, 288, 64, 2048)   # RSCK: per channel
    assert plan(krsc, (0, 1, 2, 3)) == (64, 9, 32, 288, 32, 288, 9)    # channels_last as KCRS
    assert plan(krsc, (2, 3, 1, 0)) == (1, 64, 288, 0, 288, 0, 64)     # ... as RSCK
    assert plan(krsc, (2, 3, 0, 1)) is None                            # ... as RSKC: rows
    assert plan(kcrs, (1, 0, 2, 3), (64, 32, 1, 1)) == (1, 64, 32, 0, 32, 0, 64)   # 1x1: (C, K)


@pytest.mark.parametrize("view", ["reversed", "sliced", "broadcast"])
def test_views_of_no_dense_array_take_the_librarys_copy(rng, monkeypatch, view):
    """Negative strides, a slice (gaps between filters) and a zero stride: no kernel, the
    right values."""
    launched = record_launches(monkeypatch, layout)
    w = rng.standard_normal((6, 5, 3, 3)).astype(np.float32)
    a = {"reversed": w[:, :, ::-1], "sliced": w[::2],
         "broadcast": np.broadcast_to(w[:1], w.shape)}[view]
    for axes in AXES:
        assert bitwise_equal(permuted(a, axes), np.ascontiguousarray(a.transpose(axes)))
    assert launched == []


@pytest.mark.parametrize("batch_blocks", [1, 2])
def test_a_batch_longer_than_the_grid_is_visited_in_turn(rng, monkeypatch, batch_blocks):
    """grid.y capped below the batch: each block row takes every batch_blocks-th entry."""
    monkeypatch.setattr(layout, "MAX_BATCH_BLOCKS", batch_blocks)
    w = rng.standard_normal((7, 40, 3, 3)).astype(np.float32)
    for axes in AXES[1:]:
        for order in ORDERS:
            assert bitwise_equal(permuted(w, axes, order),
                                 np.ascontiguousarray(w.transpose(axes)))


def test_tiles_fit_the_kernels_shared_memory():
    """Every tile shape the launcher picks fits TRANSPOSE_TILE_ELEMENTS with its odd pitch, is
    no wider than X needs (rounded to 32) and takes a whole y axis of up to 64."""
    for x, y in itertools.product(range(1, 600, 7), range(1, 300)):
        tile_x, tile_y = layout.tile_shape(x, y)
        assert tile_x * (tile_y | 1) <= layout.TILE_ELEMENTS
        assert tile_x % 32 == 0 and tile_x <= -(-x // 32) * 32
        assert tile_y == (y if y <= 64 else 32)


def test_the_kernels_constants_are_the_launchers():
    source = (gpuconv._paths.kernel_root() / "layout" / "transpose.cu").read_text()
    assert f"TRANSPOSE_THREADS = {layout.THREADS};" in source
    assert f"TRANSPOSE_TILE_ELEMENTS = {layout.TILE_ELEMENTS};" in source


# --------------------------------------------------------------------------------------------
# on a GPU (skipped without one)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_gpu_permuted_filters_are_cupys_transposed_copy(rng, dtype):
    import cupy as cp
    for shape, memory in itertools.product(SHAPES, MEMORY):
        w = cp.asarray(laid_out(rng.standard_normal(shape).astype(dtype), memory))
        for axes in AXES:
            got = layout.permuted(cp, w, axes, "cupy")
            expected = cp.ascontiguousarray(w.transpose(axes))
            assert got.flags.c_contiguous
            assert bitwise_equal(cp.asnumpy(got), cp.asnumpy(expected)), (shape, memory, axes)
