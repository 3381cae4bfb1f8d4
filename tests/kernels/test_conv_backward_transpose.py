"""conv_transpose2d on the data-gradient kernels under the CPU simulator: the public function
("auto") over strides, paddings, output_padding (including output_padding >= stride, legal
while it is below the dilation), output_size, groups, dilation and bias, in every dtype and thread
order; every data-gradient algorithm with its bias epilogue in both layouts; GPU copies."""
from __future__ import annotations

import numpy as np
import pytest

import gpuconv
from gpuconv.conv import launch_bwd_data
from gpuconv.conv.geometry import conv_transpose2d_geometry
from gpuconv.conv.launch_backward import DATA_ALGORITHMS
from gpuconv.reference import conv as reference

from test_conv_backward_cases import DTYPES, ORDERS, assert_close, f64, layout, make_input

# x (N, C_in, H, W), weight (C_in, K_out/groups, R, S), conv_transpose2d kwargs
TRANSPOSE_CASES = [
    ((2, 4, 5, 6), (4, 3, 3, 3), dict(stride=2, padding=1, output_padding=1)),
    ((1, 6, 4, 5), (6, 2, 3, 2), dict(stride=(3, 2), padding=(0, 1), groups=2, dilation=(1, 2))),
    ((1, 3, 5, 4), (3, 2, 3, 3), dict(stride=2, dilation=2, output_size=(14, 12))),
    ((2, 2, 4, 4), (2, 3, 3, 3), dict(stride=1, dilation=2, output_padding=1)),  # op >= stride
    ((1, 6, 5, 5), (6, 1, 3, 3), dict(stride=2, padding=1, groups=6)),          # depthwise
    ((2, 8, 4, 5), (8, 1, 2, 3),                             # depthwise, 2 inputs per output
     dict(stride=(2, 3), dilation=(2, 1), groups=4, output_padding=(1, 0))),
    ((2, 5, 4, 3), (5, 4, 1, 1), dict(stride=2, output_padding=1)),              # 1x1 upsampling
    ((1, 4, 6, 5), (4, 5, 1, 1), {}),                                            # 1x1
    ((2, 4, 5, 6), (4, 6, 3, 3), dict(padding=1, groups=2)),                     # 3x3 stride 1
    ((1, 3, 4, 3), (3, 2, 3, 3), {}),                                # 3x3 stride 1, no padding
    # depthwise stride 1: the forward depthwise kernels over x with the rotated filters
    ((2, 4, 5, 4), (4, 1, 3, 3), dict(padding=1, groups=4, dilation=2, output_padding=1)),
    ((1, 3, 6, 9), (3, 1, 7, 7), dict(padding=2, groups=3)),
]


def geometry(x_shape, w_shape, kwargs):
    return conv_transpose2d_geometry(x_shape, w_shape, kwargs.get("stride", 1),
                                     kwargs.get("padding", 0), kwargs.get("output_padding", 0),
                                     kwargs.get("groups", 1), kwargs.get("dilation", 1),
                                     kwargs.get("output_size"))


def expected(geom, x, w, bias):
    exact = reference.conv_transpose2d(geom, f64(x), f64(w), None if bias is None else f64(bias))
    magnitude = reference.conv_transpose2d(geom, np.abs(f64(x)), np.abs(f64(w)),
                                           None if bias is None else np.abs(f64(bias)))
    return exact, magnitude


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_conv_transpose2d_matches_reference(rng, dtype):
    for index, (x_shape, w_shape, kwargs) in enumerate(TRANSPOSE_CASES):
        geom = geometry(x_shape, w_shape, kwargs)
        x = make_input(rng, x_shape, dtype)
        w = make_input(rng, w_shape, dtype)
        bias = make_input(rng, (geom.C,), dtype) if index % 2 == 0 else None
        exact, magnitude = expected(geom, x, w, bias)
        orders = ORDERS if dtype == np.float32 else (ORDERS[index % 3],)
        for order in orders:
            with gpuconv.simulate(order=order, seed=index):
                got = gpuconv.conv_transpose2d(x, w, bias, **kwargs)
            assert_close(got, exact, magnitude, dtype, f"case {index} {order}")


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("algorithm", DATA_ALGORITHMS)
def test_every_data_gradient_algorithm_adds_the_bias(rng, algorithm, data_format):
    ran = 0
    for index, (x_shape, w_shape, kwargs) in enumerate(TRANSPOSE_CASES):
        geom = geometry(x_shape, w_shape, kwargs)
        if launch_bwd_data.why_not(algorithm, geom, np.float32, data_format) is not None:
            continue
        x = make_input(rng, x_shape, np.float32)
        w = make_input(rng, w_shape, np.float32)
        bias = make_input(rng, (geom.C,), np.float32)
        exact, magnitude = expected(geom, x, w, bias)
        with gpuconv.simulate(order=ORDERS[index % 3], seed=index):
            got = launch_bwd_data.run(algorithm, geom, w, layout(x, data_format), bias,
                                      data_format, "simulator")
        assert_close(got, layout(exact, data_format), layout(magnitude, data_format), np.float32,
                     f"{algorithm} {data_format} case {index}")
        ran += 1
    assert ran >= 2


def test_output_size_picks_the_output_padding(rng):
    x = make_input(rng, (1, 2, 3, 3), np.float64)
    w = make_input(rng, (2, 2, 3, 3), np.float64)
    with gpuconv.simulate():
        small = gpuconv.conv_transpose2d(x, w, stride=3, output_size=(9, 9))
        large = gpuconv.conv_transpose2d(x, w, stride=3, output_size=(1, 2, 11, 10))
    assert small.shape == (1, 2, 9, 9) and large.shape == (1, 2, 11, 10)
    # The extra rows and columns receive no tap: zero without a bias.
    assert np.all(large[:, :, 9:, :] == 0) and np.all(large[:, :, :, 9:] == 0)
    np.testing.assert_array_equal(large[:, :, :9, :9], small)


@pytest.mark.gpu
def test_conv_transpose2d_on_gpu(rng):
    import cupy
    for index, (x_shape, w_shape, kwargs) in enumerate(TRANSPOSE_CASES):
        geom = geometry(x_shape, w_shape, kwargs)
        x = make_input(rng, x_shape, np.float32)
        w = make_input(rng, w_shape, np.float32)
        bias = make_input(rng, (geom.C,), np.float32)
        got = gpuconv.conv_transpose2d(cupy.asarray(x), cupy.asarray(w), cupy.asarray(bias),
                                       **kwargs)
        assert_close(cupy.asnumpy(got), *expected(geom, x, w, bias), np.float32, f"case {index}")
