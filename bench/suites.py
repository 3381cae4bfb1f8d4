"""Benchmark suites built from ``bench/shapes.json`` (transcribed from the team's shape list).

A *layer* is one entry of the list (a shape with its name, source and count in its network); a
*case* is a layer in one direction, dtype and layout. ``--quick`` keeps, per suite, the layer
that weighs most in each family of that suite (among those ``--layers`` selected). Without a GPU the shapes are *reduced*
(``CPU_QUICK``/``CPU_FULL``): batch, spatial size and channels are capped while the filter,
stride, padding, dilation and the grouping structure are kept, so a case still exercises the
same kernel paths; the original shape stays attached for the record.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from .geometry import ConvShape, PoolShape, RoiShape, pair
from .roofline import CONV_DIRECTIONS, DATA_DIRECTIONS, conv_flops_formula, pool_bytes

SHAPES_PATH = Path(__file__).with_name("shapes.json")
LAYOUTS = ("NCHW", "NHWC")
DTYPES = ("float32", "float16", "float64", "bfloat16")

# Named groups of suites for --suite.
SUITE_GROUPS = {
    "convnet": ("convnet_benchmarks_layerwise", "alexnet_owt", "overfeat_fast", "vgg_a", "googlenet_v1"),
    "resnet50": ("resnet50_b32", "resnet50_b1"),
    "mobilenetv2": ("mobilenetv2_b32", "mobilenetv2_b1"),
    "depthwise": ("convnext_t_dw7", "replknet31b_dw"),
    "grouped": ("resnext50_32x4d_grouped_b32",),
    "dilated": ("deeplabv3_dilated",),
}


@dataclass(frozen=True)
class Layer:
    suite: str
    name: str
    source: str
    count: int
    shape: ConvShape | PoolShape | RoiShape
    original: ConvShape | PoolShape | RoiShape | None = None   # before reduction, if reduced

    @property
    def op(self) -> str:
        return {ConvShape: "conv", PoolShape: "pool", RoiShape: "roi"}[type(self.shape)]

    @property
    def family(self) -> str:
        """perf.md's target families: conv.dense, conv.depthwise, pool.max, roi.align, ..."""
        return f"{self.op}.{self.shape.kind}"

    @property
    def directions(self) -> tuple[str, ...]:
        return CONV_DIRECTIONS if self.op == "conv" else DATA_DIRECTIONS

    @property
    def layouts(self) -> tuple[str, ...]:
        # api.md: data_format="NHWC" is for conv2d and pooling (and their gradients).
        return LAYOUTS if self.op in ("conv", "pool") else ("NCHW",)

    def weight(self) -> float:
        """How much this layer weighs in its network (picks the --quick representative)."""
        shape = self.original or self.shape
        if isinstance(shape, ConvShape):
            return self.count * conv_flops_formula(shape)
        if isinstance(shape, PoolShape):
            return pool_bytes(shape, "forward", 4)
        return shape.rois * shape.C * shape.output_size[0] * shape.output_size[1]


@dataclass(frozen=True)
class Case:
    layer: Layer
    direction: str
    dtype: str
    layout: str

    @property
    def id(self) -> str:
        return f"{self.layer.suite}/{self.layer.name}/{self.direction}/{self.dtype}/{self.layout}"


@dataclass(frozen=True)
class Reduction:
    """Caps applied to every shape when the suite runs on the CPU."""
    batch: int
    spatial: int
    channels: int
    groups: int
    rois: int


CPU_QUICK = Reduction(batch=1, spatial=12, channels=8, groups=4, rois=4)
CPU_FULL = Reduction(batch=2, spatial=24, channels=16, groups=8, rois=16)


@lru_cache(maxsize=None)
def load_shapes(path: str = str(SHAPES_PATH)) -> dict:
    with open(path) as f:
        return json.load(f)


def suite_names() -> list[str]:
    return list(load_shapes()["suites"])


def resolve_suites(requested: list[str] | None) -> list[str]:
    """Suite names from names or group names (SUITE_GROUPS); None means every suite."""
    known = suite_names()
    if not requested:
        return known
    out: list[str] = []
    for name in requested:
        expanded = SUITE_GROUPS.get(name, (name,))
        for suite in expanded:
            if suite not in known:
                choices = ", ".join(known + list(SUITE_GROUPS))
                raise ValueError(f"suite must be one of {choices}; got {name!r}")
            if suite not in out:
                out.append(suite)
    return out


def parse_entry(entry: dict):
    """One shapes.json entry -> ConvShape | PoolShape | RoiShape."""
    op = entry.get("op")
    if op is None:
        return ConvShape(entry["N"], entry["C"], entry["H"], entry["W"], entry["K"], entry["R"],
                         entry["S"], pair(entry["stride"]), pair(entry["pad"]),
                         pair(entry["dilation"]), int(entry["groups"]))
    if op.startswith("roi_"):
        return RoiShape(op, entry["N"], entry["C"], entry["H"], entry["W"], entry["rois"],
                        pair(entry["output_size"]), float(entry["spatial_scale"]),
                        int(entry.get("sampling_ratio", -1)), bool(entry.get("aligned", False)))
    kernel = entry.get("kernel")
    stride = entry.get("stride")
    out = entry.get("output_size")
    return PoolShape(op, entry["N"], entry["C"], entry["H"], entry["W"],
                     None if kernel is None else pair(kernel),
                     None if stride is None else pair(stride),
                     pair(entry.get("pad", 0)), bool(entry.get("ceil_mode", False)),
                     None if out is None else pair(out))


def suite_layers(suite: str) -> list[Layer]:
    entries = load_shapes()["suites"][suite]
    return [Layer(suite, e["name"], e.get("source", ""), int(e.get("count", 1)), parse_entry(e))
            for e in entries]


def quick_layers(layers: list[Layer]) -> list[Layer]:
    """Per family present, the layer that weighs most; in the suite's order."""
    best: dict[str, Layer] = {}
    for layer in layers:
        if layer.family not in best or layer.weight() > best[layer.family].weight():
            best[layer.family] = layer
    keep = set(id(layer) for layer in best.values())
    return [layer for layer in layers if id(layer) in keep]


# ---- reduction for CPU runs ---------------------------------------------------------------

def _cap_spatial(size: int, cap: int, needed: int) -> int:
    return max(min(size, cap), needed, 1)


def reduce_conv(shape: ConvShape, r: Reduction) -> ConvShape:
    if shape.kind == "depthwise":
        multiplier = shape.K // shape.C
        c = min(shape.C, r.channels)
        groups, k = c, c * multiplier
    elif shape.kind == "grouped":
        groups = min(shape.groups, r.groups)
        per_group = max(1, r.channels // groups)
        c = groups * min(shape.C // shape.groups, per_group)
        k = groups * min(shape.K // shape.groups, per_group)
    else:
        groups, c, k = 1, min(shape.C, r.channels), min(shape.K, r.channels)
    # The input must still cover one dilated filter extent beyond the padding.
    need_h = shape.dilation[0] * (shape.R - 1) + 1 - 2 * shape.pad[0]
    need_w = shape.dilation[1] * (shape.S - 1) + 1 - 2 * shape.pad[1]
    return replace(shape, N=min(shape.N, r.batch), C=c, K=k, groups=groups,
                   H=_cap_spatial(shape.H, r.spatial, need_h),
                   W=_cap_spatial(shape.W, r.spatial, need_w))


def reduce_pool(shape: PoolShape, r: Reduction) -> PoolShape:
    need_h = need_w = 1
    if shape.kernel is not None:
        need_h = shape.kernel[0] - 2 * shape.pad[0]
        need_w = shape.kernel[1] - 2 * shape.pad[1]
    if shape.output_size is not None:
        need_h, need_w = max(need_h, shape.output_size[0]), max(need_w, shape.output_size[1])
    return replace(shape, N=min(shape.N, r.batch), C=min(shape.C, r.channels),
                   H=_cap_spatial(shape.H, r.spatial, need_h),
                   W=_cap_spatial(shape.W, r.spatial, need_w))


def reduce_roi(shape: RoiShape, r: Reduction) -> RoiShape:
    # Box sizes follow the image size (H / spatial_scale), so a smaller map keeps its boxes
    # in proportion.
    return replace(shape, N=min(shape.N, r.batch), C=min(shape.C, r.channels),
                   H=min(shape.H, 2 * r.spatial), W=min(shape.W, 2 * r.spatial),
                   rois=min(shape.rois, r.rois))


def reduce_layer(layer: Layer, r: Reduction) -> Layer:
    reducer = {ConvShape: reduce_conv, PoolShape: reduce_pool, RoiShape: reduce_roi}[type(layer.shape)]
    return replace(layer, shape=reducer(layer.shape, r), original=layer.shape)


# ---- selection ----------------------------------------------------------------------------

def build_cases(suites: list[str] | None = None, *, quick: bool = False,
                directions: tuple[str, ...] = ("forward",), dtypes: tuple[str, ...] = ("float32",),
                layouts: tuple[str, ...] = ("NCHW",), reduction: Reduction | None = None,
                layer_pattern: str | None = None) -> list[Case]:
    """Every case of the selected suites, in suite order, then direction, dtype, layout.

    A direction or layout that an op does not have (a weight gradient of pooling, NHWC for
    ROI) is left out.
    """
    pattern = re.compile(layer_pattern) if layer_pattern else None
    cases: list[Case] = []
    for suite in resolve_suites(suites):
        layers = suite_layers(suite)
        if pattern is not None:
            layers = [lay for lay in layers if pattern.search(f"{lay.suite}/{lay.name}")]
        if quick:
            layers = quick_layers(layers)
        if reduction is not None:
            layers = [reduce_layer(lay, reduction) for lay in layers]
        for layer in layers:
            for direction in directions:
                if direction not in layer.directions:
                    continue
                for dtype in dtypes:
                    for layout in layouts:
                        if layout not in layer.layouts:
                            continue
                        cases.append(Case(layer, direction, dtype, layout))
    return cases
