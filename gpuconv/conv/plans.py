"""Launch plans of ``gpuconv.conv2d`` and of its gradients ``gpuconv.grad.conv2d_input`` /
``conv2d_weight`` / ``conv2d_bias`` (gpuconv/_plans.py, gpuconv/_call_plans.py): which calls
have a signature, and which launch paths are recorded.

Calls with ``out=`` (checks of overlap and writability that depend on addresses) and calls under
autotuning (whose choice can change while measuring) have none. A key also holds the workspace
limit's variable as set (GPUCONV_WORKSPACE_BYTES): the launchers read it on every full call
(split-K counts, Winograd's and im2col's chunks, and its ValueError when it is not an integer).
"""
from __future__ import annotations

import os

from .. import _call_plans
from .._call_plans import PLANS, replay, run
from . import autotune
from .launch_im2col_gemm import WORKSPACE_ENV

__all__ = ["PLANS", "RECORDED_ALGORITHMS", "signature", "planned", "replay", "run"]

# The forward algorithms whose launchers do all their GPU work through recorded launches and
# fresh, derived or viewed arrays (no elementwise CuPy operation the recorder cannot see). Not
# im2col_gemm: its gemm="cublas" multiplies with cupy.matmul. Every backward launcher does
# (launch_bwd_data's fill of unreached pixels goes through _plans.apply).
RECORDED_ALGORITHMS = frozenset({"direct", "implicit_gemm", "pointwise", "depthwise",
                                 "winograd_nonfused"})


def signature(front: str, roles: dict, scalars: tuple):
    """``_call_plans.signature`` with the workspace limit's variable; none under autotuning."""
    if autotune.enabled():
        return None
    return _call_plans.signature(front, roles, (*scalars, os.environ.get(WORKSPACE_ENV)))


def planned(front: str, roles: dict, scalars: tuple, **mode):
    """``_call_plans.planned`` with this family's signature."""
    return _call_plans.planned(front, roles, scalars, sign=signature, **mode)
