"""gpuconv's benchmark suite: ``python -m bench`` (from the repository root).

Every applicable gpuconv algorithm, side by side with cuDNN (NCHW and channels_last), PyTorch's
native convolution, cuBLAS, PyTorch pooling and torchvision's ROI ops, in one process, on the
layer shapes of ``bench/shapes.json``; method and targets in the team's perf.md. Without a GPU
the same suite runs the NumPy reference and gpuconv's CPU executor on reduced shapes, labelled
as CPU timings that say nothing about GPU speed.

Modules, in the order a run uses them:
- ``suites``      shapes.json -> layers -> cases (quick selection, CPU reduction)
- ``geometry``    the shape records and their output sizes
- ``operations``  random inputs and the gpuconv public-API call of a case
- ``baselines``   the peers, prepared for a case
- ``ceilings``    measured copy bandwidth and GEMM rate
- ``timing``      CUDA-event and CPU clocks, the interleaved measurement loop
- ``roofline``    FLOPs, bytes, floor, ratio, geometric mean
- ``runner``      check, time and record every variant of every case (``records``: the JSON)
- ``summary``     per-family geometric means (each row counts the cases whose baseline was
                  timed although less accurate than the tolerance: "n (k inexact)")
- ``environment`` device, driver, CUDA and library versions, git commit, and the environment
                  variables that change a measurement (``SETTINGS``: autotuning, TF32, ...)
- ``report``, ``plots``  terminal table, JSON, summary.md, PNGs

Typical runs: ``python -m bench --quick`` (a few minutes on a GPU; seconds on a CPU once the
kernels are built), ``python -m bench --suite resnet50 --dtype float32,float16``,
``python -m bench --list``. Exit status 1 when a gpuconv result disagrees with its oracle or a
call fails (not for an algorithm forced onto a case it refuses with a ValueError, nor for one
not available: those are recorded as "not-applicable" / "unavailable"), or when SIGINT (Ctrl-C)
or a failed device stopped the run early (the cases done so far are still written, marked
``"interrupted": true``); 2 for a bad command line.
conv_transpose2d has no cases of its own: it runs the data gradient's kernels (with the bias in
their epilogue, gpuconv/conv/launch_backward.py), so the ``data_grad`` cases measure it.
``bench/test_*.py`` run the same cases under pytest-benchmark on a GPU (skipped without one).
"""
