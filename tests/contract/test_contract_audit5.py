"""Fifth contract audit (a differential fuzzer of every api.md function against torch, reference
and simulator): where api.md is silent gpuconv does what torch does.

- max_unpool2d whose unpooled output has 0 rows or columns (padding as large as the kernel
  allows, or an output_size of 0 within stride of the default): torch returns the empty tensor
  without looking at the indices; its gradient with respect to x is zero (torch's own backward
  fails there). A negative size stays a ValueError.

(The audit's other two findings are framework-side: tests/frameworks/test_jax_functions.py
``test_dtype_errors_are_type_errors_when_traced`` and test_torch_functional.py
``test_one_element_sequences_mean_both_axes_as_in_torch``.) Runs on both executors
(tests/contract/conftest.py); expected shapes come from torch.
"""
import numpy as np
import pytest

import gpuconv
from gpuconv import grad

torch = pytest.importorskip("torch")
F = torch.nn.functional


def nhwc(a):
    return np.ascontiguousarray(np.asarray(a).transpose(0, 2, 3, 1))


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("x_shape,kw", [
    ((1, 3, 1, 2), dict(kernel_size=2, stride=2, padding=1)),          # default 0 x 2
    ((2, 2, 3, 1), dict(kernel_size=(2, 2), stride=(1, 2), padding=(0, 1))),   # 4 x 0
    ((1, 2, 1, 1), dict(kernel_size=1, stride=3, output_size=(0, 2))),  # asked for, in range
])
def test_max_unpool2d_to_an_empty_output_is_empty_as_in_torch(x_shape, kw, data_format):
    x = torch.randn(*x_shape, dtype=torch.float64)
    # indices of a plane that does not exist: torch does not read them
    indices = torch.zeros(x_shape, dtype=torch.int64)
    expected = F.max_unpool2d(x, indices, **kw)
    assert expected.numel() == 0
    xs, idx = x.numpy(), indices.numpy()
    if data_format == "NHWC":
        xs, idx = nhwc(xs), nhwc(idx)
    y = gpuconv.max_unpool2d(xs, idx, **kw, data_format=data_format)
    want = tuple(expected.shape) if data_format == "NCHW" else nhwc(expected.numpy()).shape
    assert y.shape == want and y.dtype == np.float64
    g = grad.max_unpool2d(np.zeros(want), xs, idx, **kw, data_format=data_format)
    assert g.shape == xs.shape and not g.any()


def test_max_unpool2d_to_a_negative_size_is_a_value_error():
    x = np.ones((1, 3, 1, 2))
    with pytest.raises(ValueError, match="unpooled output would be -1x0"):
        gpuconv.max_unpool2d(x, np.zeros(x.shape, np.int64), 1, 1, 1)
    with pytest.raises(TypeError, match="integer dtype"):
        gpuconv.max_unpool2d(x, np.zeros(x.shape), 2, 2, 1)
