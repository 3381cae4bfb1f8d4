"""The public ROI fronts (gpuconv.roi_align, gpuconv.roi_pool, gpuconv.grad.*): validation,
the two forms of boxes, layouts, dtypes, empty cases, and the hand-off to the kernels' launcher."""
import sys
import types

import numpy as np
import pytest

import gpuconv
import gpuconv.roi
from gpuconv import _state
from gpuconv.roi.geometry import RoiGeometry, check_roi_arguments

ROIS = np.array([[0, 0.5, 1.0, 5.5, 4.0], [1, -1.0, 2.0, 3.0, 7.5], [1, 2.2, 0.1, 6.9, 6.1]])


@pytest.fixture
def x(rng):
    return rng.standard_normal((2, 3, 6, 7))


def forward(name, x, boxes, output_size=2, **kwargs):
    return getattr(gpuconv, name)(x, boxes, output_size, **kwargs)


def backward(name, g, x, boxes, output_size=2, **kwargs):
    return getattr(gpuconv.grad, name)(g, x, boxes, output_size, **kwargs)


BOTH = pytest.mark.parametrize("name", ["roi_align", "roi_pool"])


# ------------------------------------------------------------------------------- exports

def test_exported_names():
    assert {"roi_align", "roi_pool"} <= set(gpuconv.roi.__all__)
    assert callable(gpuconv.roi_align) and callable(gpuconv.roi_pool)
    assert callable(gpuconv.grad.roi_align) and callable(gpuconv.grad.roi_pool)


def test_geometry_record(x):
    call = check_roi_arguments(x, ROIS, (2, 3), 0.5, -7, True)
    assert call.geometry == RoiGeometry(N=2, C=3, H=6, W=7, K=3, PH=2, PW=3, spatial_scale=0.5,
                                        sampling_ratio=0, aligned=True)
    assert call.rois.flags.c_contiguous and call.rois.dtype == x.dtype
    with pytest.raises(AttributeError):
        call.geometry.K = 4


# ------------------------------------------------------------------------ invalid inputs

BAD_FORWARD = [
    ({"x": np.zeros((2, 3, 6))}, ValueError, r"^x must be 4-D"),
    ({"x": np.zeros((2, 3, 6, 7), dtype=np.int32)}, TypeError, r"^x must have a floating"),
    ({"x": [[[[1.0]]]]}, TypeError, r"^x must be a numpy"),
    ({"boxes": ROIS[:, 1:]}, ValueError, r"^boxes must be a \(K, 5\) array"),
    ({"boxes": ROIS[0]}, ValueError, r"^boxes must be a \(K, 5\) array"),
    ({"boxes": ROIS.astype(np.int64)}, TypeError, r"^boxes must have the same floating dtype "
                                                  r"as x \(float64\), as torchvision requires"),
    ({"boxes": ROIS.astype(np.float32)}, TypeError, r"^boxes must have the same floating dtype"),
    ({"boxes": ROIS[:2].tolist()}, TypeError, r"^boxes\[0\] must be a numpy"),
    ({"boxes": None}, TypeError, r"^boxes must be a numpy"),
    ({"boxes": [ROIS]}, ValueError, r"^boxes\[0\] must be a \(K_i, 4\) array"),
    ({"boxes": [ROIS[:, 1:], ROIS[:, 1:].astype(np.float32)]}, TypeError,
     r"^boxes\[1\] must have the same floating dtype"),
    ({"boxes": [ROIS[:, 1:]] * 3}, ValueError, r"^boxes is a list of 3 arrays .* 2 images"),
    ({"boxes": np.array([[2, 0, 0, 1, 1.0]])}, ValueError, r"^boxes: the batch index .* \[0, 2\)"),
    ({"boxes": np.array([[-1, 0, 0, 1, 1.0]])}, ValueError, r"^boxes: the batch index"),
    ({"boxes": np.array([[-0.5, 0, 0, 1, 1.0]])}, ValueError, r"^boxes: the batch index .* \[0, N\)"),
    ({"boxes": np.array([[0, 0, np.nan, 1, 1.0]])}, ValueError, r"^boxes must be finite"),
    ({"boxes": np.array([[0, 0, 0, np.inf, 1.0]])}, ValueError, r"^boxes must be finite"),
    ({"boxes": np.array([[0, 0, 0, 1, 2.0 ** 24 + 2]])}, ValueError,
     r"^boxes: coordinates \* spatial_scale must lie within"),
    ({"boxes": np.array([[0, -1e30, 0, 1, 1.0]]), "spatial_scale": 1e-20}, ValueError,
     r"^boxes: coordinates \* spatial_scale must lie within"),
    ({"output_size": 0}, ValueError, r"^output_size must be >= 1"),
    ({"output_size": (2, 0)}, ValueError, r"^output_size\[1\] must be >= 1"),
    ({"output_size": (2, 2, 2)}, ValueError, r"^output_size must be an int or a pair"),
    ({"output_size": 2.0}, TypeError, r"^output_size must be an int or a pair"),
    ({"output_size": True}, TypeError, r"^output_size must be an int or a pair"),
    ({"spatial_scale": 0.0}, ValueError, r"^spatial_scale must be > 0"),
    ({"spatial_scale": -0.5}, ValueError, r"^spatial_scale must be > 0"),
    ({"spatial_scale": float("nan")}, ValueError, r"^spatial_scale must be finite"),
    ({"spatial_scale": "1"}, TypeError, r"^spatial_scale must be a real number"),
    ({"data_format": "NWHC"}, ValueError, r"^data_format must be one of"),
]
BAD_ALIGN_ONLY = [
    ({"sampling_ratio": 1.5}, TypeError, r"^sampling_ratio must be an int"),
    ({"sampling_ratio": True}, TypeError, r"^sampling_ratio must be an int"),
    ({"aligned": "yes"}, TypeError, r"^aligned must be a bool"),
    ({"aligned": 2}, TypeError, r"^aligned must be a bool"),
]


def call_with(name, x, change, grad=False):
    args = {"x": x, "boxes": ROIS, "output_size": 2, **change}
    x_, boxes, output_size = args.pop("x"), args.pop("boxes"), args.pop("output_size")
    if grad:
        g = np.zeros((3, 3, 2, 2))
        return backward(name, g, x_, boxes, output_size, **args)
    return forward(name, x_, boxes, output_size, **args)


@BOTH
@pytest.mark.parametrize("grad", [False, True], ids=["forward", "grad"])
@pytest.mark.parametrize("change, error, match", BAD_FORWARD)
def test_invalid_arguments_name_the_argument(x, name, grad, change, error, match):
    with pytest.raises(error, match=match):
        call_with(name, x, change, grad)


@pytest.mark.parametrize("grad", [False, True], ids=["forward", "grad"])
@pytest.mark.parametrize("change, error, match", BAD_ALIGN_ONLY)
def test_invalid_roi_align_options(x, grad, change, error, match):
    with pytest.raises(error, match=match):
        call_with("roi_align", x, change, grad)


@BOTH
def test_invalid_grad_output(x, name):
    with pytest.raises(ValueError, match=r"^grad_output must have the output's shape "
                                         r"\(K, C, PH, PW\) = \(3, 3, 2, 2\)"):
        backward(name, np.zeros((3, 3, 2, 3)), x, ROIS)
    with pytest.raises(ValueError, match=r"^grad_output must be 4-D"):
        backward(name, np.zeros((3, 3, 4)), x, ROIS)
    with pytest.raises(TypeError, match=r"^grad_output has dtype float32 but x has dtype"):
        backward(name, np.zeros((3, 3, 2, 2), dtype=np.float32), x, ROIS)
    with pytest.raises(TypeError, match=r"^deterministic must be a bool"):
        backward(name, np.zeros((3, 3, 2, 2)), x, ROIS, deterministic="yes")
    with pytest.raises(ValueError, match=r"^grad_output must have the output's shape "
                                         r"\(K, PH, PW, C\)"):
        backward(name, np.zeros((3, 3, 2, 2)), x.transpose(0, 2, 3, 1), ROIS,
                 data_format="NHWC")


def test_float16_list_position_beyond_exact_integers_is_refused():
    x = np.zeros((2050, 1, 2, 2), dtype=np.float16)
    boxes = [np.zeros((0, 4), dtype=np.float16)] * 2049 + [np.ones((1, 4), dtype=np.float16)]
    with pytest.raises(ValueError, match=r"^boxes: image index 2049 is not representable"):
        gpuconv.roi_pool(x, boxes, 1)


# ------------------------------------------------------------------- forms, layouts, dtypes

@BOTH
def test_list_of_boxes_equals_k5_form(x, name):
    first, second = ROIS[ROIS[:, 0] == 0, 1:], ROIS[ROIS[:, 0] == 1, 1:]
    want = forward(name, x, ROIS, (2, 3))
    np.testing.assert_array_equal(forward(name, x, [first, second], (2, 3)), want)
    np.testing.assert_array_equal(forward(name, x, (first, second), (2, 3)), want)
    g = np.random.default_rng(0).standard_normal(want.shape)
    np.testing.assert_array_equal(backward(name, g, x, [first, second], (2, 3)),
                                  backward(name, g, x, ROIS, (2, 3)))
    # an image without boxes, and a list shorter than the batch (torchvision accepts both)
    only_second = forward(name, x, [np.zeros((0, 4)), second], (2, 3))
    np.testing.assert_array_equal(only_second, want[ROIS[:, 0] == 1])
    np.testing.assert_array_equal(forward(name, x, [first], (2, 3)), want[ROIS[:, 0] == 0])


@BOTH
def test_nhwc_equals_nchw_transposed(x, name):
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    want = forward(name, x, ROIS, (3, 2), spatial_scale=0.75)
    got = forward(name, nhwc, ROIS, (3, 2), spatial_scale=0.75, data_format="NHWC")
    np.testing.assert_array_equal(got, want.transpose(0, 2, 3, 1))
    g = np.random.default_rng(1).standard_normal(want.shape)
    grad = backward(name, g.transpose(0, 2, 3, 1), nhwc, ROIS, (3, 2), spatial_scale=0.75,
                    data_format="NHWC")
    np.testing.assert_allclose(grad, backward(name, g, x, ROIS, (3, 2), spatial_scale=0.75)
                               .transpose(0, 2, 3, 1), rtol=1e-14, atol=1e-14)
    assert grad.shape == nhwc.shape


@BOTH
def test_non_contiguous_inputs(x, name):
    wide = np.zeros((2, 3, 6, 14))
    wide[..., ::2] = x
    boxes = np.zeros((3, 10))
    boxes[:, ::2] = ROIS
    np.testing.assert_array_equal(forward(name, wide[..., ::2], boxes[:, ::2]),
                                  forward(name, x, ROIS))


@BOTH
@pytest.mark.parametrize("dtype, tol", [(np.float16, 2e-3), (np.float32, 1e-6),
                                        (np.float64, 0.0)])
def test_dtypes(rng, name, dtype, tol):
    x = rng.standard_normal((2, 3, 6, 7)).astype(dtype)
    rois = ROIS.astype(dtype)
    out = forward(name, x, rois, 3)
    assert out.dtype == dtype and out.shape == (3, 3, 3, 3)
    # float16 geometry is computed in float32, so the float32 result on the same values is the
    # float16 result before its final rounding
    wide = np.float32 if dtype == np.float16 else dtype
    np.testing.assert_allclose(out.astype(np.float64),
                               forward(name, x.astype(wide), rois.astype(wide), 3),
                               rtol=tol, atol=tol)
    g = rng.standard_normal(out.shape).astype(dtype)
    grad = backward(name, g, x, rois, 3)
    assert grad.dtype == dtype and grad.shape == x.shape
    np.testing.assert_allclose(grad.astype(np.float64),
                               backward(name, g.astype(wide), x.astype(wide), rois.astype(wide),
                                        3), rtol=tol, atol=tol)


@BOTH
def test_bfloat16(rng, name):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = rng.standard_normal((2, 3, 6, 7)).astype(ml_dtypes.bfloat16)
    out = forward(name, x, ROIS.astype(ml_dtypes.bfloat16), 2)
    assert out.dtype == ml_dtypes.bfloat16
    np.testing.assert_allclose(out.astype(np.float64),
                               forward(name, x.astype(np.float32), ROIS.astype(np.float32), 2),
                               rtol=1e-2, atol=1e-2)


# --------------------------------------------------------------------------- empty cases

@BOTH
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_empty_batch_and_no_boxes(name, data_format):
    nhwc = data_format == "NHWC"
    x0 = np.zeros((0, 6, 7, 3) if nhwc else (0, 3, 6, 7), dtype=np.float32)
    out = forward(name, x0, np.zeros((0, 5), dtype=np.float32), (2, 4), data_format=data_format)
    assert out.shape == ((0, 2, 4, 3) if nhwc else (0, 3, 2, 4)) and out.dtype == np.float32
    x = np.ones((2, 6, 7, 3) if nhwc else (2, 3, 6, 7))
    for no_boxes in (np.zeros((0, 5)), [], [np.zeros((0, 4)), np.zeros((0, 4))]):
        out = forward(name, x, no_boxes, (2, 4), data_format=data_format)
        assert out.shape == ((0, 2, 4, 3) if nhwc else (0, 3, 2, 4))
        grad = backward(name, out, x, no_boxes, (2, 4), data_format=data_format)
        assert grad.shape == x.shape and not grad.any()


@BOTH
def test_no_channels_or_no_pixels(name):
    out = forward(name, np.zeros((2, 0, 5, 5)), ROIS, 2)
    assert out.shape == (3, 0, 2, 2)
    out = forward(name, np.ones((2, 3, 0, 5)), ROIS, 2)
    assert out.shape == (3, 3, 2, 2) and not out.any()   # every sample is outside the image


def test_sampling_ratio_at_most_zero_is_adaptive(x):
    adaptive = gpuconv.roi_align(x, ROIS, 3, sampling_ratio=-1)
    for ratio in (0, -2, -100):
        np.testing.assert_array_equal(gpuconv.roi_align(x, ROIS, 3, sampling_ratio=ratio),
                                      adaptive)
    assert not np.array_equal(gpuconv.roi_align(x, ROIS, 3, sampling_ratio=1), adaptive)


def test_inputs_are_not_modified(x):
    boxes, x_copy = ROIS.copy(), x.copy()
    gpuconv.roi_align(x, boxes, 2)
    gpuconv.grad.roi_pool(np.ones((3, 3, 2, 2)), x, boxes, 2)
    np.testing.assert_array_equal(boxes, ROIS)
    np.testing.assert_array_equal(x, x_copy)


# --------------------------------------------------------------------- launcher hand-off

@pytest.fixture
def fake_launch(monkeypatch):
    """Routes NumPy calls to a recording stand-in for gpuconv.roi.launch."""
    calls = []
    module = types.ModuleType("gpuconv.roi.launch")
    for fn in ("roi_align", "roi_pool", "grad_roi_align", "grad_roi_pool"):
        def record(*args, _fn=fn, **kwargs):
            calls.append((_fn, args, kwargs))
            return "from launch"
        setattr(module, fn, record)
    monkeypatch.setitem(sys.modules, "gpuconv.roi.launch", module)
    monkeypatch.setattr(gpuconv.roi, "launch", module, raising=False)
    monkeypatch.setattr(_state, "executor_for", lambda library: "simulator")
    return calls


def test_fronts_hand_the_normalized_call_to_the_launcher(x, fake_launch):
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    boxes = [ROIS[:1, 1:], ROIS[1:, 1:]]
    g = np.zeros((3, 2, 2, 3))
    assert gpuconv.roi_align(nhwc, boxes, 2, 0.5, 2, True, data_format="NHWC") == "from launch"
    gpuconv.roi_pool(nhwc, boxes, 2, data_format="NHWC")
    gpuconv.grad.roi_align(g, nhwc, boxes, 2, data_format="NHWC", deterministic=True)
    _state.set_deterministic(True)
    try:
        gpuconv.grad.roi_pool(g, nhwc, boxes, 2, data_format="NHWC")
    finally:
        _state.set_deterministic(False)
    assert [c[0] for c in fake_launch] == ["roi_align", "roi_pool", "grad_roi_align",
                                          "grad_roi_pool"]
    (_, align_args, align_kw), (_, pool_args, _), (_, ga_args, ga_kw), (_, gp_args, gp_kw) = \
        fake_launch
    geom, x_arg, rois = align_args
    assert geom == RoiGeometry(2, 3, 6, 7, 3, 2, 2, 0.5, 2, True)
    assert x_arg is nhwc
    np.testing.assert_array_equal(rois, ROIS)
    assert align_kw == {"data_format": "NHWC", "executor": "simulator"}
    assert pool_args[0] == RoiGeometry(2, 3, 6, 7, 3, 2, 2, 1.0, 0, False)
    assert ga_args[1] is g and len(ga_args) == 3
    assert ga_kw == {"data_format": "NHWC", "deterministic": True, "executor": "simulator"}
    assert gp_args[1] is g and gp_args[2] is nhwc and gp_kw["deterministic"] is True


def test_empty_calls_never_reach_the_launcher(x, fake_launch):
    assert gpuconv.roi_align(x, np.zeros((0, 5)), 2).shape == (0, 3, 2, 2)
    assert gpuconv.grad.roi_pool(np.zeros((0, 3, 2, 2)), x, [], 2).shape == x.shape
    assert fake_launch == []


# ------------------------------------------------------------------------- torchvision

@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
def test_against_torchvision_when_installed(rng, aligned, sampling_ratio):
    torch = pytest.importorskip("torch")
    ops = pytest.importorskip("torchvision.ops")
    x = rng.standard_normal((2, 3, 9, 11))
    rois = np.concatenate([rng.integers(0, 2, (6, 1)), rng.uniform(-3, 14, (6, 4))], axis=1)
    tx = torch.tensor(x, requires_grad=True)
    want = ops.roi_align(tx, torch.tensor(rois), (3, 4), 0.5, sampling_ratio, aligned)
    got = gpuconv.roi_align(x, rois, (3, 4), 0.5, sampling_ratio, aligned)
    np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-10, atol=1e-12)
    g = rng.standard_normal(got.shape)
    want.backward(torch.tensor(g))
    np.testing.assert_allclose(gpuconv.grad.roi_align(g, x, rois, (3, 4), 0.5, sampling_ratio,
                                                      aligned), tx.grad.numpy(),
                               rtol=1e-10, atol=1e-12)
    tx.grad = None
    want = ops.roi_pool(tx, torch.tensor(rois), (3, 4), 0.5)
    np.testing.assert_array_equal(gpuconv.roi_pool(x, rois, (3, 4), 0.5),
                                  want.detach().numpy())
    want.backward(torch.tensor(g))
    np.testing.assert_allclose(gpuconv.grad.roi_pool(g, x, rois, (3, 4), 0.5), tx.grad.numpy(),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.gpu
def test_cupy_boxes_are_normalized_on_the_device():
    import cupy
    x = cupy.zeros((2, 3, 6, 7))
    call = check_roi_arguments(x, [cupy.asarray(ROIS[:1, 1:]), cupy.asarray(ROIS[1:, 1:])], 2)
    assert isinstance(call.rois, cupy.ndarray) and call.rois.flags.c_contiguous
    np.testing.assert_array_equal(call.rois.get(), ROIS)
    with pytest.raises(TypeError, match=r"^boxes is a numpy array but x is a cupy array"):
        check_roi_arguments(x, ROIS, 2)
    with pytest.raises(ValueError, match=r"^boxes: the batch index"):
        check_roi_arguments(x, cupy.asarray(ROIS + [[2, 0, 0, 0, 0]]), 2)
    # Checked on the device (roi/launch_check.py): the first bad row, described as the NumPy
    # rules describe it, in float64 and float32.
    bad = np.concatenate([ROIS, [[0, 1, 2, 3, np.inf], [5, 0, 0, 0, 0]]])
    for dtype in (cupy.float64, cupy.float32):
        with pytest.raises(ValueError, match=rf"^boxes must be finite; row {len(ROIS)} "):
            check_roi_arguments(x.astype(dtype), cupy.asarray(bad, dtype=dtype), 2)
