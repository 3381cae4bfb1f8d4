"""Clocks and the interleaved measurement loop.

On a GPU every launch is timed by a pair of CUDA events on the stream the work runs on, with the
L2 cache flushed before each launch (a memset of a buffer twice the L2 size, enqueued before the
start event, so it is not timed). Before the flush a one-thread kernel holds the stream for
``HOLD_US`` (nvbench's "blocking kernel"): the host enqueues the start event, the call and the
end event while the GPU waits, so the events time the GPU's work alone, not the host's Python
(a small layer's kernels take less than gpuconv's or PyTorch's ~10-60 us of host time per call,
and the flush alone hid only ~35 us). A run whose enqueueing outlasted the hold is counted
(``host_bound_runs``): its time holds host time. The host's time per call is measured on its own
by bench/host_overhead.py. On the CPU a ``perf_counter`` pair brackets each call; caches are not
flushed (stated in the report).

``measure_interleaved`` takes every variant of one case through the same rounds, rotating the
order each round, so that clock and thermal drift fall on all of them alike; the statistic is
the median of all runs.
"""
from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, ContextManager

import numpy as np


@dataclass(frozen=True)
class TimingPlan:
    warmup: int          # untimed calls after the first (checked) call
    rounds: int          # interleaved rounds
    runs_per_round: int  # timed calls of one variant per round

    @property
    def runs(self) -> int:
        return self.rounds * self.runs_per_round


GPU_PLAN = TimingPlan(warmup=3, rounds=5, runs_per_round=10)
GPU_QUICK_PLAN = TimingPlan(warmup=2, rounds=3, runs_per_round=5)
CPU_PLAN = TimingPlan(warmup=1, rounds=3, runs_per_round=2)
CPU_QUICK_PLAN = TimingPlan(warmup=0, rounds=3, runs_per_round=1)


class CpuClock:
    description = "perf_counter around each call; CPU caches not flushed"

    def measure(self, fn: Callable[[], object], runs: int) -> list[float]:
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return times


HOLD_US = 300    # > the host time of one call of any variant, with a margin
# The spin kernel counts SM cycles (clock64). Counted at a clock above any data-centre GPU's
# (H100/H200 boost: 1.98 GHz), the hold lasts at least HOLD_US; a slower clock only lengthens it.
SPIN_CLOCK_GHZ = 2.5


class CudaEventClock:
    """CUDA events on CuPy's current stream, which must be the stream torch uses too (the
    runner checks that both are the legacy default stream)."""

    def __init__(self, flush_l2: bool = True, hold_us: float = HOLD_US):
        import cupy
        self._cupy = cupy
        device = cupy.cuda.Device()
        self.l2_bytes = int(cupy.cuda.runtime.getDeviceProperties(device.id)["l2CacheSize"])
        self.flush_bytes = 2 * self.l2_bytes if flush_l2 else 0
        self._flush = cupy.empty(self.flush_bytes, dtype=cupy.uint8) if flush_l2 else None
        self.hold_us = hold_us
        self._hold_cycles = np.int64(hold_us * 1e3 * SPIN_CLOCK_GHZ)
        self._spin = spin_kernel(cupy) if hold_us > 0 else None
        self.host_bound_runs = 0

    @property
    def description(self) -> str:
        hold = (f"each launch held behind a {self.hold_us:g} us one-thread kernel, so the host's "
                f"enqueueing is not timed; " if self._spin is not None else "")
        if self._flush is None:
            return f"CUDA events per launch; {hold}L2 NOT flushed (warm cache)"
        return (f"CUDA events per launch; {hold}L2 flushed before each launch by a "
                f"{self.flush_bytes / 2**20:.0f} MiB memset (2x the {self.l2_bytes / 2**20:.0f} MiB L2)")

    def measure(self, fn: Callable[[], object], runs: int) -> list[float]:
        cupy = self._cupy
        starts = [cupy.cuda.Event() for _ in range(runs)]
        ends = [cupy.cuda.Event() for _ in range(runs)]
        for start, end in zip(starts, ends):
            if self._spin is not None:
                self._spin((1,), (1,), (self._hold_cycles,))
                held_from = time.perf_counter()
            if self._flush is not None:
                self._flush.fill(0)
            start.record()
            fn()
            end.record()
            if self._spin is not None and time.perf_counter() - held_from > self.hold_us * 1e-6:
                self.host_bound_runs += 1
        ends[-1].synchronize()
        return [cupy.cuda.get_elapsed_time(s, e) * 1e-3 for s, e in zip(starts, ends)]


@dataclass
class Timed:
    """One variant as the measurement loop sees it."""
    name: str
    run: Callable[[], object]
    context: Callable[[], ContextManager] = contextlib.nullcontext
    times: list[float] = field(default_factory=list)
    error: BaseException | None = None       # raised while warming up or timing: dropped
    host_bound_runs: int = 0                 # runs the clock saw outlast its hold (CudaEventClock)


def measure_interleaved(variants: list[Timed], clock, plan: TimingPlan) -> None:
    """Fill each variant's ``times``: ``plan.rounds`` rounds, the order rotated every round.

    A variant that raises is dropped from later rounds with its exception kept in ``error``;
    the others go on.
    """
    def attempt(v: Timed, work: Callable[[], None]) -> None:
        if v.error is not None:
            return
        try:
            with v.context():
                work()
        except Exception as exc:  # kept on the variant and reported by the runner
            v.error = exc

    for v in variants:
        attempt(v, lambda v=v: [v.run() for _ in range(plan.warmup)])
    for r in range(plan.rounds):
        shift = r % len(variants) if variants else 0
        for v in variants[shift:] + variants[:shift]:
            attempt(v, lambda v=v: _measure(v, clock, plan.runs_per_round))


def _measure(v: Timed, clock, runs: int) -> None:
    host_bound = getattr(clock, "host_bound_runs", 0)
    v.times.extend(clock.measure(v.run, runs))
    v.host_bound_runs += getattr(clock, "host_bound_runs", 0) - host_bound


def median(times: list[float]) -> float:
    return statistics.median(times)


def graph_replay_us(cp, fn: Callable[[], object], runs: int = 20) -> float:
    """Median microseconds of one replay of ``fn``'s launches captured in a CUDA graph: the
    GPU's time alone, the host's excluded (bench/host_overhead.py, bench/tile_sweep.py). Raises
    what the capture raises (an allocation outside the memory pool, a host synchronization)."""
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        try:
            fn()
        finally:
            graph = stream.end_capture()
    start, stop = cp.cuda.Event(), cp.cuda.Event()
    times = []
    for _ in range(runs):
        start.record(stream)
        graph.launch(stream)
        stop.record(stream)
        stop.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, stop) * 1e3)
    return statistics.median(times)


def event_us(cp, fn: Callable[[], object], runs: int = 20) -> float:
    """Median microseconds of CUDA events around one call of ``fn``: as ``python -m bench``
    times it, the larger of the host's and the GPU's time (the GPU waits for the launch)."""
    start, stop = cp.cuda.Event(), cp.cuda.Event()
    times = []
    for _ in range(runs):
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, stop) * 1e3)
    return statistics.median(times)


_SPIN_SOURCE = r'''
__global__ void spin(long long cycles) {
  const long long start = clock64();
  while (clock64() - start < cycles) {
  }
}
'''


def spin_kernel(cp):
    """``spin((1,), (1,), (cycles,))``: one thread busy for ``cycles`` SM cycles, holding the
    stream (int64 ``cycles``)."""
    # By name expression, as gpuconv's loader finds its kernels (the simulator only so).
    return cp.RawModule(code=_SPIN_SOURCE, name_expressions=("spin",)).get_function("spin")


def queued_us(cp, fn: Callable[[], object], runs: int = 10, spin_cycles: int = 2_000_000) -> float:
    """Median microseconds that one call of ``fn`` adds behind a ~1 ms one-thread kernel, as in a
    model's step where the host runs ahead of the GPU: about its GPU time when it queues its
    work and returns, but also every host microsecond after a synchronization inside it (the
    queue drained, the GPU waits for the rest of the call's Python)."""
    spin = spin_kernel(cp)
    start, stop = cp.cuda.Event(), cp.cuda.Event()

    def elapsed(call):
        start.record()
        spin((1,), (1,), (np.int64(spin_cycles),))
        if call:
            fn()
        stop.record()
        stop.synchronize()
        return cp.cuda.get_elapsed_time(start, stop) * 1e3

    elapsed(False)     # compile the spin kernel
    alone = statistics.median(elapsed(False) for _ in range(runs))
    return statistics.median(elapsed(True) for _ in range(runs)) - alone


def print_profile(profiler, rows: int) -> None:
    """The ``rows`` functions of a cProfile.Profile with the most time of their own."""
    import io
    import pstats
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(rows)
    print(out.getvalue())
