"""torch.nn.functional's spelling of the (height, width) arguments: besides an int or a pair, a
one-element sequence stands for the same value on both axes (ATen's expand_param_if_needed for
convolutions, the size-1 form of the pooling kernels' IntArrayRef arguments; gpuconv's own
convolutions take an int or a pair only, as api.md lists), and a 0-d integer tensor stands for
its int. Also the image argument's rank and dtype, checked here where its name is ``input``.
"""
from __future__ import annotations

import re

import numpy as np
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
    if t is range or isinstance(value, (tuple, list)):  # a torch.Size (x.shape[-2:]) too
        return expand_single(tuple(value))
    return int_of_scalar_tensor(value)


def _is_integer_tensor(value) -> bool:
    return (isinstance(value, torch.Tensor) and not value.is_floating_point()
            and not value.is_complex() and value.dtype is not torch.bool)


def int_of_scalar_tensor(value):
    """An integer tensor of one element, 0-d or 1-d, -> its int (as ATen's int parser reads
    one: ``groups=``, ``stride=torch.tensor([2])``); anything else unchanged (checked by
    gpuconv)."""
    if _is_integer_tensor(value) and value.dim() <= 1 and value.numel() == 1:
        return int(value)
    return value


def int_sequence(value):
    """A sequence of sizes as torch's Python-level ``_pair`` and size arguments read one: a range
    or a 1-d integer tensor or NumPy array -> a tuple of ints, a tuple or list holding 0-d
    integer tensors -> one of ints (``output_size=(torch.tensor(19), torch.tensor(20))``, or
    ``skip.size()`` under torch.jit.trace, a torch.Size of 0-d tensors); anything else unchanged
    (checked by gpuconv). No one-element expansion: the arguments read this way take none."""
    if isinstance(value, range):
        return tuple(value)
    if _is_integer_tensor(value) and value.dim() == 1:
        return tuple(int(v) for v in value.tolist())
    if isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in "iu":
        return tuple(int(v) for v in value)
    if isinstance(value, (tuple, list)) and any(isinstance(v, torch.Tensor) for v in value):
        return (list if isinstance(value, list) else tuple)(int_of_scalar_tensor(v) for v in value)
    return value


def output_size_pair(value):
    """The adaptive poolings' ``output_size`` as torch reads it: a 1-d integer tensor of two
    elements, or a pair holding 0-d integer tensors (or None), -> a tuple of ints (or None);
    anything else unchanged (checked by gpuconv). Unlike the kernel arguments, no one-element
    or 0-d tensor spelling: torch refuses those here, and so does gpuconv."""
    if (_is_integer_tensor(value) and value.dim() == 1 and value.numel() == 2) or (
            isinstance(value, (tuple, list, range)) and len(value) == 2):
        return tuple(int_sequence(value))
    return value


# The dtypes gpuconv has kernels for (api.md), as torch names them.
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def is_unbatched(input, unbatched_allowed: bool = True) -> bool:
    """Whether ``input`` is an unbatched (C, H, W) image rather than a batch (N, C, H, W):
    another rank is a ValueError and a dtype without kernels a TypeError, both naming
    ``input`` as torch.nn.functional does (gpuconv's own checks see the array as ``x``). A
    non-tensor passes: the functions refuse it by name."""
    if not isinstance(input, torch.Tensor):
        return False
    rank = input.dim()
    if rank != 4 and not (unbatched_allowed and rank == 3):
        ranks = "3-D (unbatched: C, H, W) or 4-D" if unbatched_allowed else "4-D"
        raise ValueError(f"input must be {ranks} (N, C, H, W), got shape {tuple(input.shape)}")
    if input.dtype not in FLOAT_DTYPES:
        raise TypeError(f"input must have a floating dtype (torch.float16, torch.bfloat16, "
                        f"torch.float32, torch.float64), got {input.dtype}")
    return rank == 3


def check_batched(input) -> None:
    """``is_unbatched``'s checks for a function that takes batches only (N, C, H, W)."""
    is_unbatched(input, unbatched_allowed=False)


# gpuconv's checks call the image argument ``x`` (api.md's name); torch.nn.functional's, and so
# gpuconv.torch's, is ``input``. The word x as a name: not inside a word, not a size's "by" sign
# ("3x3", "(1, 1)x(2, 2)", "16 x 64", "filters x 8"), not quoted.
_IMAGE_NAMED_X = re.compile(r"(?<![\w)\]'\"])(?<!\d )x(?![\w(\['\"])(?! \d)")


def name_input_as_torch(error: ValueError | TypeError) -> None:
    """Rename gpuconv's ``x`` to ``input`` in the message of a ValueError or TypeError raised
    by a gpuconv.torch call (in place: the exception keeps its type and traceback)."""
    if error.args and isinstance(error.args[0], str):
        error.args = (_IMAGE_NAMED_X.sub("input", error.args[0]), *error.args[1:])
