"""Twelfth contract audit, convolution (randomized runs against torch 2.13 CPU, reference and
simulator: ~2 000 conv2d cases through every algorithm forced and "auto" (every padding form,
"same" at strides 1-3, groups and depthwise multipliers, 1xN / Nx1 filters, activations,
residual, bias, NCHW / NHWC, out= whole, a channel slice and misaligned, non-contiguous and
misaligned inputs, N == 0, float16/32/64 and NumPy's bfloat16), ~2 000 conv_transpose2d cases
(output_padding below max(stride, dilation), output_size as tuple, 4-list, NumPy array and
torch.Size, NHWC), ~2 200 gradient cases through every forced backward algorithm, deterministic
and not, plus the shape and cost formulas; no value disagreed). These disagreed:

- ``groups`` refused a 0-d integer NumPy array (a count computed with NumPy), which torch's
  conv2d, conv_transpose2d and torch.nn.grad take through ``__index__`` (conv2d,
  conv_transpose2d, the gradients and the shape utilities; a 0-d bool or float array stays a
  TypeError, as torch's conv2d has it).
- A transposed convolution whose output before padding crops it reaches 2**31 rows (a huge
  stride or dilation) was a ValueError naming ``padding``, which that size does not depend on:
  it now names the stride, the dilation and the output padding (or output_size) it comes from.

Runs on both executors (tests/contract/conftest.py); expected values come from torch.
"""
import numpy as np
import pytest

import gpuconv
from gpuconv import grad

torch = pytest.importorskip("torch")
F = torch.nn.functional

RNG = np.random.default_rng(12)
X = RNG.standard_normal((2, 4, 7, 8))


def close(actual, expected):
    np.testing.assert_allclose(actual, expected.detach().numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("groups", [np.array(2), np.array(2, dtype=np.uint8)],
                         ids=["int64", "uint8"])
def test_groups_takes_a_zero_d_integer_numpy_array_as_torch(groups):
    w = RNG.standard_normal((6, 2, 3, 3))
    x_t, w_t = torch.from_numpy(X).requires_grad_(), torch.from_numpy(w).requires_grad_()
    y = F.conv2d(x_t, w_t, None, 1, 1, 1, groups)       # torch takes the array itself
    close(gpuconv.conv2d(X, w, None, 1, 1, 1, groups), y)
    dy = RNG.standard_normal(tuple(y.shape))
    y.backward(torch.from_numpy(dy))
    close(grad.conv2d_input(X.shape, w, dy, 1, 1, 1, groups), x_t.grad)
    close(grad.conv2d_weight(X, w.shape, dy, 1, 1, 1, groups), w_t.grad)
    assert gpuconv.conv2d_output_shape(X.shape, w.shape, 1, 1, 1, groups) == tuple(y.shape)
    wt = RNG.standard_normal((4, 3, 3, 3))
    close(gpuconv.conv_transpose2d(X, wt, None, 2, 1, 1, groups),
          F.conv_transpose2d(torch.from_numpy(X), torch.from_numpy(wt), None, 2, 1, 1, groups))


@pytest.mark.parametrize("groups", [np.array(True), np.array(2.0), np.array([2])],
                         ids=["bool", "float", "1-d"])
def test_groups_refuses_other_numpy_arrays_as_torch(groups):
    w = np.zeros((6, 2, 3, 3))
    with pytest.raises(TypeError):
        F.conv2d(torch.from_numpy(X), torch.from_numpy(w), None, 1, 1, 1, groups)
    with pytest.raises(TypeError, match="groups must be an int"):
        gpuconv.conv2d(X, w, None, 1, 1, 1, groups)
    with pytest.raises(TypeError, match="groups must be an int"):
        gpuconv.conv_transpose2d(X, np.zeros((4, 3, 3, 3)), None, 1, 1, 0, groups)


@pytest.mark.parametrize("kwargs, message", [
    # 7 rows, 3 taps: (7 - 1) * stride + dilation * (3 - 1) + output padding + 1 rows before
    # the padding of 1 crops one at each end; a padding of 0 would not bring them under 2**31.
    (dict(stride=2 ** 30, padding=1), r"^stride 1073741824, dilation 1 and output_padding 0 "
     r"make the output's height before padding crops it \(7 - 1\) \* 1073741824 \+ 1 \* \(3 - 1"
     r"\) \+ 0 \+ 1 = 6442450947: it must stay under 2\*\*31"),
    (dict(stride=(1, 2 ** 29), output_padding=(0, 2 ** 29 - 1)),
     r"^stride 536870912, dilation 1 and output_padding 536870911 make the output's width "
     r".* = 4294967298: it must stay under 2\*\*31"),
    (dict(dilation=(2 ** 30, 1)), r"^stride 1, dilation 1073741824 and output_padding 0 make "
     r"the output's height .* = 2147483655: it must stay under 2\*\*31"),
    # Rows 2147483643 to 2147483643 + stride - 1 are the sizes this stride allows.
    (dict(stride=(357913940, 1), output_size=(2 ** 31 + 5, 10)),
     r"^stride 357913940, dilation 1 and output_size \(output padding 10\) make the output's "
     r"height .* = 2147483653: it must stay under 2\*\*31"),
], ids=["stride", "output_padding", "dilation", "output_size"])
def test_transposed_output_past_32_bits_names_what_makes_it(kwargs, message):
    w = np.ones((4, 3, 3, 3))
    with pytest.raises(ValueError, match=message):
        gpuconv.conv_transpose2d(X, w, **kwargs)
    with pytest.raises(ValueError, match=message):
        gpuconv.conv_transpose2d_output_shape(X.shape, w.shape, **kwargs)
