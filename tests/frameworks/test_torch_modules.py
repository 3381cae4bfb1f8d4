"""gpuconv.torch's nn layers against torch's with the same state_dict: outputs and the gradients
of input and parameters, state_dict keys, the padding modes, the extras (fused
activation/residual) and the ROI layers."""
import pytest

torch = pytest.importorskip("torch")
nn, F = torch.nn, torch.nn.functional

import gpuconv.torch as G  # noqa: E402

import torchvision_semantics as tvs  # noqa: E402


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def twins(name, *args, **kwargs):
    """A torch layer with random float64 parameters and its gpuconv twin loaded from its
    state_dict."""
    torch.manual_seed(0)
    reference = getattr(nn, name)(*args, **kwargs).double()
    twin = getattr(G, name)(*args, **kwargs).double()
    assert isinstance(twin, getattr(nn, name))
    assert list(twin.state_dict()) == list(reference.state_dict())
    twin.load_state_dict(reference.state_dict())
    return reference, twin


def first(out):
    return out[0] if isinstance(out, tuple) else out


def assert_same_outputs_and_gradients(reference, twin, *inputs):
    x = inputs[0].clone().requires_grad_()
    x_ref = inputs[0].clone().requires_grad_()
    out, expected = twin(x, *inputs[1:]), reference(x_ref, *inputs[1:])
    if isinstance(out, tuple):
        assert torch.equal(out[1], expected[1])
    out, expected = first(out), first(expected)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    cotangent = randn(*out.shape, seed=9)
    out.backward(cotangent)
    expected.backward(cotangent)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-10, atol=1e-10)
    for (name, p), p_ref in zip(twin.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, p_ref.grad, rtol=1e-10, atol=1e-10, msg=name)


LAYER_CASES = [
    ("Conv2d", (4, 6, 3), dict(stride=2, padding=1, groups=2)),
    ("Conv2d", (4, 4, 3), dict(padding=1, groups=4, bias=False)),        # depthwise
    ("Conv2d", (4, 5, 1), {}),                                           # pointwise
    ("Conv2d", (4, 5, (3, 2)), dict(padding="same", dilation=(2, 1))),
    ("ConvTranspose2d", (4, 3, 3), dict(stride=2, padding=1, output_padding=1)),
    ("ConvTranspose2d", (4, 6, 2), dict(stride=2, groups=2, bias=False)),
    ("MaxPool2d", (3,), dict(stride=2, padding=1, ceil_mode=True)),
    ("MaxPool2d", (2,), dict(return_indices=True)),
    ("AvgPool2d", (3, 2, 1), dict(count_include_pad=False, ceil_mode=True)),
    ("AvgPool2d", (2,), dict(divisor_override=3)),
    ("LPPool2d", (2, 3), dict(stride=2)),
    ("AdaptiveAvgPool2d", ((2, 3),), {}),
    ("AdaptiveMaxPool2d", (3,), dict(return_indices=True)),
]


@pytest.mark.filterwarnings("ignore:Using padding='same'")   # torch's own layer may copy
@pytest.mark.parametrize("name,args,kwargs", LAYER_CASES)
def test_layer_matches_torch_layer_with_same_state_dict(name, args, kwargs):
    reference, twin = twins(name, *args, **kwargs)
    assert_same_outputs_and_gradients(reference, twin, randn(2, 4, 7, 8, seed=1))


def test_conv_transpose2d_layer_output_size():
    reference, twin = twins("ConvTranspose2d", 4, 3, 3, stride=2)
    x = randn(1, 4, 5, 5)
    torch.testing.assert_close(twin(x, output_size=[12, 11]), reference(x, output_size=[12, 11]))


def test_max_unpool2d_layer_matches_torch():
    reference, twin = nn.MaxUnpool2d(2), G.MaxUnpool2d(2)
    values, indices = F.max_pool2d(randn(2, 3, 7, 8), 2, return_indices=True)
    out = twin(values, indices, output_size=(7, 8))
    torch.testing.assert_close(out, reference(values, indices, output_size=(7, 8)))
    assert_same_outputs_and_gradients(reference, twin, values, indices)


def test_conv2d_extras_activation_and_residual():
    reference, _ = twins("Conv2d", 3, 4, 3, padding=1)
    twin = G.Conv2d(3, 4, 3, padding=1, activation="relu").double()
    twin.load_state_dict(reference.state_dict())
    x, residual = randn(1, 3, 5, 5), randn(1, 4, 5, 5, seed=1)
    torch.testing.assert_close(twin(x, residual), torch.relu(reference(x) + residual))
    assert "activation='relu'" in repr(twin)


def test_conv2d_extras_are_checked_at_construction():
    with pytest.raises(ValueError, match="activation.*'gelu'"):
        G.Conv2d(3, 4, 3, activation="gelu")
    with pytest.raises(ValueError, match="algorithm.*'fastest'"):
        G.Conv2d(3, 4, 3, algorithm="fastest")
    assert G.Conv2d(3, 4, 1, algorithm="pointwise").algorithm == "pointwise"


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("settings", [dict(padding=(1, 2)), dict(padding="same", dilation=(2, 1)),
                                      dict(padding=2, stride=2, groups=2)])
def test_conv2d_padding_modes_match_torch(mode, settings):
    reference, twin = twins("Conv2d", 4, 6, 3, padding_mode=mode, **settings)
    assert_same_outputs_and_gradients(reference, twin, randn(2, 4, 6, 7))
    assert_same_outputs_and_gradients(reference, twin, randn(4, 6, 7))      # unbatched


def test_padding_modes_torch_refuses_are_refused():
    layer = G.Conv2d(3, 4, 3, padding=1)
    layer.padding_mode = "mirror"            # past torch's constructor check
    with pytest.raises(ValueError, match="padding_mode must be one of .*'mirror'"):
        layer(randn(1, 3, 5, 5))
    transposed = G.ConvTranspose2d(3, 4, 3).double()
    transposed.padding_mode = "reflect"      # torch's ConvTranspose2d takes zeros only
    with pytest.raises(ValueError, match="padding_mode must be one of 'zeros', got 'reflect'"):
        transposed(randn(1, 3, 5, 5))


BOXES = torch.tensor([[0, 1.0, 1.5, 5.0, 6.0], [1, 0.5, 2.0, 6.5, 4.0]], dtype=torch.float64)


def test_roi_layers_match_torchvision_semantics():
    x = randn(2, 3, 7, 8)
    layer = G.RoIAlign((2, 3), 0.5, 2, aligned=True)
    torch.testing.assert_close(layer(x, BOXES), tvs.roi_align(x, BOXES, (2, 3), 0.5, 2, True))
    assert repr(layer) == ("gpuconv.RoIAlign(output_size=(2, 3), spatial_scale=0.5, "
                           "sampling_ratio=2, aligned=True)")
    layer = G.RoIPool(3, 1.0)
    boxes = [BOXES[:1, 1:], BOXES[1:, 1:]]
    torch.testing.assert_close(layer(x, boxes), tvs.roi_pool(x, boxes, 3, 1.0))


def test_roi_layers_match_torchvision_layers_when_installed():
    ops = pytest.importorskip("torchvision.ops")
    x = randn(2, 3, 7, 8)
    torch.testing.assert_close(G.RoIAlign(2, 0.5, -1)(x, BOXES), ops.RoIAlign(2, 0.5, -1)(x, BOXES))
    torch.testing.assert_close(G.RoIPool(2, 0.5)(x, BOXES), ops.RoIPool(2, 0.5)(x, BOXES))
