"""Helpers of the simulator's tests: kernels live in tests/simulator/kernels/*.cu.

Modules are memoized in the process and cached on disk, so each source compiles once per
session (and not at all when the disk cache is warm).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from gpuconv.simulator import SanitizerUnavailable, load_module

KERNELS = Path(__file__).resolve().parent / "kernels"
COMMON = Path(__file__).resolve().parents[2] / "kernels" / "common"
ORDERS = [("forward", 0), ("reverse", 0), ("random", 1), ("random", 2)]
# memory.cu's kernels, loaded as one module by every test that uses any of them.
MEMORY_KERNELS = ["poisoned_static", "dynamic_reverse", "dynamic_carved", "too_much_static",
                  "static_and_dynamic", "pair_sums", "maybe_null", "scalars"]


def load(file: str, names, **kwargs):
    """The module of tests/simulator/kernels/``file`` with kernels ``names``."""
    return load_module((KERNELS / file).read_text(), names, source_name=file,
                       include_dirs=[str(COMMON)], **kwargs)


def load_sanitized(file: str, names, sanitize: str):
    """Like ``load`` under a sanitizer; skips the test where the sanitizer cannot run."""
    try:
        return load(file, names, sanitize=sanitize)
    except SanitizerUnavailable as error:
        pytest.skip(str(error))


def line_of(file: str, snippet: str) -> str:
    """``"file:line"`` of the first line of tests/simulator/kernels/``file`` holding ``snippet``."""
    for number, text in enumerate((KERNELS / file).read_text().splitlines(), start=1):
        if snippet in text:
            return f"{file}:{number}"
    raise AssertionError(f"{snippet!r} is not in {file}")
