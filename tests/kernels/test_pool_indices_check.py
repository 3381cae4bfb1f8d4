"""The device-side check of pooling indices under the simulator, as the pass of its own
(kernels/pool/indices_check.cu) and as the max-pooling backward scatter applies it while it reads
them (kernels/pool/switch_scatter.cu, plain stores and atomics): it flags exactly what the NumPy
rules of gpuconv/pool/geometry.py refuse, and names the first bad position, in both layouts and
for strided windows, adaptive bins and plain ranges."""
import numpy as np
import pytest

import gpuconv
from gpuconv.pool.geometry import (IndicesScan, adaptive_pool2d_geometry, check_indices,
                                   check_indices_in_windows, pool2d_geometry)
from gpuconv.pool.launch_indices import first_bad_index, launch_indices_check
from gpuconv.pool.launch_switches import max_pool_backward
from kernel_support import ORDERS

X = np.random.default_rng(0).standard_normal((2, 3, 9, 11))
STRIDED = dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1), dilation=(1, 2), ceil_mode=True)


def to_layout(a, data_format):
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)) if data_format == "NHWC" else a


def numpy_refuses(indices, geom, data_format, window, allow_no_index):
    try:
        check_indices(indices, "numpy", indices.shape, geom.H * geom.W,
                      allow_no_index=allow_no_index)
        if window != "none":
            check_indices_in_windows(indices, "numpy", geom, data_format)
    except ValueError:
        return True
    return False


def _scan_pass(indices, geom, data_format, window, allow_no_index):
    return launch_indices_check(indices, geom, data_format, window=window,
                                allow_no_index=allow_no_index, executor="simulator")


def _scatter(atomic):
    """The answer of the backward scatter (plain stores, or atomics) that claims the scan."""
    def check(indices, geom, data_format, window, allow_no_index):
        scan = IndicesScan(indices, geom, data_format, window, allow_no_index, "simulator",
                           "indices")
        x = to_layout(np.zeros((geom.N, geom.C, geom.H, geom.W), np.float32), data_format)
        max_pool_backward(None, "unused: no gather", np.ones(indices.shape, np.float32), x,
                          indices, None, (), geom, overlapping=atomic, data_format=data_format,
                          deterministic=False, executor="simulator", indices_scan=scan)
        return scan.answer
    return check


CHECKERS = {"pass": _scan_pass, "store scatter": _scatter(False),
            "atomic scatter": _scatter(True)}


@pytest.fixture(params=list(CHECKERS))
def checker(request):
    return CHECKERS[request.param]


def device_check(checker, indices, geom, data_format, window, allow_no_index=False):
    """``checker``'s answer, the same in every thread order (an atomicMax)."""
    answers = set()
    for order in ORDERS:
        with gpuconv.simulate(order=order):
            answer = checker(indices, geom, data_format, window, allow_no_index)
            answers.add(first_bad_index(answer, indices.size))
    assert len(answers) == 1, answers
    return answers.pop()


def cases():
    geom = pool2d_geometry(X.shape, **STRIDED)
    strided = gpuconv.max_pool2d(X, **STRIDED, return_indices=True)[1]
    adaptive_geom = adaptive_pool2d_geometry(X.shape, (4, 5))
    adaptive = gpuconv.adaptive_max_pool2d(X, (4, 5), return_indices=True)[1]
    return {"strided": (geom, strided), "adaptive": (adaptive_geom, adaptive),
            "none": (adaptive_geom, adaptive)}


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("window", ["strided", "adaptive", "none"])
def test_the_forwards_indices_pass(checker, window, data_format):
    geom, indices = cases()[window]
    assert device_check(checker, to_layout(indices, data_format), geom, data_format,
                        window) is None


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("window", ["strided", "adaptive", "none"])
def test_the_first_bad_index_is_named_as_numpy_refuses_it(checker, window, data_format):
    geom, indices = cases()[window]
    rng = np.random.default_rng(1)
    plane = geom.H * geom.W
    for trial in range(12):
        bad = to_layout(indices, data_format).copy()
        flat = bad.reshape(-1)
        positions = np.sort(rng.choice(flat.size, size=2, replace=False))
        # out of range, -1, or an in-range element far from the window (the plane's far corner
        # for outputs near the origin, the origin for the rest)
        for pos in positions:
            kind = trial % 3
            flat[pos] = (plane + pos % 5, -1, 0 if flat[pos] > plane // 2 else plane - 1)[kind]
        expected_refusal = numpy_refuses(bad, geom, data_format, window, allow_no_index=False)
        got = device_check(checker, bad, geom, data_format, window)
        assert (got is not None) == expected_refusal
        if got is not None:
            one = bad.copy().reshape(-1)
            one[positions[1]] = to_layout(indices, data_format).reshape(-1)[positions[1]]
            first_alone = numpy_refuses(one.reshape(bad.shape), geom, data_format, window, False)
            assert got == (positions[0] if first_alone else positions[1])


def test_minus_one_passes_only_where_allowed(checker):
    geom, indices = cases()["strided"]
    bad = indices.copy()
    bad[1, 2, 3, 4] = -1
    assert device_check(checker, bad, geom, "NCHW", "strided", allow_no_index=True) is None
    assert device_check(checker, bad, geom, "NCHW", "strided") == np.ravel_multi_index(
        (1, 2, 3, 4), bad.shape)
