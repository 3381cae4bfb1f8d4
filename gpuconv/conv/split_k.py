"""Split-K for the GEMM kernels of the forward pass (implicit GEMM, pointwise) and of the 1x1
data gradient (kernels/common/split_k.cuh; kernels/conv/dgrad_pointwise.cu).

When a convolution's output tiles are too few blocks to occupy the GPU (batch 1, 7x7 planes of
ResNet's last stage: 4-8 blocks for 132 SMs) while its k dimension (C/groups * R * S; for the
data gradient K/groups) is long, the k-tiles are shared out among ``splits`` blocks per tile.
Each writes its partial sums to a workspace in the output's layout, and a second kernel
(``conv2d_split_k_epilogue``; ``conv2d_dgrad_pointwise_split_epilogue``) adds them in split
order and applies the epilogue: deterministic, no atomics.

``gemm_splits`` decides with a model of a call's time (kernels/conv/NOTES.md "Split-K"): the
larger of the host's time (a conv call's own, plus one more launch when split) and the GPU's.
The GPU's is the busiest SM's share of equal blocks, ceil(tiles * s / SMs) waves of a block that
does 1/s of the k-tiles at the rate one block alone on an SM reaches, plus the partials'
traffic. It splits only when that predicts at least SPLIT_K_MIN_GAIN: a GEMM whose kernel hides
behind the host's time anyway gains nothing from a split, and pays its extra launch.
"""
from __future__ import annotations

import functools
import os

import numpy as np

from .._args import as_int
from .._kernels import CUDA_TYPES, register
from .._plans import unused_argument
from .launch_bwd_common import GRID_YZ_LIMIT, acc_dtype, i32, output
from .launch_common import ceil_div, cuda_bool, multiprocessor_count
from .launch_im2col_gemm import WORKSPACE_ENV, workspace_limit

# At most this many splits of one tile, and at least MIN_K_PER_SPLIT of k in each split (a
# shorter main loop is all prologue and epilogue).
MAX_SPLIT_K = 32
MIN_K_PER_SPLIT = 64
# Split only when the model's time with splits is at most this fraction of the time without.
SPLIT_K_MIN_GAIN = 0.8
# The model's rates, measured on an H100 SXM at batch 1 (bench/results/*-b1-splitk*: the
# unsplit GEMMs of ResNet-50 layer3/4 run 156-372 us, one 64 x 64 block per SM): the multiply-add
# rate of the whole GPU when each SM holds one block, FLOP/s, on CUDA cores by accumulator type
# (float64: half of float32, not measured) and on the tensor cores (half of the ~100 TFLOP/s of
# full grids, not measured at batch 1); the bandwidth the partial sums move at; a conv call's
# own host time and that of one more launch (bench/host_overhead: 30-70 and 10-20 us on the
# lent machines), which a kernel shorter than them cannot show.
SIMT_FLOPS = {"float32": 14e12, "float64": 7e12}
TENSOR_CORE_FLOPS = 50e12
PARTIAL_BYTES_PER_S = 2.5e12
CALL_HOST_SECONDS = 30e-6
LAUNCH_SECONDS = 15e-6

SPLIT_K_CHOICES = "'auto' or a whole number of splits >= 1"


def check_split_k(split_k):
    """``split_k`` as the launchers take it: "auto" or an int >= 1 (1: never split)."""
    if isinstance(split_k, str) and split_k == "auto":
        return split_k
    if isinstance(split_k, str):
        raise ValueError(f"split_k must be {SPLIT_K_CHOICES}; got {split_k!r}")
    return as_int("split_k", split_k, minimum=1)


def model_splits(tiles: int, tile_mn: int, gemm_k: int, block_k: int, elements: int,
                 acc_bytes: int, flops_per_s: float, sms: int, max_splits: int) -> int:
    """The split count in [1, max_splits] with the least modelled time (module docstring):
    ``tiles`` blocks of ``tile_mn`` outputs each over a k of ``gemm_k``, ``elements`` outputs."""
    block_seconds = 2.0 * tile_mn * gemm_k / (flops_per_s / sms)
    k_tiles = ceil_div(gemm_k, block_k)
    limit = min(max_splits, MAX_SPLIT_K, max(1, k_tiles // ceil_div(MIN_K_PER_SPLIT, block_k)))

    def seconds(s: int) -> float:
        gemm = ceil_div(tiles * s, sms) * block_seconds / s
        if s == 1:
            return max(CALL_HOST_SECONDS, gemm)
        # partials written by the GEMM and read by the reduce; the reduce's launch
        partials = 2 * s * elements * acc_bytes / PARTIAL_BYTES_PER_S
        return max(CALL_HOST_SECONDS + LAUNCH_SECONDS, gemm + partials)

    unsplit = seconds(1)
    best = min(range(1, limit + 1), key=lambda s: (seconds(s), s))
    return best if seconds(best) <= SPLIT_K_MIN_GAIN * unsplit else 1


def gemm_splits(split_k, *, rows: int, cols: int, groups: int, block_m: int, block_n: int,
                block_k: int, gemm_k: int, dtype, tensor_cores: bool, executor: str) -> int:
    """The splits of a GEMM launch of ``rows`` x ``cols`` per group (the forward pass: N*P*Q
    pixels x K/groups filters; the data gradient: N*P*Q x C/groups) in blocks of
    ``block_m`` x ``block_n``, the k dimension ``gemm_k`` stepped ``block_k`` at a time:
    ``split_k`` itself when forced, else the model's choice; either way within the k-tiles,
    the grid and the workspace limit. What the launchers run and what explain() reports."""
    return _gemm_splits(split_k, rows, cols, groups, block_m, block_n, block_k, gemm_k, dtype,
                        tensor_cores, multiprocessor_count(executor),
                        os.environ.get(WORKSPACE_ENV))


@functools.lru_cache(maxsize=4096)      # asked at every GEMM launch: host time of each call
def _gemm_splits(split_k, rows: int, cols: int, groups: int, block_m: int, block_n: int,
                 block_k: int, gemm_k: int, dtype, tensor_cores: bool, sms: int,
                 workspace_env) -> int:
    acc = acc_dtype(dtype)
    tiles = ceil_div(rows, block_m) * ceil_div(cols, block_n) * groups
    elements = rows * cols * groups
    # workspace_env is in the key so that a changed limit is read again
    max_splits = min(GRID_YZ_LIMIT // max(groups, 1), ceil_div(gemm_k, block_k),
                     workspace_limit() // max(elements * acc.itemsize, 1))
    if split_k != "auto":
        return max(1, min(split_k, max_splits))
    if max_splits <= 1:
        return 1
    flops = TENSOR_CORE_FLOPS if tensor_cores else SIMT_FLOPS[acc.name]
    return model_splits(tiles, block_m * block_n, gemm_k, block_k, elements, acc.itemsize,
                        flops, sms, max_splits)


def _name(cuda_t: str, nhwc: bool) -> str:
    return f"conv2d_split_k_epilogue<{cuda_t}, {cuda_bool(nhwc)}>"


EPILOGUE = register("conv/split_k_epilogue.cu",
                    name_expressions=[_name(t, nhwc) for t in CUDA_TYPES.values()
                                      for nhwc in (False, True)])

REDUCE_THREADS = 256
_ONE = np.int32(1)


class SplitK:
    """The (splits, partial) arguments of one GEMM launch whose ``elements`` outputs may be
    split ``splits`` ways: the partial sums' workspace (accumulator type) when split, else a
    placeholder of that type (``unused``, or a cached one-element array) that is never read."""

    def __init__(self, xp, executor: str, dtype, splits: int, elements: int, unused=None):
        self.splits = splits
        acc = acc_dtype(dtype)
        if splits > 1:
            self.partial = output(xp, (splits * elements,), acc, executor)
        elif unused is not None and unused.dtype == acc:
            self.partial = unused
        else:
            # The partial-sum argument of an unsplit launch: typed as the kernels declare
            # it, never read.
            self.partial = unused_argument(xp, acc)

    def args(self) -> list:
        return [_ONE if self.splits == 1 else i32(self.splits), self.partial]


def forward_split(chunk, splits: int) -> SplitK:
    """The split-K arguments of a forward launch over ``chunk`` (a ConvCall)."""
    g = chunk.geom
    return SplitK(chunk.xp, chunk.executor, chunk.dtype, splits, g.N * g.K * g.P * g.Q,
                  unused=chunk.x)


def finish_forward(chunk, split: SplitK) -> None:
    """conv2d_split_k_epilogue over ``chunk``'s output: the splits added, the epilogue applied
    (nothing to do with one split)."""
    if split.splits == 1:
        return
    g = chunk.geom
    fn = chunk.kernel(EPILOGUE, _name(chunk.cuda_type, chunk.nhwc))
    fn((ceil_div(g.N * g.K * g.P * g.Q, REDUCE_THREADS), 1, 1), (REDUCE_THREADS, 1, 1),
       [split.partial, i32(split.splits), *chunk.shape_args(), *chunk.epilogue_args()])
