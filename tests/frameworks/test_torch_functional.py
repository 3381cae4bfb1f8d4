"""gpuconv.torch's functions against torch.nn.functional (and torchvision semantics) on CPU
tensors: same random inputs, float32 and float64, the argument combinations that change the
index arithmetic (stride, padding, dilation, groups, ceil_mode, indices), channels_last and
unbatched inputs, bfloat16/float16, and argument errors."""
import types
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import gpuconv.torch as G  # noqa: E402
from gpuconv.torch import _bridge  # noqa: E402

import torchvision_semantics as tvs  # noqa: E402

DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float64: dict(rtol=1e-10, atol=1e-10),
       torch.float16: dict(rtol=2e-2, atol=2e-2), torch.bfloat16: dict(rtol=3e-2, atol=5e-2)}


def randn(*shape, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)


def assert_close(actual, expected, dtype):
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, **TOL[dtype])


# --------------------------------------------------------------------------------------------
# convolution

CONV_CASES = [
    ((2, 3, 9, 8), (4, 3, 3, 3), {}),
    ((2, 3, 9, 8), (4, 3, 3, 3), dict(stride=2, padding=1)),
    ((1, 3, 10, 9), (5, 3, 3, 2), dict(stride=(1, 2), padding=(2, 1), dilation=(2, 1))),
    ((2, 4, 7, 7), (6, 2, 3, 3), dict(padding=1, groups=2)),
    ((2, 4, 7, 7), (4, 1, 3, 3), dict(stride=2, padding=1, groups=4)),        # depthwise
    ((2, 8, 5, 6), (3, 8, 1, 1), {}),                                        # pointwise
    ((2, 3, 6, 7), (2, 3, 4, 2), dict(padding="same")),                       # even kernel
    ((2, 3, 6, 7), (2, 3, 3, 3), dict(padding="valid", dilation=2)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("x_shape,w_shape,kw", CONV_CASES)
def test_conv2d_matches_torch(x_shape, w_shape, kw, bias, dtype):
    x, w = randn(*x_shape, dtype=dtype), randn(*w_shape, dtype=dtype, seed=1)
    b = randn(w_shape[0], dtype=dtype, seed=2) if bias else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # torch's note that padding="same" may copy the input
        expected = F.conv2d(x, w, b, **kw)
    assert_close(G.conv2d(x, w, b, **kw), expected, dtype)


@pytest.mark.parametrize("activation,torch_fn", [(None, lambda y: y), ("relu", torch.relu),
                                                 ("tanh", torch.tanh),
                                                 ("sigmoid", torch.sigmoid)])
def test_conv2d_fused_epilogue_matches_composition(activation, torch_fn):
    x, w, b = randn(2, 4, 6, 6), randn(6, 4, 3, 3, seed=1), randn(6, seed=2)
    residual = randn(2, 6, 6, 6, seed=3)
    expected = torch_fn(F.conv2d(x, w, b, padding=1) + residual)
    actual = G.conv2d(x, w, b, padding=1, activation=activation, residual=residual)
    assert_close(actual, expected, torch.float64)


def test_conv2d_same_padding_with_stride_follows_api_md():
    # torch refuses padding="same" with stride > 1; gpuconv gives ceil(H / stride) with the
    # odd total padding's extra row/column at the bottom/right: ((0, 1), (0, 1)) here.
    x, w = randn(1, 2, 7, 8), randn(3, 2, 2, 3, seed=1)
    expected = F.conv2d(F.pad(x, (0, 1, 0, 1)), w, stride=2)
    actual = G.conv2d(x, w, stride=2, padding="same")
    assert actual.shape == (1, 3, 4, 4)
    assert_close(actual, expected, torch.float64)


def test_conv2d_algorithm_is_passed_and_checked():
    x, w = randn(1, 4, 5, 5), randn(4, 1, 3, 3, seed=1)
    assert_close(G.conv2d(x, w, groups=4, algorithm="direct"), F.conv2d(x, w, groups=4),
                 torch.float64)
    with pytest.raises(ValueError, match="algorithm"):
        G.conv2d(x, w, groups=4, algorithm="winograd")


TRANSPOSE_CASES = [
    ((2, 4, 5, 6), (4, 3, 3, 3), dict(stride=2, padding=1, output_padding=1)),
    ((1, 4, 4, 5), (4, 2, 3, 2), dict(stride=(2, 1), padding=(0, 1), groups=2)),
    ((2, 3, 4, 4), (3, 2, 3, 3), dict(stride=1, dilation=2, output_padding=1)),  # op >= stride
    ((1, 2, 3, 3), (2, 4, 2, 2), dict(stride=2)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape,w_shape,kw", TRANSPOSE_CASES)
def test_conv_transpose2d_matches_torch(x_shape, w_shape, kw, dtype):
    x, w = randn(*x_shape, dtype=dtype), randn(*w_shape, dtype=dtype, seed=1)
    b = randn(w_shape[1] * kw.get("groups", 1), dtype=dtype, seed=2)
    assert_close(G.conv_transpose2d(x, w, b, **kw), F.conv_transpose2d(x, w, b, **kw), dtype)


def test_conv_transpose2d_output_size_matches_module():
    x, layer = randn(1, 4, 5, 5), torch.nn.ConvTranspose2d(4, 2, 3, stride=3, dtype=torch.float64)
    expected = layer(x, output_size=(16, 17))
    actual = G.conv_transpose2d(x, layer.weight, layer.bias, stride=3, output_size=(16, 17))
    assert_close(actual, expected, torch.float64)


# --------------------------------------------------------------------------------------------
# pooling

MAX_POOL_CASES = [
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, ceil_mode=True),
    dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 0), dilation=2),
    dict(kernel_size=3, stride=2, padding=1, dilation=(1, 2), ceil_mode=True),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", MAX_POOL_CASES)
def test_max_pool2d_matches_torch_with_indices(kw, dtype):
    x = randn(2, 3, 9, 10, dtype=dtype)
    values, indices = G.max_pool2d(x, return_indices=True, **kw)
    expected_values, expected_indices = F.max_pool2d(x, return_indices=True, **kw)
    assert_close(values, expected_values, dtype)
    assert indices.dtype == torch.int64
    assert torch.equal(indices, expected_indices)
    assert_close(G.max_pool2d(x, **kw), expected_values, dtype)


def test_max_pool2d_ties_and_nan_follow_torch():
    x = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    x[0, 0, 3, 3] = float("nan")
    values, indices = G.max_pool2d(x, 2, return_indices=True)
    expected_values, expected_indices = F.max_pool2d(x, 2, return_indices=True)
    torch.testing.assert_close(values, expected_values, equal_nan=True)
    assert torch.equal(indices, expected_indices)


AVG_POOL_CASES = [
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=3, stride=2, padding=1, count_include_pad=False),
    dict(kernel_size=(3, 2), stride=2, padding=(1, 1), ceil_mode=True),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    dict(kernel_size=2, divisor_override=3),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", AVG_POOL_CASES)
def test_avg_pool2d_matches_torch(kw, dtype):
    x = randn(2, 3, 9, 8, dtype=dtype)
    assert_close(G.avg_pool2d(x, **kw), F.avg_pool2d(x, **kw), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm_type,kw", [(2, dict(kernel_size=3, stride=2)),
                                          (1.5, dict(kernel_size=(2, 3), ceil_mode=True)),
                                          (3.0, dict(kernel_size=2, stride=1)),
                                          (-1.0, dict(kernel_size=2, stride=1)),
                                          (float("inf"), dict(kernel_size=3, stride=2)),
                                          (float("-inf"), dict(kernel_size=(2, 3)))])
def test_lp_pool2d_matches_torch(norm_type, kw, dtype):
    x = randn(2, 3, 8, 9, dtype=dtype).abs() + 0.1   # fractional powers of negatives are NaN
    assert_close(G.lp_pool2d(x, norm_type, **kw), F.lp_pool2d(x, norm_type, **kw), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output_size", [(3, 4), 1, (None, 2), (5, 3), 7])
def test_adaptive_pools_match_torch(output_size, dtype):
    x = randn(2, 3, 7, 6, dtype=dtype)
    assert_close(G.adaptive_avg_pool2d(x, output_size), F.adaptive_avg_pool2d(x, output_size),
                 dtype)
    values, indices = G.adaptive_max_pool2d(x, output_size, return_indices=True)
    expected_values, expected_indices = F.adaptive_max_pool2d(x, output_size, return_indices=True)
    assert_close(values, expected_values, dtype)
    assert torch.equal(indices, expected_indices)


@pytest.mark.parametrize("dtype", DTYPES)
def test_global_and_pyramid_pools_match_torch_compositions(dtype):
    x = randn(2, 3, 7, 6, dtype=dtype)
    assert_close(G.global_avg_pool2d(x), x.mean(dim=(2, 3), keepdim=True), dtype)
    assert_close(G.global_max_pool2d(x), x.amax(dim=(2, 3), keepdim=True), dtype)
    for mode, pool in (("max", F.adaptive_max_pool2d), ("avg", F.adaptive_avg_pool2d)):
        expected = torch.cat([pool(x, l).flatten(1) for l in (1, 2, 4)], 1)
        assert_close(G.spatial_pyramid_pool2d(x, (1, 2, 4), mode), expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw,size", [(dict(kernel_size=2), None),
                                     (dict(kernel_size=3, stride=2, padding=1), (9, 10)),
                                     (dict(kernel_size=2, stride=2), "full")])
def test_max_unpool2d_matches_torch(kw, size, dtype):
    x = randn(2, 3, 9, 10, dtype=dtype)
    values, indices = F.max_pool2d(x, return_indices=True, **kw)
    output_size = x.shape if size == "full" else size
    assert_close(G.max_unpool2d(values, indices, output_size=output_size, **kw),
                 F.max_unpool2d(values, indices, output_size=output_size, **kw), dtype)


@pytest.mark.parametrize("name,call", [
    ("max_pool2d", lambda f, x, w: f.max_pool2d(x, (3,), (2,), (1,), [1])),
    ("max_pool2d", lambda f, x, w: f.max_pool2d(x, [2], [])),
    ("avg_pool2d", lambda f, x, w: f.avg_pool2d(x, (3,), [2], (1,))),
    ("conv2d", lambda f, x, w: f.conv2d(x, w, None, (2,), (1,), [2])),
    ("conv_transpose2d", lambda f, x, w: f.conv_transpose2d(
        x, w.transpose(0, 1).contiguous(), None, (2,), [1], (1,), 1, (1,))),
])
def test_one_element_sequences_mean_both_axes_as_in_torch(name, call):
    """torch.nn.functional takes (v,) for (v, v) in its pair arguments (ATen expands them)."""
    x, w = randn(2, 3, 9, 8), randn(3, 3, 3, 3, seed=1)
    assert_close(call(G, x, w), call(F, x, w), torch.float64)


# --------------------------------------------------------------------------------------------
# regions of interest (torchvision semantics)

BOXES = torch.tensor([[0, 1.0, 1.5, 6.0, 7.0], [1, 0.0, 2.0, 8.5, 5.0], [1, 3.2, 0.4, 3.9, 1.1],
                      [0, -2.0, -1.0, 4.0, 12.0]], dtype=torch.float64)


def test_torchvision_transcription_on_worked_examples():
    # The oracle's oracle: on x = 4*y + x, bilinear sampling is exact, so an aligned roi_align
    # bin is the value at the bin centre; roi_pool takes each bin's bottom-right pixel.
    plane = torch.arange(16, dtype=torch.float64).reshape(1, 1, 4, 4)
    box = torch.tensor([[0, 0.5, 0.5, 2.5, 2.5]], dtype=torch.float64)
    centres = torch.tensor([[[[2.5, 3.5], [6.5, 7.5]]]], dtype=torch.float64)
    for roi_align in (tvs.roi_align, G.roi_align):
        assert_close(roi_align(plane, box, 2, 1.0, 2, True), centres, torch.float64)
    corners = torch.tensor([[[[5.0, 7.0], [13.0, 15.0]]]], dtype=torch.float64)
    for roi_pool in (tvs.roi_pool, G.roi_pool):
        assert_close(roi_pool(plane, torch.tensor([[0, 0, 0, 3.0, 3.0]], dtype=torch.float64), 2),
                     corners, torch.float64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", [dict(output_size=3), dict(output_size=(2, 3), spatial_scale=0.5),
                                dict(output_size=2, sampling_ratio=2, aligned=True),
                                dict(output_size=(3, 2), spatial_scale=0.75, sampling_ratio=0)])
def test_roi_align_matches_torchvision_semantics(kw, dtype):
    x, boxes = randn(2, 3, 9, 10, dtype=dtype), BOXES.to(dtype)
    assert_close(G.roi_align(x, boxes, **kw), tvs.roi_align(x, boxes, **kw), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", [dict(output_size=3), dict(output_size=(2, 3), spatial_scale=0.5)])
def test_roi_pool_matches_torchvision_semantics(kw, dtype):
    x, boxes = randn(2, 3, 9, 10, dtype=dtype), BOXES.to(dtype)
    assert_close(G.roi_pool(x, boxes, **kw), tvs.roi_pool(x, boxes, **kw), dtype)


def test_roi_boxes_as_list_of_tensors_equal_the_k5_form():
    x = randn(2, 3, 9, 10)
    as_list = [BOXES[BOXES[:, 0] == i, 1:] for i in range(2)]
    as_rows = tvs.boxes_to_rois(as_list)
    for fn in (G.roi_align, G.roi_pool):
        assert_close(fn(x, as_list, 2), fn(x, as_rows, 2), torch.float64)


def test_roi_functions_match_torchvision_when_installed():
    ops = pytest.importorskip("torchvision.ops")
    x, boxes = randn(2, 3, 9, 10), BOXES
    for kw in (dict(output_size=3), dict(output_size=2, sampling_ratio=2, aligned=True)):
        assert_close(G.roi_align(x, boxes, **kw), ops.roi_align(x, boxes, **kw), torch.float64)
    assert_close(G.roi_pool(x, boxes, 3, 0.5), ops.roi_pool(x, boxes, 3, 0.5), torch.float64)


# --------------------------------------------------------------------------------------------
# layouts, shapes and dtypes

LAYOUT_CALLS = {
    "conv2d": lambda m, x: m.conv2d(x, randn(5, 4, 3, 3, seed=1), randn(5, seed=2), 2, 1),
    "max_pool2d": lambda m, x: m.max_pool2d(x, 3, 2, 1),
    "avg_pool2d": lambda m, x: m.avg_pool2d(x, 3, 2, 1, count_include_pad=False),
    "lp_pool2d": lambda m, x: m.lp_pool2d(x.abs(), 2, 2),
    "adaptive_avg_pool2d": lambda m, x: m.adaptive_avg_pool2d(x, (2, 3)),
    "adaptive_max_pool2d": lambda m, x: m.adaptive_max_pool2d(x, (2, 3)),
}


@pytest.mark.parametrize("name", sorted(LAYOUT_CALLS))
def test_channels_last_input_gives_same_values_and_a_channels_last_result(name, monkeypatch):
    x = randn(2, 4, 7, 8).contiguous(memory_format=torch.channels_last)
    formats = []
    real = _bridge.to_array

    def spy(t, data_format="NCHW"):
        formats.append(data_format)
        return real(t, data_format)

    monkeypatch.setattr("gpuconv.torch.conv.to_array", spy)
    monkeypatch.setattr("gpuconv.torch._plans.to_array", spy)     # conv2d's
    monkeypatch.setattr("gpuconv.torch.pool.to_array", spy)
    actual = LAYOUT_CALLS[name](G, x)
    assert formats[0] == "NHWC"                   # the input went as its NHWC view, no transpose
    assert actual.is_contiguous(memory_format=torch.channels_last)
    assert_close(actual, LAYOUT_CALLS[name](F, x), torch.float64)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_with_a_channels_last_weight_gives_a_channels_last_result(dtype):
    """torch's rule: the output is channels_last when the input or the weight is (a model moved
    to channels_last fed NCHW images); the values are the same."""
    x = randn(2, 4, 7, 8, dtype=dtype)
    w = randn(6, 4, 3, 3, dtype=dtype, seed=1).contiguous(memory_format=torch.channels_last)
    expected = F.conv2d(x, w, padding=1)
    actual = G.conv2d(x, w, padding=1)
    assert expected.is_contiguous(memory_format=torch.channels_last)
    assert actual.is_contiguous(memory_format=torch.channels_last) and not actual.is_contiguous()
    assert_close(actual, expected, dtype)


def test_channels_last_array_is_a_view_of_the_tensor():
    x = randn(2, 4, 7, 8).contiguous(memory_format=torch.channels_last)
    a = _bridge.to_array(x, _bridge.data_format_for(x))
    assert a.shape == (2, 7, 8, 4) and a.flags.c_contiguous
    assert a.ctypes.data == x.data_ptr()


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int32, np.int64])
def test_a_cuda_result_in_torch_memory_becomes_a_view_of_its_storage(dtype):
    torch_dtype = torch.from_numpy(np.zeros(1, dtype)).dtype
    # What to_tensor does with a CuPy result whose memory a torch tensor owns (the allocator of
    # on_device_of), shown on a CPU storage: the same bytes, shape and strides, no copy.
    block = torch.arange(96, dtype=torch.uint8)
    itemsize = np.dtype(dtype).itemsize
    address = block.data_ptr() + 2 * itemsize
    t = _bridge.tensor_over(block.untyped_storage(), address, torch_dtype, (2, 3),
                            (itemsize, 2 * itemsize))
    assert t.data_ptr() == address and t.shape == (2, 3) and t.stride() == (1, 2)
    expected = np.frombuffer(block.numpy().tobytes(), dtype)[2:]
    np.testing.assert_array_equal(t.numpy(), np.lib.stride_tricks.as_strided(
        expected, (2, 3), (itemsize, 2 * itemsize)))
    t.fill_(1)          # shares the storage's memory
    assert block[2 * itemsize:3 * itemsize].any()
    # a CuPy array (stand-in) over memory whose owner is that tensor takes this path
    memory = types.SimpleNamespace(_owner=block)
    array = types.SimpleNamespace(data=types.SimpleNamespace(mem=memory, ptr=address),
                                  dtype=np.dtype(dtype), shape=(3,), strides=(itemsize,))
    assert _bridge._tensor_of_cupy(array).data_ptr() == address
    with pytest.raises(RuntimeError, match="internal error"):
        _bridge.tensor_over(block.untyped_storage(), block.data_ptr() + 1, torch_dtype,
                            (2,), (itemsize,))


def test_unbatched_inputs_match_torch():
    x, w = randn(3, 8, 7), randn(4, 3, 3, 3, seed=1)
    assert_close(G.conv2d(x, w, padding=1), F.conv2d(x, w, padding=1), torch.float64)
    wt = randn(3, 2, 3, 3, seed=2)
    assert_close(G.conv_transpose2d(x, wt, stride=2), F.conv_transpose2d(x, wt, stride=2),
                 torch.float64)
    values, indices = G.max_pool2d(x, 2, return_indices=True)
    assert torch.equal(indices, F.max_pool2d(x, 2, return_indices=True)[1])
    size = x.shape[-2:]
    assert_close(G.max_unpool2d(values, indices, 2, output_size=size),
                 F.max_unpool2d(values, indices, 2, output_size=size), torch.float64)
    assert_close(G.avg_pool2d(x, 2), F.avg_pool2d(x, 2), torch.float64)
    assert_close(G.adaptive_avg_pool2d(x, 3), F.adaptive_avg_pool2d(x, 3), torch.float64)


def test_empty_batch_gives_empty_result():
    x, w = torch.zeros(0, 3, 6, 6), torch.zeros(4, 3, 3, 3)
    assert G.conv2d(x, w).shape == F.conv2d(x, w).shape
    assert G.max_pool2d(x, 2).shape == (0, 3, 3, 3)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_keeps_dtype_and_is_close(dtype):
    x, w, b = randn(2, 3, 8, 8), randn(4, 3, 3, 3, seed=1), randn(4, seed=2)
    expected = F.conv2d(x, w, b, padding=1).to(dtype)
    actual = G.conv2d(x.to(dtype), w.to(dtype), b.to(dtype), padding=1)
    assert_close(actual, expected, dtype)
    assert_close(G.max_pool2d(x.to(dtype), 2), F.max_pool2d(x, 2).to(dtype), dtype)


def test_bfloat16_without_ml_dtypes_goes_through_float32(monkeypatch):
    monkeypatch.setattr(_bridge, "ml_dtypes", None)
    x, w = randn(2, 3, 8, 8), randn(4, 3, 3, 3, seed=1)
    assert _bridge.to_array(x.to(torch.bfloat16)).dtype == np.float32
    actual = G.conv2d(x.to(torch.bfloat16), w.to(torch.bfloat16), padding=1)
    assert_close(actual, F.conv2d(x, w, padding=1).to(torch.bfloat16), torch.bfloat16)


def test_argument_errors_name_the_argument():
    x, w = randn(1, 3, 6, 6), randn(4, 3, 3, 3, seed=1)
    with pytest.raises(TypeError, match="dtype"):
        G.conv2d(x, w.float())
    with pytest.raises(ValueError, match="stride"):
        G.conv2d(x, w, stride=0)
    with pytest.raises(ValueError, match="activation"):
        G.conv2d(x, w, activation="gelu")
    with pytest.raises(TypeError, match="weight must be a torch.Tensor"):
        G.conv2d(x, w.numpy())
    with pytest.raises(ValueError, match="padding"):
        G.max_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match="batch index"):
        G.roi_align(x, torch.tensor([[3, 0, 0, 2, 2.0]], dtype=torch.float64), 2)
    with pytest.raises(TypeError, match="floating dtype"):
        G.conv2d(x.long(), w.long())


@pytest.mark.parametrize("call", [
    lambda a: G.max_pool2d(a, 2), lambda a: G.avg_pool2d(a, 2), lambda a: G.lp_pool2d(a, 2, 2),
    lambda a: G.adaptive_avg_pool2d(a, 2), lambda a: G.adaptive_max_pool2d(a, 2),
    lambda a: G.global_avg_pool2d(a), lambda a: G.global_max_pool2d(a),
    lambda a: G.spatial_pyramid_pool2d(a),
    lambda a: G.max_unpool2d(a, torch.zeros(1, 1, 2, 2, dtype=torch.int64), 2),
    lambda a: G.roi_align(a, [torch.zeros(0, 4, dtype=torch.float64)], 2),
    lambda a: G.roi_pool(a, [torch.zeros(0, 4, dtype=torch.float64)], 2)])
@pytest.mark.parametrize("given", [None, np.zeros((1, 1, 4, 4)), [[1.0]]],
                         ids=["None", "ndarray", "list"])
def test_an_input_that_is_not_a_tensor_is_a_type_error(call, given):
    with pytest.raises(TypeError, match="input must be a torch.Tensor|no tensor given"):
        call(given)


def test_results_do_not_alias_inputs():
    x = randn(1, 2, 4, 4)
    y = G.avg_pool2d(x, 1)
    y.add_(1)
    assert_close(x, randn(1, 2, 4, 4), torch.float64)


def test_the_autograd_function_runs_only_where_a_backward_can_come(monkeypatch):
    """gpuconv.torch calls a Function's forward directly where autograd cannot ask for a
    backward (grad mode off, or no input requiring grad): the same values, no graph node; with
    an input requiring grad, the Function records its node."""
    from gpuconv.torch import _autograd
    applied = []
    real = _autograd.apply

    def spy(function, *args):
        out = real(function, *args)
        applied.append(getattr(out, "grad_fn", None) is not None)
        return out
    monkeypatch.setattr("gpuconv.torch.conv.apply", spy)
    monkeypatch.setattr("gpuconv.torch.pool.apply", spy)
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    want = F.conv2d(x, w, padding=1)
    with torch.no_grad():
        torch.testing.assert_close(G.conv2d(x, w.requires_grad_(), padding=1), want)
    torch.testing.assert_close(G.conv2d(x, w.detach(), padding=1), want)
    values, indices = G.max_pool2d(x, 3, 2, 1, return_indices=True)
    torch.testing.assert_close(values, F.max_pool2d(x, 3, 2, 1))
    assert applied == [False, False, False]
    y = G.conv2d(x, w.requires_grad_(), padding=1)
    assert applied[-1] and y.requires_grad
    y.sum().backward()
    torch.testing.assert_close(w.grad, torch.nn.grad.conv2d_weight(x, w.shape, torch.ones_like(y),
                                                                   padding=1))


@pytest.mark.parametrize("name", ["max_pool2d", "adaptive_max_pool2d"])
def test_max_pools_write_indices_only_for_a_backward_or_the_caller(name, monkeypatch):
    """In inference (no grad wanted) a max pool without return_indices computes its values
    alone; where a backward may come, or the caller asks, the indices are computed too."""
    import gpuconv
    asked = []
    real = getattr(gpuconv, name)

    def spy(*args, return_indices=False, **kwargs):
        asked.append(return_indices)
        return real(*args, return_indices=return_indices, **kwargs)
    monkeypatch.setattr(gpuconv, name, spy)
    args = (3, 2, 1) if name == "max_pool2d" else ((3, 4),)
    x = randn(2, 3, 7, 8)
    with torch.no_grad():
        assert_close(getattr(G, name)(x, *args), getattr(F, name)(x, *args), torch.float64)
        values, indices = getattr(G, name)(x, *args, return_indices=True)
    leaf = x.clone().requires_grad_()
    y = getattr(G, name)(leaf, *args)
    y.sum().backward()
    expected_leaf = x.clone().requires_grad_()
    getattr(F, name)(expected_leaf, *args).sum().backward()
    assert asked == [False, True, True]
    assert torch.equal(indices, getattr(F, name)(x, *args, return_indices=True)[1])
    assert_close(leaf.grad, expected_leaf.grad, torch.float64)
