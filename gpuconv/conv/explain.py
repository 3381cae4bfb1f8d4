"""``gpuconv.explain(...)``: what conv2d(algorithm="auto") runs for a case, and why.

Takes conv2d's arguments (arrays, or plain shapes with ``dtype=``) and returns an ``Explanation``
whose ``str()`` is a short report: the algorithm, where the choice came from (forced, the
autotune cache, or the heuristic), the reason, the kernel that would be launched, and why each
other algorithm could or could not run the case.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import _loader, _state
from .._arrays import FLOAT_DTYPE_NAMES, check_arrays, is_float_dtype
from . import (autotune, heuristics, launch_depthwise, launch_direct, launch_implicit_gemm,
               launch_pointwise, launch_winograd)
from .geometry import (check_activation, check_algorithm, check_bias, check_data_format,
                       check_residual, conv2d_geometry, conv_algorithms, nchw_shape)
from .launch_bwd_common import acc_dtype
from .launch_common import async_tile, check_index_limits


@dataclass(frozen=True)
class Explanation:
    algorithm: str                 # what runs
    source: str                    # "forced" | "heuristic" | "autotune cache" | "autotune pending"
    reason: str
    kernel: str                    # the kernel (and tile) the launcher would use
    executor: str                  # "reference" | "simulator" | "cupy"
    refusals: dict = field(default_factory=dict)   # algorithm -> why it cannot run (None: it can)
    measured: dict | None = None   # autotune seconds per algorithm, when cached

    def __str__(self) -> str:
        lines = [f"algorithm: {self.algorithm} ({self.source})", f"reason: {self.reason}",
                 f"kernel: {self.kernel}"]
        if self.executor == "reference":
            lines.append("note: host arrays (NumPy; JAX's and torch's on the CPU) outside "
                         "gpuconv.simulate() are computed by the NumPy reference; this is what "
                         "the kernels would run")
        for algorithm, why in self.refusals.items():
            lines.append(f"  {algorithm}: {'can run' if why is None else 'refused: ' + why}")
        if self.measured:
            timing = ", ".join(f"{a} {'-' if t is None else f'{t * 1e3:.3f} ms'}"
                               for a, t in self.measured.items())
            lines.append(f"measured: {timing}")
        return "\n".join(lines)


def describe_kernel(algorithm: str, geom, dtype, nhwc: bool, executor: str) -> str:
    """The kernel the launcher of ``algorithm`` picks for this case (mirrors the launchers)."""
    dtype = np.dtype(dtype)
    tile_executor = executor if executor == "cupy" else "simulator"
    if algorithm == "direct":
        plan = launch_direct.tiled_plan(geom, dtype)
        if plan is not None:
            tile, channels = plan
            return (f"conv2d_direct_tiled ({tile.block_k} filters x {tile.tile_p}x{tile.tile_q} "
                    f"pixels per block, {channels} channels per shared-memory chunk)")
        if launch_direct.channel_tile(geom, dtype) == 0:
            return "conv2d_direct_v1 (the tiled kernel's input tile does not fit in shared memory)"
        return (f"conv2d_direct_v1 (the tiled kernel's {launch_direct.tiled_blocks_y(geom)} blocks "
                "of filters exceed the grid's 65535)")
    if algorithm == "direct_v1":
        return "conv2d_direct_v1"
    if algorithm == "depthwise":
        return launch_depthwise.describe(geom, dtype, nhwc)
    if algorithm == "im2col_gemm":
        return "conv2d_im2col + conv2d_gemm_columns (column buffer bounded by the workspace limit)"
    if algorithm == "winograd_nonfused":
        m = launch_winograd.choose_output_tile("forward", geom)
        # The transforms and GEMMs run over chunks of images that fit the workspace: the first
        # (largest) chunk's GEMM picks the tile, as in launch_winograd.forward.
        images = launch_winograd.images_per_chunk(geom, m, acc_dtype(dtype).itemsize)
        tiles = images * launch_winograd.tiles_per_image(geom, m)
        gemm = launch_winograd.gemm_geometry(geom, m, tiles, rows_in=geom.C, rows_out=geom.K)
        kernel, tile, splits = _pointwise_launch(gemm, acc_dtype(dtype), nhwc, tile_executor)
        chunks = (f", in {-(-geom.N // images)} chunks of up to {images} "
                  f"image{'s' if images > 1 else ''} (workspace limit)" if images < geom.N else "")
        return (f"conv2d_winograd_input_transform + {kernel} "
                f"(F({m}x{m}, 3x3): {launch_winograd.elements(m)} GEMMs per group over {tiles} "
                f"{m}x{m} tiles{chunks}, tile {tile.template_args}{_split_k_note(splits)}) + "
                "conv2d_winograd_output_transform")
    if algorithm == "pointwise":
        kernel, tile, splits = _pointwise_launch(geom, dtype, nhwc, tile_executor)
        return f"{kernel} (tile {tile.template_args}{_split_k_note(splits)})"
    tensor_cores = launch_implicit_gemm.uses_tensor_cores(dtype)
    tile = launch_implicit_gemm.pick_tile(geom, dtype, tile_executor, tensor_cores=tensor_cores)
    iterator = launch_implicit_gemm.choose_iterator(geom, nhwc=nhwc)
    kernel = launch_implicit_gemm.KERNELS[iterator, tensor_cores]
    splits = launch_implicit_gemm.splits(geom, tile, dtype, tensor_cores, tile_executor)
    if launch_implicit_gemm.vector_shape(geom, nhwc, iterator, tile):
        kernel = (f"{launch_implicit_gemm.VECTOR_KERNEL} (8 channels per load when the arrays "
                  "are 16-byte aligned)")
        tile = launch_implicit_gemm.vector_tile(tile, geom.gemm_k)
    return (f"{kernel} (tile {tile.template_args}, {'KRSC' if nhwc else 'KCRS'} weights, "
            f"{iterator} tap iterator, {'tensor' if tensor_cores else 'CUDA'} cores"
            f"{_split_k_note(splits)})")


def _pointwise_launch(geom, dtype, nhwc: bool, executor: str):
    """The pointwise GEMM kernel's name (operands by cp.async or through registers), its tile
    and its k splits, as launch_pointwise.run picks them (also for winograd's GEMMs)."""
    copies = launch_pointwise.pick_loads(dtype, nhwc) == "cp_async"
    tile = launch_pointwise.pick_tile(geom, dtype, executor, nhwc=nhwc)
    if copies:
        tile = async_tile(tile)
    splits = launch_pointwise.splits(geom, tile, dtype, nhwc, executor)
    return (f"conv2d_pointwise_{'nhwc' if nhwc else 'nchw'}{'_async' if copies else ''}", tile,
            splits)


def _split_k_note(splits: int) -> str:
    if splits == 1:
        return ""
    return (f", k split {splits} ways: the output tiles alone would leave SMs idle; "
            "+ conv2d_split_k_epilogue adds the splits in order")


def _float_dtype(dtype) -> np.dtype:
    """The dtype that shapes stand for: float32 by default, else one conv2d accepts."""
    if dtype is None:
        return np.dtype("float32")
    try:
        if isinstance(dtype, str) and dtype == "bfloat16":
            import ml_dtypes  # noqa: F401 (NumPy knows bfloat16 only through it)
        parsed = np.dtype(dtype)
    except (TypeError, ImportError):
        parsed = None
    if parsed is None or not is_float_dtype(parsed):
        raise TypeError(f"dtype must be one of {', '.join(FLOAT_DTYPE_NAMES)} (the arrays' dtype "
                        f"the shapes stand for), got {dtype!r}")
    return parsed


def _check_epilogue_dtype(bias, residual, dtype: np.dtype) -> None:
    """With shapes, the arrays given (bias, residual) must have the dtype the shapes stand for:
    conv2d refuses an integer or a mixed-dtype bias or residual, so explain does too."""
    given = {name: a for name, a in (("bias", bias), ("residual", residual)) if a is not None}
    if not given:
        return
    arrays = check_arrays(given, ndim={"bias": 1, "residual": 4})
    if arrays.dtype != dtype:
        name = next(iter(given))
        raise TypeError(f"{name} has dtype {arrays.dtype} but the shapes stand for {dtype} arrays "
                        f"(dtype={str(dtype)!r}): all floating-point arguments must have the "
                        "same dtype")


def explain(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
            activation=None, residual=None, algorithm="auto", data_format="NCHW",
            dtype=None) -> Explanation:
    """What ``conv2d`` with these arguments runs, and why.

    ``x`` and ``weight`` are arrays (as for conv2d) or shapes; with shapes, ``dtype`` (default
    float32) stands for the arrays' dtype. ``bias``, ``residual`` and ``activation`` are
    accepted for symmetry with conv2d: the epilogue never changes the choice.
    """
    data_format = check_data_format(data_format)
    algorithm = check_algorithm(algorithm)
    check_activation(activation)
    if isinstance(x, (tuple, list)) != isinstance(weight, (tuple, list)):
        raise TypeError("x and weight must both be arrays or both be shapes")
    if isinstance(x, (tuple, list)):
        dtype = _float_dtype(dtype)
        for name, a in (("bias", bias), ("residual", residual)):
            if a is not None and not hasattr(a, "shape"):
                raise TypeError(f"{name} must be None or an array, got {type(a).__name__}")
        _check_epilogue_dtype(bias, residual, dtype)
        # Shapes stand for arrays on the device that would run them: the GPU if there is one.
        simulated = _state.active_simulation() is not None or not _loader._gpu_present()
        executor = "simulator" if simulated else "cupy"
        x_shape, w_shape = tuple(x), tuple(weight)
    else:
        arrays = check_arrays({"x": x, "weight": weight, "bias": bias, "residual": residual},
                              ndim={"x": 4, "weight": 4, "bias": 1, "residual": 4})
        if dtype is not None and _float_dtype(dtype) != arrays.dtype:
            raise TypeError(f"dtype={dtype} contradicts the arrays' dtype {arrays.dtype}")
        dtype = arrays.dtype
        executor = _state.executor_for(arrays.library)
        x_shape, w_shape = tuple(x.shape), tuple(weight.shape)
    if len(x_shape) != 4:
        raise ValueError(f"x must be 4-D, got shape {x_shape}")
    geom = conv2d_geometry(nchw_shape(x_shape, data_format), w_shape, stride, padding, dilation,
                           groups)
    check_bias(bias, geom.K)
    check_residual(residual, geom, data_format)
    nhwc = data_format == "NHWC"
    refusals = {a: heuristics.refusal(a, geom) for a in conv_algorithms}
    beyond_kernels = None
    if geom.N > 0:
        try:
            check_index_limits(geom)
        except ValueError as error:
            if executor != "reference":
                raise           # as conv2d on the kernels does, before it chooses anything
            beyond_kernels = str(error)     # the reference computes it; no kernel could

    measured = None
    if algorithm != "auto":
        why = refusals[algorithm]
        if why is not None:
            raise ValueError(f"algorithm={algorithm!r} cannot run this convolution: {why}")
        chosen, source, reason = algorithm, "forced", "algorithm= names it"
    elif autotune.enabled() and executor != "reference":
        entry = autotune.lookup(geom, dtype, data_format, executor, heuristics.candidates(geom))
        guess = heuristics.choose(geom, dtype)
        if entry is not None:
            chosen, source, measured = entry["algorithm"], "autotune cache", entry.get("seconds")
            reason = f"fastest when measured on {autotune.device_name(executor)}"
        else:
            chosen, source = guess.algorithm, "autotune pending"
            reason = (f"not measured yet: the first call times {', '.join(heuristics.candidates(geom))}; "
                      f"until then the heuristic says: {guess.reason}")
    else:
        guess = heuristics.choose(geom, dtype)
        chosen, source, reason = guess.algorithm, "heuristic", guess.reason
    return Explanation(algorithm=chosen, source=source, reason=reason,
                       kernel=(describe_kernel(chosen, geom, dtype, nhwc, executor)
                               if beyond_kernels is None else f"none: {beyond_kernels}"),
                       executor=executor, refusals=refusals, measured=measured)
