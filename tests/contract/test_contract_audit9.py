"""Ninth contract audit (randomized runs against torch 2.13 CPU: ~30 000 pooling, ~3 300 ROI,
~20 000 convolution cases and their gradients; no value or gradient disagreed). Argument
spellings that disagreed:

- The window poolings (max, avg, lp; their gradients) take a one-element sequence for
  kernel_size, stride, padding and dilation as both axes, as torch.nn.functional does (api.md
  lists no forms for them; lp_pool2d's kernel_size too, which torch's Python fails to unpack).
  max_unpool2d and the adaptive output sizes still refuse it, as torch does.
- ceil_mode and count_include_pad, which torch hands to ATen as ``bool``, refuse ints (0, 1)
  with a TypeError, as torch; the Python-level flags (return_indices, aligned) take them.
- gpuconv.torch: a 0-d integer tensor stands for its int in stride, padding, dilation; an
  unbatched transposed convolution refuses a 4-element output_size; max_unpool2d refuses an
  empty or one-element stride, as torch; an unbatched call's result is contiguous, as torch's
  (an HWC-laid (C, H, W) input came back channels_last); conv_transpose2d of channels_last
  tensors runs NHWC and returns channels_last, as torch (it computed NCHW and returned
  contiguous), through gpuconv.conv_transpose2d's new data_format keyword.

Runs on both executors (tests/contract/conftest.py); expected values come from torch.
"""
import numpy as np
import pytest

import gpuconv
from gpuconv import grad

torch = pytest.importorskip("torch")
F = torch.nn.functional
import gpuconv.torch as gt  # noqa: E402 (needs torch)

X = np.random.default_rng(0).standard_normal((2, 3, 7, 8))


def close(got, expected):
    got = got.detach().numpy() if isinstance(got, torch.Tensor) else got
    np.testing.assert_allclose(got, expected.detach().numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name, args, kwargs", [
    ("max_pool2d", ([3],), {}),
    ("max_pool2d", (3, (2,), [1], (2,)), {}),
    ("avg_pool2d", ((3,), [1], (1,)), dict(count_include_pad=False)),
    ("lp_pool2d", (2.0, 2, (1,)), {}),
])
def test_window_arguments_of_one_element_stand_for_both_axes(name, args, kwargs):
    x = np.abs(X) if name == "lp_pool2d" else X
    expected = getattr(F, name)(torch.from_numpy(x), *args, **kwargs)
    close(getattr(gpuconv, name)(x, *args, **kwargs), expected)
    dy = np.random.default_rng(1).standard_normal(tuple(expected.shape))
    t = torch.from_numpy(x).requires_grad_()
    getattr(F, name)(t, *args, **kwargs).backward(torch.from_numpy(dy))
    close(getattr(grad, name)(dy, x, *args, **kwargs), t.grad)


@pytest.mark.parametrize("call", [
    lambda: gpuconv.max_unpool2d(*gpuconv.max_pool2d(X, 2, return_indices=True), [2]),
    lambda: gpuconv.max_unpool2d(*gpuconv.max_pool2d(X, 2, return_indices=True), 2, (2,)),
    lambda: gpuconv.adaptive_avg_pool2d(X, [3]),
    lambda: gpuconv.adaptive_max_pool2d(X, (3,)),
])
def test_one_element_sequences_stay_refused_where_torch_refuses_them(call):
    with pytest.raises(ValueError, match="kernel_size|stride|output_size"):
        call()


@pytest.mark.parametrize("value", [0, 1, np.int64(1)])
@pytest.mark.parametrize("call", [
    lambda v: gpuconv.max_pool2d(X, 3, 2, ceil_mode=v),
    lambda v: gpuconv.avg_pool2d(X, 3, 2, ceil_mode=v),
    lambda v: gpuconv.avg_pool2d(X, 3, 2, 1, count_include_pad=v),
    lambda v: gpuconv.lp_pool2d(np.abs(X), 2.0, 3, ceil_mode=v),
    lambda v: grad.avg_pool2d(np.zeros((2, 3, 4, 4)), X, 3, 2, 1, count_include_pad=v),
])
def test_aten_bool_flags_refuse_ints(call, value):
    with pytest.raises(TypeError, match="ceil_mode|count_include_pad"):
        call(value)
    with pytest.raises(TypeError):    # torch's own refusal, for the record
        F.max_pool2d(torch.from_numpy(X), 3, 2, ceil_mode=value)


def test_torch_front_takes_a_scalar_tensor_for_an_int():
    x, w = torch.from_numpy(X), torch.from_numpy(np.ones((4, 3, 3, 3)))
    for kwargs in (dict(stride=torch.tensor(2)), dict(stride=(torch.tensor(2), 1)),
                   dict(padding=torch.tensor(1), dilation=(torch.tensor(2),))):
        close(gt.conv2d(x, w, **kwargs), F.conv2d(x, w, **kwargs))
    close(gt.max_pool2d(x, torch.tensor(2)), F.max_pool2d(x, torch.tensor(2)))


def test_unbatched_transposed_convolution_refuses_a_four_element_output_size():
    x = torch.from_numpy(X[0, :, :4, :4])
    m = gt.ConvTranspose2d(3, 2, 3, stride=2, padding=1).double()
    with pytest.raises(ValueError, match="output_size"):
        m(x, output_size=(1, 2, 8, 8))
    with pytest.raises(ValueError):   # torch's own refusal, for the record
        torch.nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1).double()(x, output_size=(1, 2, 8, 8))
    reference = torch.nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1).double()
    reference.load_state_dict(m.state_dict())
    for size in ((8, 8), (2, 8, 8)):
        close(m(x, output_size=size), reference(x, output_size=size))


@pytest.mark.parametrize("stride", [[], [2]])
def test_torch_front_max_unpool2d_refuses_torchs_refused_strides(stride):
    values, indices = F.max_pool2d(torch.from_numpy(X), 2, return_indices=True)
    with pytest.raises((ValueError, TypeError), match="stride"):
        gt.max_unpool2d(values, indices, 2, stride)
    with pytest.raises(IndexError):   # torch's own refusal, for the record
        F.max_unpool2d(values, indices, 2, stride)


@pytest.mark.parametrize("kwargs", [
    dict(stride=2, padding=1, output_padding=1),
    dict(stride=(1, 2), dilation=2, groups=2),
    dict(stride=2, output_size=(2, 12, 13, 4)),      # the whole NHWC shape: (H, W) count
])
def test_conv_transpose2d_runs_nhwc(kwargs):
    """gpuconv.conv_transpose2d's data_format="NHWC", which the torch front's channels_last
    transposed convolutions take (the issue: "channels_last tensors take the NHWC path")."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 5, 6))
    w = rng.standard_normal((4, 2 if kwargs.get("groups") else 4, 3, 3))
    b = rng.standard_normal(w.shape[1] * kwargs.get("groups", 1))
    nchw_kwargs = dict(kwargs)
    if "output_size" in kwargs:
        nchw_kwargs["output_size"] = (12, 13)
    expected = F.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b),
                                  **{k: v for k, v in nchw_kwargs.items() if k != "output_size"},
                                  **({"output_padding": (1, 0)} if "output_size" in kwargs else {}))
    got = gpuconv.conv_transpose2d(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), w, b,
                                   data_format="NHWC", **kwargs)
    close(got.transpose(0, 3, 1, 2), expected)


def test_torch_front_transposed_convolution_keeps_channels_last():
    x = torch.from_numpy(X[:, :, :5, :5]).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    w = torch.from_numpy(np.random.default_rng(4).standard_normal((3, 2, 3, 3)))
    w.requires_grad_()
    y = gt.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1)
    expected = F.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1)
    assert y.is_contiguous(memory_format=torch.channels_last)
    close(y, expected)
    g = torch.ones_like(expected)
    for got, want in zip(torch.autograd.grad(y, (x, w), g),
                         torch.autograd.grad(expected, (x, w), g)):
        close(got, want)


def test_torch_front_unbatched_results_are_contiguous():
    x = torch.from_numpy(X[:1]).contiguous(memory_format=torch.channels_last)[0]   # (C, H, W), HWC
    w = torch.from_numpy(np.ones((2, 3, 1, 1)))
    wt = w.transpose(0, 1)
    for got, want in ((gt.max_pool2d(x, 2), F.max_pool2d(x, 2)),
                      (gt.conv2d(x, w), F.conv2d(x, w)),
                      (gt.conv_transpose2d(x, wt), F.conv_transpose2d(x, wt))):
        assert got.is_contiguous() and want.is_contiguous()
        close(got, want)
