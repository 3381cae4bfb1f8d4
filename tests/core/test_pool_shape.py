"""The pooling kernels' geometry argument (kernels/common/pool_shape.cuh, built by
gpuconv/pool/launch_common.pool_shape): the host-made multiply-shift divisors divide exactly
over the whole 32-bit index range, and the struct reaches a kernel field for field, its
decoders splitting flat indices as Python does."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import gpuconv
from gpuconv import _kernels, _loader
from gpuconv._fast_divmod import fast_divmod
from gpuconv.pool.geometry import AdaptivePool2dGeometry, Pool2dGeometry
from gpuconv.pool.launch_common import POOL_SHAPE_DTYPE, pool_shape

CUDA_DIR = Path(__file__).resolve().parents[1] / "cuda"
INT_MAX = 2 ** 31 - 1

DIVISORS = sorted({*range(1, 300), *(2 ** k + d for k in range(2, 31) for d in (-1, 0, 1)),
                   3 * 7 * 11 * 13, 46341, 65535, 65537, 1_000_003, 2 ** 30 + 3, INT_MAX})


def _dividends(d: int) -> np.ndarray:
    """Where a wrong multiplier shows first: around multiples of d, and the top of the range."""
    rng = np.random.default_rng(d)
    multiples = np.array([1, 2, 3, INT_MAX // d - 1, INT_MAX // d], dtype=np.int64) * d
    near = (multiples[:, None] + np.arange(-2, 3)).ravel()
    values = np.concatenate([near, np.arange(0, 64), rng.integers(0, INT_MAX, 200),
                             np.arange(INT_MAX - 64, INT_MAX + 1)])
    return np.unique(values[(values >= 0) & (values <= INT_MAX)])


def test_host_fast_divmod_divides_exactly():
    for d in DIVISORS:
        divisor, multiplier, shift = fast_divmod(d)
        assert divisor == d and 0 <= multiplier < 2 ** 32 and 0 <= shift < 32
        x = _dividends(d).astype(np.uint64)
        quotient = x if d == 1 else (x * np.uint64(multiplier)) >> np.uint64(32 + shift)
        np.testing.assert_array_equal(quotient, x // np.uint64(d), err_msg=f"divisor {d}")


@pytest.mark.parametrize("bad", [-1, 2 ** 31])
def test_host_fast_divmod_refuses_divisors_outside_int32(bad):
    with pytest.raises(ValueError, match="divisor"):
        fast_divmod(bad)


def test_pool_shape_is_the_structs_128_bytes_and_cached():
    geom = Pool2dGeometry(2, 3, 9, 7, 4, 3, 3, 2, 2, 3, 1, 0, 1, 2, False)
    (shape,) = pool_shape(geom)
    assert POOL_SHAPE_DTYPE.itemsize == 128 and shape.dtype == POOL_SHAPE_DTYPE
    assert pool_shape(geom)[0] is shape
    assert [tuple(shape["output"][axis]) for axis in "chw"] == [fast_divmod(3), fast_divmod(4),
                                                                fast_divmod(3)]


@pytest.fixture
def decoder_kernel():
    source = str(CUDA_DIR / "flat_decoder.cu")
    family = _kernels.register(source, ["decode_flat<false>", "decode_flat<true>"])
    yield family
    _kernels.FAMILIES.pop(source, None)
    for key in [k for k in _loader._modules if k[0].source == source]:
        del _loader._modules[key]


def _coords(flat: np.ndarray, C: int, H: int, W: int, data_format: str) -> np.ndarray:
    """(n, c, h, w) of each flat index of a contiguous (N, C, H, W) array stored as given."""
    f = flat.astype(np.int64)
    if data_format == "NHWC":
        c, f = f % C, f // C
        w, f = f % W, f // W
        h, n = f % H, f // H
    else:
        w, f = f % W, f // W
        h, f = f % H, f // H
        c, n = f % C, f // C
    return np.stack([n, c, h, w], axis=1)


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("sizes", [
    (3, 5, 7, 2, 3),                 # C H W P Q: small and odd
    (1, 1, 1, 1, 1),                 # every divisor 1 (the decoders' no-multiply case)
    (64, 56, 56, 28, 28),            # powers of two and not
    (46341, 211, 219, 7, 1),         # extents whose products pass 2^31: indices near INT_MAX
    (3, 65537, 10921, 65535, 32769),
])
def test_kernel_decodes_flat_indices_with_the_host_divisors(decoder_kernel, sizes, data_format):
    C, H, W, P, Q = sizes
    geom = AdaptivePool2dGeometry(5, C, H, W, P, Q)
    rng = np.random.default_rng(C + H)
    flat = np.unique(np.concatenate([np.arange(0, 200), rng.integers(0, INT_MAX, 300),
                                     np.arange(INT_MAX - 200, INT_MAX + 1)])).astype(np.int32)
    coords = np.full((flat.size, 8), -1, dtype=np.int32)
    echoed = np.zeros(15, dtype=np.int32)
    with gpuconv.simulate():
        name = f"decode_flat<{'true' if data_format == 'NHWC' else 'false'}>"
        kernel = _loader.get_function(decoder_kernel, name, "simulator")
        kernel((-(-flat.size // 128),), (128,),
               (flat, coords, echoed, np.int32(flat.size), *pool_shape(geom)))
    np.testing.assert_array_equal(coords[:, :4], _coords(flat, C, H, W, data_format))
    np.testing.assert_array_equal(coords[:, 4:], _coords(flat, C, P, Q, data_format))
    np.testing.assert_array_equal(echoed, [5, C, H, W, P, Q, 1, 1, 1, 1, 0, 0, 1, 1, W])


def test_kernel_sees_the_window_fields_in_order(decoder_kernel):
    geom = Pool2dGeometry(2, 3, 9, 7, 4, 3, 3, 2, 2, 3, 1, 0, 1, 2, False)
    echoed = np.zeros(15, dtype=np.int32)
    with gpuconv.simulate():
        kernel = _loader.get_function(decoder_kernel, "decode_flat<false>", "simulator")
        kernel((1,), (32,), (np.zeros(1, np.int32), np.zeros(8, np.int32), echoed, np.int32(0),
                             *pool_shape(geom)))
    # dilation (1, 2) over R x S = 3 x 2 taps; stride (2, 3); padding (1, 0)
    np.testing.assert_array_equal(echoed, [2, 3, 9, 7, 4, 3, 3, 2, 2, 3, 1, 0, 1, 2, 7])
