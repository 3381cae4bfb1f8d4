"""Algorithm choice and workspace findings of the 18th audit (a code reading of the heuristics,
explain, autotune and the plan cache):

1. The backward im2col paths sized their column buffers by a fixed element count only; they now
   also keep within GPUCONV_WORKSPACE_BYTES, as the forward's does (one image at least).
2. "auto" picked Winograd whatever the workspace limit, though its transformed filters and one
   image's transforms are a least workspace it cannot go below; it now takes another algorithm
   when that least exceeds the limit (a forced Winograd still takes it).
3. explain() described Winograd's GEMM over the whole batch where the workspace limit made it run
   in chunks of images: it now names the chunks and the first chunk's tile, as the launcher does.
4. An autotune cache entry that is not a dict (a hand-edited file) crashed conv2d and explain;
   one naming an algorithm that cannot run the case was reported by explain as the choice while
   conv2d measured again. Both are now "not measured yet".
5. Processes storing autotune entries at once dropped each other's (read, merge, rename without
   a lock between processes): _store now holds a file lock.
6. One call passing the same array in two roles marked its signature unplannable for good, so
   later calls with distinct arrays never replayed; such a call is now simply not recorded.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import gpuconv
from gpuconv import _call_plans
from gpuconv.conv import autotune, heuristics, launch_bwd_data, launch_bwd_weight, launch_winograd
from gpuconv.conv.geometry import conv2d_geometry


def _random(shape, seed, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("which", ["data", "weight"])
def test_backward_im2col_column_buffers_keep_within_the_workspace_limit(which, monkeypatch):
    x, w, dy = _random((3, 4, 6, 6), 0), _random((5, 4, 3, 3), 1), _random((3, 5, 6, 6), 2)
    one_image = 4 * 9 * 36 * 4                    # C*R*S rows x P*Q columns of float32
    monkeypatch.setenv("GPUCONV_WORKSPACE_BYTES", str(one_image))
    module = launch_bwd_data if which == "data" else launch_bwd_weight
    sizes, real_output = [], module.output

    def recording_output(xp, shape, dtype, executor):
        sizes.append(int(np.prod(shape)) * np.dtype(dtype).itemsize)
        return real_output(xp, shape, dtype, executor)
    monkeypatch.setattr(module, "output", recording_output)
    with gpuconv.simulate():
        if which == "data":
            got = gpuconv.grad.conv2d_input(x.shape, w, dy, padding=1, algorithm="im2col_gemm")
        else:
            got = gpuconv.grad.conv2d_weight(x, w.shape, dy, padding=1, algorithm="im2col_gemm")
    want = (gpuconv.grad.conv2d_input(x.shape, w, dy, padding=1) if which == "data"
            else gpuconv.grad.conv2d_weight(x, w.shape, dy, padding=1))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert one_image in sizes and max(sizes) < 2 * one_image   # one image's columns, no more


def test_auto_takes_no_winograd_whose_least_workspace_exceeds_the_limit(monkeypatch):
    geom = conv2d_geometry((1, 128, 32, 32), (128, 128, 3, 3), padding=1)
    assert heuristics.choose(geom, np.float32).algorithm == "winograd_nonfused"
    least = launch_winograd.least_workspace_bytes(geom, "forward", np.float32)
    assert least > 36 * 128 * 128 * 4              # the transformed filters at least
    monkeypatch.setenv("GPUCONV_WORKSPACE_BYTES", str(least))
    assert heuristics.choose(geom, np.float32).algorithm == "winograd_nonfused"
    monkeypatch.setenv("GPUCONV_WORKSPACE_BYTES", str(least - 1))
    assert heuristics.choose(geom, np.float32).algorithm == "implicit_gemm"
    x, w = np.zeros((1, 128, 32, 32), np.float32), np.zeros((128, 128, 3, 3), np.float32)
    with gpuconv.simulate():
        assert gpuconv.explain(x, w, padding=1).algorithm == "implicit_gemm"
    # The gradients' "auto" follows the same rule.
    from gpuconv.conv.launch_backward import choose_data_algorithm, choose_weight_algorithm
    for direction, choose in (("data_grad", choose_data_algorithm),
                              ("weight_grad", choose_weight_algorithm)):
        least = launch_winograd.least_workspace_bytes(geom, direction, np.float32)
        monkeypatch.setenv("GPUCONV_WORKSPACE_BYTES", str(least))
        assert choose(geom, "auto", np.float32, "NCHW")[0] == "winograd_nonfused"
        monkeypatch.setenv("GPUCONV_WORKSPACE_BYTES", str(least - 1))
        assert choose(geom, "auto", np.float32, "NCHW")[0] != "winograd_nonfused"


def test_explain_names_winograd_s_chunks_and_their_tile(monkeypatch, launched_pointwise):
    x, w = _random((3, 8, 6, 6), 3), _random((8, 8, 3, 3), 4)
    monkeypatch.setenv("GPUCONV_WORKSPACE_BYTES", "1")      # one image per chunk
    with gpuconv.simulate():
        kernel = gpuconv.explain(x, w, padding=1, algorithm="winograd_nonfused").kernel
        gpuconv.conv2d(x, w, padding=1, algorithm="winograd_nonfused")
    assert "in 3 chunks of up to 1 image (workspace limit)" in kernel
    tile = launched_pointwise[0].split("<", 1)[1].rsplit(">", 1)[0].split(", ", 1)[1]
    assert f"tile {tile})" in kernel and len(launched_pointwise) == 3     # stages included


@pytest.fixture
def launched_pointwise(monkeypatch):
    """The names of the pointwise GEMM kernels the simulator launches."""
    from gpuconv.simulator import _module
    names, real = [], _module.Function.__call__

    def spy(self, *args, **kwargs):
        if self.name.startswith("conv2d_pointwise"):
            names.append(self.name)
        return real(self, *args, **kwargs)
    monkeypatch.setattr(_module.Function, "__call__", spy)
    return names


@pytest.fixture
def autotune_cache(tmp_path, monkeypatch):
    path = tmp_path / "autotune.json"
    monkeypatch.setenv("GPUCONV_AUTOTUNE_CACHE", str(path))
    monkeypatch.setenv("GPUCONV_AUTOTUNE", "1")
    monkeypatch.setattr(autotune, "_enabled", None)
    autotune.clear_memory()
    autotune.set_timer(lambda run, executor: (run(), 1.0)[1])
    yield path
    autotune.set_timer(None)
    autotune.clear_memory()


@pytest.mark.parametrize("entry", ["direct", ["direct"], 7, {"algorithm": "pointwise"},
                                   {"seconds": {}}])
def test_an_autotune_entry_that_cannot_be_used_is_measured_again(entry, autotune_cache):
    x, w = _random((1, 2, 5, 5), 5), _random((3, 2, 3, 3), 6)
    with gpuconv.simulate():
        gpuconv.conv2d(x, w)                                 # measures, writes the file
        data = json.loads(autotune_cache.read_text())
        autotune_cache.write_text(json.dumps({key: entry for key in data}))
        autotune.clear_memory()
        explanation = gpuconv.explain(x, w)
        assert explanation.source == "autotune pending"      # not the edited entry
        got = gpuconv.conv2d(x, w)                           # measures again
    np.testing.assert_allclose(got, gpuconv.conv2d(x, w), rtol=1e-5, atol=1e-5)
    (stored,) = json.loads(autotune_cache.read_text()).values()
    assert stored["algorithm"] in heuristics.candidates(
        conv2d_geometry(x.shape, w.shape)) and stored != entry


STORE_MANY = """
import sys
from pathlib import Path
from gpuconv.conv import autotune
path, who = Path(sys.argv[1]), sys.argv[2]
for i in range(25):
    autotune._store(path, f"{who}-{i}", {"algorithm": "direct", "seconds": {}})
"""


def test_processes_storing_autotune_entries_at_once_keep_every_entry(tmp_path):
    path = tmp_path / "autotune.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    workers = [subprocess.Popen([sys.executable, "-c", STORE_MANY, str(path), str(k)], env=env)
               for k in range(4)]
    assert [p.wait(timeout=120) for p in workers] == [0] * 4
    assert len(json.loads(path.read_text())) == 100


def test_an_aliased_first_call_does_not_keep_its_signature_from_replaying():
    x = _random((2, 3, 5, 5), 7)
    w = _random((3, 3, 3, 3), 8)
    cases = [(_random((2, 3, 5, 5), 10 + s), _random((2, 3, 5, 5), 20 + s)) for s in range(3)]
    want = [gpuconv.conv2d(xs, w, padding=1, residual=r) for xs, r in cases]   # the reference
    with gpuconv.simulate():
        aliased = gpuconv.conv2d(x, w, padding=1, residual=x)         # x in two roles
        before = _call_plans.PLANS.replays
        for (xs, r), expected in zip(cases, want):
            got = gpuconv.conv2d(xs, w, padding=1, residual=r)
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
        assert _call_plans.PLANS.replays - before == 2                # recorded, then replayed
        # and a replay over aliased roles is the aliased call's result
        np.testing.assert_array_equal(gpuconv.conv2d(x, w, padding=1, residual=x), aliased)


@pytest.mark.parametrize("executor", ["simulator", pytest.param("cupy", marks=pytest.mark.gpu)])
def test_a_tensor_core_tile_with_a_static_table_opts_in_to_its_48_kib(executor, monkeypatch):
    # 49152 bytes of dynamic tiles next to a 776-byte static tap table: past a GPU's default
    # limit of 48 KiB less the static bytes, so the loader must opt in (it opted in only above
    # 48 KiB of dynamic memory; the simulator now fails such a launch as a GPU would).
    from gpuconv import _loader
    from gpuconv.simulator import _module
    launches, real = [], _module.Function.__call__

    def spy(self, grid, block, args, *, shared_mem=0, stream=None):
        launches.append((self.name, shared_mem, self.max_dynamic_shared_size_bytes))
        return real(self, grid, block, args, shared_mem=shared_mem, stream=stream)
    monkeypatch.setattr(_module.Function, "__call__", spy)
    groups = 132
    x = _random((1, 2, 2, groups * 8), 30, np.float16)                  # NHWC
    w = _random((groups * 64, 8, 3, 3), 31, np.float16)
    want = gpuconv.conv2d(x.astype(np.float32), w.astype(np.float32), padding=1, groups=groups,
                          data_format="NHWC")
    if executor == "cupy":
        import cupy
        got = cupy.asnumpy(gpuconv.conv2d(cupy.asarray(x), cupy.asarray(w), padding=1,
                                          groups=groups, data_format="NHWC",
                                          algorithm="implicit_gemm"))
    else:
        with gpuconv.simulate():
            got = gpuconv.conv2d(x, w, padding=1, groups=groups, data_format="NHWC",
                                 algorithm="implicit_gemm")
    np.testing.assert_allclose(got.astype(np.float32), want, rtol=4e-3,
                               atol=4e-3 * np.abs(want).max())
    if executor == "simulator":
        assert any(smem > _loader.OPT_IN_ABOVE and limit >= smem and "mma" in name
                   for name, smem, limit in launches)
