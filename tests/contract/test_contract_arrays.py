"""api.md, "Arrays, devices, execution", checked on one valid call of every public function and
gradient (contract_support.all_cases):

- numpy.ndarray in -> numpy.ndarray out, of the documented shape;
- float16/float32/float64 (and bfloat16 via ml_dtypes) in -> the same dtype out; float16
  accumulates in (at least) float32;
- integer/complex dtypes and different dtypes are a TypeError naming the argument; so are mixed
  NumPy/CuPy arguments and torch tensors;
- non-contiguous inputs are accepted; N == 0 gives an empty output of the right shape;
- (a demanding user's expectations) inputs are never modified and results never alias them.
"""
import sys
import types
import warnings

import numpy as np
import pytest

import gpuconv
from gpuconv import grad
from contract_support import (BFLOAT16, CASE_NAMES, case_named, results,
                              strided_copy, torch)

FLOAT_DTYPES = [np.float16, np.float32, np.float64] + ([BFLOAT16] if BFLOAT16 is not None else [])
# The reference rounds a float64 result once: half an ulp of the output dtype, plus slack for the
# float32 accumulation api.md allows for float16.
TOLERANCE = {"float16": 2e-3, "bfloat16": 1.6e-2, "float32": 2e-6, "float64": 1e-12}


def as_float64(arrays: dict) -> dict:
    return {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()}


@pytest.mark.parametrize("name", CASE_NAMES)
def test_numpy_in_numpy_out_with_documented_shapes(name):
    case = case_named(name)
    out = results(case.run())
    assert len(out) == len(case.shapes)
    for array, shape in zip(out, case.shapes):
        assert type(array) is np.ndarray
        assert array.shape == shape


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", CASE_NAMES)
def test_output_dtype_is_input_dtype(name, dtype):
    case = case_named(name, dtype)
    out = results(case.run())
    # The same values, exactly representable in float64: only the output rounding may differ.
    expected = results(case.run(as_float64(case.floats)))
    tol = TOLERANCE[np.dtype(dtype).name]
    for got, want in zip(out, expected):
        if want.dtype.kind in "iu":          # pooling indices: int64, as in PyTorch
            assert got.dtype == np.int64
            np.testing.assert_array_equal(got, want)
            continue
        assert got.dtype == np.dtype(dtype)
        scale = max(1.0, float(np.max(np.abs(want), initial=0)))
        np.testing.assert_allclose(got.astype(np.float64), want, rtol=tol, atol=tol * scale)


def test_float16_accumulates_in_float32():
    # 1 + 2**-10 is exact in float16. Summed 4096 times in float16, every addition past 2048
    # would round away the 2**-10 (and more); in float32 the sum is exactly 4100.
    value = np.float16(1 + 2 ** -10)
    x = np.full((1, 4096, 1, 1), value, np.float16)
    w = np.ones((1, 4096, 1, 1), np.float16)
    assert gpuconv.conv2d(x, w).item() == 4100.0
    g = np.full((1, 1, 64, 64), value, np.float16)
    assert grad.conv2d_bias(g).item() == 4100.0
    assert gpuconv.global_avg_pool2d(g).item() == value


# Only float16/32/64 and bfloat16: extended precision and the 8-bit floats of ml_dtypes too are
# outside the contract.
OTHER_FLOATS = [np.longdouble] if np.dtype(np.longdouble).itemsize > 8 else []
if BFLOAT16 is not None:
    import ml_dtypes
    OTHER_FLOATS.append(ml_dtypes.float8_e4m3fn)


@pytest.mark.parametrize("bad_dtype", [np.int32, np.int64, np.uint8, np.complex64, np.bool_, np.object_,
                                       *OTHER_FLOATS], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", CASE_NAMES)
def test_integer_complex_and_bool_arrays_are_type_errors(name, bad_dtype):
    case = case_named(name, np.float32)
    for arg in case.floats:
        floats = dict(case.floats, **{arg: case.floats[arg].astype(bad_dtype)})
        with pytest.raises(TypeError, match=arg):
            case.run(floats)


@pytest.mark.parametrize("name", [n for n in CASE_NAMES if len(case_named(n).floats) > 1])
def test_arguments_of_different_float_dtypes_are_type_errors(name):
    case = case_named(name, np.float32)
    for arg in case.floats:
        for other in (np.float16, np.float64):
            floats = dict(case.floats, **{arg: case.floats[arg].astype(other)})
            with pytest.raises(TypeError, match=arg):
                case.run(floats)


@pytest.mark.parametrize("name", [n for n in CASE_NAMES if case_named(n).ints])
def test_float_indices_are_type_errors(name):
    case = case_named(name, np.float32)
    for bad in (np.float32, np.float64, np.bool_):
        with pytest.raises(TypeError, match="indices"):
            case.run(ints={"indices": case.ints["indices"].astype(bad)})


class FakeCupyArray:
    """Stands for a cupy.ndarray: api.md says mixed NumPy/CuPy arguments are a TypeError, which
    must be found from the arguments alone, before anything runs."""
    def __init__(self, a):
        self.dtype, self.shape, self.ndim, self.size = a.dtype, a.shape, a.ndim, a.size
        self.device = FakeCupyDevice()
        self.data = types.SimpleNamespace(ptr=0x7F0000000000)   # an aligned device address


class FakeCupyDevice:
    """cupy.cuda.Device(): the current device is 0, and every stand-in array lives there."""
    id = 0


@pytest.mark.parametrize("name", [n for n in CASE_NAMES
                                  if len(case_named(n).floats) + len(case_named(n).ints) > 1])
def test_mixed_numpy_and_cupy_arguments_are_type_errors(name, monkeypatch):
    fake_cupy = types.ModuleType("cupy")
    fake_cupy.ndarray = FakeCupyArray
    fake_cupy.cuda = types.SimpleNamespace(Device=FakeCupyDevice)
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy)
    case = case_named(name, np.float32)
    # The message names one of the two arguments that disagree (which one is checked first is
    # the library's choice).
    names = "|".join([*case.floats, *case.ints])
    for group in ("floats", "ints"):
        for arg, value in getattr(case, group).items():
            swapped = dict(getattr(case, group), **{arg: FakeCupyArray(value)})
            with pytest.raises(TypeError, match=rf"\b({names})\b.*(numpy|cupy|NumPy|CuPy)"):
                case.run(**{group: swapped})


@pytest.mark.skipif(torch is None, reason="torch is not installed")
@pytest.mark.parametrize("name", CASE_NAMES)
def test_torch_tensors_are_refused_with_a_pointer_to_gpuconv_torch(name):
    case = case_named(name, np.float32)
    arg = next(iter(case.floats))
    floats = dict(case.floats, **{arg: torch.from_numpy(case.floats[arg])})
    with pytest.raises(TypeError, match="gpuconv.torch"):
        case.run(floats)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_non_contiguous_inputs_give_the_contiguous_result(name):
    case = case_named(name)
    expected = results(case.run())
    got = results(case.run({k: strided_copy(v) for k, v in case.floats.items()},
                           {k: strided_copy(v) for k, v in case.ints.items()}))
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_empty_batch_gives_an_empty_output_of_the_right_shape(name):
    full = case_named(name)
    case = case_named(name, n=0)
    out = results(case.run())
    for array, shape, full_array in zip(out, case.shapes, results(full.run())):
        assert type(array) is np.ndarray
        assert array.shape == shape
        assert array.dtype == full_array.dtype
        if not case.batch and array.size:   # weight/bias gradients: a sum over no images
            np.testing.assert_array_equal(array, 0)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_inputs_are_not_modified_and_results_are_fresh_arrays(name):
    case = case_named(name)
    before = {k: v.copy() for k, v in {**case.floats, **case.ints}.items()}
    out = results(case.run())
    for k, v in {**case.floats, **case.ints}.items():
        np.testing.assert_array_equal(v, before[k], err_msg=f"{name} modified its argument {k}")
        for array in out:
            assert not np.shares_memory(array, v), f"{name}'s result aliases its argument {k}"


@pytest.mark.parametrize("name", CASE_NAMES)
def test_results_are_c_contiguous_in_the_call_layout(name):
    for array in results(case_named(name, np.float32).run()):
        assert array.flags.c_contiguous, f"{name} returned strides {array.strides}"


# Opposite infinities meeting at one element: the IEEE result is NaN. The references promise it
# "without warnings" (gpuconv/reference/conv.py), and pytest.ini turns any RuntimeWarning raised
# in gpuconv.* into an error, so a warning here breaks every test that feeds such values.
def _alternating_inf(shape):
    return np.where(np.indices(shape).sum(axis=0) % 2 == 0, np.inf, -np.inf)


_PEAK = np.zeros((1, 1, 4, 4))
_PEAK[0, 0, 1, 1] = 5.0
_TWIN_BOXES = np.array([[0, 0, 0, 3, 3], [0, 0, 0, 3, 3]], float)
_OPPOSITE = np.array([np.inf, -np.inf]).reshape(2, 1, 1, 1)
OPPOSITE_INFINITIES = {
    "grad.roi_pool": lambda: grad.roi_pool(_OPPOSITE, _PEAK, _TWIN_BOXES, 1),
    "grad.roi_align": lambda: grad.roi_align(_OPPOSITE, _PEAK, _TWIN_BOXES, 1),
    "grad.spatial_pyramid_pool2d[max]": lambda: grad.spatial_pyramid_pool2d(
        np.array([[np.inf, -np.inf]]), _PEAK, (1, 1), "max"),
    "grad.spatial_pyramid_pool2d[avg]": lambda: grad.spatial_pyramid_pool2d(
        np.array([[np.inf, -np.inf]]), _PEAK, (1, 1), "avg"),
    "grad.max_pool2d": lambda: grad.max_pool2d(_alternating_inf((1, 1, 2, 2)), _PEAK, 3, 1),
    "grad.avg_pool2d": lambda: grad.avg_pool2d(_alternating_inf((1, 1, 2, 2)), _PEAK, 3, 1),
    "grad.adaptive_avg_pool2d": lambda: grad.adaptive_avg_pool2d(_alternating_inf((1, 1, 3, 3)), _PEAK, 3),
    "grad.adaptive_max_pool2d": lambda: grad.adaptive_max_pool2d(_alternating_inf((1, 1, 3, 3)), _PEAK, 3),
    "grad.conv2d_input": lambda: grad.conv2d_input((1, 1, 4, 4), np.ones((1, 1, 3, 3)),
                                                   _alternating_inf((1, 1, 2, 2))),
    "grad.conv2d_weight": lambda: grad.conv2d_weight(np.ones((1, 1, 4, 4)), (1, 1, 3, 3),
                                                     _alternating_inf((1, 1, 2, 2))),
    "grad.conv2d_bias": lambda: grad.conv2d_bias(_alternating_inf((1, 1, 2, 2))),
    "conv_transpose2d": lambda: gpuconv.conv_transpose2d(_alternating_inf((1, 1, 2, 2)), np.ones((1, 1, 3, 3))),
    "conv2d": lambda: gpuconv.conv2d(_alternating_inf((1, 1, 4, 4)), np.ones((1, 1, 3, 3))),
    "avg_pool2d": lambda: gpuconv.avg_pool2d(_alternating_inf((1, 1, 4, 4)), 2),
    "adaptive_avg_pool2d": lambda: gpuconv.adaptive_avg_pool2d(_alternating_inf((1, 1, 4, 4)), 3),
    "global_avg_pool2d": lambda: gpuconv.global_avg_pool2d(_alternating_inf((1, 1, 4, 4))),
    "roi_align": lambda: gpuconv.roi_align(_alternating_inf((1, 1, 4, 4)), _TWIN_BOXES, 2),
    "spatial_pyramid_pool2d[avg]": lambda: gpuconv.spatial_pyramid_pool2d(_alternating_inf((1, 1, 4, 4)), (1, 2), "avg"),
}


@pytest.mark.parametrize("name", OPPOSITE_INFINITIES)
def test_opposite_infinities_give_nan_without_warnings(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        result = OPPOSITE_INFINITIES[name]()
    assert np.isnan(result).any()
