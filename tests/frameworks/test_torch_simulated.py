"""gpuconv.torch's CPU tensors under gpuconv.simulate(): the project's CUDA kernels, run on the
CPU through the same launchers as on a GPU, give torch's values and input gradients. Each case
skips, naming what is missing, while the launchers it needs are still being written."""
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import gpuconv  # noqa: E402
import gpuconv.torch as G  # noqa: E402

import torchvision_semantics as tvs  # noqa: E402
from kernel_paths import require_entry_points  # noqa: E402


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


W, B, WT = randn(6, 2, 3, 3, seed=1), randn(6, seed=2), randn(4, 3, 3, 3, seed=3)
BOXES = torch.tensor([[0, 1.0, 1.5, 5.0, 6.0], [1, 0.5, 2.0, 6.5, 4.0]])
_, UNPOOL_INDICES = F.max_pool2d(randn(2, 4, 7, 8, seed=4), 2, return_indices=True)


def launchers(family, *names):
    return [f"gpuconv.{family}.launch.{n}" for n in names]


CONV_LAUNCHERS = launchers("conv", "conv2d", "conv2d_input", "conv2d_weight", "conv2d_bias")


# name -> (call on a module of functions, what it needs, channels_last input)
CASES = {
    "conv2d": (lambda m, x: m.conv2d(x, W, B, 2, 1, 1, 2), CONV_LAUNCHERS, False),
    "conv2d_nhwc": (lambda m, x: m.conv2d(x, W, B, 1, 1, 1, 2), CONV_LAUNCHERS, True),
    "conv_transpose2d": (lambda m, x: m.conv_transpose2d(x, WT, None, 2, 1, 1),
                         launchers("conv", "conv_transpose2d", "conv2d", "conv2d_weight"), False),
    "max_pool2d": (lambda m, x: m.max_pool2d(x, 3, 2, 1, ceil_mode=True),
                   launchers("pool", "max_pool2d", "grad_max_pool2d"), False),
    "max_pool2d_nhwc": (lambda m, x: m.max_pool2d(x, 2),
                        launchers("pool", "max_pool2d", "grad_max_pool2d"), True),
    "avg_pool2d": (lambda m, x: m.avg_pool2d(x, 3, 2, 1, count_include_pad=False),
                   launchers("pool", "avg_pool2d", "grad_avg_pool2d"), False),
    "lp_pool2d": (lambda m, x: m.lp_pool2d(x, 2, 2),
                  launchers("pool", "lp_pool2d", "grad_lp_pool2d"), False),
    "adaptive_avg_pool2d": (
        lambda m, x: m.adaptive_avg_pool2d(x, (3, 5)),
        launchers("pool", "adaptive_avg_pool2d", "grad_adaptive_avg_pool2d"), False),
    "adaptive_max_pool2d": (
        lambda m, x: m.adaptive_max_pool2d(x, (3, 5)),
        launchers("pool", "adaptive_max_pool2d", "grad_adaptive_max_pool2d"), False),
    "max_unpool2d": (lambda m, x: m.max_unpool2d(x[:, :, :3, :4], UNPOOL_INDICES, 2,
                                                 output_size=(7, 8)),
                     launchers("pool", "max_unpool2d", "grad_max_unpool2d"), False),
    "roi_align": (lambda m, x: (tvs if m is F else m).roi_align(x, BOXES, 2, 1.0, 2),
                  launchers("roi", "roi_align", "grad_roi_align"), False),
    "roi_pool": (lambda m, x: (tvs if m is F else m).roi_pool(x, BOXES, 2),
                 launchers("roi", "roi_pool", "grad_roi_pool"), False),
}


def value_and_input_grad(fn, module, x):
    x = x.clone().requires_grad_()
    out = fn(module, x)
    out.backward(torch.linspace(-1, 1, out.numel()).reshape(out.shape))
    return out.detach(), x.grad


@pytest.mark.parametrize("name", sorted(CASES))
def test_function_under_simulate_matches_torch(name):
    fn, entry_points, channels_last = CASES[name]
    require_entry_points(*entry_points)
    x = randn(2, 4, 7, 8)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    expected = value_and_input_grad(fn, F, x)
    with gpuconv.simulate():
        try:
            actual = value_and_input_grad(fn, G, x)
        except NotImplementedError as error:
            pytest.skip(f"not implemented yet under gpuconv.simulate(): {error}")
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("channels_last", [False, True])
def test_roi_pool_backward_reuses_the_forwards_argmax(monkeypatch, channels_last):
    """As torchvision's autograd: the forward keeps its argmax, the backward launches no
    forward of its own."""
    from gpuconv.roi import launch_pool
    forwards = []
    real_forward = launch_pool._forward
    monkeypatch.setattr(launch_pool, "_forward", lambda *a, **k: (
        forwards.append(k["with_argmax"]), real_forward(*a, **k))[1])
    x = randn(2, 4, 7, 8)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    expected = value_and_input_grad(lambda m, x: tvs.roi_pool(x, BOXES, (3, 2)), F, x)
    with gpuconv.simulate():
        actual = value_and_input_grad(lambda m, x: G.roi_pool(x, BOXES, (3, 2)), G, x)
    assert forwards == [True]
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-5)
