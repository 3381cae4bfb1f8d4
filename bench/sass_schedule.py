"""Offline look at a kernel's main loop: compile one name expression of a kernel family with NVRTC
for a real architecture, disassemble it (cuobjdump), and report the loop holding its FMAs with
bench/sass_model.py's scheduler model. No GPU needed; the evidence behind the main-loop
predictions in kernels/conv/NOTES.md.

    python -m bench.sass_schedule conv/implicit_gemm.cu \\
        "conv2d_implicit_gemm_precomputed<float, false, 128, 128, 8, 8, 8>" [--arch sm_90]
        [--warps 1,2,4] [--ldg-latency 450] [--listing]

Needs NVRTC (the ``test`` extra's CUDA 13 wheels, as ``python -m gpuconv compile``) and
cuobjdump: on PATH, or from ``pip install nvidia-cuda-cuobjdump`` (site-packages/nvidia/cu13/bin).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import sass_model


def find_cuobjdump() -> str:
    from gpuconv._nvrtc import wheel_roots

    found = shutil.which("cuobjdump")
    if found:
        return found
    for root in wheel_roots():
        candidate = root / "bin" / "cuobjdump"
        if candidate.is_file():
            return str(candidate)
    raise SystemExit("cuobjdump not found: put it on PATH or `pip install nvidia-cuda-cuobjdump`")


def kernel_sass(source: str, name_expression: str, arch: str) -> tuple[str, int, int]:
    """(the kernel's SASS listing, its registers, its spill bytes) for ``arch``."""
    from gpuconv import _nvrtc
    from gpuconv._kernel_source import family_code
    from gpuconv._kernels import FAMILIES, import_launchers
    from gpuconv.compile_check import family_target, nvrtc_options, parse_ptxas_log

    import_launchers()
    family = FAMILIES.get(source)
    if family is None:
        raise SystemExit(f"no kernel family {source!r}")
    target = family_target(family, arch)
    if target is None:
        raise SystemExit(f"{source} is built for {family.arch} only, not {arch}")
    nvrtc = _nvrtc.load()
    output = nvrtc.compile(family_code(family), family.source, nvrtc_options(family, target, nvrtc),
                           (name_expression,), cubin=True)
    if not output.succeeded:
        raise SystemExit(output.log)
    mangled = output.lowered_names[name_expression]
    record = parse_ptxas_log(output.log)[mangled]
    with tempfile.TemporaryDirectory() as folder:
        cubin = Path(folder) / "kernel.cubin"
        cubin.write_bytes(output.cubin)
        listing = subprocess.run([find_cuobjdump(), "-sass", "-fun", mangled, str(cubin)],
                                 capture_output=True, text=True, check=True).stdout
    return listing, record["registers"], record["spill_stores"] + record["spill_loads"]


def report(loop: list[sass_model.Instruction], warps: list[int], ldg_latency: int) -> str:
    s = sass_model.summarize(loop)
    lines = [f"main loop: {s.instructions} instructions, {s.fmas} FMA ({s.fma_share:.0%}), "
             f"static stalls {s.static_stall_cycles} cycles, {s.branches} inner branches",
             f"  global loads at {list(s.global_loads)}, shared stores at {list(s.shared_stores)}, "
             f"barriers at {list(s.barriers)} (positions in the loop)"]
    for w in warps:
        cycles = sass_model.model_cycles(loop, w, latency={"LDG": ldg_latency})
        lines.append(f"  {w} warp(s) per scheduler: {cycles:.0f} cycles per iteration, "
                     f"{cycles / w:.0f} per warp (issue floor {s.instructions})")
    return "\n".join(lines)


def _warp_counts(text: str) -> list[int]:
    try:
        counts = [int(w) for w in text.split(",") if w.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers like 1,2,4; got {text!r}")
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sass_schedule", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("family", help="kernel source, e.g. conv/implicit_gemm.cu")
    parser.add_argument("kernel", help="a name expression, e.g. "
                        "\"conv2d_implicit_gemm_precomputed<float, false, 128, 128, 8, 8, 8>\"")
    parser.add_argument("--arch", default="sm_90")
    parser.add_argument("--warps", default=[1, 2, 4], type=_warp_counts,
                        help="warps per scheduler to model, e.g. 1,2,4")
    parser.add_argument("--ldg-latency", type=int, default=sass_model.LATENCY["LDG"])
    parser.add_argument("--listing", action="store_true", help="print the loop's instructions")
    args = parser.parse_args(argv)
    listing, registers, spills = kernel_sass(args.family, args.kernel, args.arch)
    print(f"{args.kernel} ({args.arch}): {registers} registers, {spills} bytes spilled")
    loop = sass_model.main_loop(sass_model.parse_sass(listing))
    print(report(loop, args.warps, args.ldg_latency))
    if args.listing:
        for ins in loop:
            waits = "W" + "".join(map(str, ins.waits)) if ins.waits else ""
            print(f"{ins.address:05x} S{ins.stall:<2} {waits:7} {ins.text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
