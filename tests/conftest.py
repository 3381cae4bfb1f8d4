"""Shared test fixtures: the `gpu` marker skips cleanly on machines without a CUDA GPU; the
simulator's kernel modules and the NVRTC check run in background processes beside the tests."""
import functools
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

# Work done in background processes while the tests run, so that CI's second core is not idle
# while the tests run one at a time (on a fresh machine, CI's case, the suite took ~19 minutes
# serially: ~6 of them g++ building each kernel family for the simulator at its first use, ~5.5
# the NVRTC check of every family for sm_80 and sm_90 at the end).
#
# 1. Every kernel family built for the simulator (plain, as most tests load them), last
#    registered first, at low priority. The toolchain's build lock makes this process and the
#    tests share the work: whichever asks second for a module waits for it, then loads it from
#    the cache.
WARM_SIMULATOR_CACHE = """
import os, signal, sys
os.nice(10)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a build's temporary folder cleaned up
from gpuconv import _kernels, _loader
_kernels.import_launchers()
for family in reversed(list(_kernels.FAMILIES.values())):
    try:
        _loader.load_module(family, "simulator")
    except Exception:  # the test that needs the family reports it
        pass
"""
# 2. The offline NVRTC check of every family (tests/test_compile_check.py awaits its result),
#    at the lowest priority: nothing waits for it before the end. For sm_90 only, the
#    architecture of the GPUs the project measures on: with sm_80 too it was ~700 of the ~1650
#    CPU-seconds of a cold CI run (each arch ~350: NVRTC's front end about half, ptxas the rest),
#    which put CI at its 15-minute limit. The kernels have no arch-specific code (ptx.cuh's
#    instructions are all sm_80's, but for the wgmma families, built for sm_90a only and
#    checked here as sm_90's), so sm_80 adds only its own register counts and spills: the
#    command's default, `python -m gpuconv compile` (sm_80,sm_90), checks those before a kernel
#    change is committed.
COMPILE_CHECK_ARCHS = "sm_90"
COMPILE_CHECK = [sys.executable, "-c",
                 "import os, runpy, sys; os.nice(19); sys.argv = ['gpuconv', 'compile', "
                 f"'--arch', '{COMPILE_CHECK_ARCHS}']; "
                 "runpy.run_module('gpuconv', run_name='__main__')"]
COMPILE_CHECK_TEST = "test_compile_check.py::test_library_families_pass_the_check"
# Fewer collected tests than this (one file, a -k selection): no cache warmer.
WARM_CACHE_MIN_TESTS = 200
_background: dict[str, subprocess.Popen] = {}


def pytest_collection_finish(session):
    if os.environ.get("GPUCONV_TEST_BACKGROUND", "1") == "0":
        return
    root = Path(__file__).parent.parent
    if len(session.items) >= WARM_CACHE_MIN_TESTS:
        _background["warm"] = subprocess.Popen(
            [sys.executable, "-c", WARM_SIMULATOR_CACHE], cwd=root,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if any(item.nodeid.endswith(COMPILE_CHECK_TEST) for item in session.items):
        # Its report goes to a file: a pipe nobody reads until the end would fill and stall it.
        report = tempfile.TemporaryFile(mode="w+")
        _background["compile_check"] = subprocess.Popen(
            COMPILE_CHECK, cwd=root, stdout=report, stderr=subprocess.STDOUT, text=True)
        _background["compile_check"].report = report


def pytest_sessionfinish(session, exitstatus):
    for process in _background.values():
        if process.poll() is None:
            process.terminate()
            process.wait()
    _background.clear()


@pytest.fixture
def library_compile_check():
    """(returncode, output) of the NVRTC check of every family, in a fresh process (what CI
    runs): the one started at collection, or, where none was, one run now."""
    process = _background.get("compile_check")
    if process is None:
        done = subprocess.run(COMPILE_CHECK, capture_output=True, text=True,
                              cwd=Path(__file__).parent.parent)
        return done.returncode, done.stdout + done.stderr
    process.wait()
    process.report.seek(0)
    return process.returncode, process.report.read()


@functools.lru_cache(maxsize=None)
def gpu_available() -> bool:
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, no driver, or no device: all mean "no GPU here"
        return False


def pytest_collection_modifyitems(config, items):
    if gpu_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU with CuPy (none on this machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def fresh_launch_plans():
    """Each test starts without recorded launch plans (gpuconv/_plans.py): a test that changes
    a launcher's rule (monkeypatch) must not replay a plan recorded under another test's."""
    from gpuconv import _call_plans
    _call_plans.PLANS.clear()
    yield


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
