"""What the backward-pass launchers (``launch_bwd_data``, ``launch_bwd_weight``) share: arrays
on the executor's library, the kernels' scalar arguments, batch chunks that keep 32-bit offsets
valid, and the split-K bookkeeping of the weight and bias gradients.

The same code drives CuPy on a GPU and the CPU simulator (design.md): executor "cupy" takes and
returns CuPy arrays on the current device and stream and never synchronizes with the host;
"simulator" takes NumPy arrays. Under the simulator every buffer a kernel is meant to fill is
poisoned with NaN first, so an element a kernel forgets to write shows up in the result.
"""
from __future__ import annotations

import math

import numpy as np

from .._args import INT32_MAX
from .._kernels import CUDA_TYPES
from .._loader import get_function
from .._plans import output, unused_argument, zeros  # noqa: F401 (output re-exported)
from .launch_common import contiguous, multiprocessor_count, shape_args  # noqa: F401 (re-exported)
from .launch_im2col_gemm import workspace_limit

# Every tensor one launch addresses stays below this many elements, so that the kernels' 32-bit
# offsets (and the few past-the-end offsets their loaders form) cannot overflow: the batch is cut
# into chunks of whole images. 2**30 rather than 2**31 leaves room for those offsets.
LAUNCH_ELEMENTS = 2 ** 30

# The im2col paths' column buffer (C*R*S rows x images*P*Q columns) holds at most this many
# values (256 MiB of float) and at most the workspace limit's bytes (GPUCONV_WORKSPACE_BYTES, as
# the forward's): the batch is processed in chunks of whole images that fit, one image at least.
COLUMN_BUFFER_ELEMENTS = 2 ** 26

# The split-K partial sums of one gradient, all splits together: int offsets (s * size + i in
# wgrad_operands.cuh and wgrad_reduce.cu).
PARTIAL_SUMS_ELEMENTS = INT32_MAX

# CUDA's limit on gridDim.y and gridDim.z.
GRID_YZ_LIMIT = 65535

# Shared memory a block may use without opting in to more (cudaFuncSetAttribute).
DEFAULT_SMEM_BYTES = 48 * 1024

# Bits of the dgrad kernels' `epilogue` argument (kernels/common/epilogue.cuh).
EPILOGUE_BIAS = 1

# Where the weight/bias gradient kernels put their sums (kernels/conv/wgrad_operands.cuh).
WGRAD_STORE = 0
WGRAD_PARTIAL = 1
WGRAD_PARTIAL_ACCUMULATE = 2
WGRAD_ATOMIC = 3


def array_module(executor: str):
    if executor == "cupy":
        import cupy
        return cupy
    return np


def acc_dtype(dtype) -> np.dtype:
    """The kernels' accumulator type (kernels/common/dtypes.cuh): double for double, else float."""
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


def bool_name(flag: bool) -> str:
    return "true" if flag else "false"


def type_names() -> list[str]:
    """The C++ spelling of every dtype the kernels are instantiated for."""
    return list(CUDA_TYPES.values())


def i32(value) -> np.int32:
    return np.int32(value)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def batch_chunks(n: int, per_image: int, max_images: int | None = None,
                 what: str = "one image") -> list[tuple[int, int]]:
    """[n0, n1) ranges of whole images with at most LAUNCH_ELEMENTS elements (``per_image`` each)
    and at most ``max_images`` images per launch."""
    limit = LAUNCH_ELEMENTS
    if per_image > limit:
        raise ValueError(f"{what} has {per_image} elements, more than the {limit} one kernel "
                         f"launch can address with 32-bit offsets")
    step = max(1, limit // max(per_image, 1))
    if max_images is not None:
        step = min(step, max_images)
    return [(n0, min(n0 + step, n)) for n0 in range(0, n, step)]


def check_weight_size(geom) -> None:
    if math.prod(geom.weight_shape) > LAUNCH_ELEMENTS:
        raise ValueError(f"the weight of shape {geom.weight_shape} has more than "
                         f"{LAUNCH_ELEMENTS} elements, more than a kernel launch can address "
                         f"with 32-bit offsets")


def launch(family, name: str, executor: str, grid, block, args, shared_mem: int = 0) -> None:
    grid = tuple(int(g) for g in grid)
    if any(g > GRID_YZ_LIMIT for g in grid[1:]) or grid[0] >= 2 ** 31:
        raise ValueError(f"{name}: grid {grid} exceeds CUDA's limits")  # launchers check first
    if min(grid) == 0:
        return
    get_function(family, name, executor, int(shared_mem))(
        grid, tuple(int(b) for b in block), tuple(args), shared_mem=int(shared_mem))


# --------------------------------------------------------------------------------------------
# split-K sums (weight and bias gradients)

# A split should sum at least this many pixels: fewer, and the workspace traffic and the final
# reduction cost more than the parallelism gains. Tests lower it to exercise many splits on small
# shapes.
MIN_PIXELS_PER_SPLIT = 256
# At most this many splits (and so partial buffers) per call.
MAX_SPLITS = 64


def choose_splits(executor: str, tiles: int, pixels: int, max_splits: int = MAX_SPLITS,
                  blocks_per_sm: int = 2, *, sum_elements: int) -> int:
    """Enough splits of the pixel dimension to give the GPU ``blocks_per_sm`` blocks per SM when
    the output tiles alone (``tiles`` blocks) would not, within the limits above; and few enough
    that the splits' partial sums (``sum_elements`` each, the gradient's size) stay within
    32-bit offsets (the kernels address split s's element i as s * size + i in int)."""
    wanted = ceil_div(blocks_per_sm * multiprocessor_count(executor), max(tiles, 1))
    return max(1, min(wanted, pixels // MIN_PIXELS_PER_SPLIT, max_splits,
                      PARTIAL_SUMS_ELEMENTS // max(sum_elements, 1)))


def pixels_per_split(pixels: int, splits: int, multiple: int = 8) -> int:
    """Pixels of each split: a whole number of k-tiles, so that only the last split is ragged."""
    return ceil_div(ceil_div(max(pixels, 1), splits), multiple) * multiple


class SplitSums:
    """The destination of a split-K reduction over batch chunks, and its final pass.

    deterministic, or several splits/chunks without atomics: each split writes its partial sums
    to a workspace of accumulator values (WGRAD_PARTIAL, then WGRAD_PARTIAL_ACCUMULATE for later
    chunks, which the stream orders), and ``finish`` sums the splits in index order with
    conv2d_split_reduce. One split and one chunk: the kernel stores the result directly.
    Non-deterministic with several splits or chunks (``allow_atomics``): atomicAdd into a zeroed
    accumulator buffer, which is the output itself for float32/float64.
    """

    def __init__(self, xp, shape, dtype, splits: int, chunks: int, allow_atomics: bool,
                 executor: str, reduce_family, reduce_name: str):
        self.xp, self.executor = xp, executor
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.size = math.prod(self.shape)
        self.splits, self.chunks = splits, chunks
        self.reduce_family, self.reduce_name = reduce_family, reduce_name
        acc = acc_dtype(dtype)
        if splits == 1 and chunks == 1:
            self.kind = "store"
            self.out = output(xp, self.shape, dtype, executor)
            self.ws = None
            # The kernels' workspace argument, typed as they declare it and never read.
            self._unused_ws = unused_argument(xp, acc)
        elif allow_atomics:
            self.kind = "atomic"
            if acc == self.dtype:
                self.out = zeros(xp, self.shape, dtype)
                self.ws = self.out
            else:
                self.out = output(xp, self.shape, dtype, executor)
                self.ws = zeros(xp, self.size, acc)
        else:
            self.kind = "partial"
            self.out = output(xp, self.shape, dtype, executor)
            self.ws = output(xp, (splits * self.size,), acc, executor)

    def mode(self, chunk: int) -> np.int32:
        if self.kind == "store":
            return i32(WGRAD_STORE)
        if self.kind == "atomic":
            return i32(WGRAD_ATOMIC)
        return i32(WGRAD_PARTIAL if chunk == 0 else WGRAD_PARTIAL_ACCUMULATE)

    @property
    def pointers(self):
        """The (out, ws) kernel arguments."""
        return self.out, (self.ws if self.ws is not None else self._unused_ws)

    def finish(self):
        if self.kind == "partial" or (self.kind == "atomic" and self.ws is not self.out):
            splits = self.splits if self.kind == "partial" else 1
            launch(self.reduce_family, self.reduce_name, self.executor,
                   (ceil_div(self.size, 256), 1, 1), (256, 1, 1),
                   (self.ws, i32(splits), i32(self.size), self.out))
        return self.out


def column_buffer_refusal(geom) -> str | None:
    """Why the backward im2col paths cannot take ``geom``: one image's columns are too many."""
    per_image = geom.C * geom.R * geom.S * geom.P * geom.Q
    if per_image > COLUMN_BUFFER_ELEMENTS:
        return (f"one image's column buffer ({per_image} values) exceeds its limit of "
                f"{COLUMN_BUFFER_ELEMENTS}")
    return None


def column_images(geom, itemsize: int) -> int:
    """Images per chunk of the backward im2col paths: their columns (of ``itemsize`` bytes each)
    within COLUMN_BUFFER_ELEMENTS and the workspace limit, one image at least."""
    per_image = geom.C * geom.R * geom.S * geom.P * geom.Q
    return max(1, min(COLUMN_BUFFER_ELEMENTS // per_image,
                      workspace_limit() // (per_image * itemsize)))
