"""Cases, inputs and the accuracy check shared by the backward-kernel tests
(test_conv_backward_data.py, _weight.py, _transpose.py), plus the tests of the check itself.

The oracle is the NumPy reference (gpuconv.reference.conv), called directly with a geometry, so
that a ``GPUCONV_SIMULATE=1`` environment cannot turn it into the code under test. It runs in
float64 on the very values the kernels get (inputs are first rounded to the tested dtype), and a
second reference run on |inputs| bounds the accumulation error elementwise:
    |kernel - exact| <= eps(out) * |exact| + 128 * eps(acc) * (|w| * |dy| summed) + tiny(out),
i.e. one rounding of the result plus a float (double) accumulation of the terms.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from gpuconv.conv import launch_bwd_common, launch_winograd
from gpuconv.conv.geometry import conv2d_geometry, data_gradient_geometry, layout_shape

try:
    import ml_dtypes
    BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - ml_dtypes is a test dependency
    ml_dtypes = None
    BFLOAT16 = None

DTYPES = [np.dtype(np.float16)] + ([BFLOAT16] if BFLOAT16 is not None else []) + \
         [np.dtype(np.float32), np.dtype(np.float64)]
LAYOUTS = ("NCHW", "NHWC")
ORDERS = ("forward", "reverse", "random")


@dataclass(frozen=True)
class Case:
    """A convolution: x (N, C, H, W) logical NCHW, weight (K, C/groups, R, S), conv2d kwargs."""
    name: str
    x: tuple
    w: tuple
    kwargs: dict = field(default_factory=dict)

    def geometry(self):
        return conv2d_geometry(self.x, self.w, **self.kwargs)

    def __str__(self):
        return self.name


CASES = [
    Case("3x3 pad1", (2, 3, 7, 9), (4, 3, 3, 3), dict(padding=1)),
    Case("stride 2x3 dil 1x2 grouped asym pad", (1, 4, 9, 8), (6, 2, 3, 2),
         dict(stride=(2, 3), padding=((1, 0), (2, 1)), dilation=(1, 2), groups=2)),
    Case("stride 3 dil 2", (2, 5, 11, 10), (3, 5, 3, 3), dict(stride=3, dilation=2, padding=2)),
    # Dilation sharing a factor with the stride: whole stride phases receive no tap at all.
    Case("stride 2 dil 2 (tapless phases)", (1, 3, 10, 9), (2, 3, 2, 3), dict(stride=2, dilation=2)),
    Case("stride 3 dil 3", (1, 2, 9, 9), (3, 2, 3, 3), dict(stride=3, dilation=3, padding=1)),
    # Strides past the kernel: input pixels that no output reads.
    Case("stride 3 past the 2x2 kernel", (1, 6, 9, 8), (5, 6, 2, 2), dict(stride=3)),
    Case("depthwise stride 2", (1, 6, 8, 7), (6, 1, 3, 3), dict(stride=2, padding=1, groups=6)),
    Case("depthwise x2 asym pad", (2, 4, 6, 5), (8, 1, 3, 3),
         dict(padding=((0, 2), (1, 1)), groups=4)),
    Case("depthwise x3 stride 3 dil 2", (1, 2, 11, 10), (6, 1, 3, 2),
         dict(stride=3, dilation=2, padding=((2, 1), (0, 3)), groups=2)),
    Case("1x1", (2, 6, 5, 7), (5, 6, 1, 1)),
    Case("1x1 stride 2 grouped", (1, 4, 7, 7), (6, 2, 1, 1), dict(stride=2, groups=2)),
    Case("1x1 pad 1", (1, 5, 4, 3), (7, 5, 1, 1), dict(padding=1)),
    Case("wide channels 5x3", (1, 9, 6, 7), (10, 9, 5, 3), dict(padding=(2, 1), stride=(1, 2))),
    # 3x3 stride 1 (Winograd runs these too): odd planes whose 2x2 tiles overhang, groups,
    # asymmetric padding, and padding past the filter (the data gradient crops dy).
    Case("3x3 grouped asym pad odd plane", (2, 6, 5, 7), (4, 3, 3, 3),
         dict(padding=((2, 0), (0, 1)), groups=2)),
    Case("3x3 pad 3", (1, 3, 4, 5), (5, 3, 3, 3), dict(padding=3)),
]


def one_image_per_launch(monkeypatch, algorithm: str, geom, dtype) -> None:
    """Make every launch of ``algorithm`` take one image of ``geom``: the 32-bit launch limit
    for the kernels that read the tensors directly; for Winograd, whose transformed tensors
    are the larger ones, a workspace of one image's transforms."""
    if algorithm == "winograd_nonfused":
        itemsize = 8 if np.dtype(dtype) == np.float64 else 4  # the accumulator type's
        # The smallest image's transforms over either tile and either geometry the gradients
        # transform (the data gradient's is the rotated forward convolution): one image per
        # chunk whichever runs.
        geometries = (geom, data_gradient_geometry(geom))
        one_image = min(launch_winograd.elements(m) * (g.C + g.K)
                        * launch_winograd.tiles_per_image(g, m) * itemsize
                        for m in launch_winograd.OUTPUT_TILES for g in geometries)
        monkeypatch.setenv("GPUCONV_WORKSPACE_BYTES", str(one_image))
        assert all(launch_winograd.images_per_chunk(g, m, itemsize) == 1
                   for m in launch_winograd.OUTPUT_TILES for g in geometries)
    else:
        monkeypatch.setattr(launch_bwd_common, "LAUNCH_ELEMENTS",
                            max(geom.C * geom.H * geom.W, geom.K * geom.P * geom.Q))


def layout(a_nchw: np.ndarray, data_format: str) -> np.ndarray:
    return np.ascontiguousarray(a_nchw.transpose(0, 2, 3, 1)) if data_format == "NHWC" else a_nchw


def make_input(rng, shape, dtype) -> np.ndarray:
    """Random normal values rounded to ``dtype``; float64 gets small integers from a shuffled
    arange instead (structured values: every result is exact, so an indexing slip that moves a
    term cannot hide inside the tolerance)."""
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        values = (rng.permutation(int(np.prod(shape))) % 9 - 4).astype(np.float64)
        return values.reshape(shape)
    return rng.standard_normal(shape).astype(dtype)


def finfo(dtype):
    dtype = np.dtype(dtype)
    if BFLOAT16 is not None and dtype == BFLOAT16:
        return ml_dtypes.finfo(dtype)
    return np.finfo(dtype)


def acc_eps(dtype) -> float:
    return float(np.finfo(np.float64 if np.dtype(dtype) == np.float64 else np.float32).eps)


def f64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def assert_close(got, exact, magnitude, dtype, what: str) -> None:
    """``got`` (the kernels' result in ``dtype``) against the float64 ``exact`` result, with the
    elementwise error bound of the module docstring (``magnitude``: the same reference on
    |inputs|)."""
    dtype = np.dtype(dtype)
    got = np.asarray(got)
    assert got.dtype == dtype, f"{what}: dtype {got.dtype}, expected {dtype}"
    assert got.shape == exact.shape, f"{what}: shape {got.shape}, expected {exact.shape}"
    info = finfo(dtype)
    tol = (float(info.eps) * np.abs(exact) + 128 * acc_eps(dtype) * magnitude
           + float(info.tiny))
    error = np.abs(f64(got) - exact)
    bad = ~(error <= tol)  # NaN (a poisoned, unwritten element) counts as bad
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.size} elements off, first at {index}: "
            f"got {f64(got)[index]!r}, expected {exact[index]!r} (tolerance {tol[index]:.3g})")


def assert_same_bits(results, what: str) -> None:
    first = np.ascontiguousarray(results[0]).view(np.uint8)
    for i, other in enumerate(results[1:], 1):
        assert np.array_equal(first, np.ascontiguousarray(other).view(np.uint8)), \
            f"{what}: run {i} differs in its bits from run 0"


def output_shape(case: Case, data_format: str) -> tuple:
    return layout_shape(case.geometry().output_shape, data_format)


# ---------------------------------------------------------------------------------------------
# the check itself must be able to fail


def test_assert_close_rejects_a_moved_term_and_nan(rng):
    exact = np.arange(12, dtype=np.float64).reshape(3, 4)
    magnitude = np.abs(exact) + 1
    assert_close(exact.astype(np.float32), exact, magnitude, np.float32, "identical")
    wrong = exact.astype(np.float32)
    wrong[1, 2] += 1
    with pytest.raises(AssertionError, match=r"first at \(1, 2\)"):
        assert_close(wrong, exact, magnitude, np.float32, "moved")
    poisoned = exact.astype(np.float16)
    poisoned[2, 3] = np.nan
    with pytest.raises(AssertionError, match="1 of 12"):
        assert_close(poisoned, exact, magnitude, np.float16, "poisoned")


def test_assert_same_bits_sees_one_ulp():
    a = np.linspace(0, 1, 7, dtype=np.float32)
    b = a.copy()
    b[3] = np.nextafter(b[3], np.float32(2))
    assert_same_bits([a, a.copy()], "equal")
    with pytest.raises(AssertionError, match="run 1 differs"):
        assert_same_bits([a, b], "one ulp")
