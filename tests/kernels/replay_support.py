"""What the launch-plan tests of the pooling and ROI fronts share (gpuconv/_call_plans.py): one
signature called twice with new data under the simulator, the second call replaying the first's
launches, both compared with the NumPy reference."""
import gc
import weakref

import numpy as np

import gpuconv
from gpuconv import _call_plans

PLANS = _call_plans.PLANS
TOLERANCE = {"float16": 4e-3, "float32": 2e-5, "float64": 1e-12}


def assert_close(got, expected, dtype):
    """``got`` (an array or a tuple of them: values and indices) matches ``expected``: floats
    within TOLERANCE of the largest magnitude, int64 indices exactly."""
    if isinstance(expected, tuple):
        assert isinstance(got, tuple) and len(got) == len(expected)
        for g, e in zip(got, expected):
            assert_close(g, e, dtype)
        return
    assert type(got) is np.ndarray and got.shape == expected.shape and got.dtype == expected.dtype
    if expected.dtype == np.int64:
        np.testing.assert_array_equal(got, expected)
        return
    scale = max(float(np.abs(expected.astype(np.float64)).max()), 1.0)
    err = float(np.abs(got.astype(np.float64) - expected).max()) / scale
    assert err <= TOLERANCE[np.dtype(dtype).name], err


def twice(launched_names, call, make_inputs, dtype, replays_per_call=1):
    """``call(*inputs)`` under the simulator for two sets of inputs: the second replays the
    first's launches (``replays_per_call`` plans: a wrapper's backward replays its forward too)
    and both match the reference."""
    runs = []
    for _ in range(2):
        inputs = make_inputs()
        start, replays = len(launched_names), PLANS.replays
        with gpuconv.simulate():
            got = call(*inputs)
        runs.append((launched_names[start:], PLANS.replays - replays))
        assert_close(got, call(*inputs), dtype)
    (first, first_replays), (second, second_replays) = runs
    assert (first_replays, second_replays) == (0, replays_per_call)
    assert second == first and first


def twice_on_the_gpu(call, make_inputs, dtype):
    """``call`` on CuPy copies of two sets of inputs (allocations from CuPy's pool, launches on
    the current stream), each result matching the NumPy reference's, plans replayed."""
    import cupy
    replays = PLANS.replays
    for _ in range(2):
        inputs = make_inputs()
        got = call(*(cupy.asarray(a) for a in inputs))
        got = tuple(map(cupy.asnumpy, got)) if isinstance(got, tuple) else cupy.asnumpy(got)
        assert_close(got, call(*inputs), dtype)
    assert PLANS.replays > replays


def assert_no_array_kept(make_call):
    """``make_call()`` makes a call's arrays, makes the call under the simulator and returns every
    array it saw (inputs and results): once dropped, none is alive, and the call left one plan
    (a plan holds slots, not the arrays of the call that recorded it)."""
    refs = [weakref.ref(a) for a in make_call()]
    gc.collect()
    assert [r() is None for r in refs] == [True] * len(refs)
    assert len(PLANS) == 1


def kernels_by_mode(launched_names, call):
    """The kernels ``call(deterministic)`` launches under the simulator in each mode, each mode
    called twice in turn: the second call of each replays its plan (the mode is part of the
    signature, so neither replays the other's)."""
    kernels = {}
    with gpuconv.simulate():
        for deterministic in (False, True, False, True):
            start = len(launched_names)
            call(deterministic)
            kernels.setdefault(deterministic, set()).update(launched_names[start:])
    assert PLANS.replays == 2
    return kernels
