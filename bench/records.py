"""The JSON records of a run's cases and of each variant in them."""
from __future__ import annotations

import dataclasses
import traceback
from typing import TYPE_CHECKING

from .suites import Case

if TYPE_CHECKING:
    from .runner import Entry

# What a variant of a case can come to.
OK, UNCHECKED, UNAVAILABLE, NOT_APPLICABLE, MISMATCH, ERROR = (
    "ok", "unchecked", "unavailable", "not-applicable", "mismatch", "error")
FAILURES = (MISMATCH, ERROR)


def shape_record(shape) -> dict | None:
    if shape is None:
        return None
    return {"type": type(shape).__name__, **dataclasses.asdict(shape),
            "text": shape.describe()}


def entry_record(e: Entry, flops: int, nbytes: int, floor: float) -> dict:
    t = e.time_s
    rec = {"name": e.name, "kind": e.kind, "executor": e.executor, "algorithm": e.algorithm,
           "status": e.status, "reason": e.reason, "note": e.note,
           "counts_as_failure": e.is_gpuconv and e.status in FAILURES,
           "max_rel_error": e.max_rel_error, "within_tolerance": e.within_tolerance, "time_s": t}
    if t:
        times = e.timed.times
        rec.update(runs=len(times), host_bound_runs=e.timed.host_bound_runs,
                   min_s=min(times), max_s=max(times),
                   tflops=flops / t / 1e12, gbps=nbytes / t / 1e9, roofline_fraction=floor / t)
    if e.kind == "gpuconv":
        rec["ratios"] = e.ratios
    return rec


def case_record(case: Case, flops: int, nbytes: int, floor: float, oracle_name: str | None,
                entries: list[Entry]) -> dict:
    layer = case.layer
    return {
        "id": case.id, "suite": layer.suite, "layer": layer.name, "source": layer.source,
        "count": layer.count, "op": layer.op, "family": layer.family, "direction": case.direction,
        "dtype": case.dtype, "layout": case.layout,
        "shape": shape_record(layer.shape), "original_shape": shape_record(layer.original),
        "reduced": layer.original is not None,
        "flops": flops, "bytes": nbytes, "arithmetic_intensity": flops / nbytes,
        "floor_s": floor, "checked_against": oracle_name,
        "results": [entry_record(e, flops, nbytes, floor) for e in entries],
    }


def crashed_case_record(case: Case, exc: BaseException) -> dict:
    """A case the bench itself could not run through: a failure with its traceback."""
    layer = case.layer
    return {
        "id": case.id, "suite": layer.suite, "layer": layer.name, "source": layer.source,
        "count": layer.count, "op": layer.op, "family": layer.family, "direction": case.direction,
        "dtype": case.dtype, "layout": case.layout,
        "shape": shape_record(layer.shape), "original_shape": shape_record(layer.original),
        "reduced": layer.original is not None, "flops": None, "bytes": None,
        "arithmetic_intensity": None, "floor_s": None, "checked_against": None,
        "results": [{"name": "bench", "kind": "bench", "executor": None, "algorithm": None,
                     "status": ERROR, "reason": f"the bench crashed: {type(exc).__name__}: {exc}",
                     "note": "", "counts_as_failure": True, "max_rel_error": None,
                     "within_tolerance": None, "time_s": None,
                     "traceback": "".join(traceback.format_exception(exc))}],
    }
