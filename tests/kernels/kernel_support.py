"""Scaffolding shared by the kernel tests: the thread orders, the dtypes (bfloat16 through
ml_dtypes when installed), launcher array modules whose ``empty`` is poisoned so that an element
a kernel forgets to write fails, small call helpers, a launch recorder, and the offline PTX
checks of the main loops (nvcc)."""
from __future__ import annotations

import dataclasses
import importlib
import re
import subprocess
from pathlib import Path

import numpy as np

import gpuconv
from gpuconv.conv.geometry import conv2d_geometry

ORDERS = ("forward", "reverse", "random")
try:  # bfloat16 exists in NumPy only through ml_dtypes
    import ml_dtypes
    BFLOAT16 = (np.dtype(ml_dtypes.bfloat16),)
except ImportError:
    BFLOAT16 = ()
DTYPES = (np.float16, np.float32, np.float64, *BFLOAT16)
DTYPE_IDS = [np.dtype(d).name for d in DTYPES]
INDEX_POISON = -7777


@dataclasses.dataclass(frozen=True)
class ConvCase:
    """A named forward convolution case: NCHW input and KCRS weight shapes, conv2d's keyword
    arguments; its name is its test id."""
    name: str
    x: tuple            # NCHW shape
    w: tuple            # KCRS shape
    kwargs: dict = dataclasses.field(default_factory=dict)

    def __str__(self):
        return self.name

    @property
    def geom(self):
        return conv2d_geometry(self.x, self.w, **self.kwargs)


class PoisonedArrays:
    """An array module whose ``empty`` returns NaN-filled (float) or INDEX_POISON (int) arrays."""

    def __init__(self, xp):
        self._xp = xp

    def __getattr__(self, name):
        return getattr(self._xp, name)

    def empty(self, shape, dtype=float):
        a = self._xp.empty(shape, dtype=dtype)
        a[...] = np.nan if np.dtype(dtype).kind == "f" else INDEX_POISON
        return a


def poison_launcher_outputs(monkeypatch, module_names) -> list[str]:
    """Make every launcher module among ``module_names`` that allocates through ``xp_for``
    allocate poisoned outputs; returns the names of those it poisoned."""
    poisoned = []
    for name in module_names:
        module = importlib.import_module(name)
        if hasattr(module, "xp_for"):
            real = module.xp_for
            monkeypatch.setattr(module, "xp_for",
                                lambda executor, real=real: PoisonedArrays(real(executor)))
            poisoned.append(name)
    return poisoned


def to_layout(x, data_format):
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if data_format == "NHWC" else x


def bitwise_equal(a, b) -> bool:
    """Same dtype and the same bytes (NaN payloads, signed zeros and all)."""
    return a.dtype == b.dtype and np.array_equal(a.view(np.uint8), b.view(np.uint8))


def misaligned_copy(a):
    """``a``'s values in a C-contiguous array one element past an aligned start: off the
    alignment of every vector access of the kernels (two elements or more), so a launcher must
    send it down a path of one element per access."""
    shifted = np.empty(a.size + 1, dtype=a.dtype)[1:].reshape(a.shape)
    shifted[...] = a
    assert shifted.ctypes.data % (2 * a.itemsize) != 0
    return shifted


def simulated(fn, *args, order="forward", **kwargs):
    with gpuconv.simulate(order=order):
        return fn(*args, **kwargs)


def sanitized(sanitize, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` under the simulator in random thread order, plain (``sanitize``
    None) or in the "address" or "thread" sanitizer's build, the launch plans cleared first (each
    run takes the full path); skips the test where the sanitizer is unavailable."""
    import pytest
    from gpuconv._call_plans import PLANS
    from gpuconv.simulator import SanitizerUnavailable
    PLANS.clear()
    try:
        with gpuconv.simulate(order="random", seed=7, sanitize=sanitize):
            return fn(*args, **kwargs)
    except SanitizerUnavailable as error:
        pytest.skip(str(error))


def record_launches(monkeypatch, launcher_module) -> list[str]:
    """The name expressions ``launcher_module.launch`` is called with from now on, in order
    (the launches still run)."""
    launched = []
    real = launcher_module.launch
    monkeypatch.setattr(launcher_module, "launch", lambda family, name, *a, **k: (
        launched.append(name), real(family, name, *a, **k)))
    return launched


# ---------------------------------------------------------------------------------------------
# offline PTX checks (need nvcc)


def compile_ptx(tmp_path, source: Path, instantiations) -> str:
    """PTX for sm_90 of ``source`` with each ``kernel<args>(params)`` explicitly instantiated."""
    unit = tmp_path / "instantiations.cu"
    unit.write_text(f'#include "{source}"\n' + "".join(
        f"template __global__ void {text};\n" for text in instantiations))
    ptx = tmp_path / "instantiations.ptx"
    common = source.parents[1] / "common"
    done = subprocess.run(["nvcc", "-std=c++17", "-arch=sm_90", "-I", str(common), "--ptx",
                           str(unit), "-o", str(ptx)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return ptx.read_text()


def fma_loops(ptx: str, mangled: str) -> list[list[str]]:
    """The loops (instructions from a label to the backward branch to it) holding FMAs in the
    kernel whose mangled name starts with ``mangled``, shortest first."""
    body = ptx.split(f".entry {mangled}", 1)[1].split(".entry ", 1)[0]
    lines = [t.strip() for t in body.splitlines()]
    lines = [t for t in lines if t and not t.startswith(("//", ".", "{", "}", ")"))]
    labels = {t[:-1]: i for i, t in enumerate(lines) if t.endswith(":")}
    loops = []
    for j, t in enumerate(lines):
        m = re.match(r"(?:@!?%p\d+\s+)?bra(?:\.uni)?\s+(\S+);", t)
        if not m or labels.get(m.group(1), j) >= j:
            continue
        loop = [u for u in lines[labels[m.group(1)]:j + 1] if not u.endswith(":")]
        if any(u.startswith("fma.") for u in loop):
            loops.append(loop)
    assert loops, f"no loop with FMAs in {mangled}"
    return sorted(loops, key=len)


def assert_written_and_close(actual, expected, tolerances):
    """Same shape and dtype, no element still NaN (the outputs start poisoned), and within
    ``tolerances[dtype name]`` relative to max(1, max |expected|)."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    assert not np.isnan(a).any(), "an output element was never written (still NaN)"
    tolerance = tolerances[expected.dtype.name] * max(1.0, float(np.abs(e).max()))
    np.testing.assert_allclose(a, e, rtol=0, atol=tolerance)
