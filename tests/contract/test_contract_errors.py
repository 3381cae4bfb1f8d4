"""api.md: "Every invalid argument is a ValueError or TypeError whose message names the argument
and the rule it broke. Nothing invalid reaches a kernel."

Each public function is called with one valid call (keywords) in which a single argument is
replaced by an invalid value. The call must raise ValueError or TypeError (any other exception
-- AttributeError, IndexError, ZeroDivisionError, a NumPy error -- fails the test) and the
message must name the argument (or, where the rule ties two arguments, one of them).
"""
import numpy as np
import pytest

import gpuconv
from gpuconv import grad

F32 = np.float32


def z(*shape, dtype=F32):
    return np.zeros(shape, dtype)


X = np.random.default_rng(0).standard_normal((2, 3, 7, 8)).astype(F32)   # (N, C, H, W)

# Invalid values shared by every argument of one kind.
BAD_INT = [0, -1, 1.5, "2", True, None]                     # an int >= 1
BAD_PAIR = BAD_INT[:-1] + [(2,), (2, 2, 2), (2, 0), (2, None), (), 2.0, np.float64(2), {}]
BAD_BOOL = [None, "yes", 2, 1.5]
BAD_FLAG = BAD_BOOL + [0, 1]    # the flags torch hands to ATen as bool refuse ints
BAD_FORMAT = ["nchw", "NCWH", None, 0, "NHCW"]


def bad_x(shape_ok=(2, 3, 7, 8), channels=True):
    n, c, h, w = shape_ok
    return [None, X.tolist(), 3.0, z(c, h, w), z(1, n, c, h, w), X.astype(np.int32),
            X.astype(np.complex64)] + ([z(n, 0, h, w)] if channels else [])


def bad_float(shape, dtype_mismatch=True, required=True):
    """Invalid values for a floating array argument of the given valid shape."""
    values = [None] * required + [z(*shape).tolist(), z(*shape, dtype=np.int64), z(*shape, dtype=np.complex64),
              z(*shape, dtype=np.bool_), z(*shape[:-1]), z(*shape, 1)]
    if dtype_mismatch:
        values += [z(*shape, dtype=np.float64), z(*shape, dtype=np.float16)]
    return values


def bad_indices(shape, plane, required=True):
    good = np.zeros(shape, np.int64)
    return [None] * required + [good.tolist(), good.astype(F32), good.astype(np.bool_), good[..., :-1],
            good + plane, good - 2, good[None]]


CASES = []   # (function name, valid keyword arguments, argument, invalid value, message regex)


def cases(name, valid, bad_by_argument, match=None):
    for argument, values in bad_by_argument.items():
        for value in values:
            CASES.append((name, valid, argument, value, (match or {}).get(argument, argument)))


# --------------------------------------------------------------------------------- convolution
CONV = dict(x=X, weight=z(4, 3, 3, 3), bias=z(4), stride=1, padding=1, dilation=1, groups=1)
cases("conv2d", CONV, {
    "x": bad_x(),
    "weight": bad_float((4, 3, 3, 3)) + [z(4, 2, 3, 3), z(0, 3, 3, 3), z(4, 3, 0, 3), z(4, 3, 12, 3)],
    "bias": [z(5), z(1, 4), z(4).tolist(), z(4, dtype=np.float64), F32(1), z(4, dtype=np.int32)],
    "stride": BAD_PAIR,
    "padding": [-1, (1, -1), ((1, 2), (0, -1)), ((1, 2), 3), "full", "SAME", "", None, 1.5, True,
                ((1, 2), (3, 4), (5, 6)), ((1,), (1, 1)), np.array([1, 1])],
    "dilation": BAD_PAIR,
    "groups": [0, -1, 2, 1.5, True, None, "1", (1, 1)],
    "activation": ["gelu", "ReLU", "", 1, True],
    "residual": bad_float((2, 4, 7, 8), required=False) + [z(2, 7, 8, 4)],
    "algorithm": ["winograd", "", None, 3, "AUTO"],
    "data_format": BAD_FORMAT,
    "out": [z(2, 4, 7, 9), z(2, 4, 7, 8, dtype=np.float64), z(2, 4, 7, 8).tolist(),
            z(8, 7, 4, 2).T, z(2, 4, 7, 16)[..., ::2], X],
}, match={"x": "x|kernel|weight", "weight": "weight|x", "groups": "groups"})

CONV_T = dict(x=X, weight=z(3, 2, 3, 3), bias=z(2), stride=2, padding=1, output_padding=1,
              groups=1, dilation=1)
cases("conv_transpose2d", CONV_T, {
    "x": bad_x(),
    "weight": bad_float((3, 2, 3, 3)) + [z(4, 2, 3, 3), z(3, 0, 3, 3)],
    "bias": [z(3), z(1, 2), z(2).tolist(), z(2, dtype=np.float64)],
    "stride": BAD_PAIR,
    "padding": [-1, (1, -1), "same", "valid", ((1, 1), (1, 1)), 1.5, None, True, 9],
    "output_padding": [-1, 2, (1, 2), 1.5, None, True, (1, 1, 1)],
    "groups": [0, 2, 1.5, True, None],
    "dilation": BAD_PAIR,
    "output_size": [(20, 20), (13, 13), (2, 14, 16), 16, "16", (14.0, 16), (14, None)],
}, match={"weight": "weight|x", "groups": "groups"})

CONV_IN = dict(input_shape=(2, 3, 7, 8), weight=z(4, 3, 3, 3), grad_output=z(2, 4, 7, 8),
               stride=1, padding=1, dilation=1, groups=1)
cases("grad.conv2d_input", CONV_IN, {
    "input_shape": [None, (2, 3, 7), (2, 3, 7, 8.0), (2, 3, 7, -8), (2, 0, 7, 8), (2, 3, 9, 8),
                    np.zeros((2, 4), int), "2378", 4],
    "weight": bad_float((4, 3, 3, 3)) + [z(4, 2, 3, 3)],
    "grad_output": bad_float((2, 4, 7, 8)) + [z(2, 4, 7, 9)],
    "stride": BAD_PAIR, "padding": [-1, "full", None], "dilation": [0, None],
    "groups": [0, 2, None], "deterministic": ["yes", 1], "algorithm": ["winograd", None],
    "data_format": BAD_FORMAT,
}, match={"input_shape": "input_shape|grad_output", "weight": "weight|input_shape|grad_output",
          "groups": "groups"})

CONV_W = dict(x=X, weight_shape=(4, 3, 3, 3), grad_output=z(2, 4, 7, 8), stride=1, padding=1,
              dilation=1, groups=1)
cases("grad.conv2d_weight", CONV_W, {
    "x": bad_x(),
    "weight_shape": [None, (4, 3, 3), (4, 3, 3, 3.0), (0, 3, 3, 3), (4, 2, 3, 3), (4, 3, 4, 3), "4333"],
    "grad_output": bad_float((2, 4, 7, 8)) + [z(2, 5, 7, 8)],
    "stride": [0, 1.5], "padding": [-1, "same "], "groups": [0, 3, True],
    "deterministic": ["no"], "algorithm": ["fft"], "data_format": BAD_FORMAT,
}, match={"x": "x|weight_shape", "weight_shape": "weight_shape|grad_output|x", "groups": "groups"})

cases("grad.conv2d_bias", dict(grad_output=z(2, 4, 7, 8)), {
    "grad_output": [None, z(2, 4, 7, 8).tolist(), z(2, 4, 7, 8, dtype=np.int32), z(4, 7, 8),
                    z(2, 4, 7, 8, dtype=np.complex64)],
    "deterministic": ["yes", 0], "data_format": BAD_FORMAT,
})

# ----------------------------------------------------------------------------------- pooling
# An empty stride means kernel_size for the sliding-window pools, and a one-element sequence
# stands for both axes of their window arguments, as in torch.nn.functional.
POOL_PAIR = [v for v in BAD_PAIR if not (isinstance(v, tuple) and len(v) == 1)]
POOL_STRIDES = [v for v in POOL_PAIR[:-1] if not (isinstance(v, tuple) and len(v) == 0)]
POOL_ARGS = {"kernel_size": POOL_PAIR, "stride": POOL_STRIDES,
             "padding": [-1, 2, (0, 2), 1.0, "same", None, True]}
MAX = dict(x=X, kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=False, return_indices=False)
cases("max_pool2d", MAX, {
    "x": bad_x(), **POOL_ARGS, "dilation": POOL_PAIR,
    "ceil_mode": BAD_FLAG, "return_indices": BAD_BOOL, "data_format": BAD_FORMAT,
}, match={"x": "x|kernel_size", "padding": "padding"})
AVG = dict(x=X, kernel_size=3, stride=2, padding=1, ceil_mode=False, count_include_pad=True,
           divisor_override=None)
cases("avg_pool2d", AVG, {
    "x": bad_x(), **POOL_ARGS, "ceil_mode": BAD_FLAG, "count_include_pad": BAD_FLAG,
    "divisor_override": [0, 1.5, "2", True, (2,)], "data_format": BAD_FORMAT,
}, match={"x": "x|kernel_size"})
LP = dict(x=X, norm_type=2, kernel_size=2, stride=None, ceil_mode=False)
cases("lp_pool2d", LP, {
    "x": bad_x(), "norm_type": [0, 0.0, "2", None, True, float("nan"), (2,)],
    "kernel_size": POOL_PAIR, "stride": POOL_STRIDES, "ceil_mode": BAD_FLAG, "data_format": BAD_FORMAT,
})
BAD_OUTPUT_SIZE = [-1, (-2, 2), (2,), 1.5, None, "2", True, (2, 2, 2), (2, 1.5), (-1, None)]
# C == 0 is an empty output of the average poolings, as torch's adaptive_avg_pool2d
# (test_contract_audit12_pool.py)
cases("adaptive_avg_pool2d", dict(x=X, output_size=(3, 5)), {
    "x": bad_x(channels=False), "output_size": BAD_OUTPUT_SIZE, "data_format": BAD_FORMAT})
cases("adaptive_max_pool2d", dict(x=X, output_size=(3, 5), return_indices=True), {
    "x": bad_x(), "output_size": BAD_OUTPUT_SIZE, "return_indices": BAD_BOOL, "data_format": BAD_FORMAT})
cases("global_avg_pool2d", dict(x=X), {"x": bad_x(channels=False), "data_format": BAD_FORMAT})
cases("global_max_pool2d", dict(x=X), {"x": bad_x(), "data_format": BAD_FORMAT})
cases("spatial_pyramid_pool2d", dict(x=X, levels=(1, 2, 4), mode="max"), {
    "x": bad_x(), "levels": [(), (0,), (1.5,), 2, None, "124", (True,), (1, -2), [[1]]],
    "mode": ["MAX", None, "sum", 1, ""], "data_format": BAD_FORMAT})
V = X[:, :, :3, :4].copy()
UNPOOL = dict(x=V, indices=np.zeros((2, 3, 3, 4), np.int64), kernel_size=2, stride=None, padding=0,
              output_size=None)
cases("max_unpool2d", UNPOOL, {
    "x": bad_x((2, 3, 3, 4)), "indices": bad_indices((2, 3, 3, 4), 48),
    "kernel_size": BAD_PAIR, "stride": BAD_PAIR[:-1], "padding": [-1, 1.5, None, "same"],
    "output_size": [(10, 10), (4, 8), (3, 7, 8), (7.0, 8), "78", 7],
    "data_format": BAD_FORMAT,
}, match={"x": "x|indices"})

# ------------------------------------------------------------------------- pooling gradients
GO_MAX = z(2, 3, 4, 4)
cases("grad.max_pool2d", dict(MAX, grad_output=GO_MAX), {
    "grad_output": bad_float((2, 3, 4, 4)), "x": bad_x(), "kernel_size": [0, 1.5], "ceil_mode": [None],
    "indices": bad_indices((2, 3, 4, 4), 56, required=False), "deterministic": ["yes", 1], "data_format": BAD_FORMAT,
}, match={"x": "x|grad_output|kernel_size", "grad_output": "grad_output|x"})
cases("grad.avg_pool2d", dict(AVG, grad_output=GO_MAX), {
    "grad_output": bad_float((2, 3, 4, 4)), "x": bad_x(), "divisor_override": [0, 1.5],
    "deterministic": ["yes"], "data_format": BAD_FORMAT,
}, match={"x": "x|grad_output|kernel_size", "grad_output": "grad_output|x"})
cases("grad.lp_pool2d", dict(LP, grad_output=z(2, 3, 3, 4)), {
    "grad_output": bad_float((2, 3, 3, 4)), "x": bad_x(), "norm_type": [0, None, float("nan")],
    "deterministic": ["yes"],
}, match={"x": "x|grad_output", "grad_output": "grad_output|x"})
cases("grad.adaptive_avg_pool2d", dict(x=X, output_size=(3, 5), grad_output=z(2, 3, 3, 5)), {
    "grad_output": bad_float((2, 3, 3, 5)), "x": bad_x(), "output_size": [-1, None], "deterministic": [2],
}, match={"x": "x|grad_output", "grad_output": "grad_output|x"})
cases("grad.adaptive_max_pool2d", dict(x=X, output_size=(3, 5), grad_output=z(2, 3, 3, 5)), {
    "grad_output": bad_float((2, 3, 3, 5)), "x": bad_x(), "output_size": [(-1, 1)],
    "indices": bad_indices((2, 3, 3, 5), 56, required=False), "deterministic": ["yes"],
}, match={"x": "x|grad_output", "grad_output": "grad_output|x"})
cases("grad.global_avg_pool2d", dict(x=X, grad_output=z(2, 3, 1, 1)), {
    "grad_output": bad_float((2, 3, 1, 1)), "x": bad_x(), "deterministic": ["yes"],
}, match={"x": "x|grad_output", "grad_output": "grad_output|x"})
cases("grad.global_max_pool2d", dict(x=X, grad_output=z(2, 3, 1, 1)), {
    "grad_output": bad_float((2, 3, 1, 1)), "x": bad_x(), "indices": bad_indices((2, 3, 1, 1), 56, required=False),
    "deterministic": ["yes"],
}, match={"x": "x|grad_output", "grad_output": "grad_output|x"})
cases("grad.spatial_pyramid_pool2d", dict(x=X, grad_output=z(2, 63), levels=(1, 2, 4), mode="max"), {
    "grad_output": [None, z(2, 63).tolist(), z(2, 63, dtype=np.int64), z(2, 63, dtype=np.float64),
                    z(2, 62), z(2, 63, 1, 1)],
    "x": bad_x(), "levels": [(), 2], "mode": ["min"], "deterministic": ["yes"],
}, match={"x": "x|grad_output", "grad_output": "grad_output|x"})
cases("grad.max_unpool2d", dict(UNPOOL, grad_output=z(2, 3, 6, 8)), {
    "grad_output": bad_float((2, 3, 6, 8)), "x": bad_x((2, 3, 3, 4)),
    "indices": bad_indices((2, 3, 3, 4), 48), "output_size": [(10, 10)], "deterministic": ["yes"],
}, match={"x": "x|grad_output|indices", "grad_output": "grad_output|x"})

# ---------------------------------------------------------------------- regions of interest
BOXES = np.array([[0, 1, 1, 5, 5], [1, 0, 0, 3, 4]], F32)
BAD_BOXES = [None, BOXES.tolist(), BOXES[:, 1:], np.zeros((2, 6), F32), BOXES[0], BOXES[None],
             BOXES.astype(np.float64), BOXES.astype(np.int64), np.array([[2, 1, 1, 5, 5]], F32),
             np.array([[-1, 1, 1, 5, 5]], F32), np.array([[-0.5, 1, 1, 5, 5]], F32),
             np.array([[0, np.nan, 1, 5, 5]], F32), np.array([[0, 1, 1, np.inf, 5]], F32),
             [BOXES[:1, 1:]] * 3, [[1, 1, 5, 5]], [BOXES], [BOXES[0, 1:]], [BOXES[:, 1:].astype(np.float64)]]
ROI_COMMON = {"x": bad_x(channels=False),   # C == 0 is an empty output, as in torchvision
               "boxes": BAD_BOXES, "output_size": [0, (2,), 2.0, None, (2, 0), "2", True],
              "spatial_scale": [0.0, -1.0, "1", None, float("nan"), float("inf"), True],
              "data_format": BAD_FORMAT}
ALIGN = dict(x=X, boxes=BOXES, output_size=2, spatial_scale=1.0, sampling_ratio=-1, aligned=False)
cases("roi_align", ALIGN, {**ROI_COMMON, "sampling_ratio": [1.5, True, None, "2"], "aligned": BAD_BOOL},
      match={"x": "x|boxes"})
cases("roi_pool", dict(x=X, boxes=BOXES, output_size=2, spatial_scale=1.0), ROI_COMMON,
      match={"x": "x|boxes"})
cases("grad.roi_align", dict(ALIGN, grad_output=z(2, 3, 2, 2)), {
    **ROI_COMMON, "grad_output": bad_float((2, 3, 2, 2)), "deterministic": ["yes"]},
    match={"x": "x|boxes|grad_output", "grad_output": "grad_output|x"})
cases("grad.roi_pool", dict(x=X, boxes=BOXES, output_size=2, spatial_scale=1.0, grad_output=z(2, 3, 2, 2)), {
    **ROI_COMMON, "grad_output": bad_float((2, 3, 2, 2)), "deterministic": ["yes"]},
    match={"x": "x|boxes|grad_output", "grad_output": "grad_output|x"})


# ------------------------------------------------------------------------------------- runner

def function_of(name):
    module, _, attribute = name.rpartition(".")
    return getattr(grad if module == "grad" else gpuconv, attribute)


def params():
    for name, valid, argument, value, match in CASES:
        marks = []
        label = f"{name}-{argument}={type(value).__name__}:{str(getattr(value, 'shape', value))[:24]}"
        yield pytest.param(name, valid, argument, value, match, marks=marks, id=label)


@pytest.mark.parametrize("name, valid, argument, value, match", list(params()))
def test_invalid_argument_is_a_value_or_type_error_naming_it(name, valid, argument, value, match):
    function = function_of(name)
    function(**valid)      # the valid call works
    with pytest.raises((ValueError, TypeError)) as error:
        function(**dict(valid, **{argument: value}))
    assert error.type in (ValueError, TypeError)
    assert _names(str(error.value), match), f"message does not name {match!r}: {error.value}"


def _names(message: str, match: str) -> bool:
    import re
    return re.search(rf"\b({match})\b", message) is not None


@pytest.mark.parametrize("name", sorted({c[0] for c in CASES}))
def test_missing_required_arguments_are_type_errors(name):
    with pytest.raises(TypeError):
        function_of(name)()
