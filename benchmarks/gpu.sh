#!/bin/sh
# The GPU check of benchmarks/README.md, for a machine with a CUDA device: one short call.
# It runs the tests that use CUDA when there is one, the benchmark on the device, and the
# fast recipe there, writing everything under ${OUT:-gpu-results}/. CI never runs it (CI
# has no GPU); the suite passes without one.
#
#   sh benchmarks/gpu.sh            # about 3 minutes on an H100-class GPU, after installing
set -eu
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
PY=${PYTHON:-.venv/bin/python}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.csv" || true
# The CUDA-capable tests (device moves, mixed devices, compiled models, resumes on the device).
$PY -m pytest -q -p no:cacheprovider tests/test_devices.py tests/test_loaders.py \
    tests/test_state.py -k "cuda or device or compile" 2>&1 | tail -n 30 > "$OUT/tests.txt" || true
# (a)/(b)/(c)/(d) on the GPU, then the fast recipe on seeds 0-2 with its floor.
$PY benchmarks/bench.py --device cuda --repeats 5 --recipe fast --recipe-seeds 3 \
    --json "$OUT/bench.json" > "$OUT/bench.txt" 2>&1
# The command line end to end, start-up and plots included.
/usr/bin/time -v .venv/bin/fashionmlp train --device cuda --seed 0 --out "$OUT/fast-run" \
    > "$OUT/train.txt" 2>&1
tail -n 20 "$OUT/bench.txt" "$OUT/train.txt"
