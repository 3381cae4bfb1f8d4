"""Loading the transcribed shape list, the suites, --quick selection and the CPU reduction."""
import json

import pytest

from bench import suites as su
from bench.geometry import ConvShape, PoolShape, RoiShape

EXPECTED_SIZES = {
    "convnet_benchmarks_layerwise": 5, "alexnet_owt": 5, "overfeat_fast": 5, "vgg_a": 7,
    "googlenet_v1": 57, "resnet50_b32": 23, "resnet50_b1": 23, "mobilenetv2_b32": 30,
    "mobilenetv2_b1": 30, "convnext_t_dw7": 4, "replknet31b_dw": 4, "deeplabv3_dilated": 18,
    "resnext50_32x4d_grouped_b32": 7, "pooling": 24, "roi": 7,
}


def all_layers():
    return [lay for s in su.suite_names() for lay in su.suite_layers(s)]


def test_the_shape_list_is_part_of_the_package():
    assert su.SHAPES_PATH.parent.name == "bench" and su.SHAPES_PATH.is_file()
    data = json.loads(su.SHAPES_PATH.read_text())
    assert {k: len(v) for k, v in data["suites"].items()} == EXPECTED_SIZES


def test_every_entry_parses_to_a_valid_shape():
    kinds = {ConvShape: 0, PoolShape: 0, RoiShape: 0}
    for lay in all_layers():
        kinds[type(lay.shape)] += 1
        assert lay.shape.P >= 1 if not isinstance(lay.shape, RoiShape) else lay.shape.rois >= 1
    assert kinds == {ConvShape: 218, PoolShape: 24, RoiShape: 7}


def test_families():
    fam = {lay.family for s in ("convnext_t_dw7", "replknet31b_dw") for lay in su.suite_layers(s)}
    assert fam == {"conv.depthwise"}
    assert {lay.family for lay in su.suite_layers("resnext50_32x4d_grouped_b32")} == {"conv.grouped"}
    assert {lay.family for lay in su.suite_layers("deeplabv3_dilated")} == {
        "conv.pointwise", "conv.dilated", "conv.dense"}
    assert {lay.family for lay in su.suite_layers("mobilenetv2_b1")} == {
        "conv.dense", "conv.depthwise", "conv.pointwise"}
    assert {lay.family for lay in su.suite_layers("pooling")} == {
        "pool.max", "pool.avg", "pool.global", "pool.adaptive"}
    assert {lay.family for lay in su.suite_layers("roi")} == {"roi.align", "roi.pool"}


def test_resolve_suites_expands_groups_and_rejects_unknown_names():
    assert su.resolve_suites(None) == su.suite_names()
    assert su.resolve_suites(["resnet50", "pooling", "resnet50_b1"]) == [
        "resnet50_b32", "resnet50_b1", "pooling"]
    with pytest.raises(ValueError, match="suite must be one of"):
        su.resolve_suites(["resnet"])


def test_quick_keeps_the_heaviest_layer_of_each_family():
    quick = su.quick_layers(su.suite_layers("resnet50_b32"))
    assert sorted(lay.family for lay in quick) == ["conv.dense", "conv.pointwise"]
    dense = [lay for lay in su.suite_layers("resnet50_b32") if lay.family == "conv.dense"]
    chosen = next(lay for lay in quick if lay.family == "conv.dense")
    assert chosen.weight() == max(lay.weight() for lay in dense)
    # l3.b2-6.conv2: 5 occurrences of a 3x3 256->256 at 14x14 weigh more than the stem
    assert chosen.name == "l3.b2-6.conv2"


@pytest.mark.parametrize("reduction", [su.CPU_QUICK, su.CPU_FULL])
def test_reduction_caps_sizes_and_keeps_the_kernel_character(reduction):
    for lay in all_layers():
        small = su.reduce_layer(lay, reduction)
        s, o = small.shape, lay.shape
        assert small.original is o and small.family == lay.family, lay.name
        assert s.N <= reduction.batch and s.C <= reduction.channels
        if isinstance(s, ConvShape):
            assert (s.R, s.S, s.stride, s.pad, s.dilation) == (o.R, o.S, o.stride, o.pad, o.dilation)
            assert s.P >= 1 and s.Q >= 1
            assert s.K <= max(reduction.channels, o.K // o.C * reduction.channels)
            if o.kind == "depthwise":
                assert s.groups == s.C
        elif isinstance(s, PoolShape):
            assert (s.op, s.kernel, s.stride, s.pad, s.output_size) == (
                o.op, o.kernel, o.stride, o.pad, o.output_size)
            assert s.P >= 1 and s.H <= max(reduction.spatial, o.output_size[0] if o.output_size else 0)
        else:
            assert s.rois <= reduction.rois and s.output_size == o.output_size


def test_build_cases_filters_directions_and_layouts():
    cases = su.build_cases(["pooling", "roi", "resnet50_b1"], quick=True,
                           directions=("forward", "data_grad", "weight_grad"),
                           dtypes=("float32", "float16"), layouts=("NCHW", "NHWC"))
    ops = {(c.layer.op, c.direction, c.layout) for c in cases}
    assert ("pool", "weight_grad", "NCHW") not in ops and ("roi", "weight_grad", "NCHW") not in ops
    assert ("roi", "forward", "NHWC") not in ops and ("roi", "forward", "NCHW") in ops
    assert ("conv", "weight_grad", "NHWC") in ops and ("pool", "data_grad", "NHWC") in ops
    assert len({c.id for c in cases}) == len(cases)


def test_layer_pattern_is_applied_before_quick():
    cases = su.build_cases(["resnet50_b1"], quick=True, layer_pattern=r"l1\.conv2")
    assert [c.layer.name for c in cases] == ["l1.conv2(3x3)"]
    assert su.build_cases(["roi"], layer_pattern="no such layer") == []
