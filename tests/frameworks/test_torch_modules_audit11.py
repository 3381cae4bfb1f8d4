"""Audit 11 of gpuconv.torch's nn layers and convert() against torch.nn (expected values from
torch's own layers). Findings, each fixed and pinned by one test below:

1. convert() left every layer parametrized with torch.nn.utils.parametrize (the current
   weight_norm / spectral_norm / orthogonal, register_parametrization) on torch, reported as "a
   subclass of torch.nn.Conv2d: its forward may differ": torch's generated ParametrizedConv2d
   adds properties only. It now becomes the same generated class over the gpuconv twin
   (parametrizations kept; remove_parametrizations gives the twin back).
2. convert() reported an uninitialized torch.nn.LazyConv2d as a subclass whose forward may
   differ; the report now says it is lazy and to convert after its first forward pass.
3. LPPool2d refused a norm_type that torch's layer takes: torch.nn.LPPool2d.forward passes
   float(norm_type) (a 0-d tensor, a NumPy scalar, a bool).
4. torch.fx.symbolic_trace failed on a converted model (TypeError "input must be a
   torch.Tensor, got Proxy"): fx treats torch.nn's layers as leaves but traces into others, and
   the gpuconv functions got Proxies. They now take torch's __torch_function__ protocol, which
   records each call as one call_function node (test_torch_overrides.py).
"""
import copy

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import gpuconv.torch as G  # noqa: E402


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def outputs_and_gradients(model, x):
    x = x.clone().requires_grad_()
    out = model(x)
    out.backward(randn(*out.shape, seed=9))
    return [out.detach(), x.grad] + [p.grad for p in model.parameters()]


def parametrized_model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.utils.parametrizations.weight_norm(nn.Conv2d(3, 4, 3, padding=1)), nn.ReLU(),
        nn.utils.parametrizations.spectral_norm(nn.ConvTranspose2d(4, 2, 3, stride=2))).double()


def test_convert_swaps_parametrized_layers_keeping_their_parametrizations():
    model, reference = parametrized_model(), parametrized_model()
    report = G.convert(model)
    assert [(s.name, s.target) for s in report.swapped] == [
        ("0", "gpuconv.torch.Conv2d (parametrized)"),
        ("2", "gpuconv.torch.ConvTranspose2d (parametrized)")]
    assert isinstance(model[0], G.Conv2d) and isinstance(model[2], G.ConvTranspose2d)
    assert list(model.state_dict()) == list(reference.state_dict())
    x = randn(1, 3, 5, 5, seed=1)
    for actual, expected in zip(outputs_and_gradients(model, x),
                                outputs_and_gradients(reference, x)):
        torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10)
    nn.utils.parametrize.remove_parametrizations(model[0], "weight")
    assert type(model[0]) is G.Conv2d


def test_convert_reports_an_uninitialized_lazy_layer_as_lazy():
    model = nn.Sequential(nn.LazyConv2d(4, 3))
    (skipped,) = G.convert(model).skipped
    assert "lazy" in skipped.reason and "first forward pass" in skipped.reason
    model(randn(1, 3, 5, 5).float())                  # torch makes it a torch.nn.Conv2d
    assert [s.target for s in G.convert(model).swapped] == ["gpuconv.torch.Conv2d"]


@pytest.mark.parametrize("norm_type", [torch.tensor(3.0), True])
def test_lppool2d_layer_reads_norm_type_with_float_as_torch(norm_type):
    x = randn(1, 2, 5, 6).abs() + 0.1
    torch.testing.assert_close(G.LPPool2d(norm_type, 2, 1)(x), nn.LPPool2d(norm_type, 2, 1)(x))


def test_converted_model_is_traceable_by_torch_fx():
    torch.manual_seed(0)
    reference = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                              nn.ConvTranspose2d(4, 2, 2, stride=2), nn.AdaptiveAvgPool2d(2))
    reference = reference.double()
    model = copy.deepcopy(reference)
    G.convert(model)
    traced = torch.fx.symbolic_trace(model)
    targets = {n.target for n in traced.graph.nodes if n.op == "call_function"}
    assert {G.conv2d, G.max_pool2d, G.conv_transpose2d, G.adaptive_avg_pool2d} <= targets
    x = randn(2, 3, 6, 6, seed=1)
    for actual, expected in zip(outputs_and_gradients(traced, x),
                                outputs_and_gradients(reference, x)):
        torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10)
