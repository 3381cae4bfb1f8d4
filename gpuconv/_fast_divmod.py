"""kernels/common/fast_divmod.cuh's gc::FastDivmod made on the host, for kernels that take their
divisors as arguments (flat_index.cuh's gc::FlatDecoder, in the shape structs conv_shape.cuh
and pool_shape.cuh): the same (divisor, multiplier, shift) as the device constructor computes,
so that ``(x * multiplier) >> 32 >> shift == x // divisor`` for every x in [0, 2^31)."""
from __future__ import annotations

import functools

import numpy as np

# The struct's three 32-bit fields in their order (12 bytes).
FAST_DIVMOD_DTYPE = np.dtype([("divisor", np.int32), ("multiplier", np.uint32),
                              ("shift", np.uint32)])


def fast_divmod(divisor: int) -> tuple[int, int, int]:
    """(divisor, multiplier, shift) of gc::FastDivmod(divisor): p = 31 + ceil(log2 d),
    multiplier = ceil(2^p / d), shift = p - 32; divisor 1 (and the 0 of an empty extent, which
    no thread divides by) keep multiplier and shift 0."""
    d = int(divisor)
    if d < 0 or d >= 2 ** 31:
        raise ValueError(f"a FastDivmod divisor must lie in [0, 2^31), got {d}")
    if d <= 1:
        return d, 0, 0
    p = 31 + (d - 1).bit_length()          # (d - 1).bit_length() == ceil(log2 d) for d >= 2
    return d, -(-(1 << p) // d), p - 32


# gc::FlatDecoder: the divisors of C, H, W in that order (36 bytes).
FLAT_DECODER_DTYPE = np.dtype([(axis, FAST_DIVMOD_DTYPE) for axis in ("c", "h", "w")])


def flat_decoder(C: int, H: int, W: int) -> tuple:
    """The fields of gc::FlatDecoder for a contiguous (N, C, H, W) array (either layout: the
    kernel's layout flag picks the order it divides in)."""
    return (fast_divmod(C), fast_divmod(H), fast_divmod(W))


@functools.lru_cache(maxsize=4096)
def decoder_args(C: int, H: int, W: int) -> tuple[np.void]:
    """The gc::FlatDecoder argument (kernels/common/flat_index.cuh: C, H, W as host-made
    divisors) of the kernels that run one thread per element of a (N, C, H, W) tensor and split
    its flat index, as a 1-tuple to splice into an argument list."""
    return (np.array(flat_decoder(C, H, W), dtype=FLAT_DECODER_DTYPE)[()],)
