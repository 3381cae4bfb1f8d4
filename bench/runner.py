"""Run the selected cases: check every variant against an oracle, time those that agree.

Per case:
1. random inputs (seeded by the case id, so reruns see the same data);
2. on a GPU the oracle is the case's first baseline (cuDNN / PyTorch / torchvision) run in
   float64 and NCHW on the same data upcast; each baseline is prepared and called once and
   checked against it (where that oracle cannot run, the first checkable baseline is the
   oracle: gpuconv's NumPy reference on the CPU, the NumPy reference on host copies when a GPU
   run has no torch);
3. each gpuconv variant ("auto" and every name in ``gpuconv.conv_algorithms`` for convs) is
   called once and checked; one that disagrees is flagged and not timed;
4. the variants that agree are warmed up and timed together, interleaved (timing.py);
5. time, TFLOP/s, GB/s, roofline fraction and the ratio against every baseline.

What a gpuconv call may raise decides what is recorded:
- NotImplementedError, ImportError, or a missing function: "unavailable" (the kernels are still
  being written), and the suite goes on. An AttributeError is an error: on a GPU it is most
  likely a wrong CuPy/torch API, which must fail the run, not vanish from it;
- a ValueError from a *forced* algorithm, when "auto" accepted the same arguments: api.md's way
  of saying that algorithm cannot run the case: "not-applicable";
- anything else, or a result that disagrees with the oracle: a failure ("error"/"mismatch"),
  reported, and the run exits non-zero.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import sys
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from gpuconv._state import flag_value

from . import ceilings as ceilings_mod
from . import environment
from .baselines import Baseline, baseline_names, configure_torch, prepare
from .operations import (NotApplicable, Unavailable, conv_algorithms, gpuconv_function,
                         gpuconv_runner, make_inputs, numpy_dtype, output_nchw, to_host)
from .records import (ERROR, FAILURES, MISMATCH, NOT_APPLICABLE, OK, UNAVAILABLE, UNCHECKED,
                      case_record, crashed_case_record)
from .roofline import count_source, roofline_floor, work
from .suites import CPU_FULL, CPU_QUICK, Case, build_cases
from .summary import summarize
from .timing import CpuClock, CudaEventClock, Timed, TimingPlan, measure_interleaved, median

# Largest |result - oracle| / max|oracle| accepted, per dtype.
TOLERANCE = {"float64": 1e-9, "float32": 1e-4, "float16": 1e-2, "bfloat16": 5e-2}
CPU_NOTE = ("CPU timings: the NumPy reference (executor cpu-reference) and the CUDA kernels run by "
            "gpuconv's CPU executor (cpu-simulator), on reduced shapes. They check that the suite "
            "and the kernels work end to end and say nothing about GPU speed.")
GPU_NOTE = ("GPU timings: median of CUDA-event-timed launches after warm-up; baselines measured in "
            "the same process on the same data, interleaved.")
FILTERS_LAYOUT = ("convolution filters (K, C/groups, R, S): contiguous for the NCHW cases and for "
                  "the cudnn, torch_native and cublas baselines; in NHWC cases laid out "
                  "(K, R, S, C/groups) in memory (channels_last) for gpuconv and cudnn_nhwc, "
                  "made before timing (operations.filters_in_layout)")
UNAVAILABLE_ERRORS = (Unavailable, NotImplementedError, ImportError)


@dataclass(frozen=True)
class RunConfig:
    mode: str                                   # "gpu" | "cpu"
    suites: tuple[str, ...] | None = None
    quick: bool = False
    directions: tuple[str, ...] = ("forward",)
    dtypes: tuple[str, ...] = ("float32",)
    layouts: tuple[str, ...] = ("NCHW",)
    algorithms: tuple[str, ...] | None = None   # None: every algorithm gpuconv has
    layer_pattern: str | None = None
    plan: TimingPlan | None = None
    flush_l2: bool = True

    def cases(self) -> list[Case]:
        reduction = None if self.mode == "gpu" else (CPU_QUICK if self.quick else CPU_FULL)
        return build_cases(list(self.suites) if self.suites else None, quick=self.quick,
                           directions=self.directions, dtypes=self.dtypes, layouts=self.layouts,
                           reduction=reduction, layer_pattern=self.layer_pattern)


@dataclass
class Entry:
    """One variant (a gpuconv algorithm or a baseline) of one case."""
    name: str
    kind: str                                   # "gpuconv" | "baseline"
    executor: str
    algorithm: str | None = None
    is_gpuconv: bool = True                     # failures count against gpuconv
    status: str = "pending"
    reason: str | None = None
    note: str = ""
    max_rel_error: float | None = None
    within_tolerance: bool | None = None        # None: not compared (no oracle, or it failed)
    run: Callable[[], Any] | None = None          # set once the variant ran its checked call
    context: Callable[[], Any] = contextlib.nullcontext
    timed: Timed | None = None
    ratios: dict[str, float] = field(default_factory=dict)

    @property
    def time_s(self) -> float | None:
        """The median timed run; None unless the variant stayed ok or unchecked through its
        timing (one that failed partway keeps no time: no ratio, mean or best is made of it)."""
        if self.status not in (OK, UNCHECKED) or not (self.timed and self.timed.times):
            return None
        return median(self.timed.times)

    def set(self, status: str, reason: str | None = None) -> None:
        self.status, self.reason = status, reason


@dataclass
class CheckedCase:
    case: Case
    inputs: Any
    entries: list[Entry]
    oracle_name: str | None

    def entry(self, name: str) -> Entry:
        return next(e for e in self.entries if e.name == name)


def classify(exc: BaseException, *, forced: bool, auto_rejected_args: bool) -> tuple[str, str]:
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, UNAVAILABLE_ERRORS):
        return UNAVAILABLE, text
    if isinstance(exc, NotApplicable):
        return NOT_APPLICABLE, str(exc)
    if isinstance(exc, ValueError) and forced and not auto_rejected_args:
        return NOT_APPLICABLE, text
    return ERROR, text


def compare(xp, got, want, dtype: str) -> tuple[bool, float | None, str | None]:
    """(agrees, max |got - want| / max |want|, why not)."""
    if tuple(got.shape) != tuple(want.shape):
        return False, None, f"shape {tuple(got.shape)} != oracle's {tuple(want.shape)}"
    if got.dtype.name != dtype:                 # api.md: output dtype = input dtype
        return False, None, f"result dtype {got.dtype.name} != input dtype {dtype}"
    acc = np.float64 if dtype == "float64" else np.float32
    g, w = got.astype(acc), want.astype(acc)
    if g.size == 0:
        return True, 0.0, None
    if not bool(xp.isfinite(g).all()):
        return False, None, "non-finite values in the result"
    scale = max(float(xp.abs(w).max()), np.finfo(np.float32).tiny)
    rel = float(xp.abs(g - w).max()) / scale
    if rel > TOLERANCE[dtype]:
        return False, rel, f"max relative error {rel:.3g} > {TOLERANCE[dtype]:g}"
    return True, rel, None


class Runner:
    def __init__(self, config: RunConfig, progress=None):
        self.config = config
        self.mode = config.mode
        self.progress = progress
        self.baseline_settings: dict = {}
        self.notes: list[str] = []
        self.interrupted = False
        if self.mode == "gpu":
            import cupy
            self.xp = cupy
            self.clock = CudaEventClock(flush_l2=config.flush_l2)
            self._setup_torch()
        else:
            self.xp = np
            self.clock = CpuClock()

    # ---- set-up ----------------------------------------------------------------------------

    def _setup_torch(self) -> None:
        import cupy
        if cupy.cuda.get_current_stream().ptr != 0:
            raise RuntimeError("bench needs CuPy on the legacy default stream (unset "
                               "CUPY_CUDA_PER_THREAD_DEFAULT_STREAM)")
        try:
            import torch
        except ImportError:
            self.notes.append("torch is not installed: no cuDNN/PyTorch/torchvision baselines; "
                              "results are checked against the NumPy reference on host copies")
            return
        if torch.cuda.is_available():
            torch.cuda.set_device(cupy.cuda.Device().id)
            if torch.cuda.current_stream().cuda_stream != 0:
                raise RuntimeError("torch's current stream is not the legacy default stream: "
                                   "the CUDA events would not bracket its kernels")
            self.baseline_settings = configure_torch(torch)

    def gpuconv_context(self) -> Callable[[], Any]:
        if self.mode == "gpu":
            return contextlib.nullcontext
        return lambda: gpuconv_function("simulate")()

    @property
    def gpuconv_executor(self) -> str:
        return "gpu" if self.mode == "gpu" else "cpu-simulator"

    def measure_ceilings(self, dtypes) -> dict:
        measure = ceilings_mod.measure_gpu if self.mode == "gpu" else ceilings_mod.measure_cpu
        return {dtype: measure(dtype) for dtype in dtypes}

    # ---- one case --------------------------------------------------------------------------

    def check_case(self, case: Case) -> CheckedCase:
        """Steps 1-3: inputs, baselines and gpuconv variants called once and checked."""
        inp = make_inputs(case, self.xp, seed=zlib.crc32(case.id.encode()) & 0x7FFFFFFF)
        entries: list[Entry] = []
        oracle, oracle_name = self._float64_oracle(case, inp)

        for name in baseline_names(case, self.mode):
            entry = Entry(name, "baseline", name, is_gpuconv=(name == "reference"))
            entries.append(entry)
            try:
                b: Baseline = prepare(name, case, inp)
                entry.executor, entry.note = b.executor, b.note
                with b.context():
                    result = b.to_nchw(b.run())
            except Exception as exc:
                entry.set(*classify(exc, forced=False, auto_rejected_args=False))
                continue
            entry.run, entry.context = b.run, b.context
            if not b.checkable:
                entry.set(OK)
            elif oracle is None:
                oracle, oracle_name = result, name
                entry.set(OK, "oracle: the other results are checked against this one")
            else:
                self._check(entry, case, result, oracle, oracle_name, time_anyway=True)

        if oracle is None and self.mode == "gpu":
            oracle, oracle_name = self._host_reference(case, inp)

        auto_rejected = False
        for algorithm in self._algorithms(case):
            entry = Entry(f"gpuconv:{algorithm or 'default'}", "gpuconv", self.gpuconv_executor,
                          algorithm)
            entries.append(entry)
            context = self.gpuconv_context()
            try:
                run = gpuconv_runner(case, inp, algorithm)
                with context():
                    result = output_nchw(case, inp, run())
            except Exception as exc:
                entry.set(*classify(exc, forced=algorithm not in (None, "auto"),
                                    auto_rejected_args=auto_rejected))
                if algorithm == "auto" and isinstance(exc, (ValueError, TypeError)):
                    auto_rejected = True
                continue
            entry.run, entry.context = run, context
            if oracle is None:
                entry.set(UNCHECKED, "no baseline ran to check against")
            else:
                self._check(entry, case, result, oracle, oracle_name)
        return CheckedCase(case, inp, entries, oracle_name)

    def run_case(self, case: Case, ceiling) -> dict:
        checked = self.check_case(case)
        entries = checked.entries
        flops, nbytes = work(case.layer.shape, case.direction,
                             numpy_dtype(case.dtype).itemsize, checked.inputs.boxes_host)
        floor = roofline_floor(flops, nbytes, ceiling.peak_flops, ceiling.bandwidth)
        self._time(entries)
        for entry in entries:
            if entry.timed and entry.timed.error is not None:
                # an error, whatever its type: the variant ran its checked call before timing
                _, reason = classify(entry.timed.error, forced=False, auto_rejected_args=False)
                entry.set(ERROR, f"while timing: {reason}")
        self._ratios(entries)
        oracle_name = checked.oracle_name
        # The variants' closures hold the case's arrays: drop them, so that the memory pools
        # can be freed once this returns.
        for entry in entries:
            entry.run = None
            if entry.timed:
                entry.timed.run = None
        return case_record(case, flops, nbytes, floor, oracle_name, entries)

    def _algorithms(self, case: Case) -> list[str | None]:
        if case.layer.op != "conv":
            return [None]
        if self.config.algorithms:   # as asked, kernel variants included (they are opt-in)
            return list(self.config.algorithms)
        return list(conv_algorithms())

    def _check(self, entry: Entry, case: Case, result, oracle, oracle_name: str, *,
               time_anyway: bool = False) -> None:
        """A result against the oracle. A gpuconv variant that disagrees is not timed; a
        baseline (``time_anyway``) still is, as the standard the others are measured against,
        with its error in the record (cuDNN picks FFT / Winograd algorithms in float32 whose
        error can exceed the tolerance: 1.7e-2 on alexnet.conv2's weight gradient, H100)."""
        agrees, rel, why = compare(self.xp, result, oracle, case.dtype)
        entry.max_rel_error, entry.within_tolerance = rel, agrees
        if agrees:
            entry.set(OK)
        elif time_anyway and rel is not None:
            entry.set(OK, f"less accurate than the tolerance: disagrees with {oracle_name}: {why}")
        else:
            entry.set(MISMATCH, f"disagrees with {oracle_name}: {why}; not timed")

    def _float64_oracle(self, case: Case, inp):
        """On a GPU, the oracle is the case's first baseline (cuDNN, PyTorch's pooling,
        torchvision) run in float64, in NCHW, on the same data upcast (exact to ~1e-15 here),
        so that the float32 / float16 baselines and their channels_last kernels are checked too
        instead of being the standard: torchvision computes ROI align's sampling coordinates in
        the data's dtype (errors of 0.07-0.3 in float16 on FPN-sized images), and torch 2.11's
        channels_last avg_pool2d backward ignores the padding (pytorch/pytorch#188344). (None,
        None) where that cannot run (no torch, float64 cases, dtypes the array library cannot
        upcast): the first float baseline is the oracle then."""
        if self.mode != "gpu" or case.dtype == "float64":
            return None, None
        try:
            name = baseline_names(case, self.mode)[0]
            arrays = ("x_nchw", "x", "w", "dy_nchw", "dy", "boxes")
            up = dataclasses.replace(inp, **{a: getattr(inp, a).astype(np.float64)
                                             for a in arrays if getattr(inp, a) is not None})
            b = prepare(name, dataclasses.replace(case, dtype="float64", layout="NCHW"), up)
            with b.context():
                return b.to_nchw(b.run()), f"{name} in float64, NCHW (inputs upcast)"
        except Exception:      # noqa: BLE001 -- the first float baseline is the oracle then
            return None, None

    def _host_reference(self, case: Case, inp):
        try:
            host = to_host(inp)
            result = output_nchw(case, host, gpuconv_runner(case, host, None)())
        except UNAVAILABLE_ERRORS:
            return None, None
        return self.xp.asarray(result), "reference (NumPy, host copies)"

    def _time(self, entries: list[Entry]) -> None:
        timed = []
        for entry in entries:
            if entry.status in (OK, UNCHECKED) and entry.run is not None:
                entry.timed = Timed(entry.name, entry.run, entry.context)
                timed.append(entry.timed)
        measure_interleaved(timed, self.clock, self.config.plan)

    @staticmethod
    def _ratios(entries: list[Entry]) -> None:
        baselines = [e for e in entries if e.kind == "baseline" and e.time_s]
        for entry in entries:
            if entry.kind == "gpuconv" and entry.time_s:
                entry.ratios = {b.name: b.time_s / entry.time_s for b in baselines}

    def _release_memory(self) -> None:
        import cupy
        cupy.get_default_memory_pool().free_all_blocks()
        if "torch" in sys.modules:
            sys.modules["torch"].cuda.empty_cache()

    # ---- the whole run ---------------------------------------------------------------------

    def run(self) -> dict:
        with self._reference_stays_reference():
            return self._run()

    @contextlib.contextmanager
    def _reference_stays_reference(self):
        """gpuconv reads GPUCONV_SIMULATE at every call; with it set, the NumPy "reference"
        would be the simulator. It is lifted for the run and put back afterwards."""
        saved = os.environ.pop("GPUCONV_SIMULATE", None)
        try:
            lifted = flag_value("GPUCONV_SIMULATE", saved)
        except ValueError:
            lifted = True       # a value gpuconv refuses is lifted all the same
        if lifted:
            self.notes.append(f"GPUCONV_SIMULATE={saved!r} was set; lifted for this run: the CPU "
                              "executor runs only inside gpuconv.simulate() here")
        try:
            yield
        finally:
            if saved is not None:
                os.environ["GPUCONV_SIMULATE"] = saved

    def _run(self) -> dict:
        cases = self.config.cases()
        dtypes = sorted({c.dtype for c in cases}, key=self.config.dtypes.index)
        ceilings = self.measure_ceilings(dtypes)
        records = []
        if self.progress:
            self.progress.start(len(cases))
        for case in cases:
            if self.progress:
                self.progress.step(case.id)
            try:
                records.append(self._run_or_record_crash(case, ceilings[case.dtype]))
                failure = self._device_failure()
            except KeyboardInterrupt:
                # Ctrl-C, or SIGINT from `timeout` (bench/gpu_session.sh) before a device
                # command's time limit: keep what was measured rather than lose the whole run.
                failure = "SIGINT"
            if failure:
                self.interrupted = True
                self.notes.append(f"INTERRUPTED after {len(records)} of {len(cases)} cases "
                                  f"({failure}): the results are partial")
                break
        if self.progress:
            self.progress.finish()
        return self.document(records, ceilings)

    def _run_or_record_crash(self, case: Case, ceiling) -> dict:
        try:
            return self.run_case(case, ceiling)
        except Exception as exc:  # a bench bug: recorded as a failure; the run goes on
            return crashed_case_record(case, exc)

    def _device_failure(self) -> str | None:
        """Frees the memory pools after a case (GPU); says why if the device no longer answers."""
        if self.mode != "gpu":
            return None
        try:
            self._release_memory()
        except Exception as error:
            # A kernel fault leaves the CUDA context unusable ("sticky" errors): every later
            # case would fail the same way, so the run stops with the cases done.
            return f"the device failed: {type(error).__name__}: {error}"
        return None

    def document(self, records: list[dict], ceilings: dict) -> dict:
        cfg = self.config
        config = dataclasses.asdict(cfg)
        config["plan"] = dataclasses.asdict(cfg.plan)
        failures = [{"case": r["id"], "variant": e["name"], "status": e["status"], "reason": e["reason"]}
                    for r in records for e in r["results"]
                    if e["status"] in FAILURES and e["counts_as_failure"]]
        return {
            "schema": "gpuconv-bench/1",
            "mode": self.mode,
            "executors": (["gpu"] if self.mode == "gpu" else ["cpu-simulator", "cpu-reference"]),
            "note": GPU_NOTE if self.mode == "gpu" else CPU_NOTE,
            "notes": self.notes,
            "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": sys.argv,
            "config": config,
            "environment": environment.collect(self.mode),
            "baseline_settings": self.baseline_settings,
            "timing": {"clock": self.clock.description, "statistic": "median",
                       "order": "variants interleaved, order rotated every round",
                       "first_call": "checked against the oracle, not timed",
                       "filters": FILTERS_LAYOUT},
            "roofline": {"floor": "max(FLOPs / peak, bytes / bandwidth)",
                         "fraction": "floor / measured time",
                         "ratio": "baseline time / gpuconv time (> 1: gpuconv faster)",
                         "counts": count_source()},
            "ceilings": {d: c.as_json() for d, c in ceilings.items()},
            "cases": records,
            "interrupted": self.interrupted,
            "summary": summarize(records),
            "failures": failures,
        }
