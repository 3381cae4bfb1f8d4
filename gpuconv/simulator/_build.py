"""Compiling one CUDA module for the CPU executor (simulator.md, "How it works").

    code + generated entries --g++ -E (force-included simt.h, stub CUDA headers first)-->
    preprocessed text --_rewrite (shared memory, launch bounds)--> .ii --g++ -shared--> module .so

The module links against the runtime library of its sanitizer mode and is cached by a hash of
the code, the name expressions, the options, every header the code includes from
``include_dirs``, the runtime sources and the compiler version.
"""
from __future__ import annotations

import hashlib
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .._kernel_source import KernelCompileError
from . import _toolchain
from ._rewrite import RewriteError, rewrite_launch_bounds, rewrite_shared

ENTRIES_FILE = "<simt-entries>"
_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*[<"]([^>"]+)[>"]', re.MULTILINE)


@dataclass(frozen=True)
class BuiltModule:
    path: Path
    from_cache: bool


@dataclass(frozen=True)
class CompileOptions:
    defines: tuple[str, ...]      # "NAME" or "NAME=VALUE"
    undefines: tuple[str, ...]
    include_dirs: tuple[str, ...]


def parse_options(options: Sequence[str], include_dirs: Sequence[str]) -> CompileOptions:
    """The -D/-U/-I options of an NVRTC-style option list; every other flag (-std=, -arch=,
    --use_fast_math, ...) concerns the GPU compiler and is ignored."""
    if isinstance(options, str):
        raise TypeError("options must be a sequence of strings, e.g. ['-DTILE=16'], not a string")
    defines, undefines, dirs = [], [], [str(d) for d in include_dirs]
    items = list(options)
    i = 0
    while i < len(items):
        item = items[i]
        if not isinstance(item, str):
            raise TypeError(f"options[{i}] must be a str, got {type(item).__name__}")
        for prefixes, target in ((("-D", "--define-macro="), defines),
                                 (("-U", "--undefine-macro="), undefines),
                                 (("-I", "--include-path="), dirs)):
            prefix = next((p for p in prefixes if item.startswith(p)), None)
            if prefix is None:
                continue
            value = item[len(prefix):]
            if not value and prefix in ("-D", "-U", "-I"):
                i += 1
                if i == len(items):
                    raise ValueError(f"options: {item} needs a value")
                value = items[i]
            target.append(value)
            break
        i += 1
    return CompileOptions(tuple(defines), tuple(undefines), tuple(dirs))


def entries_source(name_expressions: Sequence[str]) -> str:
    """Two extern "C" functions per name expression: launch and parameter description."""
    lines = [f'#line 1 "{ENTRIES_FILE}"']
    for i, name in enumerate(name_expressions):
        literal = name.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(
            f'extern "C" __attribute__((visibility("default"))) int __simt_launch_{i}('
            f"const simt_launch_config* c, void** a, simt_error* e) "
            f'{{ return simt_detail::launch(&{name}, "{literal}", c, a, e); }}')
        lines.append(
            f'extern "C" __attribute__((visibility("default"))) int __simt_params_{i}('
            f"simt_param_desc* d, int n) {{ return simt_detail::params(&{name}, d, n); }}")
    lines.append('extern "C" __attribute__((visibility("default"))) int __simt_abi_version(void) '
                 "{ return SIMT_ABI_VERSION; }")
    return "\n".join(lines) + "\n"


def included_headers(code: str, dirs: Sequence[str]) -> list[Path]:
    """Headers reachable from ``code`` through #include and found in ``dirs`` (or beside the
    header that includes them). Conditional includes are followed too: hashing one that is not
    compiled only costs a rebuild."""
    found: dict[Path, None] = {}
    pending: list[tuple[str, Path | None]] = [(code, None)]
    while pending:
        text, parent = pending.pop()
        for name in _INCLUDE.findall(text):
            folders = ([parent] if parent else []) + [Path(d) for d in dirs]
            for folder in folders:
                candidate = (folder / name).resolve()
                if candidate.is_file():
                    if candidate not in found:
                        found[candidate] = None
                        pending.append((candidate.read_text(encoding="utf-8", errors="replace"),
                                        candidate.parent))
                    break
    return sorted(found)


def cache_key(code: str, name_expressions: Sequence[str], options: CompileOptions,
              sanitize: str | None, source_name: str) -> str:
    digest = hashlib.sha256()
    for part in (_toolchain.compiler_identity(_toolchain.compiler()), _toolchain.runtime_digest(),
                 code, "\0".join(name_expressions), "\0".join(options.defines),
                 "\0".join(options.undefines), "\0".join(options.include_dirs), str(sanitize),
                 source_name):
        digest.update(part.encode() + b"\0\1")
    for header in included_headers(code, options.include_dirs):
        digest.update(str(header).encode() + b"\0" + header.read_bytes() + b"\0\1")
    return digest.hexdigest()[:32]


def module_path(key: str, source_name: str, sanitize: str | None) -> Path:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(source_name).stem)[:40] or "module"
    return _toolchain.cache_dir() / f"{stem}-{sanitize or 'plain'}-{key}.so"


def build_module(code: str, name_expressions: Sequence[str], options: CompileOptions,
                 sanitize: str | None, source_name: str) -> BuiltModule:
    path = module_path(cache_key(code, name_expressions, options, sanitize, source_name),
                       source_name, sanitize)
    runtime = _toolchain.runtime_library(sanitize)  # the module loads it from beside itself
    if path.exists():
        return BuiltModule(path, from_cache=True)
    with _toolchain.build_lock(path):
        if path.exists():       # built by another process while this one waited
            return BuiltModule(path, from_cache=True)
        _compile(path, code, name_expressions, options, sanitize, source_name, runtime)
    return BuiltModule(path, from_cache=False)


def _compile(path: Path, code: str, name_expressions: Sequence[str], options: CompileOptions,
             sanitize: str | None, source_name: str, runtime: Path) -> None:
    with tempfile.TemporaryDirectory(dir=_toolchain.cache_dir()) as tmp:
        source = Path(tmp) / "kernel.cu"
        line_name = source_name.replace("\\", "/").replace('"', '\\"')
        source.write_text(f'#line 1 "{line_name}"\n{code}\n{entries_source(name_expressions)}',
                          encoding="utf-8")
        preprocess = _toolchain.run_compiler(
            # The sanitizer flags here too: they define __SANITIZE_THREAD__ / __SANITIZE_ADDRESS__,
            # which the runtime headers test while the text is preprocessed.
            ["-E", "-x", "c++", *_toolchain.LANGUAGE_FLAGS, *_toolchain.SANITIZER_FLAGS[sanitize],
             "-I", str(_toolchain.STUB_INCLUDE_DIR),
             *(f"-I{d}" for d in options.include_dirs), *(f"-D{d}" for d in options.defines),
             *(f"-U{u}" for u in options.undefines), "-include", str(_toolchain.FORCE_INCLUDE),
             str(source), "-o", str(Path(tmp) / "kernel.i")], cwd=tmp)
        if preprocess.returncode != 0:
            raise KernelCompileError(source_name, _explain(preprocess, name_expressions))
        text = (Path(tmp) / "kernel.i").read_text(encoding="utf-8", errors="replace")
        try:
            rewritten = rewrite_launch_bounds(rewrite_shared(text))
        except RewriteError as error:
            raise KernelCompileError(source_name, f"{error}: error: {error}") from None
        (Path(tmp) / "kernel.ii").write_text(rewritten, encoding="utf-8")
        built = Path(tmp) / path.name
        compile_ = _toolchain.run_compiler(
            [*_toolchain.LANGUAGE_FLAGS, *_toolchain.OPTIMIZE[sanitize],
             *_toolchain.SANITIZER_FLAGS[sanitize], "-w", "-fvisibility=hidden", "-shared",
             f"-fdebug-prefix-map={tmp}=.",
             "kernel.ii", "-o", str(built), f"-L{runtime.parent}", f"-l:{runtime.name}",
             "-Wl,-rpath,$ORIGIN"], cwd=tmp)
        if compile_.returncode != 0:
            raise KernelCompileError(source_name, _explain(compile_, name_expressions))
        _toolchain.publish(built, path)


def _explain(result, name_expressions: Sequence[str]) -> str:
    """g++'s log, with a note naming the name expression an error in the entries is about."""
    log = result.stderr
    if not log.strip():     # nothing to point into: say which compiler failed and how
        return _toolchain.compiler_failure("compiling the kernel source", result)
    notes = []
    for match in re.finditer(re.escape(ENTRIES_FILE) + r":(\d+):", log):
        index = (int(match.group(1)) - 1) // 2
        if 0 <= index < len(name_expressions):
            notes.append(f"note: the name expression {name_expressions[index]!r} does not name a "
                         f"__global__ function of the source (or its template arguments do not "
                         f"fit)")
    return log + ("\n" + "\n".join(dict.fromkeys(notes)) if notes else "")
