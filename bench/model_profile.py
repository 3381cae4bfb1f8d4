"""``python -m bench.model_profile``: where a converted torchvision model's time goes on a GPU.

    python -m bench.model_profile [--arch mobilenet_v2] [--layout NCHW] [--batch 32]
                                  [--mode forward|train_step] [--iterations 10] [--rows 25]

bench.models says how a converted model compares with native PyTorch; this says why. For the
converted model (random weights, as bench.models builds it) it prints
1. wall time per iteration against the sum of the GPU kernels' own time (torch.profiler's
   CUDA activity records every kernel of the process, CuPy's included): the gap is time the GPU
   waited for the host;
2. the kernels, heaviest first (total and mean device time, launches);
3. the host's cProfile of the same iterations, heaviest functions first (own time).
Needs torch with CUDA and CuPy.
"""
from __future__ import annotations

import argparse
import cProfile
import copy
import io
import pstats
import sys
import time
from collections import defaultdict

from .models import ARCHITECTURES, LAYOUTS, _train_step, torchvision_builder


def _kernel_table(events, iterations: int, rows: int) -> tuple[str, float]:
    """Device time per kernel name from the profiler's CUDA events (microseconds)."""
    totals, counts = defaultdict(float), defaultdict(int)
    for e in events:
        if str(e.device_type).endswith("CUDA"):     # a kernel (or memcpy/memset) on the GPU
            totals[e.name] += e.time_range.elapsed_us()
            counts[e.name] += 1
    device_us = sum(totals.values())
    lines = [f"{'kernel':90s} {'us/iter':>9s} {'share':>6s} {'launches/iter':>13s}"]
    for name, us in sorted(totals.items(), key=lambda kv: -kv[1])[:rows]:
        lines.append(f"{name[:90]:90s} {us / iterations:9.1f} {us / device_us:6.1%} "
                     f"{counts[name] / iterations:13.1f}")
    return "\n".join(lines), device_us / iterations


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.model_profile",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="mobilenet_v2", choices=ARCHITECTURES)
    p.add_argument("--layout", default="NCHW", choices=LAYOUTS)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--mode", default="forward", choices=("forward", "train_step"))
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--rows", type=int, default=25)
    p.add_argument("--native", action="store_true", help="profile the native model instead")
    args = p.parse_args(argv)
    import torch
    if not torch.cuda.is_available():
        p.error("needs a CUDA GPU")
    import gpuconv.torch as gtorch
    from torch.profiler import ProfilerActivity, profile

    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    memory_format = torch.channels_last if args.layout == "channels_last" else torch.contiguous_format
    torch.manual_seed(0)
    model = torchvision_builder(args.arch)().to(device="cuda", memory_format=memory_format)
    if not args.native:
        model = copy.deepcopy(model)
        gtorch.convert(model)
    x = torch.randn(args.batch, 3, 224, 224, device="cuda").to(memory_format=memory_format)
    labels = torch.randint(0, 1000, (args.batch,), device="cuda")
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    model.train(args.mode == "train_step")

    def step():
        if args.mode == "forward":
            with torch.no_grad():
                model(x)
        else:
            _train_step(torch, model, optimizer, x, labels)

    for _ in range(3):           # kernel builds, cuDNN's search
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.iterations):
        step()
    torch.cuda.synchronize()
    wall_us = (time.perf_counter() - start) / args.iterations * 1e6

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(args.iterations):
            step()
        torch.cuda.synchronize()
    table, device_us = _kernel_table(prof.events(), args.iterations, args.rows)

    profiler = cProfile.Profile()
    profiler.enable()
    host_start = time.perf_counter()
    for _ in range(args.iterations):
        step()
    host_us = (time.perf_counter() - host_start) / args.iterations * 1e6
    torch.cuda.synchronize()
    profiler.disable()

    who = "native" if args.native else "converted"
    print(f"{args.arch} {args.layout} batch {args.batch} {args.mode} ({who}): wall "
          f"{wall_us:.0f} us/iter, GPU kernels {device_us:.0f} us/iter, host issue "
          f"{host_us:.0f} us/iter (under cProfile, unsynchronized)\n")
    print(table + "\n")
    stream = io.StringIO()
    pstats.Stats(profiler, stream=stream).sort_stats("tottime").print_stats(args.rows)
    print(stream.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
