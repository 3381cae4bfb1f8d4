"""Contract audit 15 (gpuconv.grad against torch autograd, every pooling and ROI gradient, on both
executors; an argument fuzz of every public function). Findings, each fixed and pinned below:

1. grad.lp_pool2d with norm_type +-inf on a bfloat16 (ml_dtypes) input holding a NaN warned
   "invalid value encountered in greater" (an error under -W error); float16/32/64 did not.
2. A pooling stride of 2**63 or more (one output: never applied) was an OverflowError of the
   reference's int64 arithmetic; the executor computed it. Both give torch's one output now.
3. An argument with ``__index__`` (torch reads ints through it) was refused where an int is
   taken; NumPy integers and 0-d integer arrays were already taken.
4. An adaptive or ROI output_size whose output no array can hold was NumPy's "array is too big"
   or a MemoryError naming nothing; it is a ValueError naming output_size.
5. simulate(seed=2**64 + 5) was taken as seed 5 (the executor's 64-bit field); it is refused.
"""
import warnings

import numpy as np
import pytest

import gpuconv


@pytest.mark.parametrize("norm_type", [np.inf, -np.inf], ids=["inf", "-inf"])
def test_lp_pool_infinite_norm_gradient_of_a_bfloat16_nan_is_silent(norm_type):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4) - 8
    x[0, 0, 0, 0] = np.nan
    x = x.astype(ml_dtypes.bfloat16)
    g = np.ones((1, 1, 2, 2), ml_dtypes.bfloat16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dx = gpuconv.grad.lp_pool2d(g, x, norm_type, 2)
    # torch.sign(NaN) is 0: the NaN's window sends nothing through the NaN
    assert dx.dtype == x.dtype and float(dx[0, 0, 0, 0]) == 0


X = np.arange(2 * 3 * 7 * 7, dtype=np.float64).reshape(2, 3, 7, 7) % 11


@pytest.mark.parametrize("stride, same_as", [(2**63, 8), (2**70, 8), ((2, 2**64), (2, 8))],
                         ids=["2**63", "2**70", "pair"])
def test_a_pooling_stride_past_int64_is_never_applied(stride, same_as):
    # one output along the axis of the huge stride, as with any stride past the input
    for forward, backward in [
            (lambda s: gpuconv.max_pool2d(X, 3, s, 1),
             lambda g, s: gpuconv.grad.max_pool2d(g, X, 3, s, 1)),
            (lambda s: gpuconv.avg_pool2d(X, 3, s, 1, count_include_pad=False),
             lambda g, s: gpuconv.grad.avg_pool2d(g, X, 3, s, 1, count_include_pad=False)),
            (lambda s: gpuconv.lp_pool2d(X, 2.0, 3, s),
             lambda g, s: gpuconv.grad.lp_pool2d(g, X, 2.0, 3, s))]:
        y = forward(stride)
        np.testing.assert_array_equal(y, forward(same_as))
        g = np.arange(y.size, dtype=np.float64).reshape(y.shape)
        np.testing.assert_array_equal(backward(g, stride), backward(g, same_as))


class Index:
    """An integer-like object that is not an int: only ``__index__``."""

    def __init__(self, value):
        self.value = value

    def __index__(self):
        return self.value


def test_objects_with_index_are_ints():
    w = np.ones((6, 1, 3, 3))
    np.testing.assert_array_equal(gpuconv.conv2d(X, np.ones((6, 1, 3, 3)), groups=Index(3)),
                                  gpuconv.conv2d(X, w, groups=3))
    np.testing.assert_array_equal(
        gpuconv.conv2d(X, np.ones((4, 3, 3, 3)), stride=(Index(2), Index(1)), padding=Index(1)),
        gpuconv.conv2d(X, np.ones((4, 3, 3, 3)), stride=(2, 1), padding=1))
    np.testing.assert_array_equal(gpuconv.max_pool2d(X, Index(3), Index(2)),
                                  gpuconv.max_pool2d(X, 3, 2))


@pytest.mark.parametrize("value", [True, 2.0, np.array([2])], ids=["bool", "float", "1-d array"])
def test_not_ints_stay_refused(value):
    with pytest.raises(TypeError, match="stride"):
        gpuconv.conv2d(X, np.ones((4, 3, 3, 3)), stride=value)


BOX = np.array([[0, 0.0, 0.0, 3.0, 3.0]])


@pytest.mark.parametrize("call", [
    lambda: gpuconv.adaptive_avg_pool2d(X, 2**31 - 1),
    lambda: gpuconv.adaptive_max_pool2d(X[:0], (2**31 - 1, 2**31 - 1)),
    lambda: gpuconv.grad.adaptive_avg_pool2d(np.ones((2, 3, 1, 1)), X, 2**31 - 1),
    lambda: gpuconv.roi_align(X, BOX, 2**31 - 1),
    lambda: gpuconv.roi_pool(X, BOX[:0], (2**31 - 1, 2**31 - 1)),
], ids=["adaptive_avg", "adaptive_max_empty", "grad_adaptive", "roi_align", "roi_pool_no_boxes"])
def test_an_output_no_array_can_hold_names_output_size(call):
    with pytest.raises(ValueError, match=r"output_size=.* more than an array can hold"):
        call()


def test_a_simulator_seed_past_64_bits_is_refused():
    with pytest.raises(ValueError, match="seed must be <= 18446744073709551615"):
        with gpuconv.simulate(seed=2**64 + 5):
            pass
