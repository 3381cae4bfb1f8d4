"""The backward passes of conv2d and conv_transpose2d on the CUDA kernels: the algorithm each
call runs, and the hand-off to the data-gradient (launch_bwd_data.py) and weight/bias-gradient
(launch_bwd_weight.py) launchers. ``gpuconv.conv.launch`` re-exports the four entry points,
which the public fronts (grad.py, api.py) call with a validated geometry.

Algorithms a caller may force (``algorithm=``), per pass:

=================  =============================================  ============================================
name               data gradient (conv2d_input)                   weight gradient (conv2d_weight)
=================  =============================================  ============================================
implicit_gemm      any case; one GEMM per stride phase, no MAC    any case; split-K over N*P*Q
                   on inserted zeros
im2col_gemm        any case; GEMM into a column buffer + col2im   any case; im2col + GEMM, split-K
pointwise          1x1 filters                                    1x1 filters; runs the implicit GEMM, which
                                                                  is a plain GEMM without taps
depthwise          C/groups == 1; stride 1 with one filter per    C/groups == 1; dy and x tiles in shared
                   channel: the forward depthwise kernels on dy   memory, runs of taps in registers
                   (else NCHW needs one channel's filters in
                   48 KiB of shared memory)
direct             any case; one thread per dx element            any case; one block per filter row
winograd_nonfused  3x3, stride 1, dilation 1; the forward         3x3, stride 1, dilation 1; F(2x2, 3x3):
                   Winograd of dy (F(4x4 or 2x2, 3x3)),           transforms, then the 1x1 weight
                   rotated filters                                gradient's split-K GEMMs
=================  =============================================  ============================================

"auto" (``choose_data_algorithm`` / ``choose_weight_algorithm`` return the choice and why):
- data: see the comment on DIRECT_MAX_CHANNELS below.
- weight: depthwise when C/groups == 1 and groups > 1; winograd_nonfused on CUDA cores when it
  can run the case and pays off (launch_winograd.pays_off: >= 128 channels and filters per
  group, >= 1024 output pixels); else implicit_gemm.
A forced algorithm that cannot run the case is a ValueError that says why.

Determinism: every data-gradient kernel writes each element once, and the bias gradient always
reduces in a fixed order, so those are bitwise reproducible in every mode. The weight gradient's
GEMM algorithms add their split-K partial sums with float atomics by default; with
``deterministic=True`` they write the partials to a workspace summed in split order instead (no
atomics anywhere in the backward passes).
"""
from __future__ import annotations

import logging

from . import launch_bwd_data, launch_bwd_weight, launch_winograd
from .launch_common import uses_tensor_cores

logger = logging.getLogger(__name__)

DATA_ALGORITHMS = ("implicit_gemm", "im2col_gemm", "pointwise", "depthwise", "direct",
                   "winograd_nonfused")
WEIGHT_ALGORITHMS = ("implicit_gemm", "im2col_gemm", "depthwise", "direct", "winograd_nonfused")

# "auto" for the data gradient, from what an H100 measured (ResNet-50 b32 and the quick suite,
# bench/results/20261122T1157Z-H100-resnet50-fp32 and -quick-fp32-v2; kernels/conv/
# NOTES_backward.md "Algorithm choice on the H100"):
# - 16-bit dtypes: the tensor-core implicit GEMM, 1x1 and 3-channel stems included (ResNet-50
#   fp16 NHWC: 1x1 layers 1.98 -> 1.53 ms in all, conv1 3.69 -> 1.28 ms against the choices below).
# - CUDA-core dtypes: Winograd for 3x3 stride-1 filters with >= 128 channels and
#   filters per group over >= 1024 output pixels (launch_winograd.pays_off; H100 ResNet-50 b32:
#   3x3 data gradients 0.81x of cuDNN in all, 1.24x at 14x14); the 1x1 GEMM for every 1x1
#   filter, strided too (downsample layers 470 -> 284 us); im2col + GEMM for filters with more
#   taps (its GEMM is C*R*S wide where the implicit one is C wide: more blocks on small planes,
#   419 -> 303 us at 14x14), except 3x3 and smaller
#   over planes of >= IMPLICIT_MIN_PIXELS with <= IMPLICIT_MAX_CHANNELS channels, and strided
#   filters over planes larger than STRIDED_IM2COL_MAX_PIXELS, where the implicit GEMM wins
#   (344 vs 512 us at 56x56 x 64 channels; its phases skip the inserted zeros);
# - up to DIRECT_MAX_CHANNELS channels per group (stems): im2col + GEMM for batches of at least
#   STEM_IM2COL_MIN_PIXELS input pixels (ResNet-50 conv1 b32: 1903 -> 692 us), else direct.
DIRECT_MAX_CHANNELS = 4
IMPLICIT_MIN_PIXELS = 56 * 56
IMPLICIT_MAX_CHANNELS = 128
STRIDED_IM2COL_MAX_PIXELS = 14 * 14
STEM_IM2COL_MIN_PIXELS = 1 << 20

__all__ = ["conv2d_input", "conv2d_weight", "conv2d_bias", "conv_transpose2d",
           "choose_data_algorithm", "choose_weight_algorithm", "DATA_ALGORITHMS",
           "WEIGHT_ALGORITHMS"]


# What launch_winograd.pays_off asks of a gradient, as the choices' reasons state it.
_WINOGRAD_GRADIENT_SIZES = (f">= {launch_winograd.MIN_CHANNELS} channels and filters per group "
                            f"and >= {launch_winograd.MIN_PIXELS} output pixels")


def _refuse(pass_name: str, algorithm: str, reason: str):
    return ValueError(f"algorithm={algorithm!r} cannot compute the {pass_name} of this "
                      f"convolution: {reason}")


def choose_data_algorithm(geom, algorithm: str, dtype, data_format: str) -> tuple[str, str]:
    """(algorithm, why) for the data gradient; a forced algorithm is checked."""
    if algorithm != "auto":
        if algorithm not in DATA_ALGORITHMS:
            raise _refuse("input gradient", algorithm, "no such data-gradient algorithm "
                          f"(choose from {', '.join(DATA_ALGORITHMS)} or 'auto')")
        reason = launch_bwd_data.why_not(algorithm, geom, dtype, data_format)
        if reason is not None:
            raise _refuse("input gradient", algorithm, reason)
        return algorithm, "forced by the caller"
    candidates = []
    if geom.C_per_group == 1 and geom.groups > 1:
        candidates.append(("depthwise", "a depthwise convolution (C/groups == 1)"))
    if uses_tensor_cores(dtype):
        candidates.append(("implicit_gemm", "16-bit data: the tensor-core implicit GEMM"))
    candidates += _cuda_core_data_candidates(geom, dtype)
    candidates.append(("implicit_gemm", "the general case"))
    candidates.append(("direct", "the implicit GEMM's grid cannot cover this case"))
    for name, why in candidates:
        if launch_bwd_data.why_not(name, geom, dtype, data_format) is None:
            return name, why
    raise AssertionError("the direct data gradient runs every case")  # pragma: no cover


def _cuda_core_data_candidates(geom, dtype) -> list[tuple[str, str]]:
    """The data-gradient algorithms "auto" tries first on CUDA cores (see DIRECT_MAX_CHANNELS)."""
    pixels = geom.H * geom.W
    strided = (geom.stride_h, geom.stride_w) != (1, 1)
    if (launch_winograd.data_gradient_refusal(geom) is None
            and launch_winograd.pays_off(geom, "data_grad", dtype)):
        return [("winograd_nonfused", f"a 3x3 stride-1 filter over {_WINOGRAD_GRADIENT_SIZES}: "
                                      "Winograd F(4x4, 3x3) does 1/4 of the multiply-adds "
                                      "(F(2x2, 3x3) 4/9, on planes under 7x7)")]
    if (geom.R, geom.S) == (1, 1):
        return [("pointwise", "a 1x1 filter: a plain GEMM (strided: over the strided pixels)")]
    if geom.C_per_group <= DIRECT_MAX_CHANNELS:
        if geom.N * pixels >= STEM_IM2COL_MIN_PIXELS:
            return [("im2col_gemm", f"C/groups = {geom.C_per_group} over a large batch: one "
                                    f"GEMM C*R*S wide")]
        return [("direct", f"C/groups = {geom.C_per_group} <= {DIRECT_MAX_CHANNELS}: a GEMM "
                           f"tile of channels would be mostly empty")]
    if strided and pixels > STRIDED_IM2COL_MAX_PIXELS:
        return [("implicit_gemm", "a strided filter over a large plane: the implicit GEMM's "
                                  "phases skip the inserted zeros")]
    if (geom.R * geom.S <= 9 and pixels >= IMPLICIT_MIN_PIXELS
            and geom.C_per_group <= IMPLICIT_MAX_CHANNELS):
        return [("implicit_gemm", "a small filter over a large plane with few channels")]
    return [("im2col_gemm", "a GEMM C*R*S wide fills more of the GPU than the implicit one "
                            "(C wide)")]


def choose_weight_algorithm(geom, algorithm: str, dtype, data_format: str) -> tuple[str, str]:
    """(algorithm, why) for the weight gradient; a forced algorithm is checked."""
    if algorithm != "auto":
        if algorithm != "pointwise" and algorithm not in WEIGHT_ALGORITHMS:
            raise _refuse("weight gradient", algorithm, "no such weight-gradient algorithm "
                          f"(choose from {', '.join(WEIGHT_ALGORITHMS)} or 'auto')")
        reason = launch_bwd_weight.why_not(algorithm, geom, dtype, data_format)
        if reason is not None:
            raise _refuse("weight gradient", algorithm, reason)
        if algorithm == "pointwise":
            return "implicit_gemm", "forced pointwise: a 1x1 filter's implicit GEMM is a plain GEMM"
        return algorithm, "forced by the caller"
    candidates = []
    if geom.C_per_group == 1 and geom.groups > 1:
        candidates.append(("depthwise", "a depthwise convolution (C/groups == 1)"))
    if not uses_tensor_cores(dtype) and launch_winograd.pays_off(geom, "weight_grad", dtype):
        candidates.append(("winograd_nonfused", "a 3x3 stride-1 filter over "
                                                f"{_WINOGRAD_GRADIENT_SIZES}: Winograd F(2x2, "
                                                "3x3) does 4/9 of the multiply-adds (F(4x4, "
                                                "3x3)'s 1/4 rounds more over a whole batch)"))
    candidates.append(("implicit_gemm", "the general case"))
    candidates.append(("direct", "the implicit GEMM's grid cannot cover this case"))
    for name, why in candidates:
        if launch_bwd_weight.why_not(name, geom, dtype, data_format) is None:
            return name, why
    raise AssertionError("the direct weight gradient runs every case")  # pragma: no cover


def conv2d_input(geom, weight, grad_output, *, algorithm="auto", data_format="NCHW",
                 deterministic=False, executor):
    """Gradient of conv2d with respect to its input (``geom.input_shape`` in ``data_format``).
    Deterministic whatever ``deterministic`` says: no data-gradient kernel uses atomics."""
    name, why = choose_data_algorithm(geom, algorithm, grad_output.dtype, data_format)
    logger.debug("conv2d_input: %s (%s)", name, why)
    return launch_bwd_data.run(name, geom, weight, grad_output, None, data_format, executor)


def conv2d_weight(geom, x, grad_output, *, algorithm="auto", data_format="NCHW",
                  deterministic=False, executor):
    """Gradient of conv2d with respect to its weight, (K, C/groups, R, S)."""
    name, why = choose_weight_algorithm(geom, algorithm, grad_output.dtype, data_format)
    logger.debug("conv2d_weight: %s (%s)", name, why)
    return launch_bwd_weight.run(name, geom, x, grad_output, data_format, deterministic, executor)


def conv2d_bias(grad_output, *, data_format="NCHW", deterministic=False, executor):
    """Gradient of conv2d with respect to its bias, (K,); always deterministic."""
    return launch_bwd_weight.bias_grad(grad_output, data_format, executor)


def conv_transpose2d(geom, x, weight, bias, data_format="NCHW", *, executor):
    """Transposed convolution for a ``ConvTransposeGeometry``: the data gradient of the forward
    convolution ``geom`` with ``grad_output = x``, plus the bias in the kernels' epilogue."""
    name, why = choose_data_algorithm(geom, "auto", x.dtype, data_format)
    logger.debug("conv_transpose2d: %s (%s)", name, why)
    return launch_bwd_data.run(name, geom, weight, x, bias, data_format, executor)
