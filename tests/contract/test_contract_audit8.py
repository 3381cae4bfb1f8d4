"""Eighth contract audit (randomized runs of every api.md function against torch and a NumPy
transcription of torchvision; roughly 45 000 convolution, 6 000 pooling and 1 300 ROI cases):

- ``out=`` is refused only when it shares an element with an input: DenseNet's in-buffer
  concatenation reads channels of a buffer and writes others of the same buffer, whose address
  ranges interleave across the batch without sharing anything. NHWC takes a channel slice
  ``buf[..., c0:c1]`` as NCHW takes ``buf[:, c0:c1]``.
- ``conv_transpose2d`` whose padding leaves exactly 0 rows or columns stays a ValueError: torch's
  shape check refuses it too (the audit saw torch's oneDNN float32 path, which skips the check
  for batches, return an empty tensor).
- A padding and stride whose padded input passes 2**31 rows (the kernels address rows and
  columns in 32 bits) is a ValueError naming padding, not an OverflowError from a launch; below
  that, a huge padding and stride are computed, as torch computes them (the reference no longer
  allocates the whole padded input).
- NumPy's bool is a bool for ``deterministic=`` and ``set_deterministic``.

(The audit's ROI finding, the deterministic roi_align backward with infinite gradients, is
tests/kernels/test_roi_kernels.py ``test_roi_align_gradient_of_infinities_and_nans``.)
Runs on both executors (tests/contract/conftest.py); expected values come from torch.
"""
import numpy as np
import pytest

import gpuconv

torch = pytest.importorskip("torch")
F = torch.nn.functional


def close(got, expected, rtol=1e-10):
    np.testing.assert_allclose(got, expected.numpy(), rtol=rtol, atol=1e-12)


@pytest.mark.parametrize("algorithm", ["auto", "direct", "implicit_gemm", "im2col_gemm"])
def test_densenet_concatenation_in_one_buffer(algorithm):
    rng = np.random.default_rng(0)
    buffer = np.zeros((2, 12, 5, 5))
    buffer[:, :4] = rng.standard_normal((2, 4, 5, 5))
    buffer[:, 4:8] = rng.standard_normal((2, 4, 5, 5))
    w = rng.standard_normal((4, 4, 3, 3))
    x, residual, out = buffer[:, :4], buffer[:, 4:8], buffer[:, 8:]
    assert np.may_share_memory(x, out) and not np.shares_memory(x, out)
    expected = F.conv2d(torch.from_numpy(x.copy()), torch.from_numpy(w), padding=1) \
        + torch.from_numpy(residual.copy())
    got = gpuconv.conv2d(x, w, padding=1, residual=residual, out=out, algorithm=algorithm)
    assert got is out
    close(buffer[:, 8:], expected)
    with pytest.raises(ValueError, match="out must not overlap x"):
        gpuconv.conv2d(buffer[:, :4], w, padding=1, out=buffer[:, 2:6])


@pytest.mark.parametrize("channels", [(0, 3), (4, 7), (6, 9)])
def test_nhwc_channel_slice_of_out(channels):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 5, 6, 4))
    w = rng.standard_normal((3, 4, 3, 3))
    buffer = np.full((2, 5, 6, 9), 7.0)
    c0, c1 = channels
    got = gpuconv.conv2d(x, w, padding=1, data_format="NHWC", out=buffer[..., c0:c1])
    expected = F.conv2d(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), torch.from_numpy(w),
                        padding=1).permute(0, 2, 3, 1)
    assert np.shares_memory(got, buffer)
    close(buffer[..., c0:c1], expected)
    untouched = np.ones(9, bool)
    untouched[c0:c1] = False
    assert (buffer[..., untouched] == 7.0).all()
    with pytest.raises(ValueError, match=r"out\[\.\.\., c0:c1\]"):
        gpuconv.conv2d(x, w, padding=1, data_format="NHWC", out=np.zeros((2, 5, 6, 6))[..., ::2])


def test_transposed_convolution_to_zero_rows_is_refused():
    # torch's shape check refuses an output of 0 rows or columns ("Output size is too small");
    # only its oneDNN float32 path for batches skips the check and returns an empty tensor.
    x = np.ones((1, 1, 5, 3))
    w = np.ones((1, 1, 3, 1))
    args = ((2, 1), (2, 2), (1, 1), 1, (1, 2))       # 8 x 0
    for dtype in (torch.float32, torch.float64):
        with pytest.raises(RuntimeError, match="Output size is too small"):
            F.conv_transpose2d(torch.ones(x.shape, dtype=dtype), torch.ones(w.shape, dtype=dtype),
                               None, *args)
    with pytest.raises(ValueError, match=r"padding \(2, 2\) is too large"):
        gpuconv.conv_transpose2d(x, w, None, *args)


@pytest.mark.parametrize("stride, padding", [(10 ** 5, 10 ** 5), (2 ** 29, 2 ** 29),
                                             (2 ** 30 - 3, 2 ** 30 - 3)])
def test_huge_strides_and_paddings_as_torch(stride, padding):
    x = np.arange(1.0, 26.0).reshape(1, 1, 5, 5)
    w = np.ones((1, 1, 3, 3))
    expected = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), stride=stride, padding=padding)
    close(gpuconv.conv2d(x, w, stride=stride, padding=padding), expected)
    g = np.ones(tuple(expected.shape))
    x_t, w_t = torch.from_numpy(x).requires_grad_(), torch.from_numpy(w).requires_grad_()
    F.conv2d(x_t, w_t, stride=stride, padding=padding).backward(torch.from_numpy(g))
    close(gpuconv.grad.conv2d_input(x.shape, w, g, stride, padding), x_t.grad)
    close(gpuconv.grad.conv2d_weight(x, w.shape, g, stride, padding), w_t.grad)


@pytest.mark.parametrize("call", [
    lambda x, w: gpuconv.conv2d(x, w, stride=2 ** 31, padding=2 ** 31 - 1),
    lambda x, w: gpuconv.conv2d(x, w, stride=2 ** 30, padding=((2 ** 30, 2 ** 30), (0, 0))),
    lambda x, w: gpuconv.grad.conv2d_input(x.shape, w, np.ones((1, 1, 3, 3)), 2 ** 30, 2 ** 30),
], ids=["conv2d", "pair of pairs", "conv2d_input"])   # conv_transpose2d: audit 12
def test_padded_extents_past_32_bits_are_value_errors_naming_padding(call):
    x = np.ones((1, 1, 5, 5))
    w = np.ones((1, 1, 3, 3))
    with pytest.raises(ValueError, match=r"^padding .* must stay under 2\*\*31"):
        call(x, w)


def test_numpy_bools_are_deterministic_flags():
    g = np.random.default_rng(3).standard_normal((2, 3, 4, 4))
    expected = g.sum(axis=(0, 2, 3))
    np.testing.assert_allclose(gpuconv.grad.conv2d_bias(g, deterministic=np.True_), expected)
    gpuconv.set_deterministic(np.bool_(True))
    try:
        np.testing.assert_allclose(gpuconv.grad.conv2d_bias(g), expected)
    finally:
        gpuconv.set_deterministic(False)
    for flag in (1, "yes"):
        with pytest.raises(TypeError, match="deterministic must be a bool or None"):
            gpuconv.grad.conv2d_bias(g, deterministic=flag)
        with pytest.raises(TypeError, match="flag must be a bool"):
            gpuconv.set_deterministic(flag)
