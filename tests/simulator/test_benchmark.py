"""Throughput of the simulator on a small tiled convolution (N=2, C=K=8, 16x16, 3x3): prints
simulated CUDA threads per second (simulator.md targets >= 1 M/s on a 2-core machine). Not a
timed assertion: the rate depends on the machine and its load. Run as a script for the number
alone: ``python tests/simulator/test_benchmark.py``."""
from __future__ import annotations

import time

import numpy as np

from sim_support import load

N, C, H, W, K, R, TILE = 2, 8, 16, 16, 8, 3, 16


def conv_reference(x, w):
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    y = np.zeros((N, K, H, W))
    for r in range(R):
        for s in range(R):
            y += np.einsum("nchw,kc->nkhw", padded[:, :, r:r + H, s:s + W], w[:, :, r, s])
    return y


def measure(repeats: int = 10, rounds: int = 5) -> dict:
    """Best of `rounds` rounds of `repeats` launches (the best round is the one least disturbed
    by other processes on a shared machine)."""
    kernel = load("tiled_conv.cu", [f"tiled_conv<{TILE}, {R}>"]).get_function(
        f"tiled_conv<{TILE}, {R}>")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = rng.standard_normal((K, C, R, R)).astype(np.float32)
    y = np.full((N, K, H, W), np.nan, np.float32)
    grid, block = (W // TILE, H // TILE, N * K), (TILE, TILE)
    args = (y, x, w, np.int32(C), np.int32(H), np.int32(W), np.int32(K))
    kernel(grid, block, args)  # warm up: stacks, pages
    best_wall = best_cpu = float("inf")
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(repeats):
            kernel(grid, block, args)
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    threads = repeats * N * K * TILE * TILE
    return {"output": y, "x": x, "w": w, "threads_per_s_wall": threads / best_wall,
            "threads_per_s_cpu": threads / best_cpu if best_cpu > 0 else float("inf"),
            "ms_per_launch": 1e3 * best_wall / repeats}


def report(result: dict) -> str:
    return (f"simulator: tiled conv N={N} C=K={C} {H}x{W} {R}x{R}: "
            f"{result['threads_per_s_wall'] / 1e6:.2f} M threads/s wall, "
            f"{result['threads_per_s_cpu'] / 1e6:.2f} M threads/s CPU, "
            f"{result['ms_per_launch']:.2f} ms per launch of {N * K * TILE * TILE} threads")


def test_tiled_conv_throughput(capsys):
    result = measure()
    np.testing.assert_allclose(result["output"], conv_reference(result["x"], result["w"]),
                               rtol=1e-5, atol=1e-4)
    with capsys.disabled():
        print("\n" + report(result))


if __name__ == "__main__":
    print(report(measure(repeats=20, rounds=10)))
