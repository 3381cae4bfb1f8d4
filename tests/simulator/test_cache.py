"""The on-disk cache: a second load does not compile; an edited header or other -D options do."""
import numpy as np
import pytest

from gpuconv.simulator import _module, _toolchain, load_module

from sim_support import KERNELS

KERNEL = """
#include "scale.cuh"
template <class T>
__global__ void scaled(T* out, const T* in, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = in[i] * static_cast<T>(SCALE * OFFSET_FACTOR);
}
"""


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUCONV_CACHE_DIR", str(tmp_path / "cache"))
    include = tmp_path / "include"
    include.mkdir()
    (include / "scale.cuh").write_text("#pragma once\n#define OFFSET_FACTOR 1\n")
    _module.clear_memo()
    yield include
    _module.clear_memo()


def run(module, name="scaled<float>"):
    x = np.arange(10, dtype=np.float32)
    y = np.zeros(10, np.float32)
    module.get_function(name)(1, 32, (y, x, np.int32(10)))
    return y / np.maximum(x, 1)


def test_second_load_does_not_compile(private_cache, monkeypatch):
    options = ["-DSCALE=3", "-std=c++17", "--use_fast_math"]
    first = load_module(KERNEL, ["scaled<float>"], include_dirs=[str(private_cache)],
                        options=options)
    assert not first.from_cache
    assert run(first)[1] == 3
    built_at = first.path.stat().st_mtime_ns

    _module.clear_memo()

    def no_compiler(*args, **kwargs):
        raise AssertionError("the compiler ran although the module was cached")

    monkeypatch.setattr(_toolchain, "run_compiler", no_compiler)
    second = load_module(KERNEL, ["scaled<float>"], include_dirs=[str(private_cache)],
                         options=options)
    assert second.from_cache and second.path == first.path
    assert second.path.stat().st_mtime_ns == built_at
    assert run(second)[1] == 3
    # Within a process the module object itself is reused.
    assert load_module(KERNEL, ["scaled<float>"], include_dirs=[str(private_cache)],
                       options=options) is second


def test_edited_header_and_other_defines_rebuild(private_cache):
    base = load_module(KERNEL, ["scaled<float>"], include_dirs=[str(private_cache)],
                       options=["-DSCALE=2"])
    assert run(base)[1] == 2
    (private_cache / "scale.cuh").write_text("#pragma once\n#define OFFSET_FACTOR 5\n")
    _module.clear_memo()
    edited = load_module(KERNEL, ["scaled<float>"], include_dirs=[str(private_cache)],
                         options=["-DSCALE=2"])
    assert not edited.from_cache and edited.path != base.path
    assert run(edited)[1] == 10
    redefined = load_module(KERNEL, ["scaled<float>"], include_dirs=[str(private_cache)],
                            options=["-D", "SCALE=4", "-UUNUSED"])
    assert not redefined.from_cache
    assert run(redefined)[1] == 20


def test_cache_files_live_in_the_configured_folder(private_cache):
    module = load_module((KERNELS / "sync.cu").read_text(), ["scaled_copy<float, 3>"],
                         source_name="sync.cu")
    assert module.path.parent == _toolchain.cache_dir()
    assert module.path.name.startswith("sync-plain-")


def test_a_module_another_process_is_building_is_waited_for_not_built_twice(private_cache):
    # This process holds the module's build lock (as a process building it would); a second
    # process asking for the module waits, then loads what this one published, compiling
    # nothing (the test suite's cache warmer and the tests share the work this way).
    import subprocess
    import sys
    import time
    from gpuconv.simulator import _build

    options, includes, source = ["-DSCALE=2"], [str(private_cache)], "locked.cu"
    parsed = _build.parse_options(options, includes)
    names = ("scaled<float>",)
    path = _build.module_path(_build.cache_key(KERNEL, names, parsed, None, source), source, None)
    runtime = _toolchain.runtime_library(None)
    second = (f"from gpuconv.simulator import load_module\n"
              f"m = load_module({KERNEL!r}, {list(names)!r}, include_dirs={includes!r}, "
              f"options={options!r}, source_name={source!r})\n"
              f"print(m.from_cache)")
    with _toolchain.build_lock(path):
        waiting = subprocess.Popen([sys.executable, "-c", second], stdout=subprocess.PIPE,
                                   text=True)
        time.sleep(2.0)
        assert waiting.poll() is None, "the second process did not wait for the lock"
        _build._compile(path, KERNEL, names, parsed, None, source, runtime)
    out, _ = waiting.communicate(timeout=120)
    assert waiting.returncode == 0 and out.strip() == "True"
    module = load_module(KERNEL, list(names), include_dirs=includes, options=options,
                         source_name=source)
    assert module.from_cache and run(module)[1] == 2
