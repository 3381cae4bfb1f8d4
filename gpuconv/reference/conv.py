"""NumPy reference for the convolution family: forward (bias, residual, activation, NHWC), the
gradients with respect to input, weight and bias, and the transposed convolution.

Every function takes a validated ``ConvGeometry`` (gpuconv.conv.geometry) and computes in
float64. The work is organised by filter tap: for tap (r, s) the input pixels read by all output
pixels form one strided slice of the zero-padded input, so each tap is one batched matrix
product over the groups (no im2col buffer, no loop over pixels). The gradient with respect to
the input is the same loop run backwards: a scatter-add of each tap's product into the padded
input, which is exactly how a transposed convolution spreads its input.
"""
from __future__ import annotations

import functools

import numpy as np


def _ieee(function):
    """Inf and NaN propagate as IEEE arithmetic says (as in the kernels), without warnings; a
    float16 result that overflows becomes inf, as a kernel's conversion does."""
    @functools.wraps(function)
    def quiet(*args, **kwargs):
        with np.errstate(over="ignore", invalid="ignore"):
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


def _padded_extent(geom) -> tuple[int, int]:
    # Large enough for the padded input and for every tap of every output pixel (a transposed
    # convolution's geometry may address a few rows past the padded input; they count as zero).
    hp = max(geom.H + geom.pad_top + geom.pad_bottom, (geom.P - 1) * geom.stride_h + (geom.R - 1) * geom.dil_h + 1)
    wp = max(geom.W + geom.pad_left + geom.pad_right, (geom.Q - 1) * geom.stride_w + (geom.S - 1) * geom.dil_w + 1)
    return hp, wp


def _tap_window(geom, r: int, s: int) -> tuple[slice, slice]:
    """The padded-input rows and columns that filter tap (r, s) reads, one per output pixel."""
    h0, w0 = r * geom.dil_h, s * geom.dil_w
    return (slice(h0, h0 + (geom.P - 1) * geom.stride_h + 1, geom.stride_h),
            slice(w0, w0 + (geom.Q - 1) * geom.stride_w + 1, geom.stride_w))


def _padded_input_by_group(geom, x_nchw: np.ndarray) -> np.ndarray:
    """x zero-padded, as (groups, C/groups, N, Hp, Wp) so that a tap slice reshapes to a matrix."""
    hp, wp = _padded_extent(geom)
    padded = np.zeros((geom.C, geom.N, hp, wp))
    padded[:, :, geom.pad_top:geom.pad_top + geom.H, geom.pad_left:geom.pad_left + geom.W] = \
        x_nchw.transpose(1, 0, 2, 3)
    return padded.reshape(geom.groups, geom.C_per_group, geom.N, hp, wp)


def _output_by_group(geom, y_nchw: np.ndarray) -> np.ndarray:
    """An output-shaped array as (groups, K/groups, N*P*Q) matrices."""
    return np.ascontiguousarray(y_nchw.transpose(1, 0, 2, 3)).reshape(
        geom.groups, geom.K_per_group, geom.N * geom.P * geom.Q)


def _weight_tap(geom, w: np.ndarray, r: int, s: int) -> np.ndarray:
    """Tap (r, s) of the weight as (groups, K/groups, C/groups) matrices."""
    return w[:, :, r, s].reshape(geom.groups, geom.K_per_group, geom.C_per_group)


def _columns(geom, padded: np.ndarray, r: int, s: int) -> np.ndarray:
    """The input values tap (r, s) multiplies, as (groups, C/groups, N*P*Q) matrices."""
    rows, cols = _tap_window(geom, r, s)
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
    hp, wp = _padded_extent(geom)
    dx_padded = np.zeros((geom.groups, geom.C_per_group, geom.N, hp, wp))
    for r in range(geom.R):
        for s in range(geom.S):
            rows, cols = _tap_window(geom, r, s)
            # One tap reaches each padded pixel at most once, so this += never collides.
            contribution = _weight_tap(geom, w, r, s).transpose(0, 2, 1) @ dy
            dx_padded[:, :, :, rows, cols] += contribution.reshape(
                geom.groups, geom.C_per_group, geom.N, geom.P, geom.Q)
    dx = dx_padded[:, :, :, geom.pad_top:geom.pad_top + geom.H, geom.pad_left:geom.pad_left + geom.W]
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
    return np.asarray(grad_output, dtype=np.float64).sum(axis=axes).astype(grad_output.dtype)


@_ieee
def conv_transpose2d(geom, x, weight, bias=None):
    """Transposed convolution (NCHW) for a ``ConvTransposeGeometry``: each input pixel spreads
    its value times the filter over the output, i.e. the input gradient of the forward conv."""
    y = _input_grad64(geom, np.asarray(weight, dtype=np.float64), np.asarray(x, dtype=np.float64))
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64)[None, :, None, None]
    return np.ascontiguousarray(y, dtype=x.dtype)
