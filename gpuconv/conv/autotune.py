"""Measured algorithm choice for conv2d(algorithm="auto"), cached on disk.

``gpuconv.set_autotune(True)`` (or ``GPUCONV_AUTOTUNE=1`` in the environment) makes the first
"auto" call of each case time every algorithm that can run it and keep the fastest in a JSON
file, keyed by the geometry, dtype, layout, device and package version; later calls, in this
process or another, read the choice back. The cache file is ``GPUCONV_AUTOTUNE_CACHE`` if set,
else ``$XDG_CACHE_HOME/gpuconv/autotune.json`` (``~/.cache/...``). Measuring synchronizes with
the device (CUDA events), once per new case; a cached case costs a dictionary lookup.

The epilogue (bias, residual, activation) is not part of the key: it costs every algorithm the
same. The simulator is a device of its own ("simulator"), timed with the wall clock, so the
whole path is testable on a CPU; tests install a fake timer with ``set_timer``.
"""
from __future__ import annotations

import json
import os
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from .. import __version__, _state
from .._file_lock import file_lock

ENV_ENABLE = "GPUCONV_AUTOTUNE"
ENV_CACHE = "GPUCONV_AUTOTUNE_CACHE"
GPU_REPEATS = 5

_enabled: bool | None = None   # None: follow the environment
_timer: Callable | None = None
_lock = threading.Lock()
# A fork while another thread holds it would leave the child a lock that nothing releases.
os.register_at_fork(after_in_child=lambda: globals().update(_lock=threading.Lock()))
_memory: dict[str, dict[str, dict]] = {}   # cache path -> {key: entry}


def set_autotune(flag: bool = True) -> None:
    """Turn autotuning of conv2d(algorithm="auto") on or off for this process (overrides
    GPUCONV_AUTOTUNE). NumPy's bool is a bool here, as for ``set_deterministic``."""
    global _enabled
    _enabled = _state._flag("flag", flag, "a bool")


def enabled() -> bool:
    if _enabled is not None:
        return _enabled
    return _state.env_flag(ENV_ENABLE)


def set_timer(timer: Callable | None) -> None:
    """Replace how a candidate is timed: ``timer(run, executor) -> seconds`` (None: default)."""
    global _timer
    _timer = timer


def cache_path() -> Path:
    env = os.environ.get(ENV_CACHE, "").strip()
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.join(Path.home(), ".cache")
    return Path(base) / "gpuconv" / "autotune.json"


def device_name(executor: str) -> str:
    if executor != "cupy":
        return "simulator"
    import cupy
    device = cupy.cuda.Device()
    props = cupy.cuda.runtime.getDeviceProperties(device.id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return f"{name} sm_{props['major']}{props['minor']}"


def cache_key(geom, dtype, data_format: str, executor: str) -> str:
    fields = {name: getattr(geom, name) for name in geom.__dataclass_fields__}
    return json.dumps({"geometry": fields, "dtype": np.dtype(dtype).name, "layout": data_format,
                       "device": device_name(executor), "version": __version__}, sort_keys=True)


def _load(path: Path) -> dict[str, dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # no cache yet, or an unreadable one: measure again
    return data if isinstance(data, dict) else {}


def _store(path: Path, key: str, entry: dict) -> None:
    """Merge one entry into the file atomically: under a file lock, so that processes storing
    at once do not drop each other's entries (read, merge, replace), and by a rename, so that
    a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path):
        data = _load(path)
        data[key] = entry
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, path)


def lookup(geom, dtype, data_format: str, executor: str, candidates) -> dict | None:
    """The cached entry {"algorithm", "seconds"} of a case, or None where there is none or it
    does not name one of ``candidates`` (an entry edited by hand, or written by another version
    of the heuristics: measure again)."""
    path = cache_path()
    key = cache_key(geom, dtype, data_format, executor)
    with _lock:
        memory = _memory.setdefault(str(path), {})
        if key not in memory:
            entry = _load(path).get(key)
            if entry is None:
                return None
            memory[key] = entry
        entry = memory[key]
    if not isinstance(entry, dict) or entry.get("algorithm") not in candidates:
        return None
    return entry


def _default_timer(run: Callable[[], None], executor: str) -> float:
    run()  # warm-up: compiles the family and fills caches
    if executor != "cupy":
        import time
        start = time.perf_counter()
        run()
        return time.perf_counter() - start
    import cupy
    times = []
    for _ in range(GPU_REPEATS):
        begin, end = cupy.cuda.Event(), cupy.cuda.Event()
        begin.record()
        run()
        end.record()
        end.synchronize()
        times.append(cupy.cuda.get_elapsed_time(begin, end) / 1e3)
    return float(np.median(times))


def tune(geom, dtype, data_format: str, executor: str, candidates, run: Callable[[str], None]) -> dict:
    """The cached entry of a case, measuring ``run(algorithm)`` for each candidate first if the
    case is new. A candidate that raises (a launch limit) is recorded as unusable."""
    entry = lookup(geom, dtype, data_format, executor, candidates)
    if entry is not None:
        return entry
    timer = _timer or _default_timer
    seconds: dict[str, float | None] = {}
    for algorithm in candidates:
        try:
            seconds[algorithm] = float(timer(lambda: run(algorithm), executor))
        except ValueError:
            seconds[algorithm] = None
    usable = {a: t for a, t in seconds.items() if t is not None}
    if not usable:
        raise ValueError(f"autotune: no algorithm could run this case (tried {', '.join(candidates)})")
    entry = {"algorithm": min(usable, key=usable.get), "seconds": seconds}
    path = cache_path()
    key = cache_key(geom, dtype, data_format, executor)
    with _lock:
        _memory.setdefault(str(path), {})[key] = entry
        try:
            _store(path, key, entry)
        except OSError as error:  # a read-only cache location: keep the choice in memory
            warnings.warn(f"gpuconv autotune: cannot write the cache {path}: {error}", stacklevel=3)
    return entry


def clear_memory() -> None:
    """Forget what this process read or measured (the file stays): for tests."""
    with _lock:
        _memory.clear()
