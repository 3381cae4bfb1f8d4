"""Launch plans of the region-of-interest fronts (gpuconv/_call_plans.py): a call whose signature
was seen before replays the recorded launches instead of its checks and launchers' host work.

What a ROI front's checks read beyond the signature is the boxes' values (batch indices, finite
coordinates), and those are scanned on the device by a kernel of the plan itself
(kernels/roi/rois_check.cu, launched by ``check_roi_arguments(values="deferred")``), so a plan
can hold the scan: a replay launches it with the other kernels and reads its answer after them,
as the full path does. A replay whose scan finds a bad row runs the full path again, which raises
that row's error (the replay's outputs are dropped).

Every launcher of the family makes its arrays through the plan channels (``_plans.empty`` /
``zeros``, ``launch_common.contiguous``): the audit that lets a recording be kept. Calls without
a key: the NumPy reference, boxes given as a list of arrays (the rois are concatenated from them
by array operations a plan cannot see), and arguments that are not plain values.
"""
from __future__ import annotations

from typing import Callable

from .. import _call_plans
from .geometry import RoiCall


def rows_answer(call: RoiCall):
    """The device answer of ``call``'s rows scan (a plan output), or None (no scan: reference,
    trusted rois, no boxes)."""
    return call.rows_check.first_bad if call.rows_check is not None else None


def call(front: str, roles: dict, scalars: tuple, full_path: Callable[[], tuple], *,
         scanned: bool, **mode) -> tuple:
    """The outputs of a ROI front's call, replayed from its plan or computed by ``full_path()``.

    ``full_path()`` checks and launches everything and returns the outputs as a tuple, with,
    when ``scanned`` (the boxes' values are scanned: every public front), the scan's answer
    (``rows_answer``) appended: a call whose scan did not run (answer None) gets no plan.
    ``mode``: ``deterministic=`` of a gradient (``_call_plans.planned``)."""
    key, replayed = _call_plans.planned(front, roles, scalars, replay_is_result=not scanned,
                                        **mode)
    if replayed is not None:
        if not scanned:
            return replayed
        from .launch_check import first_bad_row
        if first_bad_row(replayed[-1], roles["boxes"].shape[0]) is None:
            return replayed[:-1]
        # A bad row: the full path raises its error.
        key = None
    outputs = _call_plans.run(key, roles, full_path)
    return outputs[:-1] if scanned else outputs
