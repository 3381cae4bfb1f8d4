"""The 3x3 depthwise kernel with filters in registers (kernels/conv/depthwise_vector.cu,
``conv2d_depthwise_vector``: 4-channel vectors in NHWC, one channel per thread in NCHW) against
the NumPy reference, its launcher's rules (gpuconv/conv/launch_depthwise_vector.py) and auto's
choice of it (launch_depthwise).

Cases run under ``gpuconv.simulate()`` in the forward, reverse and random thread orders (and on a
GPU with the ``gpu`` marker): both layouts, every dtype and both strides; widths that are not a
multiple of the run of 4 outputs; padding on every side, asymmetric and "same"; 1, 2 and 4 output
rows per thread; the fused bias, residual and activation; an NCHW channel slice as out=; and the
rotated filters of the data gradient. Outputs start as NaN so that an element no thread writes
fails.
"""
from __future__ import annotations

import numpy as np
import pytest

import gpuconv
from gpuconv import grad
from gpuconv._kernels import cuda_type
from gpuconv.conv import launch, launch_depthwise
from gpuconv.conv import launch_depthwise_vector as vector
from gpuconv.conv.geometry import conv2d_geometry, layout_shape

from kernel_support import BFLOAT16, ORDERS, assert_written_and_close, misaligned_copy

DTYPES = [np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.float64), *BFLOAT16]
TOLERANCE = {"float16": 4e-3, "bfloat16": 3e-2, "float32": 3e-5, "float64": 1e-12}
EXECUTORS = [pytest.param("simulator", id="sim"),
             pytest.param("cupy", id="gpu", marks=pytest.mark.gpu)]
LAYOUTS = ("NHWC", "NCHW")

# (x NCHW shape, padding, stride, activation)
CASES = {
    "odd_width_two_images": ((2, 8, 7, 9), 1, 1, "relu"),
    "stride2_odd": ((1, 12, 9, 11), 1, 2, "sigmoid"),
    "asymmetric_padding": ((1, 4, 6, 10), ((0, 2), (2, 1)), 1, "tanh"),
    "stride2_no_padding_even": ((2, 4, 8, 8), 0, 2, None),
    "same_stride2": ((1, 8, 5, 6), "same", 2, "relu"),
    "one_column": ((1, 4, 5, 1), 1, 1, None),
}


def assert_close(actual, expected):
    assert_written_and_close(actual, expected, TOLERANCE)


def inputs(x_shape, dtype, rng, padding, stride, data_format="NHWC"):
    n, c, h, w = x_shape
    geom = conv2d_geometry(x_shape, (c, 1, 3, 3), stride=stride, padding=padding, groups=c)
    x = rng.standard_normal(x_shape)
    if data_format == "NHWC":
        x = x.transpose(0, 2, 3, 1)
    x = np.ascontiguousarray(x).astype(dtype)
    weight = rng.standard_normal((c, 1, 3, 3)).astype(dtype)
    bias = rng.standard_normal(c).astype(dtype)
    residual = rng.standard_normal(layout_shape(geom.output_shape, data_format)).astype(dtype)
    return geom, x, weight, bias, residual


def on_executor(a, executor):
    if executor == "simulator":
        return a
    import cupy
    return cupy.asarray(a)


def run_vector(geom, x, weight, bias, residual, activation, executor, order,
               data_format="NHWC", out=None):
    if out is None:
        out = np.full(layout_shape(geom.output_shape, data_format), np.nan, dtype=x.dtype)
    args = [on_executor(a, executor) for a in (x, weight, bias, residual, out)]

    def call():
        return launch.conv2d(geom, *args[:3], residual=args[3], activation=activation,
                             algorithm="depthwise", data_format=data_format, out=args[4],
                             executor=executor, depthwise_variant="vector")
    if executor == "simulator":
        with gpuconv.simulate(order=order, seed=5):
            y = call()
    else:
        y = call()
    return y if isinstance(y, np.ndarray) else y.get()


def kernel_name(dtype, stride, data_format):
    nhwc = "true" if data_format == "NHWC" else "false"
    return f"conv2d_depthwise_vector<{cuda_type(dtype)}, {stride}, {nhwc}>"


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("data_format", LAYOUTS)
def test_vector_kernel_matches_the_reference(data_format, case, dtype, order, executor, rng,
                                             launched_names):
    x_shape, padding, stride, activation = CASES[case]
    geom, x, weight, bias, residual = inputs(x_shape, dtype, rng, padding, stride, data_format)
    y = run_vector(geom, x, weight, bias, residual, activation, executor, order, data_format)
    expected = gpuconv.conv2d(x, weight, bias, stride=stride, padding=padding, groups=x_shape[1],
                              residual=residual, activation=activation, data_format=data_format)
    assert_close(y, expected)
    if executor == "simulator":
        assert launched_names == [kernel_name(dtype, stride, data_format)]


@pytest.mark.parametrize("rows", vector.ROW_CHOICES)
@pytest.mark.parametrize("stride", vector.STRIDES)
@pytest.mark.parametrize("data_format", LAYOUTS)
def test_every_rows_per_thread_covers_every_output(data_format, rows, stride, rng, monkeypatch):
    """P = 7 rows split 4 + 3, 2 + 2 + 2 + 1 or 1 each: the last group of a thread is short."""
    monkeypatch.setattr(vector, "rows_per_thread", lambda geom, sms, nhwc: rows)
    geom, x, weight, bias, residual = inputs((2, 4, 7 * stride, 10), np.dtype(np.float32), rng,
                                             1, stride, data_format)
    assert geom.P == 7
    y = run_vector(geom, x, weight, None, None, None, "simulator", "random", data_format)
    assert_close(y, gpuconv.conv2d(x, weight, stride=stride, padding=1, groups=4,
                                   data_format=data_format))


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("rows", [2, 4])
@pytest.mark.parametrize("data_format", LAYOUTS)
def test_rows_kept_between_output_rows(data_format, rows, dtype, executor, rng, monkeypatch):
    """Several output rows per thread on every case (padding rows above and below, asymmetric,
    none, stride 2's one shared row): NCHW keeps the rows the next output row shares (zeros where
    they fall on padding) and loads the others; the data gradient's rotated filters too."""
    monkeypatch.setattr(vector, "rows_per_thread", lambda geom, sms, nhwc: rows)
    for case, (x_shape, padding, stride, activation) in CASES.items():
        geom, x, weight, bias, residual = inputs(x_shape, dtype, rng, padding, stride,
                                                 data_format)
        y = run_vector(geom, x, weight, bias, residual, activation, executor, "random",
                       data_format)
        expected = gpuconv.conv2d(x, weight, bias, stride=stride, padding=padding,
                                  groups=geom.C, activation=activation, residual=residual,
                                  data_format=data_format)
        assert_close(y, expected)
    geom, x, weight, _, _ = inputs((2, 4, 9, 7), dtype, rng, ((1, 2), (0, 1)), 1, data_format)
    dy = rng.standard_normal(layout_shape(geom.output_shape, data_format)).astype(dtype)
    kwargs = dict(padding=((1, 2), (0, 1)), groups=4, data_format=data_format)
    shape = layout_shape((2, 4, 9, 7), data_format)
    expected = grad.conv2d_input(shape, weight, dy, **kwargs)
    if executor == "simulator":
        with gpuconv.simulate(order="reverse"):
            dx = grad.conv2d_input(shape, weight, dy, **kwargs)
    else:
        dx = grad.conv2d_input(shape, *(on_executor(a, executor) for a in (weight, dy)),
                               **kwargs).get()
    assert_close(dx, expected)


@pytest.mark.parametrize("order", ORDERS)
def test_nchw_writes_a_channel_slice_of_out(order, rng):
    """NCHW stores element by element through the epilogue's strides: a channel slice
    ``buf[:, 2:10]`` of a wider buffer is written in place and its neighbours are not."""
    geom, x, weight, bias, residual = inputs((2, 8, 6, 7), np.dtype(np.float32), rng, 1, 1,
                                             "NCHW")
    buffer = np.full((2, 12, 6, 7), np.nan, np.float32)
    run_vector(geom, x, weight, bias, residual, "relu", "simulator", order, "NCHW",
               out=buffer[:, 2:10])
    assert_close(buffer[:, 2:10], gpuconv.conv2d(x, weight, bias, padding=1, groups=8,
                                                 residual=residual, activation="relu"))
    assert np.isnan(buffer[:, :2]).all() and np.isnan(buffer[:, 10:]).all()


def test_rows_per_thread_keeps_small_layers_wide():
    sms = 132
    large = conv2d_geometry((32, 32, 112, 112), (32, 1, 3, 3), padding=1, groups=32)
    small = conv2d_geometry((32, 960, 7, 7), (960, 1, 3, 3), padding=1, groups=960)
    huge = conv2d_geometry((256, 32, 112, 112), (32, 1, 3, 3), padding=1, groups=32)
    assert vector.rows_per_thread(huge, sms, True) == 4
    assert vector.rows_per_thread(large, sms, True) == 2
    assert vector.rows_per_thread(small, sms, True) == 1
    # NCHW: a thread is one channel, so 4x the items of NHWC at the same rows
    assert vector.rows_per_thread(large, sms, False) == 4
    assert vector.rows_per_thread(small, sms, False) == 1
    for geom in (large, small, huge):
        for nhwc in (True, False):
            rows = vector.rows_per_thread(geom, sms, nhwc)
            assert rows == 1 or vector.items(geom, rows, nhwc) >= vector.MIN_ITEMS_PER_SM * sms


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("dtype", [np.dtype(np.float32), np.dtype(np.float16)], ids=str)
@pytest.mark.parametrize("data_format", LAYOUTS)
def test_data_gradient_runs_the_vector_kernel_with_rotated_filters(data_format, dtype, order, rng,
                                                                  launched_names):
    """The stride-1 data gradient of a depthwise convolution is a forward pass over dy with the
    filters rotated by 180 degrees (launch_bwd_data.depthwise): on this kernel in both layouts."""
    x_shape = (2, 8, 6, 9)
    geom, x, weight, _, _ = inputs(x_shape, dtype, rng, ((1, 2), (0, 1)), 1, data_format)
    dy = rng.standard_normal(layout_shape(geom.output_shape, data_format)).astype(dtype)
    kwargs = dict(padding=((1, 2), (0, 1)), groups=8)
    shape = layout_shape(x_shape, data_format)
    expected = grad.conv2d_input(shape, weight.astype(np.float64), dy.astype(np.float64),
                                 data_format=data_format, **kwargs)
    with gpuconv.simulate(order=order, seed=3):
        dx = grad.conv2d_input(shape, weight, dy, data_format=data_format, **kwargs)
    assert_close(dx, expected.astype(dtype))
    assert kernel_name(dtype, 1, data_format) in launched_names


# ------------------------------------------------------------------------------------ routing


@pytest.mark.parametrize("stride", (1, 2))
@pytest.mark.parametrize("data_format", LAYOUTS)
def test_auto_takes_the_vector_kernel_for_3x3(data_format, stride, rng, launched_names):
    """Aligned NHWC with channels in fours, and any NCHW (here 6 channels, an odd width and x
    one element past an aligned boundary: NCHW's accesses are scalar)."""
    c = 8 if data_format == "NHWC" else 6
    geom, x, weight, bias, _ = inputs((1, c, 9, 9), np.dtype(np.float32), rng, 1, stride,
                                      data_format)
    if data_format == "NCHW":
        x = misaligned_copy(x)
    assert launch_depthwise.choose_variant(geom, np.float32, data_format == "NHWC") == "vector"
    kwargs = dict(stride=stride, padding=1, groups=c, data_format=data_format)
    with gpuconv.simulate():
        y = gpuconv.conv2d(x, weight, bias, **kwargs)
    assert launched_names == [kernel_name(np.float32, stride, data_format)]
    assert_close(y, gpuconv.conv2d(x, weight, bias, **kwargs))


@pytest.mark.parametrize("x_shape, w_shape, kwargs, data_format, rule", [
    ((1, 6, 9, 9), (6, 1, 3, 3), {}, "NHWC", "NHWC channels in multiples of 4, got C=6"),
    ((1, 8, 9, 9), (16, 1, 3, 3), {}, "NCHW", "one filter per channel"),
    ((1, 8, 9, 9), (8, 1, 5, 5), {}, "NCHW", "needs a 3x3 filter, got 5x5"),
    ((1, 8, 9, 9), (8, 1, 3, 3), dict(stride=3), "NCHW", "equal strides of 1 or 2, got 3x3"),
    ((1, 8, 9, 9), (16, 1, 3, 3), {}, "NHWC", "one filter per channel"),
    ((1, 8, 9, 9), (8, 1, 5, 5), {}, "NHWC", "needs a 3x3 filter, got 5x5"),
    ((1, 8, 9, 9), (8, 1, 3, 3), dict(stride=3), "NHWC", "equal strides of 1 or 2, got 3x3"),
    ((1, 8, 9, 9), (8, 1, 3, 3), dict(stride=(1, 2)), "NHWC", "equal strides of 1 or 2, got 1x2"),
    ((1, 8, 9, 9), (8, 1, 3, 3), dict(dilation=2), "NHWC", "needs dilation 1, got 2x2"),
])
def test_forced_vector_refuses_what_it_cannot_run_and_auto_avoids_it(x_shape, w_shape, kwargs,
                                                                     data_format, rule):
    geom = conv2d_geometry(x_shape, w_shape, padding=1, groups=x_shape[1], **kwargs)
    nhwc = data_format == "NHWC"
    with pytest.raises(ValueError, match=f"depthwise variant 'vector' cannot run .*{rule}"):
        launch_depthwise.choose_variant(geom, np.float32, nhwc, "vector")
    assert launch_depthwise.choose_variant(geom, np.float32, nhwc) != "vector"


@pytest.mark.parametrize("misaligned", ["x", "bias", "residual"])
def test_misaligned_arrays_fall_back_in_auto_and_are_refused_when_forced(misaligned, rng,
                                                                         launched_names):
    """One array (the epilogue reads bias and residual in vectors too) one element past an
    aligned boundary: auto takes the next kernel; forcing the vector kernel is a ValueError
    naming the array."""
    geom, x, weight, bias, residual = inputs((1, 8, 9, 9), np.dtype(np.float32), rng, 1, 1)
    arrays = dict(x=x, bias=bias, residual=residual)
    arrays[misaligned] = misaligned_copy(arrays[misaligned])
    with gpuconv.simulate():
        y = gpuconv.conv2d(arrays["x"], weight, arrays["bias"], padding=1, groups=8,
                           residual=arrays["residual"], data_format="NHWC")
    assert launched_names and not any("vector" in name for name in launched_names)
    assert_close(y, gpuconv.conv2d(x, weight, bias, padding=1, groups=8, residual=residual,
                                   data_format="NHWC"))
    with pytest.raises(ValueError, match=f"variant 'vector' cannot run this call: {misaligned} "
                                         "is not aligned to 16 bytes"):
        run_vector(geom, arrays["x"], weight, arrays["bias"], arrays["residual"], None,
                   "simulator", "forward")


@pytest.mark.parametrize("data_format, lanes", [("NHWC", "4 channels"), ("NCHW", "1 channel")])
def test_explain_names_the_vector_kernel(data_format, lanes):
    x_shape = (2, 10, 10, 16) if data_format == "NHWC" else (2, 16, 10, 10)
    text = gpuconv.explain(np.zeros(x_shape, np.float32), np.zeros((16, 1, 3, 3), np.float32),
                           padding=1, groups=16, data_format=data_format)
    assert f"conv2d_depthwise_vector ({lanes} per thread" in str(text)
