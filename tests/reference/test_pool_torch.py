"""Cross-check of the pooling fronts (reference executor) with PyTorch, forward and backward, on
random geometries and values with ties, NaN and infinities. Skipped where torch is not installed
(the torch-free oracles are in test_pool_reference.py and test_pool_grad.py).

Known, deliberate difference: a max window whose taps all fall into the padding (dilation larger
than the input) has index -1 here; PyTorch reports the clamped start position, which lies outside
the window (and possibly outside the plane), and routes the gradient there."""
import numpy as np
import pytest

import gpuconv
from gpuconv import grad

torch = pytest.importorskip("torch")
F = torch.nn.functional

SPECIAL = np.array([0.0, 1.0, 2.0, -1.0, np.inf, -np.inf, np.nan])


def random_case(rng):
    H, W = (int(v) for v in rng.integers(1, 8, 2))
    R, S = (int(v) for v in rng.integers(1, 5, 2))
    kw = dict(kernel_size=(R, S), stride=tuple(int(v) for v in rng.integers(1, 4, 2)),
              padding=(int(rng.integers(0, R // 2 + 1)), int(rng.integers(0, S // 2 + 1))),
              ceil_mode=bool(rng.integers(0, 2)))
    if rng.integers(0, 2):
        x = rng.choice(SPECIAL, size=(1, 2, H, W), p=[.25, .25, .2, .15, .05, .05, .05])
    else:
        x = rng.standard_normal((1, 2, H, W))
    return x, kw


def torch_run(function, x, g, *args, **kwargs):
    """(outputs, d/dx of sum(first output * g)) from torch, or None if torch refuses the case."""
    xt = torch.tensor(x, requires_grad=True)
    try:
        out = function(xt, *args, **kwargs)
    except RuntimeError:
        return None
    first = out[0] if isinstance(out, tuple) else out
    if g is not None:
        first.backward(torch.tensor(g))
    outs = tuple(o.detach().numpy() for o in out) if isinstance(out, tuple) else out.detach().numpy()
    return outs, (xt.grad.numpy() if g is not None else None)


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10, equal_nan=True)


@pytest.mark.parametrize("seed", range(4))
def test_max_pool_matches_torch(seed):
    rng = np.random.default_rng(seed)
    for _ in range(40):
        x, kw = random_case(rng)
        kw["dilation"] = tuple(int(v) for v in rng.integers(1, 4, 2))
        expected = torch_run(F.max_pool2d, x, None, return_indices=True, **kw)
        if expected is None:
            with pytest.raises(ValueError):
                gpuconv.max_pool2d(x, **kw)
            continue
        values, indices = gpuconv.max_pool2d(x, return_indices=True, **kw)
        close(values, expected[0][0])
        routed = indices >= 0
        np.testing.assert_array_equal(indices[routed], expected[0][1][routed])
        if routed.all() and np.isfinite(x).all():
            g = rng.standard_normal(values.shape)
            close(grad.max_pool2d(g, x, **kw), torch_run(F.max_pool2d, x, g, **kw)[1])


@pytest.mark.parametrize("seed", range(4))
def test_avg_and_lp_pool_match_torch(seed):
    rng = np.random.default_rng(100 + seed)
    for _ in range(30):
        x, kw = random_case(rng)
        for count_include_pad, divisor_override in ((True, None), (False, None), (True, 3)):
            options = dict(kw, count_include_pad=count_include_pad, divisor_override=divisor_override)
            probe = torch_run(F.avg_pool2d, x, None, **options)
            if probe is None:
                continue
            out = gpuconv.avg_pool2d(x, **options)
            close(out, probe[0])
            g = rng.standard_normal(out.shape)
            close(grad.avg_pool2d(g, x, **options), torch_run(F.avg_pool2d, x, g, **options)[1])
        signed = rng.standard_normal(x.shape)
        signed[..., :1, :] = 0.0               # zero windows: torch's relu mask in the backward
        lp_args = (kw["kernel_size"], kw["stride"], kw["ceil_mode"])
        # negative p as the same power formula; +-inf as the largest / smallest |x| per window
        for p in (1.0, 1.5, 2.0, 3.0, -1.0, -2.5, np.inf, -np.inf):
            probe = torch_run(F.lp_pool2d, signed, None, p, *lp_args)
            if probe is None:
                continue
            out = gpuconv.lp_pool2d(signed, p, *lp_args)
            close(out, probe[0])
            g = rng.standard_normal(out.shape)
            close(grad.lp_pool2d(g, signed, p, *lp_args), torch_run(F.lp_pool2d, signed, g, p, *lp_args)[1])


@pytest.mark.parametrize("seed", range(2))
def test_adaptive_pools_and_unpool_match_torch(seed):
    rng = np.random.default_rng(200 + seed)
    for _ in range(40):
        x, kw = random_case(rng)
        size = tuple(int(v) for v in rng.integers(1, 9, 2))
        (values, indices), _ = torch_run(F.adaptive_max_pool2d, x, None, size, return_indices=True)
        ours, our_indices = gpuconv.adaptive_max_pool2d(x, size, return_indices=True)
        close(ours, values)
        np.testing.assert_array_equal(our_indices, indices)
        g = rng.standard_normal(ours.shape)
        close(gpuconv.adaptive_avg_pool2d(x, size), torch_run(F.adaptive_avg_pool2d, x, None, size)[0])
        if np.isfinite(x).all():
            close(grad.adaptive_avg_pool2d(g, x, size), torch_run(F.adaptive_avg_pool2d, x, g, size)[1])
            close(grad.adaptive_max_pool2d(g, x, size), torch_run(F.adaptive_max_pool2d, x, g, size)[1])
        if torch_run(F.max_pool2d, x, None, **kw) is None:
            continue
        pooled, pooled_indices = gpuconv.max_pool2d(x, return_indices=True, **kw)
        if (pooled_indices < 0).any():
            continue
        unpool_args = (kw["kernel_size"], kw["stride"], kw["padding"])
        expected = F.max_unpool2d(torch.tensor(pooled), torch.tensor(pooled_indices), *unpool_args,
                                  output_size=x.shape[2:])
        close(gpuconv.max_unpool2d(pooled, pooled_indices, *unpool_args, output_size=x.shape[2:]),
              expected.numpy())


def test_unpool_output_size_rule_matches_torch():
    rng = np.random.default_rng(7)
    for _ in range(150):
        P, Q, R, S, sh, sw = (int(v) for v in rng.integers(1, 4, 6))
        ph, pw = (int(v) for v in rng.integers(0, 2, 2))
        size = tuple(int(v) for v in rng.integers(1, 12, 2))
        x, indices = np.ones((1, 1, P, Q)), np.zeros((1, 1, P, Q), dtype=np.int64)
        args = ((R, S), (sh, sw), (ph, pw))
        try:
            expected = F.max_unpool2d(torch.tensor(x), torch.tensor(indices), *args, output_size=size)
        except (ValueError, RuntimeError):
            with pytest.raises(ValueError, match="output_size"):
                gpuconv.max_unpool2d(x, indices, *args, output_size=size)
            continue
        np.testing.assert_array_equal(gpuconv.max_unpool2d(x, indices, *args, output_size=size),
                                      expected.numpy())
