"""Gradients of gpuconv.torch: torch.autograd.gradcheck in float64 for every differentiable
function (small shapes), agreement with torch's own autograd, needs_input_grad respected,
torch's determinism flag forwarded; double backward: gradgradcheck where it is implemented, a
gradient penalty against torch's, a clear error where it is not."""
import contextlib

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import gpuconv  # noqa: E402
import gpuconv.torch as G  # noqa: E402

import torchvision_semantics as tvs  # noqa: E402


def leaf(*shape, seed=0, channels_last=False):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(*shape, generator=g, dtype=torch.float64)
    if channels_last:
        t = t.contiguous(memory_format=torch.channels_last)
    return t.requires_grad_()


def gradcheck(fn, *inputs):
    # fast_mode compares the analytical and numerical vector-Jacobian-vector products for random
    # vectors: the same check, without one forward pass per input element.
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-5, fast_mode=True)


BOXES = torch.tensor([[0, 1.0, 1.5, 5.0, 6.0], [1, 0.5, 2.0, 6.5, 4.0]], dtype=torch.float64)

# name -> (function of the leaves, leaf shapes). Pool inputs are distinct random values, so no
# max is tied and every function is differentiable at the point checked.
CASES = {
    "conv2d": (lambda x, w, b: G.conv2d(x, w, b, 2, 1, (1, 2), 2),
               [(2, 4, 6, 7), (6, 2, 3, 3), (6,)]),
    "conv2d_depthwise": (lambda x, w: G.conv2d(x, w, None, 1, 1, 1, 3),
                         [(1, 3, 5, 5), (3, 1, 3, 3)]),
    "conv2d_tanh_residual": (lambda x, w, b, r: G.conv2d(x, w, b, padding=1, activation="tanh",
                                                         residual=r),
                             [(1, 3, 5, 5), (4, 3, 3, 3), (4,), (1, 4, 5, 5)]),
    "conv2d_sigmoid": (lambda x, w: G.conv2d(x, w, activation="sigmoid"),
                       [(1, 2, 5, 4), (3, 2, 2, 2)]),
    "conv2d_relu": (lambda x, w, b: G.conv2d(x, w, b, activation="relu"),
                    [(1, 2, 5, 4), (3, 2, 2, 2), (3,)]),
    "conv_transpose2d": (lambda x, w, b: G.conv_transpose2d(x, w, b, 2, 1, 1, 2),
                         [(2, 4, 3, 4), (4, 3, 3, 3), (6,)]),
    "conv_transpose2d_op_ge_stride": (lambda x, w: G.conv_transpose2d(x, w, None, 1, 0, 1, 1, 2),
                                      [(1, 2, 3, 3), (2, 3, 3, 3)]),
    "conv2d_same_padding": (lambda x, w: G.conv2d(x, w, padding="same", dilation=(2, 1)),
                            [(1, 2, 5, 6), (3, 2, 3, 2)]),
    "max_pool2d": (lambda x: G.max_pool2d(x, 3, 2, 1, (1, 2), ceil_mode=True), [(2, 3, 7, 8)]),
    # Dilation 3 over a padding of 1: windows of padding alone, index -1, gradient nowhere.
    "max_pool2d_empty_windows": (lambda x: G.max_pool2d(x, 2, 1, 1, 3), [(1, 2, 3, 3)]),
    "avg_pool2d": (lambda x: G.avg_pool2d(x, 3, 2, 1, True, False), [(2, 3, 7, 8)]),
    "avg_pool2d_divisor": (lambda x: G.avg_pool2d(x, 2, divisor_override=3), [(1, 2, 4, 6)]),
    "lp_pool2d": (lambda x: G.lp_pool2d(x, 2, (2, 3), 2, True), [(2, 3, 7, 8)]),
    "adaptive_avg_pool2d": (lambda x: G.adaptive_avg_pool2d(x, (3, 5)), [(2, 3, 7, 8)]),
    "adaptive_max_pool2d": (lambda x: G.adaptive_max_pool2d(x, (3, 5)), [(2, 3, 7, 8)]),
    "global_avg_pool2d": (G.global_avg_pool2d, [(2, 3, 4, 5)]),
    "global_max_pool2d": (G.global_max_pool2d, [(2, 3, 4, 5)]),
    "spatial_pyramid_max": (lambda x: G.spatial_pyramid_pool2d(x, (1, 2), "max"), [(2, 3, 5, 6)]),
    "spatial_pyramid_avg": (lambda x: G.spatial_pyramid_pool2d(x, (1, 3), "avg"), [(2, 3, 5, 6)]),
    "roi_align": (lambda x: G.roi_align(x, BOXES, (2, 3), 1.0, 2, True), [(2, 3, 7, 8)]),
    "roi_align_adaptive_list": (lambda x: G.roi_align(x, [BOXES[:1, 1:], BOXES[1:, 1:]], 2, 0.5),
                                [(2, 3, 7, 8)]),
    "roi_pool": (lambda x: G.roi_pool(x, BOXES, (2, 3)), [(2, 3, 7, 8)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradcheck(name):
    fn, shapes = CASES[name]
    gradcheck(fn, *(leaf(*s, seed=i) for i, s in enumerate(shapes)))


def test_gradcheck_max_unpool2d():
    x = leaf(2, 3, 6, 6)
    values, indices = F.max_pool2d(x.detach(), 2, return_indices=True)
    gradcheck(lambda v: G.max_unpool2d(v, indices, 2), values.clone().requires_grad_())


@pytest.mark.parametrize("name", ["conv2d", "max_pool2d", "avg_pool2d", "adaptive_max_pool2d",
                                  "roi_align"])
def test_gradcheck_channels_last(name):
    # The backward pass of an NHWC forward runs NHWC too.
    fn, shapes = CASES[name]
    x = leaf(*shapes[0], channels_last=True)
    gradcheck(fn, x, *(leaf(*s, seed=i + 1) for i, s in enumerate(shapes[1:])))


def test_gradcheck_unbatched():
    gradcheck(lambda x, w: G.conv2d(x, w, padding=1), leaf(2, 5, 4), leaf(3, 2, 3, 3, seed=1))
    gradcheck(lambda x: G.max_pool2d(x, 2), leaf(2, 5, 4))


def _grads(fn, inputs):
    out = fn(*inputs)
    cotangent = torch.randn(out.shape, generator=torch.Generator().manual_seed(7), dtype=out.dtype)
    return torch.autograd.grad(out, inputs, cotangent)


@pytest.mark.parametrize("gpu_fn,torch_fn,shapes", [
    (lambda x, w, b: G.conv2d(x, w, b, 2, 1, 1, 2), lambda x, w, b: F.conv2d(x, w, b, 2, 1, 1, 2),
     [(2, 4, 7, 6), (6, 2, 3, 3), (6,)]),
    (lambda x, w, b: G.conv_transpose2d(x, w, b, 2, 1, 1),
     lambda x, w, b: F.conv_transpose2d(x, w, b, 2, 1, 1), [(2, 4, 3, 4), (4, 3, 3, 3), (3,)]),
    (lambda x: G.max_pool2d(x, 3, 2, 1), lambda x: F.max_pool2d(x, 3, 2, 1), [(2, 3, 7, 8)]),
    # Odd powers of negative sums have no real root (NaN in both): positive inputs.
    (lambda x: G.lp_pool2d(x.abs() + 0.1, 3, 2), lambda x: F.lp_pool2d(x.abs() + 0.1, 3, 2),
     [(2, 3, 6, 6)]),
    (lambda x: G.roi_pool(x, BOXES, 3), lambda x: tvs.roi_pool(x, BOXES, 3), [(2, 3, 7, 8)]),
    (lambda x: G.roi_align(x, BOXES, 2, 0.5), lambda x: tvs.roi_align(x, BOXES, 2, 0.5),
     [(2, 3, 7, 8)]),
])
def test_gradients_match_torch_autograd(gpu_fn, torch_fn, shapes):
    inputs = [leaf(*s, seed=i) for i, s in enumerate(shapes)]
    for actual, expected in zip(_grads(gpu_fn, inputs), _grads(torch_fn, inputs)):
        torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10)


def test_only_the_needed_gradients_are_computed(monkeypatch):
    calls = []
    for name in ("conv2d_input", "conv2d_weight", "conv2d_bias"):
        real = getattr(gpuconv.grad, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            calls.append(_name)
            return _real(*args, **kwargs)
        monkeypatch.setattr(gpuconv.grad, name, spy)
    x, w, b = leaf(1, 2, 5, 5), leaf(3, 2, 3, 3, seed=1), leaf(3, seed=2)
    G.conv2d(x.detach(), w, b.detach()).sum().backward()
    assert calls == ["conv2d_weight"]
    calls.clear()
    G.conv2d(x, w.detach(), b).sum().backward()
    assert calls == ["conv2d_input", "conv2d_bias"]


def test_torch_determinism_flag_reaches_gpuconv_grad(monkeypatch):
    from gpuconv.pool.grad import WITH_OWN_INDICES    # what G.max_pool2d's backward calls
    seen = []
    real = WITH_OWN_INDICES["max_pool2d"]

    def spy(*args, **kwargs):
        seen.append(kwargs["deterministic"])
        return real(*args, **kwargs)
    monkeypatch.setitem(WITH_OWN_INDICES, "max_pool2d", spy)
    x = leaf(1, 2, 4, 4)
    G.max_pool2d(x, 2).sum().backward()
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        G.max_pool2d(x, 2).sum().backward()
    finally:
        torch.use_deterministic_algorithms(previous)
    assert seen == [None, True]


@pytest.mark.parametrize("fn", [lambda x: G.lp_pool2d(x, 2, 2), G.global_max_pool2d,
                                lambda x: G.spatial_pyramid_pool2d(x, (1, 2)),
                                lambda x: G.roi_align(x, BOXES[:1], 2),
                                lambda x: G.roi_pool(x, BOXES[:1], 2)])
def test_double_backward_raises_a_clear_error_where_unsupported(fn):
    x = leaf(1, 2, 6, 6)
    (g,) = torch.autograd.grad((fn(x) ** 2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward .* not supported"):
        g.sum().backward()


def test_first_derivatives_under_create_graph_are_still_right():
    x, w = leaf(1, 2, 5, 5), leaf(3, 2, 3, 3, seed=1)
    (g,) = torch.autograd.grad(G.conv2d(x, w).sum(), x, create_graph=True)
    (expected,) = torch.autograd.grad(F.conv2d(x, w).sum(), x)
    torch.testing.assert_close(g.detach(), expected)


@pytest.mark.parametrize("call", [
    lambda m, x: m.max_pool2d(x, 3, 2, 1, ceil_mode=True),
    lambda m, x: m.adaptive_max_pool2d(x, (3, 5)),
], ids=["max_pool2d", "adaptive_max_pool2d"])
def test_max_pool_backward_trusts_its_own_forwards_indices(monkeypatch, call):
    # The indices the forward saved are not scanned again (on CuPy that scan is a device pass
    # and a host synchronization per backward); the public gradients still scan what they get.
    import gpuconv.pool.geometry as geometry

    def no_scan(*args, **kwargs):
        raise AssertionError("the forward's own indices were scanned")
    monkeypatch.setattr(geometry, "check_indices", no_scan)
    monkeypatch.setattr(geometry, "check_indices_in_windows", no_scan)
    grads = []
    for module in (G, F):
        x = leaf(2, 3, 7, 8)
        call(module, x).square().sum().backward()
        grads.append(x.grad)
    torch.testing.assert_close(*grads)
    with pytest.raises(AssertionError, match="scanned"):
        y, i = gpuconv.max_pool2d(leaf(1, 1, 4, 4).detach().numpy(), 2, return_indices=True)
        gpuconv.grad.max_pool2d(y, leaf(1, 1, 4, 4).detach().numpy(), 2, indices=i)


@pytest.mark.parametrize("name", ["roi_align", "roi_pool"])
@pytest.mark.parametrize("as_list", [False, True], ids=["rows", "list"])
def test_roi_backward_trusts_its_forwards_rois(monkeypatch, name, as_list):
    # The rois the forward checked are not scanned again (on CUDA tensors a scan is a device
    # synchronization); as in torchvision, the boxes are saved for the backward, so changing
    # them in place between the passes is autograd's error rather than a silently other
    # gradient.
    import gpuconv.roi.geometry as geometry
    real_scan, scans = geometry._scan_box_values, []
    monkeypatch.setattr(geometry, "_scan_box_values",
                        lambda *a: (scans.append(a), real_scan(*a))[1])
    grads = []
    for simulate in (False, True):
        x = leaf(2, 3, 7, 8)
        boxes = [BOXES[:1, 1:].clone(), BOXES[1:, 1:].clone()] if as_list else BOXES.clone()
        with gpuconv.simulate() if simulate else contextlib.nullcontext():
            y = getattr(G, name)(x, boxes, (2, 3), 0.5)
            y.square().sum().backward()
        grads.append(x.grad)
    assert len(scans) == 2      # one per forward
    torch.testing.assert_close(*grads)
    expected = getattr(tvs, name)(x.detach(), BOXES, (2, 3), 0.5)
    torch.testing.assert_close(y.detach(), expected)
    boxes = BOXES.clone()
    y = getattr(G, name)(leaf(2, 3, 7, 8), boxes, (2, 3), 0.5)
    boxes[0, 1] += 1.0
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


# torch.autocast and forward-mode AD


def test_convolutions_follow_autocast():
    """Inside torch.autocast the convolutions run in the region's dtype, as torch's do: a
    bfloat16 activation meets a float32 weight, and the float32 parameters get float32
    gradients through the casts."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 6, 6).bfloat16()
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    b = torch.randn(4, requires_grad=True)
    wt = torch.randn(3, 2, 3, 3, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = G.conv2d(x, w, b, padding=1)
        expected = F.conv2d(x, w, b, padding=1)
        t = G.conv_transpose2d(x.float(), wt, stride=2)
        expected_t = F.conv_transpose2d(x.float(), wt, stride=2)
    assert y.dtype == expected.dtype == torch.bfloat16
    assert t.dtype == expected_t.dtype == torch.bfloat16
    # Both round to bfloat16 (8-bit mantissa) once, from different float sums: an output may
    # differ by one bfloat16 step of the largest ones (with unseeded data this failed ~3 % of
    # runs at a fixed atol of 2e-2).
    for got, want in ((y, expected), (t, expected_t)):
        step = float(want.detach().float().abs().max()) * 2.0 ** -7
        torch.testing.assert_close(got.float(), want.float(), rtol=2e-2, atol=step)
    (y.float().sum() + t.float().sum()).backward()
    assert w.grad.dtype == b.grad.dtype == wt.grad.dtype == torch.float32
    # float64 is left alone by autocast, as torch leaves it
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert G.conv2d(x.double(), w.detach().double()).dtype == torch.float64


def test_converted_model_runs_under_autocast():
    """A Linear (which autocast runs in bfloat16) feeding a converted Conv2d with float32
    parameters: the same dtype and values as the unconverted model."""
    model = torch.nn.Sequential(torch.nn.Linear(6, 6), torch.nn.Conv2d(3, 4, 3),
                                torch.nn.ReLU(), torch.nn.MaxPool2d(2))
    converted = G.convert(model, inplace=False)
    assert len(converted.swapped) == 2
    x = torch.randn(2, 3, 6, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected, y = model(x), converted.model(x)
    assert y.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), expected.float(), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("fn", [lambda d: G.conv2d(d, torch.randn(3, 2, 3, 3, dtype=d.dtype)),
                                lambda d: G.max_pool2d(d, 2)])
def test_forward_mode_ad_is_refused_not_dropped(fn):
    """A dual input (torch.func.jvp, gradcheck with check_forward_ad) is refused clearly, never
    given a silently missing (zero) tangent."""
    fwad = torch.autograd.forward_ad
    with fwad.dual_level():
        dual = fwad.make_dual(torch.randn(1, 2, 5, 5), torch.randn(1, 2, 5, 5))
        with pytest.raises(NotImplementedError, match="forward mode AD"):
            fn(dual)


def test_torch_func_vmap_is_refused_clearly():
    w = torch.randn(3, 2, 3, 3)
    with pytest.raises(NotImplementedError, match="torch.func transforms"):
        torch.func.vmap(lambda a: G.conv2d(a, w, padding=1))(torch.randn(3, 1, 2, 5, 5))


# Double backward (create_graph=True, then the gradient differentiated): the functions whose
# gradients are gpuconv Functions again (conv.py, pool.py).
TWICE_DIFFERENTIABLE = [
    "conv2d", "conv2d_same_padding", "conv2d_depthwise", "conv2d_tanh_residual", "conv2d_sigmoid",
    "conv_transpose2d", "conv_transpose2d_op_ge_stride", "max_pool2d", "max_pool2d_empty_windows",
    "adaptive_max_pool2d", "avg_pool2d", "avg_pool2d_divisor", "adaptive_avg_pool2d",
    "global_avg_pool2d", "spatial_pyramid_avg"]


def gradgradcheck(fn, *inputs):
    # fast_mode: random vector-Jacobian-vector products rather than one pass per element.
    assert torch.autograd.gradgradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-5,
                                        fast_mode=True)


@pytest.mark.parametrize("name", TWICE_DIFFERENTIABLE)
def test_gradgradcheck(name):
    fn, shapes = CASES[name]
    gradgradcheck(fn, *(leaf(*s, seed=i) for i, s in enumerate(shapes)))


@pytest.mark.parametrize("name", ["conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d"])
def test_gradgradcheck_channels_last(name):
    fn, shapes = CASES[name]
    gradgradcheck(fn, leaf(*shapes[0], channels_last=True),
                  *(leaf(*s, seed=i + 1) for i, s in enumerate(shapes[1:])))


def test_gradgradcheck_max_unpool2d_and_unbatched():
    values, indices = F.max_pool2d(leaf(2, 3, 6, 6).detach(), 2, return_indices=True)
    gradgradcheck(lambda v: G.max_unpool2d(v, indices, 2), values.clone().requires_grad_())
    gradgradcheck(lambda x, w: G.conv2d(x, w, padding=1), leaf(2, 5, 4), leaf(3, 2, 3, 3, seed=1))


def _critic(m, x, p):
    """A small critic over functional ops ``m`` (gpuconv.torch or torch.nn.functional)."""
    y = torch.tanh(m.conv2d(x, p["w1"], p["b1"], padding=1))
    y = m.avg_pool2d(y, 2)
    y = m.conv_transpose2d(y, p["wt"], None, stride=2)
    y = m.max_pool2d(torch.sigmoid(m.conv2d(y, p["w2"], None, stride=2, padding=1)), 2)
    return m.adaptive_avg_pool2d(y, 1).sum(dim=(1, 2, 3))


def _penalty_gradients(m, x, p):
    """WGAN-GP: the gradients of (|d critic / dx| - 1)^2 with respect to the parameters."""
    x = x.detach().requires_grad_()
    (gx,) = torch.autograd.grad(_critic(m, x, p).sum(), x, create_graph=True)
    penalty = ((gx.flatten(1).norm(dim=1) - 1) ** 2).mean()
    return torch.autograd.grad(penalty, list(p.values()))


@pytest.mark.parametrize("executor", ["reference", "simulator"])
def test_gradient_penalty_matches_torch(executor):
    shapes = dict(w1=(4, 2, 3, 3), b1=(4,), wt=(4, 3, 2, 2), w2=(3, 3, 3, 3))
    p = {name: leaf(*s, seed=i + 1) for i, (name, s) in enumerate(shapes.items())}
    x = leaf(2, 2, 8, 8)
    context = gpuconv.simulate() if executor == "simulator" else contextlib.nullcontext()
    with context:
        actual = _penalty_gradients(G, x, p)
    for a, e in zip(actual, _penalty_gradients(F, x, p)):
        torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-11)
