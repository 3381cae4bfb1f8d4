"""NumPy reference for the region-of-interest family: roi_align and roi_pool, forward and backward,
with the semantics of torchvision's kernels (torchvision/csrc/ops/{cpu,cuda}/roi_*_kernel.*).

Every function takes a validated ``RoiGeometry`` (gpuconv.roi.geometry) and ``rois``, a (K, 5)
array of rows [batch_index, x1, y1, x2, y2]; values are computed in float64 and cast back
(roi_align's bin sums rounded to the accumulator type first, ``_accumulated``).

Box geometry precision. Rounding, floor/ceil of bin edges, the adaptive grid size and the
out-of-image test are discontinuous in the coordinates, so the reference computes coordinates
in torchvision's ``T``, with its expression order: float64 for float64 inputs, float32 for the
others (torchvision uses float for float32; for float16 we use float32, the kernels' accumulator
type, rather than torchvision's half arithmetic). Float32 and float64 bin edges really differ:
ceil(3 * float32(7/3)) is 8, not 7.

roi_align, per box and output bin (ph, pw): the bin is sampled on a grid_h x grid_w grid; each
sample is bilinearly interpolated (a sample with y < -1, y > H, x < -1 or x > W contributes 0,
otherwise coordinates are clamped to [0, H-1] x [0, W-1]); the bin's value is the sum over the
samples divided by max(grid_h * grid_w, 1). A non-positive adaptive grid (only possible with
``aligned`` and an inverted box) has no samples: the bin is 0. Bilinear interpolation is
separable (the weight of pixel (h, w) is w_y(h) * w_x(w) and the out-of-image test is a product
of a row test and a column test), so the reference interpolates all samples along y, then along
x; the backward is the adjoint of those two steps, scattering the bilinear weights with
``np.add.at``. Like torchvision, a NaN or inf pixel reaches exactly the bins whose samples touch
it, even with weight 0; an out-of-image sample reads nothing (as torchvision's CUDA kernel).

roi_pool, per box: corners round(coordinate * spatial_scale) (C round: half away from zero);
roi size max(end - start + 1, 1); bin ph covers rows [floor(ph * bin_h), ceil((ph+1) * bin_h))
shifted by the box start and clipped to [0, H]; an empty bin gives 0 and argmax -1. Otherwise
the max starts from -FLT_MAX and takes a value only if it is strictly greater, scanning rows then
columns: the first maximum in row-major order wins, NaN is never taken, and a bin whose values
are all <= -FLT_MAX gives -FLT_MAX (-inf in float16) and argmax -1. The argmax is the flat
position h * W + w within the (n, c) plane; the backward adds grad_output to it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FLT_MAX = float(np.finfo(np.float32).max)


def _coordinate_dtype(dtype):
    return np.float64 if np.dtype(dtype) == np.float64 else np.float32


def _accumulated(a: np.ndarray, dtype) -> np.ndarray:
    """float64 sums rounded to the accumulator type of ``dtype`` (float32 but for float64), as
    torchvision's and the kernels' bin sums are: samples of float32 values summing past 3.4e38
    make an inf bin there, which float64 would hide."""
    with np.errstate(over="ignore"):
        return a.astype(_coordinate_dtype(dtype)).astype(np.float64)


def _nchw(a, data_format: str) -> np.ndarray:
    a = np.asarray(a)
    return a.transpose(0, 3, 1, 2) if data_format == "NHWC" else a


def _in_layout(a: np.ndarray, data_format: str, dtype) -> np.ndarray:
    """An NCHW-ordered float64 result, laid out in ``data_format`` and cast to ``dtype``."""
    if data_format == "NHWC":
        a = a.transpose(0, 2, 3, 1)
    # -FLT_MAX (an all-tiny roi_pool bin) and large values overflow float16 to -inf/inf, as a
    # kernel's conversion does.
    with np.errstate(over="ignore"):
        return np.ascontiguousarray(a, dtype=dtype)


# ----------------------------------------------------------------------------------- roi_align

@dataclass(frozen=True)
class _AxisSamples:
    """The samples of one box along one axis: bins * grid coordinates, in bin order."""
    low: np.ndarray        # int index of the lower neighbour pixel
    high: np.ndarray       # int index of the upper neighbour pixel (== low at the last pixel)
    w_low: np.ndarray      # float64 bilinear weights of low and high
    w_high: np.ndarray
    inside: np.ndarray     # bool: -1 <= coordinate <= size (otherwise the sample is 0)
    grid: int              # samples per bin (>= 0)


def _axis_samples(start, bin_size, grid: int, bins: int, size: int, ct) -> _AxisSamples:
    """Sample coordinates and their interpolation along one axis, as torchvision computes them:
    start + p * bin_size + (i + .5) * bin_size / grid, for bin p and sample i of the bin."""
    p = np.arange(bins, dtype=ct)[:, None]
    i = np.arange(grid, dtype=ct)[None, :]
    coord = ((start + p * bin_size) + (i + ct(0.5)) * bin_size / ct(grid)).ravel()
    inside = (coord >= -1.0) & (coord <= size)
    # Clamping to [0, size] changes no inside sample (torchvision sets y <= 0 to 0) and keeps
    # the outside ones, which are masked, at harmless indices.
    clamped = np.clip(coord, ct(0), ct(size))
    low = np.floor(clamped).astype(np.int64)
    at_last = low >= size - 1
    low = np.where(at_last, size - 1, low)
    high = np.where(at_last, size - 1, low + 1)
    frac = np.where(at_last, ct(0), clamped - low.astype(ct)).astype(np.float64)
    return _AxisSamples(low, high, 1.0 - frac, frac, inside, grid)


def _box_samples(geom, box, ct) -> tuple[_AxisSamples, _AxisSamples, float]:
    """The y and x samples of one box and the divisor of its bins' sums."""
    offset = ct(0.5) if geom.aligned else ct(0)
    scale = ct(geom.spatial_scale)
    x1, y1, x2, y2 = (ct(v) for v in box[1:])
    start_w, start_h = x1 * scale - offset, y1 * scale - offset
    roi_w, roi_h = (x2 * scale - offset) - start_w, (y2 * scale - offset) - start_h
    if not geom.aligned:
        # torchvision: "force malformed ROIs to be 1x1"
        roi_w, roi_h = max(roi_w, ct(1)), max(roi_h, ct(1))
    bin_h, bin_w = roi_h / ct(geom.PH), roi_w / ct(geom.PW)
    if geom.sampling_ratio > 0:
        grid_h = grid_w = geom.sampling_ratio
    else:
        grid_h, grid_w = max(int(np.ceil(bin_h)), 0), max(int(np.ceil(bin_w)), 0)
    count = float(max(grid_h * grid_w, 1))
    return (_axis_samples(start_h, bin_h, grid_h, geom.PH, geom.H, ct),
            _axis_samples(start_w, bin_w, grid_w, geom.PW, geom.W, ct), count)


def _support(s: _AxisSamples) -> tuple[int, int]:
    """[first, last + 1) of the pixels that the inside samples read (first == last: none)."""
    if not s.inside.any():
        return 0, 0
    return int(s.low[s.inside].min()), int(s.high[s.inside].max()) + 1


# Elements of the (channels, sample rows, sample columns) temporaries of one box at a time: a box
# with many samples (adaptive sampling of a huge box) is taken a few sample rows at a time, so
# memory stays bounded while the arithmetic is that of the whole box at once.
CHUNK_ELEMENTS = 1 << 22


def _row_chunks(bins: int, grid: int, rows_per_chunk: int):
    """(first bin, last bin + 1, first sample row, last sample row + 1) pieces covering the
    bins * grid sample rows of an axis, in order: whole bins where ``rows_per_chunk`` holds one
    or more, else pieces of one bin."""
    if rows_per_chunk >= grid:
        step = rows_per_chunk // grid
        for p in range(0, bins, step):
            q = min(p + step, bins)
            yield p, q, p * grid, q * grid
        return
    for p in range(bins):
        for r in range(p * grid, (p + 1) * grid, rows_per_chunk):
            yield p, p + 1, r, min(r + rows_per_chunk, (p + 1) * grid)


def _rows_per_chunk(channels: int, row_elements: int) -> int:
    return max(1, CHUNK_ELEMENTS // max(1, channels * row_elements))


@np.errstate(all="ignore")   # IEEE arithmetic whatever the caller's np.seterr
def roi_align(geom, x, rois, *, data_format: str = "NCHW") -> np.ndarray:
    """(K, C, PH, PW) (NHWC: (K, PH, PW, C)): the average of bilinear samples in each bin."""
    ct = _coordinate_dtype(x.dtype)
    out = np.zeros((geom.K, geom.C, geom.PH, geom.PW))
    if geom.H * geom.W == 0:
        return _in_layout(out, data_format, x.dtype)
    x = _nchw(x, data_format)
    with np.errstate(invalid="ignore", over="ignore"):
        for k, box in enumerate(np.asarray(rois)):
            ys, xs, count = _box_samples(geom, box, ct)
            (h0, h1), (w0, w1) = _support(ys), _support(xs)
            if h0 == h1 or w0 == w1:
                continue
            plane = np.asarray(x[int(box[0]), :, h0:h1, w0:w1], dtype=np.float64)
            yl, yh = np.clip(ys.low - h0, 0, h1 - h0 - 1), np.clip(ys.high - h0, 0, h1 - h0 - 1)
            xl, xh = np.clip(xs.low - w0, 0, w1 - w0 - 1), np.clip(xs.high - w0, 0, w1 - w0 - 1)
            per_row = max(xs.low.size, w1 - w0)
            for p, q, r0, r1 in _row_chunks(geom.PH, ys.grid,
                                            _rows_per_chunk(geom.C, per_row)):
                r = slice(r0, r1)
                # along y: one interpolated row per y sample -> (C, rows, w1 - w0)
                rows = (ys.w_low[r, None] * plane[:, yl[r]]
                        + ys.w_high[r, None] * plane[:, yh[r]])
                # along x: one value per (y sample, x sample) -> (C, rows, Sx)
                values = xs.w_low * rows[:, :, xl] + xs.w_high * rows[:, :, xh]
                values = np.where(ys.inside[r, None] & xs.inside[None, :], values, 0.0)
                out[k, :, p:q] += values.reshape(geom.C, q - p, -1, geom.PW,
                                                 xs.grid).sum(axis=(2, 4))
            out[k] = _accumulated(out[k], x.dtype) / count
    return _in_layout(out, data_format, x.dtype)


@np.errstate(all="ignore")   # IEEE arithmetic whatever the caller's np.seterr
def grad_roi_align(geom, grad_output, rois, *, data_format: str = "NCHW") -> np.ndarray:
    """d(sum(roi_align * grad_output))/dx, shape (N, C, H, W) (NHWC: (N, H, W, C))."""
    ct = _coordinate_dtype(grad_output.dtype)
    grad = np.zeros((geom.N, geom.C, geom.H, geom.W))
    if geom.H * geom.W == 0:
        return _in_layout(grad, data_format, grad_output.dtype)
    g_out = _nchw(grad_output, data_format)
    with np.errstate(invalid="ignore", over="ignore"):
        for k, box in enumerate(np.asarray(rois)):
            ys, xs, count = _box_samples(geom, box, ct)
            (h0, h1), (w0, w1) = _support(ys), _support(xs)
            if h0 == h1 or w0 == w1:
                continue
            # every sample of bin (ph, pw) receives grad_output[ph, pw] / count; an outside
            # sample passes nothing on, so only the inside ones are kept
            g_box = np.asarray(g_out[k], dtype=np.float64) / count
            xl, xh, wxl, wxh = (a[xs.inside] for a in (xs.low, xs.high, xs.w_low, xs.w_high))
            plane = np.zeros((geom.C, h1 - h0, w1 - w0))
            per_row = max(xs.low.size, w1 - w0)
            for p, q, r0, r1 in _row_chunks(geom.PH, ys.grid,
                                            _rows_per_chunk(geom.C, per_row)):
                inside = ys.inside[r0:r1]
                bins = np.arange(r0, r1)[inside] // ys.grid
                # (C, inside rows of the chunk, inside x samples)
                g = np.repeat(g_box[:, bins], xs.grid, axis=2)[:, :, xs.inside]
                yl, yh, wyl, wyh = (a[r0:r1][inside]
                                    for a in (ys.low, ys.high, ys.w_low, ys.w_high))
                # adjoint of the x step: each sample's share goes to its two columns
                rows = np.zeros((geom.C, g.shape[1], w1 - w0))
                np.add.at(rows, (slice(None), slice(None), xl - w0), g * wxl)
                np.add.at(rows, (slice(None), slice(None), xh - w0), g * wxh)
                # adjoint of the y step: each interpolated row goes to its two input rows
                np.add.at(plane, (slice(None), yl - h0), rows * wyl[:, None])
                np.add.at(plane, (slice(None), yh - h0), rows * wyh[:, None])
            grad[int(box[0]), :, h0:h1, w0:w1] += plane
    return _in_layout(grad, data_format, grad_output.dtype)


# ------------------------------------------------------------------------------------ roi_pool

def _c_round(v: float) -> float:
    """C's round(): halves away from zero (NumPy's round goes to even)."""
    t = np.trunc(v)
    return float(t + np.copysign(float(abs(v - t) >= 0.5), v))


def _bin_edges(start: float, end: float, bins: int, size: int, ct) -> tuple[np.ndarray, np.ndarray]:
    """[first, last) pixel of each bin along one axis, clipped to [0, size]. The integer box
    arithmetic stays in float64, exact far beyond torchvision's int range."""
    length = max(end - start + 1.0, 1.0)
    bin_size = ct(length) / ct(bins)
    first = np.floor(np.arange(bins, dtype=ct) * bin_size).astype(np.float64) + start
    last = np.ceil(np.arange(1, bins + 1, dtype=ct) * bin_size).astype(np.float64) + start
    return (np.clip(first, 0, size).astype(np.int64), np.clip(last, 0, size).astype(np.int64))


def _interval_max(values: np.ndarray, first: np.ndarray, last: np.ndarray):
    """Max and first argmax of ``values`` along its last axis over each interval
    [first[j], last[j]) -> two arrays with a new last axis of len(first). Values are -inf where
    not eligible; an interval without an eligible value gives (-inf, 0)."""
    shape = values.shape[:-1] + (len(first),)
    best, where = np.full(shape, -np.inf), np.zeros(shape, dtype=np.int64)
    for j, (a, b) in enumerate(zip(first, last)):
        if a < b:
            arg = values[..., a:b].argmax(axis=-1)   # argmax: the first of equal maxima
            where[..., j] = arg + a
            best[..., j] = np.take_along_axis(values[..., a:b], arg[..., None], -1)[..., 0]
    return best, where


@np.errstate(all="ignore")   # IEEE arithmetic whatever the caller's np.seterr
def roi_pool_with_argmax(geom, x, rois, *, data_format: str = "NCHW"):
    """roi_pool's float64 output and argmax, both NCHW-ordered (K, C, PH, PW)."""
    ct = _coordinate_dtype(x.dtype)
    out = np.zeros((geom.K, geom.C, geom.PH, geom.PW))
    argmax = np.full(out.shape, -1, dtype=np.int64)
    if geom.H * geom.W == 0:
        return out, argmax   # every bin is clipped to nothing: empty
    x = _nchw(x, data_format)
    scale = ct(geom.spatial_scale)
    channel = np.arange(geom.C)[:, None, None]
    column_bin = np.arange(geom.PW)[None, None, :]
    for k, box in enumerate(np.asarray(rois)):
        x1, y1, x2, y2 = (_c_round(ct(v) * scale) for v in box[1:])
        h_first, h_last = _bin_edges(y1, y2, geom.PH, geom.H, ct)
        w_first, w_last = _bin_edges(x1, x2, geom.PW, geom.W, ct)
        empty = (h_last <= h_first)[:, None] | (w_last <= w_first)[None, :]
        if empty.all():
            continue
        # the pixels of the box's non-empty bins, [h0, h1) x [w0, w1)
        h0, h1 = int(h_first.min()), int(h_last.max())
        w0, w1 = int(w_first.min()), int(w_last.max())
        plane = np.asarray(x[int(box[0]), :, h0:h1, w0:w1], dtype=np.float64)
        # Only values strictly above -FLT_MAX can replace torchvision's initial maximum; NaN
        # compares false and is never taken.
        with np.errstate(invalid="ignore"):
            eligible = np.where(plane > -FLT_MAX, plane, -np.inf)
        # first the max over each column interval of every row, then over each row interval:
        # ties keep the lowest row, then the lowest column, i.e. row-major order
        row_best, row_arg = _interval_max(eligible, w_first - w0, w_last - w0)    # (C, Hs, PW)
        best, h_arg = _interval_max(row_best.transpose(0, 2, 1),
                                    h_first - h0, h_last - h0)                    # (C, PW, PH)
        best, h_arg = best.transpose(0, 2, 1), h_arg.transpose(0, 2, 1)          # (C, PH, PW)
        w_arg = row_arg[channel, h_arg, column_bin] + w0
        h_arg = h_arg + h0
        found = best > -np.inf
        out[k] = np.where(empty, 0.0, np.where(found, best, -FLT_MAX))
        argmax[k] = np.where(empty | ~found, -1, h_arg * geom.W + w_arg)
    return out, argmax


@np.errstate(all="ignore")   # IEEE arithmetic whatever the caller's np.seterr
def roi_pool(geom, x, rois, *, data_format: str = "NCHW") -> np.ndarray:
    """(K, C, PH, PW) (NHWC: (K, PH, PW, C)): the max over each bin of each box."""
    out, _ = roi_pool_with_argmax(geom, x, rois, data_format=data_format)
    return _in_layout(out, data_format, x.dtype)


@np.errstate(all="ignore")   # IEEE arithmetic whatever the caller's np.seterr
def grad_roi_pool(geom, grad_output, x, rois, *, data_format: str = "NCHW") -> np.ndarray:
    """d(sum(roi_pool * grad_output))/dx: each bin's gradient goes to its argmax pixel."""
    _, argmax = roi_pool_with_argmax(geom, x, rois, data_format=data_format)
    g_out = np.asarray(_nchw(grad_output, data_format), dtype=np.float64)
    grad = np.zeros(geom.N * geom.C * geom.H * geom.W)
    batch = np.asarray(rois)[:, 0].astype(np.int64)
    k, c, ph, pw = np.nonzero(argmax >= 0)
    pixel = (batch[k] * geom.C + c) * (geom.H * geom.W) + argmax[k, c, ph, pw]
    with np.errstate(invalid="ignore"):   # +inf and -inf reaching one pixel give NaN
        np.add.at(grad, pixel, g_out[k, c, ph, pw])
    return _in_layout(grad.reshape(geom.N, geom.C, geom.H, geom.W), data_format,
                      grad_output.dtype)
