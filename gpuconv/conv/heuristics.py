"""The "auto" heuristic of conv2d: which algorithm runs a case when nothing was measured.

Rules, first match wins (each states its reason in ``explain``):
1. depthwise   groups == C > 1: one input channel per group. A GEMM per group would have
               k = R*S only and a handful of filters; the depthwise kernels read each input
               once per tap and keep whole warps busy along pixels or channels (which of the
               direct, tiled and sliding-window kernels: launch_depthwise.choose_variant).
2. pointwise   1x1 filter, no padding: the convolution *is* a GEMM, run straight on the tensors
               without any tap arithmetic. Not for float16/bfloat16, whose implicit GEMM runs
               on the tensor cores (the pointwise kernels are CUDA-core only): rule 4 takes
               them (a 1x1 filter is one tap, nothing to skip).
3. direct      fewer than 32 filters per group (grouped convolutions such as ResNeXt's, or
               tiny layers): the narrowest GEMM tile is 32 filters wide, the direct kernel's
               filter block 16, 8 or 4 (launch_direct.pick_tile). Also every layer whose GEMM
               grid CUDA cannot launch (more than 65535 groups, or millions of filters per
               group: launch_common.gemm_grid_refusal); its v1 kernel's grid is 1-D.
4. winograd_nonfused  3x3, stride 1, dilation 1, at least launch_winograd.MIN_CHANNELS (128)
               channels and filters per group (64 over >= 16384 output pixels) and at least
               MIN_PIXELS (1024) output pixels, on CUDA
               cores (float32, float64): 1/4 of the multiply-adds (F(4x4, 3x3); 4/9 with
               F(2x2, 3x3) on planes under 7x7) through the same GEMM, for transform traffic
               the GEMM outweighs (launch_winograd.pays_off). Measured on an H100 (ResNet-50
               b32 fp32, kernels/conv/NOTES.md "Winograd on the H100"): F(4x4) 168-207 us on
               the stride-1 3x3 layers where the implicit GEMM takes 235-438 and cuDNN 139-290.
5. implicit_gemm  everything else: the GEMM view without a column buffer, the fastest general
               path (tiles 32, 64 or 128 filters wide; tensor cores for 16-bit dtypes:
               launch_implicit_gemm).
im2col_gemm is never picked by the heuristic (it moves C*R*S/stride^2 times more data than the
implicit GEMM through its column buffer); autotuning may still measure it best.
The thresholds are first guesses to be checked on a GPU (kernels/conv/NOTES.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import launch_depthwise, launch_im2col_gemm, launch_pointwise, launch_winograd
from .geometry import conv_algorithms
from .launch_common import gemm_grid_refusal, uses_tensor_cores

# Every algorithm the launchers accept: the public ones plus the simple direct kernel.
ALGORITHMS = conv_algorithms + ("direct_v1",)
# The algorithms whose launches are GEMM tiles of filters by pixels (launch_common.gemm_grid_refusal).
GEMM_ALGORITHMS = ("pointwise", "implicit_gemm", "im2col_gemm", "winograd_nonfused")
DIRECT_MAX_FILTERS_PER_GROUP = 32


@dataclass(frozen=True)
class Choice:
    algorithm: str
    reason: str


def refusal(algorithm: str, geom) -> str | None:
    """Why ``algorithm`` cannot run ``geom``; None when it can."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be 'auto' or one of {', '.join(map(repr, ALGORITHMS))}; "
                         f"got {algorithm!r}")
    own = {"pointwise": launch_pointwise.refusal, "depthwise": launch_depthwise.refusal,
           "winograd_nonfused": launch_winograd.refusal,
           "im2col_gemm": launch_im2col_gemm.refusal}.get(algorithm)
    why = own(geom) if own is not None else None
    if why is None and algorithm in GEMM_ALGORITHMS:
        why = gemm_grid_refusal(geom)
    return why


def check_forced(algorithm: str, geom) -> None:
    """A forced algorithm that cannot run ``geom`` is a ValueError saying why (api.md), whatever
    the executor: the reference refuses what the kernels would refuse."""
    if algorithm == "auto":
        return
    why = refusal(algorithm, geom)
    if why is not None:
        raise ValueError(f"algorithm={algorithm!r} cannot run this convolution: {why}")


def candidates(geom) -> tuple[str, ...]:
    """The public algorithms that can run ``geom`` (what autotuning measures)."""
    return tuple(a for a in conv_algorithms if refusal(a, geom) is None)


def choose(geom, dtype=np.float32) -> Choice:
    """The algorithm for ``geom`` with operands of ``dtype`` (a dtype or its name)."""
    tensor_cores = uses_tensor_cores(dtype)
    plain_gemm = refusal("pointwise", geom) is None  # 1x1, no padding (and a grid that fits)
    if geom.groups == geom.C and geom.groups > 1:
        multiplier = geom.K // geom.C
        return Choice("depthwise", f"groups == C == {geom.C} (depthwise, channel multiplier "
                                   f"{multiplier}): the depthwise kernels read each input once per tap")
    if plain_gemm and not tensor_cores:
        return Choice("pointwise", "1x1 filter without padding: a plain GEMM on the tensors")
    too_large = refusal("implicit_gemm", geom)
    if too_large is not None:
        return Choice("direct", f"the GEMM kernels cannot run it: {too_large}")
    if geom.K_per_group < DIRECT_MAX_FILTERS_PER_GROUP:
        return Choice("direct", f"{geom.K_per_group} filters per group (< "
                                f"{DIRECT_MAX_FILTERS_PER_GROUP}) would leave most of a GEMM "
                                "tile's columns idle (32 at the narrowest); the direct kernel "
                                "tiles 4 to 16 filters")
    if (not tensor_cores and launch_winograd.refusal(geom) is None
            and launch_winograd.pays_off(geom, "forward", dtype)):
        return Choice("winograd_nonfused",
                      f"3x3, stride 1, dilation 1, {geom.C_per_group} channels and "
                      f"{geom.K_per_group} filters per group: "
                      "Winograd F(4x4, 3x3) does 1/4 of the multiply-adds (F(2x2, 3x3) 4/9, "
                      "on planes under 7x7), and the GEMM outweighs its transforms")
    if plain_gemm:
        return Choice("implicit_gemm", "1x1 filter with 16-bit operands: the implicit GEMM's "
                                       "tensor-core tiles (the pointwise kernels have CUDA-core "
                                       "tiles only)")
    return Choice("implicit_gemm", f"general case: GEMM M={geom.gemm_m} (N*P*Q), "
                                   f"N={geom.K_per_group} (K/groups), K={geom.gemm_k} "
                                   "(C/groups*R*S) per group, no column buffer"
                                   + (", on the tensor cores" if tensor_cores else ""))
