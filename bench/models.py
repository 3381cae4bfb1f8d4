"""``python -m bench.models``: whole torchvision models converted with gpuconv.torch.convert,
timed against the same model in native PyTorch (issue #7's end-to-end check).

For each architecture (random weights, no download) and layout (NCHW, channels_last) it
1. builds the model twice from one seed, converts one copy (``gpuconv.torch.convert``),
2. checks the converted model's eval logits against the native ones (and refuses to time a
   model whose logits disagree beyond the dtype's tolerance),
3. times, interleaved round by round, an eval forward (``torch.no_grad``) and a training step
   (forward, cross-entropy, backward, SGD step) of both, after warm-up (gpuconv's kernel builds
   and cuDNN's own tuning are not timed).
With ``--compile [BACKEND]`` both models run through ``torch.compile(model, fullgraph=True)``
(inductor by default; compilation happens in the warm-up and the logits check): native PyTorch's
fused graph against the converted model's, where each gpuconv call is one custom-op node
(docs/frameworks.md, torch.compile) and the layers between are compiled as in the native one.
With ``--cuda-graph`` (a GPU only) both models' forward and training step are captured into CUDA
graphs (``torch.cuda.graph``, after torch's warm-up on a side stream) and the replays are timed:
no host time left on either side, so the ratio is the kernels' alone (docs/frameworks.md, CUDA
graphs).

On a GPU: CUDA tensors, CUDA events on torch's current stream, cuDNN with benchmark mode on and
TF32 off for float32 (so cuDNN and gpuconv compute the same strict float32). Without one: CPU
tensors through gpuconv's NumPy reference, on a small input, labelled as CPU timings that say
nothing about GPU speed. Writes ``models.json`` (environment, commit, every case) and
``models.md`` (the summary table) under ``--out``.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from . import environment

ARCHITECTURES = ("resnet50", "mobilenet_v2")
LAYOUTS = ("NCHW", "channels_last")
# Logits of a converted model against native PyTorch (float32: different summation orders over
# ~50 layers; eval-mode batch norm keeps the activations O(1)).
LOGIT_TOLERANCE = {"float32": 2e-3, "float64": 1e-9}
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Settings:
    device: str      # "cuda" | "cpu"
    batch: int
    image: int       # square input side
    dtype: str
    warmup: int
    rounds: int
    runs_per_round: int
    compile_backend: str | None = None   # torch.compile both models with it; None: eager
    cuda_graph: bool = False             # time replays of CUDA graphs of both models


GPU_SETTINGS = Settings("cuda", batch=32, image=224, dtype="float32", warmup=3, rounds=5,
                        runs_per_round=4)
CPU_SETTINGS = Settings("cpu", batch=1, image=64, dtype="float32", warmup=0, rounds=2,
                        runs_per_round=1)


def torchvision_builder(architecture: str) -> Callable[[], object]:
    """A function building ``architecture`` from torchvision with random weights."""
    try:
        from torchvision import models
    except ImportError as error:
        raise SystemExit(f"bench.models needs torchvision ({error})") from None
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {', '.join(ARCHITECTURES)}; "
                         f"got {architecture!r}")
    return lambda: getattr(models, architecture)(weights=None)


class Clock:
    """Seconds per call: CUDA events on torch's current stream, or perf_counter on the CPU."""

    def __init__(self, torch, device: str):
        self.torch, self.cuda = torch, device == "cuda"

    def __call__(self, fn: Callable[[], object]) -> float:
        if not self.cuda:
            start = time.perf_counter()
            fn()
            return time.perf_counter() - start
        start, end = (self.torch.cuda.Event(enable_timing=True) for _ in range(2))
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3


def _configure_torch(torch, settings: Settings) -> dict:
    if settings.device != "cuda":
        return {}
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    return {"cudnn.benchmark": True, "cudnn.allow_tf32": False, "matmul.allow_tf32": False}


def _train_step(torch, model, optimizer, x, labels) -> None:
    optimizer.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x), labels).backward()
    optimizer.step()


def captured(torch, fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` captured into a CUDA graph, as torch's documentation does it (three runs on a side
    stream first: kernel builds, launch plans, cuDNN's search, the allocator's blocks): the
    graph's replay."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def measure_model(torch, build: Callable, architecture: str, layout: str,
                  settings: Settings) -> dict:
    """One (architecture, layout) case: the logits check, then both models' timings."""
    import gpuconv.torch as gtorch

    dtype = getattr(torch, settings.dtype)
    memory_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    torch.manual_seed(0)
    native = build().to(device=settings.device, dtype=dtype, memory_format=memory_format)
    converted = copy.deepcopy(native)
    report = gtorch.convert(converted)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(settings.batch, 3, settings.image, settings.image, generator=generator,
                    dtype=torch.float64).to(device=settings.device, dtype=dtype,
                                            memory_format=memory_format)

    native.eval()
    converted.eval()
    if settings.compile_backend is not None:
        native, converted = (torch.compile(m, fullgraph=True, backend=settings.compile_backend)
                             for m in (native, converted))
    with torch.no_grad():
        want, got = native(x), converted(x)
    labels = torch.randint(0, want.shape[1], (settings.batch,), generator=generator)
    labels = labels.to(settings.device)
    scale = max(1.0, float(want.abs().max()))
    logits_error = float((got - want).abs().max()) / scale
    case = {"architecture": architecture, "layout": layout, "batch": settings.batch,
            "image": settings.image, "dtype": settings.dtype,
            "compile_backend": settings.compile_backend, "cuda_graph": settings.cuda_graph,
            "layers_swapped": len(report.swapped), "layers_left": len(report.skipped),
            "logits_max_rel_error": logits_error}
    if not logits_error <= LOGIT_TOLERANCE[settings.dtype]:
        case["status"] = "mismatch"
        return case

    def forward(model):
        def run():
            with torch.no_grad():
                model(x)
        return run

    optimizers = {id(m): torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9)
                  for m in (native, converted)}

    def train(model):
        return lambda: _train_step(torch, model, optimizers[id(model)], x, labels)

    clock = Clock(torch, settings.device)
    timings = {}
    for mode, make in (("forward", forward), ("train_step", train)):
        for m in (native, converted):
            m.train(mode == "train_step")
        variants = {"native": make(native), "gpuconv": make(converted)}
        if settings.cuda_graph:
            variants = {name: captured(torch, fn) for name, fn in variants.items()}
        for fn in variants.values():     # warm-up: kernel builds, cuDNN's benchmark search
            for _ in range(settings.warmup + 1):
                fn()
        runs = {name: [] for name in variants}
        names = list(variants)
        for r in range(settings.rounds):  # interleaved, order rotated each round
            for name in names[r % 2:] + names[:r % 2]:
                runs[name].extend(clock(variants[name]) for _ in range(settings.runs_per_round))
        native_s, gpuconv_s = (statistics.median(runs[n]) for n in ("native", "gpuconv"))
        timings[mode] = {"native_ms": native_s * 1e3, "gpuconv_ms": gpuconv_s * 1e3,
                         "ratio": native_s / gpuconv_s, "runs": len(runs["native"])}
    case.update(status="ok", timings=timings)
    return case


def summary_table(document: dict) -> str:
    device = document["environment"]["device"]["name"]
    lines = [f"Whole models, {document['mode']} run on {device} "
             f"(commit {document['environment']['git']['commit'][:12]}); ratio = native time / "
             "gpuconv time (> 1: gpuconv faster).", ""]
    if document["mode"] == "cpu":
        lines += ["CPU timings of the NumPy reference: they say nothing about GPU speed.", ""]
    backend = document["settings"].get("compile_backend")
    if backend is not None:
        lines += [f"Both models compiled: torch.compile(model, fullgraph=True, "
                  f"backend={backend!r}).", ""]
    if document["settings"].get("cuda_graph"):
        lines += ["Both models captured in CUDA graphs (torch.cuda.graph); the replays are "
                  "timed.", ""]
    lines += ["| model | layout | batch x image | logits rel. error | forward native / gpuconv "
              "(ms) | ratio | train step native / gpuconv (ms) | ratio |",
              "|---|---|---|---|---|---|---|---|"]
    for c in document["cases"]:
        head = (f"| {c['architecture']} | {c['layout']} | {c['batch']} x {c['image']} | "
                f"{c['logits_max_rel_error']:.1e} |")
        if c["status"] != "ok":
            lines.append(head + f" {c['status']}: not timed | | | |")
            continue
        f, t = c["timings"]["forward"], c["timings"]["train_step"]
        lines.append(head + f" {f['native_ms']:.2f} / {f['gpuconv_ms']:.2f} | {f['ratio']:.2f} |"
                     f" {t['native_ms']:.2f} / {t['gpuconv_ms']:.2f} | {t['ratio']:.2f} |")
    return "\n".join(lines) + "\n"


def run(architectures, layouts, settings: Settings, out: Path, build=torchvision_builder) -> dict:
    import torch

    mode = "gpu" if settings.device == "cuda" else "cpu"
    flags = _configure_torch(torch, settings)
    cases = []
    for architecture in architectures:
        builder = build(architecture)
        for layout in layouts:
            case = measure_model(torch, builder, architecture, layout, settings)
            cases.append(case)
            print(f"{architecture} {layout}: {case['status']}", file=sys.stderr, flush=True)
    document = {"mode": mode, "environment": environment.collect(mode), "torch_flags": flags,
                "settings": asdict(settings), "cases": cases}
    out.mkdir(parents=True, exist_ok=True)
    (out / "models.json").write_text(json.dumps(document, indent=2) + "\n")
    (out / "models.md").write_text(summary_table(document))
    return document


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.models", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default=",".join(ARCHITECTURES),
                   help=f"comma-separated architectures (default: {','.join(ARCHITECTURES)})")
    p.add_argument("--layout", default=",".join(LAYOUTS),
                   help="comma-separated layouts: NCHW, channels_last (default: both)")
    p.add_argument("--batch", type=int, help="batch size (default: 32 on a GPU, 1 on the CPU)")
    p.add_argument("--compile", nargs="?", const="inductor", metavar="BACKEND",
                   help="time both models under torch.compile(fullgraph=True) with BACKEND "
                        "(default when given: inductor)")
    p.add_argument("--cuda-graph", action="store_true",
                   help="time replays of both models captured in CUDA graphs (needs a GPU)")
    p.add_argument("--out", type=Path, help="results folder (default: bench/results/<UTC time>-models)")
    args = p.parse_args(argv)
    import torch

    settings = GPU_SETTINGS if torch.cuda.is_available() and environment.gpu_present() else CPU_SETTINGS
    if args.batch is not None:
        if args.batch < 1:
            p.error(f"--batch must be >= 1; got {args.batch}")
        settings = Settings(**{**asdict(settings), "batch": args.batch})
    if args.compile is not None:
        settings = Settings(**{**asdict(settings), "compile_backend": args.compile})
    if args.cuda_graph:
        if settings.device != "cuda":
            p.error("--cuda-graph needs a CUDA GPU (none here)")
        if args.compile is not None:
            p.error("--cuda-graph captures the eager models: use it without --compile (or "
                    "--compile with torch.compile's own mode=\"reduce-overhead\" elsewhere)")
        settings = Settings(**{**asdict(settings), "cuda_graph": True})
    layouts = [s.strip() for s in args.layout.split(",") if s.strip()]
    architectures = [s.strip() for s in args.arch.split(",") if s.strip()]
    if not layouts or not architectures:
        p.error("--layout and --arch each need at least one name")
    for layout in layouts:
        if layout not in LAYOUTS:
            p.error(f"--layout must be among {', '.join(LAYOUTS)}; got {layout!r}")
    for a in architectures:
        if a not in ARCHITECTURES:
            p.error(f"--arch must be among {', '.join(ARCHITECTURES)}; got {a!r}")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or RESULTS / f"{stamp}-models"
    if settings.device == "cpu":
        print("No GPU: timing the NumPy reference on the CPU (batch 1, 64x64); these timings say "
              "nothing about GPU speed.", file=sys.stderr)
    document = run(architectures, layouts, settings, out)
    print(summary_table(document))
    print(f"results: {out}", file=sys.stderr)
    return 0 if all(c["status"] == "ok" for c in document["cases"]) else 1


if __name__ == "__main__":
    sys.exit(main())
