#!/usr/bin/env bash
# One stage of a GPU session, sized to fit one device command (10 minutes) and to leave its
# logs and results under $OUT (the device tool brings that folder back). From the repo root:
#   bash bench/gpu_session.sh tests      # the GPU test suite: CuPy kernels vs the reference
#   bash bench/gpu_session.sh sanitize   # compute-sanitizer memcheck + racecheck on kernel tests
#                                        # (SANITIZE_TOOLS, SANITIZE_K: which tools, which tests)
#   bash bench/gpu_session.sh bench [SUITE,...]   # python -m bench on the GPU, JSON + plots
#                                                 # (as bench_<BENCH_TAG or run>.tgz: unpack it into
#                                                 # bench/results/<UTC time>-<GPU name>/ and commit)
#   bash bench/gpu_session.sh models     # torchvision resnet50 / mobilenet_v2 converted with
#                                        # gpuconv.torch.convert vs native PyTorch (bench/models.py),
#                                        # after the bridge's host time per call (bench/bridge_host.py);
#                                        # MODELS_ARGS="--compile ..." times them compiled
#   bash bench/gpu_session.sh roi        # every roi_align forward kernel vs torchvision, float32
#                                        # and float16 (bench/roi_align_kernels.py)
# The device machine has no network: the package runs from the checkout (PYTHONPATH), with the
# NumPy/CuPy/PyTorch already installed there. Its copy of the tree has no .git: pass the commit,
#   GPUCONV_COMMIT=<sha of the tree sent> bash bench/gpu_session.sh bench resnet50
# so that results.json records it. Every suite at once does not fit in one command: name a few.
# Each stage stops itself (SIGINT) after STAGE_SECONDS (default 540), so that what it measured
# is still written and brought back before the command's own limit kills everything.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpuconv-gpu-session}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
# JAX (imported by the framework tests) would otherwise take 75% of the GPU's memory at once.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
PY=${PYTHON:-python3}
SECONDS_LEFT=${STAGE_SECONDS:-540}

{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  # GPUCONV_COMMIT first: a device copy of the tree may carry a .git of an older commit
  echo "commit: ${GPUCONV_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo 'unknown (GPUCONV_COMMIT unset)')}"
  $PY -c "import cupy, numpy; print('cupy', cupy.__version__, 'numpy', numpy.__version__)"
  $PY -c "import torch; print('torch', torch.__version__, 'cudnn', torch.backends.cudnn.version())"
} > "$OUT/environment.txt" 2>&1

# SIGINT first (pytest and the bench then report what they have), SIGKILL 30 s later.
stop_after() { timeout -s INT -k 30 "$@"; }

stage=${1:-tests}
case "$stage" in
  tests)
    # Only the tests that need a GPU: the simulator-side tests ran in CI already.
    stop_after "$SECONDS_LEFT" $PY -m pytest -q -m gpu -p no:cacheprovider --durations=15 tests \
      2>&1 | tee "$OUT/gpu_tests.log"
    ;;
  sanitize)
    # memcheck over a slice of the kernel tests (every family, small shapes); racecheck on the
    # shared-memory kernels. compute-sanitizer multiplies run time by 10-100x: keep -k narrow.
    if ! command -v compute-sanitizer >/dev/null; then
      echo "compute-sanitizer is not on PATH" | tee "$OUT/sanitize_memcheck.log"
      exit 127
    fi
    status=0
    tools=${SANITIZE_TOOLS:-memcheck racecheck}
    for tool in $tools; do
      stop_after $((SECONDS_LEFT / $(echo $tools | wc -w))) \
        compute-sanitizer --tool "$tool" --error-exitcode 3 \
        --print-limit 20 $PY -m pytest -q -x -m gpu -p no:cacheprovider tests/kernels \
        -k "${SANITIZE_K:-float32 and not bfloat16}" 2>&1 \
        | tail -n 60 | tee "$OUT/sanitize_$tool.log"
      rc=$?
      [ "$rc" -ne 0 ] && status=$rc
    done
    exit "$status"
    ;;
  bench)
    suites=${2:-}
    # BENCH_TAG names this run's folder and archive, so that several runs fit in one command.
    tag=${BENCH_TAG:-run}
    rm -rf "$OUT/$tag"
    # BENCH_ARGS: more options, e.g. "--algorithm auto,implicit_gemm:analytic,implicit_gemm:precomputed".
    stop_after "$SECONDS_LEFT" $PY -m bench --executor gpu --no-progress --out "$OUT/$tag" \
      ${suites:+--suite "$suites"} ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench_$tag.log"
    status=$?
    # The device tool brings back at most 8 files: the JSON, summary and plots travel as one.
    if [ -d "$OUT/$tag" ]; then
      tar czf "$OUT/bench_$tag.tgz" -C "$OUT" "$tag" && rm -r "$OUT/$tag"
    else
      echo "no results were written (see bench_$tag.log)" >&2
    fi
    exit "$status"
    ;;
  models)
    # the host time of the torch bridge first (seconds), then the whole models
    $PY -m bench.bridge_host --device cuda --calls 500 2>&1 | tee "$OUT/bridge_host.log"
    # MODELS_ARGS: more options, e.g. "--arch resnet50 --layout channels_last --compile".
    stop_after "$SECONDS_LEFT" $PY -m bench.models --out "$OUT/models" ${MODELS_ARGS:-} 2>&1 \
      | tee "$OUT/models.log"
    ;;
  roi)
    status=0
    for dtype in float32 float16; do
      stop_after $((SECONDS_LEFT / 2)) $PY -m bench.roi_align_kernels --dtype "$dtype" 2>&1 \
        | tee -a "$OUT/roi_align_kernels.log"
      rc=$?
      [ "$rc" -ne 0 ] && status=$rc
    done
    exit "$status"
    ;;
  *)
    echo "usage: $0 tests|sanitize|bench [SUITE,...]|models|roi" >&2
    exit 2
    ;;
esac
