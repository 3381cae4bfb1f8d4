"""gpuconv.torch's functions take torch's ``__torch_function__`` protocol, as
torch.nn.functional's do: a model whose own forward calls them traces with torch.fx, a tensor
subclass gets its own type back, a TorchFunctionMode sees the call (torch.compile:
test_torch_compile.py). Expected values come from torch.nn.functional
(double precision, the reference executor)."""
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import gpuconv.torch as G  # noqa: E402


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


class FunctionalNet(torch.nn.Module):
    """A forward of its own calling gpuconv.torch's functions: fx traces into it (only
    torch.nn's layers are leaves)."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(randn(4, 3, 3, 3, seed=1))
        self.up = torch.nn.Parameter(randn(4, 2, 2, 2, seed=2))

    def forward(self, x, boxes):
        y = G.conv2d(x, self.weight, padding=1, activation="relu")
        y, indices = G.max_pool2d(y, 2, return_indices=True)
        y = G.max_unpool2d(y, indices, 2) + G.avg_pool2d(G.conv2d(x, self.weight, padding=1),
                                                         3, 1, 1)
        y = G.conv_transpose2d(y, self.up, stride=2)
        return G.roi_align(y, boxes, 2, 0.5, 2).sum() + G.adaptive_avg_pool2d(y, 1).sum()


class TorchNet(FunctionalNet):
    def forward(self, x, boxes):
        y = F.relu(F.conv2d(x, self.weight, padding=1))
        y, indices = F.max_pool2d(y, 2, return_indices=True)
        y = F.max_unpool2d(y, indices, 2) + F.avg_pool2d(F.conv2d(x, self.weight, padding=1),
                                                         3, 1, 1)
        y = F.conv_transpose2d(y, self.up, stride=2)
        # roi_align over one box per image covering the whole (16, 16) map at scale 0.5,
        # 2 x 2 bins of 8 x 8 pixels, 2 x 2 samples each at pixel centres: each bin's value is
        # the mean of the 2 x 2 pixels at offsets 2 and 6 (the samples fall on integers).
        pooled = y[:, :, 2::4, 2::4].reshape(*y.shape[:2], 2, 2, 2, 2).mean(dim=(3, 5))
        return pooled.sum() + F.adaptive_avg_pool2d(y, 1).sum()


BOXES = torch.tensor([[0, 0, 0, 32, 32], [1, 0, 0, 32, 32]], dtype=torch.float64)


def test_a_forward_calling_the_functions_traces_with_torch_fx():
    model = FunctionalNet()
    traced = torch.fx.symbolic_trace(model)
    targets = [n.target for n in traced.graph.nodes if n.op == "call_function"]
    for function in (G.conv2d, G.max_pool2d, G.max_unpool2d, G.avg_pool2d, G.conv_transpose2d,
                     G.roi_align, G.adaptive_avg_pool2d):
        assert function in targets
    x = randn(2, 3, 8, 8, seed=3)
    expected = TorchNet()(x, BOXES)
    torch.testing.assert_close(traced(x, BOXES), expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(model(x, BOXES), expected, rtol=1e-10, atol=1e-10)


def test_roi_pool_with_boxes_as_a_list_traces():
    traced = torch.fx.symbolic_trace(lambda x, b: G.roi_pool(x, [b], 2))
    x, boxes = randn(1, 2, 6, 6), torch.tensor([[0.0, 0.0, 5.0, 5.0]], dtype=torch.float64)
    torch.testing.assert_close(traced(x, boxes), G.roi_pool(x, [boxes], 2))


class Tagged(torch.Tensor):
    """A subclass with torch's default __torch_function__: results of torch functions keep it."""


@pytest.mark.parametrize("call, torch_call", [
    (lambda x, w: G.conv2d(x, w, padding=1), lambda x, w: F.conv2d(x, w, padding=1)),
    (lambda x, w: G.lp_pool2d(x.abs(), 2.0, 2), lambda x, w: F.lp_pool2d(x.abs(), 2.0, 2)),
    (lambda x, w: G.global_max_pool2d(x), lambda x, w: F.adaptive_max_pool2d(x, 1)),
])
def test_a_tensor_subclass_gets_its_own_type_back(call, torch_call):
    x = randn(1, 3, 5, 5).as_subclass(Tagged)
    w = randn(2, 3, 3, 3, seed=1)
    out = call(x, w)
    assert type(out) is Tagged and type(torch_call(x, w)) is Tagged
    torch.testing.assert_close(out.as_subclass(torch.Tensor),
                               torch_call(x, w).as_subclass(torch.Tensor))


class Recorder(torch.overrides.TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.seen.append(getattr(func, "__name__", str(func)))
        return func(*args, **(kwargs or {}))


def test_a_torch_function_mode_sees_the_call():
    x = randn(1, 3, 5, 5)
    with Recorder() as mode:
        out = G.spatial_pyramid_pool2d(x, (1, 2), "avg")
    assert mode.seen[0] == "spatial_pyramid_pool2d"
    expected = torch.cat([F.adaptive_avg_pool2d(x, level).flatten(1) for level in (1, 2)], 1)
    torch.testing.assert_close(out, expected)
