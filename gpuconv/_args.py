"""Argument normalization shared by every operation family.

Each helper takes the *public name* of the argument it checks, so that every error message names
the argument and the rule it broke (the contract in api.md). Booleans are rejected where an int
is expected: ``stride=True`` is almost certainly a bug, and PyTorch rejects it too.
"""
from __future__ import annotations

import functools
import math
import numbers
import operator
import sys
from typing import Any

import numpy as np


def is_int(v: Any) -> bool:
    """Whether torch would read v as an int (its __index__), bools excepted."""
    t = type(v)
    if t is int:             # the common case, without the slower ABC check below
        return True
    if t is np.ndarray:
        # torch reads an int through ``__index__``, which a 0-d integer NumPy array has too (a
        # size computed with NumPy); a 0-d bool or float array it refuses.
        return v.ndim == 0 and v.dtype.kind in "iu"
    if isinstance(v, (bool, np.bool_)):
        return False
    if isinstance(v, numbers.Integral):
        return True
    if not hasattr(t, "__index__"):     # a pair, a float, None...: no exception to raise
        return False
    try:                     # any other object torch reads as an int: one with __index__
        operator.index(v)
    except TypeError:
        return False
    return True


# --------------------------------------------------------------------------------------------
# memoized argument checks
#
# A call's host time is part of what a user waits for (a small layer's kernel runs in ~20 us), so
# the pure functions that validate arguments and derive a geometry remember their results for
# the argument values seen before. Only "plain" values are keys: exact ints, bools and floats
# (tagged, so that True, 1 and 1.0 are different keys; a float by its bits, so that -0.0 and
# 0.0 differ and a NaN equals itself), strings, None and tuples/lists of those. A NumPy scalar
# equals a Python number and hashes like one, so it is never a key (it takes the checked path).
# Failures are not remembered: an invalid call raises every time.

_PLAIN_ATOMS = (int, str, type(None))
# A bool is keyed apart from the int it equals (flags such as ceil_mode are bools), with a tag no
# argument value can be.
_BOOL_TAG = object()
_FLOAT_TAG = object()
MEMO_ENTRIES = 4096


def _plain(value: Any):
    t = type(value)
    if t in _PLAIN_ATOMS:
        return value
    if t is bool:
        return (_BOOL_TAG, value)
    if t is float:
        return (_FLOAT_TAG, value.hex())
    if t is tuple or t is list:
        # A loop, not a generator: this key is built on every call, and shapes and (h, w)
        # pairs (flat ints) are the usual items; a call's scalars hold such pairs, which are
        # their own keys.
        items = []
        for v in value:
            tv = type(v)
            if tv is int or tv is str or v is None or (
                    tv is tuple and len(v) == 2 and type(v[0]) is int and type(v[1]) is int):
                items.append(v)
            else:
                items.append(_plain(v))
        return tuple(items)
    raise _NotPlain


class _NotPlain(Exception):
    pass


def memoized_check(fn):
    """``fn`` (a pure function of its arguments that returns an immutable value or raises, and
    treats a list like the tuple of its items) answered from a table for plain arguments already
    seen (at most MEMO_ENTRIES of them)."""
    table: dict = {}

    @functools.wraps(fn)
    def checked(*args, **kwargs):
        try:
            key = (_plain(args), _plain(tuple(sorted(kwargs.items()))) if kwargs else ())
        except _NotPlain:
            return fn(*args, **kwargs)
        try:
            return table[key]
        except KeyError:
            pass
        result = fn(*args, **kwargs)
        if len(table) < MEMO_ENTRIES:
            table[key] = result
        return result

    checked.memo = table
    return checked


# The largest value an argument that reaches the kernels as a 32-bit int may take (a padding, a
# window size, a sampling ratio). Strides and dilations are exempt where a huge one is
# meaningful (conv/geometry.unused_as_one).
INT32_MAX = 2 ** 31 - 1


def as_int(name: str, value: Any, *, minimum: int | None = None,
           maximum: int | None = None) -> int:
    """A single integer argument, optionally bounded below and above."""
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        limit = "2**31 - 1 (the kernels take 32-bit ints)" if maximum == INT32_MAX else maximum
        raise ValueError(f"{name} must be <= {limit}, got {value}")
    return value


def as_pair(name: str, value: Any, *, minimum: int | None = None,
            maximum: int | None = None, single: bool = False) -> tuple[int, int]:
    """An int or a length-2 sequence of ints -> (h, w), as torch's ``_pair`` (api.md's forms).
    ``single``: a one-element sequence (v,) stands for (v, v) too, as torch.nn.functional takes
    it for the window poolings' kernel_size, stride, padding, dilation (api.md lists no forms
    there); not for the convolutions, whose forms api.md lists (an int or (h, w): gpuconv.torch
    expands torch's one-element spelling before handing on), nor where torch refuses it too
    (max_unpool2d, the adaptive and ROI output sizes)."""
    if is_int(value):
        v = as_int(name, value, minimum=minimum, maximum=maximum)
        return (v, v)
    if isinstance(value, (tuple, list)):
        if single and len(value) == 1:
            v = as_int(f"{name}[0]", value[0], minimum=minimum, maximum=maximum)
            return (v, v)
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair (h, w), got {len(value)} values: {value!r}")
        return (as_int(f"{name}[0]", value[0], minimum=minimum, maximum=maximum),
                as_int(f"{name}[1]", value[1], minimum=minimum, maximum=maximum))
    raise TypeError(f"{name} must be an int or a pair (h, w), got {type(value).__name__} {value!r}")


def sequence_of(value: Any) -> Any:
    """A 1-D NumPy array (``np.array([h, w])``, a computed shape) as the list of its items, which
    torch accepts wherever it takes a sequence of sizes; anything else unchanged."""
    if isinstance(value, np.ndarray) and value.ndim == 1:
        return value.tolist()
    return value


def as_float(name: str, value: Any, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


def as_flag(name: str, value: Any) -> bool:
    """A bool argument that torch.nn.functional hands to ATen as a ``bool`` (ceil_mode,
    count_include_pad): not an int, which ATen's argument parser refuses with a TypeError where
    Python-level flags (``as_bool``) take 0 and 1. NumPy's bool (what comparisons of arrays
    give) is a bool here as everywhere in gpuconv (ATen refuses it too)."""
    if type(value) is bool:
        return value
    if not isinstance(value, np.bool_):
        raise TypeError(f"{name} must be a bool (True or False), got {type(value).__name__} "
                        f"{value!r}")
    return bool(value)


def as_bool(name: str, value: Any) -> bool:
    # NumPy's bool (what a comparison of arrays gives) is a bool too; torch accepts it where a
    # flag is read in Python (max_pool2d's return_indices, torchvision's aligned).
    if not isinstance(value, (bool, np.bool_)) and not (is_int(value) and value in (0, 1)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return bool(value)


def as_choice(name: str, value: Any, choices: tuple) -> Any:
    if type(value) is str and value in choices:     # the common case, checked first
        return value
    if not isinstance(value, (str, type(None))) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def is_holdable(shape: tuple) -> bool:
    """Whether an array can hold ``shape``. NumPy's limit: the product of the non-zero sizes, in
    bytes (8 per element here), within sys.maxsize; an empty shape is held to it too."""
    return math.prod(max(int(d), 1) for d in shape) * 8 <= sys.maxsize


def check_holdable(name: str, value: Any, shape: tuple) -> None:
    """An output of ``shape`` that no array can hold (is_holdable) is a ValueError naming
    ``name``, the argument that sizes it, rather than an allocation error naming none."""
    if not is_holdable(shape):
        raise ValueError(f"{name}={value!r} gives an output of shape {tuple(shape)}: more than "
                         "an array can hold")
