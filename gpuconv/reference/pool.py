"""NumPy reference for the pooling family: forward and backward, PyTorch's semantics.

Arrays are NCHW (only ``spatial_pyramid_pool2d`` takes a ``data_format``, because its flattened
feature order depends on the layout); arguments are already validated (``gpuconv.pool.geometry``),
ints or (h, w) pairs. Everything is computed in float64 and cast back to the input's dtype,
window sums and lp_pool2d's powers rounded to the accumulator type (float32 but for float64
inputs, ``_accumulated``) so that they overflow where the kernels and PyTorch do; indices are
int64 flat positions h*W + w within each (n, c) plane. Only a sum's value is rounded so, not its
partial sums: a window of float32 values near the range's end whose running sum passes FLT_MAX
before coming back (3e38 + 3e38 - 3e38) is finite here and inf in a kernel or torch, whose
result depends on the order of the terms.

One mechanism serves every pooling: per spatial axis, a table of the input positions each output
position reads (``taps``, shape (outputs, taps per window; a tap that reaches the input in no
window is left out), clipped into the input) and a mask of which of them are real input
(``valid``: false for padding, for the overhang of a ceil_mode window and for the unused tail of
a short adaptive window). Forward passes gather the windows
with these tables; backward passes scatter-add through the same tables with ``np.bincount``.
No code here is shared with the kernels or their launchers.
"""
from __future__ import annotations

import numpy as np

NO_INDEX = -1   # max pooling over a window that holds no input element (only padding taps)


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def _f64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _cast(a: np.ndarray, dtype) -> np.ndarray:
    # A float16 result may overflow to inf, as the same computation does in PyTorch.
    with np.errstate(over="ignore"):
        return a.astype(dtype)


def _accumulated(a: np.ndarray, dtype) -> np.ndarray:
    """``a`` (float64) rounded to the accumulator type of ``dtype``'s computation, float64 for
    float64 and float32 for the others (api.md: halves accumulate in float32), back in float64.
    A window sum or a power past float32's range is inf in the kernels and in PyTorch's float32
    arithmetic (a window of 3e38s sums to inf, 7 ** 50 is inf); float64 here would hide that."""
    accumulator = np.float64 if np.dtype(dtype) == np.float64 else np.float32
    with np.errstate(over="ignore"):
        return a.astype(accumulator).astype(np.float64)


# --------------------------------------------------------------------------------------------
# window tables


def pooled_size(size: int, kernel: int, stride: int, pad: int, dilation: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output size; in ceil_mode a window starting in the right padding is dropped."""
    span = dilation * (kernel - 1) + 1
    out = (size + 2 * pad - span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _steps(count: int, step: int) -> np.ndarray:
    """0, step, 2*step, ... (count of them); a step never taken (count 1) may be past int64."""
    return np.arange(count) * (step if count > 1 else 0)


def _sliding_axis(size: int, outputs: int, kernel: int, stride: int, pad: int, dilation: int):
    starts = _steps(outputs, stride) - pad
    # Only the taps that land in the input for some window, in the window's order: a huge
    # kernel over a small input (2**30 + 1 taps, padding 2**29) would otherwise tabulate
    # every padding tap. Tap j of window i reads starts[i] + j * dilation.
    first = max(0, -(int(starts[-1]) // dilation))
    last = min(kernel - 1, (size - 1 - int(starts[0])) // dilation)
    taps = np.arange(first, last + 1) if first <= last else np.zeros(1, np.int64)
    positions = starts[:, None] + taps * dilation
    valid = (positions >= 0) & (positions < size)
    return np.clip(positions, 0, size - 1), valid


def adaptive_bounds(size: int, outputs: int) -> tuple[np.ndarray, np.ndarray]:
    """[start, end) of every adaptive window: floor(i*size/outputs), ceil((i+1)*size/outputs)."""
    i = np.arange(outputs)
    return (i * size) // outputs, -((-(i + 1) * size) // outputs)


def _adaptive_axis(size: int, outputs: int):
    start, end = adaptive_bounds(size, outputs)
    positions = start[:, None] + np.arange(int((end - start).max()))
    valid = positions < end[:, None]
    return np.minimum(positions, size - 1), valid


def _gather(x: np.ndarray, rows, cols):
    """Windows (N, C, P, Q, taps_h, taps_w) of x and their mask (P, Q, taps_h, taps_w)."""
    (th, vh), (tw, vw) = rows, cols
    windows = x[:, :, th[:, None, :, None], tw[None, :, None, :]]
    return windows, vh[:, None, :, None] & vw[None, :, None, :]


def _scatter(weights: np.ndarray, rows, cols, H: int, W: int) -> np.ndarray:
    """The adjoint of ``_gather``: add each weight (broadcastable to (N, C, P, Q, taps_h, taps_w))
    at its input position. Padding taps receive nothing: their weight becomes 0, so a NaN or inf
    cannot leak into the clipped position they alias."""
    (th, vh), (tw, vw) = rows, cols
    weights = np.where(vh[:, None, :, None] & vw[None, :, None, :], weights, 0.0)
    N, C = weights.shape[:2]
    target = th[:, None, :, None] * W + tw[None, :, None, :]
    plane = (np.arange(N * C) * (H * W)).reshape(N, C, 1, 1, 1, 1)
    flat = np.broadcast_to(plane + target, weights.shape).ravel()
    summed = np.bincount(flat, weights.ravel(), minlength=N * C * H * W)
    return summed.reshape(N, C, H, W)


# --------------------------------------------------------------------------------------------
# reductions over the windows


def _window_max(x: np.ndarray, rows, cols):
    """Max and its flat index per window, as PyTorch scans a window (row-major): ties go to the
    first maximum, a NaN wins and the last NaN is reported, an all -inf window reports its first
    input element, a window of padding only gives -inf and NO_INDEX."""
    windows, valid = _gather(x, rows, cols)
    N, C, P, Q, Lh, Lw = windows.shape
    windows = np.where(valid, windows, -np.inf).reshape(N, C, P, Q, Lh * Lw)
    valid = valid.reshape(P, Q, Lh * Lw)
    is_nan = np.isnan(windows)
    last_nan = Lh * Lw - 1 - np.argmax(is_nan[..., ::-1], axis=-1)
    top = np.max(windows, axis=-1)
    first_top = np.argmax((windows == top[..., None]) & valid, axis=-1)
    tap = np.where(is_nan.any(axis=-1), last_nan, first_top)
    values = np.take_along_axis(windows, tap[..., None], axis=-1)[..., 0]
    tap_h, tap_w = np.divmod(tap, Lw)
    h = rows[0][np.arange(P)[:, None], tap_h]
    w = cols[0][np.arange(Q), tap_w]
    indices = h * x.shape[3] + w
    empty = ~valid.any(axis=-1)
    return np.where(empty, -np.inf, values), np.where(empty, NO_INDEX, indices).astype(np.int64)


def _window_sum(x: np.ndarray, rows, cols) -> np.ndarray:
    windows, valid = _gather(x, rows, cols)
    return np.where(valid, windows, 0.0).sum(axis=(-2, -1))


def _max_backward(grad_output: np.ndarray, indices: np.ndarray, H: int, W: int) -> np.ndarray:
    N, C = grad_output.shape[:2]
    plane = (np.arange(N * C) * (H * W)).reshape(N, C, 1, 1)
    routed = indices != NO_INDEX
    flat = np.broadcast_to(plane, indices.shape)[routed] + indices[routed]
    summed = np.bincount(flat, grad_output[routed], minlength=N * C * H * W)
    return summed.reshape(N, C, H, W)


# --------------------------------------------------------------------------------------------
# max_pool2d


def _max_pool_axes(shape, kernel_size, stride, padding, dilation, ceil_mode):
    H, W = shape[2:]
    (R, S), (sh, sw) = _pair(kernel_size), _pair(kernel_size if stride is None else stride)
    (ph, pw), (dh, dw) = _pair(padding), _pair(dilation)
    P, Q = pooled_size(H, R, sh, ph, dh, ceil_mode), pooled_size(W, S, sw, pw, dw, ceil_mode)
    return _sliding_axis(H, P, R, sh, ph, dh), _sliding_axis(W, Q, S, sw, pw, dw)


@np.errstate(all="ignore")
def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """(values, int64 indices) of PyTorch's max_pool2d."""
    rows, cols = _max_pool_axes(x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    values, indices = _window_max(_f64(x), rows, cols)
    return _cast(values, x.dtype), indices


@np.errstate(all="ignore")
def max_pool_backward(grad_output, indices, input_shape):
    """Gradient of any max pooling (max_pool2d, adaptive, global): each output's gradient is added
    to the input element its index names (NO_INDEX: nowhere)."""
    H, W = input_shape[2:]
    grad = _max_backward(_f64(grad_output), np.asarray(indices, dtype=np.int64), H, W)
    return _cast(grad, grad_output.dtype)


# --------------------------------------------------------------------------------------------
# avg_pool2d and lp_pool2d


def _avg_divisor(H, W, P, Q, kernel, stride, padding, count_include_pad, divisor_override):
    """(P, Q) divisors as PyTorch computes them: the window clipped to input + padding (so a
    ceil_mode overhang never counts), or to the input alone without count_include_pad."""
    if divisor_override is not None:
        return np.full((P, Q), float(divisor_override))
    sizes = []
    for size, outputs, k, s, p in zip((H, W), (P, Q), kernel, stride, padding):
        start = _steps(outputs, s) - p
        end = np.minimum(start + k, size + p)
        if count_include_pad:
            sizes.append(end - start)
        else:
            sizes.append(np.minimum(end, size) - np.maximum(start, 0))
    return np.outer(*sizes).astype(np.float64)


def _avg_pool_setup(shape, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    H, W = shape[2:]
    kernel, stride = _pair(kernel_size), _pair(kernel_size if stride is None else stride)
    padding = _pair(padding)
    rows, cols = _max_pool_axes(shape, kernel, stride, padding, 1, ceil_mode)
    P, Q = rows[0].shape[0], cols[0].shape[0]
    divisor = _avg_divisor(H, W, P, Q, kernel, stride, padding, count_include_pad, divisor_override)
    return rows, cols, divisor


def _avg_pool(x64, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override,
              dtype):
    """The window means of x64 (float64) for an input of ``dtype``, whose accumulator type
    holds the sums."""
    rows, cols, divisor = _avg_pool_setup(x64.shape, kernel_size, stride, padding, ceil_mode,
                                          count_include_pad, divisor_override)
    return _accumulated(_window_sum(x64, rows, cols), dtype) / divisor


def _avg_pool_backward(g64, input_shape, kernel_size, stride, padding, ceil_mode,
                       count_include_pad, divisor_override):
    rows, cols, divisor = _avg_pool_setup(input_shape, kernel_size, stride, padding, ceil_mode,
                                          count_include_pad, divisor_override)
    return _scatter((g64 / divisor)[..., None, None], rows, cols, *input_shape[2:])


@np.errstate(all="ignore")
def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    out = _avg_pool(_f64(x), kernel_size, stride, padding, ceil_mode, count_include_pad,
                    divisor_override, x.dtype)
    return _cast(out, x.dtype)


@np.errstate(all="ignore")
def avg_pool2d_backward(grad_output, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None):
    grad = _avg_pool_backward(_f64(grad_output), tuple(input_shape), kernel_size, stride, padding,
                              ceil_mode, count_include_pad, divisor_override)
    return _cast(grad, grad_output.dtype)


def _torch_sign(a: np.ndarray) -> np.ndarray:
    # torch.sign(nan) is 0 (np.sign gives nan); it matters in lp_pool2d's backward.
    return (a > 0).astype(np.float64) - (a < 0)


def _torch_pow(a: np.ndarray, p: float, dtype) -> np.ndarray:
    """a ** p as torch's pow(tensor, scalar) on a tensor of ``dtype``: its special exponents (2,
    3, 0.5, -0.5, -1, -2) are arithmetic, which differs from pow at -inf and -0 (sqrt(-inf) is
    NaN, pow gives +inf). -2's square is rounded to the accumulator first: past float32's range
    it is inf there and the reciprocal 0, where float64 would give a finite tiny value (the
    callers round every other result)."""
    special = {2.0: lambda: a * a, 3.0: lambda: a * a * a, 0.5: lambda: np.sqrt(a),
               -0.5: lambda: 1.0 / np.sqrt(a), -1.0: lambda: 1.0 / a,
               -2.0: lambda: 1.0 / _accumulated(a * a, dtype)}
    return special[p]() if p in special else a ** p


@np.errstate(all="ignore")
def lp_pool2d(x, norm_type, kernel_size, stride=None, ceil_mode=False):
    """torch.nn.functional.lp_pool2d, term by term:
    (sign(f) * relu(|f|) * (kh*kw)) ** (1/p) with f = avg_pool2d(x ** p) (padding 0, so in
    ceil_mode a clipped window's mean is scaled by the full kernel area). A negative f gives NaN
    for a non-integer 1/p, and is kept (signed) for p = 1."""
    p = float(norm_type)
    kh, kw = _pair(kernel_size)
    f = _lp_mean(_f64(x), p, kernel_size, stride, ceil_mode, x.dtype)
    scaled = _accumulated(_torch_sign(f) * np.maximum(np.abs(f), 0.0) * (kh * kw), x.dtype)
    return _cast(_torch_pow(scaled, 1.0 / p, x.dtype), x.dtype)


def _lp_mean(x64, p, kernel_size, stride, ceil_mode, dtype):
    """f = avg_pool2d(x ** p), each step in ``dtype``'s accumulator type (a large p overflows
    there: inf, as in the kernels and in PyTorch)."""
    powers = _accumulated(_torch_pow(x64, p, dtype), dtype)
    return _accumulated(_avg_pool(powers, kernel_size, stride, 0, ceil_mode, True, None, dtype),
                        dtype)


@np.errstate(all="ignore")
def lp_pool2d_backward(grad_output, x, norm_type, kernel_size, stride=None, ceil_mode=False):
    """What PyTorch's autograd computes through lp_pool2d's expression, step by step (pow, mul,
    sign * relu(abs), avg_pool2d, pow), including its masks: relu passes no gradient where its
    result is <= 0, so a window whose f is 0 sends nothing back."""
    p = float(norm_type)
    kh, kw = _pair(kernel_size)
    x64, g64, dtype = _f64(x), _f64(grad_output), x.dtype
    f = _lp_mean(x64, p, kernel_size, stride, ceil_mode, dtype)
    relu_out = np.maximum(np.abs(f), 0.0)
    scaled = _accumulated(_torch_sign(f) * relu_out * (kh * kw), dtype)
    # PyTorch's pow backward multiplies by its double exponent (1 / p, then p) as a scalar of
    # the tensor's type: rounded to the accumulator (1 / p = -1e40 and p = 1e39 are inf there)
    inverse, p_acc = _accumulated(np.array([1.0 / p, p]), dtype)
    grad_scaled = g64 * inverse * _accumulated(_torch_pow(scaled, 1.0 / p - 1.0, dtype), dtype)
    grad_relu = grad_scaled * (kh * kw) * _torch_sign(f)
    grad_abs = np.where(relu_out <= 0, 0.0, grad_relu)
    grad_f = grad_abs * _torch_sign(f)
    grad_pow = _avg_pool_backward(grad_f, x64.shape, kernel_size, stride, 0, ceil_mode, True, None)
    # p * x ** (p - 1) past the accumulator's range is inf there (0 * inf: NaN), as in PyTorch
    slope = _accumulated(p_acc * _accumulated(_torch_pow(x64, p - 1.0, dtype), dtype), dtype)
    return _cast(grad_pow * slope, grad_output.dtype)


# --------------------------------------------------------------------------------------------
# adaptive and global pooling


def _adaptive_axes(shape, output_size):
    (H, W), (P, Q) = shape[2:], _pair(output_size)
    return _adaptive_axis(H, P), _adaptive_axis(W, Q)


@np.errstate(all="ignore")
def adaptive_avg_pool2d(x, output_size):
    rows, cols = _adaptive_axes(x.shape, output_size)
    counts = np.outer(rows[1].sum(axis=1), cols[1].sum(axis=1))
    sums = _accumulated(_window_sum(_f64(x), rows, cols), x.dtype)
    return _cast(sums / counts, x.dtype)


@np.errstate(all="ignore")
def adaptive_avg_pool2d_backward(grad_output, input_shape):
    rows, cols = _adaptive_axes(input_shape, grad_output.shape[2:])
    counts = np.outer(rows[1].sum(axis=1), cols[1].sum(axis=1))
    weights = (_f64(grad_output) / counts)[..., None, None]
    return _cast(_scatter(weights, rows, cols, *input_shape[2:]), grad_output.dtype)


@np.errstate(all="ignore")
def adaptive_max_pool2d(x, output_size):
    """(values, int64 indices), the window scan rules of ``_window_max``."""
    values, indices = _window_max(_f64(x), *_adaptive_axes(x.shape, output_size))
    return _cast(values, x.dtype), indices


def global_avg_pool2d(x):
    return adaptive_avg_pool2d(x, 1)


def global_max_pool2d(x):
    return adaptive_max_pool2d(x, 1)


# --------------------------------------------------------------------------------------------
# spatial pyramid pooling


def _to_nchw(a, data_format):
    return a if data_format == "NCHW" else a.transpose(0, 3, 1, 2)


def _level_blocks(C, levels):
    start = 0
    for level in levels:
        yield level, slice(start, start + C * level * level)
        start += C * level * level


def spatial_pyramid_pool2d(x, levels, mode, data_format="NCHW"):
    """Adaptive ``mode`` pooling to (l, l) per level, each reshaped to (N, C*l*l) in the layout's
    element order (NCHW: c, i, j; NHWC: i, j, c), concatenated along axis 1."""
    x_nchw = _to_nchw(x, data_format)
    N, C = x_nchw.shape[:2]
    blocks = []
    for level in levels:
        if mode == "max":
            pooled = adaptive_max_pool2d(x_nchw, level)[0]
        else:
            pooled = adaptive_avg_pool2d(x_nchw, level)
        if data_format == "NHWC":
            pooled = pooled.transpose(0, 2, 3, 1)
        blocks.append(pooled.reshape(N, C * level * level))
    return np.concatenate(blocks, axis=1)


def spatial_pyramid_pool2d_backward(grad_output, x, levels, mode, data_format="NCHW"):
    """The sum over levels of each level's adaptive pooling gradient (max: through the indices
    recomputed from x)."""
    x_nchw = _to_nchw(x, data_format)
    N, C, H, W = x_nchw.shape
    grad = np.zeros((N, C, H, W), dtype=np.float64)
    for level, block in _level_blocks(C, levels):
        g = _f64(grad_output[:, block])
        if data_format == "NHWC":
            g = g.reshape(N, level, level, C).transpose(0, 3, 1, 2)
        else:
            g = g.reshape(N, C, level, level)
        if mode == "max":
            level_grad = max_pool_backward(g, adaptive_max_pool2d(x_nchw, level)[1], (N, C, H, W))
        else:
            level_grad = adaptive_avg_pool2d_backward(g, (N, C, H, W))
        with np.errstate(invalid="ignore"):   # +inf and -inf meeting give NaN, as in torch
            grad += _f64(level_grad)
    if data_format == "NHWC":
        grad = grad.transpose(0, 2, 3, 1)
    return _cast(grad, grad_output.dtype)


# --------------------------------------------------------------------------------------------
# max_unpool2d


def max_unpool2d(x, indices, output_size):
    """Zeros of (N, C, *output_size), x's values written at their flat indices; where indices of
    one plane repeat, the last in row-major order wins (as PyTorch's CPU loop)."""
    N, C, P, Q = x.shape
    H, W = _pair(output_size)
    plane = (np.arange(N * C, dtype=np.int64) * (H * W)).reshape(N, C, 1, 1)
    flat = (plane + np.asarray(indices, dtype=np.int64)).ravel()
    # Keep the last occurrence of each target: unique over the reversed order finds it.
    reversed_flat = flat[::-1]
    targets, first_in_reversed = np.unique(reversed_flat, return_index=True)
    source = flat.size - 1 - first_in_reversed
    out = np.zeros(N * C * H * W, dtype=x.dtype)
    out[targets] = np.asarray(x).ravel()[source]
    return out.reshape(N, C, H, W)


def max_unpool2d_backward(grad_output, indices):
    """d/dx of max_unpool2d: each element of x receives the gradient at the position it was
    written to (PyTorch gathers, so repeated indices all receive it)."""
    N, C, H, W = grad_output.shape
    plane = (np.arange(N * C, dtype=np.int64) * (H * W)).reshape(N, C, 1, 1)
    flat = plane + np.asarray(indices, dtype=np.int64)
    return np.asarray(grad_output).reshape(-1)[flat]
