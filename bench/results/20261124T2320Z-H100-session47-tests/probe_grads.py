"""Session 47 probe: test_converted_small_cnn_compiled_on_cuda[channels_last-*] failed on the H100
(stem weight gradient, 8/216 elements past atol 1e-4). Is gpuconv wrong, or is float32 rounding
past the test's tolerance? Every variant's gradients against a float64 CPU oracle.
Run from the repository root: python3 <this file> [cuda|cpu]. Answer (probe_grads.log): torch's
own eager channels_last CUDA run is the wrong one."""
import copy
import sys

import torch

sys.path.insert(0, "tests/frameworks")
from small_cnn import SmallCNN  # noqa: E402
import gpuconv.torch as G  # noqa: E402

DEVICE = sys.argv[1] if len(sys.argv) > 1 else "cuda"
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False


def grads(model, x):
    model.zero_grad()
    out = model(x)
    out.square().sum().backward()
    return out.detach().double().cpu(), [p.grad.double().cpu() for p in model.parameters()]


for fmt in (torch.contiguous_format, torch.channels_last):
    torch._dynamo.reset()
    torch.manual_seed(0)
    base = SmallCNN().to(DEVICE).to(memory_format=fmt)
    oracle = copy.deepcopy(base).double().cpu()
    native = copy.deepcopy(base)
    native_c = torch.compile(copy.deepcopy(base), fullgraph=True, disable=DEVICE != "cuda")
    conv, conv_for_compile = copy.deepcopy(base), copy.deepcopy(base)
    G.convert(conv)
    G.convert(conv_for_compile)
    conv_c = torch.compile(conv_for_compile, fullgraph=True, disable=DEVICE != "cuda")
    for seed in (1, 2, 3):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(2, 3, 11, 12, generator=g, dtype=torch.float64)
        want_out, want = grads(oracle, x.contiguous(memory_format=fmt))
        xc = x.float().to(DEVICE).contiguous(memory_format=fmt)
        for name, m in (("torch", native), ("torch compiled", native_c), ("gpuconv", conv),
                        ("gpuconv compiled", conv_c)):
            out, got = grads(m, xc)
            worst = max(float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))
                        for a, b in zip(got, want))
            stem = float((got[0] - want[0]).abs().max())
            out_err = float((out - want_out).abs().max())
            print(f"{str(fmt):24s} seed {seed} {name:17s} out err {out_err:.1e}"
                  f"  worst grad err/scale {worst:.1e}  stem abs err {stem:.1e}"
                  f"  stem scale {float(want[0].abs().max()):.2e}")
