"""Public convolution functions: ``gpuconv.conv2d`` and ``gpuconv.conv_transpose2d`` (api.md).

Each front validates every argument once (``geometry.py``), then hands the call to its executor:
the NumPy reference, or the launchers (``launch.py``) that drive the CUDA kernels on a GPU or in
the CPU simulator.
"""
from __future__ import annotations

from .. import _state
from .._arrays import check_arrays
from ..reference import conv as reference
from . import heuristics, plans
from .geometry import (check_activation, check_algorithm, check_bias, check_conv_out,
                       check_data_format, check_residual, conv2d_geometry,
                       conv_algorithms, conv_transpose2d_geometry, layout_shape, nchw_output_size,
                       nchw_shape)

__all__ = ["conv2d", "conv_transpose2d", "conv_algorithms"]


def check_conv2d_arguments(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
                           activation=None, residual=None, algorithm="auto",
                           data_format="NCHW"):
    """Every check of ``conv2d`` but ``out``'s: (ArraySet, Conv2dGeometry, activation,
    algorithm, data_format), normalized. The JAX wrappers run it at trace time on stand-ins."""
    arrays = check_arrays({"x": x, "weight": weight, "bias": bias, "residual": residual},
                          ndim={"x": 4, "weight": 4, "bias": 1, "residual": 4})
    data_format = check_data_format(data_format)
    activation = check_activation(activation)
    algorithm = check_algorithm(algorithm)
    geom = conv2d_geometry(nchw_shape(x.shape, data_format), tuple(weight.shape),
                           stride, padding, dilation, groups)
    heuristics.check_forced(algorithm, geom)
    check_bias(bias, geom.K)
    check_residual(residual, geom, data_format)
    return arrays, geom, activation, algorithm, data_format


def check_conv_transpose2d_arguments(x, weight, bias=None, stride=1, padding=0,
                                     output_padding=0, groups=1, dilation=1, *,
                                     output_size=None, data_format="NCHW"):
    """Every check of ``conv_transpose2d``: (ArraySet, the geometry of the forward convolution
    it transposes, whose input is this call's output)."""
    arrays = check_arrays({"x": x, "weight": weight, "bias": bias},
                          ndim={"x": 4, "weight": 4, "bias": 1})
    data_format = check_data_format(data_format)
    geom = conv_transpose2d_geometry(nchw_shape(x.shape, data_format), tuple(weight.shape),
                                     stride, padding, output_padding, groups, dilation,
                                     nchw_output_size(output_size, data_format))
    check_bias(bias, geom.C)
    return arrays, geom


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           activation=None, residual=None, algorithm="auto", data_format="NCHW", out=None):
    """2-D convolution (cross-correlation, as torch.nn.functional.conv2d) with a fused epilogue:
    ``activation(conv(x, weight) + bias + residual)``.

    x: (N, C, H, W), or (N, H, W, C) with ``data_format="NHWC"``; weight: (K, C/groups, R, S);
    bias: (K,); residual: the output's shape in the same layout. ``padding``: int, (ph, pw),
    ((top, bottom), (left, right)), "valid" or "same". ``activation``: None, "relu", "tanh",
    "sigmoid". ``algorithm``: "auto" or one of ``conv_algorithms``. ``out``: a preallocated
    output (contiguous, or a channel slice of a contiguous buffer: ``buf[:, c0:c1]`` in NCHW,
    ``buf[..., c0:c1]`` in NHWC).
    """
    # A signature seen before replays its launches (plans.py): the checks below answered it then.
    key = None
    roles = {"x": x, "weight": weight, "bias": bias, "residual": residual}
    if out is None:
        key, y = plans.planned("conv2d", roles, (stride, padding, dilation, groups, activation,
                                                 algorithm, data_format))
        if y is not None:
            return y
    arrays, geom, activation, algorithm, data_format = check_conv2d_arguments(
        x, weight, bias, stride, padding, dilation, groups, activation=activation,
        residual=residual, algorithm=algorithm, data_format=data_format)
    out_shape = layout_shape(geom.output_shape, data_format)
    if out is not None:
        check_conv_out(out, out_shape, arrays, data_format,
                       {"x": x, "weight": weight, "bias": bias, "residual": residual})
    if geom.N == 0:
        return arrays.xp.empty(out_shape, dtype=arrays.dtype) if out is None else out
    executor = _state.executor_for(arrays.library)
    if executor == "reference":
        y = reference.conv2d(geom, x, weight, bias, residual, activation, data_format)
        if out is None:
            return y
        out[...] = y
        return out
    from . import launch
    return plans.run(key, roles,
                     lambda: launch.conv2d(geom, x, weight, bias, residual=residual,
                                           activation=activation, algorithm=algorithm,
                                           data_format=data_format, out=out, executor=executor),
                     recorded_if=lambda ran: ran in plans.RECORDED_ALGORITHMS)


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, *, output_size=None, data_format="NCHW"):
    """2-D transposed convolution, as torch.nn.functional.conv_transpose2d.

    x: (N, C_in, H, W), or (N, H, W, C_in) with ``data_format="NHWC"`` (the output in the same
    layout); weight: (C_in, K_out/groups, R, S); bias: (K_out,). ``output_size`` ((H, W), or
    the whole output shape in ``data_format`` order), when given, picks the output padding as
    ``torch.nn.ConvTranspose2d`` does, and ``output_padding`` is then ignored.
    """
    arrays, geom = check_conv_transpose2d_arguments(x, weight, bias, stride, padding,
                                                    output_padding, groups, dilation,
                                                    output_size=output_size,
                                                    data_format=data_format)
    # The transposed convolution's output is the input of the equivalent forward convolution.
    out_shape = layout_shape(geom.input_shape, data_format)
    if geom.N == 0:
        return arrays.xp.empty(out_shape, dtype=arrays.dtype)
    executor = _state.executor_for(arrays.library)
    if executor == "reference":
        if data_format == "NCHW":
            return reference.conv_transpose2d(geom, x, weight, bias)
        y = reference.conv_transpose2d(geom, x.transpose(0, 3, 1, 2), weight, bias)
        return arrays.xp.ascontiguousarray(y.transpose(0, 2, 3, 1))
    from . import launch
    return launch.conv_transpose2d(geom, x, weight, bias, data_format=data_format,
                                   executor=executor)

# The forward kernels' algorithm choice (issue 4): what "auto" picks and why, and autotuning.
from .autotune import set_autotune  # noqa: E402
from .explain import explain  # noqa: E402
__all__ += ["explain", "set_autotune"]
