#!/usr/bin/env bash
# Nsight Systems timeline of a short BEP training run on one GPU (see profiling/README.md for what to look at).
#     OUT=/some/dir bash profiling/nsys_train.sh [extra bep-train options]
# Writes $OUT/bep_train.nsys-rep and text summaries (kernels, NVTX ranges, kernels per range, CUDA API calls).
# BEP_XNOR_MATMUL=tensor_core in the environment profiles the tensor-core xnor_matmul instead of the CUDA-core one.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
OUT="${OUT:-./out/profile}"
mkdir -p "$OUT"
command -v nsys >/dev/null || { echo "nsys not found (Nsight Systems; CUDA toolkit bin/ or nsight-systems)"; exit 2; }
python -c "import nvtx" 2>/dev/null || echo "warning: Python package nvtx missing: no phase ranges (pip install nvtx)"

# Synthetic data (no files needed); 2000 samples of batch 100 = 20 steps after the first epoch's warm-up.
nsys profile -t cuda,nvtx,osrt --sample=none --force-overwrite=true -o "$OUT/bep_train" \
    python -m bep_gpu train mlp --backend cuda --dataset prototypes --epochs 2 --max-train 2000 --batch-size 100 \
    --quiet --out "$OUT/run" "$@"
rc=$?
for report in cuda_gpu_kern_sum nvtx_sum nvtx_kern_sum cuda_api_sum; do
    nsys stats --force-export=true --report "$report" --format csv --output "$OUT/$report" "$OUT/bep_train.nsys-rep" \
        >/dev/null 2>&1 || echo "nsys stats: report $report unavailable in this nsys version"
done
echo "nsys_train: rc=$rc; open $OUT/bep_train.nsys-rep in the Nsight Systems GUI, summaries in $OUT/*.csv"
exit $rc
