"""A short, fixed GPU workload for Nsight Compute: every BEP primitive at one training-layer shape (the calls of
scripts/bench_kernels.py primitive_calls: every training kernel, both xnor_matmul implementations, the fused
epilogues and both update forms), each launched --repeat times inside the NVTX range bep@kernels (warm-up, NVRTC
compilation and the tensor-core layout probe happen before it, outside the range).

    PYTHONPATH=. python profiling/kernel_workload.py [--batch 1024] [--fan-in 784] [--width 525] [--repeat 1]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]  # bep_gpu from the checkout; bench_kernels' operand set


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--fan-in", type=int, default=784)
    ap.add_argument("--width", type=int, default=525)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args(argv)

    from bench_kernels import primitive_calls
    from bep_gpu.backends.cuda_backend import CudaBackend
    from bep_gpu.profiling import nvtx_range

    bk = CudaBackend()
    n, j, k = args.batch, args.fan_in, args.width
    calls = primitive_calls(bk, n, k, j)
    for fn in calls.values():  # warm-up: compile, load every function, run the tensor-core probe
        fn()
    bk.synchronize()
    with nvtx_range("kernels"):
        for name, fn in calls.items():
            for _ in range(args.repeat):
                with nvtx_range(name):
                    fn()
        bk.synchronize()
    print(f"kernel_workload: {len(calls)} primitives x {args.repeat} at batch {n}, {j} -> {k} on {bk.device}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
