"""What every pooling and ROI launcher does the same way: array library per executor, contiguous
operands, kernel argument packing, grid sizes and the 32-bit indexing limit.

The kernels take every scalar as a fixed-width NumPy scalar (CuPy does not check argument sizes);
``i32`` and ``acc_scalar`` make them. Outputs are allocated with ``empty`` (the kernels write every
element) or ``zeros`` where a kernel only scatters; on CuPy both are stream-ordered allocations on
the current stream, and nothing here synchronizes with the device.

Every array a launcher hands a kernel is one of the call's, a view of one, or made by ``empty``,
``zeros`` (gpuconv/_plans.py), ``contiguous``, ``index_array`` or ``no_indices``:
the channels a launch plan names, so that every pooling launch path can be recorded and replayed.
A launcher does no other GPU work (no elementwise CuPy operation, no fill in place), which the
recorder could not see.
"""
from __future__ import annotations

import functools

import numpy as np

from .._args import INT32_MAX
from .._arrays import copy_for_kernels, is_aligned, is_kernel_ready
from .._fast_divmod import FLAT_DECODER_DTYPE, flat_decoder
from .._kernels import CUDA_TYPES, cuda_type, register
from .._loader import get_function
from .._plans import derived, empty, unused_argument
from ..conv.geometry import unused_as_one
from .geometry import Pool2dGeometry

TYPES = tuple(CUDA_TYPES.values())   # every element type the kernels are instantiated for
BOOLS = ("false", "true")
BLOCK = 256
# Grid-stride kernels need no more blocks than the GPU can hold at once several times over; the
# cap keeps per-launch block counts (and the simulator's block loop) bounded for huge tensors.
MAX_BLOCKS = 1 << 16
# The backward gathers read their output bounds from per-block tables in shared memory
# (kernels/common/pool_window.cuh, adaptive_bins.cuh) when these take at most this many bytes
# and each thread has at least as many elements to visit as table entries to fill (each entry
# costs two divisions, each element saves four or more); otherwise they compute the bounds per
# element. The kernels take the choice as `use_tables`.
BOUND_TABLE_BYTES = 16 * 1024
# NHWC channel vectors: the kernels' kVectors flag makes a thread own this many bytes of
# consecutive channels of one pixel (8 halves, 4 floats, 2 doubles), one load or store each.
VECTOR_BYTES = 16


def bound_tables(ints: int, total: int) -> tuple[np.int32, int]:
    """(the kernels' use_tables argument, their dynamic shared memory) for tables of ``ints``
    entries in a grid-stride launch over ``total`` elements (launch_elementwise's grid)."""
    nbytes = 4 * ints
    threads = grid_for(total)[0] * BLOCK
    fills_per_thread = -(-ints // BLOCK)
    visits_per_thread = -(-total // threads)
    if nbytes <= BOUND_TABLE_BYTES and visits_per_thread >= fills_per_thread:
        return np.int32(1), nbytes
    return np.int32(0), 0


# kernels/common/pool_shape.cuh's gc::PoolShape: 14 int32 sizes, then the FlatDecoders of the
# input (C, H, W) and the output (C, P, Q), 128 bytes with no padding, passed to the kernels by
# value as one NumPy structured scalar.
POOL_SHAPE_DTYPE = np.dtype(
    [(name, np.int32) for name in ("N", "C", "H", "W", "P", "Q", "R", "S", "stride_h",
                                   "stride_w", "pad_h", "pad_w", "dil_h", "dil_w")]
    + [("input", FLAT_DECODER_DTYPE), ("output", FLAT_DECODER_DTYPE)])


def _check_window_reach(axis: str, size: int, outputs: int, kernel: int, stride: int, pad: int,
                        dilation: int) -> None:
    """The window kernels form a window's bounds in int before they clip them
    (pool_window.cuh, avg_pool.cu, lp_pool.cu): an input position plus the padding plus the
    dilation (a window's last tap; the outputs holding a row), the last window's start plus its
    span (its end). Past INT32_MAX such a sum wraps and a window comes out empty; only a plane of
    ~2^30 rows with a window or padding as large reaches that: refused rather than computed
    wrong."""
    reach = max(size + pad + dilation, (outputs - 1) * stride + dilation * (kernel - 1) + 1)
    if reach > INT32_MAX:
        raise ValueError(
            f"the pooling window's reach along the {axis} is too large for the kernels' 32-bit "
            f"arithmetic: max(size + padding + dilation, (outputs - 1) * stride + dilation * "
            f"(kernel_size - 1) + 1) = {reach} > {INT32_MAX} (size {size}, outputs {outputs}, "
            f"kernel_size {kernel}, stride {stride}, padding {pad}, dilation {dilation})")


@functools.lru_cache(maxsize=4096)      # geometries are frozen (hashable) dataclasses
def pool_shape(geom, windows: bool = True) -> tuple[np.void]:
    """The geometry argument of the pooling kernels (one gc::PoolShape, as a 1-tuple to splice
    into an argument list). A Pool2dGeometry brings its window; any other geometry with N, C, H,
    W (and P, Q if it has them: else 1) gets the window of one tap. ``windows``: whether the
    kernel forms the windows (max_unpool2d's scatter does not: its window's reach is not
    checked)."""
    N, C, H, W = geom.N, geom.C, geom.H, geom.W
    P, Q = getattr(geom, "P", 1), getattr(geom, "Q", 1)
    if isinstance(geom, Pool2dGeometry):
        # A stride with a single output along its axis (or a dilation with a single tap)
        # changes nothing and may exceed 32 bits (torch accepts any size): the kernels get 1.
        strides = unused_as_one((geom.stride_h, geom.stride_w), (P, Q))
        dilations = unused_as_one((geom.dil_h, geom.dil_w), (geom.R, geom.S))
        window = (geom.R, geom.S, *strides, geom.pad_h, geom.pad_w, *dilations)
        if windows:
            _check_window_reach("height", H, P, geom.R, strides[0], geom.pad_h, dilations[0])
            _check_window_reach("width", W, Q, geom.S, strides[1], geom.pad_w, dilations[1])
    else:
        window = (1, 1, 1, 1, 0, 0, 1, 1)
    fields = (N, C, H, W, P, Q, *window, flat_decoder(C, H, W), flat_decoder(C, P, Q))
    return (np.array(fields, dtype=POOL_SHAPE_DTYPE)[()],)


def instantiations(template: str, **axes) -> list[str]:
    """Every name expression of ``template`` over template-argument axes:
    ``instantiations("k<{T}, {L}>", T=("float", "double"), L=("false", "true"))``."""
    names = [template]
    for axis, values in axes.items():
        names = [n.replace("{" + axis + "}", v) for n in names for v in values]
    return names


def register_family(source: str, *templates: str, **axes):
    """Register kernel family ``source`` with every instantiation of ``templates`` over ``axes``
    (an axis missing from a template leaves it alone); every kernel is hot (the compile check
    fails on any spill or stack frame in them)."""
    names = [n for t in templates for n in instantiations(t, **axes)]
    return register(source, names, hot=names)


def nhwc_vector(dtype, C: int) -> int:
    """Channels per thread of an NHWC kernel with channel vectors: VECTOR_BYTES of ``dtype``
    where C splits into them, else 1."""
    vector = VECTOR_BYTES // np.dtype(dtype).itemsize
    return vector if C % vector == 0 else 1


def channel_vectors(data_format: str, C: int, *arrays) -> int:
    """Channels per thread of a pooling kernel that takes a pixel's channels as one vector (the
    window and adaptive kernels' kVectors: the pixel's index arithmetic paid once per vector):
    nhwc_vector of the first array's dtype where every array is aligned for it, else 1; always
    1 in NCHW."""
    if data_format != "NHWC":
        return 1
    vector = nhwc_vector(arrays[0].dtype, C)
    if vector > 1 and all(is_aligned(a, VECTOR_BYTES) for a in arrays):
        return vector
    return 1


def layout_shape(N: int, C: int, h: int, w: int, data_format: str) -> tuple[int, int, int, int]:
    return (N, h, w, C) if data_format == "NHWC" else (N, C, h, w)


def xp_for(executor: str):
    if executor == "cupy":
        import cupy
        return cupy
    return np


def contiguous(xp, a, dtype=None):
    """``a`` as a C-contiguous, element-aligned array (no copy when it already is one of
    ``dtype``)."""
    if is_kernel_ready(a) and (dtype is None or a.dtype == dtype):
        return a
    return derived(functools.partial(copy_for_kernels, xp, dtype=dtype), a)


def _saturated_int64(xp, indices):
    """uint64 indices as int64, those of 2^63 and above as 2^63 - 1 (a plain cast would wrap
    2^64 - 1 to -1, the value of a window in the padding, and a kernel would take it)."""
    return copy_for_kernels(xp, xp.minimum(indices, np.uint64(2 ** 63 - 1)), np.dtype(np.int64))


def index_array(xp, indices):
    """Pooling indices as the kernels read them: contiguous int64 (out-of-range values stay out
    of range, for the kernels' check to refuse)."""
    if indices.dtype == np.uint64:
        return derived(functools.partial(_saturated_int64, xp), indices)
    return contiguous(xp, indices, np.dtype(np.int64))


def acc_dtype(dtype) -> np.dtype:
    """The kernels' accumulator type: float64 for float64, float32 otherwise."""
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


def acc_scalar(dtype, value):
    return acc_dtype(dtype).type(value)


def i32(value) -> np.int32:
    return np.int32(value)


def flag(value: bool) -> str:
    """A C++ bool template argument."""
    return "true" if value else "false"


def nhwc(data_format: str) -> str:
    return flag(data_format == "NHWC")


def ctype(dtype) -> str:
    return cuda_type(dtype)


def check_int32(*arrays_or_sizes) -> None:
    """The kernels index with 32-bit ints (design.md: the fast path); larger tensors are refused
    here with a clear error rather than computed wrong."""
    for a in arrays_or_sizes:
        size = int(a) if isinstance(a, (int, np.integer)) else int(a.size)
        if size > INT32_MAX:
            raise ValueError(f"a pooling operand has {size} elements; the kernels index with "
                             f"32-bit ints and support at most {INT32_MAX}: split the batch "
                             "or the channels, or pool to a smaller output")


def grid_for(total: int, block: int = BLOCK) -> tuple[int]:
    return (max(1, min(-(-int(total) // block), MAX_BLOCKS)),)


def launch(family, name: str, executor: str, grid, block, args, shared_mem: int = 0) -> None:
    kernel = get_function(family, name, executor)
    kernel(tuple(grid), tuple(block), tuple(args), shared_mem=int(shared_mem))


def launch_elementwise(family, name: str, executor: str, total: int, args,
                       shared_mem: int = 0) -> None:
    """A grid-stride kernel over ``total`` items (skipped when there are none)."""
    if total > 0:
        launch(family, name, executor, grid_for(total), (BLOCK,), args, shared_mem)


def no_indices(xp):
    """The int64 argument of a kernel instantiated not to touch its index array: one per array
    module and device, never read, so that such a launch allocates nothing."""
    return unused_argument(xp, np.int64)


def forward_operands(xp, geom, x, data_format: str):
    """(x contiguous, an uninitialized output of shape (N, C, P, Q) in ``data_format``): what a
    pooling forward over ``geom`` launches on. ``xp`` is the launcher's array module (tests
    substitute one that poisons ``empty``)."""
    x = contiguous(xp, x)
    check_int32(x, geom.N * geom.C * geom.P * geom.Q)
    return x, empty(xp, layout_shape(geom.N, geom.C, geom.P, geom.Q, data_format), x.dtype)


def switch_operands(xp, grad_output, x, indices, recompute_indices):
    """(grad_output, x, indices) as the max-pooling backward kernels read them: contiguous, the
    32-bit limit checked, the indices int64 (the forward's, or ``recompute_indices(x)`` when
    None)."""
    x = contiguous(xp, x)
    check_int32(x, grad_output)
    indices = recompute_indices(x) if indices is None else index_array(xp, indices)
    return contiguous(xp, grad_output), x, indices


def grad_through_switches(xp, family, kernel: str, grad_output, x, indices, recompute_indices,
                          kernel_args, *, data_format: str, executor: str,
                          shared_mem: int = 0, template_tail: str = "",
                          vectors_flag: bool = False):
    """The backward of a max pooling, a gather through its switches: ``kernel<T, NHWC>``
    (``template_tail`` appended to its template arguments: ", 3, 2") on (grad_output, indices,
    grad_input, *kernel_args) over every input element. ``indices`` are the forward's, or, when
    None, ``recompute_indices(x)`` with x made contiguous. ``xp`` as in ``forward_operands``.
    ``vectors_flag``: the kernel's last template argument is kVectors, set where
    channel_vectors allows it (one thread per vector)."""
    grad_output, x, indices = switch_operands(xp, grad_output, x, indices, recompute_indices)
    grad_input = empty(xp, x.shape, grad_output.dtype)
    vectors = 1
    if vectors_flag:
        vectors = channel_vectors(data_format, x.shape[-1] if data_format == "NHWC" else 1,
                                  grad_output, indices, grad_input)
        template_tail += f", {flag(vectors > 1)}"
    name = f"{kernel}<{ctype(grad_output.dtype)}, {nhwc(data_format)}{template_tail}>"
    launch_elementwise(family, name, executor, grad_input.size // vectors,
                       (grad_output, indices, grad_input, *kernel_args), shared_mem)
    return grad_input
