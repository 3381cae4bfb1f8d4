"""fp16 NHWC forwards of ResNet-50's 3x3 layers by gpuconv's implicit GEMM and by cuDNN's
channels_last kernels (benchmark mode), for ncu to compare. Run under
`ncu --profile-from-start off`: only the calls between profiler start and stop are profiled,
after both sides compiled and chose their kernels."""
import sys

import cupy as cp
import torch

import gpuconv

torch.backends.cudnn.benchmark = True
layers = {"layer3": (32, 256, 14, 256), "layer4": (32, 512, 7, 512), "layer2": (32, 128, 28, 128)}
names = sys.argv[1:] or ["layer3"]
calls = []
for name in names:
    n, c, h, k = layers[name]
    x = cp.random.standard_normal((n, h, h, c), dtype=cp.float32).astype(cp.float16)
    wt = cp.random.standard_normal((k, c, 3, 3), dtype=cp.float32).astype(cp.float16)
    tx = torch.as_tensor(x, device="cuda").permute(0, 3, 1, 2)  # channels_last view of NHWC
    tw = torch.as_tensor(wt, device="cuda").contiguous(memory_format=torch.channels_last)
    ours = lambda x=x, wt=wt: gpuconv.conv2d(x, wt, padding=1, data_format="NHWC",
                                             algorithm="implicit_gemm")
    theirs = lambda tx=tx, tw=tw: torch.nn.functional.conv2d(tx, tw, padding=1)
    for _ in range(3):
        y, ty = ours(), theirs()
    torch.cuda.synchronize()
    ref = cp.asarray(ty.permute(0, 2, 3, 1).contiguous()).astype(cp.float32)
    print(name, "max |gpuconv - cudnn| / max|cudnn|:",
          float(cp.abs(y.astype(cp.float32) - ref).max() / cp.abs(ref).max()))
    calls += [ours, theirs]
torch.cuda.synchronize()
cp.cuda.profiler.start()
for call in calls:
    call()
torch.cuda.synchronize()
cp.cuda.profiler.stop()
