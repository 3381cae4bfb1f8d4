"""Contract findings of the 18th audit (a code reading of the algorithm choice):

A forced winograd_nonfused gradient passed its refusal where its products' GEMM could not be
gridded: the data gradient's (the rotated convolution puts C/groups filters on grid.y, where the
fronts check K/groups) and the weight gradient's (an implicit GEMM with C/groups taps on grid.y).
It allocated its workspace, launched the transforms, then failed inside the GEMM with a message
that did not name `algorithm`, while the reference accepted the same call. Both gradients now
refuse such a case up front, on every executor. (CUDA's grid limit is lowered to
WINOGRAD_GRID_LIMIT here, so the layers stay small.)
"""
import numpy as np
import pytest

import gpuconv

from conftest import WINOGRAD_GRID_LIMIT as LIMIT


def test_a_forced_winograd_data_gradient_past_its_products_grid_is_refused(winograd_grid_limit):
    channels = LIMIT * 32 + 1                  # the rotated convolution's filters per group
    w = np.zeros((1, channels, 3, 3), np.float32)
    dy = np.zeros((1, 1, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"algorithm='winograd_nonfused' cannot compute the "
                       r"input gradient.*rotated convolution it runs \(C and K swapped\)"):
        gpuconv.grad.conv2d_input((1, channels, 3, 3), w, dy, padding=1,
                                  algorithm="winograd_nonfused")
    got = gpuconv.grad.conv2d_input((1, channels, 3, 3), w, dy, padding=1)    # auto runs it
    assert got.shape == (1, channels, 3, 3) and not got.any()


def test_a_forced_winograd_weight_gradient_past_its_products_grid_is_refused(winograd_grid_limit):
    channels = LIMIT * 128 + 1                 # the products' GEMM taps per group
    x = np.zeros((1, channels, 2, 2), np.float32)
    dy = np.zeros((1, 1, 2, 2), np.float32)
    with pytest.raises(ValueError, match=r"algorithm='winograd_nonfused' cannot compute the "
                       r"weight gradient.*its products' GEMM"):
        gpuconv.grad.conv2d_weight(x, (1, channels, 3, 3), dy, padding=1,
                                   algorithm="winograd_nonfused")
