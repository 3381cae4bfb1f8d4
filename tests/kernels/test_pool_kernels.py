"""The pooling kernels against the NumPy reference: every function and its gradient under
``gpuconv.simulate()`` in three thread orders (and, marked ``gpu``, on a GPU with CuPy).

The reference is the public function called outside ``simulate()``; the kernels run through the
same public function inside it, so argument handling and the launchers are exercised too.
Outputs the launchers allocate with ``empty`` are poisoned (NaN, index -7777) so that an element a
kernel forgets to write fails. Shapes are small and odd: the simulator runs about 1M threads/s.
"""
from __future__ import annotations


import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gpuconv
from gpuconv import grad
from gpuconv._arrays import library_of, xp_of
from gpuconv.pool import launch_common
from kernel_support import (BFLOAT16, DTYPE_IDS, DTYPES, ORDERS, bitwise_equal, misaligned_copy,
                            poison_launcher_outputs, record_launches, simulated, to_layout)

TOLERANCE = {np.dtype(np.float16): 4e-3, np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-12,
             **{d: 2e-2 for d in BFLOAT16}}
LAUNCHER_MODULES = ("gpuconv.pool.launch_window", "gpuconv.pool.launch_adaptive",
                    "gpuconv.pool.launch_global", "gpuconv.pool.launch_unpool")


@pytest.fixture(autouse=True)
def poisoned_outputs(monkeypatch):
    # every pooling launcher allocates through xp_for: none may escape the poison
    assert poison_launcher_outputs(monkeypatch, LAUNCHER_MODULES) == list(LAUNCHER_MODULES)


# --------------------------------------------------------------------------------------------
# helpers


def assert_matches(got, expected):
    """Same type, shape and dtype; indices exactly, values within the dtype's tolerance, NaN
    where the reference has NaN."""
    if isinstance(expected, tuple):
        assert isinstance(got, tuple) and len(got) == len(expected)
        for g, e in zip(got, expected):
            assert_matches(g, e)
        return
    assert type(got) is type(expected)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    if expected.dtype.kind in "iu":
        np.testing.assert_array_equal(got, expected)
        return
    tol = TOLERANCE[expected.dtype]
    np.testing.assert_allclose(got.astype(np.float64), expected.astype(np.float64),
                               rtol=tol, atol=tol, equal_nan=True)


def check_all_orders(fn, *args, orders=ORDERS, **kwargs):
    expected = fn(*args, **kwargs)
    for order in orders:
        assert_matches(simulated(fn, *args, order=order, **kwargs), expected)
    return expected


def assert_same_bits_with_run_time_loops(monkeypatch, calls, results, *patches):
    """Each of ``calls`` (simulated, random order) gives ``results``' bits again once
    ``patches`` ((module, name, value) triples) turn a compile-time gather off, and matches the
    reference. The plans recorded before name the compile-time kernels: they are dropped."""
    from gpuconv import _call_plans
    for module, name, value in patches:
        monkeypatch.setattr(module, name, value)
    _call_plans.PLANS.clear()
    for call, got in zip(calls, results):
        assert bitwise_equal(got, simulated(call, order="random"))
        assert_matches(got, call())


def random_input(rng, shape, dtype, kind="normal"):
    if kind == "ties":       # few distinct values: exercises the first-maximum rule
        x = rng.integers(-2, 3, size=shape)
    elif kind == "positive":
        x = rng.uniform(0.25, 2.0, size=shape)
    else:
        x = rng.standard_normal(shape)
    return x.astype(dtype)


def grad_output_for(rng, y):
    return rng.standard_normal(y.shape).astype(y.dtype)


# --------------------------------------------------------------------------------------------
# sliding windows: max_pool2d, avg_pool2d, lp_pool2d

WINDOWS = {
    "k3s2p1": ((2, 3, 7, 9), dict(kernel_size=3, stride=2, padding=1)),
    "rect_dilated": ((1, 2, 8, 7), dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1),
                                        dilation=(2, 1))),
    # ceil_mode: the first window starts in the padding, the last reaches past the padding
    "ceil_k3s2p1": ((1, 2, 6, 6), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    "ceil_k3s3": ((1, 3, 10, 5), dict(kernel_size=(3, 1), stride=(3, 1), ceil_mode=True)),
    "default_stride": ((2, 1, 5, 6), dict(kernel_size=2)),
    "k3s1p1": ((2, 2, 6, 7), dict(kernel_size=3, stride=1, padding=1)),
    "ceil_k2s2p1": ((1, 3, 7, 6), dict(kernel_size=2, stride=2, padding=1, ceil_mode=True)),
    # one window, the whole plane (GoogLeNet's 7x7 average): avg_pool2d takes the global paths
    "whole_plane": ((2, 3, 5, 6), dict(kernel_size=(5, 6), stride=1)),
    # every tap of the only window falls into the padding: -inf and index -1
    "padding_only": ((1, 2, 3, 3), dict(kernel_size=2, padding=1, dilation=4)),
}
NO_DILATION = [k for k, (_, kw) in WINDOWS.items() if "dilation" not in kw]


def divide_per_element(monkeypatch):
    """The backward gathers read their output bounds from shared-memory tables unless these
    would pass launch_common.BOUND_TABLE_BYTES: 0 makes them divide per element instead."""
    monkeypatch.setattr(launch_common, "BOUND_TABLE_BYTES", 0)


BOUND_TABLES = pytest.mark.parametrize("bound_tables", [True, False],
                                       ids=["tables", "divisions"])


# The max-pooling backward's formulations (gpuconv/pool/launch_switches.py): the default mode
# scatters (plain stores where windows do not overlap, atomics where they do); the deterministic
# mode gathers where they overlap, with bound tables or per-element divisions.
DETERMINISTIC = pytest.mark.parametrize("deterministic", [False, True],
                                        ids=["default", "deterministic"])


@DETERMINISTIC
@BOUND_TABLES
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", list(WINDOWS))
def test_max_pool2d_and_grad(rng, monkeypatch, case, dtype, data_format, bound_tables,
                             deterministic):
    if not bound_tables:
        divide_per_element(monkeypatch)
    shape, kwargs = WINDOWS[case]
    x = to_layout(random_input(rng, shape, dtype, "ties"), data_format)
    y, indices = check_all_orders(gpuconv.max_pool2d, x, return_indices=True,
                                  data_format=data_format, **kwargs)
    go = grad_output_for(rng, y)
    check_all_orders(grad.max_pool2d, go, x, data_format=data_format,
                     deterministic=deterministic, **kwargs)
    # the forward's indices, passed back, give the same gradient as recomputing them
    assert_matches(simulated(grad.max_pool2d, go, x, indices=indices, data_format=data_format,
                             deterministic=deterministic, **kwargs),
                   grad.max_pool2d(go, x, data_format=data_format, **kwargs))


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_max_pool2d_propagates_nan(rng, data_format):
    x = random_input(rng, (2, 2, 7, 8), np.float32)
    x[0, 0, 1, 1] = x[0, 0, 2, 2] = x[1, 1, 6, 7] = np.nan   # two NaNs share windows
    x = to_layout(x, data_format)
    kwargs = dict(kernel_size=3, stride=2, padding=1, data_format=data_format)
    y, _ = check_all_orders(gpuconv.max_pool2d, x, return_indices=True, **kwargs)
    assert np.isnan(y).sum() >= 3
    check_all_orders(grad.max_pool2d, grad_output_for(rng, y), x, **kwargs)


def test_max_pool2d_non_contiguous_and_empty_batch(rng):
    x = random_input(rng, (2, 3, 9, 14), np.float32)[:, :, :, ::2]
    assert not x.flags.c_contiguous
    check_all_orders(gpuconv.max_pool2d, x, 3, 2, 1, return_indices=True)
    empty = np.zeros((0, 3, 5, 5), np.float32)
    y = simulated(gpuconv.max_pool2d, empty, 2)
    assert y.shape == (0, 3, 2, 2)


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("options", [dict(), dict(count_include_pad=False),
                                     dict(divisor_override=5), dict(divisor_override=-3)])
@pytest.mark.parametrize("case", NO_DILATION)
@BOUND_TABLES
def test_avg_pool2d_and_grad(rng, monkeypatch, case, options, dtype, data_format, bound_tables):
    if not bound_tables:
        divide_per_element(monkeypatch)
    shape, kwargs = WINDOWS[case]
    x = to_layout(random_input(rng, shape, dtype), data_format)
    kwargs = dict(kwargs, **options, data_format=data_format)
    y = check_all_orders(gpuconv.avg_pool2d, x, **kwargs)
    check_all_orders(grad.avg_pool2d, grad_output_for(rng, y), x, **kwargs)


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("kwargs, global_path", [
    (dict(kernel_size=(5, 6)), True),
    (dict(kernel_size=(5, 6), ceil_mode=True, count_include_pad=False), True),
    (dict(kernel_size=(5, 6), divisor_override=7), False),
    (dict(kernel_size=(5, 5)), False),
    (dict(kernel_size=(5, 6), padding=(0, 1), stride=2), False),
])
def test_avg_pool2d_of_the_whole_plane_is_a_global_average(rng, monkeypatch, kwargs,
                                                            global_path, data_format):
    from gpuconv.pool import launch_global
    global_names = record_launches(monkeypatch, launch_global)
    x = to_layout(random_input(rng, (2, 3, 5, 6), np.float32), data_format)
    y = check_all_orders(gpuconv.avg_pool2d, x, data_format=data_format, **kwargs)
    check_all_orders(grad.avg_pool2d, grad_output_for(rng, y), x, data_format=data_format,
                     **kwargs)
    assert bool(global_names) == global_path


LP_CASES = {
    "p2_k3s2": ((2, 3, 7, 9), 2.0, dict(kernel_size=3, stride=2), "normal"),
    "p1_ceil": ((1, 2, 6, 7), 1.0, dict(kernel_size=(2, 3), ceil_mode=True), "normal"),
    "p3_signed": ((1, 2, 5, 6), 3.0, dict(kernel_size=2, stride=1), "normal"),
    "p1.5_ceil": ((2, 1, 7, 7), 1.5, dict(kernel_size=3, stride=2, ceil_mode=True), "positive"),
    "p-1.5": ((1, 2, 5, 6), -1.5, dict(kernel_size=2, stride=1), "positive"),
    # +-inf: the largest / smallest |x| of each window, through the max-pooling kernels
    "pinf_ceil": ((1, 2, 6, 7), np.inf, dict(kernel_size=(2, 3), ceil_mode=True), "ties"),
    "p-inf": ((2, 1, 7, 7), -np.inf, dict(kernel_size=3, stride=2), "normal"),
}


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", list(LP_CASES))
def test_lp_pool2d_and_grad(rng, case, dtype, data_format):
    shape, norm_type, kwargs, kind = LP_CASES[case]
    x = to_layout(random_input(rng, shape, dtype, kind), data_format)
    kwargs = dict(kwargs, data_format=data_format)
    y = check_all_orders(gpuconv.lp_pool2d, x, norm_type, **kwargs)
    check_all_orders(grad.lp_pool2d, grad_output_for(rng, y), x, norm_type, **kwargs)


@pytest.mark.parametrize("norm_type", [0.5, -0.5, 2.0, -1.0, 1.5])
def test_lp_pool2d_takes_torch_powers_at_infinities_and_zeros(norm_type):
    """PyTorch's pow(tensor, p) is sqrt for p = 0.5 (NaN at -inf, where C's pow gives +inf),
    1/sqrt for -0.5, and arithmetic for 2, 3, -1, -2; the kernels and the reference follow it."""
    x = np.array([[-np.inf, 4.0, 9.0], [-0.0, 0.0, 1.0], [np.inf, 2.0, -3.0]], np.float32)
    x = x.reshape(1, 1, 3, 3)
    y = check_all_orders(gpuconv.lp_pool2d, x, norm_type, (1, 3), orders=("forward",))
    torch = pytest.importorskip("torch")
    expected = torch.nn.functional.lp_pool2d(torch.from_numpy(x), norm_type, (1, 3)).numpy()
    np.testing.assert_allclose(y, expected, rtol=1e-6, equal_nan=True)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_windows_match_the_reference(data):
    """Random window geometries (any kernel, stride, padding <= kernel / 2, dilation, ceil_mode)
    on small odd maps just large enough for one output, both layouts, max and average pooling
    with their gradients, in a random thread order."""
    draw = data.draw
    R, S = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    pad = (draw(st.integers(0, R // 2)), draw(st.integers(0, S // 2)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    # the smallest input with an output: (kernel - 1) * dilation + 1 <= size + 2 * pad
    min_h = max(1, (R - 1) * dilation[0] + 1 - 2 * pad[0])
    min_w = max(1, (S - 1) * dilation[1] + 1 - 2 * pad[1])
    H, W = draw(st.integers(min_h, min_h + 6)), draw(st.integers(min_w, min_w + 6))
    kwargs = dict(kernel_size=(R, S), stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
                  padding=pad, ceil_mode=draw(st.booleans()),
                  data_format=draw(st.sampled_from(["NCHW", "NHWC"])))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    x = to_layout(random_input(rng, (2, 3, H, W), np.float64, "ties"), kwargs["data_format"])
    orders = (draw(st.sampled_from(ORDERS)),)
    y = check_all_orders(gpuconv.max_pool2d, x, dilation=dilation, orders=orders, **kwargs)
    check_all_orders(grad.max_pool2d, grad_output_for(rng, y), x, dilation=dilation,
                     orders=orders, **kwargs)
    if H + 2 * pad[0] >= R and W + 2 * pad[1] >= S:
        y = check_all_orders(gpuconv.avg_pool2d, x, orders=orders, **kwargs)
        check_all_orders(grad.avg_pool2d, grad_output_for(rng, y), x, orders=orders, **kwargs)


# --------------------------------------------------------------------------------------------
# adaptive and global pooling

ADAPTIVE = {
    "shrink": ((2, 3, 7, 9), (3, 4)),
    "grow": ((1, 2, 5, 5), (7, 8)),          # P > H: bins overlap and repeat rows
    "keep_width": ((1, 2, 9, 4), (2, None)),
    "to_one": ((2, 2, 5, 6), 1),
    "shrink_rows_grow_columns": ((1, 2, 11, 4), (4, 6)),
    "13_to_6": ((1, 3, 13, 13), (6, 6)),     # torchvision's AlexNet head: bins of 3, overlapping
}


@DETERMINISTIC
@BOUND_TABLES
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", list(ADAPTIVE))
def test_adaptive_pools_and_grads(rng, monkeypatch, case, dtype, data_format, bound_tables,
                                  deterministic):
    if not bound_tables:
        divide_per_element(monkeypatch)
    shape, output_size = ADAPTIVE[case]
    x = to_layout(random_input(rng, shape, dtype, "ties"), data_format)
    y, _ = check_all_orders(gpuconv.adaptive_max_pool2d, x, output_size, return_indices=True,
                            data_format=data_format)
    check_all_orders(grad.adaptive_max_pool2d, grad_output_for(rng, y), x, output_size,
                     data_format=data_format, deterministic=deterministic)
    x = to_layout(random_input(rng, shape, dtype), data_format)
    y = check_all_orders(gpuconv.adaptive_avg_pool2d, x, output_size, data_format=data_format)
    check_all_orders(grad.adaptive_avg_pool2d, grad_output_for(rng, y), x, output_size,
                     data_format=data_format)


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", ["shrink", "keep_width", "13_to_6"])
def test_two_bin_gathers_give_the_loops_bits(rng, monkeypatch, case, dtype, data_format):
    """The adaptive backward gathers with kTwoBins (fixed 2 x 2 candidates) sum the same terms
    in the same order as their run-time loops: the same bits."""
    from gpuconv.pool import launch_adaptive
    shape, output_size = ADAPTIVE[case]
    x = to_layout(random_input(rng, shape, dtype, "ties"), data_format)
    y = gpuconv.adaptive_avg_pool2d(x, output_size, data_format=data_format)
    go = grad_output_for(rng, y)
    calls = [lambda: grad.adaptive_avg_pool2d(go, x, output_size, data_format=data_format),
             lambda: grad.adaptive_max_pool2d(go, x, output_size, data_format=data_format,
                                              deterministic=True)]
    names = record_launches(monkeypatch, launch_common)
    two_bins = [simulated(call, order="random") for call in calls]
    template_args = [name[name.index("<") + 1:-1].split(", ") for name in names]
    assert sum("backward" in name and args[2] == "true"       # <T, NHWC, kTwoBins, ...>
               for name, args in zip(names, template_args)) == 2
    assert_same_bits_with_run_time_loops(monkeypatch, calls, two_bins,
                                         (launch_adaptive, "_two_bins", lambda geom: "false"))


# The NHWC kernels with a thread per 16-byte channel vector (kVectors): name -> (x NCHW, its C
# a multiple of every dtype's vector (8 halves), the forward, its gradient (grad_output, x)).
# Every call is NHWC; the max gradients gather (deterministic=True).
def _nhwc(fn, *args, **kwargs):
    return lambda *arrays: fn(*arrays, *args, data_format="NHWC", **kwargs)


def _pooling(forward, gradient, *args, **kwargs):
    return _nhwc(forward, *args, **kwargs), _nhwc(gradient, *args, **kwargs)


def _max_pooling(*args, **kwargs):
    return (_nhwc(gpuconv.max_pool2d, *args, return_indices=True, **kwargs),
            _nhwc(grad.max_pool2d, *args, deterministic=True, **kwargs))


CHANNEL_VECTOR_CASES = {
    # two bins per axis (kTwoBins); bins that repeat rows (the run-time loops)
    "adaptive_13_to_6": ((1, 16, 13, 13), *_pooling(gpuconv.adaptive_avg_pool2d,
                                                    grad.adaptive_avg_pool2d, 6)),
    "adaptive_grow": ((2, 8, 3, 5), *_pooling(gpuconv.adaptive_avg_pool2d,
                                              grad.adaptive_avg_pool2d, (5, 7))),
    # compile-time windows (a ceil_mode edge, padding left out of the divisor) and run-time ones
    "avg_2x2_s2": ((1, 8, 7, 6), *_pooling(gpuconv.avg_pool2d, grad.avg_pool2d, 2, 2,
                                           ceil_mode=True)),
    "avg_3x3_s1_p1": ((1, 16, 5, 6), *_pooling(gpuconv.avg_pool2d, grad.avg_pool2d, 3, 1, 1,
                                               count_include_pad=False)),
    "avg_3x3_s2_p1": ((2, 8, 7, 7), *_pooling(gpuconv.avg_pool2d, grad.avg_pool2d, 3, 2, 1)),
    "avg_3x2_override": ((1, 8, 6, 7), *_pooling(gpuconv.avg_pool2d, grad.avg_pool2d, (3, 2),
                                                 (2, 1), (1, 0), divisor_override=-5)),
    "max_3x3_s2_p1": ((2, 8, 7, 7), *_max_pooling(3, 2, 1)),
    "max_3x3_s1_p1": ((1, 16, 5, 6), *_max_pooling(3, 1, 1)),
    "max_2x2_s1": ((1, 8, 5, 4), *_max_pooling(2, 1)),
    "max_3x2_dilated_ceil": ((1, 8, 9, 7), *_max_pooling((3, 2), (2, 1), (1, 1), dilation=2,
                                                         ceil_mode=True)),
}


def _outputs(result) -> tuple:
    """A pooling's outputs as a tuple: (values,) or the max poolings' (values, indices)."""
    return result if isinstance(result, tuple) else (result,)


def same_bits(a, b) -> bool:
    """The same outputs, bit for bit: values, and the max poolings' indices too."""
    a, b = _outputs(a), _outputs(b)
    return len(a) == len(b) and all(bitwise_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", list(CHANNEL_VECTOR_CASES))
def test_channel_vectors_give_one_channel_per_thread_bits(rng, monkeypatch, case, dtype, order):
    """The NHWC kernels with a thread per 16-byte channel vector compute each channel as a
    thread per element does (the same taps or terms in the same order): the same bits (values
    and indices), and the reference's. An operand off the 16-byte grid takes one channel per
    thread, still right."""
    shape, forward, gradient = CHANNEL_VECTOR_CASES[case]
    x = to_layout(random_input(rng, shape, dtype, "ties" if "max" in case else "normal"),
                  "NHWC")
    names = record_launches(monkeypatch, launch_common)
    y = simulated(forward, x, order=order)
    assert names[-1].endswith(", true>")
    assert same_bits(y, simulated(forward, misaligned_copy(x), order=order))
    assert names[-1].endswith(", false>")
    assert_matches(y, forward(x))
    go = grad_output_for(rng, _outputs(y)[0])
    got = simulated(gradient, go, x, order=order)
    assert "backward" in names[-1] and names[-1].endswith(", true>")
    assert bitwise_equal(got, simulated(gradient, misaligned_copy(go), x, order=order))
    assert names[-1].endswith(", false>")
    assert_matches(got, gradient(go, x))


def test_adaptive_bins_past_32_bit_products(rng):
    """Bin bounds floor(i * H / P) whose product passes 2^31 take the 64-bit division."""
    x = random_input(rng, (1, 1, 70_000, 1), np.float64)
    output_size = (69_000, 1)                   # 68_999 * 70_000 > 2^32
    y = check_all_orders(gpuconv.adaptive_avg_pool2d, x, output_size, orders=("forward",))
    check_all_orders(grad.adaptive_avg_pool2d, grad_output_for(rng, y), x, output_size,
                     orders=("forward",))


GLOBAL = {
    "7x7": (2, 3, 7, 7),           # ResNet's last feature map: staged planes in NCHW
    "tall": (1, 37, 20, 13),       # 37 channels: a partial lane chunk in NHWC; a warp per plane
    "large_plane": (1, 2, 33, 40),  # several warps per plane in NCHW, 128 rows in NHWC
    "vectors": (3, 40, 5, 6),      # 16-byte channel vectors in NHWC for every dtype
    "many_planes": (3, 100, 4, 3),  # two staged runs (fp32); vectors for 4-byte types only
}


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", list(GLOBAL))
def test_global_pools_and_grads(rng, case, dtype, data_format):
    shape = GLOBAL[case]
    x = random_input(rng, shape, dtype, "ties")
    H, W = shape[2:]
    x[0, 0, 3 % H, 4 % W] = np.nan
    x[-1, -1, 1, 2] = x[-1, -1, 5 % H, 0] = np.nan    # the last NaN's index wins
    x[0, 1] = -np.inf                                 # an all -inf plane reports its first element
    x = to_layout(x, data_format)
    y = check_all_orders(gpuconv.global_max_pool2d, x, data_format=data_format)
    check_all_orders(grad.global_max_pool2d, grad_output_for(rng, y), x, data_format=data_format)
    x = to_layout(random_input(rng, shape, dtype), data_format)
    y = check_all_orders(gpuconv.global_avg_pool2d, x, data_format=data_format)
    check_all_orders(grad.global_avg_pool2d, grad_output_for(rng, y), x, data_format=data_format)


@pytest.mark.parametrize("case, data_format, forward, backward", [
    ("7x7", "NCHW", "global_pool2d_nchw_staged<float", "global_pool2d_backward_nchw<float"),
    ("tall", "NCHW", "global_pool2d_nchw<float", "global_pool2d_backward_nchw<float"),
    ("vectors", "NHWC", "global_pool2d_nhwc<float, false, false, true>",
     "global_pool2d_backward_nhwc<float, false, true>"),
    ("tall", "NHWC", "global_pool2d_nhwc<float, false, false, false>",
     "global_pool2d_backward_nhwc<float, false, false>")])
def test_global_pool_cases_take_their_kernels(monkeypatch, rng, case, data_format, forward,
                                              backward):
    from gpuconv.pool import launch_global
    launched = record_launches(monkeypatch, launch_global)
    x = to_layout(random_input(rng, GLOBAL[case], np.float32), data_format)
    y = simulated(gpuconv.global_avg_pool2d, x, data_format=data_format)
    simulated(grad.global_avg_pool2d, y, x, data_format=data_format)
    assert len(launched) == 2
    assert launched[0].startswith(forward) and launched[1].startswith(backward)


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", ["7x7", "large_plane", "vectors", "many_planes"])
def test_global_pools_loop_over_the_grid(monkeypatch, rng, case, data_format):
    """One block (one image in NHWC) takes every run, plane group or image in turn, forward
    and backward."""
    from gpuconv.pool import launch_global
    monkeypatch.setattr(launch_global, "MAX_BLOCKS", 1)
    monkeypatch.setattr(launch_global, "MAX_GRID_Y", 1)
    x = to_layout(random_input(rng, GLOBAL[case], np.float32, "ties"), data_format)
    y = check_all_orders(gpuconv.global_max_pool2d, x, data_format=data_format)
    check_all_orders(grad.global_max_pool2d, grad_output_for(rng, y), x, data_format=data_format)
    x = to_layout(random_input(rng, GLOBAL[case], np.float64), data_format)
    y = check_all_orders(gpuconv.global_avg_pool2d, x, data_format=data_format)
    check_all_orders(grad.global_avg_pool2d, grad_output_for(rng, y), x, data_format=data_format)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_global_avg_pool_nhwc_same_bits_without_vectors(rng, dtype):
    """An x not aligned for the channel vectors runs one channel per lane, summing each channel
    in the same order: the same bits as the aligned array."""
    x = to_layout(random_input(rng, GLOBAL["vectors"], dtype), "NHWC")
    buffer = np.empty(x.size + 1, dtype=x.dtype)
    shifted = buffer[1:].reshape(x.shape)
    shifted[...] = x
    aligned = simulated(gpuconv.global_avg_pool2d, x, data_format="NHWC")
    assert bitwise_equal(simulated(gpuconv.global_avg_pool2d, shifted, data_format="NHWC"),
                         aligned)


def test_global_max_pool2d_grad_matches_adaptive_indices(rng):
    x = random_input(rng, (2, 3, 6, 5), np.float32, "ties")
    _, indices = gpuconv.adaptive_max_pool2d(x, 1, return_indices=True)
    go = random_input(rng, (2, 3, 1, 1), np.float32)
    assert_matches(simulated(grad.global_max_pool2d, go, x, indices=indices),
                   grad.global_max_pool2d(go, x))


# --------------------------------------------------------------------------------------------
# spatial pyramid pooling and max unpooling

SPP = {
    "default_levels": ((2, 3, 9, 7), (1, 2, 4)),
    "unordered": ((1, 4, 5, 6), (3, 1)),
    "ten_levels": ((1, 2, 11, 10), tuple(range(1, 11))),   # two launches of at most 8 levels
}


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("case", list(SPP))
def test_spatial_pyramid_pool2d_and_grad(rng, case, mode, dtype, data_format):
    shape, levels = SPP[case]
    x = to_layout(random_input(rng, shape, dtype, "ties" if mode == "max" else "normal"),
                  data_format)
    y = check_all_orders(gpuconv.spatial_pyramid_pool2d, x, levels, mode, data_format=data_format)
    check_all_orders(grad.spatial_pyramid_pool2d, grad_output_for(rng, y), x, levels, mode,
                     data_format=data_format)


UNPOOL = {
    "k2s2": ((2, 3, 8, 6), dict(kernel_size=2, stride=2), None),
    # overlapping windows: several outputs share an index, the last in row-major order wins
    "overlapping": ((1, 2, 7, 7), dict(kernel_size=3, stride=1, padding=1), None),
    "output_size": ((1, 2, 7, 9), dict(kernel_size=3, stride=2, padding=1), (7, 10)),
}


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", list(UNPOOL))
def test_max_unpool2d_and_grad(rng, case, dtype, data_format):
    shape, kwargs, output_size = UNPOOL[case]
    source = to_layout(random_input(rng, shape, dtype, "ties"), data_format)
    pooled, indices = gpuconv.max_pool2d(source, return_indices=True, data_format=data_format,
                                         **kwargs)
    pool_args = dict(kwargs, output_size=output_size, data_format=data_format)
    y = check_all_orders(gpuconv.max_unpool2d, pooled, indices, **pool_args)
    check_all_orders(grad.max_unpool2d, grad_output_for(rng, y), pooled, indices, **pool_args)
    if case == "overlapping":
        assert len(np.unique(indices)) < indices.size


# The windows whose backward gathers have compile-time candidates (launch_window's
# AVG_/MAX_GATHER_WINDOWS), in the corners that matter: padding, ceil_mode's last window, odd
# sizes, more outputs than fit one stride.
COMPILE_TIME_GATHERS = {
    "k2s2": ((2, 3, 9, 8), dict(kernel_size=2, stride=2)),
    "k2s2p1_ceil": ((1, 2, 7, 9), dict(kernel_size=2, stride=2, padding=1, ceil_mode=True)),
    "k3s1p1": ((2, 2, 7, 6), dict(kernel_size=3, stride=1, padding=1)),
    "k3s1_ceil": ((1, 3, 6, 8), dict(kernel_size=3, stride=1, ceil_mode=True)),
    "k3s2p1": ((2, 2, 9, 8), dict(kernel_size=3, stride=2, padding=1)),
    "k3s2_ceil": ((1, 2, 8, 9), dict(kernel_size=3, stride=2, ceil_mode=True)),
}


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", list(COMPILE_TIME_GATHERS))
def test_compile_time_gathers_give_the_run_time_bits(rng, monkeypatch, case, dtype, data_format):
    """avg_pool2d_backward / max_pool2d_backward with kWindow, kStride sum the same terms with
    the same divisors in the same order as with run-time bounds: the same bits."""
    from gpuconv.pool import launch_window
    shape, kwargs = COMPILE_TIME_GATHERS[case]
    x = to_layout(random_input(rng, shape, dtype, "ties"), data_format)
    go = grad_output_for(rng, gpuconv.avg_pool2d(x, data_format=data_format, **kwargs))
    calls = [lambda: grad.avg_pool2d(go, x, data_format=data_format, **kwargs),
             lambda: grad.avg_pool2d(go, x, count_include_pad=False, data_format=data_format,
                                     **kwargs),
             lambda: grad.avg_pool2d(go, x, divisor_override=7, data_format=data_format,
                                     **kwargs),
             lambda: grad.max_pool2d(go, x, deterministic=True, data_format=data_format,
                                     **kwargs)]
    names = record_launches(monkeypatch, launch_common)
    specialized = [simulated(call, order="random") for call in calls]
    taps, stride = kwargs["kernel_size"], kwargs["stride"]
    window = f", {taps}, {stride}"            # <T, NHWC, kWindow, kStride[, kVectors]>
    assert sum(window in name for name in names) == (4 if (taps, stride) != (2, 2) else 3)
    assert_same_bits_with_run_time_loops(monkeypatch, calls, specialized,
                                         (launch_window, "AVG_GATHER_WINDOWS", ()),
                                         (launch_window, "MAX_GATHER_WINDOWS", ()))


@pytest.mark.parametrize("kwargs, half_gathers", [
    (dict(kernel_size=3, stride=2, padding=1), True),       # a compile-time gather window
    (dict(kernel_size=3, stride=1, padding=1), True),
    (dict(kernel_size=3, stride=2, dilation=2), False),     # run-time bounds: the scatter
], ids=["3x3s2", "3x3s1", "3x3s2d2"])
@pytest.mark.parametrize("dtype", [np.float16, *BFLOAT16, np.float32],
                         ids=["float16", *["bfloat16"] * len(BFLOAT16), "float32"])
def test_max_backward_formulation_by_default(rng, monkeypatch, dtype, kwargs, half_gathers):
    """Overlapping max windows in the default mode: the half types take the gather under the
    compile-time windows (launch_switches.gather_wins: faster there), with the deterministic
    mode's bits; float32 and other windows take the atomic scatter."""
    x = random_input(rng, (2, 3, 11, 10), dtype, "ties")
    y, indices = simulated(lambda: gpuconv.max_pool2d(x, return_indices=True, **kwargs))
    go = grad_output_for(rng, y)
    names = record_launches(monkeypatch, launch_common)
    default = simulated(lambda: grad.max_pool2d(go, x, indices=indices, **kwargs),
                        order="random")
    gathered = half_gathers and dtype != np.float32
    assert any("max_pool2d_backward" in n for n in names) == gathered
    assert any("scatter" in n for n in names) != gathered
    deterministic = simulated(lambda: grad.max_pool2d(go, x, indices=indices, deterministic=True,
                                                      **kwargs))
    if gathered:
        np.testing.assert_array_equal(default.view(np.uint16), deterministic.view(np.uint16))
    else:
        np.testing.assert_allclose(np.asarray(default, np.float64),
                                   np.asarray(deterministic, np.float64), rtol=1e-2, atol=1e-2)


# --------------------------------------------------------------------------------------------
# determinism: every pooling backward is a gather, bitwise identical in every thread order

GRADIENTS = {
    "max_pool2d": lambda go, x: grad.max_pool2d(go, x, 3, 2, 1, deterministic=True),
    "avg_pool2d": lambda go, x: grad.avg_pool2d(go, x, 3, 1, 1, deterministic=True),
    "lp_pool2d": lambda go, x: grad.lp_pool2d(go, abs(x), 2.0, 3, 1, deterministic=True),
    "adaptive_avg_pool2d": lambda go, x: grad.adaptive_avg_pool2d(go, x, (7, 6),
                                                                  deterministic=True),
    "spatial_pyramid_pool2d": lambda go, x: grad.spatial_pyramid_pool2d(go, x, (1, 3), "avg",
                                                                        deterministic=True),
}


@pytest.mark.parametrize("name", list(GRADIENTS))
def test_backward_is_bitwise_deterministic(rng, name):
    x = random_input(rng, (2, 3, 9, 8), np.float32)
    forward = {"max_pool2d": lambda: gpuconv.max_pool2d(x, 3, 2, 1),
               "avg_pool2d": lambda: gpuconv.avg_pool2d(x, 3, 1, 1),
               "lp_pool2d": lambda: gpuconv.lp_pool2d(abs(x), 2.0, 3, 1),
               "adaptive_avg_pool2d": lambda: gpuconv.adaptive_avg_pool2d(x, (7, 6)),
               "spatial_pyramid_pool2d": lambda: gpuconv.spatial_pyramid_pool2d(x, (1, 3), "avg")}
    go = grad_output_for(rng, forward[name]())
    results = [simulated(GRADIENTS[name], go, x, order=order) for order in ORDERS]
    assert all(bitwise_equal(results[0], r) for r in results[1:])


# --------------------------------------------------------------------------------------------
# on a GPU (skipped without one)

GPU_CASES = {
    "max_pool2d": lambda x: gpuconv.max_pool2d(x, 3, 2, 1, return_indices=True),
    "avg_pool2d": lambda x: gpuconv.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False),
    "lp_pool2d": lambda x: gpuconv.lp_pool2d(x, 2.0, 3, 2),
    "adaptive_max_pool2d": lambda x: gpuconv.adaptive_max_pool2d(x, (4, 5), return_indices=True),
    "adaptive_avg_pool2d": lambda x: gpuconv.adaptive_avg_pool2d(x, (4, 5)),
    "global_avg_pool2d": lambda x: gpuconv.global_avg_pool2d(x),
    "global_max_pool2d": lambda x: gpuconv.global_max_pool2d(x),
    "spatial_pyramid_pool2d": lambda x: gpuconv.spatial_pyramid_pool2d(x, (1, 2, 4), "max"),
    "grad_max_pool2d": lambda x: grad.max_pool2d(_ramp_like_output(x, 3, 2, 1), x, 3, 2, 1),
    "grad_avg_pool2d": lambda x: grad.avg_pool2d(_ramp_like_output(x, 3, 2, 1), x, 3, 2, 1),
    # indices handed over: checked on the device (kernels/pool/indices_check.cu) for CuPy
    "grad_max_pool2d_indices": lambda x: grad.max_pool2d(
        _ramp_like_output(x, 3, 2, 1), x, 3, 2, 1,
        indices=gpuconv.max_pool2d(x, 3, 2, 1, return_indices=True)[1]),
}


def _ramp_like_output(x, kernel_size, stride, padding):
    """A grad_output for the pooling's output: a ramp, in x's array library."""
    xp = xp_of(library_of("x", x))
    y = gpuconv.max_pool2d(x, kernel_size, stride, padding)
    return xp.linspace(-1.0, 1.0, y.size).astype(x.dtype).reshape(y.shape)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", list(GPU_CASES))
def test_gpu_matches_reference(rng, name, dtype):
    import cupy
    x = random_input(rng, (4, 37, 23, 29), dtype, "ties" if "max" in name else "normal")
    if name == "lp_pool2d":
        x = abs(x)
    expected = GPU_CASES[name](x)
    got = GPU_CASES[name](cupy.asarray(x))
    as_host = tuple(cupy.asnumpy(g) for g in got) if isinstance(got, tuple) else cupy.asnumpy(got)
    assert_matches(as_host, expected)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", list(CHANNEL_VECTOR_CASES))
def test_gpu_channel_vectors_match_reference(rng, case, dtype):
    import cupy
    shape, forward, gradient = CHANNEL_VECTOR_CASES[case]
    x = to_layout(random_input(rng, shape, dtype, "ties" if "max" in case else "normal"),
                  "NHWC")
    y = tuple(cupy.asnumpy(a) for a in _outputs(forward(cupy.asarray(x))))
    assert same_bits(y, simulated(forward, x))
    go = grad_output_for(rng, y[0])
    got = cupy.asnumpy(gradient(cupy.asarray(go), cupy.asarray(x)))
    assert bitwise_equal(got, simulated(gradient, go, x))
    assert_matches(got, gradient(go, x))


@pytest.mark.gpu
@pytest.mark.parametrize("value, message",
                         [(10 ** 6, "flat positions"), (0, "outside that window")])
def test_gpu_refuses_indices_the_forward_cannot_give(rng, value, message):
    import cupy
    x = cupy.asarray(random_input(rng, (2, 3, 9, 11), np.float32, "normal"))
    indices = gpuconv.max_pool2d(x, 3, 2, 1, return_indices=True)[1]
    indices[1, 2, 4, 5] = value            # output (4, 5)'s window starts at row 7, column 9
    with pytest.raises(ValueError, match=message) as error:
        grad.max_pool2d(_ramp_like_output(x, 3, 2, 1), x, 3, 2, 1, indices=indices)
    assert "indices[(1, 2, 4, 5)]" in str(error.value)


def test_bound_tables_where_they_pay():
    # vgga.pool1's backward (2x2 windows over 224x224, N64 C64): 12 elements per thread to
    # visit, 4 table entries per thread to fill: tables. A 3-channel image alone: one element
    # per thread against 4 entries: per-element bounds. A plane past the shared-memory cap: none.
    assert launch_common.bound_tables(4 * 224, 64 * 64 * 224 * 224) == (1, 4 * 4 * 224)
    assert launch_common.bound_tables(4 * 224, 3 * 224 * 224) == (0, 0)
    assert launch_common.bound_tables(8192, 1 << 30) == (0, 0)
