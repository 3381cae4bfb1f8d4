"""Cross-check of the NumPy reference path against PyTorch (api.md: "Signatures and semantics
mirror torch.nn.functional, torch.nn.grad ... where this page is silent, do what PyTorch does"),
on seeded random parameter combinations: forward values, pooling indices, gradients (torch
autograd and torch.nn.grad), and agreement on which arguments are refused.

Skipped where torch is not installed. torchvision is not used (ROI semantics are checked against
the definition in test_api_contract.py).
"""
import numpy as np
import pytest

import gpuconv
from gpuconv import grad

torch = pytest.importorskip("torch")
F = torch.nn.functional

SPECIALS = np.array([0.0, 1.0, -1.0, 2.0, np.inf, -np.inf, np.nan])


def close(got, expected, what):
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=what)


def values(rng, shape):
    """Random normals, small integers (ties) or specials (inf, -inf, NaN) in float64."""
    kind = rng.integers(0, 3)
    if kind == 0:
        return rng.standard_normal(shape)
    if kind == 1:
        return rng.integers(-2, 3, shape).astype(np.float64)
    return rng.choice(SPECIALS, size=shape, p=[.3, .2, .2, .15, .05, .05, .05])


def torch_call(function, x, *args, grad_output=None, **kwargs):
    """(outputs as NumPy, d<first output, grad_output>/dx) from torch; None if torch refuses."""
    xt = torch.tensor(x, requires_grad=grad_output is not None)
    try:
        out = function(xt, *args, **kwargs)
    except (RuntimeError, ValueError):
        return None
    first = out[0] if isinstance(out, tuple) else out
    dx = None
    if grad_output is not None:
        first.backward(torch.tensor(grad_output))
        dx = xt.grad.numpy()
    outs = tuple(o.detach().numpy() for o in out) if isinstance(out, tuple) else out.detach().numpy()
    return outs, dx


def refused_alike(call, what):
    """torch refused the arguments: gpuconv must refuse them too, with a ValueError/TypeError."""
    with pytest.raises((ValueError, TypeError)):
        call()
        pytest.fail(f"torch refuses {what}, gpuconv accepts it")


# ============================================================================================
# convolution


def conv_params(rng):
    groups = int(rng.choice([1, 2, 3]))
    C, K = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
    R, S = (int(v) for v in rng.integers(1, 5, 2))
    stride = tuple(int(v) for v in rng.integers(1, 4, 2))
    dilation = tuple(int(v) for v in rng.integers(1, 3, 2))
    H, W = (int(v) for v in rng.integers(1, 11, 2))
    choice = int(rng.integers(0, 4))
    if choice == 0:
        padding = int(rng.integers(0, 3))
    elif choice == 1:
        padding = tuple(int(v) for v in rng.integers(0, 3, 2))
    elif choice == 2:
        padding = "valid"
    else:
        padding, stride = "same", 1    # torch allows "same" only with stride 1
    return (int(rng.integers(1, 3)), C, H, W), (K, C // groups, R, S), stride, padding, dilation, groups


@pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")
@pytest.mark.parametrize("seed", range(3))
def test_conv2d_and_its_gradients_match_torch(seed):
    rng = np.random.default_rng(seed)
    for _ in range(15):
        xs, ws, stride, padding, dilation, groups = conv_params(rng)
        x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
        args = (stride, padding, dilation, groups)
        xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
        try:
            yt = F.conv2d(xt, wt, bt, *args)
        except RuntimeError:
            refused_alike(lambda: gpuconv.conv2d(x, w, b, *args), (xs, ws, args))
            continue
        what = f"x {xs} weight {ws} stride/padding/dilation/groups {args}"
        y = gpuconv.conv2d(x, w, b, *args)
        close(y, yt.detach().numpy(), what)
        g = rng.standard_normal(y.shape)
        yt.backward(torch.tensor(g))
        close(grad.conv2d_input(xs, w, g, *args), xt.grad.numpy(), "input gradient " + what)
        close(grad.conv2d_weight(x, ws, g, *args), wt.grad.numpy(), "weight gradient " + what)
        close(grad.conv2d_bias(g), bt.grad.numpy(), "bias gradient " + what)
        if not isinstance(padding, str):     # torch.nn.grad takes numeric padding only
            close(grad.conv2d_input(xs, w, g, *args),
                  torch.nn.grad.conv2d_input(xs, torch.tensor(w), torch.tensor(g), *args).numpy(),
                  "torch.nn.grad.conv2d_input " + what)
            close(grad.conv2d_weight(x, ws, g, *args),
                  torch.nn.grad.conv2d_weight(torch.tensor(x), ws, torch.tensor(g), *args).numpy(),
                  "torch.nn.grad.conv2d_weight " + what)


def test_conv2d_same_padding_for_any_stride_matches_torch_on_tensorflow_padding():
    rng = np.random.default_rng(5)
    for _ in range(30):
        stride = tuple(int(v) for v in rng.integers(1, 4, 2))
        dilation = tuple(int(v) for v in rng.integers(1, 3, 2))
        R, S = (int(v) for v in rng.integers(1, 5, 2))
        H, W = (int(v) for v in rng.integers(1, 10, 2))
        x, w = rng.standard_normal((1, 2, H, W)), rng.standard_normal((3, 2, R, S))
        pads = []
        for size, s, d, k in ((W, stride[1], dilation[1], S), (H, stride[0], dilation[0], R)):
            total = max((-(-size // s) - 1) * s + d * (k - 1) + 1 - size, 0)
            pads += [total // 2, total - total // 2]    # F.pad order: left, right, top, bottom
        expected = F.conv2d(F.pad(torch.tensor(x), pads), torch.tensor(w), None, stride, 0, dilation)
        close(gpuconv.conv2d(x, w, None, stride, "same", dilation), expected.numpy(),
              f"same: {H}x{W} kernel {R}x{S} stride {stride} dilation {dilation}")


@pytest.mark.parametrize("activation, torch_activation", [
    ("relu", torch.relu), ("tanh", torch.tanh), ("sigmoid", torch.sigmoid)])
def test_fused_epilogue_matches_torch(activation, torch_activation):
    rng = np.random.default_rng(6)
    x, w, b = rng.standard_normal((2, 4, 6, 7)), rng.standard_normal((6, 2, 3, 3)), rng.standard_normal(6)
    residual = rng.standard_normal((2, 6, 3, 4))
    expected = torch_activation(F.conv2d(torch.tensor(x), torch.tensor(w), torch.tensor(b), 2, 1, 1, 2)
                                + torch.tensor(residual)).numpy()
    close(gpuconv.conv2d(x, w, b, 2, 1, 1, 2, activation=activation, residual=residual), expected, activation)


@pytest.mark.parametrize("seed", range(3))
def test_conv_transpose2d_matches_torch(seed):
    rng = np.random.default_rng(100 + seed)
    for _ in range(20):
        groups = int(rng.choice([1, 2]))
        C, K = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
        R, S = (int(v) for v in rng.integers(1, 4, 2))
        stride = tuple(int(v) for v in rng.integers(1, 4, 2))
        dilation = tuple(int(v) for v in rng.integers(1, 3, 2))
        padding = tuple(int(v) for v in rng.integers(0, 3, 2))
        output_padding = tuple(int(rng.integers(0, max(s, d) + 1)) for s, d in zip(stride, dilation))
        xs = (int(rng.integers(1, 3)), C, int(rng.integers(1, 6)), int(rng.integers(1, 6)))
        x, w = rng.standard_normal(xs), rng.standard_normal((C, K // groups, R, S))
        b = rng.standard_normal(K) if rng.random() < 0.5 else None
        args = (stride, padding, output_padding, groups, dilation)
        what = f"x {xs} weight {w.shape} stride/padding/output_padding/groups/dilation {args}"
        expected = torch_call(F.conv_transpose2d, x, torch.tensor(w), None if b is None else torch.tensor(b), *args)
        if expected is None:
            refused_alike(lambda: gpuconv.conv_transpose2d(x, w, b, *args), what)
            continue
        close(gpuconv.conv_transpose2d(x, w, b, *args), expected[0], what)
        # output_size, as torch.nn.ConvTranspose2d.forward(x, output_size) takes it
        module = torch.nn.ConvTranspose2d(C, K, (R, S), stride, padding, 0, groups, False, dilation).double()
        with torch.no_grad():
            module.weight.copy_(torch.tensor(w))
        for extra in range(0, 3):
            size = [expected[0].shape[2] - output_padding[0] + extra, expected[0].shape[3] - output_padding[1]]
            try:
                want = module(torch.tensor(x), output_size=size).detach().numpy()
            except (RuntimeError, ValueError):
                refused_alike(lambda: gpuconv.conv_transpose2d(x, w, None, stride, padding, 0, groups,
                                                               dilation, output_size=size), what)
                continue
            close(gpuconv.conv_transpose2d(x, w, None, stride, padding, 0, groups, dilation,
                                           output_size=size), want, f"output_size {size} " + what)


# ============================================================================================
# pooling


def window(rng):
    R, S = (int(v) for v in rng.integers(1, 5, 2))
    return dict(kernel_size=(R, S),
                stride=None if rng.random() < 0.25 else tuple(int(v) for v in rng.integers(1, 4, 2)),
                padding=(int(rng.integers(0, R // 2 + 1)), int(rng.integers(0, S // 2 + 1))),
                ceil_mode=bool(rng.integers(0, 2)))


def shape(rng):
    return (int(rng.integers(1, 3)), int(rng.integers(1, 3)), int(rng.integers(1, 9)), int(rng.integers(1, 9)))


@pytest.mark.parametrize("seed", range(3))
def test_max_pool2d_values_indices_and_gradient_match_torch(seed):
    rng = np.random.default_rng(200 + seed)
    for _ in range(30):
        x, kw = values(rng, shape(rng)), window(rng)
        kw["dilation"] = tuple(int(v) for v in rng.integers(1, 3, 2))
        expected = torch_call(F.max_pool2d, x, return_indices=True, **kw)
        if expected is None:
            refused_alike(lambda: gpuconv.max_pool2d(x, **kw), kw)
            continue
        (v, i), _ = expected
        got_v, got_i = gpuconv.max_pool2d(x, return_indices=True, **kw)
        close(got_v, v, f"max_pool2d {x.shape} {kw}")
        # A window made of padding only (dilation wider than the input) has no element to
        # name; the library's -1 and PyTorch's out-of-window position are both "no index".
        real = v != -np.inf
        np.testing.assert_array_equal(got_i[real], i[real], err_msg=f"indices {x.shape} {kw}")
        if real.all():
            g = rng.standard_normal(v.shape)
            _, dx = torch_call(F.max_pool2d, x, grad_output=g, **kw)
            close(grad.max_pool2d(g, x, **kw), dx, f"grad max_pool2d {x.shape} {kw}")
            close(grad.max_pool2d(g, x, **kw, indices=got_i), dx, f"grad max_pool2d indices= {kw}")


@pytest.mark.parametrize("seed", range(3))
def test_avg_pool2d_and_gradient_match_torch(seed):
    rng = np.random.default_rng(300 + seed)
    for _ in range(30):
        x, kw = values(rng, shape(rng)), window(rng)
        kw["count_include_pad"] = bool(rng.integers(0, 2))
        kw["divisor_override"] = None if rng.random() < 0.6 else int(rng.choice([-3, 1, 2, 7]))
        expected = torch_call(F.avg_pool2d, x, **kw)
        if expected is None:
            refused_alike(lambda: gpuconv.avg_pool2d(x, **kw), kw)
            continue
        close(gpuconv.avg_pool2d(x, **kw), expected[0], f"avg_pool2d {x.shape} {kw}")
        g = rng.standard_normal(expected[0].shape)
        _, dx = torch_call(F.avg_pool2d, x, grad_output=g, **kw)
        close(grad.avg_pool2d(g, x, **kw), dx, f"grad avg_pool2d {x.shape} {kw}")


@pytest.mark.parametrize("seed", range(3))
def test_lp_pool2d_and_gradient_match_torch(seed):
    rng = np.random.default_rng(400 + seed)
    for _ in range(30):
        kw = window(rng)
        del kw["padding"]
        p = float(rng.choice([1, 2, 3, 1.5, 0.5]))
        x = rng.standard_normal(shape(rng))
        if rng.random() < 0.7:
            x = np.abs(x) + 0.1     # positive: the p-norm itself; otherwise PyTorch's formula's NaNs
        expected = torch_call(F.lp_pool2d, x, p, **kw)
        if expected is None:
            refused_alike(lambda: gpuconv.lp_pool2d(x, p, **kw), kw)
            continue
        close(gpuconv.lp_pool2d(x, p, **kw), expected[0], f"lp_pool2d p={p} {x.shape} {kw}")
        g = rng.standard_normal(expected[0].shape)
        _, dx = torch_call(F.lp_pool2d, x, p, grad_output=g, **kw)
        close(grad.lp_pool2d(g, x, p, **kw), dx, f"grad lp_pool2d p={p} {x.shape} {kw}")


def adaptive_size(rng):
    h, w = int(rng.integers(1, 11)), int(rng.integers(1, 11))
    return [h, (h, w), (None, w), (h, None)][int(rng.integers(0, 4))]


@pytest.mark.parametrize("seed", range(2))
def test_adaptive_and_global_pools_match_torch(seed):
    rng = np.random.default_rng(500 + seed)
    for _ in range(12):
        x, size = values(rng, shape(rng)), adaptive_size(rng)
        avg = torch_call(F.adaptive_avg_pool2d, x, size)[0]
        close(gpuconv.adaptive_avg_pool2d(x, size), avg, f"adaptive_avg_pool2d {x.shape} {size}")
        g = rng.standard_normal(avg.shape)
        close(grad.adaptive_avg_pool2d(g, x, size), torch_call(F.adaptive_avg_pool2d, x, size, grad_output=g)[1],
              f"grad adaptive_avg_pool2d {x.shape} {size}")
        (v, i), _ = torch_call(F.adaptive_max_pool2d, x, size, True)
        got_v, got_i = gpuconv.adaptive_max_pool2d(x, size, True)
        close(got_v, v, f"adaptive_max_pool2d {x.shape} {size}")
        np.testing.assert_array_equal(got_i, i)
        dx = torch_call(F.adaptive_max_pool2d, x, size, grad_output=g)[1]
        close(grad.adaptive_max_pool2d(g, x, size), dx, f"grad adaptive_max_pool2d {x.shape} {size}")
        close(grad.adaptive_max_pool2d(g, x, size, indices=got_i), dx, "indices=")
        # global pooling is adaptive pooling to 1x1
        close(gpuconv.global_avg_pool2d(x), torch_call(F.adaptive_avg_pool2d, x, 1)[0], "global_avg_pool2d")
        close(gpuconv.global_max_pool2d(x), torch_call(F.adaptive_max_pool2d, x, 1)[0], "global_max_pool2d")
        g1 = rng.standard_normal(x.shape[:2] + (1, 1))
        close(grad.global_avg_pool2d(g1, x), torch_call(F.adaptive_avg_pool2d, x, 1, grad_output=g1)[1], "grad global avg")
        close(grad.global_max_pool2d(g1, x), torch_call(F.adaptive_max_pool2d, x, 1, grad_output=g1)[1], "grad global max")


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_spatial_pyramid_pool_matches_torch_composition(mode):
    rng = np.random.default_rng(600)
    pool = F.adaptive_max_pool2d if mode == "max" else F.adaptive_avg_pool2d
    for _ in range(8):
        x = values(rng, shape(rng))
        levels = tuple(int(v) for v in rng.integers(1, 6, int(rng.integers(1, 4))))
        xt = torch.tensor(x, requires_grad=True)
        yt = torch.cat([pool(xt, l).reshape(x.shape[0], -1) for l in levels], dim=1)
        close(gpuconv.spatial_pyramid_pool2d(x, levels, mode), yt.detach().numpy(), f"spp {levels}")
        g = rng.standard_normal(yt.shape)
        yt.backward(torch.tensor(g))
        close(grad.spatial_pyramid_pool2d(g, x, levels, mode), xt.grad.numpy(), f"grad spp {levels}")


@pytest.mark.parametrize("seed", range(2))
def test_max_unpool2d_and_gradient_match_torch(seed):
    rng = np.random.default_rng(700 + seed)
    for _ in range(20):
        k, s = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        p = int(rng.integers(0, k // 2 + 1))
        x = rng.standard_normal(shape(rng))
        pooled = torch_call(F.max_pool2d, x, k, s, p, return_indices=True)
        if pooled is None:
            continue
        (v, i), _ = pooled
        default = [(n - 1) * s + k - 2 * p for n in v.shape[2:]]
        size = None if rng.random() < 0.5 else [d + int(rng.integers(-s + 1, s)) for d in default]
        expected = torch_call(F.max_unpool2d, v, torch.tensor(i), k, s, p, size)
        if expected is None:
            refused_alike(lambda: gpuconv.max_unpool2d(v, i, k, s, p, size), (k, s, p, size))
            continue
        if min(expected[0].shape) == 0:
            # torch returns the empty tensor (its backward then fails): gpuconv returns it too,
            # with a zero gradient for x (test_contract_audit5.py)
            y = gpuconv.max_unpool2d(v, i, k, s, p, size)
            assert y.shape == tuple(expected[0].shape)
            assert not grad.max_unpool2d(np.zeros(y.shape), v, i, k, s, p, size).any()
            continue
        what = f"max_unpool2d {v.shape} kernel {k} stride {s} padding {p} output_size {size}"
        close(gpuconv.max_unpool2d(v, i, k, s, p, size), expected[0], what)
        g = rng.standard_normal(expected[0].shape)
        _, dv = torch_call(F.max_unpool2d, v, torch.tensor(i), k, s, p, size, grad_output=g)
        close(grad.max_unpool2d(g, v, i, k, s, p, size), dv, "grad " + what)


def test_nhwc_pooling_matches_torch_channels_last():
    rng = np.random.default_rng(800)
    x = rng.standard_normal((2, 5, 7, 6))
    xl = torch.tensor(x).contiguous(memory_format=torch.channels_last)
    to_nhwc = (lambda t: t.permute(0, 2, 3, 1).numpy())
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    v, i = F.max_pool2d(xl, 3, 2, 1, return_indices=True)
    got_v, got_i = gpuconv.max_pool2d(nhwc, 3, 2, 1, return_indices=True, data_format="NHWC")
    close(got_v, to_nhwc(v), "NHWC max_pool2d")
    np.testing.assert_array_equal(got_i, to_nhwc(i))
    close(gpuconv.avg_pool2d(nhwc, 3, 2, 1, True, False, data_format="NHWC"),
          to_nhwc(F.avg_pool2d(xl, 3, 2, 1, True, False)), "NHWC avg_pool2d")
    close(gpuconv.adaptive_avg_pool2d(nhwc, (4, 3), data_format="NHWC"),
          to_nhwc(F.adaptive_avg_pool2d(xl, (4, 3))), "NHWC adaptive_avg_pool2d")
