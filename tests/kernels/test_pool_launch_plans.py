"""Launch plans of the pooling fronts and their gradients (gpuconv/_call_plans.py): a call whose
signature was seen before replays the recorded launches over its own arrays. Each case runs one
signature twice with new data under the simulator and checks the second (replayed) result
against the NumPy reference and its launches against the first call's."""

import numpy as np
import pytest

import gpuconv
from gpuconv.pool.grad import WITH_OWN_INDICES

from kernel_support import to_layout
from replay_support import (PLANS, assert_no_array_kept, kernels_by_mode, twice,
                            twice_on_the_gpu)

X_SHAPE = (2, 6, 9, 11)     # NCHW


def _x(rng, dtype, data_format, shape=X_SHAPE):
    return to_layout(rng.standard_normal(shape).astype(dtype), data_format)


def _grad_output(rng, forward, x):
    """A random gradient of ``forward``'s output shape (taken from the reference)."""
    y = forward(x)
    y = y[0] if isinstance(y, tuple) else y
    return rng.standard_normal(y.shape).astype(x.dtype)


# (name, forward(x, data_format) -> result): the forwards, one per launch path.
FORWARDS = {
    "max_pool2d 3/2/1": lambda x, f: gpuconv.max_pool2d(x, 3, 2, 1, data_format=f),
    "max_pool2d indices ceil": lambda x, f: gpuconv.max_pool2d(
        x, 2, 2, 1, ceil_mode=True, return_indices=True, data_format=f),
    "max_pool2d 2x3 dilated": lambda x, f: gpuconv.max_pool2d(x, (2, 3), 1, 0, 2, data_format=f),
    "avg_pool2d": lambda x, f: gpuconv.avg_pool2d(x, 3, 2, 1, count_include_pad=False,
                                                  data_format=f),
    "avg_pool2d divisor": lambda x, f: gpuconv.avg_pool2d(x, 2, divisor_override=3,
                                                          data_format=f),
    "lp_pool2d": lambda x, f: gpuconv.lp_pool2d(x, 2.0, 3, 2, data_format=f),
    "adaptive_avg_pool2d": lambda x, f: gpuconv.adaptive_avg_pool2d(x, (4, 3), data_format=f),
    "adaptive_avg_pool2d one bin": lambda x, f: gpuconv.adaptive_avg_pool2d(x, 1, data_format=f),
    "adaptive_max_pool2d": lambda x, f: gpuconv.adaptive_max_pool2d(x, (4, 5), True,
                                                                    data_format=f),
    "adaptive_max_pool2d one bin": lambda x, f: gpuconv.adaptive_max_pool2d(x, 1, True,
                                                                            data_format=f),
    "global_avg_pool2d": lambda x, f: gpuconv.global_avg_pool2d(x, data_format=f),
    "global_max_pool2d": lambda x, f: gpuconv.global_max_pool2d(x, data_format=f),
    "spatial_pyramid_pool2d max": lambda x, f: gpuconv.spatial_pyramid_pool2d(
        x, (1, 2, 3), "max", data_format=f),
    "spatial_pyramid_pool2d avg": lambda x, f: gpuconv.spatial_pyramid_pool2d(
        x, (1, 2, 4), "avg", data_format=f),
}


def _own_indices(name, forward_args):
    """The gradient through the forward's own indices (as gpuconv.torch calls it)."""
    forward = getattr(gpuconv, name)

    def gradient(g, x, f, deterministic):
        _, indices = forward(x, *forward_args, True, data_format=f)
        return WITH_OWN_INDICES[name](g, x, *forward_args, indices=indices, data_format=f,
                                      deterministic=deterministic)
    return gradient


# (name, gradient(g, x, data_format, deterministic), forward(x, data_format)): each gradient
# path. max_pool2d 3/2/1 overlaps (atomic scatter by default, gather when deterministic), 2/2
# does not (plain stores).
GRADIENTS = {
    "max_pool2d overlapping": (
        lambda g, x, f, d: gpuconv.grad.max_pool2d(g, x, 3, 2, 1, data_format=f,
                                                   deterministic=d),
        FORWARDS["max_pool2d 3/2/1"]),
    "max_pool2d own indices": (
        _own_indices("max_pool2d", (3, 2, 1, 1, False)), FORWARDS["max_pool2d 3/2/1"]),
    "max_pool2d disjoint": (
        lambda g, x, f, d: gpuconv.grad.max_pool2d(g, x, 2, data_format=f, deterministic=d),
        lambda x, f: gpuconv.max_pool2d(x, 2, data_format=f)),
    "avg_pool2d": (
        lambda g, x, f, d: gpuconv.grad.avg_pool2d(g, x, 3, 2, 1, count_include_pad=False,
                                                   data_format=f, deterministic=d),
        FORWARDS["avg_pool2d"]),
    "lp_pool2d": (
        lambda g, x, f, d: gpuconv.grad.lp_pool2d(g, x, 2.0, 3, 2, data_format=f,
                                                  deterministic=d),
        FORWARDS["lp_pool2d"]),
    "adaptive_avg_pool2d": (
        lambda g, x, f, d: gpuconv.grad.adaptive_avg_pool2d(g, x, (4, 3), data_format=f,
                                                            deterministic=d),
        FORWARDS["adaptive_avg_pool2d"]),
    "adaptive_max_pool2d own indices": (
        _own_indices("adaptive_max_pool2d", ((4, 5),)), FORWARDS["adaptive_max_pool2d"]),
    "adaptive_max_pool2d": (
        lambda g, x, f, d: gpuconv.grad.adaptive_max_pool2d(g, x, (4, 5), data_format=f,
                                                            deterministic=d),
        FORWARDS["adaptive_max_pool2d"]),
    "global_avg_pool2d": (
        lambda g, x, f, d: gpuconv.grad.global_avg_pool2d(g, x, data_format=f,
                                                          deterministic=d),
        FORWARDS["global_avg_pool2d"]),
    "global_max_pool2d": (
        lambda g, x, f, d: gpuconv.grad.global_max_pool2d(g, x, data_format=f,
                                                          deterministic=d),
        FORWARDS["global_max_pool2d"]),
    "spatial_pyramid_pool2d": (
        lambda g, x, f, d: gpuconv.grad.spatial_pyramid_pool2d(g, x, (1, 2, 3), "max",
                                                               data_format=f, deterministic=d),
        FORWARDS["spatial_pyramid_pool2d max"]),
}


DTYPES = [np.float32, np.float16, np.float64]
DTYPE_IDS = ["float32", "float16", "float64"]


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", list(FORWARDS))
def test_a_repeated_forward_replays_its_launches(name, dtype, data_format, rng,
                                                 launched_names):
    forward = FORWARDS[name]
    twice(launched_names, lambda x: forward(x, data_format),
          lambda: (_x(rng, dtype, data_format),), dtype)


@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", list(GRADIENTS))
def test_a_repeated_gradient_replays_its_launches(name, dtype, data_format, deterministic, rng,
                                                  launched_names):
    gradient, forward = GRADIENTS[name]

    def inputs():
        x = _x(rng, dtype, data_format)
        return _grad_output(rng, lambda x: forward(x, data_format), x), x
    # Through the forward's own indices, the forward that makes them replays too.
    replays = 2 if "own indices" in name else 1
    twice(launched_names, lambda g, x: gradient(g, x, data_format, deterministic), inputs, dtype,
          replays_per_call=replays)


def test_the_mode_is_part_of_the_signature(rng, launched_names):
    x = _x(rng, np.float32, "NCHW")
    g = _grad_output(rng, lambda x: gpuconv.max_pool2d(x, 3, 2, 1), x)
    kernels = kernels_by_mode(
        launched_names, lambda d: gpuconv.grad.max_pool2d(g, x, 3, 2, 1, deterministic=d))
    assert any("scatter" in k for k in kernels[False])
    assert not any("scatter" in k for k in kernels[True])


def test_scanned_indices_are_checked_on_every_call(rng, launched_names):
    x = _x(rng, np.float32, "NCHW")
    y, indices = gpuconv.max_pool2d(x, 2, return_indices=True)
    g = rng.standard_normal(y.shape).astype(np.float32)
    bad = indices.copy()
    bad[0, 0, 0, 0] = 5 * 11        # in range, outside its own window
    past_the_plane = indices.copy()
    past_the_plane[0, 1, 2, 3] = 9 * 11
    with gpuconv.simulate():
        for _ in range(2):
            gpuconv.grad.max_pool2d(g, x, 2, indices=indices)
            gpuconv.max_unpool2d(y, indices, 2, output_size=(9, 11))
            with pytest.raises(ValueError, match=r"indices\[\(0, 0, 0, 0\)\] = 55 lies outside"):
                gpuconv.grad.max_pool2d(g, x, 2, indices=bad)
            with pytest.raises(ValueError, match=r"found 99 at indices\[\(0, 1, 2, 3\)\]"):
                gpuconv.max_unpool2d(y, past_the_plane, 2, output_size=(9, 11))
    # The good calls recorded a plan each (their scan inside); every later call of the same
    # signature replayed it, and the bad ones, whose replayed scan found the index, raised
    # through the full path.
    assert len(PLANS) == 2 and PLANS.replays == 6


@pytest.mark.parametrize("name", ["max_pool2d", "adaptive_max_pool2d"])
def test_own_indices_and_scanned_indices_are_different_signatures(name, rng, launched_names):
    """The same arguments through WITH_OWN_INDICES (no scan) and through the public gradient
    (scan) record a plan each: the public call never replays the unscanned plan, whichever
    ran first, and the framework backward never pays for a scan."""
    forward_args = (3, 2, 1, 1, False) if name == "max_pool2d" else ((4, 5),)
    public_args = forward_args[:-1] if name == "max_pool2d" else forward_args
    x = _x(rng, np.float32, "NCHW")
    with gpuconv.simulate():
        y, indices = getattr(gpuconv, name)(x, *forward_args, True)
    g = rng.standard_normal(y.shape).astype(np.float32)
    bad = np.array(indices)
    bad[0, 0, 0, 0] = bad[0, 0, -1, -1]      # in the plane, outside output (0, 0)'s window
    with gpuconv.simulate():
        getattr(gpuconv.grad, name)(g, x, *public_args, indices=indices)
        WITH_OWN_INDICES[name](g, x, *forward_args, indices=indices)
        # with both plans recorded, each kind of call after a call of the other kind
        for _ in range(2):
            WITH_OWN_INDICES[name](g, x, *forward_args, indices=bad)   # trusted: not scanned
            with pytest.raises(ValueError, match="lies outside"):
                getattr(gpuconv.grad, name)(g, x, *public_args, indices=bad)
    assert len(PLANS) == 3       # the forward's, the unscanned gradient's, the scanned one's


def _scanned_max_pool2d(g, x, f, d):
    _, indices = gpuconv.max_pool2d(x, 3, 2, 1, return_indices=True, data_format=f)
    return gpuconv.grad.max_pool2d(g, x, 3, 2, 1, indices=indices, data_format=f,
                                   deterministic=d)


def _scanned_adaptive_max_pool2d(g, x, f, d):
    _, indices = gpuconv.adaptive_max_pool2d(x, (4, 5), True, data_format=f)
    return gpuconv.grad.adaptive_max_pool2d(g, x, (4, 5), indices=indices, data_format=f,
                                            deterministic=d)


def _scanned_global_max_pool2d(g, x, f, d):
    _, indices = gpuconv.adaptive_max_pool2d(x, 1, True, data_format=f)
    return gpuconv.grad.global_max_pool2d(g, x, indices=indices, data_format=f, deterministic=d)


def _spatial(x, f):
    return x.shape[1:3] if f == "NHWC" else x.shape[2:]


def _unpooled(x, f):
    """max_unpool2d of x's 2x2 max pooling, through its indices, back to x's size."""
    return gpuconv.max_unpool2d(*gpuconv.max_pool2d(x, 2, return_indices=True, data_format=f),
                                2, output_size=_spatial(x, f), data_format=f)


def _scanned_max_unpool2d(g, x, f, d):
    y, indices = gpuconv.max_pool2d(x, 2, return_indices=True, data_format=f)
    return gpuconv.grad.max_unpool2d(g, y, indices, 2, output_size=_spatial(x, f),
                                     data_format=f, deterministic=d)


# (name, call(g, x, data_format, deterministic), forward(x, data_format) giving g's shape): the
# fronts handed indices= whose values they scan, each behind the forward that makes them.
SCANNED = {
    "grad.max_pool2d": (_scanned_max_pool2d, FORWARDS["max_pool2d 3/2/1"]),
    "grad.adaptive_max_pool2d": (_scanned_adaptive_max_pool2d, FORWARDS["adaptive_max_pool2d"]),
    "grad.global_max_pool2d": (_scanned_global_max_pool2d, FORWARDS["global_max_pool2d"]),
    "grad.max_unpool2d": (_scanned_max_unpool2d, _unpooled),
}


@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("name", list(SCANNED))
def test_a_repeated_call_with_scanned_indices_replays_its_launches(name, data_format,
                                                                   deterministic, rng,
                                                                   launched_names):
    call, forward = SCANNED[name]

    def inputs():
        x = _x(rng, np.float32, data_format)
        return _grad_output(rng, lambda x: forward(x, data_format), x), x
    # the forward making the indices replays too
    twice(launched_names, lambda g, x: call(g, x, data_format, deterministic), inputs,
          np.float32, replays_per_call=2)


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_a_repeated_max_unpool2d_replays_its_launches(data_format, rng, launched_names):
    twice(launched_names, lambda x: _unpooled(x, data_format),
          lambda: (_x(rng, np.float32, data_format),), np.float32, replays_per_call=2)


def test_calls_without_plans(rng, launched_names):
    x = _x(rng, np.float32, "NCHW")
    with gpuconv.simulate():
        for _ in range(2):
            # elementwise array work around the public max_pool2d, which has its own plan
            got = gpuconv.lp_pool2d(x, float("inf"), 2)
            gpuconv.max_pool2d(x, np.int64(3))            # not a plain value: no key
            gpuconv.adaptive_avg_pool2d(x, (0, 3))         # empty: nothing launched
    np.testing.assert_allclose(got, gpuconv.lp_pool2d(x, float("inf"), 2))
    assert PLANS.replays == 1 and len(PLANS) == 1   # max_pool2d(|x|, 2) of the second call
    gpuconv.max_pool2d(x, 2)                        # the NumPy reference records nothing
    assert len(PLANS) == 1


def test_an_int_and_a_float_norm_are_different_signatures(rng, launched_names):
    x = _x(rng, np.float32, "NCHW")
    for norm in (2, 2.0, 2, 2.0):
        with gpuconv.simulate():
            got = gpuconv.lp_pool2d(x, norm, 2)
        np.testing.assert_allclose(got, gpuconv.lp_pool2d(x, norm, 2), rtol=1e-5, atol=1e-6)
    assert len(PLANS) == 2 and PLANS.replays == 2


def test_an_invalid_call_raises_every_time(rng, launched_names):
    x = _x(rng, np.float32, "NCHW")
    g = rng.standard_normal((2, 6, 5, 5)).astype(np.float32)
    with gpuconv.simulate():
        for _ in range(2):
            with pytest.raises(ValueError, match="grad_output"):
                gpuconv.grad.max_pool2d(g, x, 2)
            with pytest.raises(ValueError, match="kernel_size"):
                gpuconv.avg_pool2d(x, 0)
    assert len(PLANS) == 0


def test_the_plan_keeps_no_array_of_the_call(rng, launched_names):
    def call():
        x = _x(rng, np.float32, "NHWC")
        with gpuconv.simulate():
            y, indices = gpuconv.max_pool2d(x, 3, 2, 1, return_indices=True, data_format="NHWC")
        return x, y, indices
    assert_no_array_kept(call)


@pytest.mark.gpu
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["float32", "float16"])
@pytest.mark.parametrize("name", list(FORWARDS) + [f"grad {n}" for n in GRADIENTS]
                         + [f"scanned {n}" for n in SCANNED])
def test_gpu_replays_match_the_reference(name, dtype, data_format, rng):
    if name.startswith(("grad ", "scanned ")):
        kind, _, front = name.partition(" ")
        gradient, forward = (GRADIENTS if kind == "grad" else SCANNED)[front]
        call = lambda g, x: gradient(g, x, data_format, None)
    else:
        forward = FORWARDS[name]
        call = lambda x: forward(x, data_format)

    def inputs():
        x = _x(rng, dtype, data_format, (4, 37, 23, 29))
        if name.startswith(("grad ", "scanned ")):
            return _grad_output(rng, lambda x: forward(x, data_format), x), x
        return (x,)
    twice_on_the_gpu(call, inputs, dtype)
