"""Host time per gpuconv.torch call: what the bridge from torch tensors adds to a layer.

    python -m bench.bridge_host [--device cpu|cuda] [--calls 2000] [--profile 0]

A converted model is host-bound when each layer's Python work outlasts its kernels (ResNet-50
and MobileNetV2 at batch 32 on an H100: bench/results/*-models). For each call below this
prints the mean wall time of back-to-back calls with nothing synchronized (the least disturbed
of five rounds), in microseconds:
- cpu: CPU tensors under ``gpuconv.simulate()`` with every kernel launch stubbed out (the
  simulator's launch does nothing), so what is timed is the host work alone: the torch
  wrappers, the bridge, the front or its plan's replay, the array views. Needs no GPU.
- cuda: CUDA tensors on the real kernels, at batch 1, whose kernels are shorter than the host
  work, so the GPU queue never fills and the wall time is the host's.
Each torch call is paired with ``gpuconv.conv2d`` (or the pooling) on the same arrays: their
difference is the bridge's cost. ``--profile N`` prints the N heaviest functions of a cProfile
of all the loops. Notes: kernels/conv/NOTES.md "Host time through gpuconv.torch, continued".
"""
from __future__ import annotations

import argparse
import cProfile
import contextlib
import time

from .timing import print_profile


@contextlib.contextmanager
def _stubbed_launches():
    """The simulator's kernel launch as a no-op, for the duration (host time alone)."""
    from gpuconv.simulator import _module
    real = _module.Function.__call__
    _module.Function.__call__ = lambda self, grid, block, args, shared_mem=0, stream=None: None
    try:
        yield
    finally:
        _module.Function.__call__ = real


def _calls(torch, device: str) -> list:
    import gpuconv
    import gpuconv.torch as G
    nn = torch.nn
    gen = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=gen).to(device)

    def layer(module):
        return G.convert(nn.Sequential(module.to(device).eval())).model[0]

    x, x_dw = randn(1, 64, 56, 56), randn(1, 96, 56, 56)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    w1 = randn(64, 64, 1, 1)
    conv3 = layer(nn.Conv2d(64, 64, 3, padding=1))
    depthwise = layer(nn.Conv2d(96, 96, 3, padding=1, groups=96))
    conv3_cl = layer(nn.Conv2d(64, 64, 3, padding=1).to(memory_format=torch.channels_last))
    max_pool = layer(nn.MaxPool2d(3, 2, 1))
    avg_pool = layer(nn.AdaptiveAvgPool2d(1))
    # Small enough that torch's own work on the CPU (the ReLU, the loss) stays minor.
    net = G.convert(nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(16, 16, 1)).to(device)).model
    x_net = randn(1, 16, 8, 8)

    def array(t, nhwc=False):
        from gpuconv.torch._bridge import to_array
        return to_array(t, "NHWC" if nhwc else "NCHW")

    xa, w1a, xa_cl = array(x), array(w1), array(x_cl, nhwc=True)
    w3a, b3a = array(conv3.weight), array(conv3.bias)
    w3a_cl = array(conv3_cl.weight)

    def train_step():
        net.zero_grad(set_to_none=True)
        net(x_net).sum().backward()

    no_grad = torch.no_grad
    return [
        ("torch conv2d 1x1 (function)", lambda: _under(no_grad, G.conv2d, x, w1)),
        ("  gpuconv.conv2d same arrays", lambda: gpuconv.conv2d(xa, w1a)),
        ("torch Conv2d 3x3 + bias", lambda: _under(no_grad, conv3, x)),
        ("  gpuconv.conv2d same arrays", lambda: gpuconv.conv2d(xa, w3a, b3a, 1, 1)),
        ("torch Conv2d depthwise 3x3", lambda: _under(no_grad, depthwise, x_dw)),
        ("torch Conv2d 3x3 channels_last", lambda: _under(no_grad, conv3_cl, x_cl)),
        ("  gpuconv.conv2d same arrays", lambda: gpuconv.conv2d(
            xa_cl, w3a_cl, b3a, 1, 1, data_format="NHWC")),
        ("torch MaxPool2d 3x3 s2", lambda: _under(no_grad, max_pool, x)),
        ("  gpuconv.max_pool2d same array", lambda: gpuconv.max_pool2d(xa, 3, 2, 1)),
        ("torch AdaptiveAvgPool2d 1", lambda: _under(no_grad, avg_pool, x)),
        ("train step conv3-relu-conv1 (fwd+bwd)", train_step),
    ]


def _under(context, fn, *args):
    with context():
        return fn(*args)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bridge_host",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--profile", type=int, default=0)
    args = parser.parse_args(argv)
    if args.calls < 1:
        parser.error(f"--calls must be >= 1, got {args.calls}")
    import torch
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA GPU and a CUDA build of PyTorch")

    import gpuconv
    if args.device == "cpu":
        context, sync = contextlib.ExitStack(), lambda: None
        context.enter_context(gpuconv.simulate())
        context.enter_context(_stubbed_launches())
    else:
        context, sync = contextlib.nullcontext(), torch.cuda.synchronize
    profiler = cProfile.Profile()
    rows = []
    with context:
        for name, fn in _calls(torch, args.device):
            for _ in range(20):        # compiles, plans, allocator pools
                fn()
            sync()
            best = float("inf")
            for _ in range(5):        # the least disturbed of five rounds
                t0 = time.perf_counter()
                for _ in range(args.calls):
                    fn()
                best = min(best, (time.perf_counter() - t0) / args.calls * 1e6)
                sync()
            if args.profile:
                profiler.enable()
                for _ in range(max(args.calls // 4, 1)):
                    fn()
                profiler.disable()
                sync()
            rows.append((name, best))
    how = "simulator, launches stubbed" if args.device == "cpu" else "real kernels"
    print(f"host time per call, {args.device} ({how}):")
    for name, us in rows:
        print(f"{name:42s} {us:8.1f} us")
    if args.profile:
        print_profile(profiler, args.profile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
