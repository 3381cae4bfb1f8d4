"""The text every compiler of a kernel family is given, and compile logs mapped back to it.

Both the loader (CuPy on a GPU, g++ in the simulator) and the offline NVRTC check compile
``family_code(family)``: the family's ``.cu`` file behind two added lines,

    // gpuconv included headers sha256 <digest of every header it includes, recursively>
    #line 1 "conv/direct.cu"

The digest line exists because CuPy's disk cache key covers the source text but not included
headers: without it an edited ``.cuh`` would silently reuse a stale binary. The ``#line`` directive
keeps line numbers and names the real file, so a compiler error reads ``conv/direct.cu(12)``
(NVRTC) or ``conv/direct.cu:12:5`` (g++) whatever name the compiler gave the program.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

from ._paths import common_dir, kernel_root

_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*[<"]([^>"]+)[>"]', re.MULTILINE)

# "file(12): error: ..." from NVRTC/EDG, "file:12:5: error: ..." from g++.
_NVRTC_DIAGNOSTIC = re.compile(
    r"^(?P<file>[^\s(][^(\n]*)\((?P<line>\d+)\): (?P<kind>(?:catastrophic )?error|warning)"
    r"(?P<text>.*)$", re.MULTILINE)
_GCC_DIAGNOSTIC = re.compile(
    r"^(?P<file>[^\s:][^:\n]*):(?P<line>\d+):(?:\d+:)? (?P<kind>(?:fatal )?error|warning)"
    r"(?P<text>.*)$", re.MULTILINE)


# NVRTC's pseudo file for the name expressions (nvrtcAddNameExpression).
_NAME_MAP = "__nv_name_map"


class KernelCompileError(RuntimeError):
    """A kernel family failed to compile. ``errors`` lists ``(file, line, message)`` with file
    relative to ``kernels/`` (absolute for sources outside it); ``log`` is the whole compiler log
    with the same file names."""

    def __init__(self, source: str, log: str, arch: str | None = None):
        self.source = source
        self.arch = arch
        self.log = display_log(log)
        self.errors = compile_errors(self.log)
        where = f"{source} ({arch})" if arch else source
        if self.errors:
            file, line, message = self.errors[0]
            more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
            headline = f"{file}:{line}: {message}{more}"
            if file == _NAME_MAP:
                headline += (" (NVRTC compiles the registered name expressions in this pseudo "
                             "file: one of them does not name a kernel of the source)")
        else:
            headline = "compiler failed without a located error"
        super().__init__(f"kernel family {where} failed to compile: {headline}\n{self.log}")


def source_path(family) -> Path:
    """The family's ``.cu`` file; ``family.source`` is relative to ``kernels/`` (absolute paths
    are accepted for sources outside the package, which only tests use)."""
    path = Path(family.source)
    return path if path.is_absolute() else kernel_root() / path


def include_dirs() -> list[Path]:
    return [common_dir()]


def included_headers(source: Path, dirs: list[Path]) -> list[Path]:
    """Every header reachable from ``source`` through ``#include``, found as the compilers find
    them: the main source is compiled from a string, so its includes are looked up in ``dirs``
    only; a header's quoted includes are looked up beside it first. Toolkit headers
    (``cuda_fp16.h``) are in none of these folders and are left out. Conditional includes are
    all followed: hashing a header that is not compiled costs nothing."""
    found: dict[Path, None] = {}
    pending = [(source, False)]
    while pending:
        path, beside_too = pending.pop()
        for name in _INCLUDE.findall(path.read_text(encoding="utf-8")):
            folders = ([path.parent] if beside_too else []) + list(dirs)
            for folder in folders:
                candidate = (folder / name).resolve()
                if candidate.is_file():
                    if candidate not in found:
                        found[candidate] = None
                        pending.append((candidate, True))
                    break
    return sorted(found)


def headers_digest(source: Path, dirs: list[Path]) -> str:
    digest = hashlib.sha256()
    for header in included_headers(source, dirs):
        digest.update(display_path(str(header)).encode() + b"\0")
        digest.update(header.read_bytes() + b"\0")
    return digest.hexdigest()


def family_code(family, dirs: list[Path] | None = None) -> str:
    """The source text every compiler of ``family`` gets (see the module docstring)."""
    dirs = include_dirs() if dirs is None else dirs
    path = source_path(family)
    line_name = family.source.replace("\\", "/").replace('"', '\\"')
    return (f"// gpuconv included headers sha256 {headers_digest(path, dirs)}\n"
            f'#line 1 "{line_name}"\n'
            + path.read_text(encoding="utf-8"))


def display_path(path: str) -> str:
    """A header path as users know it: relative to ``kernels/`` when it lies there."""
    try:
        return Path(path).resolve().relative_to(kernel_root()).as_posix()
    except (ValueError, OSError):
        return path


def display_log(log: str) -> str:
    """The compiler log with absolute paths under ``kernels/`` made relative to it."""
    root = str(kernel_root()) + "/"
    return log.replace(root, "")


def compile_errors(log: str) -> list[tuple[str, int, str]]:
    errors = []
    for pattern in (_NVRTC_DIAGNOSTIC, _GCC_DIAGNOSTIC):
        for m in pattern.finditer(log):
            if "error" in m.group("kind"):
                errors.append((m.group("file").strip(), int(m.group("line")),
                               (m.group("kind") + m.group("text")).strip()))
    return errors
