"""Validation of the region-of-interest calls, in one place, and the record the executors share.

Every check of ``roi_align``, ``roi_pool`` and their gradients happens here, before an executor
is chosen, so nothing invalid reaches the reference or a kernel. The result is a ``RoiCall``: the
arrays' library and dtype, a ``RoiGeometry`` (the sizes and scalar options a launcher needs) and
the boxes normalized to torchvision's ``rois`` layout: a contiguous ``(K, 5)`` array of x's dtype
and library, rows ``[batch_index, x1, y1, x2, y2]``.

Choices where torchvision is silent or undefined (documented in the public docstrings too):
- ``sampling_ratio <= 0`` is adaptive (``ceil(roi_size / bins)`` samples per bin), as in
  torchvision's kernels; the geometry stores every adaptive request as 0.
- ``spatial_scale`` must be finite and > 0: it is the ratio feature map / image.
- A list of boxes holds at most one non-empty array per image of x (torchvision reads out of
  bounds past N); empty arrays past the batch add no rows, as in torchvision.
- A batch index must lie in [0, N) (api.md); a fractional one inside that range is truncated,
  as torchvision's ``int`` conversion does (every path reads it with a C or NumPy int cast).
- Box coordinates times ``spatial_scale`` must lie within +-2**24 feature-map pixels
  (``MAX_COORDINATE``): float32 cannot address single pixels beyond that, and torchvision's int
  conversions of larger coordinates are undefined behaviour.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .. import _state
from .._args import (INT32_MAX, as_bool, as_choice, as_float, as_int, as_pair, check_holdable,
                     sequence_of)
from .._arrays import ArraySet, check_arrays, copy_for_kernels, is_kernel_ready, library_of

DATA_FORMATS = ("NCHW", "NHWC")
MAX_COORDINATE = float(2 ** 24)
VALUES_SCANS = ("now", "deferred", "trusted")
BOXES_FORMS = "a (K, 5) array of rows [batch_index, x1, y1, x2, y2] or a list of (K_i, 4) arrays"


@dataclass(frozen=True)
class RoiGeometry:
    """Sizes and options of one ROI call; the field names are the kernels' vocabulary."""
    N: int                 # images in x
    C: int                 # channels
    H: int                 # input height
    W: int                 # input width
    K: int                 # regions (rows of rois)
    PH: int                # output bins along y (pooled_height)
    PW: int                # output bins along x (pooled_width)
    spatial_scale: float   # box coordinates * spatial_scale = feature-map coordinates
    sampling_ratio: int = 0    # roi_align samples per bin along each axis; 0 = adaptive
    aligned: bool = False      # roi_align: shift box coordinates by -0.5 pixel

    def input_shape(self, data_format: str = "NCHW") -> tuple[int, int, int, int]:
        if data_format == "NHWC":
            return (self.N, self.H, self.W, self.C)
        return (self.N, self.C, self.H, self.W)

    def output_shape(self, data_format: str = "NCHW") -> tuple[int, int, int, int]:
        if data_format == "NHWC":
            return (self.K, self.PH, self.PW, self.C)
        return (self.K, self.C, self.PH, self.PW)

    @property
    def is_empty(self) -> bool:
        """Nothing to compute: no output element, or no pixel for a box to read.

        With ``H == 0`` or ``W == 0`` every sample lies outside the image, so every output is 0
        (torchvision's roi_pool gives 0 for empty bins; its roi_align would read out of bounds).
        """
        return self.K * self.C * self.PH * self.PW == 0 or self.H * self.W == 0


@dataclass(frozen=True)
class RowsCheckInFlight:
    """A device scan of the rois values (roi/launch_check.py) whose answer is not read yet."""
    first_bad: Any         # the scan's int32[1] answer, on the device (see first_bad_row)
    rois: Any              # the rois scanned (their bad row is quoted from here)
    n_images: int
    spatial_scale: float

    def raise_if_bad(self) -> None:
        from .launch_check import first_bad_row
        k = first_bad_row(self.first_bad, self.rois.shape[0])
        if k is not None:
            row = self.rois[k]
            row = row.get() if hasattr(row, "get") else row    # CuPy: to the host
            _describe_bad_row(k, np.asarray(row, dtype=np.float64), self.n_images,
                              self.spatial_scale)


@dataclass(frozen=True)
class RoiCall:
    arrays: ArraySet
    geometry: RoiGeometry
    rois: Any              # contiguous (K, 5) array, x's dtype and library
    rows_check: RowsCheckInFlight | None = None   # values="deferred": see check_roi_arguments

    @contextmanager
    def checking_rois(self):
        """Around the launches of a call checked with ``values="deferred"``: on leaving, raises
        the ValueError for the first bad row, if any (reading the scan's answer waits for the
        work queued in the block, on a GPU). A bad row's error also replaces one raised in the
        block, as when the rois were checked before it."""
        try:
            yield
        except (TypeError, ValueError):
            self._raise_if_rows_bad()
            raise
        self._raise_if_rows_bad()

    def run(self, empty_shape, reference: Callable[[], Any], kernels: Callable[[Any, str], Any]):
        """The call's result, inside ``checking_rois``: zeros of ``empty_shape`` when there is
        nothing to compute (``RoiGeometry.is_empty``), else ``reference()`` for the NumPy
        reference or ``kernels(launch, executor)`` with the launchers' module (roi/launch.py,
        imported only here: the reference never needs the kernel machinery)."""
        with self.checking_rois():
            if self.geometry.is_empty:
                return self.arrays.xp.zeros(empty_shape, dtype=self.arrays.dtype)
            executor = _state.executor_for(self.arrays.library)
            if executor == "reference":
                return reference()
            from . import launch
            return kernels(launch, executor)

    def _raise_if_rows_bad(self) -> None:
        if self.rows_check is not None:
            self.rows_check.raise_if_bad()


# The default of check_roi_arguments' grad_output: a forward call, which has none. (None itself
# is an invalid grad_output of a gradient call.)
FORWARD = object()


def check_roi_arguments(x, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1,
                        aligned=False, *, data_format="NCHW", grad_output=FORWARD,
                        values="now") -> RoiCall:
    """Validate one ROI call (``grad_output`` too, for a gradient) and normalize its arguments.

    ``values``, the scan of the boxes' values (batch indices, finite coordinates):
    - "now": done before this returns;
    - "deferred": where the kernels run (CuPy, the simulator) the scan is launched but its answer
      not read: the caller launches its kernels on ``call.rois`` (bad rows there are empty boxes
      in no image, which every ROI kernel skips) inside ``with call.checking_rois():``, which
      raises for a bad row on leaving. Reading the answer is a device synchronization, so
      doing it after the launches lets the host's work overlap the GPU's;
    - "trusted": none: ``boxes`` is the ``rois`` that a check of the same call returned. Only
      gpuconv's framework wrappers pass it, between a forward and its backward, where autograd
      keeps the boxes from changing.
    Everything else about the call is checked before this returns."""
    values = as_choice("values", values, VALUES_SCANS)
    data_format = as_choice("data_format", data_format, DATA_FORMATS)
    float_args = {"x": x} if grad_output is FORWARD else {"x": x, "grad_output": grad_output}
    arrays = check_arrays(float_args, ndim={"x": 4, "grad_output": 4})
    if data_format == "NHWC":
        n, h, w, c = x.shape
    else:
        n, c, h, w = x.shape
    # torchvision's _pair takes any iterable: a 1-D NumPy array is a pair of sizes there too
    ph, pw = as_pair("output_size", sequence_of(output_size), minimum=1, maximum=INT32_MAX)
    scale = as_float("spatial_scale", spatial_scale, positive=True)
    ratio = max(as_int("sampling_ratio", sampling_ratio, maximum=INT32_MAX), 0)
    if ratio * max(ph, pw) > INT32_MAX:
        # the kernels number an axis's samples in int (bin * ratio + i); torchvision would take
        # (output_size * ratio)^2 samples of one box: past 2^62, it never returns
        raise ValueError(f"sampling_ratio * output_size must stay within {INT32_MAX} samples per "
                         f"axis; got {ratio} * {max(ph, pw)}")
    rois = normalize_boxes(boxes, arrays, n)
    check_holdable("output_size", output_size, (rois.shape[0], c, ph, pw))
    scan_values = values != "trusted" and rois.shape[0] > 0
    try:
        geometry = RoiGeometry(N=int(n), C=int(c), H=int(h), W=int(w), K=int(rois.shape[0]),
                               PH=ph, PW=pw, spatial_scale=scale, sampling_ratio=ratio,
                               aligned=as_bool("aligned", aligned))
        if grad_output is not FORWARD:
            _check_grad_output_shape(grad_output, geometry, data_format)
    except (TypeError, ValueError):
        if scan_values:     # a bad row is the error of the earlier argument
            _scan_box_values_now(rois, arrays, n, scale)
        raise
    rows_check = None
    if scan_values and values == "now":
        rois = _scan_box_values_now(rois, arrays, n, scale)
    elif scan_values:
        rois, rows_check = _scan_box_values(rois, arrays, n, scale)
    return RoiCall(arrays, geometry, rois, rows_check)


def _check_grad_output_shape(grad_output, geometry: RoiGeometry, data_format: str) -> None:
    expected = geometry.output_shape(data_format)
    if tuple(grad_output.shape) != expected:
        layout = "(K, PH, PW, C)" if data_format == "NHWC" else "(K, C, PH, PW)"
        raise ValueError(f"grad_output must have the output's shape {layout} = {expected}, "
                         f"got {tuple(grad_output.shape)}")


def _scan_box_values_now(rois, arrays: ArraySet, n_images: int, spatial_scale: float):
    """The rois for the kernels, after raising for a bad row."""
    rois, rows_check = _scan_box_values(rois, arrays, n_images, spatial_scale)
    if rows_check is not None:
        rows_check.raise_if_bad()
    return rois


def normalize_boxes(boxes, arrays: ArraySet, n_images: int):
    """``boxes`` in either public form -> contiguous (K, 5) rois like x, their form checked
    (their values are scanned by check_roi_arguments)."""
    xp = arrays.xp
    if isinstance(boxes, (list, tuple)):
        rois = _rois_from_list(boxes, arrays, n_images)
    else:
        _check_box_array("boxes", boxes, arrays)
        if boxes.ndim != 2 or boxes.shape[1] != 5:
            raise ValueError(f"boxes must be {BOXES_FORMS}; got an array of shape "
                             f"{tuple(boxes.shape)}")
        # the array itself when kernel-ready: a launch plan's role (roi/plans.py), not a copy
        rois = boxes if is_kernel_ready(boxes) else copy_for_kernels(xp, boxes)
    return rois


def _check_box_array(name: str, b, arrays: ArraySet) -> None:
    library = library_of(name, b)
    if library != arrays.library:
        raise TypeError(f"{name} is a {library} array but x is a {arrays.library} array: "
                        "boxes must come from the same array library as x")
    if b.dtype != arrays.dtype:
        raise TypeError(f"{name} must have the same floating dtype as x ({arrays.dtype}), as "
                        f"torchvision requires; got {b.dtype}")


def _rois_from_list(boxes, arrays: ArraySet, n_images: int):
    """torchvision's convert_boxes_to_roi_format: the batch index of a box is its list position."""
    xp, dtype = arrays.xp, arrays.dtype
    parts = []
    for i, b in enumerate(boxes):
        name = f"boxes[{i}]"
        _check_box_array(name, b, arrays)
        if b.ndim != 2 or b.shape[1] != 4:
            raise ValueError(f"{name} must be a (K_i, 4) array of rows [x1, y1, x2, y2]; got "
                             f"shape {tuple(b.shape)}")
        if b.shape[0] == 0:
            continue      # no rows: past the batch too, as torchvision's concatenation
        if i >= n_images:
            raise ValueError(f"boxes is a list of {len(boxes)} arrays (one per image) and "
                             f"{name} holds {b.shape[0]} boxes, but x holds {n_images} images")
        # float16 holds integers exactly only up to 2048 (bfloat16: 256): a larger list position
        # would silently name another image.
        if float(np.asarray(i, dtype=dtype)) != i:
            raise ValueError(f"boxes: image index {i} is not representable in {dtype}; pass "
                             "a (K, 5) array of a wider dtype")
        parts.append(xp.concatenate([xp.full((b.shape[0], 1), i, dtype=dtype), b], axis=1))
    if not parts:
        return xp.empty((0, 5), dtype=dtype)
    return xp.ascontiguousarray(xp.concatenate(parts, axis=0))


def _scan_box_values(rois, arrays: ArraySet, n_images: int, spatial_scale: float):
    """(rois for the kernels, the scan in flight or None). Where the kernels run, the rois
    are scanned on the device (roi/launch_check.py: one 4-byte read back instead of a copy of
    every box), which also gives the kernels a copy with bad rows emptied; for the NumPy
    reference they are scanned here, and a bad row raises at once. Both name the same row."""
    executor = _state.executor_for(arrays.library)
    if executor != "reference":
        from .launch_check import launch_rows_check
        checked, first_bad = launch_rows_check(rois, n_images, spatial_scale, MAX_COORDINATE,
                                               executor)
        return checked, RowsCheckInFlight(first_bad, rois, n_images, spatial_scale)
    host = np.asarray(rois, dtype=np.float64)
    index = host[:, 0]
    with np.errstate(invalid="ignore", over="ignore"):
        bad = (~(index >= 0) | ~(index < n_images)
               | ~(np.abs(host[:, 1:]) * spatial_scale <= MAX_COORDINATE).all(axis=1))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        _describe_bad_row(k, host[k], n_images, spatial_scale)
    return rois, None


def _describe_bad_row(k: int, row: np.ndarray, n_images: int, spatial_scale: float) -> None:
    """Raise the ValueError for row ``k`` of the rois (float64 values), which breaks a rule."""
    if not np.isfinite(row).all():
        raise ValueError(f"boxes must be finite; row {k} of the rois is {row.tolist()}")
    if (np.abs(row[1:]) * spatial_scale > MAX_COORDINATE).any():
        raise ValueError(f"boxes: coordinates * spatial_scale must lie within +-2**24 "
                         f"feature-map pixels; row {k} of the rois is {row.tolist()} with "
                         f"spatial_scale {spatial_scale}")
    raise ValueError(f"boxes: the batch index (column 0) must be in [0, N) = [0, {n_images}) "
                     f"for x with N = {n_images} images; row {k} has {row[0]:g}")
