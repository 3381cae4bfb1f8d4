"""Randomized differential test: every kernel family against the NumPy reference.

Hypothesis draws small, odd shapes and argument combinations the hand-written grids do not
list; each example runs the public function outside ``gpuconv.simulate()`` (the reference, the
oracle) and inside it (the CUDA kernels on the CPU, in a drawn thread order and seed). Values
must agree within the dtype's tolerance scaled by max(1, max|reference|), indices exactly, and
an argument the reference refuses (ValueError/TypeError) must be refused with the same type.

CI runs a derandomized, modest number of examples. To hunt for bugs, scale them up:
``GPUCONV_FUZZ_EXAMPLES=20`` multiplies every budget by 20, and ``GPUCONV_FUZZ_RANDOM=1`` draws
fresh examples instead of the fixed CI sequence.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gpuconv
from gpuconv import grad

SCALE = max(1, int(os.environ.get("GPUCONV_FUZZ_EXAMPLES", "1")))
DERANDOMIZE = os.environ.get("GPUCONV_FUZZ_RANDOM", "") != "1"
ORDERS = ("forward", "reverse", "random")
DTYPES = (np.float32, np.float64, np.float16)
TOLERANCE = {np.dtype(np.float64): 1e-9, np.dtype(np.float32): 1e-4, np.dtype(np.float16): 2e-2}
REFUSALS = (ValueError, TypeError)


def fuzz(examples: int):
    """Hypothesis settings of one fuzz test: ``examples`` in CI, scaled up for bug hunting."""
    return settings(max_examples=examples * SCALE, deadline=None, derandomize=DERANDOMIZE,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.data_too_large],
                    print_blob=True)


# --------------------------------------------------------------------------------------------
# comparing the kernels with the reference


def assert_close(got, expected, where=""):
    if isinstance(expected, tuple):
        assert isinstance(got, tuple) and len(got) == len(expected), where
        for i, (g, e) in enumerate(zip(got, expected)):
            assert_close(g, e, f"{where}[{i}]")
        return
    assert isinstance(got, np.ndarray), f"{where}: got {type(got)}"
    assert got.shape == expected.shape, f"{where}: shape {got.shape} != {expected.shape}"
    assert got.dtype == expected.dtype, f"{where}: dtype {got.dtype} != {expected.dtype}"
    if expected.dtype.kind in "iu":
        np.testing.assert_array_equal(got, expected, err_msg=where)
        return
    g, e = got.astype(np.float64), expected.astype(np.float64)
    finite = np.isfinite(e)
    scale = max(1.0, float(np.abs(e[finite]).max())) if finite.any() else 1.0
    tol = TOLERANCE[expected.dtype] * scale
    # NaN and infinities must sit where the reference has them.
    np.testing.assert_array_equal(np.isnan(g), np.isnan(e), err_msg=f"{where}: NaN positions")
    np.testing.assert_array_equal(g[~finite & ~np.isnan(e)], e[~finite & ~np.isnan(e)],
                                  err_msg=f"{where}: infinities")
    np.testing.assert_allclose(g[finite], e[finite], rtol=0, atol=tol, err_msg=where)


def differential(fn, *args, order="forward", seed=0, kernel_refusal=None, **kwargs):
    """Runs ``fn`` on the reference and on the simulated kernels and compares.

    ``kernel_refusal``: a message fragment of a ValueError the kernel path may raise where the
    reference has no such rule (a forced backward algorithm that cannot run the case)."""
    try:
        expected = fn(*args, **kwargs)
    except REFUSALS as error:
        with pytest.raises(type(error)):
            with gpuconv.simulate(order=order, seed=seed):
                fn(*args, **kwargs)
        return None
    try:
        with gpuconv.simulate(order=order, seed=seed):
            got = fn(*args, **kwargs)
    except ValueError as error:
        if kernel_refusal is not None and kernel_refusal in str(error):
            return None
        raise
    assert_close(got, expected, getattr(fn, "__qualname__", str(fn)))
    return expected


# --------------------------------------------------------------------------------------------
# strategies

dtypes = st.sampled_from(DTYPES)
orders = st.sampled_from(ORDERS)
seeds = st.integers(0, 2**16)
formats = st.sampled_from(("NCHW", "NHWC"))


def pair_or_int(lo, hi):
    return st.one_of(st.integers(lo, hi), st.tuples(st.integers(lo, hi), st.integers(lo, hi)))


def conv_padding():
    return st.one_of(st.integers(0, 3), st.tuples(st.integers(0, 3), st.integers(0, 3)),
                     st.tuples(st.tuples(st.integers(0, 3), st.integers(0, 3)),
                               st.tuples(st.integers(0, 3), st.integers(0, 3))),
                     st.sampled_from(("same", "valid")))


def array(draw, shape, dtype, kind="normal"):
    """A random array of ``shape``; sometimes Fortran-ordered (a non-contiguous input)."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if kind == "ties":        # few distinct values: first-maximum and tie rules
        a = rng.integers(-2, 3, size=shape).astype(dtype)
    elif kind == "positive":
        a = rng.uniform(0.25, 2.0, size=shape).astype(dtype)
    else:
        a = rng.standard_normal(shape).astype(dtype)
    if a.ndim == 4 and draw(st.integers(0, 3)) == 0:
        a = np.asfortranarray(a)
    return a


def to_layout(shape_nchw, data_format):
    n, c, h, w = shape_nchw
    return (n, h, w, c) if data_format == "NHWC" else (n, c, h, w)


@st.composite
def conv_cases(draw):
    """x, weight and the geometry of a (possibly grouped or depthwise) convolution."""
    depthwise = draw(st.booleans())
    if depthwise:
        C = draw(st.integers(1, 9))
        groups, K = C, C * draw(st.integers(1, max(1, 9 // C)))
    else:
        groups = draw(st.integers(1, 3))
        C = groups * draw(st.integers(1, 9 // groups))
        K = groups * draw(st.integers(1, 9 // groups))
    N = draw(st.integers(0, 3))
    H, W = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    pointwise = draw(st.integers(0, 4)) == 0
    R, S = (1, 1) if pointwise else (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    return dict(N=N, C=C, K=K, H=H, W=W, R=R, S=S, groups=groups,
                stride=draw(pair_or_int(1, 3)),
                padding=0 if pointwise and draw(st.booleans()) else draw(conv_padding()),
                dilation=draw(pair_or_int(1, 3)))


# --------------------------------------------------------------------------------------------
# convolution


@fuzz(40)
@given(case=conv_cases(), dtype=dtypes, data_format=formats, order=orders, seed=seeds,
       algorithm=st.sampled_from(("auto",) + tuple(gpuconv.conv_algorithms)),
       activation=st.sampled_from((None, "relu", "tanh", "sigmoid")),
       with_bias=st.booleans(), with_residual=st.booleans(),
       out_kind=st.sampled_from((None, "contiguous", "channel_slice")), data=st.data())
def test_conv2d(case, dtype, data_format, order, seed, algorithm, activation, with_bias,
                with_residual, out_kind, data):
    c = case
    x = array(data.draw, to_layout((c["N"], c["C"], c["H"], c["W"]), data_format), dtype)
    weight = array(data.draw, (c["K"], c["C"] // c["groups"], c["R"], c["S"]), dtype)
    bias = array(data.draw, (c["K"],), dtype) if with_bias else None
    geometry = dict(stride=c["stride"], padding=c["padding"], dilation=c["dilation"],
                    groups=c["groups"])
    try:
        shape = gpuconv.conv2d(x, weight, **geometry, data_format=data_format).shape
    except REFUSALS:
        shape = None   # an invalid geometry: differential() checks both paths refuse it
    residual = array(data.draw, shape, dtype) if with_residual and shape else None
    kwargs = dict(geometry, bias=bias, activation=activation, residual=residual,
                  algorithm=algorithm, data_format=data_format)
    try:
        gpuconv.conv2d(x, weight, **kwargs)
    except ValueError as error:
        if algorithm != "auto" and "cannot run" in str(error):
            # A forced algorithm that cannot run the case: a legitimate refusal, on both paths.
            with pytest.raises(ValueError, match="cannot run"):
                with gpuconv.simulate(order=order, seed=seed):
                    gpuconv.conv2d(x, weight, **kwargs)
            return
    if out_kind is None or shape is None:
        differential(gpuconv.conv2d, x, weight, order=order, seed=seed, **kwargs)
        return
    # out=: the result lands in the given buffer (or its channel slice) and nothing else moves.
    expected = gpuconv.conv2d(x, weight, **kwargs)
    if out_kind == "channel_slice" and data_format == "NCHW":
        lead, trail = data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2))
        buf = np.full((shape[0], lead + shape[1] + trail) + shape[2:], 7.0, dtype)
        out = buf[:, lead:lead + shape[1]]
    else:
        buf = out = np.full(shape, 7.0, dtype)
    with gpuconv.simulate(order=order, seed=seed):
        got = gpuconv.conv2d(x, weight, **kwargs, out=out)
    assert got.size == 0 or np.shares_memory(got, buf), "conv2d did not return its out="
    assert_close(np.array(out), expected, "conv2d out=")
    untouched = np.ones(buf.shape, bool)
    if out is not buf:
        untouched[:, lead:lead + shape[1]] = False
        assert (buf[untouched] == 7.0).all(), "conv2d wrote outside its out= channel slice"


def _grad_case(draw, case, dtype, data_format):
    """(x, weight, grad_output, geometry) of a valid convolution, or None if it is invalid."""
    c = case
    x = array(draw, to_layout((c["N"], c["C"], c["H"], c["W"]), data_format), dtype)
    weight = array(draw, (c["K"], c["C"] // c["groups"], c["R"], c["S"]), dtype)
    geometry = dict(stride=c["stride"], padding=c["padding"], dilation=c["dilation"],
                    groups=c["groups"])
    try:
        shape = gpuconv.conv2d(x, weight, **geometry, data_format=data_format).shape
    except REFUSALS:
        return None
    return x, weight, array(draw, shape, dtype), geometry


BACKWARD_ALGORITHMS = st.sampled_from(("auto", "implicit_gemm", "im2col_gemm", "pointwise",
                                       "depthwise", "direct"))


@fuzz(40)
@given(case=conv_cases(), dtype=dtypes, data_format=formats, order=orders, seed=seeds,
       algorithm=BACKWARD_ALGORITHMS, deterministic=st.booleans(), data=st.data())
def test_grad_conv2d_input(case, dtype, data_format, order, seed, algorithm, deterministic, data):
    drawn = _grad_case(data.draw, case, dtype, data_format)
    if drawn is None:
        return
    x, weight, go, geometry = drawn
    differential(grad.conv2d_input, x.shape, weight, go, **geometry, order=order, seed=seed,
                 algorithm=algorithm, deterministic=deterministic, data_format=data_format,
                 kernel_refusal="cannot compute")


@fuzz(40)
@given(case=conv_cases(), dtype=dtypes, data_format=formats, order=orders, seed=seeds,
       algorithm=BACKWARD_ALGORITHMS, deterministic=st.booleans(), data=st.data())
def test_grad_conv2d_weight(case, dtype, data_format, order, seed, algorithm, deterministic,
                            data):
    drawn = _grad_case(data.draw, case, dtype, data_format)
    if drawn is None:
        return
    x, weight, go, geometry = drawn
    differential(grad.conv2d_weight, x, weight.shape, go, **geometry, order=order, seed=seed,
                 algorithm=algorithm, deterministic=deterministic, data_format=data_format,
                 kernel_refusal="cannot compute")


@fuzz(15)
@given(shape=st.tuples(st.integers(0, 3), st.integers(1, 9), st.integers(1, 12),
                       st.integers(1, 12)),
       dtype=dtypes, data_format=formats, order=orders, seed=seeds,
       deterministic=st.booleans(), data=st.data())
def test_grad_conv2d_bias(shape, dtype, data_format, order, seed, deterministic, data):
    go = array(data.draw, shape, dtype)
    differential(grad.conv2d_bias, go, order=order, seed=seed, deterministic=deterministic,
                 data_format=data_format)


@fuzz(40)
@given(N=st.integers(0, 3), groups=st.integers(1, 3), cpg=st.integers(1, 3),
       kpg=st.integers(1, 3), H=st.integers(1, 8), W=st.integers(1, 8),
       R=st.integers(1, 5), S=st.integers(1, 5), stride=pair_or_int(1, 3),
       padding=pair_or_int(0, 3), dilation=pair_or_int(1, 3), output_padding=pair_or_int(0, 2),
       size_offset=st.one_of(st.none(), st.tuples(st.integers(0, 3), st.integers(0, 3))),
       with_bias=st.booleans(), dtype=dtypes, order=orders, seed=seeds, data=st.data())
def test_conv_transpose2d(N, groups, cpg, kpg, H, W, R, S, stride, padding, dilation,
                          output_padding, size_offset, with_bias, dtype, order, seed, data):
    C_in, K_out = groups * cpg, groups * kpg
    x = array(data.draw, (N, C_in, H, W), dtype)
    weight = array(data.draw, (C_in, kpg, R, S), dtype)
    bias = array(data.draw, (K_out,), dtype) if with_bias else None
    output_size = None
    if size_offset is not None:
        # the smallest legal size (no output padding) plus 0..3: stride - 1 of them are legal
        sh, sw = (stride, stride) if isinstance(stride, int) else stride
        ph, pw = (padding, padding) if isinstance(padding, int) else padding
        dh, dw = (dilation, dilation) if isinstance(dilation, int) else dilation
        output_size = ((H - 1) * sh - 2 * ph + dh * (R - 1) + 1 + size_offset[0],
                       (W - 1) * sw - 2 * pw + dw * (S - 1) + 1 + size_offset[1])
    differential(gpuconv.conv_transpose2d, x, weight, bias, stride=stride, padding=padding,
                 output_padding=output_padding, groups=groups, dilation=dilation,
                 output_size=output_size, order=order, seed=seed)


# --------------------------------------------------------------------------------------------
# pooling

pool_shapes = st.tuples(st.integers(0, 3), st.integers(1, 9), st.integers(1, 12),
                        st.integers(1, 12))


@st.composite
def windows(draw, dilation=True, padding=True):
    kernel = draw(pair_or_int(1, 5))
    kwargs = dict(kernel_size=kernel, stride=draw(st.one_of(st.none(), pair_or_int(1, 3))),
                  ceil_mode=draw(st.booleans()))
    if padding:
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        if draw(st.integers(0, 7)) == 0:   # often > kernel/2: refused on both paths
            kwargs["padding"] = draw(pair_or_int(0, 3))
        else:
            kwargs["padding"] = draw(st.one_of(st.integers(0, min(kh, kw) // 2),
                                               st.tuples(st.integers(0, kh // 2),
                                                         st.integers(0, kw // 2))))
    if dilation:
        kwargs["dilation"] = draw(pair_or_int(1, 3))
    return kwargs


@fuzz(30)
@given(shape=pool_shapes, window=windows(), dtype=dtypes, data_format=formats, order=orders,
       seed=seeds, return_indices=st.booleans(), use_indices=st.booleans(),
       deterministic=st.booleans(), data=st.data())
def test_max_pool2d_and_grad(shape, window, dtype, data_format, order, seed, return_indices,
                             use_indices, deterministic, data):
    x = array(data.draw, to_layout(shape, data_format), dtype, "ties")
    y = differential(gpuconv.max_pool2d, x, **window, return_indices=True,
                     data_format=data_format, order=order, seed=seed)
    if y is None:
        return
    differential(gpuconv.max_pool2d, x, **window, return_indices=return_indices,
                 data_format=data_format, order=order, seed=seed)
    go = array(data.draw, y[0].shape, dtype)
    differential(grad.max_pool2d, go, x, **window, indices=y[1] if use_indices else None,
                 data_format=data_format, deterministic=deterministic, order=order, seed=seed)


@fuzz(30)
@given(shape=pool_shapes, window=windows(dilation=False), dtype=dtypes, data_format=formats,
       order=orders, seed=seeds, count_include_pad=st.booleans(),
       divisor_override=st.one_of(st.none(), st.integers(-3, 7)), deterministic=st.booleans(),
       data=st.data())
def test_avg_pool2d_and_grad(shape, window, dtype, data_format, order, seed, count_include_pad,
                             divisor_override, deterministic, data):
    x = array(data.draw, to_layout(shape, data_format), dtype)
    kwargs = dict(window, count_include_pad=count_include_pad, divisor_override=divisor_override,
                  data_format=data_format)
    y = differential(gpuconv.avg_pool2d, x, **kwargs, order=order, seed=seed)
    if y is None:
        return
    differential(grad.avg_pool2d, array(data.draw, y.shape, dtype), x, **kwargs,
                 deterministic=deterministic, order=order, seed=seed)


@fuzz(25)
@given(shape=pool_shapes, window=windows(dilation=False, padding=False), dtype=dtypes,
       data_format=formats, order=orders, seed=seeds,
       norm_type=st.sampled_from((1.0, 2.0, 3.0, 1.5, 0.5, 4)), deterministic=st.booleans(),
       data=st.data())
def test_lp_pool2d_and_grad(shape, window, dtype, data_format, order, seed, norm_type,
                            deterministic, data):
    # Positive inputs: a fractional power of a negative number, and the gradient of |f|^(1/p)
    # at 0, are NaN/inf whose exact placement is not what this test is about.
    x = array(data.draw, to_layout(shape, data_format), dtype, "positive")
    kwargs = dict(window, data_format=data_format)
    y = differential(gpuconv.lp_pool2d, x, norm_type, **kwargs, order=order, seed=seed)
    if y is None:
        return
    differential(grad.lp_pool2d, array(data.draw, y.shape, dtype), x, norm_type, **kwargs,
                 deterministic=deterministic, order=order, seed=seed)


adaptive_sizes = st.one_of(st.integers(1, 14),
                           st.tuples(st.one_of(st.none(), st.integers(1, 14)),
                                     st.one_of(st.none(), st.integers(1, 14))))


@fuzz(25)
@given(shape=pool_shapes, output_size=adaptive_sizes, dtype=dtypes, data_format=formats,
       order=orders, seed=seeds, deterministic=st.booleans(), data=st.data())
def test_adaptive_avg_pool2d_and_grad(shape, output_size, dtype, data_format, order, seed,
                                      deterministic, data):
    x = array(data.draw, to_layout(shape, data_format), dtype)
    y = differential(gpuconv.adaptive_avg_pool2d, x, output_size, data_format=data_format,
                     order=order, seed=seed)
    if y is None:
        return
    differential(grad.adaptive_avg_pool2d, array(data.draw, y.shape, dtype), x, output_size,
                 data_format=data_format, deterministic=deterministic, order=order, seed=seed)


@fuzz(25)
@given(shape=pool_shapes, output_size=adaptive_sizes, dtype=dtypes, data_format=formats,
       order=orders, seed=seeds, use_indices=st.booleans(), deterministic=st.booleans(),
       data=st.data())
def test_adaptive_max_pool2d_and_grad(shape, output_size, dtype, data_format, order, seed,
                                      use_indices, deterministic, data):
    x = array(data.draw, to_layout(shape, data_format), dtype, "ties")
    y = differential(gpuconv.adaptive_max_pool2d, x, output_size, return_indices=True,
                     data_format=data_format, order=order, seed=seed)
    if y is None:
        return
    differential(grad.adaptive_max_pool2d, array(data.draw, y[0].shape, dtype), x, output_size,
                 indices=y[1] if use_indices else None, data_format=data_format,
                 deterministic=deterministic, order=order, seed=seed)


@fuzz(20)
@given(shape=pool_shapes, dtype=dtypes, data_format=formats, order=orders, seed=seeds,
       mode=st.sampled_from(("avg", "max")), use_indices=st.booleans(),
       deterministic=st.booleans(), data=st.data())
def test_global_pool2d_and_grad(shape, dtype, data_format, order, seed, mode, use_indices,
                                deterministic, data):
    x = array(data.draw, to_layout(shape, data_format), dtype, "ties" if mode == "max" else "normal")
    forward = gpuconv.global_max_pool2d if mode == "max" else gpuconv.global_avg_pool2d
    backward = grad.global_max_pool2d if mode == "max" else grad.global_avg_pool2d
    y = differential(forward, x, data_format=data_format, order=order, seed=seed)
    extra = {}
    if mode == "max" and use_indices:
        _, indices = gpuconv.max_pool2d(np.ascontiguousarray(
            x.transpose(0, 3, 1, 2) if data_format == "NHWC" else x),
            (shape[2], shape[3]), return_indices=True)
        extra["indices"] = (np.ascontiguousarray(indices.transpose(0, 2, 3, 1))
                            if data_format == "NHWC" else indices)
    differential(backward, array(data.draw, y.shape, dtype), x, data_format=data_format,
                 deterministic=deterministic, order=order, seed=seed, **extra)


@fuzz(20)
@given(shape=pool_shapes, levels=st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple),
       mode=st.sampled_from(("max", "avg")), dtype=dtypes, data_format=formats, order=orders,
       seed=seeds, deterministic=st.booleans(), data=st.data())
def test_spatial_pyramid_pool2d_and_grad(shape, levels, mode, dtype, data_format, order, seed,
                                         deterministic, data):
    x = array(data.draw, to_layout(shape, data_format), dtype, "ties" if mode == "max" else "normal")
    y = differential(gpuconv.spatial_pyramid_pool2d, x, levels, mode, data_format=data_format,
                     order=order, seed=seed)
    if y is None:
        return
    differential(grad.spatial_pyramid_pool2d, array(data.draw, y.shape, dtype), x, levels, mode,
                 data_format=data_format, deterministic=deterministic, order=order, seed=seed)


@fuzz(25)
@given(shape=pool_shapes, window=windows(dilation=False), dtype=dtypes, data_format=formats,
       order=orders, seed=seeds, give_size=st.booleans(), deterministic=st.booleans(),
       data=st.data())
def test_max_unpool2d_and_grad(shape, window, dtype, data_format, order, seed, give_size,
                               deterministic, data):
    # Indices from a max pooling of a larger input: overlapping windows repeat an index only
    # with the same value, so "the last repeated index wins" is not a race here.
    window = dict(window, ceil_mode=False)
    source = array(data.draw, to_layout(shape, data_format), dtype)
    try:
        pooled, indices = gpuconv.max_pool2d(source, **window, return_indices=True,
                                             data_format=data_format)
    except REFUSALS:
        return
    if pooled.size == 0 and shape[0] > 0:
        return
    window.pop("ceil_mode")
    output_size = (shape[2], shape[3]) if give_size else None
    y = differential(gpuconv.max_unpool2d, pooled, indices, **window, output_size=output_size,
                     data_format=data_format, order=order, seed=seed)
    if y is None:
        return
    differential(grad.max_unpool2d, array(data.draw, y.shape, dtype), pooled, indices, **window,
                 output_size=output_size, data_format=data_format, deterministic=deterministic,
                 order=order, seed=seed)


# --------------------------------------------------------------------------------------------
# regions of interest


@st.composite
def roi_boxes(draw, N, H, W, spatial_scale, dtype):
    """Boxes in image coordinates: inside, partly outside, tiny, huge, or inverted."""
    count = draw(st.integers(0, 5))
    rows = []
    for _ in range(count):
        kind = draw(st.sampled_from(("inside", "outside", "tiny", "huge", "inverted")))
        x1 = draw(st.floats(-3, W + 3, allow_nan=False))
        y1 = draw(st.floats(-3, H + 3, allow_nan=False))
        if kind == "tiny":
            w, h = draw(st.floats(0, 0.6)), draw(st.floats(0, 0.6))
        elif kind == "huge":
            w, h = draw(st.floats(W, 3 * W + 5)), draw(st.floats(H, 3 * H + 5))
        elif kind == "inverted":
            w, h = -draw(st.floats(0, 3)), -draw(st.floats(0, 3))
        else:
            w, h = draw(st.floats(0.5, W)), draw(st.floats(0.5, H))
            if kind == "inside":
                x1, y1 = min(max(x1, 0), max(W - w, 0)), min(max(y1, 0), max(H - h, 0))
        rows.append([draw(st.integers(0, N - 1)), x1, y1, x1 + w, y1 + h])
    boxes = np.array(rows, dtype=np.float64).reshape(count, 5)
    boxes[:, 1:] /= spatial_scale   # the functions scale back to feature coordinates
    boxes = boxes.astype(dtype)
    if draw(st.booleans()):          # the list-of-(K_i, 4) form, one array per image
        return [boxes[boxes[:, 0] == n, 1:] for n in range(N)]
    return boxes


@fuzz(30)
@given(N=st.integers(1, 3), C=st.integers(1, 5), H=st.integers(1, 12), W=st.integers(1, 12),
       output_size=pair_or_int(1, 4), spatial_scale=st.sampled_from((1.0, 0.5, 0.25, 2.0)),
       sampling_ratio=st.integers(-1, 3), aligned=st.booleans(), dtype=dtypes,
       data_format=formats, order=orders, seed=seeds, deterministic=st.booleans(),
       data=st.data())
def test_roi_align_and_grad(N, C, H, W, output_size, spatial_scale, sampling_ratio, aligned,
                            dtype, data_format, order, seed, deterministic, data):
    x = array(data.draw, to_layout((N, C, H, W), data_format), dtype)
    boxes = data.draw(roi_boxes(N, H, W, spatial_scale, dtype))
    args = (boxes, output_size, spatial_scale, sampling_ratio, aligned)
    y = differential(gpuconv.roi_align, x, *args, data_format=data_format, order=order,
                     seed=seed)
    if y is None:
        return
    differential(grad.roi_align, array(data.draw, y.shape, dtype), x, *args,
                 data_format=data_format, deterministic=deterministic, order=order, seed=seed)


@fuzz(30)
@given(N=st.integers(1, 3), C=st.integers(1, 5), H=st.integers(1, 12), W=st.integers(1, 12),
       output_size=pair_or_int(1, 4), spatial_scale=st.sampled_from((1.0, 0.5, 0.25, 2.0)),
       dtype=dtypes, data_format=formats, order=orders, seed=seeds,
       deterministic=st.booleans(), data=st.data())
def test_roi_pool_and_grad(N, C, H, W, output_size, spatial_scale, dtype, data_format, order,
                           seed, deterministic, data):
    x = array(data.draw, to_layout((N, C, H, W), data_format), dtype)
    boxes = data.draw(roi_boxes(N, H, W, spatial_scale, dtype))
    args = (boxes, output_size, spatial_scale)
    y = differential(gpuconv.roi_pool, x, *args, data_format=data_format, order=order, seed=seed)
    if y is None:
        return
    differential(grad.roi_pool, array(data.draw, y.shape, dtype), x, *args,
                 data_format=data_format, deterministic=deterministic, order=order, seed=seed)
