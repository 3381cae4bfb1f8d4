"""Shared material of the contract tests (tests/contract/): one valid call of every public
function, built from arrays the test controls, so that the rules api.md states for *every*
function (dtypes, non-contiguous inputs, N == 0, mixed libraries, determinism) are checked on
all of them by one loop each.

The shapes are fixed and small; each expected output shape is written out from the formulas of
api.md / PyTorch, never taken from the library under test.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

import gpuconv
from gpuconv import grad

try:
    import ml_dtypes
    BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # bfloat16 is optional (api.md: "where the array library has it")
    BFLOAT16 = None

try:
    import torch
except ImportError:
    torch = None

N_, C_, H_, W_ = 2, 3, 7, 8   # the input x of every case: (N, C, H, W)


@dataclass
class Case:
    """A valid call ``call(**floats, **ints)`` of one public function.

    ``floats``: the floating-point array arguments (all of one dtype); ``ints``: integer index
    arrays; ``shapes``: the expected shape of each returned array; ``batch``: whether the
    results' leading axis is the batch (False for weight/bias gradients and for ROI outputs,
    whose leading axis is the number of boxes).
    """
    name: str
    call: Callable[..., Any]
    floats: dict
    ints: dict = field(default_factory=dict)
    shapes: tuple = ()
    batch: bool = True

    def run(self, floats=None, ints=None):
        return self.call(**(self.floats if floats is None else floats),
                         **(self.ints if ints is None else ints))

    def __repr__(self) -> str:
        return self.name


def results(value) -> tuple:
    return value if isinstance(value, tuple) else (value,)


def unpool_indices(rng, n: int, c: int, p: int, q: int, width: int) -> np.ndarray:
    """Valid max_unpool2d indices for kernel 2, stride 2: one position h*W + w per 2x2 window,
    as max_pool2d(kernel_size=2) of an input of width ``width`` would return."""
    h = 2 * np.arange(p)[:, None] + rng.integers(0, 2, (n, c, p, q))
    w = 2 * np.arange(q)[None, :] + rng.integers(0, 2, (n, c, p, q))
    return (h * width + w).astype(np.int64)


def roi_boxes(rng, n: int, k: int, dtype) -> np.ndarray:
    """(k, 5) boxes [batch_index, x1, y1, x2, y2] inside a W_ x H_ image (coordinates scaled by
    0.5 in the cases below, so the boxes are drawn in a 2x larger image)."""
    if n == 0:
        return np.zeros((0, 5), dtype)
    x1 = rng.uniform(0, 2 * W_ - 4, k)
    y1 = rng.uniform(0, 2 * H_ - 4, k)
    rows = np.stack([rng.integers(0, n, k), x1, y1, x1 + rng.uniform(1, 4, k),
                     y1 + rng.uniform(1, 4, k)], axis=1)
    return rows.astype(dtype)


def all_cases(dtype=np.float64, n: int = N_, seed: int = 0) -> list[Case]:
    """One call of every public array function and gradient, on arrays of ``dtype``."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)

    def arr(*shape, positive=False):
        a = rng.standard_normal(shape)
        return (np.abs(a) + 0.5 if positive else a).astype(dtype)

    x_shape = (n, C_, H_, W_)
    x = arr(*x_shape)
    cases = []
    add = cases.append

    # convolution: weight (4, 3, 3, 3), stride 1, padding 1 -> (n, 4, 7, 8)
    conv_out = (n, 4, H_, W_)
    add(Case("conv2d", lambda x, weight, bias, residual: gpuconv.conv2d(
        x, weight, bias, 1, 1, activation="tanh", residual=residual),
        dict(x=x, weight=arr(4, C_, 3, 3), bias=arr(4), residual=arr(*conv_out)),
        shapes=(conv_out,)))
    # transposed: weight (C_in=3, 2, 3, 3), stride 2, padding 1, output_padding 1:
    # H = (7-1)*2 - 2 + 2 + 1 + 1 = 14, W = (8-1)*2 - 2 + 2 + 1 + 1 = 16
    add(Case("conv_transpose2d", lambda x, weight, bias: gpuconv.conv_transpose2d(
        x, weight, bias, 2, 1, 1), dict(x=x, weight=arr(C_, 2, 3, 3), bias=arr(2)),
        shapes=((n, 2, 14, 16),)))
    add(Case("grad.conv2d_input", lambda weight, grad_output: grad.conv2d_input(
        x_shape, weight, grad_output, 1, 1), dict(weight=arr(4, C_, 3, 3), grad_output=arr(*conv_out)),
        shapes=(x_shape,)))
    add(Case("grad.conv2d_weight", lambda x, grad_output: grad.conv2d_weight(
        x, (4, C_, 3, 3), grad_output, 1, 1), dict(x=x, grad_output=arr(*conv_out)),
        shapes=((4, C_, 3, 3),), batch=False))
    add(Case("grad.conv2d_bias", lambda grad_output: grad.conv2d_bias(grad_output),
             dict(grad_output=arr(*conv_out)), shapes=((4,),), batch=False))

    # sliding-window pooling
    max_out = (n, C_, 4, 4)       # kernel 3, stride 2, padding 1: (7+2-3)//2+1, (8+2-3)//2+1
    add(Case("max_pool2d", lambda x: gpuconv.max_pool2d(x, 3, 2, 1, return_indices=True),
             dict(x=x), shapes=(max_out, max_out)))
    add(Case("grad.max_pool2d", lambda grad_output, x: grad.max_pool2d(grad_output, x, 3, 2, 1),
             dict(grad_output=arr(*max_out), x=x), shapes=(x_shape,)))
    avg_out = (n, C_, 4, 5)       # kernel 3, stride 2, padding 1, ceil_mode
    avg_kw = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
    add(Case("avg_pool2d", lambda x: gpuconv.avg_pool2d(x, **avg_kw), dict(x=x), shapes=(avg_out,)))
    add(Case("grad.avg_pool2d", lambda grad_output, x: grad.avg_pool2d(grad_output, x, **avg_kw),
             dict(grad_output=arr(*avg_out), x=x), shapes=(x_shape,)))
    xp = arr(*x_shape, positive=True)   # lp pooling of a positive input is finite
    lp_out = (n, C_, 3, 4)        # kernel 2, stride 2
    add(Case("lp_pool2d", lambda x: gpuconv.lp_pool2d(x, 2, 2), dict(x=xp), shapes=(lp_out,)))
    add(Case("grad.lp_pool2d", lambda grad_output, x: grad.lp_pool2d(grad_output, x, 2, 2),
             dict(grad_output=arr(*lp_out), x=xp), shapes=(x_shape,)))

    # adaptive and global pooling
    ada_out = (n, C_, 3, 5)
    add(Case("adaptive_avg_pool2d", lambda x: gpuconv.adaptive_avg_pool2d(x, (3, 5)),
             dict(x=x), shapes=(ada_out,)))
    add(Case("grad.adaptive_avg_pool2d", lambda grad_output, x: grad.adaptive_avg_pool2d(
        grad_output, x, (3, 5)), dict(grad_output=arr(*ada_out), x=x), shapes=(x_shape,)))
    add(Case("adaptive_max_pool2d", lambda x: gpuconv.adaptive_max_pool2d(x, (3, 5), True),
             dict(x=x), shapes=(ada_out, ada_out)))
    add(Case("grad.adaptive_max_pool2d", lambda grad_output, x: grad.adaptive_max_pool2d(
        grad_output, x, (3, 5)), dict(grad_output=arr(*ada_out), x=x), shapes=(x_shape,)))
    one = (n, C_, 1, 1)
    add(Case("global_avg_pool2d", lambda x: gpuconv.global_avg_pool2d(x), dict(x=x), shapes=(one,)))
    add(Case("grad.global_avg_pool2d", lambda grad_output, x: grad.global_avg_pool2d(grad_output, x),
             dict(grad_output=arr(*one), x=x), shapes=(x_shape,)))
    add(Case("global_max_pool2d", lambda x: gpuconv.global_max_pool2d(x), dict(x=x), shapes=(one,)))
    add(Case("grad.global_max_pool2d", lambda grad_output, x: grad.global_max_pool2d(grad_output, x),
             dict(grad_output=arr(*one), x=x), shapes=(x_shape,)))
    spp_out = (n, C_ * (1 + 4 + 16))
    for mode in ("max", "avg"):
        add(Case(f"spatial_pyramid_pool2d[{mode}]", lambda x, mode=mode: gpuconv.spatial_pyramid_pool2d(
            x, (1, 2, 4), mode), dict(x=x), shapes=(spp_out,)))
        add(Case(f"grad.spatial_pyramid_pool2d[{mode}]", lambda grad_output, x, mode=mode:
                 grad.spatial_pyramid_pool2d(grad_output, x, (1, 2, 4), mode),
                 dict(grad_output=arr(*spp_out), x=x), shapes=(x_shape,)))

    # max_unpool2d: x (n, 3, 3, 4), kernel 2 -> (n, 3, 6, 8)
    small = (n, C_, 3, 4)
    idx = unpool_indices(rng, n, C_, 3, 4, 8)
    add(Case("max_unpool2d", lambda x, indices: gpuconv.max_unpool2d(x, indices, 2),
             dict(x=arr(*small)), dict(indices=idx), shapes=((n, C_, 6, 8),)))
    add(Case("grad.max_unpool2d", lambda grad_output, x, indices: grad.max_unpool2d(
        grad_output, x, indices, 2), dict(grad_output=arr(n, C_, 6, 8), x=arr(*small)),
        dict(indices=idx), shapes=(small,)))

    # regions of interest: 3 boxes (none when the batch is empty)
    boxes = roi_boxes(rng, n, 3, dtype)
    k = boxes.shape[0]
    align_out, pool_out = (k, C_, 2, 3), (k, C_, 2, 2)
    add(Case("roi_align", lambda x, boxes: gpuconv.roi_align(x, boxes, (2, 3), 0.5, 2, True),
             dict(x=x, boxes=boxes), shapes=(align_out,), batch=False))
    add(Case("grad.roi_align", lambda grad_output, x, boxes: grad.roi_align(
        grad_output, x, boxes, (2, 3), 0.5, 2, True),
        dict(grad_output=arr(*align_out), x=x, boxes=boxes), shapes=(x_shape,)))
    add(Case("roi_pool", lambda x, boxes: gpuconv.roi_pool(x, boxes, 2, 0.5),
             dict(x=x, boxes=boxes), shapes=(pool_out,), batch=False))
    add(Case("grad.roi_pool", lambda grad_output, x, boxes: grad.roi_pool(
        grad_output, x, boxes, 2, 0.5), dict(grad_output=arr(*pool_out), x=x, boxes=boxes),
        shapes=(x_shape,)))
    return cases


CASE_NAMES = [c.name for c in all_cases()]


def case_named(name: str, dtype=np.float64, n: int = N_) -> Case:
    return next(c for c in all_cases(dtype, n) if c.name == name)


def strided_copy(a: np.ndarray) -> np.ndarray:
    """A non-contiguous view holding a's values (every other element of a larger buffer)."""
    big = np.zeros(a.shape[:-1] + (2 * a.shape[-1] + 1,), dtype=a.dtype)
    view = big[..., 1::2]
    view[...] = a
    assert not view.flags.c_contiguous or a.size <= 1
    return view


def inner(a, b) -> float:
    """<a, b> in float64: the pairing of the adjoint identities."""
    return float(np.sum(np.asarray(a, np.float64) * np.asarray(b, np.float64)))
