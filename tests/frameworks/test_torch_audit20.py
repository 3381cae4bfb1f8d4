"""Audit 20 of gpuconv.torch (transposed convolution and the conv gradients): the input gradient
of a channels_last conv_transpose2d with one output channel (a U-Net's mask head) came back NCHW
where torch's is channels_last: the convolution that computes it sees a one-channel grad_output,
contiguous in both layouts, and ran NCHW."""
import pytest

torch = pytest.importorskip("torch")

import gpuconv.torch as gt  # noqa: E402

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
