"""The layer formulas of gpuconv.utils, hand-computed on real layers."""
import numpy as np
import pytest

import gpuconv

# ResNet-50, stage 2, the 3x3 convolution of a bottleneck block, batch 32.
RESNET_3X3 = dict(input_shape=(32, 64, 56, 56), weight_shape=(64, 64, 3, 3), padding=1)
# ResNet-50's stem: 7x7, stride 2, padding 3 on 224x224 RGB images.
RESNET_STEM = dict(input_shape=(32, 3, 224, 224), weight_shape=(64, 3, 7, 7), stride=2, padding=3)
# MobileNet v1's first depthwise layer.
MOBILENET_DW = dict(input_shape=(1, 32, 112, 112), weight_shape=(32, 1, 3, 3), padding=1, groups=32)


def test_output_shapes():
    assert gpuconv.conv2d_output_shape(**RESNET_3X3) == (32, 64, 56, 56)
    assert gpuconv.conv2d_output_shape(**RESNET_STEM) == (32, 64, 112, 112)   # (224 + 6 - 6 - 1)//2 + 1
    assert gpuconv.conv2d_output_shape(**MOBILENET_DW) == (1, 32, 112, 112)
    assert gpuconv.conv2d_output_shape((32, 224, 224, 3), (64, 3, 7, 7), stride=2, padding=3,
                                       data_format="NHWC") == (32, 112, 112, 64)
    assert gpuconv.conv2d_output_shape((1, 3, 225, 225), (8, 3, 3, 3), stride=2, padding="same") == (1, 8, 113, 113)
    assert gpuconv.conv2d_output_shape((1, 3, 225, 225), (8, 3, 3, 3), stride=2) == (1, 8, 112, 112)
    assert gpuconv.conv2d_output_shape((1, 3, 10, 10), (8, 3, 3, 3), dilation=2) == (1, 8, 6, 6)


def test_output_shape_agrees_with_conv2d():
    x, w = np.zeros((2, 4, 9, 7)), np.zeros((6, 2, 3, 2))
    kwargs = dict(stride=(2, 1), padding=((0, 2), (1, 1)), dilation=(1, 2), groups=2)
    assert gpuconv.conv2d_output_shape(x.shape, w.shape, **kwargs) == gpuconv.conv2d(x, w, **kwargs).shape


def test_transposed_output_shapes():
    # DCGAN generator: 4x4 -> 8x8 with a 4x4 kernel, stride 2, padding 1: (4-1)*2 - 2 + 3 + 1 = 8.
    assert gpuconv.conv_transpose2d_output_shape((64, 1024, 4, 4), (1024, 512, 4, 4),
                                                 stride=2, padding=1) == (64, 512, 8, 8)
    assert gpuconv.conv_transpose2d_output_shape((1, 4, 5, 5), (4, 3, 3, 3), stride=2, padding=1,
                                                 output_padding=1, groups=2) == (1, 6, 10, 10)
    assert gpuconv.conv_transpose2d_output_shape((1, 4, 5, 5), (4, 3, 3, 3), stride=2, padding=1,
                                                 output_size=(10, 9)) == (1, 3, 10, 9)


def test_flops():
    assert gpuconv.conv2d_flops(**RESNET_3X3) == 2 * 32 * 64 * 56 * 56 * 64 * 9 == 7_398_752_256
    assert gpuconv.conv2d_flops(**RESNET_STEM) == 2 * 32 * 64 * 112 * 112 * 3 * 49
    assert gpuconv.conv2d_flops(**MOBILENET_DW) == 2 * 32 * 112 * 112 * 9


def test_params():
    assert gpuconv.conv2d_params((64, 64, 3, 3)) == 64 * 64 * 9 + 64 == 36_928
    assert gpuconv.conv2d_params((64, 3, 7, 7), bias=False) == 9_408
    assert gpuconv.conv2d_params((32, 1, 3, 3)) == 32 * 9 + 32


def test_bytes():
    activations = 32 * 64 * 56 * 56
    assert gpuconv.conv2d_bytes(**RESNET_3X3) == (activations + 36_864 + activations) * 4
    assert gpuconv.conv2d_bytes(**RESNET_STEM, itemsize=2, bias=True) == \
        (32 * 3 * 224 * 224 + 9_408 + 64 + 32 * 64 * 112 * 112) * 2


@pytest.mark.parametrize("call, error, match", [
    (lambda: gpuconv.conv2d_params((64, 64, 3)), ValueError, "weight_shape"),
    (lambda: gpuconv.conv2d_params((64, 64, 3, 0)), ValueError, "weight_shape"),
    (lambda: gpuconv.conv2d_params((64, 64, 3, 3), bias="yes"), TypeError, "bias"),
    (lambda: gpuconv.conv2d_bytes(**RESNET_3X3, itemsize=0), ValueError, "itemsize"),
    (lambda: gpuconv.conv2d_bytes(**RESNET_3X3, itemsize=2.0), TypeError, "itemsize"),
    (lambda: gpuconv.conv2d_flops((1, 3, 2, 2), (8, 3, 3, 3)), ValueError, "input_shape is too small"),
    (lambda: gpuconv.conv2d_flops((1, 3, 8, 8), (8, 4, 3, 3)), ValueError, "weight_shape"),
    (lambda: gpuconv.conv2d_flops(**RESNET_3X3, stride=0), ValueError, "stride"),
    (lambda: gpuconv.conv2d_output_shape((1, 8, 8), (8, 3, 3, 3)), ValueError, "input_shape"),
    (lambda: gpuconv.conv2d_output_shape(**RESNET_3X3, data_format="HWC"), ValueError, "data_format"),
    (lambda: gpuconv.conv2d_output_shape(**RESNET_3X3, groups=3), ValueError, "groups"),
    (lambda: gpuconv.conv_transpose2d_output_shape((1, 4, 5, 5), (4, 3, 3, 3), stride=2,
                                                   output_padding=2), ValueError, "output_padding"),
])
def test_invalid_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("shape, kwargs", [
    ((2, 3, 7, 8), dict(kernel_size=3, stride=2, padding=1)),
    ((1, 4, 6, 6), dict(kernel_size=3, stride=2, ceil_mode=True)),
    ((1, 4, 5, 5), dict(kernel_size=2, stride=2, padding=1, ceil_mode=True)),
    ((3, 2, 9, 5), dict(kernel_size=(3, 2), stride=(2, 1), dilation=(2, 1))),
])
def test_pool2d_output_shape_is_the_shape_max_pool2d_returns(shape, kwargs):
    x = np.zeros(shape, np.float32)
    assert gpuconv.pool2d_output_shape(shape, **kwargs) == gpuconv.max_pool2d(x, **kwargs).shape
    nhwc = (shape[0], shape[2], shape[3], shape[1])
    assert gpuconv.pool2d_output_shape(nhwc, data_format="NHWC", **kwargs) == \
        gpuconv.max_pool2d(np.zeros(nhwc, np.float32), data_format="NHWC", **kwargs).shape


def test_pool2d_output_shape_by_hand():
    # 112 -> (112 + 2 - 3) // 2 + 1 = 56 (ResNet-50's stem max pool)
    assert gpuconv.pool2d_output_shape((32, 64, 112, 112), 3, 2, 1) == (32, 64, 56, 56)
    # ceil_mode: (6 - 3 + 1) // 2 + 1 = 3, last window starts at 4 < 6: kept
    assert gpuconv.pool2d_output_shape((1, 1, 6, 6), 3, 2, ceil_mode=True) == (1, 1, 3, 3)
    with pytest.raises(ValueError, match="padding"):
        gpuconv.pool2d_output_shape((1, 1, 6, 6), 2, padding=2)
