"""Turning a failed launch (the runtime's simt_error) into the matching Python exception."""
from __future__ import annotations

import functools
import re
import shutil
import subprocess

from . import _abi, _toolchain
from .errors import (DeadlockError, KernelFault, LaunchBoundsError, SharedMemoryLimitError,
                     SimulatorError)

_EXCEPTIONS = {_abi.STATUS_FAULT: KernelFault, _abi.STATUS_DEADLOCK: DeadlockError,
               _abi.STATUS_RESOURCE: SharedMemoryLimitError,
               _abi.STATUS_LAUNCH_BOUNDS: LaunchBoundsError}


def raise_for(error: _abi.Error, kernel: str) -> None:
    if error.status == _abi.STATUS_OK:
        return
    message = error.message.decode(errors="replace")
    source = error.source.decode(errors="replace") or None
    if error.has_pc:
        where = symbolize(error.pc_object.decode(errors="replace"), error.pc_offset)
        if where:
            message += f", at {where}"
            source = source or where.split(" ")[0]
    kwargs = {"kernel": kernel, "source": source}
    if error.has_block:
        kwargs["block"] = tuple(error.block)
    if error.has_thread:
        kwargs["thread"] = tuple(error.thread)
    raise _EXCEPTIONS.get(error.status, SimulatorError)(message, **kwargs)


@functools.lru_cache(maxsize=256)
def symbolize(shared_object: str, offset: int) -> str | None:
    """``"file:line (function)"`` of an instruction, from the module's line tables (-g1)."""
    addr2line = shutil.which("addr2line")
    if not addr2line or not shared_object:
        return None
    try:
        out = subprocess.run([addr2line, "-e", shared_object, "-f", "-C", "-i", hex(offset)],
                             capture_output=True, text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = out.splitlines()
    frames = []
    for function, location in zip(lines[0::2], lines[1::2]):
        if not location.startswith("??"):
            location = re.sub(r" \(discriminator \d+\)$", "", location)
            location = location[2:] if location.startswith("./") else location
            frames.append(f"{location} ({function})")
    # -i lists the inlining chain innermost first: a fault inside a force-included runtime
    # helper (cp.async's source read) is named by the kernel line that called it.
    kernel = [f for f in frames if not f.startswith(str(_toolchain.RUNTIME_DIR))]
    return (kernel or frames or [None])[0]
