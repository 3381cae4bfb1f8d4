"""gpuconv.torch.convert on a small CNN holding every kind of layer it swaps (conv, depthwise,
1x1, reflect-padded, pooling, transposed) and one it must leave alone: the same outputs and
gradients as the unconverted model, through the NumPy reference and under gpuconv.simulate();
the report; the identity of parameters; what is skipped and why."""
import copy

import pytest

torch = pytest.importorskip("torch")
nn, F = torch.nn, torch.nn.functional

import gpuconv  # noqa: E402
import gpuconv.torch as G  # noqa: E402

from kernel_paths import require_entry_points  # noqa: E402
from small_cnn import SWAPPED, SmallCNN, StandardizedConv2d  # noqa: E402


def model_and_input(dtype, memory_format=torch.contiguous_format):
    torch.manual_seed(0)
    model = SmallCNN().to(dtype).to(memory_format=memory_format)
    x = torch.randn(2, 3, 11, 12, dtype=dtype).contiguous(memory_format=memory_format)
    return model, x


def outputs_and_gradients(model, x):
    x = x.clone().requires_grad_()
    model.zero_grad()
    out = model(x)
    out.backward(torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape))
    return [out.detach(), x.grad] + [p.grad.clone() for p in model.parameters()]


def assert_converted_model_matches(dtype, tol, memory_format=torch.contiguous_format):
    model, x = model_and_input(dtype, memory_format)
    original = copy.deepcopy(model)
    report = G.convert(model)
    assert {s.name: s.target for s in report.swapped} == {
        name: f"gpuconv.torch.{cls}" for name, cls in SWAPPED.items()}
    expected_results = outputs_and_gradients(original, x)
    for actual, expected in zip(outputs_and_gradients(model, x), expected_results):
        torch.testing.assert_close(actual, expected, **tol)


def test_convert_report_and_identity():
    model, _ = model_and_input(torch.float32)
    parameters = {name: p for name, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    stem = model.stem
    report = G.convert(model)
    assert report.model is model and model.stem is stem       # in place, same module objects
    assert isinstance(model.stem, G.Conv2d) and isinstance(model.stem, nn.Conv2d)
    assert {name: p for name, p in model.named_parameters()} == parameters
    assert all(a is b for a, b in zip(model.parameters(), parameters.values()))
    assert optimizer.param_groups[0]["params"][0] is model.stem.weight
    assert [s.source for s in report.swapped if s.name == "up"] == ["torch.nn.ConvTranspose2d"]
    assert [(s.name, s.type) for s in report.skipped] == [
        ("standardized", "small_cnn.StandardizedConv2d")]
    assert "subclass of torch.nn.Conv2d" in report.skipped[0].reason
    assert type(model.standardized) is StandardizedConv2d and type(model.head[2]) is nn.Linear
    assert type(model.reflect) is G.Conv2d and model.reflect.padding_mode == "reflect"
    text = str(report)
    assert "swapped 8 module(s), skipped 1" in text and "standardized" in text
    assert "gpuconv.Conv2d" in repr(model)


def test_converted_model_matches_through_the_reference_float64():
    assert_converted_model_matches(torch.float64, dict(rtol=1e-10, atol=1e-10))


def test_converted_model_matches_through_the_reference_float32_channels_last():
    assert_converted_model_matches(torch.float32, dict(rtol=1e-4, atol=1e-5),
                                   memory_format=torch.channels_last)


# The launcher entry points SmallCNN's forward and backward passes reach under simulate().
KERNEL_ENTRY_POINTS = (
    *(f"gpuconv.conv.launch.{name}" for name in (
        "conv2d", "conv_transpose2d", "conv2d_input", "conv2d_weight", "conv2d_bias")),
    *(f"gpuconv.pool.launch.{name}" for name in (
        "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "grad_max_pool2d", "grad_avg_pool2d",
        "grad_adaptive_avg_pool2d")),
)


def test_converted_model_matches_under_simulate():
    require_entry_points(*KERNEL_ENTRY_POINTS)
    with gpuconv.simulate():
        try:
            assert_converted_model_matches(torch.float32, dict(rtol=1e-4, atol=1e-5))
        except NotImplementedError as error:
            pytest.skip(f"a kernel path is not implemented yet under gpuconv.simulate(): {error}")


def test_training_step_after_convert_updates_the_original_parameters():
    model, x = model_and_input(torch.float64)
    reference = copy.deepcopy(model)
    G.convert(model)
    for m in (model, reference):
        optimizer = torch.optim.SGD(m.parameters(), lr=0.1)
        m(x).square().sum().backward()
        optimizer.step()
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-10)


def test_convert_not_in_place_leaves_the_model_alone():
    model, x = model_and_input(torch.float64)
    report = G.convert(model, inplace=False)
    assert report.model is not model
    assert type(model.stem) is nn.Conv2d and type(report.model.stem) is G.Conv2d
    torch.testing.assert_close(report.model(x), model(x))


@pytest.mark.filterwarnings("ignore:Complex modules")   # torch's note on complex parameters
def test_convert_skips_subclasses_other_dimensions_and_unsupported_dtypes():
    shared = nn.MaxPool2d(2)
    model = nn.Sequential(StandardizedConv2d(3, 4, 3), nn.Conv1d(2, 2, 1), shared, shared,
                          nn.Conv2d(2, 2, 1).to(torch.complex64), nn.ReLU())
    report = G.convert(model)
    assert [s.name for s in report.swapped] == ["2"]           # a shared layer is listed once
    assert type(model[3]) is G.MaxPool2d
    reasons = {s.name: s.reason for s in report.skipped}
    assert set(reasons) == {"0", "1", "4"}
    assert "subclass of torch.nn.Conv2d" in reasons["0"]
    assert "no gpuconv counterpart" in reasons["1"]
    assert "complex64" in reasons["4"]
    assert type(model[0]) is StandardizedConv2d


def test_convert_a_bare_layer_and_argument_errors():
    layer = nn.Conv2d(3, 3, 1)
    assert G.convert(layer).swapped[0].name == ""
    assert type(layer) is G.Conv2d
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        G.convert("resnet")
    with pytest.raises(TypeError, match="inplace"):
        G.convert(layer, inplace="yes")


def test_convert_swaps_torchvision_roi_layers_when_installed():
    ops = pytest.importorskip("torchvision.ops")
    model = nn.ModuleDict({"align": ops.RoIAlign(2, 0.5, 2, aligned=True),
                           "pool": ops.RoIPool(3, 1.0)})
    report = G.convert(model)
    assert isinstance(model["align"], G.RoIAlign) and model["align"].aligned
    assert isinstance(model["pool"], G.RoIPool)
    assert {s.name for s in report.swapped} == {"align", "pool"}


def test_replaced_roi_layers_keep_their_hooks(monkeypatch):
    """torchvision's ROI layers are replaced (not class-swapped): hooks registered on them move
    to the replacement, and their handles still remove them. torchvision is stood in for by a
    module with its two layer types (convert only looks them up in sys.modules)."""
    import sys
    import types

    class RoIAlign(nn.Module):
        def __init__(self, output_size, spatial_scale, sampling_ratio, aligned=False):
            super().__init__()
            self.output_size, self.spatial_scale = output_size, spatial_scale
            self.sampling_ratio, self.aligned = sampling_ratio, aligned

    ops = types.ModuleType("torchvision.ops")
    ops.RoIAlign, ops.RoIPool = RoIAlign, type("RoIPool", (nn.Module,), {})
    monkeypatch.setitem(sys.modules, "torchvision.ops", ops)
    model = nn.Sequential(RoIAlign(2, 1.0, 2))
    calls = []
    kept = model[0].register_forward_hook(lambda *args: calls.append("kept"))
    removed = model[0].register_forward_pre_hook(lambda *args: calls.append("removed"))
    G.convert(model)
    assert isinstance(model[0], G.RoIAlign)
    removed.remove()
    model[0](torch.randn(1, 2, 6, 6), torch.tensor([[0, 0.0, 0.0, 4.0, 4.0]]))
    assert calls == ["kept"]
    kept.remove()
    model[0](torch.randn(1, 2, 6, 6), torch.tensor([[0, 0.0, 0.0, 4.0, 4.0]]))
    assert calls == ["kept"]
