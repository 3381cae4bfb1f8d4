"""NumPy reference for the convolution family: forward (bias, residual, activation, NHWC), the
gradients with respect to input, weight and bias, and the transposed convolution.

Every function takes a validated ``ConvGeometry`` (gpuconv.conv.geometry) and computes in
float64. The work is organised by filter tap: for tap (r, s) the input pixels read by all output
pixels are one (P, Q) grid of the zero-padded input, so each tap is one batched matrix product
over the groups (no im2col buffer, no loop over pixels). The padded input holds only the rows
and columns some tap reads (``_axis_reads``): a huge padding or stride allocates nothing. The
gradient with respect to the input is the same loop run backwards: a scatter-add of each tap's
product into the padded input, which is exactly how a transposed convolution spreads its
input.
"""
from __future__ import annotations

import functools

import numpy as np


def _ieee(function):
    """Inf and NaN propagate as IEEE arithmetic says (as in the kernels), without warnings; a
    float16 result that overflows becomes inf, as a kernel's conversion does. All of NumPy's
    floating-point checks are off, whatever the caller's np.seterr (an underflow of a sigmoid's
    exp raised a FloatingPointError under np.seterr(under="raise"))."""
    @functools.wraps(function)
    def quiet(*args, **kwargs):
        with np.errstate(all="ignore"):
            return function(*args, **kwargs)
    return quiet


def _nchw(a, data_format: str) -> np.ndarray:
    """A float64 NCHW view/copy of a 4-D array given in ``data_format``."""
    a = np.asarray(a, dtype=np.float64)
    return a.transpose(0, 3, 1, 2) if data_format == "NHWC" else a


def _in_layout(a: np.ndarray, data_format: str, dtype) -> np.ndarray:
    """An NCHW float64 result, laid out contiguously in ``data_format`` and cast to ``dtype``."""
    if data_format == "NHWC":
        a = a.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(a, dtype=dtype)


def _axis_reads(pad: int, stride: int, dilation: int, taps: int, outputs: int):
    """Along one axis: the padded-input positions that some tap of some output reads (sorted,
    unique; a tap's row index is output * stride + tap * dilation), and, per tap, the place of
    each output's position in that list. Only those positions are materialized, so a huge
    padding or stride costs nothing (torch accepts them); the rest of the padding is never read."""
    positions = (np.arange(taps)[:, None] * dilation + np.arange(outputs)[None, :] * stride)
    read, where = np.unique(positions, return_inverse=True)
    return read, where.reshape(taps, outputs)


def _reads(geom):
    """``_axis_reads`` for rows and columns; a transposed convolution's geometry may address a
    few positions past the padded input (output_padding): they hold zeros."""
    return (_axis_reads(geom.pad_top, geom.stride_h, geom.dil_h, geom.R, geom.P),
            _axis_reads(geom.pad_left, geom.stride_w, geom.dil_w, geom.S, geom.Q))


def _inside(read: np.ndarray, pad: int, size: int):
    """(places in ``read`` of the positions inside the input, those input indices)."""
    index = read - pad
    inside = (index >= 0) & (index < size)
    return np.flatnonzero(inside), index[inside]


def _tap_window(where_h: np.ndarray, where_w: np.ndarray, r: int, s: int):
    """Index arrays selecting, from a read-positions array, the (P, Q) pixels tap (r, s) reads."""
    return where_h[r][:, None], where_w[s][None, :]


def _padded_input_by_group(geom, x_nchw: np.ndarray):
    """(x zero-padded at the read positions only, as (groups, C/groups, N, rows, columns) so
    that a tap's pixels reshape to a matrix; the tap index arrays of rows and columns)."""
    (read_h, where_h), (read_w, where_w) = _reads(geom)
    padded = np.zeros((geom.C, geom.N, len(read_h), len(read_w)))
    (place_h, rows), (place_w, cols) = (_inside(read_h, geom.pad_top, geom.H),
                                        _inside(read_w, geom.pad_left, geom.W))
    padded[:, :, place_h[:, None], place_w[None, :]] = \
        x_nchw.transpose(1, 0, 2, 3)[:, :, rows[:, None], cols[None, :]]
    padded = padded.reshape(geom.groups, geom.C_per_group, geom.N, len(read_h), len(read_w))
    return padded, where_h, where_w


def _output_by_group(geom, y_nchw: np.ndarray) -> np.ndarray:
    """An output-shaped array as (groups, K/groups, N*P*Q) matrices."""
    return np.ascontiguousarray(y_nchw.transpose(1, 0, 2, 3)).reshape(
        geom.groups, geom.K_per_group, geom.N * geom.P * geom.Q)


def _weight_tap(geom, w: np.ndarray, r: int, s: int) -> np.ndarray:
    """Tap (r, s) of the weight as (groups, K/groups, C/groups) matrices."""
    return w[:, :, r, s].reshape(geom.groups, geom.K_per_group, geom.C_per_group)


def _columns(geom, padded, r: int, s: int) -> np.ndarray:
    """The input values tap (r, s) multiplies, as (groups, C/groups, N*P*Q) matrices."""
    padded, where_h, where_w = padded
    rows, cols = _tap_window(where_h, where_w, r, s)
    return padded[:, :, :, rows, cols].reshape(geom.groups, geom.C_per_group, -1)


def _forward64(geom, x_nchw: np.ndarray, w: np.ndarray) -> np.ndarray:
    padded = _padded_input_by_group(geom, x_nchw)
    acc = np.zeros((geom.groups, geom.K_per_group, geom.N * geom.P * geom.Q))
    for r in range(geom.R):
        for s in range(geom.S):
            acc += _weight_tap(geom, w, r, s) @ _columns(geom, padded, r, s)
    return acc.reshape(geom.K, geom.N, geom.P, geom.Q).transpose(1, 0, 2, 3)


def _input_grad64(geom, w: np.ndarray, dy_nchw: np.ndarray) -> np.ndarray:
    dy = _output_by_group(geom, dy_nchw)
    (read_h, where_h), (read_w, where_w) = _reads(geom)
    dx_padded = np.zeros((geom.groups, geom.C_per_group, geom.N, len(read_h), len(read_w)))
    for r in range(geom.R):
        for s in range(geom.S):
            rows, cols = _tap_window(where_h, where_w, r, s)
            # One tap reaches each padded pixel at most once, so this += never collides.
            contribution = _weight_tap(geom, w, r, s).transpose(0, 2, 1) @ dy
            dx_padded[:, :, :, rows, cols] += contribution.reshape(
                geom.groups, geom.C_per_group, geom.N, geom.P, geom.Q)
    # Input pixels no tap reads get 0; read positions in the padding are dropped.
    (place_h, in_rows), (place_w, in_cols) = (_inside(read_h, geom.pad_top, geom.H),
                                              _inside(read_w, geom.pad_left, geom.W))
    dx = np.zeros((geom.groups, geom.C_per_group, geom.N, geom.H, geom.W))
    dx[:, :, :, in_rows[:, None], in_cols[None, :]] = \
        dx_padded[:, :, :, place_h[:, None], place_w[None, :]]
    return dx.reshape(geom.C, geom.N, geom.H, geom.W).transpose(1, 0, 2, 3)


def _activate(v: np.ndarray, activation: str | None) -> np.ndarray:
    if activation is None:
        return v
    if activation == "relu":
        return np.maximum(v, 0.0)
    if activation == "tanh":
        return np.tanh(v)
    if activation == "sigmoid":
        # exp of -|v| only: the two-branch form never overflows.
        e = np.exp(-np.abs(v))
        return np.where(v >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    raise ValueError(f"activation must be None, 'relu', 'tanh' or 'sigmoid'; got {activation!r}")


@_ieee
def conv2d(geom, x, weight, bias=None, residual=None, activation=None, data_format="NCHW"):
    """activation(conv(x, weight) + bias + residual); x and residual in ``data_format``."""
    y = _forward64(geom, _nchw(x, data_format), np.asarray(weight, dtype=np.float64))
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64)[None, :, None, None]
    if residual is not None:
        y = y + _nchw(residual, data_format)
    return _in_layout(_activate(y, activation), data_format, x.dtype)


@_ieee
def conv2d_input(geom, weight, grad_output, data_format="NCHW"):
    """Gradient of conv2d with respect to its input, in ``data_format``."""
    dx = _input_grad64(geom, np.asarray(weight, dtype=np.float64), _nchw(grad_output, data_format))
    return _in_layout(dx, data_format, grad_output.dtype)


@_ieee
def conv2d_weight(geom, x, grad_output, data_format="NCHW"):
    """Gradient of conv2d with respect to its weight, (K, C/groups, R, S)."""
    padded = _padded_input_by_group(geom, _nchw(x, data_format))
    dy = _output_by_group(geom, _nchw(grad_output, data_format))
    dw = np.empty(geom.weight_shape)
    for r in range(geom.R):
        for s in range(geom.S):
            tap = dy @ _columns(geom, padded, r, s).transpose(0, 2, 1)
            dw[:, :, r, s] = tap.reshape(geom.K, geom.C_per_group)
    return dw.astype(grad_output.dtype)


@_ieee
def conv2d_bias(grad_output, data_format="NCHW"):
    """Gradient of conv2d with respect to its bias: grad_output summed over all but channels."""
    axes = (0, 1, 2) if data_format == "NHWC" else (0, 2, 3)
    # Contiguous first: NumPy's summation order follows the memory layout, so the same values in
    # another layout (a torch gradient strided NCHW or channels_last) would round differently.
    g = np.ascontiguousarray(grad_output, dtype=np.float64)
    return g.sum(axis=axes).astype(grad_output.dtype)


@_ieee
def conv_transpose2d(geom, x, weight, bias=None):
    """Transposed convolution (NCHW) for a ``ConvTransposeGeometry``: each input pixel spreads
    its value times the filter over the output, i.e. the input gradient of the forward conv."""
    y = _input_grad64(geom, np.asarray(weight, dtype=np.float64), np.asarray(x, dtype=np.float64))
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64)[None, :, None, None]
    return np.ascontiguousarray(y, dtype=x.dtype)
