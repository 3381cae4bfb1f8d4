"""bench.roi_align_kernels (a GPU tool): its variants are launch_align.roi_align's keywords, each
running the kernel it names; checked on the simulator with a small map."""
import importlib

import numpy as np

import gpuconv
from bench import roi_align_kernels
from gpuconv.roi.geometry import check_roi_arguments


def test_each_variant_runs_its_kernel_and_agrees(monkeypatch):
    align = importlib.import_module("gpuconv.roi.launch_align")
    launched = []
    real = align.launch
    monkeypatch.setattr(align, "launch", lambda family, name, *a, **k: (
        launched.append(name), real(family, name, *a, **k)))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 40, 9, 11)).astype(np.float32)
    boxes = np.array([[0, 1.0, 2.0, 15.0, 12.0], [1, 4.0, 0.5, 20.0, 17.0]], np.float32)
    expected = gpuconv.roi_align(x, boxes, 3, 0.5, 2, True)
    kernels = {"lanes 4": "roi_align_forward<float, false, 4>",
               "lanes 2": "roi_align_forward<float, false, 2>",
               "tabled": "roi_align_forward_tabled<float, false, 2>",
               "grouped": "roi_align_forward_grouped<float, false, 2>",
               "NHWC tabled": "roi_align_forward_tabled<float, true, 2>",
               "NHWC grouped": "roi_align_forward_grouped<float, true, 2>",
               "separable": ["roi_align_separable_rows<float, false>",
                             "roi_align_separable_columns<float, false>"],
               "NHWC separable": ["roi_align_separable_rows<float, true>",
                                  "roi_align_separable_columns<float, true>"]}
    assert [name for name, _, _ in roi_align_kernels.VARIANTS] == list(kernels)
    for name, layout, keywords in roi_align_kernels.VARIANTS:
        mapped = x if layout == "NCHW" else np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        call = check_roi_arguments(mapped, boxes, 3, 0.5, 2, True, data_format=layout)
        launched.clear()
        with gpuconv.simulate():
            got = align.roi_align(call.geometry, mapped, call.rois, data_format=layout,
                                  executor="simulator", **keywords)
        want = kernels[name]
        assert launched == (want if isinstance(want, list) else [want])
        if layout == "NHWC":
            got = got.transpose(0, 3, 1, 2)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    geom = check_roi_arguments(x, boxes, 3, 0.5, 2, True).geometry
    assert roi_align_kernels.picks(align, geom) == "lanes"
    geom = check_roi_arguments(x, boxes, 3, 0.5, -1, True).geometry
    assert roi_align_kernels.picks(align, geom) == "separable"


def test_model_counts_sectors_and_pixels(monkeypatch):
    """One box (0, 0)-(3, 3) over a 4 x 16 map, 1 x 1 output, 2 x 2 samples at 0.75 and 2.25
    along each axis (corners 0-3): in NCHW 4 rows x 1 sector of 8 floats, in NHWC 4 x 4
    pixels, each for both channels."""
    from bench.suites import RoiShape
    shape = RoiShape("roi_align", 1, 2, 4, 16, 1, 1, 1.0, 2, False)
    monkeypatch.setattr(roi_align_kernels, "random_boxes",
                        lambda shape, seed, huge: np.array([[0, 0.0, 0.0, 3.0, 3.0]]))
    assert roi_align_kernels.traffic(shape, 4, 0) == {
        "map": 2 * 4 * 16 * 4, "nchw": 2 * 4 * 32, "nhwc": 2 * 16 * 4, "copy": 2 * 2 * 4 * 16 * 4}
