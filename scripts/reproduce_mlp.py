"""Run the paper's MLP grid (L x K x seeds) with bep-train and tabulate ours beside the paper's BEP figures.

Example (the RESULTS.md commands):
  OPENBLAS_NUM_THREADS=1 python scripts/reproduce_mlp.py --dataset prototypes --layers 2 3 --jobs 2
Runs go to OUT/runs/<dataset>_L<L>_K<K>_s<seed>/ and are skipped when their results.json exists (resumable);
the summary is OUT/<dataset>_summary.csv and OUT/<dataset>_summary.md. Extra bep-train flags follow `--`.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

# Paper (arXiv 2512.04189) BEP test accuracy, K = 35, 75, 135, 255, 525.
PAPER = {
    ("prototypes", 2): [61.68, 70.45, 74.05, 76.05, 77.23],
    ("prototypes", 3): [58.57, 69.30, 72.35, 74.73, 76.13],
    ("fashion-mnist", 2): [82.63, 84.25, 84.91, 85.47, 85.81],
    ("fashion-mnist", 3): [82.03, 83.82, 84.53, 85.43, 85.72],
}
WIDTHS = [35, 75, 135, 255, 525]
# Initial group size per width (must divide it): 5-20 groups per layer, one group at K = 35, where
# denser updates collapse deep nets (RESULTS.md).
GAMMA0 = {35: 35, 75: 15, 135: 15, 255: 17, 525: 25}
# Per-dataset flags: Fashion-MNIST as in the paper, 50,000 train / 10,000 validation from the official 60,000.
DATASET_FLAGS = {"prototypes": [], "fashion-mnist": ["--val-fraction", "0.1666667", "--encode", "median"]}


def run_one(args, layers, width, seed, extra):
    name = f"{args.dataset}_L{layers}_K{width}_s{seed}"
    out = os.path.join(args.out, "runs", name)
    if os.path.exists(os.path.join(out, "results.json")):
        return name, out, "cached"
    cmd = [sys.executable, "-m", "bep_gpu", "train", "mlp", "--dataset", args.dataset,
           "--hidden", ",".join([str(width)] * layers), "--epochs", str(args.epochs), "--seed", str(seed),
           "--gamma0", str(GAMMA0.get(width, width)), "--backend", args.backend, "--out", out, "--quiet"]
    cmd += DATASET_FLAGS.get(args.dataset, []) + extra
    t0 = time.time()
    subprocess.run(cmd, check=True)
    with open(os.path.join(out, "command.txt"), "w") as f:
        f.write(" ".join(cmd[1:]) + "\n")
    return name, out, f"{time.time() - t0:.0f} s"


def summarize(args):
    rows = []
    for layers in args.layers:
        for i, width in enumerate(args.widths):
            accs, best, times = [], [], []
            for seed in args.seeds:
                d = os.path.join(args.out, "runs", f"{args.dataset}_L{layers}_K{width}_s{seed}")
                try:
                    with open(os.path.join(d, "results.json")) as f:
                        r = json.load(f)
                except FileNotFoundError:
                    continue
                accs.append(100 * r["test_accuracy"])
                if r.get("test_accuracy_at_best_val") is not None:
                    best.append(100 * r["test_accuracy_at_best_val"])
                times.append(r["train_time_s"] / max(1, r["epochs"]))
            if not accs:
                continue
            paper = PAPER.get((args.dataset, layers))
            p = paper[WIDTHS.index(width)] if paper and width in WIDTHS else None
            mean = statistics.mean(accs)
            rows.append({"dataset": args.dataset, "L": layers, "K": width, "gamma0": GAMMA0.get(width, width),
                         "seeds": len(accs), "test_acc_mean": round(mean, 2),
                         "test_acc_std": round(statistics.stdev(accs), 2) if len(accs) > 1 else "",
                         "test_at_best_val_mean": round(statistics.mean(best), 2) if best else "",
                         "paper": p if p is not None else "", "diff": round(mean - p, 2) if p is not None else "",
                         "epoch_time_s": round(statistics.mean(times), 2)})
    if not rows:
        return
    base = os.path.join(args.out, f"{args.dataset}_summary")
    with open(base + ".csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with open(base + ".md", "w") as f:
        f.write("| L | K | gamma0 | seeds | ours: final test % (mean ± std) | at best val | paper | diff | s/epoch |\n")
        f.write("|---|---|---|---|---|---|---|---|---|\n")
        for r in rows:
            std = f" ± {r['test_acc_std']}" if r["test_acc_std"] != "" else ""
            f.write(f"| {r['L']} | {r['K']} | {r['gamma0']} | {r['seeds']} | {r['test_acc_mean']}{std} | "
                    f"{r['test_at_best_val_mean']} | {r['paper']} | {r['diff']} | {r['epoch_time_s']} |\n")
    print(open(base + ".md").read())


def main():
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="prototypes")
    p.add_argument("--layers", type=int, nargs="+", default=[2, 3])
    p.add_argument("--widths", type=int, nargs="+", default=WIDTHS)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--backend", default="auto")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time (one per core on the NumPy backend)")
    p.add_argument("--out", default="results/mlp")
    p.add_argument("--summary-only", action="store_true")
    args = p.parse_args(argv)
    if not args.summary_only:
        grid = [(L, K, s) for s in args.seeds for K in sorted(args.widths, reverse=True) for L in args.layers]
        with ThreadPoolExecutor(args.jobs) as pool:
            for name, out, how in pool.map(lambda g: run_one(args, *g, extra), grid):
                print(f"{name}: {how}", flush=True)
    summarize(args)


if __name__ == "__main__":
    main()
