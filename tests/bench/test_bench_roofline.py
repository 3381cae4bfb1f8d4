"""FLOP / byte / roofline arithmetic of the bench, against hand-computed cases of the shape list."""
import math

import numpy as np
import pytest

from bench import roofline as rl
from bench.geometry import ConvShape, PoolShape, RoiShape
from bench.suites import suite_layers, suite_names


def layer(suite, name):
    return next(lay for lay in suite_layers(suite) if lay.name == name)


# ---- convolution --------------------------------------------------------------------------

def test_resnet50_3x3_64_at_56_batch32():
    s = layer("resnet50_b32", "l1.conv2(3x3)").shape
    assert (s.N, s.C, s.H, s.K, s.R, s.P, s.Q) == (32, 64, 56, 64, 3, 56, 56)
    flops = 2 * 32 * 64 * 56 * 56 * 64 * 9
    assert rl.conv_flops(s) == rl.conv_flops_formula(s) == flops == 7_398_752_256
    x = y = 32 * 64 * 56 * 56
    w = 64 * 64 * 3 * 3
    for direction in rl.CONV_DIRECTIONS:
        assert rl.conv_bytes(s, direction, 4) == (x + w + y) * 4 == 51_527_680
    assert rl.conv_bytes(s, "forward", 2) == (x + w + y) * 2


def test_strided_stem_and_alexnet_output_sizes():
    conv1 = layer("resnet50_b32", "conv1").shape            # 7x7 s2 p3 on 224 -> 112
    assert (conv1.P, conv1.Q) == (112, 112)
    assert rl.conv_flops(conv1) == 2 * 32 * 64 * 112 * 112 * 3 * 49
    alex = layer("alexnet_owt", "alexnet.conv1").shape       # 11x11 s4 p2 on 224 -> 55
    assert (alex.P, alex.Q) == (55, 55)
    assert rl.conv_flops(alex) == 2 * 128 * 64 * 55 * 55 * 3 * 121


def test_depthwise_and_grouped_count_channels_per_group():
    dw = layer("mobilenetv2_b1", "b1.1.dw3x3").shape         # C = K = groups = 144
    assert dw.kind == "depthwise"
    assert rl.conv_flops(dw) == 2 * 1 * 144 * 56 * 56 * 1 * 9
    assert rl.conv_bytes(dw, "forward", 2) == (144 * 56 * 56 * 2 + 144 * 9) * 2
    gr = layer("resnext50_32x4d_grouped_b32", "rx50.l1.g3x3").shape   # 32 groups of 4
    assert gr.kind == "grouped"
    assert rl.conv_flops(gr) == 2 * 32 * 128 * 56 * 56 * 4 * 9


def test_dilated_keeps_size_with_matching_padding():
    s = layer("deeplabv3_dilated", "aspp.os16.3x3_rate12").shape
    assert s.kind == "dilated" and (s.P, s.Q) == (33, 33)
    assert rl.conv_flops(s) == 2 * 16 * 256 * 33 * 33 * 2048 * 9


def test_library_counts_agree_with_the_formulas_on_every_conv_layer():
    import gpuconv
    if getattr(gpuconv, "conv2d_flops", None) is None or getattr(gpuconv, "conv2d_bytes", None) is None:
        pytest.skip("gpuconv has no conv2d_flops / conv2d_bytes")
    n = 0
    for suite in suite_names():
        for lay in suite_layers(suite):
            if isinstance(lay.shape, ConvShape):
                assert rl.conv_flops(lay.shape) == rl.conv_flops_formula(lay.shape), lay.name
                assert (rl.conv_bytes(lay.shape, "forward", 4)
                        == rl.conv_bytes_formula(lay.shape, "forward", 4)), lay.name
                n += 1
    assert n > 200


def test_bad_direction_is_a_value_error():
    s = ConvShape(1, 4, 8, 8, 4, 3, 3)
    with pytest.raises(ValueError, match="direction"):
        rl.conv_bytes_formula(s, "backward", 4)
    with pytest.raises(ValueError, match="direction"):
        rl.pool_bytes(PoolShape("avg", 1, 1, 4, 4, (2, 2), (2, 2)), "weight_grad", 4)


# ---- pooling ------------------------------------------------------------------------------

def test_vgg_max_pool_counts():
    s = layer("pooling", "vgga.pool1").shape                 # max 2x2 s2 on 64x64x224x224
    assert (s.P, s.Q) == (112, 112)
    x, y = 64 * 64 * 224 * 224, 64 * 64 * 112 * 112
    assert rl.pool_flops(s) == 64 * 64 * 112 * 112 * 4
    assert rl.pool_bytes(s, "forward", 4) == (x + y) * 4
    # backward: dy + dx, plus where the maxima are: int64 indices (y*8) beat re-reading x (x*4)
    assert rl.pool_bytes(s, "data_grad", 4) == (y + x) * 4 + y * 8


def test_avg_pool_backward_needs_no_indices():
    s = layer("pooling", "avg2x2_s2 (ResNet-D shortcut)").shape
    x, y = 32 * 256 * 56 * 56, 32 * 256 * 28 * 28
    assert rl.pool_bytes(s, "data_grad", 2) == (x + y) * 2


def test_global_max_backward_rereads_x_when_cheaper_than_indices():
    s = layer("pooling", "global max 7x7").shape
    x, y = 32 * 2048 * 49, 32 * 2048
    assert rl.pool_bytes(s, "data_grad", 2) == (x + y) * 2 + min(8 * y, 2 * x)


def test_adaptive_uneven_bins():
    s = layer("pooling", "torchvision.alexnet.avgpool(13->6, uneven bins)").shape
    # bins of 13 -> 6: [0,3) [2,5) [4,7) [6,9) [8,11) [10,13): 6 bins of 3
    assert s.window_elements() == 18 * 18
    assert rl.pool_flops(s) == 128 * 256 * 18 * 18


def test_ceil_mode_output_size_follows_torch():
    # 56 wide, 3x3 stride 2: floor mode 27 windows, ceil mode 28 (the last one starts at 54 < 56)
    assert PoolShape("max", 1, 1, 56, 56, (3, 3), (2, 2)).P == 27
    assert PoolShape("max", 1, 1, 56, 56, (3, 3), (2, 2), ceil_mode=True).P == 28
    # 5 wide, 2x2 stride 2, pad 1, ceil: 4 windows would start at 6 >= 5 + 1: dropped -> 3
    assert PoolShape("max", 1, 1, 5, 5, (2, 2), (2, 2), (1, 1), ceil_mode=True).P == 3


# ---- ROI ----------------------------------------------------------------------------------

def roi(op, **kw):
    base = dict(N=1, C=256, H=50, W=76, rois=1, output_size=(7, 7), spatial_scale=0.25)
    base.update(kw)
    return RoiShape(op, **base)


def test_roi_align_samples_fixed_and_adaptive():
    boxes = np.array([[0, 0, 0, 32, 32], [0, 0, 0, 64, 8]], dtype=float)   # 8x8 and 16x2 on the map
    fixed = roi("roi_align", rois=2, sampling_ratio=2, aligned=True)
    assert rl.roi_align_samples(fixed, boxes) == 2 * 49 * 4
    adaptive = roi("roi_align", rois=2, sampling_ratio=-1, aligned=True)
    # ceil(8/7) * ceil(8/7) = 4 per bin; ceil(2/7) * ceil(16/7) = 1 * 3 = 3 per bin
    assert rl.roi_align_samples(adaptive, boxes) == 49 * (4 + 3)
    assert rl.roi_flops(adaptive, boxes) == 8 * 256 * 49 * 7


def test_roi_align_legacy_mode_makes_boxes_at_least_one_pixel():
    tiny = np.array([[0, 0, 0, 1, 1]], dtype=float)          # 0.25 x 0.25 on the map
    assert rl.roi_align_samples(roi("roi_align", sampling_ratio=-1, aligned=False), tiny) == 49
    assert rl.roi_align_samples(roi("roi_align", sampling_ratio=-1, aligned=True), tiny) == 49


def test_roi_pool_bins():
    # x2 = 27 -> round(6.75) = 7: an 8-pixel box in 7 bins of 8/7: each bin spans 2 pixels
    box = np.array([[0, 0, 0, 27, 27]], dtype=float)
    s = roi("roi_pool")
    assert rl.roi_pool_elements(s, box) == 14 * 14
    assert rl.roi_flops(s, box) == 256 * 196


def test_roi_bytes():
    s = layer("roi", "FPN P4 box head").shape                # roi_align N1 C256 50x76, 1000 rois
    x, y, boxes = 256 * 50 * 76, 1000 * 256 * 49, 1000 * 5
    assert rl.roi_bytes(s, "forward", 4) == (x + y + boxes) * 4
    assert rl.roi_bytes(s, "data_grad", 4) == (x + y + boxes) * 4
    p = layer("roi", "Fast R-CNN VGG16 conv5_3 (600x800 img, 2x128 rois)").shape
    x, y, boxes = 2 * 512 * 38 * 50, 256 * 512 * 49, 256 * 5
    assert rl.roi_bytes(p, "data_grad", 2) == (x + y + boxes) * 2 + min(4 * y, 2 * x)
    with pytest.raises(ValueError, match="boxes"):
        rl.work(s, "forward", 4)


# ---- floor, ratio, geometric mean ---------------------------------------------------------

def test_roofline_floor_is_the_slower_of_compute_and_traffic():
    s = layer("resnet50_b32", "l1.conv2(3x3)").shape
    flops, nbytes = rl.work(s, "forward", 4)
    peak, bw = 50e12, 3e12                                   # an H100-like fp32 roof
    floor = rl.roofline_floor(flops, nbytes, peak, bw)
    assert floor == pytest.approx(7_398_752_256 / 50e12)     # compute-bound: 148 us vs 17 us
    assert rl.roofline_fraction(floor, 2 * floor) == pytest.approx(0.5)
    assert rl.roofline_floor(10, 3e6, 1e12, 1e9) == pytest.approx(3e-3)   # memory-bound
    with pytest.raises(ValueError):
        rl.roofline_floor(1, 1, 0, 1)
    with pytest.raises(ValueError):
        rl.roofline_fraction(1.0, 0.0)


def test_ratio_convention_greater_than_one_means_gpuconv_faster():
    assert rl.speed_ratio(baseline_s=2e-3, gpuconv_s=1e-3) == pytest.approx(2.0)
    assert rl.speed_ratio(baseline_s=1e-3, gpuconv_s=4e-3) == pytest.approx(0.25)
    with pytest.raises(ValueError):
        rl.speed_ratio(0.0, 1.0)


def test_geometric_mean():
    assert rl.geometric_mean([1.0, 4.0]) == pytest.approx(2.0)
    assert rl.geometric_mean([0.5, 2.0, 8.0]) == pytest.approx(2.0)
    assert rl.geometric_mean([3.0]) == pytest.approx(3.0)
    # the geometric mean of ratios is the ratio of geometric means of times
    ours, theirs = [1.0, 2.0, 5.0], [3.0, 1.0, 10.0]
    assert rl.geometric_mean([t / o for t, o in zip(theirs, ours)]) == pytest.approx(
        rl.geometric_mean(theirs) / rl.geometric_mean(ours))
    with pytest.raises(ValueError):
        rl.geometric_mean([])
    with pytest.raises(ValueError):
        rl.geometric_mean([1.0, 0.0])
    assert math.isclose(rl.geometric_mean([1e-3, 1e3]), 1.0)
