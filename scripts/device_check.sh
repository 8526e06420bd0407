#!/usr/bin/env bash
# GPU check of the cuda backend, for a machine with one CUDA device, CuPy and no network (under 7 minutes: the
# five timeouts below add up to 415 s): the bit-exactness tests against the NumPy backend (the b1 mma fragment
# layout, the cp.async/ldmatrix tensor-core kernels of every product (forward with each epilogue, targets,
# update, the one-kernel recurrence step) beside their CUDA-core twins, the fused pack_both and update_operands
# kernels, the sparse update, the conv kernels through whole conv steps on both paths, and --cuda-graph MLP and
# RNN training on both paths, all checked there for the first time on hardware), then the kernel benchmark (CUDA-core and tensor-core
# xnor_matmul against cuBLAS, every kernel on both paths at a training shape), then bep-bench on the device
# (whole MLP, RNN and conv steps on the default path, tensor cores once the layout probe passes, vs the dense
# CuPy and QAT peers, the CUDA-graph step, popcount vs sparse update, memory), then the same steps forced onto
# the CUDA cores (BEP_XNOR_MATMUL=cuda_core). Every figure goes to $OUT as it is measured (unbuffered output
# through tee; bench_kernels.py and bep-bench write their rows even when a timeout stops them). From the
# repository root:
#     OUT=/some/dir bash scripts/device_check.sh        (results and logs go to $OUT, default ./out)
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1  # a timeout's SIGTERM must not drop output still sitting in a pipe buffer
OUT="${OUT:-./out}"
mkdir -p "$OUT"

{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 || true; } | tee "$OUT/gpu.txt"

# -m gpu overrides the default "-m 'not slow and not gpu'" of pyproject.toml; -s keeps the register report.
timeout 160 python -m pytest -m gpu -q -s -rs tests/test_gpu.py 2>&1 | tee "$OUT/test_gpu.txt"
tests_rc=${PIPESTATUS[0]}

timeout 75 python scripts/bench_kernels.py --out "$OUT" 2>&1 | tee "$OUT/bench_kernels.md"
kernels_rc=${PIPESTATUS[0]}

# Whole steps and the update forms (the paper's MLPs, the large MLP, the paper's RNN), then the conv net's step
# (its own run: bep-bench times conv before the update section); bep-bench writes the rows measured so far even
# when the timeout stops it.
timeout 90 python -m bep_gpu.cli.bench --backend cuda --sections step,memory,update --min-time 0.2 \
    --out "$OUT/bep_bench" 2>&1 | tee "$OUT/bep_bench.log"
bench_rc=${PIPESTATUS[0]}
timeout 35 python -m bep_gpu.cli.bench --backend cuda --sections step --cases conv --min-time 0.2 \
    --out "$OUT/bep_bench_conv" 2>&1 | tee "$OUT/bep_bench_conv.log"
conv_rc=${PIPESTATUS[0]}

# The same steps on the CUDA-core kernels (the peers were timed above).
BEP_XNOR_MATMUL=cuda_core timeout 55 python -m bep_gpu.cli.bench --backend cuda --sections step --peers '' \
    --cases mlp,rnn,conv --min-time 0.2 --out "$OUT/bep_bench_cuda_core" 2>&1 | tee "$OUT/bep_bench_cuda_core.log"
cc_rc=${PIPESTATUS[0]}

echo "device_check: tests rc=$tests_rc, bench_kernels rc=$kernels_rc, bep-bench rc=$bench_rc, conv rc=$conv_rc," \
     "cuda_core rc=$cc_rc" | tee "$OUT/summary.txt"
[ "$tests_rc" -eq 0 ] && [ "$kernels_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ] && [ "$conv_rc" -eq 0 ] && [ "$cc_rc" -eq 0 ]
