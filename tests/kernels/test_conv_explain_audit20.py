"""Audit 20: explain() told less than conv2d does.

1. It never applied conv2d's 32-bit index limits: a case conv2d on the kernels refuses (one image
   of 2^31 elements or more) was explained as running, forced or not.
2. Winograd's GEMM could split its k dimension (conv2d_split_k_epilogue launched) while explain
   named no split; the pointwise tiles it printed left out the cp.async stages.
"""
import numpy as np
import pytest

import gpuconv
from gpuconv.simulator import _module


@pytest.fixture
def launched(monkeypatch):
    """(name, grid) of every kernel the simulator launches."""
    calls, real = [], _module.Function.__call__

    def spy(self, grid, *args, **kwargs):
        calls.append((self.name, tuple(grid)))
        return real(self, grid, *args, **kwargs)
    monkeypatch.setattr(_module.Function, "__call__", spy)
    return calls


def test_explain_refuses_what_conv2d_refuses_on_the_kernels():
    x = np.broadcast_to(np.float32(0), (1, 1, 50000, 50000))     # 2.5e9 elements, no memory
    w = np.ones((1, 1, 3, 3), np.float32)
    with gpuconv.simulate():
        for algorithm in ("auto", "direct"):
            with pytest.raises(ValueError, match="one image of x or of the output spans"):
                gpuconv.explain(x, w, algorithm=algorithm)
            with pytest.raises(ValueError, match="one image of x or of the output spans"):
                gpuconv.conv2d(x, w, algorithm=algorithm)
        with pytest.raises(ValueError, match="one image of x or of the output spans"):
            gpuconv.explain(x.shape, w.shape)
        assert gpuconv.explain((0, 1, 50000, 50000), w.shape).algorithm    # nothing to index
    # Host arrays outside simulate() go to the reference, which computes any size: explain
    # still answers, and says no kernel could.
    assert gpuconv.explain(x, w).kernel.startswith("none: one image of x")


def test_explain_names_winograd_s_k_split_and_full_tile(launched):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 1024, 4, 4)).astype(np.float32)
    w = rng.standard_normal((16, 1024, 3, 3)).astype(np.float32)
    with gpuconv.simulate():
        kernel = gpuconv.explain(x, w, padding=1, algorithm="winograd_nonfused").kernel
        got = gpuconv.conv2d(x, w, padding=1, algorithm="winograd_nonfused")
    [(gemm, grid)] = [(n, g) for n, g in launched if n.startswith("conv2d_pointwise")]
    splits = grid[2] // 36                          # z: the 36 GEMMs of F(4x4, 3x3) x splits
    assert splits > 1 and any(n.startswith("conv2d_split_k_epilogue") for n, _ in launched)
    assert f"k split {splits} ways" in kernel
    assert f"tile {gemm.split('<', 1)[1].rsplit('>', 1)[0].split(', ', 1)[1]}," in kernel
    want = gpuconv.conv2d(x.astype(np.float64), w.astype(np.float64), padding=1)
    # 9216 products per output, each ~N(0, 1), through Winograd's float32 transforms.
    np.testing.assert_allclose(got, want, rtol=0, atol=3e-5 * np.abs(want).max())


def test_explain_prints_the_pointwise_tile_the_launch_takes(launched):
    x = np.ones((1, 8, 5, 5), np.float32)
    w = np.ones((4, 8, 1, 1), np.float32)
    with gpuconv.simulate():
        kernel = gpuconv.explain(x, w, algorithm="pointwise").kernel
        gpuconv.conv2d(x, w, algorithm="pointwise")
    [name] = [n for n, _ in launched if n.startswith("conv2d_pointwise")]
    layout, arguments = name.split("<", 1)
    assert kernel == f"{layout} (tile {arguments.rsplit('>', 1)[0].split(', ', 1)[1]})"
