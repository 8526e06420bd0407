#!/usr/bin/env bash
# GPU check of the cuda backend, for a machine with one CUDA device, CuPy and no network (about 6 minutes at
# most): the bit-exactness tests against the NumPy backend (the b1 mma fragment layout, the cp.async/ldmatrix
# tensor-core kernels of every product (forward with each epilogue, targets, update) beside their CUDA-core twins,
# the sparse update, the fused gate epilogue and --cuda-graph training are checked there for the first time on
# hardware), then the kernel benchmark (CUDA-core and tensor-core xnor_matmul against cuBLAS, every primitive on
# both paths at a training shape), then bep-bench on the device (whole steps, on the tensor cores by default once
# the layout probe passes, vs the dense CuPy and QAT peers, the CUDA-graph step, popcount vs sparse update,
# memory). BEP_XNOR_MATMUL=cuda_core forces the CUDA-core path for a comparison run. Run from the repository root:
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

timeout 90 python scripts/bench_kernels.py --out "$OUT" 2>&1 | tee "$OUT/bench_kernels.md"
kernels_rc=${PIPESTATUS[0]}

# Whole steps and the update forms (the paper's MLPs, the large MLP, the paper's RNN); bep-bench writes the rows
# measured so far even when the timeout stops it.
timeout 100 python -m bep_gpu.cli.bench --backend cuda --sections step,memory,update --min-time 0.2 \
    --out "$OUT/bep_bench" 2>&1 | tee "$OUT/bep_bench.log"
bench_rc=${PIPESTATUS[0]}

echo "device_check: tests rc=$tests_rc, bench_kernels rc=$kernels_rc, bep-bench rc=$bench_rc" | tee "$OUT/summary.txt"
[ "$tests_rc" -eq 0 ] && [ "$kernels_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
