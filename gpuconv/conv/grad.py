"""Gradients of conv2d, exported as ``gpuconv.grad.conv2d_input`` / ``conv2d_weight`` /
``conv2d_bias`` (the signatures of ``torch.nn.grad``, plus ``data_format``, ``algorithm`` and
``deterministic``).

``deterministic=True`` (or ``gpuconv.set_deterministic(True)``) asks the kernels for a bitwise
reproducible result (no floating-point atomics); the NumPy reference always is.
"""
from __future__ import annotations

from .. import _state
from .._arrays import check_arrays
from ..reference import conv as reference
from . import launch_backward, plans
from .geometry import (check_algorithm, check_data_format, check_shape, conv2d_geometry,
                       layout_shape, nchw_shape)

__all__ = ["conv2d_input", "conv2d_weight", "conv2d_bias"]


def _check_grad_output(grad_output, geom, data_format: str) -> None:
    expected = layout_shape(geom.output_shape, data_format)
    if tuple(grad_output.shape) != expected:
        raise ValueError(f"grad_output must have the convolution's output shape {expected} "
                         f"({data_format}), got {tuple(grad_output.shape)}")


@_state.resolving_deterministic
def conv2d_input(input_shape, weight, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                 deterministic=None, algorithm="auto", data_format="NCHW"):
    """Gradient of ``conv2d`` with respect to its input, of shape ``input_shape`` (in
    ``data_format``), given the weight and the gradient of the output."""
    roles = {"grad_output": grad_output, "weight": weight}
    key, replayed = plans.planned("conv2d_input", roles, (input_shape, stride, padding, dilation,
                                  groups, algorithm, data_format), deterministic=deterministic)
    if replayed is not None:
        return replayed
    arrays = check_arrays({"grad_output": grad_output, "weight": weight},
                          ndim={"grad_output": 4, "weight": 4})
    data_format = check_data_format(data_format)
    algorithm = check_algorithm(algorithm)
    deterministic = _state.is_deterministic(deterministic)
    input_shape = check_shape("input_shape", input_shape, data_format, minimum=(0, 1, 1, 1))
    geom = conv2d_geometry(nchw_shape(input_shape, data_format), tuple(weight.shape),
                           stride, padding, dilation, groups, x_name="input_shape")
    _check_grad_output(grad_output, geom, data_format)
    if algorithm != "auto":   # a forced algorithm that cannot run is refused on every executor
        launch_backward.choose_data_algorithm(geom, algorithm, arrays.dtype, data_format)
    if geom.N == 0:
        return arrays.xp.empty(input_shape, dtype=arrays.dtype)
    executor = _state.executor_for(arrays.library)
    if executor == "reference":
        return reference.conv2d_input(geom, weight, grad_output, data_format)
    from . import launch
    return plans.run(key, roles, lambda: launch.conv2d_input(
        geom, weight, grad_output, algorithm=algorithm, data_format=data_format,
        deterministic=deterministic, executor=executor))


@_state.resolving_deterministic
def conv2d_weight(x, weight_shape, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                  deterministic=None, algorithm="auto", data_format="NCHW"):
    """Gradient of ``conv2d`` with respect to its weight, of shape ``weight_shape``
    (K, C/groups, R, S), given the input and the gradient of the output."""
    roles = {"x": x, "grad_output": grad_output}
    key, replayed = plans.planned("conv2d_weight", roles, (weight_shape, stride, padding, dilation,
                                  groups, algorithm, data_format), deterministic=deterministic)
    if replayed is not None:
        return replayed
    arrays = check_arrays({"x": x, "grad_output": grad_output},
                          ndim={"x": 4, "grad_output": 4})
    data_format = check_data_format(data_format)
    algorithm = check_algorithm(algorithm)
    deterministic = _state.is_deterministic(deterministic)
    weight_shape = check_shape("weight_shape", weight_shape, "KCRS", minimum=(1, 1, 1, 1))
    geom = conv2d_geometry(nchw_shape(x.shape, data_format), weight_shape,
                           stride, padding, dilation, groups, weight_name="weight_shape")
    _check_grad_output(grad_output, geom, data_format)
    if algorithm != "auto":   # a forced algorithm that cannot run is refused on every executor
        launch_backward.choose_weight_algorithm(geom, algorithm, arrays.dtype, data_format)
    if geom.N == 0:
        # A sum over an empty batch.
        return arrays.xp.zeros(weight_shape, dtype=arrays.dtype)
    executor = _state.executor_for(arrays.library)
    if executor == "reference":
        return reference.conv2d_weight(geom, x, grad_output, data_format)
    from . import launch
    return plans.run(key, roles, lambda: launch.conv2d_weight(
        geom, x, grad_output, algorithm=algorithm, data_format=data_format,
        deterministic=deterministic, executor=executor))


@_state.resolving_deterministic
def conv2d_bias(grad_output, *, deterministic=None, data_format="NCHW"):
    """Gradient of ``conv2d`` with respect to its bias: ``grad_output`` summed over every axis
    but the channels, shape (K,)."""
    roles = {"grad_output": grad_output}
    key, replayed = plans.planned("conv2d_bias", roles, (data_format,),
                                  deterministic=deterministic)
    if replayed is not None:
        return replayed
    arrays = check_arrays({"grad_output": grad_output}, ndim={"grad_output": 4})
    data_format = check_data_format(data_format)
    deterministic = _state.is_deterministic(deterministic)
    channels = grad_output.shape[3 if data_format == "NHWC" else 1]
    if grad_output.size == 0:
        return arrays.xp.zeros((channels,), dtype=arrays.dtype)
    executor = _state.executor_for(arrays.library)
    if executor == "reference":
        return reference.conv2d_bias(grad_output, data_format)
    from . import launch
    return plans.run(key, roles, lambda: launch.conv2d_bias(
        grad_output, data_format=data_format, deterministic=deterministic, executor=executor))
