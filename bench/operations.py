"""The gpuconv side of a case: its random inputs and the public-API call that computes it.

Only the public API is used (api.md): ``gpuconv.conv2d``, ``gpuconv.grad.conv2d_input`` and
``conv2d_weight`` with ``algorithm=``, the pooling and ROI functions and their ``gpuconv.grad``
twins. Functions are looked up at call time, so kernels that land while the team works are
picked up without touching the bench. One exception: roi_pool's backward is timed from the
argmax and rois its forward kept (``gpuconv.roi.api.roi_pool_with_argmax``, what gpuconv.torch's
autograd does), since torchvision's backward op, the baseline, is handed its argmax too (and
scans no rois).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .geometry import ConvShape, PoolShape, RoiShape
from .suites import Case

POOL_FUNCTIONS = {"max": "max_pool2d", "avg": "avg_pool2d", "global_avg": "global_avg_pool2d",
                  "global_max": "global_max_pool2d", "adaptive_avg": "adaptive_avg_pool2d",
                  "adaptive_max": "adaptive_max_pool2d"}


class Unavailable(Exception):
    """gpuconv does not provide this operation (yet)."""


class NotApplicable(Exception):
    """This variant cannot run this case by design (not a failure)."""


def numpy_dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        import ml_dtypes  # noqa: F401  (registers numpy's "bfloat16")
    return np.dtype(name)


def gpuconv_function(path: str) -> Callable:
    """``"conv2d"`` -> gpuconv.conv2d, ``"grad.conv2d_input"`` -> gpuconv.grad.conv2d_input."""
    import gpuconv
    obj: Any = gpuconv
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise Unavailable(f"gpuconv.{path} does not exist yet")
    return obj


def conv_algorithms() -> tuple[str, ...]:
    """"auto" plus every name in gpuconv.conv_algorithms (only "auto" while that is missing)."""
    import gpuconv
    names = tuple(getattr(gpuconv, "conv_algorithms", ()) or ())
    return ("auto",) + tuple(n for n in names if n != "auto")


# Kernel variants the conv launcher exposes beside the algorithm, named "algorithm:variant":
# opt-in with --algorithm, to time the comparisons kernels/conv/NOTES.md asks for (the two
# implicit-GEMM iterators, narrow GEMM tiles against the wide ones only, float16/bfloat16 on
# the CUDA cores against the tensor cores, the three depthwise kernels, the own GEMM vs cuBLAS
# inside im2col, the tiled direct kernel vs v1, Winograd's two output tiles, split-K by its
# model ("split_k", the launcher's default) against never: both through the launcher, so that
# the pair differs in the split alone; the CUDA-core tiles filled by cp.async against through
# registers, float32/float64; the 8-channel tensor-core tiles on 4 warps against 8; Hopper's
# warpgroup tensor cores against mma.sync, channels-last 16-bit forward and both gradients,
# not-applicable elsewhere). Forward only, except implicit_gemm's variants whose options a
# gradient's launcher also takes (GRADIENT_OPTIONS).
CONV_VARIANTS = {
    "implicit_gemm:analytic": ("implicit_gemm", {"iterator": "analytic"}),
    "implicit_gemm:precomputed": ("implicit_gemm", {"iterator": "precomputed"}),
    "implicit_gemm:wide": ("implicit_gemm", {"tile_widths": "wide"}),
    "implicit_gemm:cuda_cores": ("implicit_gemm", {"math": "cuda_cores"}),
    "implicit_gemm:split_k": ("implicit_gemm", {"split_k": "auto"}),
    "implicit_gemm:no_split_k": ("implicit_gemm", {"split_k": 1}),
    "implicit_gemm:cp_async": ("implicit_gemm", {"loads": "cp_async"}),
    "implicit_gemm:registers": ("implicit_gemm", {"loads": "registers"}),
    "implicit_gemm:large_warps": ("implicit_gemm", {"warp_tiles": "large"}),
    "implicit_gemm:small_warps": ("implicit_gemm", {"warp_tiles": "small"}),
    "implicit_gemm:wgmma": ("implicit_gemm", {"math": "wgmma"}),
    "pointwise:wide": ("pointwise", {"tile_widths": "wide"}),
    "pointwise:split_k": ("pointwise", {"split_k": "auto"}),
    "pointwise:no_split_k": ("pointwise", {"split_k": 1}),
    "pointwise:cp_async": ("pointwise", {"loads": "cp_async"}),
    "pointwise:registers": ("pointwise", {"loads": "registers"}),
    "depthwise:direct": ("depthwise", {"depthwise_variant": "direct"}),
    "depthwise:tiled": ("depthwise", {"depthwise_variant": "tiled"}),
    "depthwise:window": ("depthwise", {"depthwise_variant": "window"}),
    "depthwise:vector": ("depthwise", {"depthwise_variant": "vector"}),
    "im2col_gemm:cublas": ("im2col_gemm", {"gemm": "cublas"}),
    "im2col_gemm:wide": ("im2col_gemm", {"tile_widths": "wide"}),
    "direct:v1": ("direct_v1", {}),
    "winograd_nonfused:2": ("winograd_nonfused", {"winograd_tile": 2}),
    "winograd_nonfused:4": ("winograd_nonfused", {"winograd_tile": 4}),
}
# The launcher options of launch_bwd_data.run and launch_bwd_weight.run: implicit_gemm's
# variants made of these alone also run on data_grad / weight_grad cases.
GRADIENT_OPTIONS = {"data_grad": ("math", "loads", "warp_tiles"),
                    "weight_grad": ("math", "warp_tiles")}


def _takes_keyword(fn: Callable, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.name == name or p.kind is p.VAR_KEYWORD for p in params)


# ---- inputs -------------------------------------------------------------------------------

@dataclass
class Inputs:
    """A case's data, NCHW (``*_nchw``, what the baselines get) and in the case's layout."""
    xp: Any
    x_nchw: Any = None
    x: Any = None            # in the case's layout
    w: Any = None            # (K, C/groups, R, S), contiguous: what the NCHW baselines get
    w_layout: Any = None     # the same values as gpuconv gets them (filters_in_layout)
    dy_nchw: Any = None
    dy: Any = None           # in the case's layout
    boxes: Any = None        # (K, 5) in the data dtype, on the data's device
    boxes_host: np.ndarray | None = None


def random_array(xp, shape, dtype: str, seed: int):
    """Standard-normal data (never zeros: perf.md) in the dtype, made on xp's device."""
    if xp is np:
        data = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
    else:
        data = xp.random.default_rng(seed).standard_normal(shape, dtype=xp.float32)
    return data.astype(numpy_dtype(dtype))


def random_boxes(shape: RoiShape, seed: int, huge: bool) -> np.ndarray:
    """(K, 5) rows [batch_index, x1, y1, x2, y2] inside the input image (map size / scale).

    Boxes span 5-50% of the image side, as detector proposals do; ``huge`` (cases with only a
    few boxes, like the adaptive-sampling case of the shape list) spans 60-100%.
    """
    rng = np.random.default_rng(seed)
    img_h, img_w = shape.H / shape.spatial_scale, shape.W / shape.spatial_scale
    low, high = (0.6, 1.0) if huge else (0.05, 0.5)
    frac_w, frac_h = rng.uniform(low, high, shape.rois), rng.uniform(low, high, shape.rois)
    x1 = rng.uniform(0, 1, shape.rois) * img_w * (1 - frac_w)
    y1 = rng.uniform(0, 1, shape.rois) * img_h * (1 - frac_h)
    batch = rng.integers(0, shape.N, shape.rois)
    return np.stack([batch, x1, y1, x1 + frac_w * img_w, y1 + frac_h * img_h], axis=1)


def to_layout(xp, a_nchw, layout: str):
    return a_nchw if layout == "NCHW" else xp.ascontiguousarray(a_nchw.transpose(0, 2, 3, 1))


def filters_in_layout(xp, w, layout: str):
    """NHWC cases: ``w`` viewed from memory laid out (K, R, S, C/groups), as the channels_last
    baseline (cudnn_nhwc) gets its filters and as a channels_last PyTorch model holds them, so
    that neither side pays a transpose the other does not; NCHW: ``w`` itself."""
    if layout == "NCHW":
        return w
    return xp.ascontiguousarray(w.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def to_nchw(xp, a, layout: str):
    return a if layout == "NCHW" else a.transpose(0, 3, 1, 2)


def make_inputs(case: Case, xp, seed: int) -> Inputs:
    shape, d = case.layer.shape, case.direction
    inp = Inputs(xp)
    needs_x = not (isinstance(shape, ConvShape) and d == "data_grad")
    if needs_x:
        inp.x_nchw = random_array(xp, shape.input_shape, case.dtype, seed)
        inp.x = to_layout(xp, inp.x_nchw, case.layout)
    if isinstance(shape, ConvShape) and d != "weight_grad":
        inp.w = random_array(xp, shape.weight_shape, case.dtype, seed + 1)
        inp.w_layout = filters_in_layout(xp, inp.w, case.layout)
    if d != "forward":
        inp.dy_nchw = random_array(xp, shape.output_shape, case.dtype, seed + 2)
        inp.dy = to_layout(xp, inp.dy_nchw, case.layout)
    if isinstance(shape, RoiShape):
        original = case.layer.original or shape
        inp.boxes_host = random_boxes(shape, seed + 3, huge=original.rois <= 16)
        inp.boxes = xp.asarray(inp.boxes_host.astype(numpy_dtype(case.dtype)))
    return inp


# ---- the gpuconv call ---------------------------------------------------------------------

def gpuconv_runner(case: Case, inp: Inputs, algorithm: str | None) -> Callable[[], Any]:
    """A no-argument callable computing the case with gpuconv; its result is in the case's
    layout. ``algorithm`` None calls without ``algorithm=`` (the reference, pooling, ROI).

    Raises Unavailable / NotApplicable when the call cannot be made at all.
    """
    shape = case.layer.shape
    if isinstance(shape, ConvShape):
        return _conv_runner(case, inp, algorithm)
    if isinstance(shape, PoolShape):
        return _pool_runner(case, inp)
    return _roi_runner(case, inp)


def _conv_runner(case: Case, inp: Inputs, algorithm: str | None):
    if algorithm in CONV_VARIANTS:
        return _conv_variant_runner(case, inp, algorithm)
    s: ConvShape = case.layer.shape
    geometry = dict(stride=s.stride, padding=s.pad, dilation=s.dilation, groups=s.groups)
    if case.layout != "NCHW":
        geometry["data_format"] = case.layout
    if case.direction == "forward":
        fn = gpuconv_function("conv2d")
        args = (inp.x, inp.w_layout)
    elif case.direction == "data_grad":
        fn = gpuconv_function("grad.conv2d_input")
        n, c, h, w = s.input_shape
        args = ((n, c, h, w) if case.layout == "NCHW" else (n, h, w, c), inp.w_layout, inp.dy)
    else:
        fn = gpuconv_function("grad.conv2d_weight")
        args = (inp.x, s.weight_shape, inp.dy)
    if algorithm is not None:
        if _takes_keyword(fn, "algorithm"):
            geometry["algorithm"] = algorithm
        elif algorithm != "auto":
            raise NotApplicable(f"{fn.__module__}.{fn.__name__} takes no algorithm= argument")
    return lambda: fn(*args, **geometry)


def array_library(inp: Inputs) -> str:
    """"cupy" or "numpy": the library of a case's arrays (a data gradient has no ``x``: its
    ``dy``), which decides the executor a variant runs on."""
    data = inp.x if inp.x is not None else inp.dy
    return "cupy" if type(data).__module__.split(".")[0] == "cupy" else "numpy"


def _conv_variant_runner(case: Case, inp: Inputs, variant: str):
    """The forward convolution (or a gradient: GRADIENT_OPTIONS) through the launcher with a
    kernel variant forced (the public functions take no variant); the kernels only: the NumPy
    reference has no variants."""
    from gpuconv._state import executor_for, is_deterministic
    from gpuconv.conv import launch, launch_bwd_data, launch_bwd_weight
    from gpuconv.conv.geometry import conv2d_geometry

    algorithm, options = CONV_VARIANTS[variant]
    if case.direction != "forward" and not (
            algorithm == "implicit_gemm"
            and set(options) <= set(GRADIENT_OPTIONS.get(case.direction, ()))):
        raise NotApplicable(f"{variant} is a forward-convolution kernel variant")
    s: ConvShape = case.layer.shape
    geom = conv2d_geometry(s.input_shape, s.weight_shape, stride=s.stride, padding=s.pad,
                           dilation=s.dilation, groups=s.groups)
    library = array_library(inp)

    def run():
        executor = executor_for(library)   # at call time: inside the runner's simulate()
        if executor == "reference":
            raise NotApplicable(f"{variant} runs the CUDA kernels; the NumPy reference has none")
        if case.direction != "forward":
            gradient = launch_bwd_data if case.direction == "data_grad" else launch_bwd_weight
            why = gradient.why_not(algorithm, geom, inp.dy.dtype, case.layout)
            if why is not None:
                raise NotApplicable(f"{variant}: {why}")
            if gradient is launch_bwd_data:
                return launch_bwd_data.run(algorithm, geom, inp.w_layout, inp.dy, None,
                                           case.layout, executor, **options)
            return launch_bwd_weight.run(algorithm, geom, inp.x, inp.dy, case.layout,
                                         is_deterministic(), executor, **options)
        return launch.conv2d(geom, inp.x, inp.w_layout, algorithm=algorithm,
                             data_format=case.layout, executor=executor, **options)
    return run


def _pool_runner(case: Case, inp: Inputs):
    s: PoolShape = case.layer.shape
    name = POOL_FUNCTIONS[s.op]
    if s.op in ("max", "avg"):
        params = dict(kernel_size=s.kernel, stride=s.stride, padding=s.pad, ceil_mode=s.ceil_mode)
    elif s.op.startswith("adaptive"):
        params = dict(output_size=s.output_size)
    else:
        params = {}
    layout = {} if case.layout == "NCHW" else {"data_format": case.layout}
    forward = gpuconv_function(name)
    if case.direction == "forward":
        return lambda: forward(inp.x, **params, **layout)
    backward = gpuconv_function(f"grad.{name}")
    if not s.is_max:
        return lambda: backward(inp.dy, inp.x, **params, **layout)
    # Max pooling: hand over the forward's indices, as PyTorch's backward gets them (and as the
    # bytes model counts them). They are computed on the first call, which runs inside the
    # variant's executor context. The global max has no return_indices: its indices are the
    # (1, 1) adaptive max's, the same flat h * W + w positions.
    saved = {}
    if s.op == "global_max":
        forward, params_with_indices = gpuconv_function("adaptive_max_pool2d"), {"output_size": (1, 1)}
    else:
        params_with_indices = params

    def run():
        if "indices" not in saved:
            saved["indices"] = forward(inp.x, **params_with_indices, return_indices=True, **layout)[1]
        return backward(inp.dy, inp.x, **params, indices=saved["indices"], **layout)
    return run


def _roi_runner(case: Case, inp: Inputs):
    s: RoiShape = case.layer.shape
    params = dict(output_size=s.output_size, spatial_scale=s.spatial_scale)
    if s.op == "roi_align":
        params.update(sampling_ratio=s.sampling_ratio, aligned=s.aligned)
    if case.direction == "forward":
        fn = gpuconv_function(s.op)
        return lambda: fn(inp.x, inp.boxes, **params)
    fn = gpuconv_function(f"grad.{s.op}")
    if s.op != "roi_pool":
        return lambda: fn(inp.dy, inp.x, inp.boxes, **params)
    # The argmax of the forward, computed on the first call (inside the variant's executor
    # context), as max pooling's indices above.
    from gpuconv.roi import api as roi_api
    from gpuconv.roi import grad as roi_grad
    saved = {}

    def run():
        if "argmax" not in saved:
            _, saved["argmax"], saved["rois"] = roi_api.roi_pool_with_argmax(inp.x, inp.boxes,
                                                                            **params)
        return roi_grad.roi_pool_with_own_argmax(inp.dy, inp.x, saved["rois"], **params,
                                                 argmax=saved["argmax"])
    return run


def output_nchw(case: Case, inp: Inputs, out):
    """A gpuconv result in the NCHW layout the checks compare in (weights are always KCRS)."""
    if case.direction == "weight_grad":
        return out
    return to_nchw(inp.xp, out, case.layout)


def to_host(inp: Inputs) -> Inputs:
    """The same inputs as NumPy arrays (for the NumPy reference as a GPU run's last-resort oracle)."""
    import cupy
    host = Inputs(np, boxes_host=inp.boxes_host)
    for name in ("x_nchw", "x", "w", "dy_nchw", "dy", "boxes"):
        value = getattr(inp, name)
        setattr(host, name, None if value is None else cupy.asnumpy(value))
    return host
