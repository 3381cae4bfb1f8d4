"""Sixth contract audit (randomized differential runs of every api.md function against torch and
a NumPy transcription of torchvision, plus ~150 invalid-argument probes): where api.md is silent
gpuconv does what torch does, and every invalid argument is a named ValueError/TypeError.

- A 1-D NumPy array is a sequence of sizes where torch takes one (adaptive pooling's,
  conv_transpose2d's and max_unpool2d's ``output_size``). (torch.nn.functional's one-element
  spelling of a pair, ``stride=(2,)``, stays gpuconv.torch's: api.md's NumPy front takes an int
  or ``(h, w)``, tests/contract/test_contract_errors.py.)
- Paddings, window sizes, output sizes and sampling ratios of 2**31 or more (the kernels take
  32-bit ints) are a ValueError naming the argument, not an OverflowError from the launch or a
  MemoryError from the reference's padded copy.

(The audit's framework finding, a non-tensor input of gpuconv.torch's pooling and ROI functions,
is tests/frameworks/test_torch_functional.py ``test_an_input_that_is_not_a_tensor_is_a_type_error``.)
Runs on both executors (tests/contract/conftest.py); expected values come from torch.
"""
import numpy as np
import pytest

import gpuconv

torch = pytest.importorskip("torch")
F = torch.nn.functional


def close(got, expected):
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-10, atol=1e-12)


def test_sizes_as_numpy_arrays_as_in_torch():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 2, 5, 7))
    close(gpuconv.adaptive_avg_pool2d(x, np.array([2, 3])),
          F.adaptive_avg_pool2d(torch.from_numpy(x), [2, 3]))
    w = rng.standard_normal((2, 3, 3, 3))
    expected = F.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w), stride=2,
                                  output_padding=1)
    close(gpuconv.conv_transpose2d(x, w, stride=2, output_size=np.array(expected.shape[2:])),
          expected)
    values, indices = F.max_pool2d(torch.from_numpy(x), 2, return_indices=True)
    close(gpuconv.max_unpool2d(values.numpy(), indices.numpy(), 2, output_size=np.array([5, 7])),
          F.max_unpool2d(values, indices, 2, output_size=[5, 7]))
    with pytest.raises(TypeError, match=r"output_size\[0\]"):
        gpuconv.adaptive_avg_pool2d(x, np.array([2.0, 3.0]))


BIG = 2 ** 31


@pytest.mark.parametrize("call, name", [
    (lambda x: gpuconv.conv2d(x, np.ones((1, 1, 1, 1)), stride=BIG, padding=BIG), "padding"),
    (lambda x: gpuconv.conv2d(x, np.ones((1, 1, 1, 1)), padding=((0, BIG), (0, 0))),
     r"padding\[0\]\[1\]"),
    (lambda x: gpuconv.conv_transpose2d(x, np.ones((1, 1, 1, 1)), padding=(0, BIG)),
     r"padding\[1\]"),
    (lambda x: gpuconv.avg_pool2d(x, (2 ** 32, 1), stride=(BIG, 1), padding=(BIG, 0)),
     r"kernel_size\[0\]"),
    (lambda x: gpuconv.max_pool2d(x, BIG), "kernel_size"),
    (lambda x: gpuconv.lp_pool2d(x, 2, (1, BIG)), r"kernel_size\[1\]"),
    (lambda x: gpuconv.roi_align(x, np.array([[0, 0, 0, 3, 3.0]]), 2, 1.0, BIG),
     "sampling_ratio"),
    (lambda x: gpuconv.roi_pool(x, np.array([[0, 0, 0, 3, 3.0]]), (BIG, 1)), r"output_size\[0\]"),
], ids=["conv2d", "conv2d_pair_of_pairs", "conv_transpose2d", "avg_pool2d", "max_pool2d",
        "lp_pool2d", "roi_align", "roi_pool"])
def test_arguments_past_32_bits_are_value_errors_naming_them(call, name):
    x = np.random.default_rng(2).standard_normal((1, 1, 3, 3))
    with pytest.raises(ValueError, match=f"{name} must be <= 2\\*\\*31 - 1"):
        call(x)
