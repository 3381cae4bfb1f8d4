"""torch.nn.functional's spelling of the (height, width) arguments: besides an int or a pair, a
one-element sequence stands for the same value on both axes (ATen's expand_param_if_needed for
convolutions, the size-1 form of the pooling kernels' IntArrayRef arguments). gpuconv's own API
takes an int or a pair only; the torch front expands the one-element form before handing on."""
from __future__ import annotations


def expand_single(value):
    """``(v,)`` or ``[v]`` -> ``(v, v)``; anything else unchanged (checked by gpuconv)."""
    if isinstance(value, (list, tuple)) and len(value) == 1:
        return (value[0], value[0])
    return value
