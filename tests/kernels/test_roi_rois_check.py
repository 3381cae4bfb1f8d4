"""The device-side check of rois values (kernels/roi/rois_check.cu) under the simulator: it
flags exactly the rows the NumPy rules of gpuconv/roi/geometry.py refuse, names the first one in
every thread order, in every dtype, and hands the kernels a copy with those rows emptied; the
front's two paths describe the same row, and the fronts that read the answer after launching
their kernels raise it all the same."""
import numpy as np
import pytest

import gpuconv
from gpuconv.roi.geometry import MAX_COORDINATE
from gpuconv.roi.launch_check import first_bad_row, launch_rows_check
from kernel_support import BFLOAT16, ORDERS

DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)) + BFLOAT16
GOOD = [[0, 1.0, 2.0, 30.5, 40.0], [1, -5.0, -3.0, 7.25, 8.0], [2, 0.0, 0.0, 0.0, 0.0]]
N_IMAGES = 3


def device_check(rois, spatial_scale=1.0):
    """The first bad row (every thread order agrees), after checking the kernels' copy: the
    good rows' values, bit for bit, and [-1, 0, 0, 0, 0] for every bad one."""
    answers = set()
    host = np.asarray(rois, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        bad = ~((host[:, 0] >= 0) & (host[:, 0] < N_IMAGES)
                & (np.abs(host[:, 1:]) * spatial_scale <= MAX_COORDINATE).all(axis=1))
    expected = rois.copy()
    expected[bad] = np.asarray([-1, 0, 0, 0, 0], dtype=np.float64).astype(rois.dtype)
    for order in ORDERS:
        with gpuconv.simulate(order=order):
            checked, first_bad = launch_rows_check(rois, N_IMAGES, spatial_scale,
                                                   MAX_COORDINATE, executor="simulator")
        assert checked.dtype == rois.dtype
        np.testing.assert_array_equal(checked.view(np.uint8), expected.view(np.uint8))
        answers.add(first_bad_row(first_bad, len(rois)))
    assert len(answers) == 1, answers
    return answers.pop()


def with_bad_rows(dtype, bad_rows):
    rows = GOOD * 3
    for position, row in bad_rows.items():
        rows[position] = row
    return np.asarray(rows, dtype=np.float64).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_good_rois_pass(dtype):
    assert device_check(with_bad_rows(dtype, {})) is None


BAD = {
    "index past N": [3, 1, 2, 3, 4],
    "negative index": [-1, 1, 2, 3, 4],
    "index just below 0": [-0.5, 1, 2, 3, 4],
    "nan index": [np.nan, 1, 2, 3, 4],
    "nan coordinate": [0, 1, np.nan, 3, 4],
    "infinite coordinate": [0, 1, 2, -np.inf, 4],
}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kind", list(BAD))
def test_the_first_bad_row_is_named(kind, dtype):
    rois = with_bad_rows(dtype, {7: BAD[kind], 4: BAD[kind]})
    assert device_check(rois) == 4


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_fractional_indices_inside_the_range_pass(dtype):
    # torchvision converts the batch index with a C int cast: 0.5 names image 0, N - 0.25 the
    # last image; only an index outside [0, N) is refused (api.md).
    rois = with_bad_rows(dtype, {1: [0.5, 1, 2, 3, 4], 5: [N_IMAGES - 0.25, 1, 2, 3, 4]})
    assert device_check(rois) is None


def test_coordinates_beyond_the_limit_after_scaling():
    rois = with_bad_rows(np.float64, {5: [0, 1, 2, 3, 2 ** 22]})
    assert device_check(rois, spatial_scale=1.0) is None
    assert device_check(rois, spatial_scale=8.0) == 5     # 2**25 feature-map pixels


@pytest.mark.parametrize("kind", list(BAD))
def test_the_front_refuses_the_row_the_kernel_names(kind):
    """The NumPy path of the front raises for the same row, whatever rule it breaks."""
    x = np.zeros((N_IMAGES, 2, 8, 8))
    rois = with_bad_rows(np.float64, {6: BAD[kind], 2: [0, 1, 2, 3, 1e30]})
    assert device_check(rois) == 2
    with pytest.raises(ValueError, match="row 2 "):
        gpuconv.roi_align(x, rois, 2)


FRONTS = {
    "roi_align": lambda x, rois: gpuconv.roi_align(x, rois, 2, 1.0, 2),
    "roi_pool": lambda x, rois: gpuconv.roi_pool(x, rois, 2),
    "grad.roi_align": lambda x, rois: gpuconv.grad.roi_align(
        np.ones((len(rois), 2, 2, 2)), x, rois, 2, 1.0, 2),
    "grad.roi_pool": lambda x, rois: gpuconv.grad.roi_pool(
        np.ones((len(rois), 2, 2, 2)), x, rois, 2),
}


@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("front", list(FRONTS))
@pytest.mark.parametrize("kind", list(BAD) + ["huge coordinate"])
def test_a_front_raises_after_its_kernels_ran_on_the_emptied_rows(monkeypatch, front, kind,
                                                                  deterministic):
    """Under the simulator the fronts launch their kernels before they read the check's answer
    (on a GPU that read waits for them): the launcher is handed the bad row as an empty box in
    no image, which every ROI kernel skips (test_contract_sanitizers.py runs such calls in the
    ASan build, below), and the call still raises the row's ValueError."""
    from gpuconv.roi import launch
    launches = []
    for name in ("roi_align", "grad_roi_align", "roi_pool", "grad_roi_pool"):
        real = getattr(launch, name)
        monkeypatch.setattr(launch, name, lambda *a, _real=real, _name=name, **k: (
            launches.append((_name, a[3] if _name == "grad_roi_pool" else a[2])),
            _real(*a, **k))[1])
    bad_row = BAD.get(kind, [0, 1, 2, 3, 1e30])
    x = np.arange(N_IMAGES * 2 * 8 * 8, dtype=np.float64).reshape(N_IMAGES, 2, 8, 8)
    rois = with_bad_rows(np.float64, {5: bad_row})
    gpuconv.set_deterministic(deterministic)
    try:
        with gpuconv.simulate(), pytest.raises(ValueError, match=r"row 5 "):
            FRONTS[front](x, rois)
    finally:
        gpuconv.set_deterministic(False)
    assert len(launches) == 1
    seen = launches[0][1]
    np.testing.assert_array_equal(seen[5], [-1, 0, 0, 0, 0])
    np.testing.assert_array_equal(np.delete(seen, 5, axis=0), np.delete(rois, 5, axis=0))


@pytest.mark.parametrize("front", list(FRONTS))
def test_a_front_with_good_rows_gives_the_references_answer(front):
    x = np.arange(N_IMAGES * 2 * 8 * 8, dtype=np.float64).reshape(N_IMAGES, 2, 8, 8) % 7
    rois = with_bad_rows(np.float64, {})
    with gpuconv.simulate():
        got = FRONTS[front](x, rois)
    np.testing.assert_allclose(got, FRONTS[front](x, rois), rtol=1e-12, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("front", list(FRONTS))
def test_the_kernels_touch_nothing_out_of_bounds_for_bad_rows(front):
    """Every kind of bad row at once, the kernels run in the AddressSanitizer build (in both
    backward modes): they read and write only inside their arrays."""
    from gpuconv.simulator import SanitizerUnavailable
    x = np.ones((N_IMAGES, 2, 8, 8))
    rois = np.asarray(GOOD + list(BAD.values()) + [[0, 1, 2, 3, 1e30]], dtype=np.float64)
    for deterministic in (False, True):
        gpuconv.set_deterministic(deterministic)
        try:
            with gpuconv.simulate(order="random", seed=5, sanitize="address"), \
                    pytest.raises(ValueError, match=f"row {len(GOOD)} "):
                FRONTS[front](x, rois)
        except SanitizerUnavailable as error:
            pytest.skip(str(error))
        finally:
            gpuconv.set_deterministic(False)


@pytest.mark.parametrize("rows_are_bad", [False, True])
def test_a_bad_row_is_the_error_even_when_a_later_step_fails(monkeypatch, rows_are_bad):
    """The row's error came first when the rois were scanned before anything was launched; it
    still does when a launcher or a later argument check raises too."""
    from gpuconv.roi import launch

    def failing_launcher(*args, **kwargs):
        raise ValueError("a launcher's own error")

    monkeypatch.setattr(launch, "roi_align", failing_launcher)
    x = np.ones((N_IMAGES, 2, 8, 8))
    rois = with_bad_rows(np.float64, {4: BAD["nan index"]} if rows_are_bad else {})
    expected = "row 4 " if rows_are_bad else "launcher's own"
    with gpuconv.simulate():
        with pytest.raises(ValueError, match=expected):
            gpuconv.roi_align(x, rois, 2)
        with pytest.raises(ValueError, match="row 4 " if rows_are_bad else "grad_output"):
            gpuconv.grad.roi_pool(np.ones((1, 2, 2, 2)), x, rois, 2)
        with pytest.raises((TypeError, ValueError), match="row 4 " if rows_are_bad else "aligned"):
            gpuconv.roi_align(x, rois, 2, aligned=2)
