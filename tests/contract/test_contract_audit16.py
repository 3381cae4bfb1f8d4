"""Contract audit 16, and the findings audit 15 left open. Each is fixed and pinned below:

1. A fractional batch index inside [0, N) in the rois was refused; torchvision's int conversion
   truncates it (0.5 names image 0), and api.md refuses only an index outside [0, N). It is taken
   and truncated on every path (the device check no longer flags it).
2. ``padding="same"`` with a dilation that makes the padded input 2**31 or more rows blamed
   ``padding``; the message names the dilation (and the padding "same" derives from it).
3. ``gpuconv.is_deterministic(1)`` named ``deterministic`` while its parameter was ``override``;
   the parameter is ``deterministic``, the keyword every backward takes.
4. The shape utilities (and the shapes of grad.conv2d_input / conv2d_weight) refused a shape
   given as a 1-D NumPy array (``np.array(x.shape)``, a shape computed with NumPy) or a range;
   torch takes any sequence of ints there.
"""
import contextlib

import numpy as np
import pytest

import gpuconv

X = np.arange(2 * 3 * 8 * 8, dtype=np.float64).reshape(2, 3, 8, 8) % 7
BOXES = np.asarray([[0, 0.5, 1.0, 6.0, 7.5], [1, 2.0, 0.0, 7.0, 4.0], [1, 0.0, 0.0, 3.0, 3.0]])


@pytest.mark.parametrize("simulated", [False, True], ids=["reference", "simulator"])
@pytest.mark.parametrize("call", [
    lambda x, b: gpuconv.roi_align(x, b, 2, 1.0, 2, True),
    lambda x, b: gpuconv.roi_pool(x, b, (2, 3)),
    lambda x, b: gpuconv.grad.roi_align(np.ones((3, 3, 2, 2)), x, b, 2, 0.5, -1),
    lambda x, b: gpuconv.grad.roi_pool(np.ones((3, 3, 2, 2)), x, b, 2),
], ids=["roi_align", "roi_pool", "grad.roi_align", "grad.roi_pool"])
def test_a_fractional_batch_index_is_truncated_as_torchvision(call, simulated):
    fractional = BOXES.copy()
    fractional[:, 0] += [0.75, 0.5, 0.0078125]
    with gpuconv.simulate() if simulated else contextlib.nullcontext():
        np.testing.assert_array_equal(call(X, fractional), call(X, BOXES))


@pytest.mark.parametrize("index", [-0.5, 2.0, 2.5])
def test_a_batch_index_outside_the_batch_is_still_refused(index):
    boxes = BOXES.copy()
    boxes[2, 0] = index
    with pytest.raises(ValueError, match=r"batch index .* \[0, N\) = \[0, 2\) .* row 2 has "
                                         + f"{index:g}"):
        gpuconv.roi_align(X, boxes, 2)


def test_same_padding_too_large_for_the_kernels_names_the_dilation():
    w = np.ones((1, 3, 3, 3))
    with pytest.raises(ValueError, match=r"^dilation \(1, 1073741824\) with a 3x3 weight "
                                         r"\(padding 'same' pads the width"):
        gpuconv.conv2d(X, w, padding="same", dilation=(1, 2**30))
    with pytest.raises(ValueError, match=r"^padding 1073741829 makes"):
        gpuconv.conv2d(X, w, padding=2**30 + 5)


def test_is_deterministic_names_its_parameter():
    with pytest.raises(TypeError, match="^deterministic must be a bool or None, got int 1"):
        gpuconv.is_deterministic(1)
    assert gpuconv.is_deterministic(deterministic=True) is True


def test_shapes_as_numpy_arrays_and_ranges():
    w = np.ones((4, 3, 3, 3))
    g = np.ones((2, 4, 6, 6))
    assert gpuconv.conv2d_output_shape(np.array(X.shape), np.array(w.shape)) == (2, 4, 6, 6)
    assert gpuconv.conv2d_output_shape(range(2, 6), (4, 3, 3, 3)) == (2, 4, 2, 3)
    assert gpuconv.conv2d_flops(np.array(X.shape), np.array(w.shape)) == \
        gpuconv.conv2d_flops(X.shape, w.shape)
    assert gpuconv.conv_transpose2d_output_shape(np.array(g.shape), (4, 3, 3, 3)) == (2, 3, 8, 8)
    assert gpuconv.pool2d_output_shape(np.array(X.shape), 2) == (2, 3, 4, 4)
    np.testing.assert_array_equal(gpuconv.grad.conv2d_input(np.array(X.shape), w, g),
                                  gpuconv.grad.conv2d_input(X.shape, w, g))
    np.testing.assert_array_equal(gpuconv.grad.conv2d_weight(X, np.array(w.shape), g),
                                  gpuconv.grad.conv2d_weight(X, w.shape, g))


@pytest.mark.parametrize("shape, error, message", [
    (np.array([2.0, 3, 8, 8]), TypeError, "input_shape dimension N must be an int, got float"),
    (np.zeros((2, 2), int), TypeError, "input_shape must be a shape .* got a 2-D array"),
    (np.array([2, 3, 8]), ValueError, r"input_shape must be 4-D .* got shape \(2, 3, 8\)$"),
], ids=["floats", "2-D array", "three entries"])
def test_shape_arrays_that_are_not_shapes(shape, error, message):
    with pytest.raises(error, match=message):
        gpuconv.conv2d_output_shape(shape, (4, 3, 3, 3))

