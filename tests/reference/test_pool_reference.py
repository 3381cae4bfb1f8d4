"""The pooling reference (gpuconv.reference.pool) against plain Python loops written from the
definitions (PyTorch's CPU loops, torch's output-size formula with exact fractions, adaptive
windows from floor/ceil of fractions), worked examples computed by hand, and hypothesis
properties on random geometries. No torch needed."""
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from gpuconv.pool.geometry import pool2d_geometry
from gpuconv.reference import pool as ref

# --------------------------------------------------------------------------------------------
# oracles: loops over every output and every tap


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def loop_pooled_size(size, k, s, p, d, ceil_mode):
    exact = Fraction(size + 2 * p - (d * (k - 1) + 1), s) + 1
    out = math.ceil(exact) if ceil_mode else math.floor(exact)
    # torch: in ceil_mode the last window must start inside the input or the left padding
    if ceil_mode and (out - 1) * s - p >= size:
        out -= 1
    return out


def scan_max(values_at):
    """PyTorch's scan: start at -inf with the first in-input position, take v if v > best or v
    is NaN. ``values_at``: (value, flat index) of the in-input taps in row-major order."""
    best, best_at = -math.inf, None
    for v, at in values_at:
        if best_at is None:
            best_at = at
        if v > best or math.isnan(v):
            best, best_at = v, at
    return best, (-1 if best_at is None else best_at)


def loop_max_pool(x, k, s=None, p=0, d=1, ceil_mode=False):
    N, C, H, W = x.shape
    (R, S), (sh, sw) = pair(k), pair(k if s is None else s)
    (ph, pw), (dh, dw) = pair(p), pair(d)
    P, Q = loop_pooled_size(H, R, sh, ph, dh, ceil_mode), loop_pooled_size(W, S, sw, pw, dw, ceil_mode)
    out, idx = np.empty((N, C, P, Q)), np.empty((N, C, P, Q), dtype=np.int64)
    for n in range(N):
        for c in range(C):
            for i in range(P):
                for j in range(Q):
                    taps = []
                    for r in range(R):
                        for t in range(S):
                            h, w = i * sh - ph + r * dh, j * sw - pw + t * dw
                            if 0 <= h < H and 0 <= w < W:
                                taps.append((float(x[n, c, h, w]), h * W + w))
                    out[n, c, i, j], idx[n, c, i, j] = scan_max(taps)
    return out, idx


def loop_avg_pool(x, k, s=None, p=0, ceil_mode=False, count_include_pad=True, divisor_override=None):
    N, C, H, W = x.shape
    (R, S), (sh, sw), (ph, pw) = pair(k), pair(k if s is None else s), pair(p)
    P, Q = loop_pooled_size(H, R, sh, ph, 1, ceil_mode), loop_pooled_size(W, S, sw, pw, 1, ceil_mode)
    out = np.empty((N, C, P, Q))
    for n in range(N):
        for c in range(C):
            for i in range(P):
                for j in range(Q):
                    # the window, and the part of it inside input + padding (torch's pool_size)
                    h0, w0 = i * sh - ph, j * sw - pw
                    h1, w1 = min(h0 + R, H + ph), min(w0 + S, W + pw)
                    inside = [(h, w) for h in range(max(h0, 0), min(h1, H))
                              for w in range(max(w0, 0), min(w1, W))]
                    total = sum(float(x[n, c, h, w]) for h, w in inside)
                    if divisor_override is not None:
                        divisor = divisor_override
                    elif count_include_pad:
                        divisor = (h1 - h0) * (w1 - w0)
                    else:
                        divisor = len(inside)
                    out[n, c, i, j] = total / divisor
    return out


def torch_pow(base, exponent):
    if math.isnan(base):
        return math.nan
    if base < 0 and exponent != int(exponent):
        return math.nan
    if base == 0 and exponent < 0:
        return math.inf
    return base ** exponent


@np.errstate(invalid="ignore")
def loop_lp_pool(x, p, k, s=None, ceil_mode=False):
    R, S = pair(k)
    f = loop_avg_pool(np.vectorize(lambda v: torch_pow(float(v), p))(x), k, s, 0, ceil_mode)
    sign = np.vectorize(lambda v: float(int(v > 0) - int(v < 0)))(f)   # torch.sign(nan) == 0
    return np.vectorize(lambda v: torch_pow(v, 1.0 / p))(sign * np.abs(f) * (R * S))


def loop_adaptive_window(i, out_size, in_size):
    return math.floor(Fraction(i * in_size, out_size)), math.ceil(Fraction((i + 1) * in_size, out_size))


def loop_adaptive(x, output_size, mode):
    N, C, H, W = x.shape
    P, Q = pair(output_size)
    out, idx = np.empty((N, C, P, Q)), np.empty((N, C, P, Q), dtype=np.int64)
    for n in range(N):
        for c in range(C):
            for i in range(P):
                for j in range(Q):
                    h0, h1 = loop_adaptive_window(i, P, H)
                    w0, w1 = loop_adaptive_window(j, Q, W)
                    taps = [(float(x[n, c, h, w]), h * W + w) for h in range(h0, h1) for w in range(w0, w1)]
                    if mode == "max":
                        out[n, c, i, j], idx[n, c, i, j] = scan_max(taps)
                    else:
                        out[n, c, i, j] = sum(v for v, _ in taps) / len(taps)
    return out, idx


def loop_unpool(x, indices, output_size):
    N, C, P, Q = x.shape
    H, W = output_size
    out = np.zeros((N, C, H, W), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(P):
                for j in range(Q):
                    at = int(indices[n, c, i, j])
                    out[n, c, at // W, at % W] = x[n, c, i, j]
    return out


def assert_same(actual, expected):
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12, equal_nan=True)


# --------------------------------------------------------------------------------------------
# sliding windows against the loops

MAX_CASES = [
    # (H, W), kernel, stride, padding, dilation, ceil_mode
    ((5, 5), 2, None, 0, 1, False),
    ((5, 5), 2, None, 0, 1, True),
    ((7, 6), 3, 2, 1, 1, False),
    ((7, 6), 3, 2, 1, 1, True),
    ((6, 7), (3, 2), (2, 1), (1, 1), 1, True),
    ((8, 8), 3, 1, 1, 2, False),
    ((8, 7), (2, 3), (3, 2), (1, 0), (2, 3), True),
    ((4, 4), 2, 3, 1, 1, True),                    # ceil_mode drops a window starting in the padding
    ((5, 4), 4, 3, 2, 1, True),
    ((1, 1), 1, 1, 0, 1, False),
    ((3, 9), (1, 4), (1, 3), (0, 2), (1, 2), True),
    ((2, 2), 2, 1, 1, 3, False),                   # a window of padding only
]


@pytest.mark.parametrize("hw,k,s,p,d,ceil_mode", MAX_CASES)
def test_max_pool_matches_loops(hw, k, s, p, d, ceil_mode, rng):
    # Few distinct values: ties inside windows are common, so the index rule is exercised.
    x = rng.integers(0, 4, size=(2, 3) + hw).astype(np.float64)
    values, indices = ref.max_pool2d(x, k, s, p, d, ceil_mode)
    expected, expected_indices = loop_max_pool(x, k, s, p, d, ceil_mode)
    assert_same(values, expected)
    np.testing.assert_array_equal(indices, expected_indices)
    assert indices.dtype == np.int64


AVG_CASES = [
    # (H, W), kernel, stride, padding, ceil_mode
    ((5, 5), 2, None, 0, False),
    ((5, 5), 2, None, 0, True),
    ((7, 6), 3, 2, 1, False),
    ((7, 6), 3, 2, 1, True),
    ((6, 7), (3, 2), (2, 1), (1, 1), True),
    ((4, 4), 2, 3, 1, True),
    ((5, 4), 4, 3, 2, True),
    ((5, 9), (5, 4), (2, 3), (2, 2), True),
]


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("divisor_override", [None, 3, -2])
@pytest.mark.parametrize("hw,k,s,p,ceil_mode", AVG_CASES)
def test_avg_pool_matches_loops(hw, k, s, p, ceil_mode, count_include_pad, divisor_override, rng):
    x = rng.standard_normal((2, 2) + hw)
    out = ref.avg_pool2d(x, k, s, p, ceil_mode, count_include_pad, divisor_override)
    assert_same(out, loop_avg_pool(x, k, s, p, ceil_mode, count_include_pad, divisor_override))


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, 1.5, 0.5])
@pytest.mark.parametrize("hw,k,s,ceil_mode", [((5, 5), 2, None, False), ((5, 5), 2, None, True),
                                              ((7, 6), (3, 2), (2, 3), True), ((4, 6), 3, 1, False)])
def test_lp_pool_matches_loops(hw, k, s, ceil_mode, p, rng):
    # Signed inputs: negative sums (NaN for a non-integer 1/p, signed for p = 1) and NaN powers.
    x = rng.standard_normal((2, 2) + hw)
    assert_same(ref.lp_pool2d(x, p, k, s, ceil_mode), loop_lp_pool(x, p, k, s, ceil_mode))


# --------------------------------------------------------------------------------------------
# worked examples (computed by hand)


def plane(rows):
    return np.array(rows, dtype=np.float64)[None, None]


def test_max_pool_worked_example():
    x = plane(np.arange(16).reshape(4, 4))
    values, indices = ref.max_pool2d(x, 2)
    assert_same(values[0, 0], [[5, 7], [13, 15]])
    np.testing.assert_array_equal(indices[0, 0], [[5, 7], [13, 15]])


def test_ceil_mode_drops_window_starting_in_padding():
    # H = W = 4, kernel 2, stride 3, padding 1: windows start at -1, 2 and 5; the last starts in
    # the right padding (input + padding ends at 5), so ceil_mode keeps only two.
    x = plane(np.arange(16).reshape(4, 4))
    values, indices = ref.max_pool2d(x, 2, 3, 1, ceil_mode=True)
    assert_same(values[0, 0], [[0, 3], [12, 15]])
    np.testing.assert_array_equal(indices[0, 0], [[0, 3], [12, 15]])
    assert ref.avg_pool2d(x, 2, 3, 1, ceil_mode=True).shape == (1, 1, 2, 2)


def test_ceil_mode_window_overhanging_input_has_clipped_divisor():
    # H = W = 5, kernel 2, stride 2, no padding, ceil_mode: the third window holds row/col 4 only;
    # torch clips the region to input + padding, so its divisor is 1 (rows) x 1 (cols).
    x = plane(np.arange(25).reshape(5, 5))
    out = ref.avg_pool2d(x, 2, ceil_mode=True)
    assert out.shape == (1, 1, 3, 3)
    assert out[0, 0, 2, 2] == 24.0
    assert out[0, 0, 0, 2] == (4 + 9) / 2
    assert out[0, 0, 0, 0] == (0 + 1 + 5 + 6) / 4


def test_avg_pool_padding_worked_example():
    x = plane(np.arange(16).reshape(4, 4))
    # kernel 3, stride 2, padding 1: window (0, 0) covers rows/cols -1..1: 0 + 1 + 4 + 5.
    assert ref.avg_pool2d(x, 3, 2, 1)[0, 0, 0, 0] == pytest.approx(10 / 9)
    assert ref.avg_pool2d(x, 3, 2, 1, count_include_pad=False)[0, 0, 0, 0] == pytest.approx(10 / 4)
    assert ref.avg_pool2d(x, 3, 2, 1, divisor_override=2)[0, 0, 0, 0] == pytest.approx(5.0)
    # ceil_mode adds a window starting at 3 (inside the input): rows/cols 3..4 of input + padding.
    ceil = ref.avg_pool2d(x, 3, 2, 1, ceil_mode=True)
    assert ceil.shape == (1, 1, 3, 3)
    assert ceil[0, 0, 2, 2] == pytest.approx(15 / 4)


def test_lp_pool_worked_example():
    x = plane([[3.0, 4.0], [0.0, 0.0]])
    assert ref.lp_pool2d(x, 2, 2)[0, 0, 0, 0] == pytest.approx(5.0)      # sqrt(9 + 16)
    negative = plane([[-3.0, 1.0], [0.0, 0.0]])
    assert ref.lp_pool2d(negative, 1, 2)[0, 0, 0, 0] == pytest.approx(-2.0)   # p = 1: the signed sum
    assert np.isnan(ref.lp_pool2d(negative, 3, 2)[0, 0, 0, 0])         # (-26) ** (1/3) is NaN in torch
    # ceil_mode: a clipped window's mean is scaled by the full kernel area (torch's formula).
    row = plane([[1.0, 1.0, 2.0]])
    out = ref.lp_pool2d(row, 1, (1, 2), ceil_mode=True)
    assert out[0, 0, 0].tolist() == pytest.approx([2.0, 4.0])


def test_adaptive_worked_example():
    # 5 -> 3: windows [0, 2), [1, 4), [3, 5) (floor(i*5/3), ceil((i+1)*5/3)).
    x = plane([[0.0, 1.0, 2.0, 3.0, 4.0]])
    assert ref.adaptive_avg_pool2d(x, (1, 3))[0, 0, 0].tolist() == pytest.approx([0.5, 2.0, 3.5])
    values, indices = ref.adaptive_max_pool2d(x, (1, 3))
    assert values[0, 0, 0].tolist() == [1.0, 3.0, 4.0]
    assert indices[0, 0, 0].tolist() == [1, 3, 4]


def test_unpool_worked_example():
    x = plane([[5.0, 7.0], [13.0, 15.0]])
    indices = np.array([[5, 7], [13, 15]])[None, None]
    out = ref.max_unpool2d(x, indices, (4, 4))
    expected = np.zeros((4, 4))
    expected.flat[[5, 7, 13, 15]] = [5, 7, 13, 15]
    assert_same(out[0, 0], expected)


# --------------------------------------------------------------------------------------------
# NaN, infinities, ties


def test_max_pool_propagates_nan_and_points_at_it():
    x = plane(np.arange(16, dtype=float).reshape(4, 4))
    x[0, 0, 0, 1] = np.nan
    x[0, 0, 2, 2] = np.nan
    x[0, 0, 3, 3] = np.nan          # two NaNs in one window: torch reports the last one
    values, indices = ref.max_pool2d(x, 2)
    assert np.isnan(values[0, 0, 0, 0]) and indices[0, 0, 0, 0] == 1
    assert np.isnan(values[0, 0, 1, 1]) and indices[0, 0, 1, 1] == 15
    assert values[0, 0, 0, 1] == 7 and values[0, 0, 1, 0] == 13
    adaptive_values, adaptive_indices = ref.adaptive_max_pool2d(x, 1)
    assert np.isnan(adaptive_values[0, 0, 0, 0]) and adaptive_indices[0, 0, 0, 0] == 15


def test_max_pool_of_minus_inf_reports_first_input_element():
    x = np.full((1, 1, 3, 3), -np.inf)
    values, indices = ref.max_pool2d(x, 3, 1, 1)
    assert np.all(values == -np.inf)
    # Window (1, 1) starts at the input's (0, 0); window (0, 0) at padding, its first input is (0, 0)
    # and window (2, 2) starts at (1, 1): torch keeps the first in-input tap when nothing beats -inf.
    np.testing.assert_array_equal(indices[0, 0], [[0, 0, 1], [0, 0, 1], [3, 3, 4]])


def test_max_pool_of_minus_inf_with_dilation_skips_padding_taps():
    # kernel 2, dilation 2, padding 1: window 0 has taps -1 (padding) and 1, so its first input
    # element is row/col 1, not the padding tap's clipped neighbour 0.
    x = np.full((1, 1, 3, 3), -np.inf)
    _, indices = ref.max_pool2d(x, 2, 1, 1, 2)
    np.testing.assert_array_equal(indices[0, 0], loop_max_pool(x, 2, 1, 1, 2)[1][0, 0])
    assert indices[0, 0, 0, 0] == 4


def test_max_pool_with_inf_values():
    x = plane([[np.inf, 1.0], [-np.inf, np.inf]])
    values, indices = ref.max_pool2d(x, 2)
    assert values[0, 0, 0, 0] == np.inf and indices[0, 0, 0, 0] == 0


def test_ties_go_to_first_maximum_in_scan_order():
    x = np.ones((1, 1, 4, 4))
    _, indices = ref.max_pool2d(x, 2, 1)
    np.testing.assert_array_equal(indices[0, 0], [[0, 1, 2], [4, 5, 6], [8, 9, 10]])
    _, adaptive = ref.adaptive_max_pool2d(x, 3)
    np.testing.assert_array_equal(adaptive[0, 0], [[0, 1, 2], [4, 5, 6], [8, 9, 10]])


def test_window_of_padding_only_gives_minus_inf_and_no_index():
    # H = W = 2, kernel 2, padding 1, dilation 3: window (0, 0) has taps -1 and 2 in each axis.
    values, indices = ref.max_pool2d(np.ones((1, 1, 2, 2)), 2, 1, 1, 3)
    assert values.shape == (1, 1, 1, 1)
    assert values[0, 0, 0, 0] == -np.inf and indices[0, 0, 0, 0] == ref.NO_INDEX


def test_avg_pool_propagates_nan_and_inf():
    x = plane([[np.nan, 1.0, 2.0, 3.0], [4.0, 5.0, np.inf, 7.0]])
    out = ref.avg_pool2d(x, 2)
    assert np.isnan(out[0, 0, 0, 0]) and out[0, 0, 0, 1] == np.inf


# --------------------------------------------------------------------------------------------
# adaptive windows, pyramids, unpooling


@pytest.mark.parametrize("hw,out", [((5, 7), (3, 3)), ((7, 5), (2, 4)), ((3, 3), (5, 4)),
                                    ((6, 6), (4, 6)), ((1, 4), (1, 3)), ((9, 2), 1)])
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_adaptive_matches_loops(hw, out, mode, rng):
    x = rng.integers(0, 3, size=(2, 2) + hw).astype(np.float64)
    expected, expected_indices = loop_adaptive(x, out, mode)
    if mode == "max":
        values, indices = ref.adaptive_max_pool2d(x, out)
        np.testing.assert_array_equal(indices, expected_indices)
    else:
        values = ref.adaptive_avg_pool2d(x, out)
    assert_same(values, expected)


def test_global_pools_are_adaptive_to_one(rng):
    x = rng.standard_normal((2, 3, 5, 4))
    assert_same(ref.global_avg_pool2d(x), x.mean(axis=(2, 3), keepdims=True))
    assert_same(ref.global_max_pool2d(x)[0], x.max(axis=(2, 3), keepdims=True))


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("levels", [(1, 2, 4), (3,), (2, 1, 2)])
def test_spatial_pyramid_is_concatenated_adaptive_pools(levels, mode, rng):
    x = rng.standard_normal((2, 3, 7, 5))
    out = ref.spatial_pyramid_pool2d(x, levels, mode)
    assert out.shape == (2, 3 * sum(l * l for l in levels))
    start = 0
    for level in levels:
        pooled = loop_adaptive(x, level, mode)[0]
        assert_same(out[:, start:start + 3 * level * level], pooled.reshape(2, -1))
        start += 3 * level * level
    # NHWC orders each level's block (i, j, c)
    nhwc = ref.spatial_pyramid_pool2d(x.transpose(0, 2, 3, 1), levels, mode, "NHWC")
    start = 0
    for level in levels:
        pooled = loop_adaptive(x, level, mode)[0].transpose(0, 2, 3, 1)
        assert_same(nhwc[:, start:start + 3 * level * level], pooled.reshape(2, -1))
        start += 3 * level * level


def test_unpool_inverts_non_overlapping_max_pool(rng):
    x = rng.uniform(1.0, 2.0, size=(2, 3, 6, 8))     # positive: the zeros unpooling adds never win
    values, indices = ref.max_pool2d(x, 2)
    restored = ref.max_unpool2d(values, indices, (6, 8))
    kept = restored != 0
    # every window keeps exactly its maximum, at its place, and nothing else
    assert kept.sum() == values.size
    assert_same(restored[kept], x[kept])
    assert_same(ref.max_pool2d(restored, 2)[0], values)


def test_unpool_repeated_indices_last_wins_like_loops(rng):
    x = rng.standard_normal((2, 2, 3, 3))
    indices = rng.integers(0, 6, size=x.shape)      # many repeats in a 2x3 output plane
    assert_same(ref.max_unpool2d(x, indices, (2, 3)), loop_unpool(x, indices, (2, 3)))


# --------------------------------------------------------------------------------------------
# hypothesis: random geometries against the loops


@st.composite
def window_geometry(draw, dilated=True):
    H, W = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    R, S = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, R // 2)), draw(st.integers(0, S // 2)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) if dilated else (1, 1)
    ceil_mode = draw(st.booleans())
    sizes = [loop_pooled_size(n, k, s, p, d, ceil_mode)
             for n, k, s, p, d in zip((H, W), (R, S), stride, padding, dilation)]
    if min(sizes) < 1:
        dilation = (1, 1)
        H, W = max(H, R), max(W, S)
    return (H, W), (R, S), stride, padding, dilation, ceil_mode


def special_values(draw, shape):
    values = draw(st.lists(st.sampled_from([0.0, 1.0, 2.0, -1.0, np.inf, -np.inf, np.nan]),
                           min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
    return np.array(values).reshape(shape)


@settings(max_examples=40, deadline=None)
@given(H=st.integers(1, 9), R=st.integers(1, 5), stride=st.integers(1, 4), data=st.data(),
       dilation=st.integers(1, 4), ceil_mode=st.booleans())
def test_geometry_output_size_property(H, R, stride, data, dilation, ceil_mode):
    """The geometry (what the launchers use) agrees with the definition, and refuses exactly the
    cases whose output would be empty."""
    pad = data.draw(st.integers(0, R // 2))
    expected = loop_pooled_size(H, R, stride, pad, dilation, ceil_mode)
    shape = (1, 1, H, 3)
    if expected < 1:
        with pytest.raises(ValueError, match="kernel_size"):
            pool2d_geometry(shape, (R, 1), stride, (pad, 0), (dilation, 1), ceil_mode)
    else:
        assert pool2d_geometry(shape, (R, 1), stride, (pad, 0), (dilation, 1), ceil_mode).P == expected


@settings(max_examples=30, deadline=None)
@given(geometry=window_geometry(), data=st.data())
def test_max_pool_property(geometry, data):
    hw, k, s, p, d, ceil_mode = geometry
    x = special_values(data.draw, (1, 2) + hw)
    values, indices = ref.max_pool2d(x, k, s, p, d, ceil_mode)
    expected, expected_indices = loop_max_pool(x, k, s, p, d, ceil_mode)
    assert_same(values, expected)
    np.testing.assert_array_equal(indices, expected_indices)


@settings(max_examples=30, deadline=None)
@given(geometry=window_geometry(dilated=False), count_include_pad=st.booleans(),
       divisor_override=st.sampled_from([None, 1, 5, -3]), seed=st.integers(0, 2 ** 16))
def test_avg_pool_property(geometry, count_include_pad, divisor_override, seed):
    hw, k, s, p, _, ceil_mode = geometry
    x = np.random.default_rng(seed).standard_normal((1, 2) + hw)
    out = ref.avg_pool2d(x, k, s, p, ceil_mode, count_include_pad, divisor_override)
    assert_same(out, loop_avg_pool(x, k, s, p, ceil_mode, count_include_pad, divisor_override))


@settings(max_examples=30, deadline=None)
@given(hw=st.tuples(st.integers(1, 9), st.integers(1, 9)),
       out=st.tuples(st.integers(1, 6), st.integers(1, 6)), data=st.data())
def test_adaptive_max_property(hw, out, data):
    x = special_values(data.draw, (1, 1) + hw)
    values, indices = ref.adaptive_max_pool2d(x, out)
    expected, expected_indices = loop_adaptive(x, out, "max")
    assert_same(values, expected)
    np.testing.assert_array_equal(indices, expected_indices)
