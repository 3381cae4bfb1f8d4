"""The channels-last epilogue of the tensor-core GEMM tiles (mma_gemm.cuh: epilogue_vectors,
epilogue.cuh: store_channels): a thread finishes 4 consecutive output channels of one pixel
with one pixel's index arithmetic and, where the channels of a group come in fours and the
output is aligned, one vector store (split_k.cuh: the float partials too); else one store per
channel.

Under the simulator, float16 and bfloat16 channels-last outputs of the forward implicit GEMM
(precomputed gather with C/groups % 8 != 0, its 8-channel cp.async kernel, the analytic
gather) and of the data gradient's implicit GEMM (register-staged and 8-channel tiles), with
channels per group that are multiples of 4 (the vector path) and not (the per-channel path),
groups whose second group starts mid-vector, several M and N tiles with a partial last one,
the fused bias + residual + activation and split-K. A vector run and a per-channel run of the
same call (``out`` one element off 8-byte alignment) give the same bits, in every thread order.
"""
from __future__ import annotations

import numpy as np
import pytest

import gpuconv
from gpuconv import grad
from gpuconv.conv import launch
from gpuconv.reference import conv as reference_conv

from kernel_support import BFLOAT16, ORDERS, misaligned_copy, to_layout
from test_conv_implicit_gemm_iterators import Case

HALF_TYPES = (np.dtype(np.float16), *BFLOAT16)
TOLERANCE = {"float16": 4e-3, "bfloat16": 3e-2}
FORWARD = "conv2d_implicit_gemm_"
DGRAD = "conv2d_dgrad_implicit_gemm_"

# (case, iterator, kernel the launch must name): K/groups 8 and 72 vectorise (72: a second N
# tile of one vector pair), 6 and 70 do not; groups=2 with K/groups 4 puts group 1's first
# channel at 4 (a vector boundary), with 6 at 6 (mid-vector).
FORWARD_CASES = [
    (Case("c5_k8", (2, 5, 7, 9), (8, 5, 3, 3), dict(padding=1)), "precomputed", "precomputed_mma<"),
    (Case("c5_k6", (2, 5, 7, 9), (6, 5, 3, 3), dict(padding=1)), "precomputed", "precomputed_mma<"),
    (Case("c6_k8_groups2", (1, 6, 8, 7), (8, 3, 3, 3), dict(padding=1, stride=(1, 2), groups=2)),
     "precomputed", "precomputed_mma<"),
    (Case("c6_k12_groups2", (1, 6, 8, 7), (12, 3, 3, 3), dict(padding=1, groups=2)),
     "precomputed", "precomputed_mma<"),
    (Case("c16_k8", (1, 16, 6, 5), (8, 16, 3, 3), dict(padding=1)), "precomputed",
     "precomputed_mma_vec<"),
    (Case("c16_k6", (1, 16, 6, 5), (6, 16, 3, 3), dict(padding=1)), "precomputed",
     "precomputed_mma_vec<"),
    (Case("c16_k12_groups2", (1, 16, 5, 6), (12, 8, 3, 3), dict(padding=1, groups=2)),
     "precomputed", "precomputed_mma_vec<"),
    (Case("c3_k72_tiles", (1, 3, 12, 13), (72, 3, 3, 3), dict(padding=1)), "precomputed",
     "precomputed_mma<"),
    (Case("c3_k70_tiles", (1, 3, 12, 13), (70, 3, 3, 3), dict(padding=1)), "analytic",
     "mma<"),
    (Case("c4_k8_analytic", (2, 4, 6, 7), (8, 4, 2, 3), dict(padding=(1, 0), dilation=(2, 1))),
     "analytic", "mma<"),
]


def misaligned_like(shape, dtype):
    """A C-contiguous NaN array one element past an 8-byte boundary: the kernels write it in
    place (launch_common.output_target) but cannot use vector stores."""
    size = int(np.prod(shape))
    buffer = np.full(size + 4, np.nan, dtype=dtype)
    out = buffer[1:1 + size].reshape(shape)
    assert out.ctypes.data % 8 != 0 and out.flags.c_contiguous
    return out


def forward_inputs(case: Case, dtype, rng):
    g = case.geom
    x = to_layout(rng.standard_normal(case.x), "NHWC").astype(dtype)
    w = rng.standard_normal(case.w).astype(dtype)
    b = rng.standard_normal(g.K).astype(dtype)
    r = to_layout(rng.standard_normal(g.output_shape), "NHWC").astype(dtype)
    return x, w, b, r


def forward(case: Case, x, w, b, r, *, iterator, out=None, order="forward", **options):
    with gpuconv.simulate(order=order, seed=3):
        return launch.conv2d(case.geom, x, w, b, residual=r, activation="relu",
                             algorithm="implicit_gemm", data_format="NHWC", out=out,
                             executor="simulator", iterator=iterator, **options)


def assert_close(y, expected, dtype):
    assert y.shape == expected.shape and y.dtype == expected.dtype
    y64, e64 = y.astype(np.float64), expected.astype(np.float64)
    assert not np.isnan(y64).any(), "an output element was never written (still NaN)"
    scale = max(1.0, float(np.abs(e64).max()))
    assert np.abs(y64 - e64).max() <= TOLERANCE[np.dtype(dtype).name] * scale


@pytest.mark.parametrize("dtype", HALF_TYPES, ids=str)
@pytest.mark.parametrize("case, iterator, kernel", FORWARD_CASES,
                         ids=lambda v: getattr(v, "name", None))
def test_forward_epilogue_vectors_match_reference_and_per_channel_bits(case, iterator, kernel,
                                                                       dtype, rng, launched_names):
    x, w, b, r = forward_inputs(case, dtype, rng)
    expected = gpuconv.conv2d(x, w, b, residual=r, activation="relu", data_format="NHWC",
                              **case.kwargs)
    aligned = forward(case, x, w, b, r, iterator=iterator, split_k=1)
    assert launched_names[-1].startswith(FORWARD + kernel), launched_names[-1]
    assert_close(aligned, expected, dtype)
    # The per-channel stores finish each channel with the same arithmetic as the vectors.
    per_channel = forward(case, x, w, b, r, iterator=iterator, split_k=1, order="random",
                          out=misaligned_like(aligned.shape, dtype))
    assert per_channel.tobytes() == aligned.tobytes()


@pytest.mark.parametrize("dtype", HALF_TYPES, ids=str)
@pytest.mark.parametrize("case, iterator, kernel", [FORWARD_CASES[i] for i in (0, 1, 4, 6)],
                         ids=lambda v: getattr(v, "name", None))
def test_forward_split_k_partials_in_vectors(case, iterator, kernel, dtype, rng, launched_names):
    # Three splits: the tiles store float partials (vectors where K/groups % 4 == 0), the
    # epilogue pass adds them in split order, so the bits do not depend on the thread order
    # and equal those of the per-channel partials of a misaligned output.
    x, w, b, r = forward_inputs(case, dtype, rng)
    expected = gpuconv.conv2d(x, w, b, residual=r, activation="relu", data_format="NHWC",
                              **case.kwargs)
    runs = [forward(case, x, w, b, r, iterator=iterator, split_k=3, order=order)
            for order in ORDERS]
    assert any(name.startswith(FORWARD + kernel) for name in launched_names)
    assert launched_names[-1].startswith("conv2d_split_k_epilogue<")
    assert_close(runs[0], expected, dtype)
    for y in runs[1:]:
        assert y.tobytes() == runs[0].tobytes()


@pytest.mark.parametrize("misaligned", ["bias", "residual"])
@pytest.mark.parametrize("case, iterator, kernel", [FORWARD_CASES[i] for i in (0, 4)],
                         ids=lambda v: getattr(v, "name", None))
def test_forward_misaligned_bias_or_residual_stores_per_channel(case, iterator, kernel,
                                                                misaligned, rng):
    # The vectors read bias and residual as 8-byte packs too: one of them misaligned sends the
    # whole launch to the per-channel stores, which give the same bits.
    x, w, b, r = forward_inputs(case, np.float16, rng)
    aligned = forward(case, x, w, b, r, iterator=iterator, split_k=1)
    b2, r2 = (misaligned_copy(b), r) if misaligned == "bias" else (b, misaligned_copy(r))
    per_channel = forward(case, x, w, b2, r2, iterator=iterator, split_k=1, order="reverse")
    assert per_channel.tobytes() == aligned.tobytes()


def test_forward_without_bias_residual_or_activation(rng):
    # The flags off: the vectors carry the bare accumulators, rounded once.
    case, iterator, _ = FORWARD_CASES[4]
    x, w, _, _ = forward_inputs(case, np.float16, rng)
    with gpuconv.simulate(order="reverse"):
        y = launch.conv2d(case.geom, x, w, algorithm="implicit_gemm", data_format="NHWC",
                          executor="simulator", iterator=iterator, split_k=1)
    assert_close(y, gpuconv.conv2d(x, w, data_format="NHWC", **case.kwargs), np.float16)


# Data gradient: dx's channels are the GEMM's N. (case, kernel): C/groups 8 and 4 vectorise,
# 6 does not; K/groups % 8 == 0 takes the 8-channel kernel. Stride 2 covers the phases.
DGRAD_CASES = [
    (Case("dgrad_c8_k5_s2", (2, 8, 7, 8), (5, 8, 3, 3), dict(stride=2, padding=1)), "mma<"),
    (Case("dgrad_c6_k5", (1, 6, 6, 7), (5, 6, 3, 3), dict(padding=1)), "mma<"),
    (Case("dgrad_c8_k16_groups2", (1, 8, 7, 6), (16, 4, 3, 3), dict(padding=1, groups=2)),
     "mma_vec<"),
    (Case("dgrad_c12_k16_groups2_s2", (1, 12, 7, 9), (16, 6, 3, 3),
          dict(stride=2, padding=1, groups=2)), "mma_vec<"),
    (Case("dgrad_c72_k8", (1, 72, 5, 4), (8, 72, 1, 3), dict(padding=(0, 1))), "mma_vec<"),
]


@pytest.mark.parametrize("dtype", HALF_TYPES, ids=str)
@pytest.mark.parametrize("case, kernel", DGRAD_CASES, ids=lambda v: getattr(v, "name", None))
def test_data_gradient_epilogue_vectors(case, kernel, dtype, rng, launched_names):
    g = case.geom
    n, c, h, wd = case.x
    w = rng.standard_normal(case.w).astype(dtype)
    dy = to_layout(rng.standard_normal(g.output_shape), "NHWC").astype(dtype)
    exact = reference_conv.conv2d_input(g, w.astype(np.float64), dy.astype(np.float64), "NHWC")
    runs = []
    for order in ORDERS:
        with gpuconv.simulate(order=order, seed=11):
            runs.append(grad.conv2d_input((n, h, wd, c), w, dy, algorithm="implicit_gemm",
                                          data_format="NHWC", **case.kwargs))
        assert launched_names[-1].startswith(DGRAD + kernel), launched_names[-1]
    assert_close(runs[0], exact.astype(dtype), dtype)
    for y in runs[1:]:
        assert y.tobytes() == runs[0].tobytes()
