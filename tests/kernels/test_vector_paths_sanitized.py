"""The kernels' channel-vector paths under the simulator's AddressSanitizer (and, where a tile
stages its epilogue through shared memory, ThreadSanitizer) builds.

The contract's sanitizer tests (tests/contract/test_contract_sanitizers.py) call every public
function with C = 3, where no launch takes a vector path, so the 8- and 16-byte accesses of the
NHWC kernels (the tensor-core tiles' vector epilogue, the depthwise vector kernel, the pooling
kernels with a thread per channel vector) would go unchecked there. Here each runs on the
vector cases of its kernel tests: the sanitizer's runner copies every array into a block of
exactly its size, so a vector that reads or writes past either end of an array is reported
with the CUDA thread and the .cu line. Each sanitized run gives the plain simulator's bits.
"""
from __future__ import annotations

import numpy as np
import pytest

import gpuconv
from gpuconv import grad
from gpuconv.conv import launch
from gpuconv.pool import launch_common

from kernel_support import record_launches, sanitized, to_layout
from test_conv_depthwise_vector import inputs as depthwise_inputs
from test_conv_vector_epilogue import DGRAD_CASES, FORWARD_CASES, forward_inputs
from test_pool_kernels import (CHANNEL_VECTOR_CASES, _outputs, grad_output_for, random_input,
                               same_bits)

pytestmark = pytest.mark.slow   # each sanitizer builds its own copy of every kernel launched


# The forward's vector cases (K/groups a multiple of 4): the register-staged and 8-channel
# cp.async tiles, two N tiles with a partial last one, the analytic gather; split-K's float
# partials (the 8-channel tile, three splits).
FORWARD = [pytest.param(FORWARD_CASES[i], split_k, id=f"{FORWARD_CASES[i][0].name}-split{split_k}")
           for i, split_k in ((0, 1), (4, 1), (7, 1), (9, 1), (4, 3))]


@pytest.mark.parametrize("sanitize", ["address", "thread"])
@pytest.mark.parametrize("case, split_k", FORWARD)
def test_forward_epilogue_vectors(case, split_k, sanitize, rng):
    case, iterator, _ = case
    x, w, b, r = forward_inputs(case, np.float16, rng)

    def conv():
        return launch.conv2d(case.geom, x, w, b, residual=r, activation="relu",
                             algorithm="implicit_gemm", data_format="NHWC",
                             executor="simulator", iterator=iterator, split_k=split_k)
    assert same_bits(sanitized(sanitize, conv), sanitized(None, conv))


@pytest.mark.parametrize("sanitize", ["address", "thread"])
@pytest.mark.parametrize("case, kernel", [DGRAD_CASES[i] for i in (0, 2, 4)],
                         ids=lambda v: getattr(v, "name", None))
def test_data_gradient_epilogue_vectors(case, kernel, sanitize, rng):
    n, c, h, wd = case.x
    w = rng.standard_normal(case.w).astype(np.float16)
    dy = to_layout(rng.standard_normal(case.geom.output_shape), "NHWC").astype(np.float16)

    def dgrad():
        return grad.conv2d_input((n, h, wd, c), w, dy, algorithm="implicit_gemm",
                                 data_format="NHWC", **case.kwargs)
    assert same_bits(sanitized(sanitize, dgrad), sanitized(None, dgrad))


@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_vector_kernel(stride, rng):
    # An odd width (a partial run of 4 outputs), bias and residual read as vectors.
    geom, x, w, b, r = depthwise_inputs((2, 8, 7, 9), np.float32, rng, 1, stride)

    def conv():
        return launch.conv2d(geom, x, w, b, residual=r, activation="relu",
                             algorithm="depthwise", data_format="NHWC", executor="simulator",
                             depthwise_variant="vector")
    assert same_bits(sanitized("address", conv), sanitized(None, conv))


@pytest.mark.parametrize("case", list(CHANNEL_VECTOR_CASES))
def test_pooling_channel_vectors(case, rng, monkeypatch):
    shape, forward, gradient = CHANNEL_VECTOR_CASES[case]
    x = to_layout(random_input(rng, shape, np.float16, "ties" if "max" in case else "normal"),
                  "NHWC")
    names = record_launches(monkeypatch, launch_common)
    y = sanitized("address", forward, x)
    assert names[-1].endswith(", true>"), names[-1]     # the vector kernel ran
    assert same_bits(y, sanitized(None, forward, x))
    go = grad_output_for(rng, _outputs(y)[0])
    got = sanitized("address", gradient, go, x)
    assert names[-1].endswith(", true>"), names[-1]
    assert same_bits(got, sanitized(None, gradient, go, x))
