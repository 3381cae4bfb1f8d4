"""Validation and normalization of every pooling argument: the one place they are checked.

The builders below turn a call's input shape (logical NCHW; ``nchw_shape`` converts from the
call's ``data_format``) and its public arguments into a frozen geometry record, with PyTorch's
rules wherever api.md is silent. The public fronts, the NumPy reference path and the launchers all
start from these records, so a rule is stated once and nothing invalid reaches a kernel. Every
error is a ValueError/TypeError whose message names the argument and the rule.

Three records:
- ``Pool2dGeometry``: sliding windows (max_pool2d, avg_pool2d, lp_pool2d) and, with the roles of
  input and output swapped, max_unpool2d.
- ``AdaptivePool2dGeometry``: adaptive and global pooling (windows derived from H/P and W/Q).
- ``SpatialPyramidGeometry``: one adaptive pooling per pyramid level plus the reduction mode.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .. import _state
from .._args import (INT32_MAX, as_choice, as_flag, as_int, as_pair, check_holdable,
                     is_holdable, memoized_check, sequence_of)
from .._arrays import check_index_array, xp_of
from ..conv.geometry import check_data_format, layout_shape, nchw_shape  # noqa: F401 (re-exported)

SPP_MODES = ("max", "avg")

# A max-pooling index for a window that holds no input element at all (possible only with
# dilation > input size, where every tap of a window falls into the padding): its value is -inf,
# as in PyTorch, and its gradient goes nowhere. PyTorch reports the clamped window start there, a
# position outside the window (sometimes outside the plane) that its backward then writes to.
NO_INDEX = -1


@dataclass(frozen=True)
class _Planes:
    """x (N, C, H, W) -> (N, C, P, Q): the shapes every pooling record shares."""
    N: int
    C: int
    H: int
    W: int
    P: int
    Q: int

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.N, self.C, self.H, self.W)

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        return (self.N, self.C, self.P, self.Q)


@dataclass(frozen=True)
class Pool2dGeometry(_Planes):
    """A validated sliding-window pooling: x (N, C, H, W) -> (N, C, P, Q).

    Output (p, q) reduces the R x S taps (r, s) at input row ``p*stride_h - pad_h + r*dil_h`` and
    column ``q*stride_w - pad_w + s*dil_w``; taps outside the input are padding (never a maximum;
    for avg_pool2d they count in the divisor as PyTorch counts them). ``ceil_mode`` is recorded for
    avg_pool2d's divisor; P and Q already include its effect.

    For max_unpool2d the same record describes the max_pool2d that the unpooling inverts: H, W is
    the *unpooled output* size and P, Q the size of the unpool's input x (dilation 1, no ceil_mode).
    """
    R: int
    S: int
    stride_h: int
    stride_w: int
    pad_h: int
    pad_w: int
    dil_h: int
    dil_w: int
    ceil_mode: bool


@dataclass(frozen=True)
class AdaptivePool2dGeometry(_Planes):
    """A validated adaptive pooling: x (N, C, H, W) -> (N, C, P, Q).

    Output row p reduces input rows ``[floor(p*H/P), ceil((p+1)*H/P))`` and likewise for columns
    (``adaptive_window``): every window is non-empty, windows may overlap, and P > H is allowed.
    Global pooling is the case P = Q = 1. P or Q may be 0 (PyTorch's empty output).
    """

    @property
    def empty_output(self) -> bool:
        """Whether the output has no channels, rows or columns (nothing for an executor to
        compute; an empty batch is every executor's own case)."""
        return self.C == 0 or self.P == 0 or self.Q == 0


@dataclass(frozen=True)
class SpatialPyramidGeometry:
    """A validated spatial pyramid pooling: for each level l, an adaptive ``mode`` pooling of
    x (N, C, H, W) to (l, l), reshaped to (N, C*l*l) in the call's layout (so NCHW orders each
    level's block c, i, j and NHWC orders it i, j, c), the levels concatenated in order."""
    N: int
    C: int
    H: int
    W: int
    levels: tuple[int, ...]
    mode: str

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.N, self.C, self.H, self.W)

    @property
    def output_shape(self) -> tuple[int, int]:
        return (self.N, self.C * sum(l * l for l in self.levels))

    @property
    def level_geometries(self) -> tuple[AdaptivePool2dGeometry, ...]:
        return tuple(AdaptivePool2dGeometry(self.N, self.C, self.H, self.W, l, l) for l in self.levels)


def adaptive_window(i: int, out_size: int, in_size: int) -> tuple[int, int]:
    """[start, end) of output position i of an adaptive pooling of in_size to out_size."""
    return (i * in_size) // out_size, -(-((i + 1) * in_size) // out_size)


# --------------------------------------------------------------------------------------------
# shapes


def _check_x_shape(shape: Sequence[int], name: str = "x", *,
                   empty_channels: bool = False) -> tuple[int, int, int, int]:
    # Only the batch may be empty (an empty result), as in PyTorch's pooling shape checks;
    # ``empty_channels``: the channels too, as torch's adaptive_avg_pool2d, which checks only
    # the spatial sizes.
    N, C, H, W = (int(v) for v in shape)
    if min(H, W) < 1 or C < (0 if empty_channels else 1):
        what = "spatial" if empty_channels else "channel and spatial"
        empty = "batch and channels" if empty_channels else "batch"
        raise ValueError(f"{name} must have non-zero {what} dimensions (only the {empty} may be "
                         f"empty), got logical NCHW shape {(N, C, H, W)}")
    return N, C, H, W


def pooled_size(size: int, kernel: int, stride: int, pad: int, dilation: int, ceil_mode: bool) -> int:
    """PyTorch's ``pooling_output_shape``: with ceil_mode, a last window that would start in the
    right/bottom padding (or beyond) is dropped; it must start inside the input or left padding."""
    span = dilation * (kernel - 1) + 1
    out = (size + 2 * pad - span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


# --------------------------------------------------------------------------------------------
# sliding-window pooling


@memoized_check
def pool2d_geometry(x_shape_nchw: Sequence[int], kernel_size: Any, stride: Any = None,
                    padding: Any = 0, dilation: Any = 1, ceil_mode: Any = False, *,
                    x_name: str = "x") -> Pool2dGeometry:
    """max_pool2d's arguments (avg_pool2d and lp_pool2d: dilation 1), PyTorch's rules: stride None
    (or empty) means kernel_size, padding at most half the (undilated) kernel, an output of at
    least 1x1. ``x_name``: what the caller calls the input in messages."""
    # As torch.nn.functional: a one-element sequence stands for both axes.
    R, S = as_pair("kernel_size", kernel_size, minimum=1, maximum=INT32_MAX, single=True)
    # torch.nn.functional spells "stride = kernel_size" as None or as an empty list.
    default_stride = stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0)
    sh, sw = (R, S) if default_stride else as_pair("stride", stride, minimum=1, single=True)
    ph, pw = as_pair("padding", padding, minimum=0, maximum=INT32_MAX, single=True)
    dh, dw = as_pair("dilation", dilation, minimum=1, single=True)
    ceil_mode = as_flag("ceil_mode", ceil_mode)
    if ph > R // 2 or pw > S // 2:
        raise ValueError(f"padding should be at most half of kernel_size, got padding {(ph, pw)} "
                         f"for kernel_size {(R, S)}")
    N, C, H, W = _check_x_shape(x_shape_nchw, x_name)
    P = pooled_size(H, R, sh, ph, dh, ceil_mode)
    Q = pooled_size(W, S, sw, pw, dw, ceil_mode)
    if P < 1 or Q < 1:
        raise ValueError(f"{x_name} is too small for kernel_size: input {H}x{W} with padding "
                         f"{(ph, pw)} and dilation {(dh, dw)} gives an output of {P}x{Q} for "
                         f"kernel_size {(R, S)}")
    return Pool2dGeometry(N, C, H, W, P, Q, R, S, sh, sw, ph, pw, dh, dw, ceil_mode)


def has_empty_window(geom: Pool2dGeometry) -> bool:
    """Whether some window holds no input element at all (every tap in the padding), the only
    place where max_pool2d's forward puts NO_INDEX: anywhere else an index of -1 cannot come
    from the forward (and its gradient would silently go nowhere)."""
    return (_axis_has_empty_window(geom.H, geom.P, geom.R, geom.stride_h, geom.pad_h, geom.dil_h)
            or _axis_has_empty_window(geom.W, geom.Q, geom.S, geom.stride_w, geom.pad_w,
                                      geom.dil_w))


def _axis_has_empty_window(size: int, out: int, kernel: int, stride: int, pad: int,
                           dilation: int) -> bool:
    # Every window starts below ``size`` (pooled_size), so one that starts at or after 0 holds
    # its first tap; only the ceil(pad / stride) windows starting in the left padding can miss
    # the input, when their first tap at or after 0 is past the window or past the input.
    for p in range(min(out, -(-pad // stride))):
        start = p * stride - pad
        first = -(start // dilation)        # ceil(-start / dilation): the first tap >= 0
        if first >= kernel or start + first * dilation >= size:
            return True
    return False


def check_divisor_override(divisor_override: Any) -> int | None:
    if divisor_override is None:
        return None
    divisor_override = as_int("divisor_override", divisor_override)
    if divisor_override == 0:
        raise ValueError("divisor_override must be a non-zero int or None, got 0")
    if not -2 ** 31 <= divisor_override < 2 ** 31:
        # The kernels take it as a 32-bit int; refused on every executor alike.
        raise ValueError(f"divisor_override must fit in a 32-bit int (|d| < 2**31), "
                         f"got {divisor_override}")
    return divisor_override


def check_norm_type(norm_type: Any) -> float:
    """lp_pool2d's p as torch 2.13 takes it: any real number but 0 (torch divides by it) and NaN;
    +-inf are the window's largest and smallest |x| (gpuconv/pool/lp_infinite.py)."""
    if isinstance(norm_type, bool) or not isinstance(norm_type, numbers.Real):
        raise TypeError(f"norm_type must be a real number, got {type(norm_type).__name__} "
                        f"{norm_type!r}")
    p = float(norm_type)
    if p != p:
        raise ValueError("norm_type must be a number, got nan")
    if p == 0:
        raise ValueError("norm_type must be non-zero (the result is a power 1/norm_type), got 0")
    return p


# --------------------------------------------------------------------------------------------
# adaptive, global and pyramid pooling


def _output_size_entry(i: int, value: Any, default: int) -> int:
    if value is None:
        return default
    return as_int(f"output_size[{i}]", value, minimum=0, maximum=INT32_MAX)


@memoized_check
def adaptive_pool2d_geometry(x_shape_nchw: Sequence[int], output_size: Any,
                             empty_channels: bool = False) -> AdaptivePool2dGeometry:
    """output_size: an int or a pair (h, w) of ints in [0, 2**31) (0: an empty output, as
    PyTorch; the kernels take 32-bit sizes); a None entry keeps that input size.
    ``empty_channels``: x may have 0 channels (adaptive_avg_pool2d, as torch's)."""
    N, C, H, W = _check_x_shape(x_shape_nchw, empty_channels=empty_channels)
    output_size = sequence_of(output_size)
    if isinstance(output_size, numbers.Integral) and not isinstance(output_size, bool):
        P = Q = as_int("output_size", output_size, minimum=0, maximum=INT32_MAX)
    elif isinstance(output_size, (tuple, list)):
        if len(output_size) != 2:
            raise ValueError(f"output_size must be an int or a pair (h, w), got {len(output_size)} "
                             f"values: {output_size!r}")
        P, Q = (_output_size_entry(i, v, d) for i, (v, d) in enumerate(zip(output_size, (H, W))))
    else:
        raise TypeError(f"output_size must be an int or a pair (h, w) of ints or None, "
                        f"got {type(output_size).__name__} {output_size!r}")
    check_holdable("output_size", output_size, (N, C, P, Q))
    return AdaptivePool2dGeometry(N, C, H, W, P, Q)


def global_pool2d_geometry(x_shape_nchw: Sequence[int],
                           empty_channels: bool = False) -> AdaptivePool2dGeometry:
    return adaptive_pool2d_geometry(x_shape_nchw, 1, empty_channels)


@memoized_check
def spatial_pyramid_geometry(x_shape_nchw: Sequence[int], levels: Any = (1, 2, 4),
                             mode: Any = "max") -> SpatialPyramidGeometry:
    """levels: a non-empty tuple, list, range or 1-D NumPy array of ints in [1, 2**31) (output
    sizes l x l); mode: "max" or "avg" (whose adaptive_avg_pool2d levels, as torch's, take x
    with 0 channels)."""
    mode = as_choice("mode", mode, SPP_MODES)
    N, C, H, W = _check_x_shape(x_shape_nchw, empty_channels=mode == "avg")
    if not (isinstance(levels, (tuple, list, range))
            or (isinstance(levels, np.ndarray) and levels.ndim == 1)):
        raise TypeError(f"levels must be a tuple, list, range or 1-D array of ints >= 1, got "
                        f"{type(levels).__name__} {levels!r}")
    if len(levels) == 0:
        raise ValueError("levels must hold at least one pyramid level, got an empty sequence")
    # each level is an adaptive output size: 32-bit, as theirs
    levels = tuple(as_int(f"levels[{i}]", l, minimum=1, maximum=INT32_MAX)
                   for i, l in enumerate(levels))
    return SpatialPyramidGeometry(N, C, H, W, levels, mode)


# --------------------------------------------------------------------------------------------
# max_unpool2d (PyTorch's _unpool_output_size)


def _requested_unpool_size(output_size: Any, data_format: str) -> tuple[int, int]:
    output_size = sequence_of(output_size)
    if not isinstance(output_size, (tuple, list)):
        raise TypeError(f"output_size must be None or a tuple/list of 2 (H, W) or 4 ints, "
                        f"got {type(output_size).__name__} {output_size!r}")
    sizes = tuple(as_int(f"output_size[{i}]", v, maximum=INT32_MAX)
                  for i, v in enumerate(output_size))
    if len(sizes) == 4:
        # As torch's max_unpool2d: only (H, W) count, whatever the batch and channels say.
        _, _, h, w = nchw_shape(sizes, data_format)
        positions = (data_format.index("H"), data_format.index("W"))
    elif len(sizes) == 2:
        (h, w), positions = sizes, (0, 1)
    else:
        raise ValueError(f"output_size must have 2 (H, W) or 4 ({data_format}) elements, got {len(sizes)}")
    for size, i in zip((h, w), positions):
        if size < 0:      # torch: "output_size must contain non-negative spatial dimensions"
            raise ValueError(f"output_size[{i}] must be >= 0, got {size}")
    return h, w


@memoized_check
def max_unpool2d_geometry(x_shape_nchw: Sequence[int], kernel_size: Any, stride: Any = None,
                          padding: Any = 0, output_size: Any = None,
                          data_format: str = "NCHW") -> Pool2dGeometry:
    """The max_pool2d that max_unpool2d inverts: H, W = unpooled output, P, Q = x's size.

    Default output (P-1)*stride + kernel_size - 2*padding; a requested output_size (2 ints, or 4 in
    ``data_format`` order) must lie strictly within stride of that default, as in PyTorch."""
    R, S = as_pair("kernel_size", kernel_size, minimum=1, maximum=INT32_MAX)
    # The stride scales the unpooled size, which the kernels take as a 32-bit int.
    sh, sw = (R, S) if stride is None else as_pair("stride", stride, minimum=1,
                                                   maximum=INT32_MAX)
    ph, pw = as_pair("padding", padding, minimum=0, maximum=INT32_MAX)
    N, C, P, Q = _check_x_shape(x_shape_nchw)
    default = ((P - 1) * sh + R - 2 * ph, (Q - 1) * sw + S - 2 * pw)
    if output_size is None:
        H, W = default
    else:
        H, W = _requested_unpool_size(output_size, data_format)
        for axis, size, base, s in (("height", H, default[0], sh), ("width", W, default[1], sw)):
            if not base - s < size < base + s:
                raise ValueError(f"invalid output_size {tuple(output_size)}: the {axis} must be "
                                 f"between {base - s} and {base + s} (exclusive) for this input, "
                                 f"kernel_size, stride and padding, got {size}")
    # An empty output (0 rows or columns) is allowed, as in torch: its values go nowhere.
    if H < 0 or W < 0:
        raise ValueError(f"padding {(ph, pw)} is too large for kernel_size {(R, S)}: the unpooled "
                         f"output would be {H}x{W}")
    if max(H, W) > INT32_MAX:     # the default size (an output_size is checked above)
        raise ValueError(f"kernel_size {(R, S)} and stride {(sh, sw)} give an unpooled output "
                         f"of {H}x{W} for a {P}x{Q} input: its sizes must be <= 2**31 - 1 (the "
                         f"kernels take 32-bit ints)")
    if output_size is not None:
        check_holdable("output_size", output_size, (N, C, H, W))
    elif not is_holdable((N, C, H, W)):
        raise ValueError(f"kernel_size {(R, S)} and stride {(sh, sw)} give an unpooled output "
                         f"of shape {(N, C, H, W)}: more than an array can hold")
    return Pool2dGeometry(N, C, H, W, P, Q, R, S, sh, sw, ph, pw, 1, 1, False)


# --------------------------------------------------------------------------------------------
# gradients and index arrays


def check_grad_output(grad_output: Any, expected_shape: Sequence[int], function: str) -> None:
    """grad_output (already dtype/library-checked) has exactly the output shape of ``function``."""
    if tuple(grad_output.shape) != tuple(expected_shape):
        raise ValueError(f"grad_output must have the shape of {function}'s output "
                         f"{tuple(expected_shape)}, got {tuple(grad_output.shape)}")


def _check_index_array_shape(indices: Any, library: str, expected_shape: Sequence[int],
                             name: str) -> None:
    check_index_array(name, indices, library)
    if tuple(indices.shape) != tuple(expected_shape):
        raise ValueError(f"{name} must have shape {tuple(expected_shape)}, "
                         f"got {tuple(indices.shape)}")


def check_indices(indices: Any, library: str, expected_shape: Sequence[int], plane_size: int, *,
                  allow_no_index: bool = False, name: str = "indices") -> None:
    """An integer index array of ``expected_shape`` whose values are flat positions h*W + w in
    [0, plane_size) (also NO_INDEX where ``allow_no_index``). Reading the range costs a device
    synchronization for CuPy arrays; a wrong index would write out of bounds in a kernel."""
    _check_index_array_shape(indices, library, expected_shape, name)
    if indices.size == 0:
        return
    xp = xp_of(library)
    lowest = NO_INDEX if allow_no_index else 0
    low, high = int(xp.min(indices)), int(xp.max(indices))
    if low < lowest or high >= plane_size:
        raise ValueError(f"{name} must hold flat positions h*W + w in [{lowest}, {plane_size}) "
                         f"(a plane of {plane_size} elements), found values in [{low}, {high}]")


def check_pool_indices(indices: Any, library: str, expected_shape: Sequence[int], geom,
                       data_format: str, *, window: str, allow_no_index: bool = False,
                       name: str = "indices", scan: bool = True,
                       deferred: bool = False) -> "IndicesScan | None":
    """``check_indices`` (over the plane geom.H x geom.W) and, unless ``window`` is "none",
    ``check_indices_in_windows`` ("strided": geom is a Pool2dGeometry; "adaptive": bins).
    For the NumPy reference the array rules below check them here (None is returned). Where the
    kernels run (CuPy, the simulator) a kernel scans them in one pass (pool/launch_indices.py)
    whose answer is not read here: the returned ``IndicesScan`` raises on ``raise_if_bad()``,
    which the caller invokes after queueing its own kernels (they are memory-safe with any
    index; a bad call's result is dropped), so that the one synchronization comes once the work
    is queued, and a launch plan can hold the scan. ``deferred``: the scan is not queued here but
    handed to the call's launcher (``IndicesScan.claim`` / ``launch``), whose backward scatter
    checks the indices as it reads them. ``scan=False``: the type and shape only, for indices
    gpuconv's own forward returned (the framework wrappers' backward passes), so that those
    never wait for the device."""
    executor = _state.executor_for(library)
    if executor == "reference" and scan:
        check_indices(indices, library, expected_shape, geom.H * geom.W,
                      allow_no_index=allow_no_index, name=name)
        if window != "none":
            check_indices_in_windows(indices, library, geom, data_format, name=name)
        return None
    _check_index_array_shape(indices, library, expected_shape, name)
    if not scan or indices.size == 0:
        return None
    pending = IndicesScan(indices, geom, data_format, window, allow_no_index, executor, name)
    if not deferred:
        pending.launch()
    return pending


class IndicesScan:
    """The device scan of ``indices``' values (``check_pool_indices``): queued as a pass of its
    own (``launch``), or claimed by a kernel that reads the indices anyway and checks them as it
    goes (``claim``: the backward scatter of pool/launch_switches.py)."""

    def __init__(self, indices, geom, data_format: str, window: str, allow_no_index: bool,
                 executor: str, name: str):
        self.indices, self.geom, self.data_format = indices, geom, data_format
        self.window, self.allow_no_index = window, allow_no_index
        self.executor, self.name = executor, name
        self.answer = None      # the int32 answer array, once a kernel is to write it

    def launch(self) -> None:
        """Queue the scan pass (kernels/pool/indices_check.cu), unless it is queued or claimed."""
        if self.answer is None:
            from .launch_indices import launch_indices_check
            self.answer = launch_indices_check(self.indices, self.geom, self.data_format,
                                               window=self.window,
                                               allow_no_index=self.allow_no_index,
                                               executor=self.executor)

    def claim(self) -> tuple:
        """The kernel arguments (answer array, window rule, allow_no_index) of a kernel that
        checks the indices as it reads them, which then stands for the scan pass."""
        from .launch_indices import fused_check_arguments
        if self.answer is not None:
            raise RuntimeError("the indices scan is already queued")
        self.answer, *rule = fused_check_arguments(self.window, self.allow_no_index,
                                                   self.executor)
        return (self.answer, *rule)

    def raise_if_bad(self) -> None:
        """The ValueError for the first index the forward cannot have produced, if any (reading
        the answer waits for the stream's work queued so far)."""
        from .launch_indices import first_bad_index
        self.launch()       # no-op unless the call's launcher neither claimed nor queued it
        bad = first_bad_index(self.answer, self.indices.size)
        if bad is None:
            return
        name, plane_size = self.name, self.geom.H * self.geom.W
        where = tuple(int(v) for v in np.unravel_index(bad, self.indices.shape))
        value = int(self.indices[where])
        lowest = NO_INDEX if self.allow_no_index else 0
        if not lowest <= value < plane_size:
            raise ValueError(f"{name} must hold flat positions h*W + w in [{lowest}, "
                             f"{plane_size}) (a plane of {plane_size} elements), found {value} at "
                             f"{name}[{where}]")
        raise ValueError(f"{name} must be the forward's indices: each names an element of its "
                         f"own output's window, but {name}[{where}] = {value} lies outside that "
                         f"window")


def check_indices_in_windows(indices: Any, library: str, geom, data_format: str, *,
                             name: str = "indices") -> None:
    """Each index (already range-checked by ``check_indices``) names an element of its own
    output's window, as the forward's indices do (NO_INDEX passes: it names nothing).

    An index outside its window cannot come from the forward, and the executors would disagree
    on it: the kernels' backward is a gather (each input element collects the outputs whose
    windows cover it, as PyTorch's CUDA backward does), the reference a scatter (as PyTorch's CPU
    backward). ``geom``: a Pool2dGeometry or an AdaptivePool2dGeometry."""
    if indices.size == 0:
        return
    xp = xp_of(library)
    # (P, 1) and (1, Q) views of the output rows and columns in the indices' layout.
    p_axis, q_axis = (1, 2) if data_format == "NHWC" else (2, 3)
    shape_p = [1] * indices.ndim
    shape_q = [1] * indices.ndim
    shape_p[p_axis], shape_q[q_axis] = geom.P, geom.Q
    p = xp.arange(geom.P).reshape(shape_p)
    q = xp.arange(geom.Q).reshape(shape_q)
    h, w = indices // geom.W, indices % geom.W
    if isinstance(geom, Pool2dGeometry):
        dh = h - (p * geom.stride_h - geom.pad_h)
        dw = w - (q * geom.stride_w - geom.pad_w)
        inside = ((dh >= 0) & (dh % geom.dil_h == 0) & (dh // geom.dil_h < geom.R)
                  & (dw >= 0) & (dw % geom.dil_w == 0) & (dw // geom.dil_w < geom.S))
    else:
        inside = ((h >= (p * geom.H) // geom.P) & (h < -(-((p + 1) * geom.H) // geom.P))
                  & (w >= (q * geom.W) // geom.Q) & (w < -(-((q + 1) * geom.W) // geom.Q)))
    outside = ~(inside | (indices == NO_INDEX))
    if bool(outside.any()):
        where = tuple(int(v[0]) for v in xp.nonzero(outside))
        raise ValueError(f"{name} must be the forward's indices: each names an element of its own "
                         f"output's window, but {name}[{where}] = {int(indices[where])} lies "
                         f"outside that window")
