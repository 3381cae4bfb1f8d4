"""The registry of kernel families: every CUDA source file and every instantiation of it that the
launchers can ask for.

A launcher module registers its family once at import time::

    DIRECT = register("conv/direct.cu",
                      name_expressions=[f"conv2d_direct<{t}>" for t in CUDA_TYPES],
                      hot=[...])

and later launches ``get_function(DIRECT, "conv2d_direct<float>")`` (``gpuconv._loader``). The
whole family is compiled as one module with all its name expressions (NVRTC needs them up front),
and the offline check (``python -m gpuconv compile``) walks this registry, so what is checked is
exactly what can be launched.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

# C++ spelling of each dtype in kernel templates; the kernels include kernels/common/dtypes.cuh.
CUDA_TYPES = {"float16": "__half", "bfloat16": "__nv_bfloat16", "float32": "float", "float64": "double"}


@dataclass(frozen=True)
class KernelFamily:
    source: str                                   # path relative to kernels/, e.g. "conv/direct.cu"
    name_expressions: tuple[str, ...]             # every instantiation that can be launched
    hot: frozenset[str] = field(default_factory=frozenset)   # must compile without spills
    options: tuple[str, ...] = ()                 # extra compiler options (-D..., never -arch)
    # The one GPU architecture the family is built for, where its kernels use an arch-specific
    # instruction set ("sm_90a": Hopper's wgmma); None: any. The loader builds such a family
    # only for a device of that compute capability, the offline check only for that target.
    arch: str | None = None

    @property
    def compute_capability(self) -> str | None:
        """The device compute capability ``arch`` builds for ("90" for sm_90a), or None."""
        return None if self.arch is None else self.arch[3:].rstrip("a")

    def __hash__(self) -> int:
        # Every kernel launch hashes its family (the loader's memo keys); the generated hash
        # would rehash ~100 name expressions each time (~1-3 us of host time per launch).
        cached = self.__dict__.get("_hash")
        if cached is None:
            cached = hash((self.source, self.name_expressions, self.hot, self.options,
                           self.arch))
            object.__setattr__(self, "_hash", cached)
        return cached

    def __getstate__(self) -> dict:
        # String hashes differ between processes: a pickled family recomputes its own.
        return {k: v for k, v in self.__dict__.items() if k != "_hash"}


FAMILIES: dict[str, KernelFamily] = {}


def register(source: str, name_expressions, hot=(), options=(), arch=None) -> KernelFamily:
    names = tuple(dict.fromkeys(name_expressions))
    if arch is not None and not re.fullmatch(r"sm_[1-9]\d*a", arch):
        raise ValueError(f"arch must be None or an arch-specific target such as 'sm_90a'; "
                         f"got {arch!r}")
    unknown = set(hot) - set(names)
    if unknown:
        raise ValueError(f"hot kernels {sorted(unknown)} are not name expressions of {source}")
    family = KernelFamily(source, names, frozenset(hot), tuple(options), arch)
    if source in FAMILIES and FAMILIES[source] != family:
        raise ValueError(f"kernel family {source} registered twice with different contents")
    FAMILIES[source] = family
    return family


def cuda_type(dtype) -> str:
    from ._arrays import dtype_name
    return CUDA_TYPES[dtype_name(dtype)]


def import_launchers(package=None) -> list[str]:
    """Import every ``launch*`` module of the gpuconv package (``gpuconv.conv.launch``,
    ``gpuconv.pool.launch_adaptive``, ...) so that FAMILIES holds every family; returns their
    names. ``pkgutil.walk_packages`` would import every subpackage just to list it, including
    ones that pull in optional dependencies (``gpuconv.torch``), so the folders are listed with
    ``pkgutil.iter_modules`` and only the launcher modules (and their parents) are imported.
    An import error in a launcher propagates: a family that cannot register must not vanish.
    ``package`` (default: gpuconv) lets tests walk a package of their own."""
    import importlib
    import os
    import pkgutil

    if package is None:
        import gpuconv as package

    found = []
    pending = [(list(package.__path__), package.__name__ + ".")]
    while pending:
        path, prefix = pending.pop()
        for info in pkgutil.iter_modules(path, prefix):
            leaf = info.name.rsplit(".", 1)[-1]
            if info.ispkg:
                pending.append(([os.path.join(info.module_finder.path, leaf)], info.name + "."))
            elif leaf.startswith("launch"):
                found.append(info.name)
    for name in sorted(found):
        importlib.import_module(name)
    return sorted(found)
