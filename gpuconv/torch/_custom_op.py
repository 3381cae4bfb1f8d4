"""gpuconv's computations as one torch custom operator, so that ``torch.compile`` traces the
gpuconv.torch functions into its graphs instead of breaking them.

A gpuconv.torch function is Python (argument spelling, autocast, an autograd Function choosing
the layout and saving tensors) around a computation that Dynamo cannot trace: the bridge to
NumPy or CuPy, the launch plans, the kernels. Each such computation is registered here by name
(``computation``) with two functions of the same arguments:
- ``run``: the eager code, tensors in, tensors out;
- ``describe``: the shape (logical NCHW for images), dtype and layout of each result, read from
  gpuconv's own argument checks on stand-in arrays (the fronts' ``check_*``, as the JAX wrappers
  use them at trace time), so an invalid call fails while it is traced, with eager's error.
Eager calls go to ``run`` directly (``compute``). Under torch.compile ``compute`` calls the
operator ``torch.ops.gpuconv.compute``: Dynamo records it as one node whose fake implementation
is ``describe``, and running the graph calls ``run``. The autograd Functions around the
computations are traced by Dynamo as they are (torch.compile supports autograd.Function), so
the compiled backward passes are the eager ones, computation for computation.

The operator's schema holds the computation's name, its tensors (None where optional) and its
other arguments as one JSON string: to Dynamo they are constants (ints, floats, bools, strings,
None, tuples and dicts of them). A call with an argument JSON cannot hold is run eagerly, outside
the graph, where gpuconv's checks name it; so is one holding a NumPy scalar, which Dynamo cannot
hand to ``_encoded`` (with ``fullgraph=True`` both are Dynamo's error instead). A compiled graph
guards on these constants, as on a torch function's int arguments. Sizes are specialized: a
symbolic size of a dynamic-shape graph is read as the int it has when traced (a guard), as
gpuconv's checks need ints; so is a symbolic number among the other arguments (a size computed
from the input's, a float Dynamo made symbolic: ``_specialized``).

Results come back in the layout ``describe`` gave (NHWC results as channels_last tensors), since
a compiled graph relies on the strides its fake results had.
"""
from __future__ import annotations

import functools
import json
import operator
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .._arrays import zero_stand_in

try:  # registers NumPy's "bfloat16" dtype (see _bridge)
    import ml_dtypes
except ImportError:  # pragma: no cover - depends on the environment
    ml_dtypes = None

# torch dtype -> the NumPy dtype of the array the bridge hands gpuconv (bfloat16 without
# ml_dtypes is upcast to float32 there, so its checks see float32)
_NUMPY_DTYPES = {torch.float16: np.float16, torch.float32: np.float32,
                 torch.float64: np.float64, torch.int32: np.int32, torch.int64: np.int64,
                 torch.bfloat16: ml_dtypes.bfloat16 if ml_dtypes is not None else np.float32}


@dataclass(frozen=True)
class Result:
    """One result of a computation: its torch shape and dtype, and whether it is an NHWC image
    (a 4-D tensor laid out channels_last)."""
    shape: tuple
    dtype: torch.dtype
    channels_last: bool = False

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def empty(self, device) -> torch.Tensor:
        return torch.empty(self.shape, dtype=self.dtype, device=device,
                           memory_format=self.memory_format)

    @functools.cached_property
    def strides(self) -> tuple:
        """torch's strides of such a tensor (the fake result's)."""
        return self.empty("meta").stride()


def recording_graph() -> bool:
    """Whether this call is being recorded into a graph that will run it again on other tensors
    (torch.compile's Dynamo, torch.jit.trace): the computation must then be the gpuconv operator,
    which the graph records as a node, and not the bridge to NumPy or CuPy, whose results a
    trace would record as constants."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


@dataclass(frozen=True)
class Computation:
    run: Callable       # (*tensors, *statics) -> a tensor or a tuple of them
    describe: Callable  # (*tensors, *statics) -> a Result or a tuple of them
    reads_host: bool    # reads a device value on the host (a scan of indices or boxes)


_COMPUTATIONS: dict[str, Computation] = {}


def computation(name: str, describe: Callable, reads_host: bool = False):
    """Register the decorated function as computation ``name``'s ``run``. ``reads_host``: the
    computation waits for a device value (gpuconv/_capture.py), so a CUDA graph cannot hold it."""
    def register(run):
        _COMPUTATIONS[name] = Computation(run, describe, reads_host)
        return run
    return register


def compute(name: str, tensors: tuple, statics: tuple):
    """Computation ``name`` of ``tensors`` (None where optional) and ``statics`` (the other
    arguments): called directly, or under torch.compile as the custom operator."""
    if not recording_graph():
        return _COMPUTATIONS[name].run(*tensors, *statics)
    encoded = _encoded(_specialized(statics))
    if torch.jit.is_tracing():
        results = _traced(name, tensors, statics, encoded)
    elif encoded is None:
        return _eager(name, tensors, statics)
    else:
        op = torch.ops.gpuconv.compute_reading_host if _COMPUTATIONS[name].reads_host \
            else torch.ops.gpuconv.compute
        results = op(name, list(tensors), encoded)
    return results[0] if len(results) == 1 else tuple(results)


def _traced(name: str, tensors: tuple, statics: tuple, encoded: str | None) -> list:
    """The computation as the node torch.jit.trace records: the operator "compute_traced",
    whose tensors are a plain list (the tracer takes no optional tensors in a list), the
    positions of the absent ones joining the statics."""
    if encoded is None:
        raise TypeError(f"gpuconv.torch: torch.jit.trace cannot record {name} with the "
                        f"arguments {statics!r} (not ints, floats, bools, strings or sequences "
                        "of them); pass plain Python values")
    absent = [i for i, t in enumerate(tensors) if t is None]
    return torch.ops.gpuconv.compute_traced(name, [t for t in tensors if t is not None],
                                            json.dumps([absent, encoded]))


def result_and_layout(name: str, tensors: tuple, statics: tuple, layout: Callable[[], str],
                      eager: Callable[[], tuple]) -> tuple:
    """(computation ``name``'s result, the layout it ran in), for a forward that chooses its
    layout. Eager: ``eager()``, which chooses it where a remembered plan can skip the choice.
    Under torch.compile: ``layout()``, chosen here in traced code, where Dynamo sees and guards
    it, then handed to the computation after ``statics``."""
    if not recording_graph():
        return eager()
    data_format = layout()
    return compute(name, tensors, (*statics, data_format)), data_format


@torch.compiler.disable
def _eager(name: str, tensors: tuple, statics: tuple):
    """A computation whose arguments the operator's schema cannot carry, run outside the graph
    (a graph break), where gpuconv's checks refuse or take them as eager mode does."""
    return _COMPUTATIONS[name].run(*tensors, *statics)


def _json_default(value):
    if isinstance(value, np.generic):       # NumPy scalars, which gpuconv's checks take
        return value.item()
    raise TypeError


def _specialized(value):
    """``value`` with each symbolic number in it made the constant it has when traced, with a
    guard: a size of a dynamic-shape graph or arithmetic on sizes (``output_size=(2 * h, w)``),
    a float default of a gpuconv function (``spatial_scale=1.0``), which Dynamo makes symbolic
    under ``dynamic=True``. ``assume_constant_result`` takes constants only, and Dynamo
    specializes a SymInt for ``operator.index`` and a SymFloat for ``__float__``, not for
    ``int()`` and ``float()``. Trace time only: the eager path never calls it."""
    if isinstance(value, bool):
        return True if value else False
    if isinstance(value, int):
        return operator.index(value)
    if isinstance(value, float):
        return value.__float__()
    if isinstance(value, dict):
        return {k: _specialized(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return tuple([_specialized(v) for v in value])
    return value


@torch.compiler.assume_constant_result
def _encoded(statics: tuple) -> str | None:
    """The JSON text of ``statics``, or None if JSON cannot hold them."""
    try:
        return json.dumps(statics, default=_json_default, allow_nan=True)
    except (TypeError, ValueError):
        return None


def _tuples(value):
    """JSON's lists back to the tuples gpuconv's arguments were."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


@functools.lru_cache(maxsize=1024)
def _decoded(encoded: str) -> tuple:
    return _tuples(json.loads(encoded))


def _as_list(value) -> list:
    return list(value) if isinstance(value, tuple) else [value]


# Defined through torch.library.Library rather than the torch.library.custom_op decorator: the
# decorator's Python layers (an autograd wrapper, compile-disabled backend wrappers) cost ~10 us
# more per call of host time, and the operator needs no autograd of its own: it runs inside the
# autograd Functions' forward and backward passes, with grad mode off.
# Two operators of one schema and implementation: "compute" for the computations a CUDA graph
# can record (their memory comes from torch's allocator, the capture's pool: _bridge.py
# on_device_of), "compute_reading_host" for those that read a device value on the host (the
# index and box scans), which a capture forbids: tagged cudagraph_unsafe, so that
# mode="reduce-overhead" runs them between its CUDA graphs. The tag came with torch's graph
# partitioning (pytorch#149782, 2025); an older torch defines the operator untagged, and a
# capture that reaches it fails as a capture of any host read does.
_LIBRARY = torch.library.Library("gpuconv", "DEF")
_SCHEMA = "(str name, Tensor?[] tensors, str statics) -> Tensor[]"
_CUDAGRAPH_UNSAFE = getattr(torch.Tag, "cudagraph_unsafe", None)
_LIBRARY.define("compute" + _SCHEMA)
_LIBRARY.define("compute_reading_host" + _SCHEMA,
                tags=() if _CUDAGRAPH_UNSAFE is None else (_CUDAGRAPH_UNSAFE,))


def _operator(name: str, tensors: list, statics: str) -> list:
    results = _as_list(_COMPUTATIONS[name].run(*tensors, *_decoded(statics)))
    return [_in_layout(r, d, tensors) for r, d in zip(results, _described(name, tensors, statics))]


def _fake(name, tensors, statics):
    device = next(t.device for t in tensors if t is not None)
    return [d.empty(device) for d in _described(name, tensors, statics)]


for _op in ("compute", "compute_reading_host"):
    _LIBRARY.impl(_op, _operator, "CompositeExplicitAutograd")
    torch.library.register_fake(f"gpuconv::{_op}", _fake, lib=_LIBRARY)

# torch.jit.trace's node (``_traced``): the present tensors, and [absent positions, statics].
_LIBRARY.define("compute_traced(str name, Tensor[] tensors, str statics) -> Tensor[]")


def _traced_operator(name: str, tensors: list, statics: str) -> list:
    absent, encoded = json.loads(statics)
    tensors = list(tensors)
    for i in absent:
        tensors.insert(i, None)
    return _operator(name, tensors, encoded)


_LIBRARY.impl("compute_traced", _traced_operator, "CompositeExplicitAutograd")


# (name, statics, the tensors' shapes, dtypes and devices) -> the results' descriptions. A
# description reads nothing else, and running the checks costs ~15 us of host time per call.
_DESCRIPTIONS: dict = {}
MAX_DESCRIPTIONS = 4096


def _described(name: str, tensors: list, statics: str) -> list:
    try:
        key = (name, statics, tuple(None if t is None else (tuple(t.shape), t.dtype, t.device)
                                    for t in tensors))
        hash(key)
    except TypeError:           # symbolic sizes (a fake tensor of a dynamic-shape graph)
        key = None
    described = _DESCRIPTIONS.get(key) if key is not None else None
    if described is None:
        described = _as_list(_COMPUTATIONS[name].describe(*tensors, *_decoded(statics)))
        if key is not None:
            if len(_DESCRIPTIONS) >= MAX_DESCRIPTIONS:
                _DESCRIPTIONS.clear()
            _DESCRIPTIONS[key] = described
    return described


def _in_layout(result: torch.Tensor, described: Result, inputs: list) -> torch.Tensor:
    """``result`` with the strides its description gave, in memory of its own: an operator's
    result may alias none of its inputs."""
    if tuple(result.shape) != described.shape or result.dtype != described.dtype:
        raise RuntimeError(f"gpuconv internal error: a result of shape {tuple(result.shape)} and "
                           f"dtype {result.dtype} was described as {described}")
    expected = described.strides
    aliased = any(t is not None and t.untyped_storage().data_ptr()
                  == result.untyped_storage().data_ptr() for t in inputs)
    # A stride of a dimension of size 1 does not matter to any reader (nor to inductor's checks).
    if aliased or any(s != e for s, e, n in zip(result.stride(), expected, result.shape)
                      if n != 1):
        return described.empty(result.device).copy_(result)
    return result


def stand_in(t: torch.Tensor | None, data_format: str = "NCHW"):
    """A NumPy array of ``t``'s shape (its NHWC view's for ``data_format="NHWC"``) and the
    dtype the bridge would hand gpuconv, whose elements all alias one zero (no memory of its
    size): what gpuconv's argument checks read in place of a fake tensor. None passes."""
    if t is None:
        return None
    shape = tuple(int(s) for s in t.shape)       # a symbolic size: its traced value (guarded)
    if data_format == "NHWC" and len(shape) == 4:
        shape = (shape[0], shape[2], shape[3], shape[1])
    return zero_stand_in(shape, _NUMPY_DTYPES.get(t.dtype, np.float32))


def like(t: torch.Tensor, data_format: str, dtype: torch.dtype | None = None) -> Result:
    """The description of a result shaped as ``t`` (a gradient with respect to it) in the
    layout of ``data_format``."""
    shape = tuple(int(s) for s in t.shape)
    return Result(shape, t.dtype if dtype is None else dtype,
                  data_format == "NHWC" and len(shape) == 4)


def image(layout_shape: tuple, data_format: str, dtype: torch.dtype) -> Result:
    """The description of a result gpuconv returns as ``layout_shape`` in ``data_format``."""
    shape = tuple(int(s) for s in layout_shape)
    if data_format == "NHWC" and len(shape) == 4:
        n, h, w, c = shape
        return Result((n, c, h, w), dtype, True)
    return Result(shape, dtype)
