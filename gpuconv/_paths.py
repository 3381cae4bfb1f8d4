"""Where the CUDA sources are: the package-data folder ``gpuconv/kernels``.

setup.py installs the repository's top-level ``kernels/`` folder as the package ``gpuconv.kernels``,
so the same import name finds the sources in every layout:
- ``pip install .``: a real folder ``site-packages/gpuconv/kernels``;
- ``pip install -e .`` or a plain checkout on ``sys.path``: ``<repo>/kernels``, beside the
  ``gpuconv`` package folder (setuptools' editable finder maps ``gpuconv.kernels`` there too,
  the last resort for layouts other than these).
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

# A file every layout must hold; its absence means the package data was not installed.
_MARKER = Path("common") / "dtypes.cuh"


@functools.lru_cache(maxsize=None)
def kernel_root() -> Path:
    """The folder holding the ``.cu`` families and ``common/*.cuh``."""
    package = Path(__file__).resolve().parent
    # The folders that hold this very copy of gpuconv first: an editable finder of another
    # checkout may also answer for "gpuconv.kernels".
    candidates = [package / "kernels", package.parent / "kernels"]
    spec = importlib.util.find_spec("gpuconv.kernels")
    if spec is not None and spec.submodule_search_locations:
        candidates.extend(Path(p) for p in spec.submodule_search_locations)
    for folder in candidates:
        if (folder / _MARKER).is_file():
            return folder.resolve()
    raise FileNotFoundError(
        "gpuconv's CUDA sources were not found (looked for "
        f"{', '.join(str(c / _MARKER) for c in candidates)}); reinstall the package")


def common_dir() -> Path:
    """The shared headers, the one include directory every kernel compiles with."""
    return kernel_root() / "common"
