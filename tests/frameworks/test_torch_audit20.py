"""Audit 20 of gpuconv.torch. Fixed and pinned below:

1. The input gradient of a channels_last conv_transpose2d with one output channel (a U-Net's mask
   head) came back NCHW where torch's is channels_last: the convolution that computes it sees a
   one-channel grad_output, contiguous in both layouts, and ran NCHW.
2. A tensor contiguous in both layouts (a 1x1 or one-input-channel weight, a one-channel image)
   counted as NCHW whatever its strides; torch's suggest_memory_format goes by the strides its
   size-1 dimensions keep, so a model moved to channels_last fed NCHW images (1x1 branches, a
   grayscale stem) gave NCHW results where torch's are channels_last. The reference's one-channel
   NHWC results also kept a transposed stride on C, reading as NCHW.
3. torch.jit.trace of ConvTranspose2d.forward(x, output_size=skip.size()) recorded the traced
   output_size, so the trace failed at any other size; torch's layer turns it into an output
   padding first, which the trace records (the same at other sizes), and so does gpuconv's now.
"""
import pytest

torch = pytest.importorskip("torch")

import gpuconv.torch as gt  # noqa: E402
from test_torch_audit19 import Up  # noqa: E402  (forward(x, skip): output_size=skip.size())

F = torch.nn.functional


@pytest.mark.parametrize("out_channels", [1, 2])
@pytest.mark.parametrize("output_padding", [0, 1])
def test_conv_transpose2d_input_gradient_keeps_the_channels_last_layout(out_channels,
                                                                        output_padding):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64).contiguous(
        memory_format=torch.channels_last)
    w = torch.randn(3, out_channels, 3, 3, dtype=torch.float64)
    grads = []
    for conv_transpose2d in (gt.conv_transpose2d, F.conv_transpose2d):
        xi = x.detach().requires_grad_()
        y = conv_transpose2d(xi, w, None, 2, 1, output_padding, 1, 2)
        grads.append(torch.autograd.grad(y, xi, torch.ones_like(y))[0])
    got, want = grads
    assert got.stride() == want.stride() and got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


CL = torch.channels_last


@pytest.mark.parametrize("case", ["1x1 weight", "grayscale weight", "grayscale image",
                                  "1x1 image"])
def test_a_tensor_dense_in_both_layouts_counts_by_its_strides_as_torch(case):
    torch.manual_seed(0)
    x, w = {
        "1x1 weight": (torch.randn(2, 3, 5, 5), torch.randn(4, 3, 1, 1).to(memory_format=CL)),
        "grayscale weight": (torch.randn(2, 1, 6, 6), torch.randn(4, 1, 3, 3).to(memory_format=CL)),
        "grayscale image": (torch.randn(2, 1, 6, 6).to(memory_format=CL), torch.randn(4, 1, 3, 3)),
        "1x1 image": (torch.randn(2, 5, 1, 1).to(memory_format=CL), torch.randn(3, 5, 1, 1)),
    }[case]
    x, w = x.double().requires_grad_(), w.double().requires_grad_()
    for f in (gt.conv2d, F.conv2d):
        y = f(x, w)
        gx, gw = torch.autograd.grad(y, (x, w), torch.ones_like(y))
        if f is gt.conv2d:
            got = (y, gx, gw)
    want = (y, gx, gw)
    assert got[0].stride() == want[0].stride()
    for g, t in zip(got, want):
        torch.testing.assert_close(g, t, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name, args", [("max_pool2d", (2,)), ("avg_pool2d", (2,)),
                                        ("adaptive_avg_pool2d", (3,)),
                                        ("adaptive_max_pool2d", (3,))])
def test_a_one_channel_channels_last_pooling_stays_channels_last(name, args):
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64).to(memory_format=CL)
    got, want = getattr(gt, name)(x, *args), getattr(F, name)(x, *args)
    assert got.stride() == want.stride() == (want.shape[2] * want.shape[3], 1, want.shape[3], 1)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_a_traced_transposed_layer_with_output_size_runs_at_other_sizes():
    torch.manual_seed(0)
    model = Up(gt.ConvTranspose2d(4, 2, 3, stride=2, padding=1).double())
    with pytest.warns(torch.jit.TracerWarning):
        traced = torch.jit.trace(model, (torch.randn(1, 4, 4, 5, dtype=torch.float64),
                                         torch.randn(1, 2, 8, 10, dtype=torch.float64)))
    x, skip = torch.randn(1, 4, 6, 7, dtype=torch.float64), torch.zeros(1, 2, 12, 14)
    torch.testing.assert_close(traced(x, skip), model(x, skip), rtol=1e-12, atol=1e-12)
    assert traced(x, skip).shape == (1, 2, 12, 14)
