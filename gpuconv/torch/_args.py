"""torch.nn.functional's spelling of the (height, width) arguments: besides an int or a pair, a
one-element sequence stands for the same value on both axes (ATen's expand_param_if_needed for
convolutions, the size-1 form of the pooling kernels' IntArrayRef arguments; gpuconv's own
convolutions take an int or a pair only, as api.md lists), and a 0-d integer tensor stands for
its int."""
from __future__ import annotations

import torch


def expand_single(value):
    """``(v,)`` or ``[v]`` -> ``(v, v)``; a 0-d integer tensor (alone or as an item) -> its
    int, as ATen's int-list parser reads one; anything else unchanged (checked by gpuconv)."""
    t = type(value)
    if t is int:                        # the common case first: this runs on every call
        return value
    if t is tuple or t is list:
        if len(value) == 2 and type(value[0]) is int and type(value[1]) is int:
            return value                # a layer's (h, w) attributes: on every module call
        if any(isinstance(v, torch.Tensor) for v in value):
            value = tuple(int_of_scalar_tensor(v) for v in value)
        return (value[0], value[0]) if len(value) == 1 else value
    return int_of_scalar_tensor(value)


def _is_integer_tensor(value) -> bool:
    return (isinstance(value, torch.Tensor) and not value.is_floating_point()
            and not value.is_complex() and value.dtype is not torch.bool)


def int_of_scalar_tensor(value):
    """A 0-d integer tensor -> its int (as ATen's int parser reads one: ``groups=``,
    ``divisor_override=``); anything else unchanged (checked by gpuconv)."""
    if _is_integer_tensor(value) and value.dim() == 0:
        return int(value)
    return value


def output_size_pair(value):
    """The adaptive poolings' ``output_size`` as torch reads it: a 1-d integer tensor of two
    elements, or a pair holding 0-d integer tensors (or None), -> a tuple of ints (or None);
    anything else unchanged (checked by gpuconv). Unlike the kernel arguments, no one-element
    or 0-d tensor spelling: torch refuses those here, and so does gpuconv."""
    if _is_integer_tensor(value) and value.dim() == 1 and value.numel() == 2:
        return tuple(int(v) for v in value)
    if type(value) in (tuple, list) and len(value) == 2:
        return tuple(int_of_scalar_tensor(v) for v in value)
    return value
