"""Thirteenth contract audit, convolution (conv2d, conv_transpose2d, the conv gradients, the shape
and cost utilities, explain; reference and simulator against torch 2.13 CPU in float64): every
public parameter fed ~40 odd values (None, strings, floats, bools, NumPy scalars and 0-d arrays,
nested and ragged sequences, values past 2**31 and 2**63), odd arrays in every array role
(0-d, wrong rank, empty axes, every dtype, byte-swapped, read-only, broadcast, masked,
memory-mapped), negative-stride and zero-stride inputs, float16 and bfloat16 sums whose partial
values overflow the 16-bit range (every forward, data- and weight-gradient algorithm), fused
epilogues into channel slices of ``out`` through every algorithm in both layouts, and
transposed convolutions of 1-pixel inputs with huge strides. Values agreed; these disagreed:

- A 0-d integer NumPy array (a size computed with NumPy) was an int only for ``groups``
  (audit 12). torch reads every int through ``__index__``: inside stride, padding, dilation and
  output_padding pairs, in conv2d_input's / conv2d_weight's shapes and in output_size. Now it
  is an int everywhere an int is taken (gpuconv/_args.py); a 0-d bool or float array stays a
  TypeError, as in torch.
- ``out=`` of a NumPy array subclass (a ``np.memmap`` output file, a masked array) crashed with
  ModuleNotFoundError: the overlap check took any array that is not exactly ``np.ndarray`` for
  a CuPy array (gpuconv/_arrays.py).
- A shape of 2**31 rows or columns (conv2d_input's input_shape, the utilities' input_shape) was
  a ValueError naming ``padding`` even with no padding at all; it now names the shape's
  dimension.

Runs on both executors (tests/contract/conftest.py); expected values come from torch.
"""
import numpy as np
import pytest

import gpuconv
from gpuconv import grad

torch = pytest.importorskip("torch")
F = torch.nn.functional

RNG = np.random.default_rng(13)
X = RNG.standard_normal((2, 4, 7, 8))
W = RNG.standard_normal((6, 2, 3, 3))
A = np.array     # a 0-d array: A(2)


def close(actual, expected):
    np.testing.assert_allclose(actual, expected.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_zero_d_integer_arrays_are_ints_inside_pairs_as_torch():
    stride, padding, dilation = (A(2), 1), (A(1), A(2, dtype=np.uint8)), (1, A(2))
    x_t, w_t = torch.from_numpy(X).requires_grad_(), torch.from_numpy(W).requires_grad_()
    y = F.conv2d(x_t, w_t, None, stride, padding, dilation, 2)    # torch takes them
    close(gpuconv.conv2d(X, W, None, stride, padding, dilation, 2), y)
    assert gpuconv.conv2d_output_shape(X.shape, W.shape, stride, padding, dilation,
                                       2) == tuple(y.shape)
    dy = RNG.standard_normal(tuple(y.shape))
    y.backward(torch.from_numpy(dy))
    input_shape, weight_shape = (A(2), 4, A(7), 8), (A(6), 2, 3, A(3))
    close(grad.conv2d_input(input_shape, W, dy, stride, padding, dilation, 2), x_t.grad)
    close(grad.conv2d_weight(X, weight_shape, dy, stride, padding, dilation, 2), w_t.grad)
    # the pair of pairs form, which torch does not have: the same rows and columns
    np.testing.assert_array_equal(
        gpuconv.conv2d(X, W, None, stride, ((A(1), 1), (2, A(2))), dilation, 2),
        gpuconv.conv2d(X, W, None, stride, padding, dilation, 2))


def test_zero_d_integer_arrays_are_ints_in_transposed_convolutions_as_torch():
    w = RNG.standard_normal((4, 3, 3, 3))
    expected = F.conv_transpose2d(torch.from_numpy(X), torch.from_numpy(w), None, (A(2), 2),
                                  (A(1), 1), (A(1), 0))
    close(gpuconv.conv_transpose2d(X, w, None, (A(2), 2), (A(1), 1), (A(1), 0)), expected)
    close(gpuconv.conv_transpose2d(X, w, None, A(2), A(1), (A(1), 0)), expected)
    close(gpuconv.conv_transpose2d(X, w, None, 2, 1, output_size=[A(14), A(15)]), expected)


@pytest.mark.parametrize("value", [A(True), A(2.0), np.bool_(True)], ids=["bool", "float",
                                                                         "numpy-bool"])
def test_other_zero_d_arrays_stay_refused_as_torch(value):
    with pytest.raises(TypeError):
        F.conv2d(torch.from_numpy(X), torch.from_numpy(W), None, (value, 1), groups=2)
    with pytest.raises(TypeError, match=r"stride\[0\] must be an int"):
        gpuconv.conv2d(X, W, None, (value, 1), groups=2)
    with pytest.raises(TypeError, match="input_shape dimension H must be an int"):
        grad.conv2d_input((2, 4, value, 8), W, np.zeros((2, 6, 5, 6)), groups=2)


@pytest.mark.parametrize("kind", ["memmap", "masked"])
def test_out_of_a_numpy_array_subclass(kind, tmp_path):
    b = RNG.standard_normal(6)
    if kind == "memmap":
        out = np.memmap(tmp_path / "out.bin", dtype=np.float64, mode="w+", shape=(2, 6, 7, 8))
    else:
        out = np.ma.masked_array(np.zeros((2, 6, 7, 8)))
    y = gpuconv.conv2d(X, W, b, 1, 1, 1, 2, out=out)
    assert y is out
    close(np.asarray(y), F.conv2d(torch.from_numpy(X), torch.from_numpy(W), torch.from_numpy(b),
                                  1, 1, 1, 2))


def test_out_of_a_numpy_array_subclass_overlapping_an_input_is_refused(tmp_path):
    buffer = np.memmap(tmp_path / "buffer.bin", dtype=np.float64, mode="w+", shape=(2, 10, 7, 8))
    buffer[:, :4] = X
    with pytest.raises(ValueError, match="out must not overlap x"):
        gpuconv.conv2d(buffer[:, :4], W, None, 1, 1, 1, 2, out=buffer[:, 2:8])
    y = gpuconv.conv2d(buffer[:, :4], W, None, 1, 1, 1, 2, out=buffer[:, 4:])  # disjoint
    close(np.asarray(y), F.conv2d(torch.from_numpy(X), torch.from_numpy(W), None, 1, 1, 1, 2))


@pytest.mark.parametrize("call, dimension", [
    (lambda: grad.conv2d_input((1, 1, 5, 2 ** 31), np.ones((1, 1, 1, 1)), np.ones((1, 1, 5, 2))),
     "W"),
    (lambda: gpuconv.conv2d_output_shape((1, 1, 2 ** 40, 5), (1, 1, 1, 1)), "H"),
    (lambda: gpuconv.conv2d_flops((1, 2 ** 31, 5, 1), (1, 1, 1, 1), data_format="NHWC"), "H"),
    (lambda: gpuconv.conv_transpose2d_output_shape((1, 1, 5, 2 ** 31), (1, 1, 1, 1)), "W"),
], ids=["conv2d_input", "conv2d_output_shape", "conv2d_flops NHWC",
        "conv_transpose2d_output_shape"])
def test_a_shape_past_32_bits_names_the_shape_not_the_padding(call, dimension):
    with pytest.raises(ValueError, match=f"^input_shape dimension {dimension} must be <= "
                                         r"2\*\*31 - 1"):
        call()
