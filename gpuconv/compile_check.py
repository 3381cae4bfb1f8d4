"""The offline compile check, ``python -m gpuconv compile --arch sm_80,sm_90 [--family F] [--json]``

Every registered kernel family (after importing every launcher module) is compiled by NVRTC from
the PyPI wheels, for each real architecture, with ``--ptxas-options=-v`` so that ptxas runs and
reports per kernel: registers, static shared memory, stack frame and spill bytes. No GPU, driver or
system CUDA is used. The check fails (exit 1) on a compile error, and on a stack frame or spills
in a kernel its family marks hot (design.md: a register array indexed at run time lands in local
memory; in a hot kernel that is a defect).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from . import _nvrtc
from ._kernel_source import KernelCompileError, family_code, include_dirs
from ._kernels import FAMILIES, KernelFamily, import_launchers
from ._loader import CUDA_STANDARD

DEFAULT_ARCHS = ("sm_80", "sm_90")

_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(sm_\w+)'")
_PROPERTIES = re.compile(r"Function properties for (\S+)")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")
_CUMULATIVE_STACK = re.compile(r"(\d+) bytes cumulative stack size")


@dataclass(frozen=True)
class KernelResources:
    family: str
    kernel: str            # the name expression, e.g. "conv2d_direct<float>"
    arch: str
    registers: int
    smem_bytes: int        # static shared memory (dynamic shared memory is set at launch)
    stack_bytes: int       # the kernel's frame, or with its callees when ptxas reports that
    spill_store_bytes: int
    spill_load_bytes: int
    hot: bool

    @property
    def spill_bytes(self) -> int:
        return self.spill_store_bytes + self.spill_load_bytes

    def defects(self) -> list[str]:
        """Why this kernel fails the check: only hot kernels may not use local memory."""
        if not self.hot:
            return []
        found = []
        if self.stack_bytes:
            found.append(f"{self.stack_bytes} bytes stack frame")
        if self.spill_bytes:
            found.append(f"{self.spill_store_bytes} bytes spill stores, "
                         f"{self.spill_load_bytes} bytes spill loads")
        return found


@dataclass
class CheckReport:
    families: list[str]
    archs: list[str]
    kernels: list[KernelResources] = field(default_factory=list)
    errors: list[KernelCompileError] = field(default_factory=list)

    def defects(self) -> list[str]:
        return [f"hot kernel {k.kernel} ({k.family}, {k.arch}): " + "; ".join(k.defects())
                for k in self.kernels if k.defects()]

    def problems(self) -> list[str]:
        return [str(e).splitlines()[0] for e in self.errors] + self.defects()

    @property
    def ok(self) -> bool:
        return not self.problems()


def parse_ptxas_log(log: str) -> dict[str, dict[str, int]]:
    """Per mangled entry name: registers, smem, stack, spill_stores, spill_loads."""
    found: dict[str, dict[str, int]] = {}
    entry = properties_of = None
    for line in log.splitlines():
        if m := _ENTRY.search(line):
            entry = m.group(1)
            found.setdefault(entry, dict(registers=0, smem=0, stack=0, spill_stores=0,
                                         spill_loads=0))
        elif m := _PROPERTIES.search(line):
            properties_of = m.group(1)
        elif (m := _FRAME.search(line)) and properties_of in found:
            # Frames of non-inlined device functions are listed too; only entries are kept.
            stack, stores, loads = map(int, m.groups())
            found[properties_of].update(stack=stack, spill_stores=stores, spill_loads=loads)
        elif (m := _USED.search(line)) and entry is not None:
            record = found[entry]
            record["registers"] = int(m.group(1))
            if s := _SMEM.search(line):
                record["smem"] = int(s.group(1))
            if s := _CUMULATIVE_STACK.search(line):
                record["stack"] = max(record["stack"], int(s.group(1)))
    return found


def parse_archs(text: str) -> list[str]:
    archs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        m = re.fullmatch(r"(?:sm_|compute_)?([1-9]\d*)", item)     # sm_080: no such arch
        if not m:
            raise ValueError(f"--arch: {item!r} is not an architecture such as sm_80")
        archs.append(f"sm_{m.group(1)}")
    if not archs:
        raise ValueError("--arch: give at least one architecture, e.g. sm_80,sm_90")
    return list(dict.fromkeys(archs))


def family_target(family: KernelFamily, arch: str) -> str | None:
    """The target ``family`` is built for when the check asks for ``arch``: ``arch`` itself, or
    a family's arch-specific target of the same compute capability (sm_90 -> sm_90a), or None
    where the family is built for another architecture only (it is not checked there)."""
    if family.arch is None:
        return arch
    return family.arch if arch[3:] == family.compute_capability else None


def nvrtc_options(family: KernelFamily, arch: str, nvrtc) -> list[str]:
    """NVRTC's options for ``family`` on the real architecture ``arch``, ptxas reporting
    resources (also bench/sass_schedule.py's, which disassembles the same build)."""
    return [CUDA_STANDARD, f"-arch={arch}", "--ptxas-options=-v",
            *(f"-I{d}" for d in include_dirs()), *(f"-I{d}" for d in nvrtc.include_dirs),
            *family.options]


def check_family(family: KernelFamily, arch: str, nvrtc=None) -> list[KernelResources]:
    """Compile ``family`` for ``arch``; its kernels' resources, or KernelCompileError."""
    nvrtc = nvrtc or _nvrtc.load()
    output = nvrtc.compile(family_code(family), family.source, nvrtc_options(family, arch, nvrtc),
                           family.name_expressions)
    if not output.succeeded:
        raise KernelCompileError(family.source, output.log, arch)
    entries = parse_ptxas_log(output.log)
    resources = []
    for name in family.name_expressions:
        record = entries.get(output.lowered_names[name])
        if record is None:
            raise KernelCompileError(
                family.source, f"ptxas reported no resources for {name} "
                f"({output.lowered_names[name]}); log:\n{output.log}", arch)
        resources.append(KernelResources(
            family.source, name, arch, record["registers"], record["smem"], record["stack"],
            record["spill_stores"], record["spill_loads"], name in family.hot))
    return resources


def run_check(families: list[KernelFamily], archs: list[str]) -> CheckReport:
    report = CheckReport([f.source for f in families], list(archs))
    if not families:
        return report
    nvrtc = _nvrtc.load()
    supported = nvrtc.supported_archs()
    unsupported = [a for a in archs if int(a[3:]) not in supported]
    if unsupported:
        major, minor = nvrtc.version()
        raise ValueError(f"--arch: {unsupported} not supported by NVRTC {major}.{minor} "
                         f"(supported: {', '.join(f'sm_{a}' for a in supported)})")

    def build(job):
        try:
            return check_family(*job, nvrtc), None
        except KernelCompileError as error:
            return [], error

    # NVRTC compiles separate programs concurrently and ctypes releases the GIL during the
    # call: one build per core (2 cores: the whole library's check 9-10 -> ~5 minutes, most of
    # the CI job). Results keep the family-then-arch order.
    jobs = [(family, target) for family in families for arch in archs
            if (target := family_target(family, arch)) is not None]
    with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), os.cpu_count() or 1))) as pool:
        for kernels, error in pool.map(build, jobs):
            report.kernels.extend(kernels)
            if error is not None:
                report.errors.append(error)
    return report


def format_table(report: CheckReport) -> str:
    header = ("family", "kernel", "arch", "registers", "smem bytes", "stack", "spill bytes", "hot")
    rows = [header] + [
        (k.family, k.kernel, k.arch, str(k.registers), str(k.smem_bytes), str(k.stack_bytes),
         str(k.spill_bytes), "hot" if k.hot else "") for k in report.kernels]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    numeric = {3, 4, 5, 6}
    lines = ["  ".join(c.rjust(w) if i in numeric else c.ljust(w)
                       for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in rows]
    return "\n".join(lines)


def summary(report: CheckReport) -> str:
    return (f"{len(report.families)} families, {len(report.kernels)} kernel builds, "
            f"archs {','.join(report.archs)}: {len(report.errors)} compile errors, "
            f"{len(report.defects())} hot-kernel defects")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", default=",".join(DEFAULT_ARCHS),
                        help="comma-separated real architectures (default: %(default)s)")
    parser.add_argument("--family", action="append", default=[], metavar="SOURCE",
                        help="check only this family, e.g. conv/direct.cu (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    import_launchers()
    try:
        archs = parse_archs(args.arch)
        unknown = [f for f in args.family if f not in FAMILIES]
        if unknown:
            raise ValueError(f"--family: {unknown} are not registered kernel families; "
                             f"registered: {sorted(FAMILIES) or 'none'}")
        families = ([FAMILIES[f] for f in dict.fromkeys(args.family)] if args.family
                    else list(FAMILIES.values()))
        report = run_check(families, archs)
    except (ValueError, _nvrtc.NvrtcUnavailable) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({
            "families": report.families, "archs": report.archs,
            "kernels": [dict(asdict(k), defects=k.defects()) for k in report.kernels],
            "errors": [{"family": e.source, "arch": e.arch, "errors": e.errors, "log": e.log}
                       for e in report.errors],
            "ok": report.ok}, indent=2))
    else:
        if report.kernels:
            print(format_table(report))
        for error in report.errors:
            print(f"\n{error}", file=sys.stderr)
        for defect in report.defects():
            print(f"FAIL {defect}", file=sys.stderr)
        print(summary(report))
    return 0 if report.ok else 1
