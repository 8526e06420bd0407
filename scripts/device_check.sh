#!/usr/bin/env bash
# GPU check of the cuda backend, for a machine with one CUDA device, CuPy and no network (under 5 minutes):
# the bit-exactness tests against the NumPy backend (the b1 tensor-core kernel's mma fragment layout is checked
# there for the first time on hardware), then the kernel benchmark (CUDA-core and tensor-core xnor_matmul against
# cuBLAS, the fused forward epilogue against matmul + pack). Run from the repository root:
#     OUT=/some/dir bash scripts/device_check.sh        (results and logs go to $OUT, default ./out)
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
OUT="${OUT:-./out}"
mkdir -p "$OUT"

{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 || true; } | tee "$OUT/gpu.txt"

# -m gpu overrides the default "-m 'not slow and not gpu'" of pyproject.toml; -s keeps the register report.
timeout 170 python -m pytest -m gpu -q -s -rs tests/test_gpu.py 2>&1 | tee "$OUT/test_gpu.txt"
tests_rc=${PIPESTATUS[0]}

timeout 110 python scripts/bench_kernels.py --out "$OUT" 2>&1 | tee "$OUT/bench.md"
bench_rc=${PIPESTATUS[0]}

echo "device_check: tests rc=$tests_rc, bench rc=$bench_rc" | tee "$OUT/summary.txt"
[ "$tests_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
