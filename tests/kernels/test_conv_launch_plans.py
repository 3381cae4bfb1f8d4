"""Launch plans of gpuconv.conv2d (gpuconv/_plans.py, gpuconv/conv/plans.py): a call whose
signature was seen before replays the recorded launches over its own arrays. Every test runs the
same signature twice with new data and checks the second (replayed) result against the NumPy
reference, the kernels it launched against the first call's, and that nothing of the first
call's arrays leaks into the plan."""
import gc
import weakref

import numpy as np
import pytest

import gpuconv
from gpuconv import _plans
from gpuconv.conv import autotune, launch_common, plans, split_k

TOLERANCE = {"float16": 4e-3, "float32": 2e-5, "float64": 1e-12}


def arrays(rng, x_shape, w_shape, dtype, *, residual=False, data_format="NCHW", y_shape=None):
    x = rng.standard_normal(x_shape).astype(dtype)
    if data_format == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    w = (rng.standard_normal(w_shape) * 0.3).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    r = rng.standard_normal(y_shape).astype(dtype) if residual else None
    return x, w, b, r


def twice(rng, launched_names, x_shape, w_shape, dtype=np.float32, *, residual=False,
          y_shape=None, **kwargs):
    """Two calls of one signature under the simulator; asserts the second replays the first's
    launches and matches the reference. Returns the plan."""
    runs = []
    for _ in range(2):
        x, w, b, r = arrays(rng, x_shape, w_shape, dtype, residual=residual, y_shape=y_shape,
                            data_format=kwargs.get("data_format", "NCHW"))
        start = len(launched_names)
        replays = plans.PLANS.replays
        with gpuconv.simulate():
            y = gpuconv.conv2d(x, w, b, residual=r, activation="relu", **kwargs)
        runs.append((launched_names[start:], plans.PLANS.replays - replays))
        expected = gpuconv.conv2d(x, w, b, residual=r, activation="relu", **kwargs)
        scale = max(float(np.abs(expected.astype(np.float64)).max()), 1.0)
        err = float(np.abs(y.astype(np.float64) - expected).max()) / scale
        assert err <= TOLERANCE[np.dtype(dtype).name], err
    (first, first_replays), (second, second_replays) = runs
    assert (first_replays, second_replays) == (0, 1)
    assert second == first and first
    return next(iter(plans.PLANS._plans.values()))


CASES = [
    # (x shape NCHW, weight shape, options): one per recorded launch path
    ((2, 8, 9, 9), (16, 8, 3, 3), dict(padding=1, algorithm="implicit_gemm")),
    ((2, 8, 9, 9), (16, 8, 3, 3), dict(padding=1, algorithm="implicit_gemm",
                                       data_format="NHWC")),         # derived KRSC weight
    ((2, 12, 7, 5), (10, 12, 1, 1), dict(stride=2, algorithm="pointwise")),
    ((2, 8, 9, 9), (16, 8, 3, 3), dict(padding=1, algorithm="winograd_nonfused")),  # views
    ((2, 6, 9, 8), (6, 1, 3, 3), dict(padding=1, groups=6)),          # depthwise
    ((2, 8, 9, 9), (8, 1, 5, 5), dict(padding=2, groups=8, data_format="NHWC")),
    ((1, 6, 11, 9), (4, 3, 3, 3), dict(padding=(1, 2), groups=2, algorithm="direct")),
    ((1, 6, 11, 9), (4, 6, 2, 3), dict(dilation=2, stride=(1, 2), algorithm="direct")),
]


@pytest.mark.parametrize("x_shape, w_shape, options", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64],
                         ids=["float32", "float16", "float64"])
def test_a_repeated_signature_replays_its_launches(x_shape, w_shape, options, dtype, rng,
                                                   launched_names):
    twice(rng, launched_names, x_shape, w_shape, dtype, **options)


def test_residual_and_bias_come_from_the_new_call(rng, launched_names):
    geom = gpuconv.conv2d_output_shape((2, 8, 9, 9), (16, 8, 3, 3), padding=1)
    twice(rng, launched_names, (2, 8, 9, 9), (16, 8, 3, 3), residual=True, y_shape=geom,
          padding=1)


def test_split_k_workspaces_are_made_again(monkeypatch, rng, launched_names):
    # A 4-SM device splits this GEMM's k (test_conv_split_k): the partial sums are a fresh
    # workspace of every call, summed by a second kernel.
    monkeypatch.setattr(split_k, "multiprocessor_count", lambda executor: 4)
    monkeypatch.setattr(split_k, "LAUNCH_SECONDS", 0.0)
    monkeypatch.setattr(split_k, "CALL_HOST_SECONDS", 0.0)
    split_k._gemm_splits.cache_clear()
    try:
        twice(rng, launched_names, (1, 64, 4, 4), (8, 64, 3, 3), padding=1,
              algorithm="implicit_gemm")
    finally:
        split_k._gemm_splits.cache_clear()
    assert any(n.startswith("conv2d_split_k_epilogue") for n in launched_names)


def test_batch_chunks_are_views_of_the_inputs(monkeypatch, rng, launched_names):
    # Offsets limited to a little over one image: each image is its own launch over views.
    monkeypatch.setattr(launch_common, "INDEX_LIMIT", 8 * 9 * 9 + 1)
    twice(rng, launched_names, (3, 8, 9, 9), (8, 8, 3, 3), padding=1, algorithm="implicit_gemm")
    assert len(launched_names) == 6


def test_a_strided_input_is_copied_on_every_call(rng, launched_names):
    for _ in range(2):
        x = rng.standard_normal((2, 8, 9, 18)).astype(np.float32)[..., ::2]
        w = rng.standard_normal((4, 8, 3, 3)).astype(np.float32)
        with gpuconv.simulate():
            y = gpuconv.conv2d(x, w, padding=1, algorithm="implicit_gemm")
        np.testing.assert_allclose(y, gpuconv.conv2d(x, w, padding=1), rtol=1e-5, atol=1e-5)
    assert plans.PLANS.replays == 1


def test_the_plan_keeps_no_array_of_the_call(rng, launched_names):
    x, w, b, _ = arrays(rng, (2, 8, 9, 9), (16, 8, 3, 3), np.float32)
    with gpuconv.simulate():
        y = gpuconv.conv2d(x, w, b, padding=1, algorithm="winograd_nonfused")
    refs = [weakref.ref(a) for a in (x, w, b, y)]
    del x, w, b, y
    gc.collect()
    assert [r() for r in refs] == [None] * 4
    assert len(plans.PLANS) == 1


def test_an_alignment_the_plan_did_not_see_takes_the_full_path(rng, launched_names):
    # The depthwise vector kernel needs 16-byte aligned rows; an input one element off its
    # boundary is another signature, and gets the kernel that runs it.
    def depthwise(offset):
        buffer = rng.standard_normal(2 * 8 * 8 * 8 + offset).astype(np.float32)
        x = buffer[offset:].reshape(2, 8, 8, 8)
        w = rng.standard_normal((8, 1, 3, 3)).astype(np.float32)
        start = len(launched_names)
        with gpuconv.simulate():
            y = gpuconv.conv2d(x, w, padding=1, groups=8, data_format="NHWC")
        np.testing.assert_allclose(y, gpuconv.conv2d(x, w, padding=1, groups=8,
                                                     data_format="NHWC"), rtol=1e-5, atol=1e-5)
        return launched_names[start:]
    aligned = depthwise(0)
    assert any("vector" in n for n in aligned)
    misaligned = depthwise(1)
    assert not any("vector" in n for n in misaligned)
    assert plans.PLANS.replays == 0 and len(plans.PLANS) == 2


def test_one_array_in_two_roles_is_not_recorded(rng, launched_names):
    x = rng.standard_normal((1, 4, 5, 5)).astype(np.float32)
    w = rng.standard_normal((4, 4, 1, 1)).astype(np.float32)
    with gpuconv.simulate():
        gpuconv.conv2d(x, w, residual=x)
        y = gpuconv.conv2d(x, w, residual=x)
    assert plans.PLANS.replays == 0
    np.testing.assert_allclose(y, gpuconv.conv2d(x, w, residual=x), rtol=1e-5, atol=1e-5)


def test_a_replay_may_alias_what_the_recording_did_not(rng, launched_names):
    x = rng.standard_normal((1, 4, 5, 5)).astype(np.float32)
    w = rng.standard_normal((4, 4, 1, 1)).astype(np.float32)
    with gpuconv.simulate():
        gpuconv.conv2d(x, w, residual=x.copy())
        y = gpuconv.conv2d(x, w, residual=x)
    assert plans.PLANS.replays == 1
    np.testing.assert_allclose(y, gpuconv.conv2d(x, w, residual=x), rtol=1e-5, atol=1e-5)


def test_calls_without_plans(monkeypatch, rng, launched_names):
    x, w, b, _ = arrays(rng, (2, 8, 9, 9), (16, 8, 3, 3), np.float32)
    out = np.empty((2, 16, 9, 9), np.float32)
    with gpuconv.simulate():
        for _ in range(2):
            gpuconv.conv2d(x, w, b, padding=1, algorithm="im2col_gemm")   # not recorded
            gpuconv.conv2d(x, w, b, padding=1, out=out)                   # out=: never
            gpuconv.conv2d(x, w, b, np.int64(1), padding=1)              # not a plain value
        monkeypatch.setattr(autotune, "_enabled", True)
        monkeypatch.setattr(autotune, "tune", lambda *a, **k: {"algorithm": "implicit_gemm"})
        for _ in range(2):
            gpuconv.conv2d(x, w, b, stride=2, padding=1)
    assert plans.PLANS.replays == 0
    assert len(plans.PLANS) == 1            # the im2col signature, remembered as unplannable
    # The NumPy reference records nothing.
    gpuconv.conv2d(x, w, b, padding=1)
    assert len(plans.PLANS) == 1


def test_an_invalid_call_raises_every_time(rng, launched_names):
    x, w, b, _ = arrays(rng, (2, 8, 9, 9), (16, 8, 3, 3), np.float32)
    with gpuconv.simulate():
        for _ in range(2):
            with pytest.raises(ValueError, match="bias"):
                gpuconv.conv2d(x, w, b[:3], padding=1)
            with pytest.raises(ValueError, match="pointwise"):
                gpuconv.conv2d(x, w, b, padding=1, algorithm="pointwise")
    assert len(plans.PLANS) == 0


def test_nested_recording_records_only_the_outer_call():
    cache = _plans.PlanCache()
    a = np.zeros(3)
    with cache.record("outer", {"a": a}) as outer:
        with cache.record("inner", {"a": a}) as inner:
            inner.keep(_plans.fresh(lambda: np.zeros(3)), allowed=True)
        outer.keep(_plans.fresh(lambda: np.ones(3)), allowed=True)
    assert cache.replay("inner", {"a": a}) is None and cache.wants("inner")
    np.testing.assert_array_equal(cache.replay("outer", {"a": a}), np.ones(3))
    assert _plans.recorder() is None


def test_winograd_chunks_are_views_of_its_workspaces(monkeypatch, rng, launched_names):
    # A workspace of one image: three chunks, each transformed into the front of the same
    # buffers (views of views of one allocation).
    from gpuconv.conv import launch_winograd
    monkeypatch.setattr(launch_winograd, "images_per_chunk", lambda *args: 1)
    twice(rng, launched_names, (3, 8, 9, 9), (8, 8, 3, 3), padding=1,
          algorithm="winograd_nonfused")


# ---------------------------------------------------------------- the gradients

GRAD_CASES = [
    ((2, 8, 9, 9), (16, 8, 3, 3), dict(padding=1)),
    ((2, 8, 9, 9), (16, 8, 3, 3), dict(padding=1, data_format="NHWC")),
    ((2, 12, 7, 5), (10, 12, 1, 1), dict(stride=2)),     # the data gradient fills unreached dx
    ((2, 6, 9, 8), (6, 1, 3, 3), dict(padding=1, groups=6)),
    ((1, 6, 11, 9), (4, 3, 3, 3), dict(padding=(1, 2), groups=2, dilation=2)),
]


def grad_twice(rng, launched_names, function, x_shape, w_shape, dtype, deterministic, options):
    fmt = options.get("data_format", "NCHW")
    y_shape = gpuconv.conv2d_output_shape(x_shape, w_shape, **{k: v for k, v in options.items()
                                                               if k != "data_format"})
    runs = []
    for _ in range(2):
        x, w, _, _ = arrays(rng, x_shape, w_shape, dtype, data_format=fmt)
        dy = rng.standard_normal(y_shape).astype(dtype)
        if fmt == "NHWC":
            dy = np.ascontiguousarray(dy.transpose(0, 2, 3, 1))
        args = {"input": (x.shape, w, dy), "weight": (x, w.shape, dy), "bias": (dy,)}[function]
        call = getattr(gpuconv.grad, f"conv2d_{function}")
        kwargs = dict(options) if function != "bias" else {"data_format": fmt}
        start, replays = len(launched_names), plans.PLANS.replays
        with gpuconv.simulate():
            got = call(*args, deterministic=deterministic, **kwargs)
        runs.append((launched_names[start:], plans.PLANS.replays - replays))
        expected = call(*args, **kwargs)
        scale = max(float(np.abs(expected.astype(np.float64)).max()), 1.0)
        err = float(np.abs(got.astype(np.float64) - expected).max()) / scale
        assert err <= 10 * TOLERANCE[np.dtype(dtype).name], err
    (first, first_replays), (second, second_replays) = runs
    assert (first_replays, second_replays) == (0, 1)
    assert second == first and first


@pytest.mark.parametrize("x_shape, w_shape, options", GRAD_CASES)
@pytest.mark.parametrize("function", ["input", "weight", "bias"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["float32", "float16"])
@pytest.mark.parametrize("deterministic", [False, True], ids=["default", "deterministic"])
def test_a_repeated_gradient_signature_replays_its_launches(x_shape, w_shape, options, function,
                                                            dtype, deterministic, rng,
                                                            launched_names):
    grad_twice(rng, launched_names, function, x_shape, w_shape, dtype, deterministic, options)


def test_the_mode_is_part_of_the_gradient_signature(rng, launched_names):
    x, _, _, _ = arrays(rng, (2, 8, 9, 9), (16, 8, 3, 3), np.float32)
    dy = rng.standard_normal((2, 16, 9, 9)).astype(np.float32)
    with gpuconv.simulate():
        gpuconv.grad.conv2d_weight(x, (16, 8, 3, 3), dy, padding=1, deterministic=True)
        gpuconv.set_deterministic(False)
        gpuconv.grad.conv2d_weight(x, (16, 8, 3, 3), dy, padding=1)
    assert plans.PLANS.replays == 0 and len(plans.PLANS) == 2


@pytest.mark.gpu
@pytest.mark.parametrize("x_shape, w_shape, options", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["float32", "float16"])
def test_gpu_replays_match_the_reference(x_shape, w_shape, options, dtype, rng):
    # The same on CuPy arrays: allocations from CuPy's pool, launches on the current stream.
    import cupy
    for _ in range(2):
        x, w, b, _ = arrays(rng, x_shape, w_shape, dtype,
                            data_format=options.get("data_format", "NCHW"))
        y = gpuconv.conv2d(*map(cupy.asarray, (x, w, b)), activation="relu", **options)
        expected = gpuconv.conv2d(x, w, b, activation="relu", **options)
        scale = max(float(np.abs(expected.astype(np.float64)).max()), 1.0)
        err = float(np.abs(cupy.asnumpy(y).astype(np.float64) - expected).max()) / scale
        assert err <= TOLERANCE[np.dtype(dtype).name], err
    assert plans.PLANS.replays == 1
