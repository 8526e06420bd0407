"""CPU strong scaling of data-parallel training (docs/DISTRIBUTED.md): the same run with 1, 2, ... processes.

For each process count it runs bep-train under mpirun (one process runs without a communicator, the baseline),
reads train_time_s from results.json (the fastest of --repeat runs), checks that model.npz equals the one-process model, and times the per-step
all-reduce of a buffer of the same size alone. Prints a Markdown table.

    python scripts/bench_distributed.py --procs 1,2,3 -- --hidden 525,525 --max-train 2000 --batch-size 100
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_ARGS = ["--dataset", "prototypes", "--max-train", "2000", "--hidden", "525,525", "--gamma0", "25",
                "--batch-size", "100", "--epochs", "1", "--val-fraction", "0", "--backend", "numpy", "--quiet"]


BLAS_THREADS = 1  # --blas-threads: 1 makes the process count the core count


def env():
    threads = str(BLAS_THREADS)
    return dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]),
                OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads, MKL_NUM_THREADS=threads)


def mpirun(n: int, argv: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (all processes) of `mpirun -n n python argv`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(["mpirun", "--oversubscribe", "-n", str(n), sys.executable, *argv], env=env(), check=True,
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def allreduce_worker(n_ints: int, reps: int) -> None:
    """Under mpirun: seconds per all-reduce of n_ints int32, as rank 0 sees it (JSON on stdout)."""
    from bep_gpu.distributed import MPIComm

    comm = MPIComm(timeout=300)
    buf = np.ones(n_ints, dtype=np.int32)
    comm.allreduce_sum(buf)  # warm-up (connection set-up)
    comm.barrier()
    t0 = time.perf_counter()
    for _ in range(reps):
        comm.allreduce_sum(buf)
    dt = (time.perf_counter() - t0) / reps
    if comm.rank == 0:
        print(json.dumps({"seconds": dt}), flush=True)


def allreduce_seconds(n: int, n_ints: int, reps: int) -> float:
    out = subprocess.run(["mpirun", "--oversubscribe", "-n", str(n), sys.executable, __file__, "--allreduce-worker",
                          str(n_ints), "--reps", str(reps)], env=env(), check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--procs", default="1,2", help="process counts (default: 1,2)")
    p.add_argument("--reps", type=int, default=20, help="all-reduces timed per process count")
    p.add_argument("--repeat", type=int, default=1, help="runs per process count; the fastest counts (noisy hosts)")
    p.add_argument("--blas-threads", type=int, default=1, help="BLAS threads per process (default: 1)")
    p.add_argument("--allreduce-worker", type=int, help=argparse.SUPPRESS)
    p.add_argument("train_args", nargs="*", help="bep-train mlp arguments after --, replacing the defaults' keys")
    args = p.parse_args()
    global BLAS_THREADS
    BLAS_THREADS = args.blas_threads
    if args.allreduce_worker is not None:
        allreduce_worker(args.allreduce_worker, args.reps)
        return
    train_args = list(DEFAULT_ARGS)
    for i in range(0, len(args.train_args), 2):  # "--flag value" pairs override the defaults
        flag = args.train_args[i]
        if flag in train_args:
            train_args[train_args.index(flag) + 1] = args.train_args[i + 1]
        else:
            train_args += args.train_args[i:i + 2]
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"bep-train mlp {' '.join(train_args)}  ({args.blas_threads} BLAS thread(s) per process)\n")
    rows, base, ref = [], None, None
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(v) for v in args.procs.split(",")]:
            out = os.path.join(tmp, f"n{n}")
            runs = []
            for _ in range(args.repeat):
                wall, cpu = mpirun(n, ["-m", "bep_gpu", "train", "mlp", *train_args, "--out", out])
                runs.append((json.load(open(os.path.join(out, "results.json"))), wall, cpu))
            res, wall, cpu = min(runs, key=lambda r: r[0]["train_time_s"])
            model = np.load(os.path.join(out, "model.npz"))
            hidden = [model[k] for k in sorted(model.files) if k.startswith("hidden.")]
            if ref is None:
                ref = hidden
                n_ints = sum(h.size for h in hidden) + 2
            same = all(np.array_equal(a, b) for a, b in zip(ref, hidden))
            ar = min(allreduce_seconds(n, n_ints, args.reps) for _ in range(args.repeat)) if n > 1 else 0.0
            train = res["train_time_s"]
            base = base or train
            rows.append((n, train, res["samples_per_s"], base / train, base / train / n, ar * 1e3, res["steps"],
                         wall, cpu, same))
    print(f"all-reduce buffer: {n_ints} int32 = {4 * n_ints / 1e6:.2f} MB per step\n")
    print("| processes | train s | samples/s | speed-up | efficiency | all-reduce ms/step | steps | wall s (job) "
          "| CPU s (all) | model = 1 process |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n, train, sps, su, eff, ar, steps, wall, cpu, same in rows:
        print(f"| {n} | {train:.2f} | {sps:.0f} | {su:.2f} | {eff:.2f} | {ar:.2f} | {steps} | {wall:.1f} | {cpu:.1f} "
              f"| {'yes' if same else 'NO'} |")
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
