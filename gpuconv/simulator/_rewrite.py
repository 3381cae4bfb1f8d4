"""Rewriting ``__shared__`` declarations for the CPU executor (simulator.md, "Shared memory").

On a GPU one ``__shared__`` variable exists per block; here each CUDA thread is a fiber running
the kernel function, so a local variable would exist per thread. The rewrite turns every
declaration into a reference to per-block storage that the runtime allocates (filled with 0xFF
bytes, NaN for floats) when the block's first thread reaches it:

    __shared__ float tile[16][17];
 -> static char __simt_shared_key_0; using __simt_shared_t_0 = float[16][17];
    __simt_shared_t_0& tile = *static_cast<__simt_shared_t_0*>(({ simt_shared_cell(...); }));

    extern __shared__ __align__(16) unsigned char smem[];
 -> unsigned char* const smem = static_cast<unsigned char*>(({ simt_dynamic_shared(); }));

``rewrite_launch_bounds`` turns a kernel's ``__launch_bounds__(n, ...)`` (kept through
preprocessing as ``__simt_launch_bounds__(...)``, simt_qualifiers.h) into a first statement of
its body, ``simt_launch_bounds(n, ...);``, which fails a launch with more threads per block than
``n``, as a GPU refuses it. The arguments stay C++ expressions of the kernel's template
parameters, evaluated where they mean what nvcc reads.

Both run on the preprocessed text (``g++ -E``), so declarations in headers and in macros are
covered. The replacement stays on the declaration's first line and the line breaks it replaced
follow it, so every later line keeps its number. The GNU statement expressions ``({ ... })`` make
a declaration outside a function fail to compile ("statement-expressions are not allowed outside
functions"): shared variables are declared at function scope (simulator.md, convention 2).
"""
from __future__ import annotations

import re

_SHARED = re.compile(r"\b__shared__\b")
_LINEMARKER = re.compile(r'^# (\d+) "((?:[^"\\]|\\.)*)"', re.MULTILINE)
_DROPPED_WORDS = re.compile(r"\b(?:extern|static|__shared__)\b")
_IDENTIFIER_AT_END = re.compile(r"([A-Za-z_]\w*)\s*$")


_LAUNCH_BOUNDS = re.compile(r"\b__simt_launch_bounds__\s*\(")


class RewriteError(ValueError):
    """Source the simulator cannot rewrite; the message names file:line."""


class SharedDeclarationError(RewriteError):
    """A ``__shared__`` declaration the simulator cannot rewrite."""


class LaunchBoundsError(RewriteError):
    """A ``__launch_bounds__`` annotation the simulator cannot place in its kernel."""


def rewrite_shared(text: str) -> str:
    """``text`` (preprocessed C++) with every ``__shared__`` declaration rewritten."""
    pieces = []
    position = 0
    counter = 0
    for match in _SHARED.finditer(text):
        if match.start() < position or _inside_string(text, match.start()):
            continue
        start = _statement_start(text, match.start())
        end = text.find(";", match.end())
        if end < 0 or any(c in text[match.end():end] for c in "{}"):
            raise SharedDeclarationError(
                f"{_location(text, match.start())}: cannot find the end of this __shared__ "
                f"declaration")
        start += len(text[start:match.start()]) - len(text[start:match.start()].lstrip())
        declaration = text[start:end]
        replacement = _rewrite_declaration(declaration, counter, text, match.start())
        counter += 1
        pieces.append(text[position:start])  # up to the declaration's first word: same line
        pieces.append(replacement + ";" + "\n" * declaration.count("\n"))
        position = end + 1
    pieces.append(text[position:])
    return "".join(pieces)


def rewrite_launch_bounds(text: str) -> str:
    """``text`` (preprocessed C++) with each ``__simt_launch_bounds__(...)`` annotation removed
    and, on a definition, its check made the body's first statement. Line numbers are kept: the
    annotation's line breaks stay where they were, and the check joins the body's first line."""
    pieces = []
    position = 0
    for match in _LAUNCH_BOUNDS.finditer(text):
        if match.start() < position:
            continue
        close = _closing(text, match.end() - 1)
        parameters = text.find("(", close + 1)
        if close < 0 or parameters < 0:
            raise LaunchBoundsError(
                f"{_location(text, match.start())}: cannot read this __launch_bounds__")
        after = _closing(text, parameters)
        if after < 0:
            raise LaunchBoundsError(
                f"{_location(text, match.start())}: cannot find the parameter list of the kernel "
                f"declared with this __launch_bounds__")
        body = after + 1
        while body < len(text) and text[body] not in "{;":
            body += 1
        arguments = " ".join(text[match.end():close].split())
        annotation = text[match.start():close + 1]
        pieces.append(text[position:match.start()])
        pieces.append(" " * len(annotation.replace("\n", "")) + "\n" * annotation.count("\n"))
        pieces.append(text[close + 1:body + 1])
        if body < len(text) and text[body] == "{":
            pieces.append(f" simt_launch_bounds({arguments});")
        position = body + 1
    pieces.append(text[position:])
    return "".join(pieces)


def _closing(text: str, opening: int) -> int:
    """The index of the parenthesis that closes the one at ``opening``; -1 if none does."""
    depth = 0
    for i in range(opening, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return i
    return -1


def _rewrite_declaration(declaration: str, counter: int, text: str, at: int) -> str:
    where = _location(text, at)
    is_extern = re.search(r"\bextern\b", declaration) is not None
    # One line: the declaration's line breaks are re-emitted after the replacement.
    body = " ".join(_DROPPED_WORDS.sub(" ", _strip_attributes(declaration)).split())
    if _has_top_level(body, "="):
        raise SharedDeclarationError(f"{where}: __shared__ variables cannot have an initializer")
    if _has_top_level(body, ","):
        raise SharedDeclarationError(
            f"{where}: declare one __shared__ variable per statement (simulator.md, convention 2)")
    type_part, name, dims = _split_declarator(body, where)
    if is_extern:
        if dims != "[]":
            raise SharedDeclarationError(
                f"{where}: dynamic shared memory must be declared as "
                f"'extern __shared__ __align__(N) T {name}[];' (simulator.md, convention 2)")
        return (f"{type_part}* const {name} = static_cast<{type_part}*>("
                f"({{ simt_dynamic_shared(); }}))")
    if "[]" in dims.replace(" ", ""):
        raise SharedDeclarationError(f"{where}: a static __shared__ array needs its size")
    alias = f"__simt_shared_t_{counter}"
    key = f"__simt_shared_key_{counter}"
    return (f"static char {key}; using {alias} = {type_part}{dims}; "
            f"{alias}& {name} = *static_cast<{alias}*>(({{ simt_shared_cell(&{key}, "
            f"sizeof({alias}), alignof({alias}), \"{name}\", __func__, __builtin_FILE(), "
            f"__builtin_LINE()); }}))")


def _split_declarator(body: str, where: str) -> tuple[str, str, str]:
    """``'float tile[16][17]'`` -> ``('float', 'tile', '[16][17]')``."""
    rest = body.rstrip()
    dims = []
    while rest.endswith("]"):
        depth = 0
        for i in range(len(rest) - 1, -1, -1):
            depth += {"]": 1, "[": -1}.get(rest[i], 0)
            if depth == 0:
                break
        else:
            raise SharedDeclarationError(
                f"{where}: unbalanced brackets in a __shared__ declaration")
        dims.insert(0, rest[i:])
        rest = rest[:i].rstrip()
    match = _IDENTIFIER_AT_END.search(rest)
    type_part = rest[:match.start()].strip() if match else ""
    if not match or not type_part:
        raise SharedDeclarationError(f"{where}: cannot read the type and name of this __shared__ "
                                     f"declaration: {body!r}")
    return type_part, match.group(1), "".join(dims)


def _strip_attributes(text: str) -> str:
    """Removes ``__attribute__((...))`` and ``alignas(...)``: cells are 128-byte aligned."""
    out = []
    i = 0
    pattern = re.compile(r"\b(?:__attribute__|alignas)\s*\(")
    while True:
        match = pattern.search(text, i)
        if not match:
            out.append(text[i:])
            return " ".join(out)
        out.append(text[i:match.start()])
        close = _closing(text, match.end() - 1)
        i = len(text) if close < 0 else close + 1


def _has_top_level(text: str, char: str) -> bool:
    depth = 0
    for c in text:
        if c in "([<{":
            depth += 1
        elif c in ")]>}":
            depth -= 1
        elif c == char and depth == 0:
            return True
    return False


def _statement_start(text: str, at: int) -> int:
    """Where the statement holding ``at`` starts: after the last ``;``, ``{``, ``}`` or
    linemarker line before it."""
    start = max(text.rfind(c, 0, at) for c in ";{}") + 1
    marker = text.rfind("\n#", start, at)
    if marker >= 0:
        start = text.index("\n", marker + 1) + 1
    return start


def _inside_string(text: str, at: int) -> bool:
    line_start = text.rfind("\n", 0, at) + 1
    quotes = len(re.findall(r'(?<!\\)"', text[line_start:at]))
    return quotes % 2 == 1


def _location(text: str, at: int) -> str:
    """``file:line`` of offset ``at`` in preprocessed text, from its linemarkers."""
    marker = None
    for marker in _LINEMARKER.finditer(text, 0, at):
        pass
    if marker is None:
        return f"<preprocessed>:{text.count(chr(10), 0, at) + 1}"
    line_after_marker = text.index("\n", marker.start()) + 1
    line = int(marker.group(1)) + text.count("\n", line_after_marker, at)
    return f"{marker.group(2)}:{line}"
