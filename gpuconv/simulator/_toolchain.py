"""The host compiler, the runtime sources and the on-disk cache of the CPU executor.

Everything compiled is cached under ``$GPUCONV_CACHE_DIR`` when set, else
``${XDG_CACHE_HOME:-~/.cache}/gpuconv/sim``: the runtime library per sanitizer mode, the
sanitizer runner programs and every kernel module, each named by a hash of all that went into it.
Files are written under a temporary name and renamed, so concurrent processes never see a half
written object. ``GPUCONV_SIM_CXX`` names another g++-compatible compiler.
"""
from __future__ import annotations

import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

from .._file_lock import file_lock

RUNTIME_DIR = Path(__file__).resolve().parent / "runtime"
STUB_INCLUDE_DIR = RUNTIME_DIR / "include"
FORCE_INCLUDE = RUNTIME_DIR / "simt.h"

# Flags of every simulator compile. -fno-strict-aliasing: CUDA code type-puns through
# reinterpret_cast (float4 loads of float arrays) and nvcc tolerates it. -g1: line tables, so a
# fault or a sanitizer report names the .cu line (DWARF 4: binutils' addr2line misreads the file
# table of GCC 12's DWARF 5 for sources renamed by #line). Sanitized builds use -O1, as the
# sanitizers recommend, for exact line numbers.
LANGUAGE_FLAGS = ("-std=c++17", "-fPIC", "-fno-strict-aliasing", "-fno-math-errno", "-g1",
                  "-gdwarf-4")
OPTIMIZE = {None: ("-O2",), "address": ("-O1", "-fno-omit-frame-pointer"),
            "thread": ("-O1", "-fno-omit-frame-pointer")}
SANITIZER_FLAGS = {None: (), "address": ("-fsanitize=address",), "thread": ("-fsanitize=thread",)}
RUNTIME_SOURCES = ("scheduler.cpp", "fibers.cpp", "warp.cpp", "faults.cpp", "shared_memory.cpp",
                   "async_copy.cpp", "wgmma.cpp", "diagnostics.cpp", "switch_x86_64.S")
RUNTIME_MACROS = {None: (), "address": ("-DSIMT_ASAN=1",), "thread": ("-DSIMT_TSAN=1",)}


class ToolchainError(RuntimeError):
    """The host compiler is missing or failed to build the simulator's own runtime."""


def compiler() -> str:
    return os.environ.get("GPUCONV_SIM_CXX", "").strip() or "g++"


@functools.lru_cache(maxsize=None)
def compiler_identity(cxx: str) -> str:
    """Version and target of the compiler: part of every cache key."""
    machine = platform.machine()
    if machine.lower() not in ("x86_64", "amd64"):
        # The fibers' context switch is x86-64 assembly (runtime/switch_x86_64.S).
        raise ToolchainError(f"the simulator runs on x86-64 machines only; this one is "
                             f"{machine or 'unknown'} (the NumPy reference still runs)")
    if shutil.which(cxx) is None:
        raise ToolchainError(f"the simulator needs a C++17 compiler: {cxx!r} was not found "
                             f"(install g++ or set GPUCONV_SIM_CXX)")
    out = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=False)
    machine = subprocess.run([cxx, "-dumpmachine"], capture_output=True, text=True, check=False)
    return out.stdout.splitlines()[0] + " " + machine.stdout.strip() if out.stdout else cxx


@functools.lru_cache(maxsize=None)
def runtime_digest() -> str:
    """Hash of every runtime source and header and of the Python code that decides what is
    compiled (flags, source rewriting, entry points): a change rebuilds everything."""
    digest = hashlib.sha256()
    package = RUNTIME_DIR.parent
    build_code = [package / name for name in ("_toolchain.py", "_build.py", "_rewrite.py")]
    for path in sorted(p for p in RUNTIME_DIR.rglob("*") if p.is_file()) + build_code:
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def cache_dir() -> Path:
    explicit = os.environ.get("GPUCONV_CACHE_DIR", "").strip()
    if explicit:
        path = Path(explicit)
    else:
        base = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
        path = Path(base) / "gpuconv" / "sim"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        source = "GPUCONV_CACHE_DIR" if explicit else "the default cache directory"
        raise ToolchainError(f"the simulator's build cache {str(path)!r} ({source}) cannot be "
                             f"used as a directory: {error.strerror or error}") from error
    return path


def run_compiler(args: list[str], cwd: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([compiler(), *args], capture_output=True, text=True, cwd=cwd,
                          check=False)


def compiler_failure(what: str, result: subprocess.CompletedProcess) -> str:
    """The message for a failed host-compiler run: which compiler (and where it was chosen), its
    exit status and whatever it printed; a compiler that prints nothing still says who failed."""
    output = (result.stderr or result.stdout or "").strip() or "(the compiler printed nothing)"
    return (f"{what} failed: {compiler()!r} (GPUCONV_SIM_CXX, default g++) exited with status "
            f"{result.returncode}:\n{output}")


def build_lock(final: Path):
    """Held while one process builds ``final``: another process (a test run beside a cache
    warmer, two test sessions) that wants the same file waits, then finds it built, instead of
    compiling it a second time."""
    return file_lock(final)


def publish(built: Path, final: Path) -> None:
    """Moves a finished file into the cache atomically."""
    os.replace(built, final)


def runtime_library(sanitize: str | None) -> Path:
    """The scheduler/fiber runtime shared library for one sanitizer mode, built on first use.

    The runtime itself is never instrumented (ThreadSanitizer must not see its bookkeeping); the
    SIMT_ASAN/SIMT_TSAN macros add the sanitizers' fiber annotations.
    """
    key = hashlib.sha256(f"{compiler_identity(compiler())}\0{runtime_digest()}\0{sanitize}"
                         .encode()).hexdigest()[:20]
    name = f"libgpuconv_simt-{sanitize or 'plain'}-{key}.so"
    path = cache_dir() / name
    if path.exists():
        return path
    with build_lock(path):
        if not path.exists():
            _build_runtime(path, sanitize)
    return path


def _build_runtime(path: Path, sanitize: str | None) -> None:
    name = path.name
    sources = [str(RUNTIME_DIR / f) for f in RUNTIME_SOURCES]
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        out = Path(tmp) / name
        result = run_compiler(
            [*LANGUAGE_FLAGS, "-O2", "-fno-omit-frame-pointer", *RUNTIME_MACROS[sanitize],
             "-fvisibility=hidden", "-shared", f"-Wl,-soname,{name}", "-I", str(RUNTIME_DIR),
             *(() if sanitize else ("-Wl,-z,defs",)),
             *sources, "-o", str(out), "-ldl", "-lpthread"])
        if result.returncode != 0:
            raise ToolchainError(compiler_failure(
                f"building the simulator runtime ({sanitize or 'plain'})", result))
        publish(out, path)


def runner_executable(sanitize: str) -> Path:
    """The sanitizer runner program (runtime/runner.cpp) for one sanitizer mode."""
    runtime = runtime_library(sanitize)
    key = hashlib.sha256(f"{compiler_identity(compiler())}\0{runtime_digest()}\0{sanitize}"
                         .encode()).hexdigest()[:20]
    path = cache_dir() / f"gpuconv_simt_runner-{sanitize}-{key}"
    if path.exists():
        return path
    with build_lock(path):
        if not path.exists():
            _build_runner(path, sanitize, runtime)
    return path


def _build_runner(path: Path, sanitize: str, runtime: Path) -> None:
    from .errors import SanitizerUnavailable
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        out = Path(tmp) / path.name
        result = run_compiler(
            ["-std=c++17", "-O1", "-g", *SANITIZER_FLAGS[sanitize], *RUNTIME_MACROS[sanitize],
             "-I", str(RUNTIME_DIR), str(RUNTIME_DIR / "runner.cpp"), "-o", str(out),
             f"-L{runtime.parent}", f"-l:{runtime.name}", "-Wl,-rpath,$ORIGIN", "-ldl"])
        if result.returncode != 0:
            raise SanitizerUnavailable(
                f"sanitize={sanitize!r} is not available on this machine (is lib"
                f"{'asan' if sanitize == 'address' else 'tsan'} installed?): "
                + compiler_failure(f"building the {sanitize} sanitizer runner", result))
        publish(out, path)
