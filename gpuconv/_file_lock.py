"""One process at a time on a cache file that several processes share."""
from __future__ import annotations

import contextlib
from pathlib import Path


@contextlib.contextmanager
def file_lock(path: Path):
    """Held while this process reads, changes or builds ``path``: another process that wants it
    waits (advisory, on ``path``'s sibling ``<name>.lock``). POSIX advisory locks; no lock where
    fcntl does not exist."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
