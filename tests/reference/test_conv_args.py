"""Argument validation of the convolution family: every invalid input is a TypeError or a
ValueError whose message names the argument; and the ConvGeometry record that valid arguments
produce."""
import numpy as np
import pytest

import gpuconv
from gpuconv import grad
from gpuconv.conv.geometry import (ConvGeometry, conv2d_geometry, conv_transpose2d_geometry,
                                   is_channel_slice_of_contiguous, needs_int64)

X = np.zeros((2, 4, 6, 6), np.float32)
W = np.zeros((6, 4, 3, 3), np.float32)
B = np.zeros(6, np.float32)
OUT = (2, 6, 4, 4)   # conv2d(X, W)'s shape


def conv(**kwargs):
    args = dict(x=X, weight=W)
    args.update(kwargs)
    return lambda: gpuconv.conv2d(**args)


def transpose(**kwargs):
    args = dict(x=np.zeros((1, 4, 3, 3)), weight=np.zeros((4, 2, 3, 3)), stride=2)
    args.update(kwargs)
    return lambda: gpuconv.conv_transpose2d(**args)


CONV2D_ERRORS = [
    # arrays
    (conv(x=X.tolist()), TypeError, "x"),
    (conv(x=X.astype(np.int32)), TypeError, "x"),
    (conv(x=X.astype(np.complex64)), TypeError, "x"),
    (conv(weight=W.astype(np.float64)), TypeError, "weight"),
    (conv(x=X[0]), ValueError, "x must be 4-D"),
    (conv(weight=W[0]), ValueError, "weight must be 4-D"),
    (conv(bias=B.astype(np.float16)), TypeError, "bias"),
    (conv(bias=B[None]), ValueError, "bias must be 1-D"),
    (conv(bias=np.zeros(5, np.float32)), ValueError, "bias must have shape"),
    (conv(residual=np.zeros((2, 6, 4, 5), np.float32)), ValueError, "residual"),
    (conv(residual=np.zeros(OUT, np.float64)), TypeError, "residual"),
    (conv(residual=np.zeros((2, 4, 4, 6), np.float32), data_format="NCHW"), ValueError, "residual"),
    # stride, dilation, padding
    (conv(stride=0), ValueError, "stride"),
    (conv(stride=1.5), TypeError, "stride"),
    (conv(stride=True), TypeError, "stride"),
    (conv(stride=(1, 2, 3)), ValueError, "stride"),
    (conv(stride=(1, 0)), ValueError, r"stride\[1\]"),
    (conv(dilation=0), ValueError, "dilation"),
    (conv(dilation="2"), TypeError, "dilation"),
    (conv(padding=-1), ValueError, "padding"),
    (conv(padding=(1, -1)), ValueError, "padding"),
    (conv(padding=((1, 2), (0, -1))), ValueError, "padding"),
    (conv(padding=((1, 2), 3)), TypeError, "padding"),
    (conv(padding="full"), ValueError, "padding"),
    (conv(padding="SAME"), ValueError, "padding"),
    (conv(padding=None), TypeError, "padding"),
    # groups and channels
    (conv(groups=0), ValueError, "groups"),
    (conv(groups=3), ValueError, "groups"),                   # does not divide C = 4
    (conv(weight=np.zeros((5, 2, 3, 3), np.float32), groups=2), ValueError, "groups"),  # nor K = 5
    (conv(weight=np.zeros((6, 2, 3, 3), np.float32)), ValueError, "weight"),  # C/groups mismatch
    (conv(groups=2), ValueError, "weight"),
    (conv(groups=2.0), TypeError, "groups"),
    # sizes
    (conv(x=np.zeros((1, 4, 2, 6), np.float32)), ValueError, "too small"),
    (conv(padding=1, dilation=4), ValueError, "too small"),
    (conv(weight=np.zeros((0, 4, 3, 3), np.float32)), ValueError, "weight"),
    (conv(x=np.zeros((1, 0, 6, 6), np.float32), weight=np.zeros((6, 0, 3, 3), np.float32)), ValueError, "x"),
    # options
    (conv(activation="gelu"), ValueError, "activation"),
    (conv(activation="ReLU"), ValueError, "activation"),
    (conv(algorithm="winograd"), ValueError, "algorithm"),
    (conv(algorithm=None), ValueError, "algorithm"),
    (conv(data_format="NCWH"), ValueError, "data_format"),
    (conv(data_format="NHWC"), ValueError, "weight"),        # X read as NHWC has 6 channels
    # out
    (conv(out=np.zeros((2, 6, 4, 5), np.float32)), ValueError, "out"),
    (conv(out=np.zeros(OUT, np.float64)), TypeError, "out"),
    (conv(out=np.zeros(OUT, np.float32).tolist()), TypeError, "out"),
    (conv(out=np.zeros((2, 6, 4, 8), np.float32)[..., ::2]), ValueError, "out must be C-contiguous"),
    (conv(out=np.zeros((2, 6, 4, 4), np.float32, order="F")), ValueError, "out must be C-contiguous"),
    (conv(out=np.zeros((2, 4, 4, 6), np.float32).transpose(0, 3, 1, 2)), ValueError, "out"),
    (conv(out=np.broadcast_to(np.zeros((1, 1, 1, 1), np.float32), OUT)), ValueError, "out"),
    (conv(out=np.zeros((2, 4, 4, 12), np.float32)[..., ::2], x=np.zeros((2, 6, 6, 4), np.float32),
          data_format="NHWC"), ValueError, r"out\[\.\.\., c0:c1\]"),   # (a channel slice is fine)
]


@pytest.mark.parametrize("call, error, match", CONV2D_ERRORS)
def test_conv2d_rejects(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_out_must_be_writeable():
    out = np.zeros(OUT, np.float32)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out must be writeable"):
        gpuconv.conv2d(X, W, out=out)


def test_out_must_not_overlap_x():
    size = int(np.prod(OUT))
    memory = np.zeros(X.size + size, np.float32)
    x = memory[:X.size].reshape(X.shape)
    out = memory[X.size - 1:X.size - 1 + size].reshape(OUT)   # shares one element with x
    with pytest.raises(ValueError, match="out must not overlap x"):
        gpuconv.conv2d(x, W, out=out)


def test_out_must_not_be_the_residual():
    # A kernel may write partial sums into out before its epilogue reads the residual.
    residual = np.zeros(OUT, np.float32)
    with pytest.raises(ValueError, match="out must not overlap residual"):
        gpuconv.conv2d(X, W, residual=residual, out=residual)


TRANSPOSE_ERRORS = [
    (transpose(output_padding=2), ValueError, "output_padding"),          # >= stride 2 and dilation 1
    (transpose(stride=1, dilation=2, output_padding=(2, 0)), ValueError, "output_padding"),
    (transpose(output_padding=-1), ValueError, "output_padding"),
    (transpose(padding="same"), TypeError, "padding"),   # as torch: no string forms
    (transpose(padding=-1), ValueError, "padding"),
    (transpose(padding=9), ValueError, "padding"),                        # empty output
    (transpose(stride=0), ValueError, "stride"),
    (transpose(dilation=(1, 0)), ValueError, "dilation"),
    (transpose(groups=3), ValueError, "groups"),
    (transpose(weight=np.zeros((3, 2, 3, 3))), ValueError, "weight"),
    (transpose(weight=np.zeros((4, 2, 3))), ValueError, "weight"),
    (transpose(bias=np.zeros(3)), ValueError, "bias"),
    (transpose(bias=np.zeros(2), groups=2), ValueError, "bias"),           # K_out = 2 * 2
    (transpose(bias=np.zeros(2, np.float32)), TypeError, "bias"),
    (transpose(output_size=(6, 7)), ValueError, "output_size"),           # valid 7..8
    (transpose(output_size=(9, 7)), ValueError, "output_size"),
    (transpose(output_size=(7,)), ValueError, "output_size"),
    (transpose(output_size=7), TypeError, "output_size"),
    (transpose(output_size=(7.0, 7)), TypeError, "output_size"),
]


@pytest.mark.parametrize("call, error, match", TRANSPOSE_ERRORS)
def test_conv_transpose2d_rejects(call, error, match):
    with pytest.raises(error, match=match):
        call()


G = np.zeros(OUT, np.float32)
GRAD_ERRORS = [
    (lambda: grad.conv2d_input(X.shape, W, G[:, :, :3]), ValueError, "grad_output"),
    (lambda: grad.conv2d_input(X.shape, W, G, stride=2), ValueError, "grad_output"),
    (lambda: grad.conv2d_input(X.shape[:3], W, G), ValueError, "input_shape"),
    (lambda: grad.conv2d_input(X, W, G), TypeError, "input_shape"),
    (lambda: grad.conv2d_input((2, 4, 6, -6), W, G), ValueError, "input_shape"),
    (lambda: grad.conv2d_input(X.shape, W.astype(np.float64), G), TypeError, "weight"),
    (lambda: grad.conv2d_input(X.shape, W, G, deterministic="yes"), TypeError, "deterministic"),
    (lambda: grad.conv2d_input(X.shape, W, G, algorithm="fft"), ValueError, "algorithm"),
    (lambda: grad.conv2d_input(X.shape, W, G, data_format="CHWN"), ValueError, "data_format"),
    (lambda: grad.conv2d_weight(X, (6, 4, 3), G), ValueError, "weight_shape"),
    (lambda: grad.conv2d_weight(X, (6, 4, 3, 0), G), ValueError, "weight_shape"),
    (lambda: grad.conv2d_weight(X, W.shape, G, padding=1), ValueError, "grad_output"),
    (lambda: grad.conv2d_weight(X, W.shape, G.astype(np.float16)), TypeError, "grad_output"),
    (lambda: grad.conv2d_weight(X, W.shape, G, deterministic=1), TypeError, "deterministic"),
    (lambda: grad.conv2d_weight(X, W.shape, G, groups=3), ValueError, "groups"),
    (lambda: grad.conv2d_bias(G[0]), ValueError, "grad_output"),
    (lambda: grad.conv2d_bias(G.astype(np.int64)), TypeError, "grad_output"),
    (lambda: grad.conv2d_bias(G, deterministic="no"), TypeError, "deterministic"),
    (lambda: grad.conv2d_bias(G, data_format="nchw"), ValueError, "data_format"),
]


@pytest.mark.parametrize("call, error, match", GRAD_ERRORS)
def test_gradients_reject(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ---------------------------------------------------------------------------------------------
# the geometry record


def test_geometry_of_a_strided_grouped_dilated_conv():
    g = conv2d_geometry((8, 6, 17, 20), (9, 2, 3, 5), stride=(2, 3), padding=((1, 2), (0, 3)),
                        dilation=(2, 1), groups=3)
    assert g == ConvGeometry(N=8, C=6, H=17, W=20, K=9, R=3, S=5, P=(17 + 3 - 4 - 1) // 2 + 1,
                             Q=(20 + 3 - 4 - 1) // 3 + 1, pad_top=1, pad_bottom=2, pad_left=0,
                             pad_right=3, stride_h=2, stride_w=3, dil_h=2, dil_w=1, groups=3)
    assert (g.C_per_group, g.K_per_group) == (2, 3)
    assert (g.gemm_m, g.gemm_n, g.gemm_k) == (8 * 8 * 7, 9, 2 * 3 * 5)
    assert g.input_shape == (8, 6, 17, 20) and g.output_shape == (8, 9, 8, 7)
    assert g.weight_shape == (9, 2, 3, 5)


@pytest.mark.parametrize("padding, pads", [
    (2, (2, 2, 2, 2)), ((1, 3), (1, 1, 3, 3)), ([[0, 1], [2, 3]], (0, 1, 2, 3)), ("valid", (0, 0, 0, 0)),
    # H: 6 rows out need (6 - 1)*2 + 4 - 11 = 3 rows of padding, the odd one last; W: none.
    ("same", (1, 2, 0, 0)),
])
def test_padding_forms(padding, pads):
    g = conv2d_geometry((1, 1, 11, 10), (1, 1, 4, 2), stride=2, padding=padding)
    assert (g.pad_top, g.pad_bottom, g.pad_left, g.pad_right) == pads


def test_transpose_geometry_is_the_equivalent_forward_conv():
    g = conv_transpose2d_geometry((2, 6, 5, 4), (6, 4, 3, 2), stride=(2, 3), padding=(1, 0),
                                  output_padding=(1, 2), groups=2, dilation=1)
    H_out, W_out = (5 - 1) * 2 - 2 + 2 + 1 + 1, (4 - 1) * 3 + 1 + 2 + 1
    assert g.input_shape == (2, 8, H_out, W_out)     # the transposed conv's output
    assert g.output_shape == (2, 6, 5, 4)            # its input
    assert g.weight_shape == (6, 4, 3, 2)            # its weight, as given
    assert (g.pad_top, g.pad_bottom, g.pad_left, g.pad_right) == (1, 1, 0, 0)
    assert (g.output_padding_h, g.output_padding_w, g.groups) == (1, 2, 2)


def test_transpose_geometry_from_output_size():
    g = conv_transpose2d_geometry((1, 2, 3, 3), (2, 1, 3, 3), stride=3, padding=1, output_size=(8, 9))
    assert (g.H, g.W, g.output_padding_h, g.output_padding_w) == (8, 9, 1, 2)


def test_needs_int64():
    assert not needs_int64(conv2d_geometry((32, 256, 56, 56), (256, 256, 3, 3), padding=1))
    assert needs_int64(conv2d_geometry((1, 1, 46341, 46341), (1, 1, 1, 1)))       # input >= 2**31
    assert needs_int64(conv2d_geometry((2 ** 16, 32, 32, 32), (32, 32, 1, 1)))    # 2**31 exactly
    assert not needs_int64(conv2d_geometry((2 ** 16 - 1, 32, 32, 32), (32, 32, 1, 1)))
    assert needs_int64(conv2d_geometry((1, 4, 8, 8), (4, 4, 3, 3)), extra_elements=(2 ** 31,))


def test_channel_slice_detection():
    buffer = np.zeros((3, 10, 4, 5), np.float32)
    assert is_channel_slice_of_contiguous(buffer)
    assert is_channel_slice_of_contiguous(buffer[:, 2:6])
    assert not is_channel_slice_of_contiguous(buffer[:, ::2])
    assert not is_channel_slice_of_contiguous(buffer[:, :, 1:3])
    assert not is_channel_slice_of_contiguous(buffer[::-1])
