"""CUDA graph capture: what gpuconv does differently while the current stream is being captured.

A capture (``torch.cuda.graph``, ``cupy.cuda.Stream.begin_capture``, torch.compile's
``mode="reduce-overhead"``) records the kernels launched on a stream instead of running them, so
nothing may wait for the device: a host read of a device value fails and invalidates the
capture. Two things in gpuconv read the device on the host:
- the scans of values a caller hands in (max_unpool2d's indices, the region-of-interest boxes),
  whose answer decides whether the call raises a ValueError: refused under capture with a
  RuntimeError saying so (``refuse_host_read``), since a replay could not raise;
- the autotuner's timing of a new case (CUDA events): under capture "auto" takes the cached
  choice of the case if the warm-up run measured it, else the heuristic's (``is_capturing``).
Everything else (the launches, fresh arrays, memsets) is stream work, which a capture records.
"""
from __future__ import annotations

import sys


def is_capturing(executor: str) -> bool:
    """Whether CuPy's current stream is being captured into a CUDA graph (never for the
    reference and the simulator, which run on the host)."""
    if executor != "cupy":
        return False
    cupy = sys.modules.get("cupy")
    return cupy is not None and bool(cupy.cuda.get_current_stream().is_capturing())


def refuse_host_read(answer, what: str) -> None:
    """A RuntimeError if ``answer``, a device array whose value decides whether the call raises
    (a scan of ``what``), would be read while the stream is captured."""
    cupy = sys.modules.get("cupy")
    if cupy is None or not isinstance(answer, cupy.ndarray) or not is_capturing("cupy"):
        return
    raise RuntimeError(
        f"gpuconv checks {what} on the device and reads the answer on the host, which a CUDA "
        "graph capture forbids (a replay could not raise the error for a bad value). Call this "
        "function outside the capture; torch.compile(mode=\"reduce-overhead\") does that "
        "itself, running it between its CUDA graphs.")
