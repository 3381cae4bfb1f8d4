"""Launchers of adaptive pooling and spatial pyramid pooling, forward and backward
(kernels/pool/adaptive_pool.cu, kernels/pool/spp.cu).

Every backward is a gather (bitwise reproducible in both modes; ``deterministic`` changes
nothing). A pyramid of up to ``SPP_LEVELS_PER_LAUNCH`` levels is one launch; a longer one is
split into groups of that many levels, each writing its slice of the features (the backward of
the later groups adds to the first's result, still in a fixed order).
"""
from __future__ import annotations

import numpy as np

from .geometry import AdaptivePool2dGeometry, SpatialPyramidGeometry
from .._plans import empty
from .launch_common import (BOOLS, TYPES, bound_tables, channel_vectors, check_int32,
                            contiguous, ctype, flag, forward_operands, i32, launch_elementwise,
                            layout_shape, nhwc, no_indices, pool_shape, register_family, xp_for)
from .launch_global import global_avg_pool2d, global_reduce, grad_global_avg_pool2d
from .launch_switches import bins_overlap, max_pool_backward

SPP_LEVELS_PER_LAUNCH = 8   # the kernels' scalar level arguments l0 .. l7

# I: the forward writes indices; B: kTwoBins; the forwards' and the average backward's last flag:
# NHWC channel vectors (launch_common.channel_vectors). SPP's M: max (else average)
ADAPTIVE_POOL = register_family(
    "pool/adaptive_pool.cu", "adaptive_max_pool2d_forward<{T}, {L}, {I}, false>",
    "adaptive_max_pool2d_forward<{T}, true, {I}, true>",
    "adaptive_avg_pool2d_forward<{T}, {L}, false>", "adaptive_avg_pool2d_forward<{T}, true, true>",
    "adaptive_max_pool2d_backward<{T}, {L}, {B}>",
    "adaptive_avg_pool2d_backward<{T}, {L}, {B}, false>",
    "adaptive_avg_pool2d_backward<{T}, true, {B}, true>", T=TYPES, L=BOOLS, I=BOOLS, B=BOOLS)
# Indices are meaningful for max only: average is instantiated without them.
SPP = register_family(
    "pool/spp.cu", "spatial_pyramid_pool2d_forward<{T}, {L}, true, {I}>",
    "spatial_pyramid_pool2d_forward<{T}, {L}, false, false>",
    "spatial_pyramid_pool2d_backward<{T}, {L}, {M}>", T=TYPES, L=BOOLS, I=BOOLS, M=BOOLS)


# --------------------------------------------------------------------------------------------
# adaptive pooling


def _is_global(geom: AdaptivePool2dGeometry) -> bool:
    """One bin per plane: the global pooling reductions do it (a block of threads per plane
    instead of one thread looping over H*W: PSPNet's bin-1 level, 2048 x 65 x 65, took 497 us
    that way on an H100 against PyTorch's 112). The max backward keeps the adaptive path, whose
    indices check api.md asks for."""
    return geom.P == 1 and geom.Q == 1


def adaptive_max_indices(geom: AdaptivePool2dGeometry, x, data_format: str, executor: str,
                         return_indices: bool = True):
    """(values, indices or None) of adaptive max pooling; x contiguous in ``data_format``."""
    xp = xp_for(executor)
    y = empty(xp, layout_shape(geom.N, geom.C, geom.P, geom.Q, data_format), x.dtype)
    indices = empty(xp, y.shape, np.int64) if return_indices else None
    vectors = channel_vectors(data_format, geom.C, x, y, *((indices,) if return_indices else ()))
    name = (f"adaptive_max_pool2d_forward<{ctype(x.dtype)}, {nhwc(data_format)}, "
            f"{flag(return_indices)}, {flag(vectors > 1)}>")
    launch_elementwise(ADAPTIVE_POOL, name, executor, y.size // vectors,
                       (x, y, indices if return_indices else no_indices(xp),
                        *pool_shape(geom)))
    return y, indices


def adaptive_max_pool2d(geom: AdaptivePool2dGeometry, x, *, return_indices: bool,
                        data_format: str, executor: str):
    xp = xp_for(executor)
    x = contiguous(xp, x)
    check_int32(x, geom.N * geom.C * geom.P * geom.Q)
    if _is_global(geom):
        y, indices = global_reduce(geom, x, data_format, executor, is_max=True,
                                   with_indices=return_indices)
    else:
        y, indices = adaptive_max_indices(geom, x, data_format, executor, return_indices)
    return (y, indices) if return_indices else y


def adaptive_avg_pool2d(geom: AdaptivePool2dGeometry, x, *, data_format: str, executor: str):
    if _is_global(geom):
        return global_avg_pool2d(geom, x, data_format=data_format, executor=executor)
    x, y = forward_operands(xp_for(executor), geom, x, data_format)
    vectors = channel_vectors(data_format, geom.C, x, y)
    name = (f"adaptive_avg_pool2d_forward<{ctype(x.dtype)}, {nhwc(data_format)}, "
            f"{flag(vectors > 1)}>")
    launch_elementwise(ADAPTIVE_POOL, name, executor, y.size // vectors,
                       (x, y, *pool_shape(geom)))
    return y


def _table_args(geom: AdaptivePool2dGeometry, per_thread: int = 1) -> tuple[np.int32, int]:
    """The bin tables of the backward gathers (kernels/common/adaptive_bins.cuh), whose threads
    each take ``per_thread`` input elements."""
    return bound_tables(2 * geom.H + geom.P + 2 * geom.W + geom.Q,
                        geom.N * geom.C * geom.H * geom.W // per_thread)


def _two_bins(geom: AdaptivePool2dGeometry) -> str:
    """The backward gathers' kTwoBins: at most two bins per axis hold an element, as when the
    pooling shrinks both axes (P <= H, Q <= W)."""
    return "true" if geom.P <= geom.H and geom.Q <= geom.W else "false"


def grad_adaptive_max_pool2d(geom: AdaptivePool2dGeometry, grad_output, x, *, indices,
                             data_format: str, deterministic: bool, executor: str,
                             indices_scan=None):
    use_tables, smem = _table_args(geom)
    return max_pool_backward(
        ADAPTIVE_POOL, "adaptive_max_pool2d_backward", grad_output, x, indices,
        lambda x: adaptive_max_indices(geom, x, data_format, executor)[1],
        (*pool_shape(geom), use_tables), geom, overlapping=bins_overlap(geom),
        data_format=data_format, deterministic=deterministic, executor=executor,
        shared_mem=smem, gather_template_tail=f", {_two_bins(geom)}",
        indices_scan=indices_scan)


def grad_adaptive_avg_pool2d(geom: AdaptivePool2dGeometry, grad_output, x, *, data_format: str,
                             deterministic: bool, executor: str):
    if _is_global(geom):
        return grad_global_avg_pool2d(geom, grad_output, x, data_format=data_format,
                                      deterministic=deterministic, executor=executor)
    xp = xp_for(executor)
    grad_output = contiguous(xp, grad_output)
    check_int32(x, grad_output)
    grad_input = empty(xp, layout_shape(geom.N, geom.C, geom.H, geom.W, data_format),
                       grad_output.dtype)
    vectors = channel_vectors(data_format, geom.C, grad_output, grad_input)
    name = (f"adaptive_avg_pool2d_backward<{ctype(grad_output.dtype)}, {nhwc(data_format)}, "
            f"{_two_bins(geom)}, {flag(vectors > 1)}>")
    use_tables, smem = _table_args(geom, vectors)
    launch_elementwise(ADAPTIVE_POOL, name, executor, grad_input.size // vectors,
                       (grad_output, grad_input, *pool_shape(geom), use_tables),
                       smem)
    return grad_input


# --------------------------------------------------------------------------------------------
# spatial pyramid pooling


def _level_groups(geom: SpatialPyramidGeometry):
    """(feature_base, levels) per launch: consecutive groups of at most 8 levels."""
    base = 0
    for start in range(0, len(geom.levels), SPP_LEVELS_PER_LAUNCH):
        group = geom.levels[start:start + SPP_LEVELS_PER_LAUNCH]
        yield base, group
        base += geom.C * sum(l * l for l in group)


def _level_args(group):
    padded = tuple(group) + (0,) * (SPP_LEVELS_PER_LAUNCH - len(group))
    return (i32(len(group)), *(i32(l) for l in padded))


def _spp_forward(geom: SpatialPyramidGeometry, x, data_format: str, executor: str,
                 with_indices: bool):
    xp = xp_for(executor)
    features = geom.output_shape[1]
    y = empty(xp, (geom.N, features), x.dtype)
    indices = empty(xp, y.shape, np.int64) if with_indices else no_indices(xp)
    is_max = geom.mode == "max"
    name = (f"spatial_pyramid_pool2d_forward<{ctype(x.dtype)}, {nhwc(data_format)}, "
            f"{flag(is_max)}, {flag(with_indices)}>")
    for base, group in _level_groups(geom):
        launch_elementwise(SPP, name, executor, geom.N * geom.C * sum(l * l for l in group),
                           (x, y, indices, *pool_shape(geom), i32(features),
                            i32(base), *_level_args(group)))
    return y, indices


def spatial_pyramid_pool2d(geom: SpatialPyramidGeometry, x, *, data_format: str, executor: str):
    xp = xp_for(executor)
    x = contiguous(xp, x)
    check_int32(x, geom.N * geom.output_shape[1])
    return _spp_forward(geom, x, data_format, executor, with_indices=False)[0]


def grad_spatial_pyramid_pool2d(geom: SpatialPyramidGeometry, grad_output, x, *,
                                data_format: str, deterministic: bool, executor: str):
    xp = xp_for(executor)
    x = contiguous(xp, x)
    grad_output = contiguous(xp, grad_output)
    check_int32(x, grad_output)
    is_max = geom.mode == "max"
    indices = _spp_forward(geom, x, data_format, executor, with_indices=True)[1] if is_max \
        else no_indices(xp)
    grad_input = empty(xp, x.shape, grad_output.dtype)
    name = (f"spatial_pyramid_pool2d_backward<{ctype(grad_output.dtype)}, {nhwc(data_format)}, "
            f"{flag(is_max)}>")
    for launch_number, (base, group) in enumerate(_level_groups(geom)):
        launch_elementwise(SPP, name, executor, grad_input.size,
                           (grad_output, indices, grad_input, *pool_shape(geom),
                            i32(geom.output_shape[1]), i32(base), i32(1 if launch_number else 0),
                            *_level_args(group)))
    return grad_input
