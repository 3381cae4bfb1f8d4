"""Audit 19 of gpuconv.torch's modules and convert(). Fixed and pinned below:

1. Under torch.jit.trace a torch.Size holds 0-d tensors, and the argument helpers took a tuple
   or list by exact type: ``ConvTranspose2d.forward(y, output_size=skip.size())`` and
   ``adaptive_avg_pool2d(x, r.shape[-2:])`` failed to trace where torch's trace.
2. ``ConvTranspose2d.forward(x, output_size=numpy_array)`` was refused; torch takes it.
3. ``torch.func.vmap`` over a module (its parameters require grad) gave torch's setup_context
   RuntimeError instead of gpuconv's NotImplementedError naming the transforms.
4. An unbatched (C, H, W) input laid out HWC unsqueezed to a channels_last batch: the input and
   weight gradients came back channels_last where torch's follow the weight (contiguous).
5. convert() told a lazy Conv1d to "convert after its first forward pass" (it has no gpuconv
   counterpart either way), and called a LazyConv2d given parameters by load_state_dict a
   subclass whose forward may differ.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import gpuconv.torch as gt  # noqa: E402

nn, F = torch.nn, torch.nn.functional


class Up(nn.Module):
    """A U-Net decoder step: the transposed convolution sized to the skip connection."""

    def __init__(self, up):
        super().__init__()
        self.up = up

    def forward(self, y, skip):
        return self.up(y, output_size=skip.size())


def test_traced_output_size_from_a_tensors_size():
    y, skip = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 8, 8)
    torch_up = nn.ConvTranspose2d(3, 3, 3, 2, 1)
    up = gt.ConvTranspose2d(3, 3, 3, 2, 1)
    up.load_state_dict(torch_up.state_dict())
    traced = torch.jit.trace(Up(up), (y, skip))
    torch.testing.assert_close(traced(y, skip), torch_up(y, output_size=skip.size()))

    def pooled(x, r):
        return gt.adaptive_avg_pool2d(x, r.shape[-2:])
    traced = torch.jit.trace(pooled, (skip, y))
    torch.testing.assert_close(traced(skip, y), F.adaptive_avg_pool2d(skip, (4, 4)))


@pytest.mark.parametrize("output_size", [np.array([10, 12]), np.array([1, 2, 10, 12], np.int32)])
def test_transposed_output_size_as_a_numpy_array(output_size):
    x = torch.randn(1, 3, 4, 5)
    torch_up = nn.ConvTranspose2d(3, 2, 3, stride=2)
    up = gt.ConvTranspose2d(3, 2, 3, stride=2)
    up.load_state_dict(torch_up.state_dict())
    expected = torch_up(x, output_size)
    assert expected.shape == (1, 2, 10, 12)
    torch.testing.assert_close(up(x, output_size), expected)


def test_vmap_over_a_module_is_refused_by_name():
    with pytest.raises(NotImplementedError, match="torch.func transforms"):
        torch.func.vmap(gt.Conv2d(3, 4, 3))(torch.randn(2, 1, 3, 8, 8))
    with pytest.raises(NotImplementedError, match="torch.func transforms"):
        torch.func.grad(lambda x: gt.MaxPool2d(2)(x).sum())(torch.randn(1, 2, 4, 4))


def hwc_image(seed=0):
    """A (C, H, W) tensor laid out H, W, C, as torch.from_numpy(image).permute(2, 0, 1)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(5, 7, 4, generator=g).permute(2, 0, 1).requires_grad_()


LAYERS = {
    "conv": lambda m: m.Conv2d(4, 6, 3), "conv_transpose": lambda m: m.ConvTranspose2d(4, 6, 3),
    "max": lambda m: m.MaxPool2d(2), "avg": lambda m: m.AvgPool2d(2),
    "lp": lambda m: m.LPPool2d(2, 2), "adaptive_avg": lambda m: m.AdaptiveAvgPool2d(3),
    "adaptive_max": lambda m: m.AdaptiveMaxPool2d(3)}


@pytest.mark.parametrize("layer_name, weight_channels_last", [
    *((name, False) for name in LAYERS), ("conv", True), ("conv_transpose", True)])
def test_unbatched_gradient_layouts_follow_the_weight_as_torchs(layer_name, weight_channels_last):
    torch_layer, layer = LAYERS[layer_name](nn), LAYERS[layer_name](gt)
    layer.load_state_dict(torch_layer.state_dict())
    if weight_channels_last:
        torch_layer.to(memory_format=torch.channels_last)
        layer.to(memory_format=torch.channels_last)
    results = []
    for module in (torch_layer, layer):
        x = hwc_image()
        y = module(x)
        tensors = (x, module.weight) if hasattr(module, "weight") else (x,)
        grads = torch.autograd.grad(y.sum(), tensors)
        results.append((y, grads))
    (y_torch, grads_torch), (y, grads) = results
    torch.testing.assert_close(y, y_torch)
    assert y.stride() == y_torch.stride()
    for got, expected in zip(grads, grads_torch):
        torch.testing.assert_close(got, expected)
        assert got.stride() == expected.stride()


def test_convert_reports_lazy_layers_by_what_they_become():
    model = nn.Sequential(nn.LazyConv1d(3, 1), nn.LazyConv2d(3, 1), nn.LazyConv2d(3, 1))
    model.load_state_dict({"2.weight": torch.randn(3, 3, 1, 1), "2.bias": torch.randn(3)},
                          strict=False)
    report = gt.convert(model)
    reasons = {s.name: s.reason for s in report.skipped}
    assert "no gpuconv counterpart" in reasons["0"] and "Conv1d" in reasons["0"]
    assert "not initialized" in reasons["1"] and "first forward pass" in reasons["1"]
    assert "not yet run" in reasons["2"] and "convert after it" in reasons["2"]
    model[1:](torch.randn(1, 2, 4, 4))  # the 2-D layers run once: now Conv2d
    report = gt.convert(model)
    assert [s.name for s in report.swapped] == ["1", "2"]
