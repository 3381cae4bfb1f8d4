"""CuPy handles on streams another library owns (torch's current stream, XLA's stream of a
jitted call), so that gpuconv's kernels and CuPy's own copies and allocations queue on them.

A handle wraps the pointer and holds nothing else: one per (pointer, device) serves every call
on that stream, and a new one costs ~1 us of host time per call (bench/model_profile.py on an
H100), which a converted model pays at every layer.
"""
from __future__ import annotations

import warnings

_STREAMS: dict = {}
_MAX_STREAMS = 64   # streams come and go (torch.cuda.Stream()): the cache stays bounded


def external_stream(cupy, pointer: int, device: int):
    """``cupy.cuda.ExternalStream(pointer, device)``, remembered."""
    key = (pointer, device)
    stream = _STREAMS.get(key)
    if stream is None:
        if len(_STREAMS) >= _MAX_STREAMS:
            _STREAMS.clear()
        # CuPy 14 deprecates the constructor in favour of Stream.from_external(obj), which
        # needs an object with __cuda_stream__ where torch and XLA hand a bare pointer.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            stream = _STREAMS[key] = cupy.cuda.ExternalStream(pointer, device)
    return stream
