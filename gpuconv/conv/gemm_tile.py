"""The SIMT GEMM block tile as the conv launchers see it (kernels/common/simt_gemm.cuh:
SimtTile): its template arguments, thread count and dynamic shared memory. One class for the
forward and backward launchers, so that a change to the kernels' tile layout is made once."""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace

from .._arrays import dtype_name

# The epilogue stage's row padding in floats, past block_n (mma_gemm.cuh: MmaTile::EPILOGUE_PAD).
MMA_EPILOGUE_PAD = 8


def accumulator_itemsize(dtype) -> int:
    """Bytes of the accumulator type: float for half types and float32, double for float64."""
    return 8 if dtype_name(dtype) == "float64" else 4


@dataclass(frozen=True)
class GemmTile:
    """A SIMT GEMM block tile (kernels/common/simt_gemm.cuh: SimtTile). ``async_copy``: the
    loaders copy one element at a time with cp.async into ``stages`` shared-memory stages
    (kernels/common/async_gemm.cuh: SimtTileAsync; float and double only); register-staged
    tiles always have 2."""
    block_m: int
    block_n: int
    block_k: int
    thread_m: int
    thread_n: int
    stages: int = 2
    async_copy: bool = False

    def __post_init__(self):
        if self.stages < 2 or (self.stages != 2 and not self.async_copy):
            raise ValueError(f"a GemmTile has 2 stages, or 2 or more with async_copy; got "
                             f"stages={self.stages}, async_copy={self.async_copy}")

    @property
    def threads(self) -> int:
        return (self.block_m // self.thread_m) * (self.block_n // self.thread_n)

    def transposed(self) -> "GemmTile":
        """The same tile with M and N swapped (for a GEMM whose operands are swapped)."""
        return replace(self, block_m=self.block_n, block_n=self.block_m, thread_m=self.thread_n,
                       thread_n=self.thread_m)

    @property
    def template_args(self) -> str:
        """The kernel's tile template arguments (a cp.async tile's also name its stages)."""
        args = f"{self.block_m}, {self.block_n}, {self.block_k}, {self.thread_m}, {self.thread_n}"
        return f"{args}, {self.stages}" if self.async_copy else args

    def mainloop_smem_elements(self) -> int:
        # SimtTile::SMEM_ELEMENTS: the stages of k-major A and B tiles, rows padded by 4.
        pad = 4
        return self.stages * self.block_k * (self.block_m + pad + self.block_n + pad)

    def mainloop_smem_bytes(self, acc_itemsize: int) -> int:
        """Shared memory of a kernel that runs only the main loop in it (its own epilogue
        stores from registers)."""
        return self.mainloop_smem_elements() * acc_itemsize

    @functools.lru_cache(maxsize=256)    # asked at every launch: host time
    def smem_bytes(self, dtype) -> int:
        """Shared memory of a kernel that also runs SimtMma::epilogue in it
        (SimtTile::STAGED_SMEM_ELEMENTS): the larger of the main loop's and the epilogue's stage
        of one (THREADS_M*4) x (THREADS_N*4 + 1) segment."""
        stage_m = self.block_m // self.thread_m * 4
        stage_n = self.block_n // self.thread_n * 4
        epilogue = stage_m * (stage_n + 1)
        return max(self.mainloop_smem_elements(), epilogue) * accumulator_itemsize(dtype)


@dataclass(frozen=True)
class MmaTile:
    """A tensor-core GEMM block tile (kernels/common/mma_gemm.cuh: MmaTile): warps of
    warp_m x warp_n, each (warp_m / 16) x (warp_n / 8) mma.m16n8k16 tiles; 16-bit operands.
    ``async_copy``: the loaders copy 8 elements at a time with cp.async into ``stages``
    shared-memory stages (MmaTileAsync; register-staged tiles always have 2: one multiplied,
    one stored from registers). ``rows_along_k``: the operand tiles are stored along k
    (MmaTileK, for 8 consecutive k per copy) instead of k-major; always copied with cp.async."""
    block_m: int
    block_n: int
    block_k: int
    warp_m: int
    warp_n: int
    rows_along_k: bool = False
    stages: int = 2
    async_copy: bool = False

    def __post_init__(self):
        if self.rows_along_k and not self.async_copy:
            raise ValueError("an MmaTile stored along k is filled by cp.async (async_copy=True)")
        if self.stages < 2 or (self.stages != 2 and not self.async_copy):
            raise ValueError(f"an MmaTile has 2 stages, or 2 or more with async_copy; got "
                             f"stages={self.stages}, async_copy={self.async_copy}")

    @property
    def threads(self) -> int:
        return 32 * (self.block_m // self.warp_m) * (self.block_n // self.warp_n)

    def transposed(self) -> "MmaTile":
        return replace(self, block_m=self.block_n, block_n=self.block_m, warp_m=self.warp_n,
                       warp_n=self.warp_m)

    @property
    def template_args(self) -> str:
        """The kernel's tile template arguments (a cp.async tile's also name its stages)."""
        args = f"{self.block_m}, {self.block_n}, {self.block_k}, {self.warp_m}, {self.warp_n}"
        return f"{args}, {self.stages}" if self.async_copy else args

    @functools.lru_cache(maxsize=256)    # asked at every launch: host time
    def smem_bytes(self, dtype) -> int:
        """The larger of the main loop's stages of 16-bit tiles (k-major: rows padded by 8
        elements; along k: unpadded, swizzled, mma_gemm.cuh KChunkSwizzle) and the epilogue's
        float stage of (warps along M * 16) x (block_n + EPILOGUE_PAD) (mma_gemm.cuh:
        MmaTile::EPILOGUE_FLOATS)."""
        pad = 8
        if self.rows_along_k:
            mainloop = self.stages * (self.block_m + self.block_n) * self.block_k * 2
        else:
            mainloop = self.stages * self.block_k * (self.block_m + pad + self.block_n + pad) * 2
        stage_m = self.block_m // self.warp_m * 16
        epilogue = stage_m * (self.block_n + MMA_EPILOGUE_PAD) * 4
        return max(mainloop, epilogue)


@dataclass(frozen=True)
class WgmmaTile:
    """A Hopper warpgroup tensor-core block tile (kernels/common/wgmma_gemm.cuh: WgmmaTileK):
    block_m / 64 warpgroups of 128 threads, each a wgmma m64n{block_n}k16 per k16 step; operand
    tiles stored along k in 32-element (64-byte, swizzled) rows, copied 8 elements at a time
    into ``stages`` shared-memory stages."""
    block_m: int
    block_n: int
    stages: int

    block_k = 32
    # WgmmaTileK::SMEM_ALIGN: the stages start on this boundary, which the kernel finds in its
    # 16-byte aligned dynamic shared memory (align_stages).
    smem_align = 1024

    def __post_init__(self):
        if self.block_m % 64 or self.block_n not in (32, 64, 128) or self.stages < 3:
            raise ValueError(f"a WgmmaTile is whole warpgroups of 64 rows, 32, 64 or 128 wide, "
                             f"with 3 or more stages; got {self}")

    @property
    def threads(self) -> int:
        return 2 * self.block_m

    @property
    def template_args(self) -> str:
        return f"{self.block_m}, {self.block_n}, {self.stages}"

    @functools.lru_cache(maxsize=256)    # asked at every launch: host time
    def smem_bytes(self, dtype) -> int:
        """The larger of the main loop's stages of 16-bit tiles and the epilogue's float stage
        of block_m x (block_n + EPILOGUE_PAD) (the MmaTile of 16 x block_n warp tiles whose
        epilogue it runs), plus the alignment's slack."""
        mainloop = self.stages * (self.block_m + self.block_n) * self.block_k * 2
        epilogue = self.block_m * (self.block_n + MMA_EPILOGUE_PAD) * 4
        return max(mainloop, epilogue) + self.smem_align - 16
