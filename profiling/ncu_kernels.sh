#!/usr/bin/env bash
# Nsight Compute reports of the BEP kernels on one GPU (see profiling/README.md).
#     OUT=/some/dir bash profiling/ncu_kernels.sh            every primitive once at 1024 x 784 -> 525
#     OUT=/some/dir bash profiling/ncu_kernels.sh train      the kernels of the first 3 forward phases of training
# Writes $OUT/ncu_*.ncu-rep and a text summary of each. The kernels carry -lineinfo (cuda_backend.cupy_module).
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
OUT="${OUT:-./out/profile}"
mkdir -p "$OUT"
command -v ncu >/dev/null || { echo "ncu not found (Nsight Compute; CUDA toolkit bin/)"; exit 2; }
python -c "import nvtx" 2>/dev/null || { echo "the Python package nvtx is needed for the NVTX filter (pip install nvtx)"; exit 2; }

# NVTX filter syntax: DOMAIN@RANGE, trailing "/" = a push/pop range (what nvtx.annotate makes); domain "bep".
if [ "${1:-}" = "train" ]; then
    ncu --nvtx --nvtx-include "bep@forward/" --launch-count 12 --set full --import-source yes \
        --force-overwrite -o "$OUT/ncu_forward" \
        python -m bep_gpu train mlp --backend cuda --dataset prototypes --epochs 1 --max-train 300 --batch-size 100 \
        --quiet --out "$OUT/run"
    rc=$?
    report=ncu_forward
else
    ncu --nvtx --nvtx-include "bep@kernels/" --set full --import-source yes --force-overwrite -o "$OUT/ncu_kernels" \
        python profiling/kernel_workload.py --repeat 1
    rc=$?
    report=ncu_kernels
fi
[ -f "$OUT/$report.ncu-rep" ] && ncu --import "$OUT/$report.ncu-rep" --page details --print-units base \
    > "$OUT/$report.txt" 2>&1
echo "ncu_kernels: rc=$rc; report $OUT/$report.ncu-rep (GUI: ncu-ui), text in $OUT/$report.txt"
exit $rc
