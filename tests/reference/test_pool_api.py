"""The pooling fronts (gpuconv.* and gpuconv.grad.*) on NumPy arrays: layouts, dtypes, strided
inputs, empty batches, every invalid argument, and the hand-off to the kernel launchers."""
import contextlib
import sys
import types

import numpy as np
import pytest

import gpuconv
import gpuconv.pool
from gpuconv import _state, grad
from gpuconv.pool.geometry import AdaptivePool2dGeometry, Pool2dGeometry, SpatialPyramidGeometry

X_SHAPE = (2, 3, 7, 6)

# Each forward call: name, positional arguments after x, keyword arguments.
FORWARD = [
    ("max_pool2d", (3,), dict(stride=2, padding=1, ceil_mode=True)),
    ("max_pool2d", ((2, 3),), dict(stride=(1, 2), dilation=(2, 1))),
    ("avg_pool2d", (3,), dict(stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    ("avg_pool2d", (2,), dict(divisor_override=3)),
    ("lp_pool2d", (2.0, 2), dict(ceil_mode=True)),
    ("adaptive_avg_pool2d", ((3, 4),), {}),
    ("adaptive_max_pool2d", ((4, None),), {}),
    ("global_avg_pool2d", (), {}),
    ("global_max_pool2d", (), {}),
    ("spatial_pyramid_pool2d", (), dict(levels=(1, 2), mode="avg")),
]
FORWARD_IDS = [f"{name}-{i}" for i, (name, _, _) in enumerate(FORWARD)]


def nhwc(a):
    return a.transpose(0, 2, 3, 1)


def call(name, x, args, kwargs, **extra):
    return getattr(gpuconv, name)(x, *args, **kwargs, **extra)


def reference_in_float64(name, x, args, kwargs, **extra):
    return call(name, x.astype(np.float64), args, kwargs, **extra)


# --------------------------------------------------------------------------------------------
# layouts, dtypes, strides, empty batches


@pytest.mark.parametrize("name,args,kwargs", FORWARD, ids=FORWARD_IDS)
def test_nhwc_is_transposed_nchw(name, args, kwargs, rng):
    x = rng.standard_normal(X_SHAPE)
    expected = call(name, x, args, kwargs)
    actual = call(name, np.ascontiguousarray(nhwc(x)), args, kwargs, data_format="NHWC")
    if name == "spatial_pyramid_pool2d":
        # (N, features): each level's block is ordered (i, j, c) in NHWC instead of (c, i, j)
        assert actual.shape == expected.shape
        np.testing.assert_array_equal(np.sort(actual, axis=1), np.sort(expected, axis=1))
    else:
        np.testing.assert_array_equal(actual, nhwc(expected))
        assert actual.flags.c_contiguous


def test_nhwc_indices_and_unpool(rng):
    x = rng.standard_normal(X_SHAPE)
    values, indices = gpuconv.max_pool2d(x, 2, return_indices=True)
    values_t, indices_t = gpuconv.max_pool2d(nhwc(x), 2, return_indices=True, data_format="NHWC")
    np.testing.assert_array_equal(indices_t, nhwc(indices))
    unpooled = gpuconv.max_unpool2d(values, indices, 2, output_size=(7, 6))
    unpooled_t = gpuconv.max_unpool2d(values_t, indices_t, 2, output_size=(2, 7, 6, 3),
                                      data_format="NHWC")
    np.testing.assert_array_equal(unpooled_t, nhwc(unpooled))
    a_values, a_indices = gpuconv.adaptive_max_pool2d(x, 3, return_indices=True)
    b_values, b_indices = gpuconv.adaptive_max_pool2d(nhwc(x), 3, True, data_format="NHWC")
    np.testing.assert_array_equal(b_values, nhwc(a_values))
    np.testing.assert_array_equal(b_indices, nhwc(a_indices))


@pytest.mark.parametrize("name,args,kwargs", FORWARD, ids=FORWARD_IDS)
def test_nhwc_gradient_is_transposed_nchw(name, args, kwargs, rng):
    x = rng.standard_normal(X_SHAPE)
    g = rng.standard_normal(call(name, x, args, kwargs).shape)
    expected = getattr(grad, name)(g, x, *args, **kwargs)
    if name == "spatial_pyramid_pool2d":
        return   # its NHWC gradient is checked by finite differences in test_pool_grad.py
    g_t = np.ascontiguousarray(nhwc(g))
    actual = getattr(grad, name)(g_t, nhwc(x), *args, **kwargs, data_format="NHWC")
    np.testing.assert_allclose(actual, nhwc(expected), rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("dtype,tolerance", [(np.float16, 1e-3), (np.float32, 1e-6), (np.float64, 0)])
@pytest.mark.parametrize("name,args,kwargs", FORWARD, ids=FORWARD_IDS)
def test_dtypes(name, args, kwargs, dtype, tolerance, rng):
    x = rng.uniform(0.1, 2.0, size=X_SHAPE).astype(dtype)
    out = call(name, x, args, kwargs)
    assert out.dtype == dtype
    expected = reference_in_float64(name, x, args, kwargs)
    np.testing.assert_allclose(out.astype(np.float64), expected, rtol=tolerance, atol=tolerance)


def test_bfloat16_when_available(rng):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = rng.standard_normal(X_SHAPE).astype(ml_dtypes.bfloat16)
    out = gpuconv.avg_pool2d(x, 2)
    assert out.dtype == x.dtype
    np.testing.assert_allclose(out.astype(np.float64),
                               gpuconv.avg_pool2d(x.astype(np.float64), 2), rtol=1e-2, atol=1e-2)


STRIDED_VIEWS = {
    "sliced": lambda a: a[:, ::2, 1:, ::2],
    "negative strides": lambda a: a[::-1, :, ::-1, ::-1],
    "transposed": lambda a: a.transpose(0, 1, 3, 2),
}


@pytest.mark.parametrize("view", list(STRIDED_VIEWS), ids=list(STRIDED_VIEWS))
@pytest.mark.parametrize("name,args,kwargs", FORWARD, ids=FORWARD_IDS)
def test_non_contiguous_input(name, args, kwargs, view, rng):
    x = STRIDED_VIEWS[view](rng.standard_normal((2, 5, 9, 8)))
    assert not x.flags.c_contiguous
    np.testing.assert_array_equal(call(name, x, args, kwargs), call(name, np.ascontiguousarray(x), args, kwargs))
    g = rng.standard_normal(call(name, x, args, kwargs).shape)
    g_view = np.flip(np.flip(g, axis=0).copy(), axis=0)   # a negatively strided grad_output too
    np.testing.assert_array_equal(getattr(grad, name)(g_view, x, *args, **kwargs),
                                  getattr(grad, name)(g, np.ascontiguousarray(x), *args, **kwargs))


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("name,args,kwargs", FORWARD, ids=FORWARD_IDS)
def test_empty_batch(name, args, kwargs, data_format, rng):
    full = rng.standard_normal(X_SHAPE)
    if data_format == "NHWC":
        full = nhwc(full)
    expected_shape = call(name, full, args, kwargs, data_format=data_format).shape
    empty = full[:0]
    out = call(name, empty, args, kwargs, data_format=data_format)
    assert out.shape == (0,) + expected_shape[1:] and out.dtype == empty.dtype
    g = np.zeros(out.shape)
    assert getattr(grad, name)(g, empty, *args, **kwargs, data_format=data_format).shape == empty.shape


def test_empty_batch_indices_and_unpool():
    x = np.zeros((0, 3, 6, 6))
    values, indices = gpuconv.max_pool2d(x, 2, return_indices=True)
    assert values.shape == indices.shape == (0, 3, 3, 3) and indices.dtype == np.int64
    assert gpuconv.max_unpool2d(values, indices, 2).shape == (0, 3, 6, 6)
    assert grad.max_unpool2d(np.zeros((0, 3, 6, 6)), values, indices, 2).shape == (0, 3, 3, 3)


def test_return_indices_and_output_shapes(rng):
    x = rng.standard_normal(X_SHAPE)
    values, indices = gpuconv.max_pool2d(x, 3, 2, 1, return_indices=True)
    assert values.shape == indices.shape == (2, 3, 4, 3) and indices.dtype == np.int64
    assert gpuconv.adaptive_avg_pool2d(x, (None, 2)).shape == (2, 3, 7, 2)
    assert gpuconv.global_max_pool2d(x).shape == (2, 3, 1, 1)
    assert gpuconv.spatial_pyramid_pool2d(x).shape == (2, 3 * (1 + 4 + 16))
    # default unpooled size (P-1)*stride + kernel - 2*padding: 7 x 5 (x's planes were 7 x 6)
    assert gpuconv.max_unpool2d(values, np.zeros_like(indices), 3, 2, 1).shape == (2, 3, 7, 5)
    assert gpuconv.max_unpool2d(values, indices, 3, 2, 1, output_size=(7, 6)).shape == (2, 3, 7, 6)


def test_deterministic_flag_does_not_change_reference(rng):
    x = rng.standard_normal(X_SHAPE)
    g = rng.standard_normal((2, 3, 3, 3))
    results = [grad.max_pool2d(g, x, 2, deterministic=flag) for flag in (None, True, False)]
    for result in results[1:]:
        np.testing.assert_array_equal(result, results[0])


# --------------------------------------------------------------------------------------------
# invalid arguments: each error names the argument

X = np.zeros((1, 2, 6, 6))
INDICES = gpuconv.max_pool2d(X, 2, return_indices=True)[1]
POOLED = np.zeros((1, 2, 3, 3))

INVALID = [
    # (callable, exception, pattern in the message)
    (lambda: gpuconv.max_pool2d(X, 0), ValueError, "kernel_size"),
    (lambda: gpuconv.max_pool2d(X, (2, 0)), ValueError, r"kernel_size\[1\]"),
    (lambda: gpuconv.max_pool2d(X, (1, 2, 3)), ValueError, "kernel_size"),
    (lambda: gpuconv.max_pool2d(X, 2.0), TypeError, "kernel_size"),
    (lambda: gpuconv.max_pool2d(X, True), TypeError, "kernel_size"),
    (lambda: gpuconv.max_pool2d(X, 2, stride=0), ValueError, "stride"),
    (lambda: gpuconv.max_pool2d(X, 2, stride=(1, -1)), ValueError, r"stride\[1\]"),
    (lambda: gpuconv.max_pool2d(X, 2, padding=-1), ValueError, "padding"),
    (lambda: gpuconv.max_pool2d(X, 3, padding=2), ValueError, "padding"),
    (lambda: gpuconv.max_pool2d(X, (4, 2), padding=(2, 2)), ValueError, "padding"),
    (lambda: gpuconv.max_pool2d(X, 2, padding="same"), TypeError, "padding"),
    (lambda: gpuconv.max_pool2d(X, 2, dilation=0), ValueError, "dilation"),
    (lambda: gpuconv.max_pool2d(X, 2, ceil_mode="yes"), TypeError, "ceil_mode"),
    (lambda: gpuconv.max_pool2d(X, 2, return_indices=2), TypeError, "return_indices"),
    (lambda: gpuconv.max_pool2d(X, 7), ValueError, "kernel_size"),
    (lambda: gpuconv.max_pool2d(X, 3, dilation=3), ValueError, "kernel_size"),
    (lambda: gpuconv.max_pool2d(X[0], 2), ValueError, "x"),
    (lambda: gpuconv.max_pool2d(X.astype(np.int32), 2), TypeError, "x"),
    (lambda: gpuconv.max_pool2d(X.astype(np.complex64), 2), TypeError, "x"),
    (lambda: gpuconv.max_pool2d(X.tolist(), 2), TypeError, "x"),
    (lambda: gpuconv.max_pool2d(np.zeros((1, 0, 4, 4)), 2), ValueError, "x"),
    (lambda: gpuconv.max_pool2d(np.zeros((1, 2, 0, 4)), 2), ValueError, "x"),
    (lambda: gpuconv.max_pool2d(X, 2, data_format="NWHC"), ValueError, "data_format"),
    (lambda: gpuconv.avg_pool2d(X, 2, divisor_override=0), ValueError, "divisor_override"),
    (lambda: gpuconv.avg_pool2d(X, 2, divisor_override=1.5), TypeError, "divisor_override"),
    (lambda: gpuconv.avg_pool2d(X, 2, count_include_pad="no"), TypeError, "count_include_pad"),
    (lambda: gpuconv.avg_pool2d(X, 3, padding=2), ValueError, "padding"),
    (lambda: gpuconv.avg_pool2d(X, -1), ValueError, "kernel_size"),
    (lambda: gpuconv.lp_pool2d(X, 0, 2), ValueError, "norm_type"),
    (lambda: gpuconv.lp_pool2d(X, float("nan"), 2), ValueError, "norm_type"),
    (lambda: gpuconv.lp_pool2d(X, "2", 2), TypeError, "norm_type"),
    (lambda: gpuconv.lp_pool2d(X, 2, 2, stride=0), ValueError, "stride"),
    (lambda: gpuconv.adaptive_avg_pool2d(X, -1), ValueError, "output_size"),
    (lambda: gpuconv.adaptive_avg_pool2d(X, (2, -3)), ValueError, r"output_size\[1\]"),
    (lambda: gpuconv.adaptive_avg_pool2d(X, (1, 2, 3)), ValueError, "output_size"),
    (lambda: gpuconv.adaptive_max_pool2d(X, "7"), TypeError, "output_size"),
    (lambda: gpuconv.adaptive_max_pool2d(X, None), TypeError, "output_size"),
    (lambda: gpuconv.adaptive_max_pool2d(X, 2.5), TypeError, "output_size"),
    (lambda: gpuconv.adaptive_max_pool2d(X, 2, return_indices="yes"), TypeError, "return_indices"),
    (lambda: gpuconv.global_avg_pool2d(X[0]), ValueError, "x"),
    (lambda: gpuconv.global_max_pool2d(X, data_format="nchw"), ValueError, "data_format"),
    (lambda: gpuconv.spatial_pyramid_pool2d(X, levels=()), ValueError, "levels"),
    (lambda: gpuconv.spatial_pyramid_pool2d(X, levels=(1, 0)), ValueError, r"levels\[1\]"),
    (lambda: gpuconv.spatial_pyramid_pool2d(X, levels=2), TypeError, "levels"),
    (lambda: gpuconv.spatial_pyramid_pool2d(X, levels=(1, 2.0)), TypeError, r"levels\[1\]"),
    (lambda: gpuconv.spatial_pyramid_pool2d(X, mode="min"), ValueError, "mode"),
    (lambda: gpuconv.max_unpool2d(POOLED, INDICES.astype(np.float64), 2), TypeError, "indices"),
    (lambda: gpuconv.max_unpool2d(POOLED, INDICES[:, :1], 2), ValueError, "indices"),
    (lambda: gpuconv.max_unpool2d(POOLED, INDICES + 36, 2), ValueError, "indices"),
    (lambda: gpuconv.max_unpool2d(POOLED, INDICES - 36, 2), ValueError, "indices"),
    (lambda: gpuconv.max_unpool2d(POOLED, INDICES.tolist(), 2), TypeError, "indices"),
    (lambda: gpuconv.max_unpool2d(POOLED, INDICES, 0), ValueError, "kernel_size"),
    (lambda: gpuconv.max_unpool2d(POOLED, INDICES, 2, stride=0), ValueError, "stride"),
    (lambda: gpuconv.max_unpool2d(POOLED, INDICES, 2, padding=-1), ValueError, "padding"),
    # a negative unpooled size (0 is torch's empty output: test_contract_audit5.py)
    (lambda: gpuconv.max_unpool2d(POOLED[:, :, :1, :1], INDICES[:, :, :1, :1], 1, padding=1),
     ValueError, "padding"),
    (lambda: gpuconv.max_unpool2d(POOLED, INDICES, 2, output_size=(8, 6)), ValueError, "output_size"),
    (lambda: gpuconv.max_unpool2d(POOLED, INDICES, 2, output_size=(4, 6)), ValueError, "output_size"),
    (lambda: gpuconv.max_unpool2d(POOLED, INDICES, 2, output_size=(1, 6, 6)), ValueError, "output_size"),
    (lambda: gpuconv.max_unpool2d(POOLED, INDICES, 2, output_size=6), TypeError, "output_size"),
    # gradients
    (lambda: grad.max_pool2d(np.zeros((1, 2, 2, 2)), X, 2), ValueError, "grad_output"),
    (lambda: grad.max_pool2d(np.zeros((1, 2, 3, 3), np.float32), X, 2), TypeError, "grad_output"),
    (lambda: grad.max_pool2d(np.zeros((2, 3, 3)), X, 2), ValueError, "grad_output"),
    (lambda: grad.max_pool2d(POOLED, X, 2, indices=INDICES[..., :2]), ValueError, "indices"),
    (lambda: grad.max_pool2d(POOLED, X, 2, indices=INDICES + 36), ValueError, "indices"),
    (lambda: grad.max_pool2d(POOLED, X, 2, indices=INDICES - 2), ValueError, "indices"),
    (lambda: grad.max_pool2d(POOLED, X, 2, indices=INDICES.astype(np.float32)), TypeError, "indices"),
    (lambda: grad.max_pool2d(POOLED, X, 2, deterministic="yes"), TypeError, "deterministic"),
    (lambda: grad.max_pool2d(POOLED, X, 2, return_indices=None), TypeError, "return_indices"),
    (lambda: grad.avg_pool2d(POOLED, X, 2, divisor_override=0), ValueError, "divisor_override"),
    (lambda: grad.avg_pool2d(np.zeros((1, 2, 3, 4)), X, 2), ValueError, "grad_output"),
    (lambda: grad.lp_pool2d(POOLED, X, 0, 2), ValueError, "norm_type"),
    (lambda: grad.adaptive_avg_pool2d(POOLED, X, 2), ValueError, "grad_output"),
    (lambda: grad.adaptive_max_pool2d(POOLED, X, 3, indices=INDICES[:, :1]), ValueError, "indices"),
    (lambda: grad.adaptive_max_pool2d(POOLED, X, 3, indices=INDICES - 1), ValueError, "indices"),
    (lambda: grad.global_avg_pool2d(POOLED, X), ValueError, "grad_output"),
    (lambda: grad.global_max_pool2d(np.zeros((1, 2, 1, 1)), X, indices=np.full((1, 2, 1, 1), 36)),
     ValueError, "indices"),
    (lambda: grad.spatial_pyramid_pool2d(np.zeros((1, 41)), X), ValueError, "grad_output"),
    (lambda: grad.spatial_pyramid_pool2d(np.zeros((1, 42)), X, mode="sum"), ValueError, "mode"),
    (lambda: grad.max_unpool2d(np.zeros((1, 2, 6, 5)), POOLED, INDICES, 2), ValueError, "grad_output"),
    (lambda: grad.max_unpool2d(X, POOLED, INDICES + 36, 2), ValueError, "indices"),
    (lambda: grad.max_unpool2d(X, POOLED, INDICES, 2, deterministic=1), TypeError, "deterministic"),
]


@pytest.mark.parametrize("case", range(len(INVALID)))
def test_invalid_arguments(case):
    function, error, pattern = INVALID[case]
    with pytest.raises(error, match=pattern):
        function()


def test_torch_tensor_is_pointed_to_gpuconv_torch():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="gpuconv.torch"):
        gpuconv.max_pool2d(torch.zeros(1, 1, 4, 4), 2)


# --------------------------------------------------------------------------------------------
# the kernel branch: launch.<same name>(geometry, arrays, options, data_format=, executor=)


class RecordingLaunch(types.ModuleType):
    def __init__(self):
        super().__init__("gpuconv.pool.launch")
        self.calls = []

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)

        def launcher(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            return "launched"
        return launcher


@pytest.fixture
def launch(monkeypatch):
    fake = RecordingLaunch()
    monkeypatch.setattr(_state, "executor_for", lambda library: "simulator")
    monkeypatch.setitem(sys.modules, "gpuconv.pool.launch", fake)
    monkeypatch.setattr(gpuconv.pool, "launch", fake, raising=False)
    return fake


def test_forward_fronts_hand_validated_geometry_to_launch(launch):
    x = np.zeros((2, 3, 7, 6), dtype=np.float32)
    expected = {
        "max_pool2d": (Pool2dGeometry, dict(return_indices=True)),
        "avg_pool2d": (Pool2dGeometry, dict(count_include_pad=False, divisor_override=2)),
        "lp_pool2d": (Pool2dGeometry, dict(norm_type=2.0)),
        "adaptive_avg_pool2d": (AdaptivePool2dGeometry, {}),
        "adaptive_max_pool2d": (AdaptivePool2dGeometry, dict(return_indices=False)),
        "global_avg_pool2d": (AdaptivePool2dGeometry, {}),
        "global_max_pool2d": (AdaptivePool2dGeometry, {}),
        "spatial_pyramid_pool2d": (SpatialPyramidGeometry, {}),
    }
    assert gpuconv.max_pool2d(x, 3, 2, 1, return_indices=True) == "launched"
    gpuconv.avg_pool2d(x, 2, count_include_pad=False, divisor_override=2)
    gpuconv.lp_pool2d(x, 2, 2)
    gpuconv.adaptive_avg_pool2d(x, 3)
    gpuconv.adaptive_max_pool2d(x, 3)
    gpuconv.global_avg_pool2d(x)
    gpuconv.global_max_pool2d(x)
    gpuconv.spatial_pyramid_pool2d(x, data_format="NHWC")
    assert [name for name, _, _ in launch.calls] == list(expected)
    for name, args, kwargs in launch.calls:
        geometry_type, options = expected[name]
        assert isinstance(args[0], geometry_type) and args[1] is x
        assert kwargs.pop("executor") == "simulator"
        assert kwargs.pop("data_format") == ("NHWC" if name == "spatial_pyramid_pool2d" else "NCHW")
        assert kwargs == options
    geom = launch.calls[0][1][0]
    assert (geom.N, geom.C, geom.H, geom.W, geom.P, geom.Q, geom.R, geom.S) == (2, 3, 7, 6, 4, 3, 3, 3)
    assert (geom.stride_h, geom.stride_w, geom.pad_h, geom.pad_w, geom.dil_h, geom.dil_w) == (2, 2, 1, 1, 1, 1)
    assert launch.calls[-1][1][0].levels == (1, 2, 4)   # NHWC x (2, 3, 7, 6): C = 6
    assert launch.calls[-1][1][0].C == 6


def test_unpool_and_gradient_fronts_hand_off_to_launch(launch):
    x = np.zeros((1, 2, 6, 6))
    gpuconv.max_unpool2d(POOLED, INDICES, 2)
    grad.max_pool2d(POOLED, x, 2, indices=INDICES, deterministic=True)
    grad.avg_pool2d(POOLED, x, 2)
    grad.max_unpool2d(x, POOLED, INDICES, 2)
    names = [name for name, _, _ in launch.calls]
    assert names == ["max_unpool2d", "grad_max_pool2d", "grad_avg_pool2d", "grad_max_unpool2d"]
    unpool_geom = launch.calls[0][1][0]
    assert (unpool_geom.H, unpool_geom.W, unpool_geom.P, unpool_geom.Q) == (6, 6, 3, 3)
    assert launch.calls[1][2]["indices"] is INDICES and launch.calls[1][2]["deterministic"] is True
    assert launch.calls[2][2]["deterministic"] is False


@pytest.mark.parametrize("executor", ["reference", "simulator"])
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("output_size", [0, (0, 2), (3, 0), (0, None)])
def test_adaptive_pools_to_zero_rows_or_columns_are_empty_as_in_torch(output_size, data_format,
                                                                      executor):
    """torch returns an empty output for an output_size entry of 0; the gradient through it is
    zero (torch's own adaptive_max_pool2d backward refuses the empty grad_output)."""
    x = X if data_format == "NCHW" else np.ascontiguousarray(X.transpose(0, 2, 3, 1))
    torch = pytest.importorskip("torch")
    expected = tuple(torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(X),
                                                             output_size).shape)
    if data_format == "NHWC":
        expected = (expected[0], expected[2], expected[3], expected[1])
    context = gpuconv.simulate() if executor == "simulator" else contextlib.nullcontext()
    with context:
        avg = gpuconv.adaptive_avg_pool2d(x, output_size, data_format=data_format)
        values, indices = gpuconv.adaptive_max_pool2d(x, output_size, return_indices=True,
                                                      data_format=data_format)
        gradients = [grad.adaptive_avg_pool2d(np.zeros(expected), x, output_size,
                                              data_format=data_format),
                     grad.adaptive_max_pool2d(np.zeros(expected), x, output_size,
                                              data_format=data_format),
                     grad.adaptive_max_pool2d(np.zeros(expected), x, output_size, indices=indices,
                                              data_format=data_format)]
    assert avg.shape == values.shape == indices.shape == expected
    assert avg.dtype == values.dtype == x.dtype and indices.dtype == np.int64
    for g in gradients:
        assert g.shape == x.shape and g.dtype == x.dtype and not g.any()
