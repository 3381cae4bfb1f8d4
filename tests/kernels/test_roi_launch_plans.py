"""Launch plans of the region-of-interest fronts (gpuconv/roi/plans.py): a call whose signature was
seen before replays the recorded launches, the rois values scan included, over its own arrays.
Each case runs one signature twice with new data (new boxes too) under the simulator and checks
the second, replayed, result against the NumPy reference and its launches against the first's."""
import importlib

import numpy as np
import pytest

import gpuconv
from gpuconv.roi import api as roi_api, grad as roi_grad

from kernel_support import to_layout
from replay_support import (PLANS, assert_no_array_kept, kernels_by_mode, twice,
                            twice_on_the_gpu)

align = importlib.import_module("gpuconv.roi.launch_align")

N, C, H, W = 2, 5, 10, 12
K = 6


def _x(rng, dtype, data_format):
    return to_layout(rng.standard_normal((N, C, H, W)).astype(dtype), data_format)


def _boxes(rng, dtype, k=K):
    """(k, 5) rois in images 0..N-1, partly outside the map: new values on every call."""
    corners = rng.uniform(-3, 14, size=(k, 2, 2))
    rows = np.concatenate([rng.integers(0, N, (k, 1)), corners.min(1), corners.max(1)], axis=1)
    return rows.astype(dtype)


def _output_like(rng, forward, x, boxes):
    return rng.standard_normal(forward(x, boxes).shape).astype(x.dtype)


# name -> forward(x, boxes, data_format): one per launch path of the forwards.
FORWARDS = {
    "roi_align adaptive": lambda x, b, f: gpuconv.roi_align(x, b, 3, 0.8, -1, False,
                                                            data_format=f),
    "roi_align ratio 2 aligned": lambda x, b, f: gpuconv.roi_align(x, b, (2, 3), 0.5, 2, True,
                                                                   data_format=f),
    "roi_pool": lambda x, b, f: gpuconv.roi_pool(x, b, (3, 2), 0.7, data_format=f),
}


def _own_argmax_gradient(g, x, b, f, d):
    """roi_pool's gradient as gpuconv.torch takes it: through the forward's argmax and rois."""
    _, argmax, rois = roi_api.roi_pool_with_argmax(x, b, (3, 2), 0.7, data_format=f)
    return roi_grad.roi_pool_with_own_argmax(g, x, rois, (3, 2), 0.7, argmax=argmax,
                                             data_format=f, deterministic=d)


def _kept_rois_gradient(g, x, b, f, d):
    """roi_align's gradient as gpuconv.torch takes it: through the forward's checked rois."""
    _, rois = roi_api.roi_align_keeping_rois(x, b, 3, 0.8, -1, False, data_format=f)
    return roi_grad.roi_align_from_checked_rois(g, x, rois, 3, 0.8, -1, False, data_format=f,
                                                deterministic=d)


# name -> (gradient(g, x, boxes, data_format, deterministic), the forward it belongs to)
GRADIENTS = {
    "roi_align": (lambda g, x, b, f, d: gpuconv.grad.roi_align(
        g, x, b, 3, 0.8, -1, False, data_format=f, deterministic=d), "roi_align adaptive"),
    "roi_align kept rois": (_kept_rois_gradient, "roi_align adaptive"),
    "roi_pool": (lambda g, x, b, f, d: gpuconv.grad.roi_pool(
        g, x, b, (3, 2), 0.7, data_format=f, deterministic=d), "roi_pool"),
    "roi_pool own argmax": (_own_argmax_gradient, "roi_pool"),
}


DTYPES = [np.float32, np.float16, np.float64]
DTYPE_IDS = ["float32", "float16", "float64"]


# roi_align's forward kernels: lanes sharing a bin's samples, or the per-box sample tables
FORWARD_PATHS = [(name, tables) for name in FORWARDS
                 for tables in ((False, True) if name.startswith("roi_align") else (False,))]


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name,tables", FORWARD_PATHS,
                         ids=[f"{n}{' tables' if t else ''}" for n, t in FORWARD_PATHS])
def test_a_repeated_forward_replays_its_launches(name, tables, dtype, data_format, rng,
                                                 launched_names, monkeypatch):
    monkeypatch.setattr(align, "TABLED_MIN_ELEMENTS", 0 if tables else 1 << 62)
    forward = FORWARDS[name]
    twice(launched_names, lambda x, b: forward(x, b, data_format),
          lambda: (_x(rng, dtype, data_format), _boxes(rng, dtype)), dtype)


@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", list(GRADIENTS))
def test_a_repeated_gradient_replays_its_launches(name, dtype, data_format, deterministic, rng,
                                                  launched_names):
    gradient, forward_name = GRADIENTS[name]
    forward = FORWARDS[forward_name]

    def inputs():
        x, b = _x(rng, dtype, data_format), _boxes(rng, dtype)
        return _output_like(rng, lambda x, b: forward(x, b, data_format), x, b), x, b
    # A wrapper's backward: its forward (with the rois scan) replays too, then the gradient
    # (rois trusted: no scan).
    replays = 2 if name.endswith(("kept rois", "own argmax")) else 1
    twice(launched_names, lambda g, x, b: gradient(g, x, b, data_format, deterministic), inputs,
          dtype, replays_per_call=replays)


def test_the_nhwc_scratch_of_the_nchw_scatter_replays(rng, launched_names, monkeypatch):
    # The NCHW atomic backward through an NHWC accumulator and its transpose, and without.
    for threshold in (0, 1 << 40):
        monkeypatch.setattr(align, "NHWC_SCATTER_MIN_ATOMICS_PER_ELEMENT", threshold)
        PLANS.clear()
        gradient = GRADIENTS["roi_align"][0]
        forward = FORWARDS["roi_align adaptive"]

        def inputs():
            x, b = _x(rng, np.float32, "NCHW"), _boxes(rng, np.float32)
            return _output_like(rng, lambda x, b: forward(x, b, "NCHW"), x, b), x, b
        twice(launched_names, lambda g, x, b: gradient(g, x, b, "NCHW", False), inputs,
              np.float32)


@pytest.mark.parametrize("bad_row", [[2, 1, 1, 5, 5], [0, 1, np.nan, 5, 5], [-0.5, 1, 1, 5, 5]],
                         ids=["index past N", "nan", "index just below 0"])
@pytest.mark.parametrize("front", ["roi_align", "roi_pool", "grad roi_align", "grad roi_pool"])
def test_bad_rows_raise_on_every_call(front, bad_row, rng, launched_names):
    x = _x(rng, np.float32, "NCHW")
    g = rng.standard_normal((K, C, 3, 3)).astype(np.float32)
    calls = {
        "roi_align": lambda b: gpuconv.roi_align(x, b, 3),
        "roi_pool": lambda b: gpuconv.roi_pool(x, b, 3),
        "grad roi_align": lambda b: gpuconv.grad.roi_align(g, x, b, 3),
        "grad roi_pool": lambda b: gpuconv.grad.roi_pool(g, x, b, 3),
    }
    call = calls[front]
    good = _boxes(rng, np.float32)
    bad = good.copy()
    bad[3] = bad_row
    with pytest.raises(ValueError, match="row 3") as from_the_reference:
        call(bad)
    with gpuconv.simulate():
        for _ in range(2):
            call(good)
            with pytest.raises(ValueError, match="row 3") as replayed:
                call(bad)
            assert str(replayed.value) == str(from_the_reference.value)
    assert len(PLANS) == 1 and PLANS.replays == 3


def test_the_mode_is_part_of_the_signature(rng, launched_names, monkeypatch):
    # the separable passes (adaptive sampling of few boxes) serve both modes: off here
    monkeypatch.setattr(align, "SEPARABLE_MAX_ROW_SUMS", 0)
    x, b = _x(rng, np.float32, "NCHW"), _boxes(rng, np.float32)
    g = rng.standard_normal((K, C, 3, 3)).astype(np.float32)
    kernels = kernels_by_mode(
        launched_names, lambda d: gpuconv.grad.roi_align(g, x, b, 3, deterministic=d))
    assert any("atomic" in k for k in kernels[False])
    assert not any("atomic" in k for k in kernels[True])


def test_calls_without_plans(rng, launched_names):
    x = _x(rng, np.float32, "NCHW")
    boxes = [np.asarray([[1, 1, 6, 6]], np.float32), np.asarray([[0, 2, 9, 5]], np.float32)]
    with gpuconv.simulate():
        for _ in range(2):
            got = gpuconv.roi_align(x, boxes, 2)                  # a list: concatenated rois
            gpuconv.roi_pool(x, np.zeros((0, 5), np.float32), 2)   # no boxes: nothing launched
            gpuconv.roi_pool(x, _boxes(rng, np.float32), np.int64(2))   # not a plain value
    np.testing.assert_allclose(got, gpuconv.roi_align(x, boxes, 2), rtol=1e-5, atol=1e-6)
    assert PLANS.replays == 0
    gpuconv.roi_align(x, _boxes(rng, np.float32), 2)          # the reference records nothing
    assert PLANS.replays == 0


def test_another_box_count_is_another_signature(rng, launched_names):
    x = _x(rng, np.float32, "NCHW")
    for k in (3, 4, 3, 4):
        b = _boxes(rng, np.float32, k)
        with gpuconv.simulate():
            got = gpuconv.roi_pool(x, b, 2)
        np.testing.assert_allclose(got, gpuconv.roi_pool(x, b, 2), rtol=1e-6)
    assert len(PLANS) == 2 and PLANS.replays == 2


def test_an_invalid_call_raises_every_time(rng, launched_names):
    x, b = _x(rng, np.float32, "NCHW"), _boxes(rng, np.float32)
    g = rng.standard_normal((K, C, 2, 2)).astype(np.float32)
    with gpuconv.simulate():
        for _ in range(2):
            with pytest.raises(ValueError, match="grad_output"):
                gpuconv.grad.roi_align(g, x, b, 3)
            with pytest.raises(ValueError, match="output_size"):
                gpuconv.roi_pool(x, b, 0)
            with pytest.raises(TypeError, match="deterministic"):
                gpuconv.grad.roi_pool(g, x, b, 2, deterministic="yes")
    assert len(PLANS) == 0


def test_the_plan_keeps_no_array_of_the_call(rng, launched_names):
    def call():
        x, b = _x(rng, np.float32, "NHWC"), _boxes(rng, np.float32)
        with gpuconv.simulate():
            y, argmax, rois = roi_api.roi_pool_with_argmax(x, b, 2, data_format="NHWC")
        return x, b, y, argmax, rois
    assert_no_array_kept(call)


@pytest.mark.gpu
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["float32", "float16"])
@pytest.mark.parametrize("name", list(FORWARDS) + [f"grad {n}" for n in GRADIENTS])
def test_gpu_replays_match_the_reference(name, dtype, data_format, rng):
    if name.startswith("grad "):
        gradient, forward_name = GRADIENTS[name[5:]]
        forward = FORWARDS[forward_name]
        call = lambda g, x, b: gradient(g, x, b, data_format, None)
    else:
        forward = FORWARDS[name]
        call = lambda x, b: forward(x, b, data_format)

    def inputs():
        x, b = _x(rng, dtype, data_format), _boxes(rng, dtype, 40)
        if name.startswith("grad "):
            return _output_like(rng, lambda x, b: forward(x, b, data_format), x, b), x, b
        return x, b
    twice_on_the_gpu(call, inputs, dtype)
