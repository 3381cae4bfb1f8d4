"""Audit 12 of gpuconv.torch against torch.nn.functional (randomized differential testing on CPU
tensors, through the reference and under gpuconv.simulate()). Findings, each fixed and pinned
by one test below:

1. An unbatched (C, H, W) conv2d / conv_transpose2d with a channels_last weight gave a
   contiguous result; torch's is its batched result squeezed, laid out HWC (strides
   (1, W*K, K)). The poolings' unbatched results stay contiguous, as torch's.
2. groups= a 0-d integer tensor (conv2d, conv_transpose2d) and divisor_override= a 0-d integer
   tensor (avg_pool2d) were TypeErrors; torch's int parser reads them as ints.
3. adaptive_avg_pool2d / adaptive_max_pool2d refused output_size=tensor([h, w]) and a pair of
   0-d integer tensors, which torch takes (its one-element and 0-d tensor spellings stay
   refused, as torch's).
4. lp_pool2d: a kernel_size pair holding 0-d integer tensors was a TypeError (torch unpacks and
   multiplies them); a one-element kernel_size such as (3,) was accepted where torch's
   ``kw, kh = _pair(kernel_size)`` refuses it; a one-element tensor norm_type (torch's
   ``x.pow(norm_type)`` takes it) was a TypeError.
"""
import contextlib

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import gpuconv  # noqa: E402
import gpuconv.torch as G  # noqa: E402


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def close(actual, expected):
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("simulated", [False, True])
@pytest.mark.parametrize("name, weight_shape", [("conv2d", (4, 3, 3, 3)),
                                                ("conv_transpose2d", (3, 4, 3, 3))])
def test_unbatched_convolution_with_channels_last_weight_is_laid_out_as_torchs(
        name, weight_shape, simulated):
    x = randn(3, 6, 7).requires_grad_()
    w = randn(*weight_shape, seed=1).contiguous(memory_format=torch.channels_last)
    with gpuconv.simulate() if simulated else contextlib.nullcontext():
        y = getattr(G, name)(x, w, None, 2, 1)
        expected = getattr(F, name)(x, w, None, 2, 1)
        assert y.stride() == expected.stride() and not y.is_contiguous()
        close(y, expected)
        (gx,) = torch.autograd.grad(y.square().sum(), x)
    close(gx, torch.autograd.grad(expected.square().sum(), x)[0])
    # contiguous weight: contiguous result, as torch's
    assert getattr(G, name)(x, w.contiguous(), None, 2, 1).is_contiguous()


def test_zero_dim_integer_tensors_read_as_ints_for_groups_and_divisor_override():
    x, w = randn(2, 4, 5, 5), randn(6, 2, 3, 3, seed=1)
    close(G.conv2d(x, w, groups=torch.tensor(2)), F.conv2d(x, w, groups=torch.tensor(2)))
    wt = randn(4, 3, 3, 3, seed=2)
    close(G.conv_transpose2d(x, wt, groups=torch.tensor(2)),
          F.conv_transpose2d(x, wt, groups=torch.tensor(2)))
    close(G.avg_pool2d(x, 3, 1, 1, divisor_override=torch.tensor(4)),
          F.avg_pool2d(x, 3, 1, 1, divisor_override=torch.tensor(4)))


@pytest.mark.parametrize("output_size", [torch.tensor([2, 3]), (torch.tensor(2), None),
                                         [torch.tensor(3), torch.tensor(2)]])
@pytest.mark.parametrize("name", ["adaptive_avg_pool2d", "adaptive_max_pool2d"])
def test_adaptive_pools_take_torchs_tensor_output_sizes(name, output_size):
    x = randn(2, 3, 7, 6)
    close(getattr(G, name)(x, output_size), getattr(F, name)(x, output_size))


@pytest.mark.parametrize("output_size", [(3,), [3], torch.tensor(3), torch.tensor([3])])
@pytest.mark.parametrize("name", ["adaptive_avg_pool2d", "adaptive_max_pool2d"])
def test_adaptive_pools_refuse_what_torch_refuses(name, output_size):
    x = randn(2, 3, 7, 6)
    with pytest.raises((RuntimeError, TypeError)):
        getattr(F, name)(x, output_size)
    with pytest.raises((ValueError, TypeError), match="output_size"):
        getattr(G, name)(x, output_size)


def test_lp_pool2d_reads_kernel_size_and_norm_type_as_torch():
    x = randn(2, 3, 7, 6).abs() + 0.1
    kernel = (torch.tensor(3), torch.tensor(2))
    close(G.lp_pool2d(x, 2, kernel), F.lp_pool2d(x, 2, kernel))
    # float64 exponents: torch computes 1 / norm_type in the tensor's dtype
    p3, p15 = torch.tensor([3.0], dtype=torch.float64), torch.tensor(1.5, dtype=torch.float64)
    close(G.lp_pool2d(x, p3, 2, 1), F.lp_pool2d(x, p3, 2, 1))
    close(G.lp_pool2d(x, p15, 2), F.lp_pool2d(x, p15, 2))
    with pytest.raises(ValueError, match="norm_type"):    # no gradient would reach it
        G.lp_pool2d(x, torch.tensor(2.0, requires_grad=True), 2)


@pytest.mark.parametrize("kernel_size", [(3,), [3], torch.tensor(3)])
def test_lp_pool2d_refuses_the_kernel_sizes_torch_cannot_unpack(kernel_size):
    x = randn(2, 3, 7, 6).abs()
    with pytest.raises((ValueError, TypeError)):
        F.lp_pool2d(x, 2, kernel_size)
    with pytest.raises(ValueError, match="kernel_size"):
        G.lp_pool2d(x, 2, kernel_size)
    # the one-element stride is torch's (avg_pool2d takes it)
    close(G.lp_pool2d(x, 2, 2, (1,)), F.lp_pool2d(x, 2, 2, (1,)))
