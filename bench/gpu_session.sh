#!/usr/bin/env bash
# One stage of a GPU session, sized to fit one device command (10 minutes) and to leave its
# logs and results under $OUT (the device tool brings that folder back). From the repo root:
#   bash bench/gpu_session.sh tests      # the GPU test suite: CuPy kernels vs the reference
#   bash bench/gpu_session.sh sanitize   # compute-sanitizer memcheck + racecheck on kernel tests
#   bash bench/gpu_session.sh bench [SUITE,...]   # python -m bench on the GPU, JSON + plots
#                                                 # (as bench_results.tgz: unpack it into
#                                                 # bench/results/<UTC time>-<GPU name>/ and commit)
# The device machine has no network: the package runs from the checkout (PYTHONPATH), with the
# NumPy/CuPy/PyTorch already installed there.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpuconv-gpu-session}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}

{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  git rev-parse HEAD 2>/dev/null || echo "commit: unknown (no .git on the device)"
  $PY -c "import cupy, numpy; print('cupy', cupy.__version__, 'numpy', numpy.__version__)"
  $PY -c "import torch; print('torch', torch.__version__, 'cudnn', torch.backends.cudnn.version())"
} > "$OUT/environment.txt" 2>&1

stage=${1:-tests}
case "$stage" in
  tests)
    # Only the tests that need a GPU: the simulator-side tests ran in CI already.
    $PY -m pytest -q -m gpu -p no:cacheprovider tests 2>&1 | tee "$OUT/gpu_tests.log"
    ;;
  sanitize)
    # memcheck over a slice of the kernel tests (every family, small shapes); racecheck on the
    # shared-memory kernels. compute-sanitizer multiplies run time by 10-100x: keep -k narrow.
    for tool in memcheck racecheck; do
      compute-sanitizer --tool "$tool" --error-exitcode 3 --print-limit 20 \
        $PY -m pytest -q -x -m gpu -p no:cacheprovider tests/kernels \
        -k "${SANITIZE_K:-float32 and not bfloat16}" 2>&1 | tail -n 60 | tee "$OUT/sanitize_$tool.log"
    done
    ;;
  bench)
    suites=${2:-}
    $PY -m bench --executor gpu --no-progress --out "$OUT/run" ${suites:+--suite "$suites"} \
      2>&1 | tee "$OUT/bench.log"
    # The device tool brings back at most 8 files: the JSON, summary and plots travel as one.
    tar czf "$OUT/bench_results.tgz" -C "$OUT" run && rm -r "$OUT/run"
    ;;
  *)
    echo "usage: $0 tests|sanitize|bench [SUITE,...]" >&2
    exit 2
    ;;
esac
