"""fp16 channels-last forwards of ResNet-50's 3x3 layers (batch 32) by gpuconv's implicit GEMM,
once per ``--math`` (the launcher option: "auto" is the mma.sync kernel, "wgmma" Hopper's
warpgroup kernel), and by cuDNN's channels_last kernel (benchmark mode), for Nsight Compute to
compare kernel by kernel. Needs a GPU, CuPy and torch:

    ncu --clock-control none --profile-from-start off --set full --export $OUT/ncu_fwd \\
        python -m bench.ncu_forward layer3 layer4 --math auto,wgmma

Only the calls between the profiler's start and stop are profiled, after every side compiled and
chose its kernels, each checked against cuDNN first. Filters are handed as channels_last
(K, R, S, C) memory, as the bench does, so no side runs a layout copy.
(bench/results/20261125T0036Z-H100-ncu-fp16-nhwc-3x3-forward: the first such run.)
"""
from __future__ import annotations

import argparse

from .environment import require

LAYERS = {"layer2": (32, 128, 28, 128), "layer3": (32, 256, 14, 256), "layer4": (32, 512, 7, 512)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ncu_forward",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("layers", nargs="*", help=f"of {', '.join(LAYERS)} (default: layer3)")
    parser.add_argument("--math", default="auto",
                        help="comma-separated launcher math options (auto, tensor_cores, wgmma)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.layers) - set(LAYERS))
    if unknown:
        parser.error(f"unknown layers {unknown}; choose from {', '.join(LAYERS)}")
    layers = args.layers or ["layer3"]

    cp, torch = require("bench.ncu_forward", "cupy", "torch")
    from gpuconv.conv import launch
    from gpuconv.conv.geometry import conv2d_geometry

    torch.backends.cudnn.benchmark = True
    calls = []
    for name in layers:
        n, c, h, k = LAYERS[name]
        x = cp.random.standard_normal((n, h, h, c), dtype=cp.float32).astype(cp.float16)
        w_krsc = cp.random.standard_normal((k, 3, 3, c), dtype=cp.float32).astype(cp.float16)
        w = w_krsc.transpose(0, 3, 1, 2)                      # logical KCRS, KRSC in memory
        geom = conv2d_geometry((n, c, h, h), w.shape, padding=1)
        tx = torch.as_tensor(x, device="cuda").permute(0, 3, 1, 2)   # channels_last views
        tw = torch.as_tensor(w_krsc, device="cuda").permute(0, 3, 1, 2)
        theirs = lambda tx=tx, tw=tw: torch.nn.functional.conv2d(tx, tw, padding=1)
        ty = theirs()
        torch.cuda.synchronize()
        ref = cp.asarray(ty.permute(0, 2, 3, 1).contiguous()).astype(cp.float32)
        for math in args.math.split(","):
            ours = lambda x=x, w=w, geom=geom, math=math: launch.conv2d(
                geom, x, w, algorithm="implicit_gemm", data_format="NHWC", executor="cupy",
                math=math)
            for _ in range(3):
                y = ours()
            cp.cuda.runtime.deviceSynchronize()
            error = float(cp.abs(y.astype(cp.float32) - ref).max() / cp.abs(ref).max())
            print(f"{name} math={math}: max |gpuconv - cudnn| / max |cudnn| = {error:.2e}")
            if not error < 1e-2:
                raise SystemExit(f"{name} math={math} disagrees with cuDNN")
            calls.append(ours)
        calls.append(theirs)
    torch.cuda.synchronize()
    cp.cuda.profiler.start()
    for call in calls:
        call()
    torch.cuda.synchronize()
    cp.cuda.profiler.stop()


if __name__ == "__main__":
    main()
