"""Regressions of the second contract audit: disagreements with api.md / PyTorch found by a
random differential hunt (gpuconv vs torch 2.13 CPU), one precise test per finding.

Like every contract test, each runs on the NumPy reference and on the kernels executed by the
CPU simulator (tests/contract/conftest.py). The expected values come from torch, never from
gpuconv.
"""
import numpy as np
import pytest

import gpuconv
from gpuconv import grad

torch = pytest.importorskip("torch")
F = torch.nn.functional
import gpuconv.torch  # noqa: E402 (needs torch)


def random(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def close(got, expected):
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)


# ------------------------------------------------------------------------------------------
# 1. A 4-element output_size counts only its (H, W), as in torch.nn.ConvTranspose2d.forward and
#    F.max_unpool2d: a U-Net decoder passes ``output_size=skip.size()``, whose channels differ.


@pytest.mark.parametrize("output_size", [(5, 9, 8, 10), (1, 2, 8, 10), [0, 0, 7, 9]])
def test_conv_transpose2d_output_size_of_another_tensor_keeps_its_height_and_width(output_size):
    x, w, b = random(2, 3, 4, 5), random(3, 2, 3, 3, seed=1), random(2, seed=2)
    layer = torch.nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(w))
        layer.bias.copy_(torch.tensor(b))
        expected = layer(torch.tensor(x), output_size=list(output_size)).numpy()
    close(gpuconv.conv_transpose2d(x, w, b, 2, 1, output_size=output_size), expected)
    assert gpuconv.conv_transpose2d_output_shape(x.shape, w.shape, 2, 1,
                                                 output_size=output_size) == expected.shape


def test_torch_conv_transpose2d_layer_takes_a_skip_connections_size():
    up = torch.nn.ConvTranspose2d(4, 2, 2, stride=2).double()
    twin = gpuconv.torch.ConvTranspose2d(4, 2, 2, stride=2).double()
    twin.load_state_dict(up.state_dict())
    x, skip = torch.tensor(random(1, 4, 3, 3)), torch.zeros(1, 7, 7, 7, dtype=torch.float64)
    with torch.no_grad():
        close(twin(x, output_size=skip.size()).numpy(), up(x, output_size=skip.size()).numpy())


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_max_unpool2d_output_size_of_another_tensor_keeps_its_height_and_width(data_format):
    source = torch.tensor(random(2, 3, 7, 9))
    values, indices = F.max_pool2d(source, 2, return_indices=True)
    expected = F.max_unpool2d(values, indices, 2, output_size=[8, 1, 7, 9]).numpy()
    size = (8, 1, 7, 9) if data_format == "NCHW" else (8, 7, 9, 1)
    to_layout = (lambda a: a) if data_format == "NCHW" else (lambda a: a.transpose(0, 2, 3, 1))
    got = gpuconv.max_unpool2d(np.ascontiguousarray(to_layout(values.numpy())),
                               np.ascontiguousarray(to_layout(indices.numpy())), 2,
                               output_size=size, data_format=data_format)
    close(got, np.ascontiguousarray(to_layout(expected)))


# ------------------------------------------------------------------------------------------
# 2. NumPy's bool (what comparisons of arrays give) is a bool: torch takes it for max_pool2d's
#    return_indices and torchvision for roi_align's aligned.

X = random(2, 3, 7, 8)
BOXES = np.array([[0, 1.0, 1.5, 5.0, 6.0], [1, 0.5, 0.0, 3.0, 4.5]])


@pytest.mark.parametrize("function, kwargs", [
    (gpuconv.max_pool2d, dict(kernel_size=2, return_indices=True)),
    (gpuconv.max_pool2d, dict(kernel_size=3, stride=2, ceil_mode=True)),
    (gpuconv.avg_pool2d, dict(kernel_size=3, padding=1, count_include_pad=False)),
    (gpuconv.lp_pool2d, dict(norm_type=2, kernel_size=2, ceil_mode=True)),
    (gpuconv.adaptive_max_pool2d, dict(output_size=3, return_indices=True)),
    (gpuconv.roi_align, dict(boxes=BOXES, output_size=2, aligned=True)),
], ids=lambda v: getattr(v, "__name__", ""))
def test_numpy_bools_are_accepted_where_a_bool_is(function, kwargs):
    x = np.abs(X) if function is gpuconv.lp_pool2d else X
    flags = {k: np.bool_(v) for k, v in kwargs.items() if isinstance(v, bool)}
    expected = function(x, **kwargs)
    got = function(x, **{**kwargs, **flags})
    for a, b in zip(expected if isinstance(expected, tuple) else (expected,),
                    got if isinstance(got, tuple) else (got,)):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------------
# 3. An empty stride means kernel_size for max/avg/lp pooling, as in torch.nn.functional.


@pytest.mark.parametrize("stride", [[], ()])
@pytest.mark.parametrize("name, args", [("max_pool2d", (3,)), ("avg_pool2d", ((2, 3),)),
                                        ("lp_pool2d", (2, 2))])
def test_an_empty_stride_is_the_kernel_size(name, args, stride):
    x = np.abs(X) + 0.5
    expected = getattr(F, name)(torch.tensor(x), *args, stride=stride).numpy()
    close(getattr(gpuconv, name)(x, *args, stride=stride), expected)
    g = random(*expected.shape, seed=3)
    close(getattr(grad, name)(g, x, *args, stride=stride),
          getattr(grad, name)(g, x, *args, stride=None))


# ------------------------------------------------------------------------------------------
# 4. A byte-swapped array would be misread by the kernels (silently wrong under simulate()):
#    it is a TypeError naming the argument, as torch.from_numpy refuses it.

SWAPPED = np.dtype(">f8") if np.little_endian else np.dtype("<f8")


@pytest.mark.parametrize("call, name", [
    (lambda: gpuconv.conv2d(X.astype(SWAPPED), X[:2, :, :3, :3].astype(SWAPPED)), "x"),
    (lambda: gpuconv.conv2d(X, X[:2, :, :3, :3].astype(SWAPPED)), "weight"),
    (lambda: gpuconv.max_pool2d(X.astype(SWAPPED), 2), "x"),
    (lambda: grad.avg_pool2d(random(2, 3, 3, 4).astype(SWAPPED), X, 2), "grad_output"),
    (lambda: gpuconv.max_unpool2d(X[:, :, :3, :4], np.zeros((2, 3, 3, 4), ">i8"), 2), "indices"),
    (lambda: gpuconv.roi_pool(X.astype(SWAPPED), BOXES.astype(SWAPPED), 2), "x"),
])
def test_non_native_byte_order_is_a_type_error_naming_the_argument(call, name):
    with pytest.raises(TypeError, match=rf"^{name} must be in the machine's native byte order"):
        call()


# ------------------------------------------------------------------------------------------
# 5. conv_transpose2d with a 1x1 filter and output_padding beyond padding (legal while
#    output_padding < dilation): the extra rows/columns get the bias (here they kept garbage
#    on the kernels' pointwise path).


@pytest.mark.parametrize("stride, padding, output_padding, dilation, groups", [
    (1, 0, (1, 1), 2, 1), (1, 0, (0, 1), (1, 2), 1), (1, 1, (2, 0), 3, 1), (1, 2, 3, 4, 1)])
def test_conv_transpose2d_one_by_one_filter_with_output_padding_beyond_padding(
        stride, padding, output_padding, dilation, groups):
    x, w, b = random(2, 2, 3, 4), random(2, 2 // groups, 1, 1, seed=1), random(2, seed=2)
    expected = F.conv_transpose2d(torch.tensor(x), torch.tensor(w), torch.tensor(b), stride,
                                  padding, output_padding, groups, dilation).numpy()
    close(gpuconv.conv_transpose2d(x, w, b, stride, padding, output_padding, groups, dilation),
          expected)


# ------------------------------------------------------------------------------------------
# 6. A stride (dilation) along an axis with a single output (filter tap) changes nothing, and
#    may be 2**31 or more (torch's convolution accepts it): the kernels' 32-bit arguments
#    raised OverflowError under simulate().

HUGE = 2 ** 31 + 3


def test_conv_with_a_huge_stride_and_one_output_row_matches_torch():
    x, w = random(1, 2, 5, 6), random(3, 2, 3, 3, seed=1)
    expected = F.conv2d(torch.tensor(x), torch.tensor(w), None, (HUGE, 1)).numpy()
    close(gpuconv.conv2d(x, w, stride=(HUGE, 1)), expected)
    g = random(*expected.shape, seed=2)
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    F.conv2d(xt, wt, None, (HUGE, 1)).backward(torch.tensor(g))
    close(grad.conv2d_input(x.shape, w, g, (HUGE, 1)), xt.grad.numpy())
    close(grad.conv2d_weight(x, w.shape, g, (HUGE, 1)), wt.grad.numpy())


def test_conv_with_a_huge_dilation_of_a_one_tap_axis_matches_torch():
    x, w = random(1, 2, 5, 6), random(3, 2, 3, 1, seed=1)
    expected = F.conv2d(torch.tensor(x), torch.tensor(w), None, 1, 1, (1, 2 ** 32)).numpy()
    close(gpuconv.conv2d(x, w, None, 1, 1, (1, 2 ** 32)), expected)


# torch's pooling refuses values beyond 32 bits; with one output row (one tap) any stride
# (dilation) gives the same result, so torch's result for a small one is the expectation.
@pytest.mark.parametrize("name, args, huge, small", [
    ("max_pool2d", (2,), dict(stride=(HUGE, 1), padding=1, ceil_mode=True),
     dict(stride=(100, 1), padding=1, ceil_mode=True)),
    ("max_pool2d", ((1, 2),), dict(stride=1, dilation=(2 ** 33, 1)), dict(stride=1, dilation=1)),
    ("avg_pool2d", (3,), dict(stride=(1, HUGE), padding=1, count_include_pad=False),
     dict(stride=(1, 100), padding=1, count_include_pad=False)),
    ("lp_pool2d", (2, 2), dict(stride=(HUGE, 2)), dict(stride=(100, 2))),
])
def test_pooling_with_a_huge_stride_or_dilation_that_changes_nothing(name, args, huge, small):
    x = np.abs(X) + 0.5
    expected = getattr(F, name)(torch.tensor(x), *args, **small).numpy()
    close(getattr(gpuconv, name)(x, *args, **huge), expected)
    g = random(*expected.shape, seed=4)
    xt = torch.tensor(x, requires_grad=True)
    getattr(F, name)(xt, *args, **small).backward(torch.tensor(g))
    close(getattr(grad, name)(g, x, *args, **huge), xt.grad.numpy())


def test_divisor_override_beyond_32_bits_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match="divisor_override"):
        gpuconv.avg_pool2d(X, 2, divisor_override=2 ** 31)
    with pytest.raises(ValueError, match="divisor_override"):
        grad.avg_pool2d(random(2, 3, 3, 4), X, 2, divisor_override=-2 ** 31 - 1)


# ------------------------------------------------------------------------------------------
# 7. gpuconv.jax: errors name the caller's argument (not the shape utilities' "input_shape"),
#    a 3-D x is a clear error, and float indices are refused rather than truncated.

@pytest.mark.parametrize("call, error, message", [
    (lambda J, jnp: J.conv2d(jnp.zeros((2, 3, 7, 8)), jnp.zeros((4, 2, 3, 3))), ValueError,
     r"expects x with 2 channels"),
    (lambda J, jnp: J.conv2d(jnp.zeros((3, 7, 8)), jnp.zeros((4, 3, 3, 3))), ValueError,
     r"^x must be 4-D"),
    (lambda J, jnp: J.conv_transpose2d(jnp.zeros((2, 3, 7, 8)), jnp.zeros((4, 2, 3, 3))),
     ValueError, r"^weight of shape \(4, 2, 3, 3\) expects x with 4 channels"),
    (lambda J, jnp: J.max_pool2d(jnp.zeros((3, 7, 8)), 2), ValueError, r"^x must be 4-D"),
    (lambda J, jnp: J.max_unpool2d(jnp.ones((1, 1, 2, 2)), jnp.zeros((1, 1, 2, 2)), 2),
     TypeError, r"^indices must have an integer dtype"),
])
def test_jax_front_errors_name_the_argument(call, error, message):
    jnp = pytest.importorskip("jax.numpy")
    from gpuconv import jax as gpuconv_jax
    with pytest.raises(error, match=message):
        call(gpuconv_jax, jnp)
