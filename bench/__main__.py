"""``python -m bench``: the benchmark suite (see bench/__init__.py and ``--help``)."""
from __future__ import annotations

import argparse
import datetime
import re
import sys
from pathlib import Path

from . import environment
from .operations import CONV_VARIANTS, conv_algorithms
from .report import Progress, format_report, write_json, write_summary
from .roofline import CONV_DIRECTIONS
from .runner import RunConfig, Runner
from .suites import DTYPES, LAYOUTS, SUITE_GROUPS, resolve_suites, suite_layers, suite_names
from .timing import CPU_PLAN, CPU_QUICK_PLAN, GPU_PLAN, GPU_QUICK_PLAN, TimingPlan

RESULTS = Path(__file__).resolve().parent / "results"
DIRECTION_ALIASES = {"fwd": "forward", "dgrad": "data_grad", "wgrad": "weight_grad"}


def _comma_list(text: str) -> list[str]:
    # An empty list ("--suite ," or "--dtype ''") would read as "not given", i.e. everything.
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"no name in {text!r}")
    return names


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark gpuconv's algorithms against cuDNN, PyTorch, cuBLAS and "
        "torchvision on real layer shapes. Without a GPU it runs the NumPy reference and the "
        "CPU executor on reduced shapes (CPU timings that say nothing about GPU speed).")
    p.add_argument("--suite", action="extend", type=_comma_list, metavar="NAME[,NAME]",
                   help="suites or groups to run (default: all; see --list)")
    p.add_argument("--list", action="store_true", help="list the suites and groups, then exit")
    p.add_argument("--quick", action="store_true",
                   help="one layer per family per suite, forward only unless --direction says "
                   "otherwise, fewer timed runs")
    p.add_argument("--full", action="store_true",
                   help="without a GPU, run every case instead of the quick selection (the CPU "
                   "default: the full CPU run takes about 10 minutes on 2 cores)")
    p.add_argument("--algorithm", action="extend", type=_comma_list, metavar="NAME[,NAME]",
                   help="gpuconv conv algorithms to run (default: auto and every name in "
                   "gpuconv.conv_algorithms); also the forward kernel variants, opt-in: "
                   + ", ".join(CONV_VARIANTS))
    p.add_argument("--dtype", action="extend", type=_comma_list, metavar="DTYPE[,DTYPE]",
                   help=f"one or more of {', '.join(DTYPES)} (default: float32)")
    p.add_argument("--layout", action="extend", type=_comma_list, metavar="LAYOUT[,LAYOUT]",
                   help="NCHW and/or NHWC for gpuconv's data_format (conv and pooling; "
                   "default: NCHW). cuDNN is measured in NCHW and channels_last either way")
    p.add_argument("--direction", action="extend", type=_comma_list, metavar="DIR[,DIR]",
                   help="forward (fwd), data_grad (dgrad), weight_grad (wgrad); default: all "
                   "three, or forward with --quick")
    p.add_argument("--layers", metavar="REGEX", help="only layers whose 'suite/name' matches")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="where results.json, summary.md and the PNG plots go (default: a new "
                   "folder under bench/results/)")
    p.add_argument("--executor", choices=("auto", "gpu", "cpu"), default="auto",
                   help="gpu: CuPy kernels vs the peers; cpu: NumPy reference and CPU executor "
                   "on reduced shapes; auto: gpu when a CUDA device is visible")
    p.add_argument("--rounds", type=int, help="interleaved timing rounds")
    p.add_argument("--runs-per-round", type=int, help="timed calls per variant per round")
    p.add_argument("--warmup", type=int, help="untimed calls per variant after the checked one")
    p.add_argument("--no-flush-l2", action="store_true",
                   help="time with a warm L2 (stated in the report)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


class UsageError(Exception):
    """A bad command line: argparse's exit status 2, with the message."""


def _choices(name: str, values: list[str] | None, allowed, default) -> tuple[str, ...]:
    if not values:
        return tuple(default)
    for v in values:
        if v not in allowed:
            raise UsageError(f"--{name} must be one of {', '.join(allowed)}; got {v!r}")
    return tuple(dict.fromkeys(values))


def config_from_args(args, mode: str) -> RunConfig:
    try:
        suites = tuple(resolve_suites(args.suite)) if args.suite else None
    except ValueError as exc:
        raise UsageError(f"--{exc}") from None
    directions = [DIRECTION_ALIASES.get(d, d) for d in args.direction or []]
    directions = _choices("direction", directions, CONV_DIRECTIONS,
                          ("forward",) if args.quick else CONV_DIRECTIONS)
    dtypes = _choices("dtype", args.dtype, DTYPES, ("float32",))
    if "bfloat16" in dtypes:
        # NumPy gets bfloat16 from ml_dtypes; on a GPU its GEMM ceiling comes from torch
        # (CuPy has no bfloat16 matmul).
        for module in ("ml_dtypes",) + (("torch",) if mode == "gpu" else ()):
            try:
                __import__(module)
            except ImportError:
                raise UsageError(f"--dtype bfloat16 needs {module} installed") from None
    layouts = _choices("layout", args.layout, LAYOUTS, ("NCHW",))
    algorithms = _choices("algorithm", args.algorithm, conv_algorithms() + tuple(CONV_VARIANTS),
                          ()) or None
    if args.layers:
        try:
            re.compile(args.layers)
        except re.error as exc:
            raise UsageError(f"--layers is not a regular expression: {exc}") from None
    base = {("gpu", False): GPU_PLAN, ("gpu", True): GPU_QUICK_PLAN,
            ("cpu", False): CPU_PLAN, ("cpu", True): CPU_QUICK_PLAN}[(mode, args.quick)]
    plan = TimingPlan(warmup=base.warmup if args.warmup is None else args.warmup,
                      rounds=base.rounds if args.rounds is None else args.rounds,
                      runs_per_round=base.runs_per_round if args.runs_per_round is None else args.runs_per_round)
    if plan.warmup < 0 or plan.rounds < 1 or plan.runs_per_round < 1:
        raise UsageError("--warmup must be >= 0, --rounds and --runs-per-round >= 1")
    return RunConfig(mode=mode, suites=suites, quick=args.quick, directions=directions,
                     dtypes=dtypes, layouts=layouts, algorithms=algorithms,
                     layer_pattern=args.layers, plan=plan, flush_l2=not args.no_flush_l2)


def list_suites() -> str:
    lines = ["suites (layers):"]
    for name in suite_names():
        layers = suite_layers(name)
        families = sorted({layer.family for layer in layers})
        lines.append(f"  {name:<30} {len(layers):>3}  {', '.join(families)}")
    lines.append("groups:")
    lines += [f"  {g:<30} {', '.join(s)}" for g, s in SUITE_GROUPS.items()]
    return "\n".join(lines)


def default_out(doc: dict) -> Path:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    if doc["mode"] == "cpu":
        return RESULTS / "cpu" / stamp
    slug = re.sub(r"[^A-Za-z0-9]+", "-", doc["environment"]["device"].get("name", "gpu")).strip("-")
    return RESULTS / f"{stamp}-{slug}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        print(list_suites())
        return 0
    mode = args.executor
    if mode == "auto":
        mode = "gpu" if environment.gpu_present() else "cpu"
    elif mode == "gpu" and not environment.gpu_present():
        parser.error("--executor gpu, but no CUDA device is visible to CuPy")
    if args.quick and args.full:
        parser.error("--quick and --full exclude each other")
    if mode == "cpu" and not args.full and not args.quick:
        # CPU timings say nothing about GPU speed: by default show every family once, quickly.
        args.quick = True
        print("no GPU: running the quick selection on the CPU executors (--full runs every case)",
              file=sys.stderr)
    try:
        config = config_from_args(args, mode)
    except UsageError as exc:
        parser.error(str(exc))
    if not config.cases():
        parser.error("the selection has no cases (no layer matches --layers, or the options "
                     "exclude each other: NHWC applies to conv and pooling only, pooling and ROI "
                     "have no weight gradient)")
    if args.out is not None:
        # Checked before the run, which may take minutes: its results must have a place to go.
        try:
            args.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            parser.error(f"--out {str(args.out)!r} cannot be a results folder: {exc}")
    progress = Progress(enabled=not args.no_progress)
    doc = Runner(config, progress).run()
    out = args.out or default_out(doc)
    out.mkdir(parents=True, exist_ok=True)
    written = [write_json(doc, out), write_summary(doc, out)]
    if not args.no_plots:
        try:
            from .plots import write_plots
            written += write_plots(doc, out)
        except ImportError as exc:
            print(f"plots skipped: {exc} (pip install 'gpuconv[bench]')", file=sys.stderr)
    print(format_report(doc))
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 1 if doc["failures"] or doc["interrupted"] else 0


if __name__ == "__main__":
    sys.exit(main())
