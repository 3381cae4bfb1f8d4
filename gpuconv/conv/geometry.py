"""Validation and normalization of every convolution argument: the one place they are checked.

``conv2d_geometry`` and ``conv_transpose2d_geometry`` turn the user's shapes, strides, paddings,
dilations and groups into a ``ConvGeometry`` (CUTLASS names: N C H W input, K R S filters, P Q
output). The public fronts, the NumPy reference, the launchers and the utilities all start from
it, so a rule is stated once and nothing invalid reaches a kernel.

Shapes handed to the geometry functions are logical NCHW (weights KCRS); ``nchw_shape`` and
``layout_shape`` convert from and to a call's ``data_format``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .._args import INT32_MAX, as_choice, as_int, as_pair, is_int, memoized_check, sequence_of
from .._arrays import ArraySet, check_out, shares_elements

# Every algorithm a caller may force; "auto" lets the launcher choose per case.
conv_algorithms = ("direct", "im2col_gemm", "implicit_gemm", "pointwise", "depthwise",
                   "winograd_nonfused")
DATA_FORMATS = ("NCHW", "NHWC")
ACTIVATIONS = (None, "relu", "tanh", "sigmoid")


@dataclass(frozen=True)
class ConvGeometry:
    """A validated forward convolution: x (N, C, H, W) * weight (K, C/groups, R, S) -> (N, K, P, Q)."""
    N: int
    C: int
    H: int
    W: int
    K: int
    R: int
    S: int
    P: int
    Q: int
    pad_top: int
    pad_bottom: int
    pad_left: int
    pad_right: int
    stride_h: int
    stride_w: int
    dil_h: int
    dil_w: int
    groups: int

    @property
    def C_per_group(self) -> int:
        return self.C // self.groups

    @property
    def K_per_group(self) -> int:
        return self.K // self.groups

    # The implicit-GEMM view: (N*P*Q) x (C/groups*R*S) times (C/groups*R*S) x K, per group.
    @property
    def gemm_m(self) -> int:
        return self.N * self.P * self.Q

    @property
    def gemm_n(self) -> int:
        return self.K

    @property
    def gemm_k(self) -> int:
        return self.C_per_group * self.R * self.S

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.N, self.C, self.H, self.W)

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        return (self.N, self.K, self.P, self.Q)

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        return (self.K, self.C_per_group, self.R, self.S)


@dataclass(frozen=True)
class ConvTransposeGeometry(ConvGeometry):
    """The forward convolution whose input gradient is a transposed convolution.

    A transposed convolution of x (N, C_in, H_in, W_in) with weight (C_in, K_out/groups, R, S)
    is ``conv2d_input`` of this forward convolution with ``grad_output = x``: here ``input_shape``
    is the transposed convolution's output (N, K_out, H_out, W_out), ``output_shape`` its input,
    and ``weight_shape`` the weight exactly as given. The pads are PyTorch's ``padding`` on both
    sides; H and W already include ``output_padding_h/w``, the extra rows/columns at the
    bottom/right of the result (they receive only the taps that reach them, plus the bias).
    P and Q are the transposed convolution's input size. When output_padding >= stride (legal
    while it is < dilation) the forward formula applied to H would give more than P rows: the
    forward output is then cropped to P, i.e. the missing rows of grad_output count as zero.
    """
    output_padding_h: int
    output_padding_w: int


# --------------------------------------------------------------------------------------------
# shapes and layouts


def data_gradient_geometry(geom: ConvGeometry) -> ConvGeometry:
    """For a stride-1 ``geom``: the forward convolution whose output is its data gradient, dy
    (N, K, P, Q) convolved with the filters rotated by 180 degrees and transposed per group (the
    kernels that run it read the original weight with a flip), padded by dilation * (R - 1) - pad
    on each side (negative: that many rows or columns cropped). The Winograd and depthwise data
    gradients run this way."""
    if (geom.stride_h, geom.stride_w) != (1, 1):
        raise ValueError(f"only a stride-1 data gradient is a forward convolution, got stride "
                         f"{geom.stride_h}x{geom.stride_w}")

    def pad(before: int, taps: int, dilation: int) -> int:
        return dilation * (taps - 1) - before

    return ConvGeometry(N=geom.N, C=geom.K, H=geom.P, W=geom.Q, K=geom.C, R=geom.R, S=geom.S,
                        P=geom.H, Q=geom.W, pad_top=pad(geom.pad_top, geom.R, geom.dil_h),
                        pad_bottom=pad(geom.pad_bottom, geom.R, geom.dil_h),
                        pad_left=pad(geom.pad_left, geom.S, geom.dil_w),
                        pad_right=pad(geom.pad_right, geom.S, geom.dil_w), stride_h=1, stride_w=1,
                        dil_h=geom.dil_h, dil_w=geom.dil_w, groups=geom.groups)


def check_data_format(data_format: Any) -> str:
    return as_choice("data_format", data_format, DATA_FORMATS)


def nchw_output_size(output_size, data_format: str):
    """conv_transpose2d's ``output_size`` as the geometry reads it (NCHW): a whole output shape
    in NHWC order, (N, H, W, C), cut to its (H, W). A 1-D NumPy array is a sequence here as
    everywhere torch takes one (it was read as NCHW, so (W, C) became the size)."""
    output_size = sequence_of(output_size)
    if data_format == "NHWC" and isinstance(output_size, (tuple, list)) and len(output_size) == 4:
        return tuple(output_size)[1:3]      # only (H, W) count, as in NCHW
    return output_size


def nchw_shape(shape: Sequence[int], data_format: str) -> tuple[int, ...]:
    """The logical NCHW shape of a 4-D shape given in ``data_format``."""
    n, a, b, c = shape
    return (n, c, a, b) if data_format == "NHWC" else (n, a, b, c)


def layout_shape(shape_nchw: Sequence[int], data_format: str) -> tuple[int, ...]:
    """A logical NCHW shape as laid out in ``data_format``."""
    n, c, h, w = shape_nchw
    return (n, h, w, c) if data_format == "NHWC" else (n, c, h, w)


def check_shape(name: str, shape: Any, labels: Sequence[str], *, minimum: Sequence[int],
                maximum: Sequence[int | None] = (None,) * 4) -> tuple[int, ...]:
    """A 4-D shape (a tuple, list or range of ints, or a 1-D array of them: another array's
    ``.shape`` or a shape computed with NumPy); ``labels`` names each dimension in messages."""
    if not (isinstance(shape, (tuple, list, range))
            or (isinstance(shape, np.ndarray) and shape.ndim == 1)):
        kind = f"a {shape.ndim}-D array" if isinstance(shape, np.ndarray) else type(shape).__name__
        raise TypeError(f"{name} must be a shape (a tuple of 4 ints), got {kind}")
    shape = tuple(shape.tolist() if isinstance(shape, np.ndarray) else shape)
    if len(shape) != 4:
        raise ValueError(f"{name} must be 4-D ({', '.join(labels)}), got shape {shape}")
    return tuple(as_int(f"{name} dimension {label}", v, minimum=lo, maximum=hi)
                 for label, v, lo, hi in zip(labels, shape, minimum, maximum))


def _check_x_shape(name: str, shape: Any) -> tuple[int, int, int, int]:
    # An empty batch is allowed (an empty result); every other dimension must be >= 1. Rows and
    # columns are 32-bit ints in the kernels: a shape (a gradient's, a utility's) past that is
    # refused here, naming it, not by the padded-extent checks, which would name the padding.
    return check_shape(name, shape, "NCHW", minimum=(0, 1, 1, 1),
                       maximum=(None, None, INT32_MAX, INT32_MAX))


def _check_weight_shape(name: str, shape: Any, labels: str = "KCRS") -> tuple[int, int, int, int]:
    return check_shape(name, shape, labels, minimum=(1, 1, 1, 1))


# --------------------------------------------------------------------------------------------
# forward convolution


def _same_padding(size: int, stride: int, dilation: int, kernel: int) -> tuple[int, int]:
    # TensorFlow's rule: output = ceil(size / stride); the odd pixel of padding goes last.
    out = -(-size // stride)
    total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    return (total // 2, total - total // 2)


def _is_pair_of_pairs(value: Any) -> bool:
    return (isinstance(value, (tuple, list)) and len(value) == 2
            and all(isinstance(v, (tuple, list)) for v in value))


def parse_padding(padding: Any, x_hw: tuple[int, int], stride: tuple[int, int],
                  dilation: tuple[int, int], kernel: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """((top, bottom), (left, right)) from any form of ``padding`` the contract accepts."""
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0), (0, 0))
        if padding == "same":
            return tuple(_same_padding(*args) for args in zip(x_hw, stride, dilation, kernel))
        raise ValueError(f"padding must be {_PADDING_FORMS}; got {padding!r}")
    if _is_pair_of_pairs(padding):
        for i, (side, p) in enumerate(zip(("(top, bottom)", "(left, right)"), padding)):
            if len(p) != 2:
                raise ValueError(f"padding[{i}] must be a pair {side}, got {len(p)} values: {p!r}")
        return tuple(as_pair(f"padding[{i}]", p, minimum=0, maximum=INT32_MAX)
                     for i, p in enumerate(padding))
    _check_padding_form(padding)
    ph, pw = as_pair("padding", padding, minimum=0, maximum=INT32_MAX)
    return ((ph, ph), (pw, pw))


_PADDING_FORMS = ("an int, a pair (ph, pw), a pair of pairs ((top, bottom), (left, right)), "
                  "'valid' or 'same'")


def _check_padding_form(padding: Any) -> None:
    """A padding that is none of the forms (three values, an int beside a pair, a float) is told
    every form: as_pair alone would name only the int and (h, w) ones."""
    if isinstance(padding, (tuple, list)):
        if len(padding) != 2:
            raise ValueError(f"padding must be {_PADDING_FORMS}; got {len(padding)} values: {padding!r}")
        if any(isinstance(p, (tuple, list)) for p in padding):
            raise TypeError(f"padding must be {_PADDING_FORMS}; got {padding!r}")
    elif not is_int(padding):
        raise TypeError(f"padding must be {_PADDING_FORMS}; got {type(padding).__name__} {padding!r}")


def _output_size(size: int, pad: int, dilation: int, kernel: int, stride: int) -> int:
    return (size + pad - dilation * (kernel - 1) - 1) // stride + 1


def _as_groups(groups: Any) -> int:
    """``groups``, an int >= 1 (a 0-d integer NumPy array too, as every int: _args.is_int)."""
    return as_int("groups", groups, minimum=1)


def _check_groups(groups: Any, channels: int, x_name: str, out_channels: int, out_name: str) -> int:
    groups = _as_groups(groups)
    if channels % groups:
        raise ValueError(f"groups={groups} must divide the {channels} channels of {x_name}")
    if out_channels % groups:
        raise ValueError(f"groups={groups} must divide the {out_channels} {out_name}")
    return groups


@memoized_check
def conv2d_geometry(x_shape_nchw: Any, weight_shape: Any, stride: Any = 1, padding: Any = 0,
                    dilation: Any = 1, groups: Any = 1, *, x_name: str = "x",
                    weight_name: str = "weight") -> ConvGeometry:
    """Validate a forward convolution's arguments; the messages name the offending argument
    (``x_name``/``weight_name``: what the caller calls the input and weight, e.g. "input_shape")."""
    sh, sw = as_pair("stride", stride, minimum=1)
    dh, dw = as_pair("dilation", dilation, minimum=1)
    N, C, H, W = _check_x_shape(x_name, x_shape_nchw)
    K, Cg, R, S = _check_weight_shape(weight_name, weight_shape)
    groups = _check_groups(groups, C, x_name, K, f"output channels ({weight_name} dimension K)")
    if Cg * groups != C:
        raise ValueError(f"{weight_name} of shape {(K, Cg, R, S)} with groups={groups} expects "
                         f"{x_name} with {Cg * groups} channels ({weight_name} dimension C = "
                         f"channels / groups), but {x_name} has {C} channels")
    (pt, pb), (pl, pr) = parse_padding(padding, (H, W), (sh, sw), (dh, dw), (R, S))
    P = _output_size(H, pt + pb, dh, R, sh)
    Q = _output_size(W, pl + pr, dw, S, sw)
    if P < 1 or Q < 1:
        raise ValueError(
            f"{x_name} is too small for the kernel: input {H}x{W} padded by {(pt, pb)}x{(pl, pr)} is "
            f"smaller than the dilated weight {dh * (R - 1) + 1}x{dw * (S - 1) + 1} "
            f"(weight {R}x{S}, dilation {(dh, dw)}), so the output would be {P}x{Q}")
    _check_padded_extent(padding, H, W, (pt, pb), (pl, pr), (dh, dw), (R, S))
    (sh, sw), (dh, dw) = unused_as_one((sh, sw), (P, Q)), unused_as_one((dh, dw), (R, S))
    return ConvGeometry(N, C, H, W, K, R, S, P, Q, pt, pb, pl, pr, sh, sw, dh, dw, groups)


def _check_padded_extent(padding: Any, H: int, W: int, pads_h: tuple[int, int],
                         pads_w: tuple[int, int], dilation: tuple[int, int],
                         kernel: tuple[int, int]) -> None:
    """The zero-padded input of the forward convolution stays under 2**31 rows and columns: the
    kernels form row and column positions (output * stride - pad + tap * dilation, all of them
    inside it) in 32-bit integers."""
    for axis, size, pads, d, r in zip(("height", "width"), (H, W), (pads_h, pads_w), dilation,
                                      kernel):
        if size + sum(pads) <= INT32_MAX:
            continue
        # "same" derives the padding from the dilated kernel: the dilation is what to change.
        cause = (f"dilation {dilation} with a {kernel[0]}x{kernel[1]} weight (padding 'same' "
                 f"pads the {axis} by dilation * {r - 1} = {d * (r - 1)})"
                 if padding == "same" else f"padding {padding!r}")
        raise ValueError(f"{cause} makes the padded input's {axis} {size} + {pads[0]} + "
                         f"{pads[1]} = {size + sum(pads)}: it must stay under 2**31 (the kernels "
                         "address rows and columns with 32-bit integers)")


def unused_as_one(steps: tuple[int, int], counts: tuple[int, int]) -> tuple[int, int]:
    """A stride (dilation) per axis, 1 where that axis has a single output (filter tap).

    A stride only separates outputs and a dilation only separates taps, so with one of them
    its value changes nothing; torch accepts any size there, and 1 keeps a huge one (2**31 or
    more) out of the kernels' 32-bit arguments."""
    return tuple(1 if count == 1 else step for step, count in zip(steps, counts))


# --------------------------------------------------------------------------------------------
# transposed convolution (PyTorch's rules)


def _transposed_size(size: int, stride: int, pad: int, dilation: int, kernel: int, out_pad: int) -> int:
    return (size - 1) * stride - 2 * pad + dilation * (kernel - 1) + out_pad + 1


def _check_transposed_extent(x_hw: tuple[int, int], stride: tuple[int, int],
                             dilation: tuple[int, int], kernel: tuple[int, int],
                             output_padding: tuple[int, int], source: str) -> None:
    """A transposed convolution's output before ``padding`` crops it (the padded input of the
    forward convolution it is the gradient of) stays under 2**31 rows and columns, as
    ``_check_padded_extent`` asks of a forward one. Its size does not depend on the padding, so
    the message names what it depends on: the stride, the dilation and the output padding
    (``source``: "output_size" where that decided the output padding)."""
    for axis, n, s, d, k, op in zip(("height", "width"), x_hw, stride, dilation, kernel,
                                    output_padding):
        extent = (n - 1) * s + d * (k - 1) + op + 1
        if extent > INT32_MAX:
            given = (f"output_padding {op}" if source == "output_padding"
                     else f"output_size (output padding {op})")
            raise ValueError(f"stride {s}, dilation {d} and {given} make the output's {axis} "
                             f"before padding crops it ({n} - 1) * {s} + {d} * ({k} - 1) + {op} "
                             f"+ 1 = {extent}: it must stay under 2**31 (the kernels address "
                             "rows and columns with 32-bit integers)")


def _output_padding_from_size(output_size: Any, minimum: tuple[int, int],
                              stride: tuple[int, int], x_hw: tuple[int, int]) -> tuple[int, int]:
    """output_padding that gives ``output_size``, checked against torch's achievable range."""
    output_size = sequence_of(output_size)
    if not isinstance(output_size, (tuple, list)):
        raise TypeError(f"output_size must be None or a sequence of 2 or 4 ints, "
                        f"got {type(output_size).__name__}")
    sizes = tuple(output_size)
    if len(sizes) == 4:
        # As torch.nn.ConvTranspose2d: only (H, W) count, so that ``output_size=skip.size()``
        # works with a tensor of another batch or channel count (U-Net decoders do this).
        sizes = sizes[2:]
    elif len(sizes) != 2:
        raise ValueError(f"output_size must have 2 (H, W) or 4 (N, C, H, W) elements, got {len(sizes)}")
    sizes = tuple(as_int(f"output_size[{i}]", v) for i, v in enumerate(sizes))
    maximum = tuple(lo + s - 1 for lo, s in zip(minimum, stride))
    if any(not lo <= v <= hi for v, lo, hi in zip(sizes, minimum, maximum)):
        raise ValueError(f"requested an output_size of {list(sizes)}, but valid sizes range from "
                         f"{list(minimum)} to {list(maximum)} (for an input of {list(x_hw)})")
    return tuple(v - lo for v, lo in zip(sizes, minimum))


@memoized_check
def conv_transpose2d_geometry(x_shape: Any, weight_shape: Any, stride: Any = 1, padding: Any = 0,
                              output_padding: Any = 0, groups: Any = 1, dilation: Any = 1,
                              output_size: Any = None, *, x_name: str = "x",
                              weight_name: str = "weight") -> ConvTransposeGeometry:
    """Validate a transposed convolution (weight (C_in, K_out/groups, R, S), NCHW) as PyTorch does.

    ``output_size`` (2 or 4 ints), when given, decides the output padding and ``output_padding``
    is ignored, as in ``torch.nn.ConvTranspose2d.forward(x, output_size)``.
    """
    sh, sw = as_pair("stride", stride, minimum=1)
    dh, dw = as_pair("dilation", dilation, minimum=1)
    if isinstance(padding, str):
        raise TypeError(f"padding must be an int or a pair (h, w) for conv_transpose2d; "
                        f"the string form {padding!r} is not supported for transposed convolutions")
    ph, pw = as_pair("padding", padding, minimum=0, maximum=INT32_MAX)
    oph, opw = as_pair("output_padding", output_padding, minimum=0, maximum=INT32_MAX)
    N, C_in, H_in, W_in = _check_x_shape(x_name, x_shape)
    Cw, Kg, R, S = _check_weight_shape(weight_name, weight_shape, labels=("C_in", "K_out/groups", "R", "S"))
    groups = _as_groups(groups)
    if C_in % groups:
        raise ValueError(f"groups={groups} must divide the {C_in} channels of {x_name}")
    if Cw != C_in:
        raise ValueError(f"{weight_name} of shape {(Cw, Kg, R, S)} expects {x_name} with {Cw} "
                         f"channels ({weight_name} dimension C_in), but {x_name} has {C_in} channels")
    K_out = Kg * groups
    if output_size is None:
        for axis, op, s, d in (("height", oph, sh, dh), ("width", opw, sw, dw)):
            if not (op < s or op < d):
                raise ValueError(f"output_padding must be smaller than either stride or dilation, "
                                 f"got output_padding {op} >= stride {s} and >= dilation {d} in {axis}")
    else:
        minimum = (_transposed_size(H_in, sh, ph, dh, R, 0), _transposed_size(W_in, sw, pw, dw, S, 0))
        oph, opw = _output_padding_from_size(output_size, minimum, (sh, sw), (H_in, W_in))
    H_out = _transposed_size(H_in, sh, ph, dh, R, oph)
    W_out = _transposed_size(W_in, sw, pw, dw, S, opw)
    if H_out < 1 or W_out < 1:
        raise ValueError(f"padding {(ph, pw)} is too large: for an input of {H_in}x{W_in} the "
                         f"output would be {H_out}x{W_out}")
    _check_transposed_extent((H_in, W_in), (sh, sw), (dh, dw), (R, S), (oph, opw),
                             "output_size" if output_size is not None else "output_padding")
    (sh, sw), (dh, dw) = unused_as_one((sh, sw), (H_in, W_in)), unused_as_one((dh, dw), (R, S))
    return ConvTransposeGeometry(N, K_out, H_out, W_out, C_in, R, S, H_in, W_in,
                                 ph, ph, pw, pw, sh, sw, dh, dw, groups, oph, opw)


# --------------------------------------------------------------------------------------------
# the other arguments of conv2d


def check_activation(activation: Any) -> str | None:
    return as_choice("activation", activation, ACTIVATIONS)


def check_algorithm(algorithm: Any) -> str:
    return as_choice("algorithm", algorithm, ("auto",) + conv_algorithms)


def check_bias(bias: Any, channels: int, *, name: str = "bias") -> None:
    """``bias`` (already dtype/library-checked) is None or of shape (channels,)."""
    if bias is not None and tuple(bias.shape) != (channels,):
        raise ValueError(f"{name} must have shape ({channels},) (one value per output channel), "
                         f"got {tuple(bias.shape)}")


def check_residual(residual: Any, geom: ConvGeometry, data_format: str) -> None:
    """``residual`` (already dtype/library-checked) is None or of the output's shape in the layout."""
    if residual is None:
        return
    expected = layout_shape(geom.output_shape, data_format)
    if tuple(residual.shape) != expected:
        raise ValueError(f"residual must have the output's shape {expected} ({data_format}), "
                         f"got {tuple(residual.shape)}")


def is_channel_slice_of_contiguous(out: Any) -> bool:
    """True for ``buf[:, c0:c1]`` of a C-contiguous NCHW ``buf`` (whole buffers included)."""
    if out.size == 0:
        return True   # nothing is written; NumPy 2 reports zero strides for empty arrays
    n, c, h, w = out.shape
    item = out.dtype.itemsize
    plane = h * w * item
    strides = tuple(out.strides)
    inner_ok = ((w <= 1 or strides[3] == item) and (h <= 1 or strides[2] == w * item)
                and (c <= 1 or strides[1] == plane))
    # The batch stride spans the whole buffer's channels: a whole number of planes, >= c of them.
    batch_ok = n <= 1 or (strides[0] > 0 and strides[0] % plane == 0 and strides[0] >= c * plane)
    return inner_ok and batch_ok


def is_nhwc_channel_slice_of_contiguous(out: Any) -> bool:
    """True for ``buf[..., c0:c1]`` of a C-contiguous NHWC ``buf`` (whole buffers included):
    channels one element apart, pixels ``buf``'s channel count apart, rows and images packed."""
    if out.size == 0:
        return True
    n, h, w, c = out.shape
    item = out.dtype.itemsize
    strides = tuple(out.strides)
    # the pixel stride, read from the first axis of more than one pixel (else any will do)
    pixel = next((stride // pixels for size, stride, pixels in
                  ((w, strides[2], 1), (h, strides[1], w), (n, strides[0], h * w)) if size > 1),
                 c * item)
    return ((c <= 1 or strides[3] == item) and pixel >= c * item and pixel % item == 0
            and all(size <= 1 or stride == pixels * pixel for size, stride, pixels in
                    ((w, strides[2], 1), (h, strides[1], w), (n, strides[0], h * w))))


def check_conv_out(out: Any, shape: tuple[int, ...], arrays: ArraySet, data_format: str,
                   inputs: dict[str, Any]) -> None:
    """A preallocated conv output: library, dtype, shape, writable, a usable memory layout, and
    no overlap with an input (a kernel would read what it has already overwritten)."""
    check_out(out, shape, arrays)
    if data_format == "NCHW":
        if not is_channel_slice_of_contiguous(out):
            raise ValueError("out must be C-contiguous (NCHW) or a channel slice out[:, c0:c1] of "
                             "a C-contiguous NCHW buffer")
    elif not is_nhwc_channel_slice_of_contiguous(out):
        raise ValueError("out must be C-contiguous (NHWC) or a channel slice out[..., c0:c1] of "
                         "a C-contiguous NHWC buffer")
    for name, array in inputs.items():
        if array is not None and shares_elements(out, array):
            raise ValueError(f"out must not overlap {name}")


# --------------------------------------------------------------------------------------------
# index width


def needs_int64(geom: ConvGeometry, extra_elements: Sequence[int] = ()) -> bool:
    """Whether some tensor of the call has 2**31 or more elements, so that 32-bit offsets would
    overflow. ``extra_elements``: sizes of other buffers the launch addresses (a workspace, the
    whole buffer that a channel-sliced ``out`` lives in)."""
    sizes = (math.prod(geom.input_shape), math.prod(geom.output_shape),
             math.prod(geom.weight_shape), *extra_elements)
    return max(sizes) > INT32_MAX

