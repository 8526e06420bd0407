#!/usr/bin/env python3
"""The paper's UCR protocol for BEP-TT: 3-fold cross-validation x 3 runs, window and thermometer bits tuned.

Folds: the official train and test sets are pooled and split into `--folds` stratified folds (seeded by
--fold-seed; each class is dealt round-robin over the folds after a shuffle). Fold k is the test set of
split k and the other folds its training set; 10 % of that training set is held out for validation (the
group-size schedule and the tuning below use it; the test fold is never looked at before the final runs).
Pooling is our choice: the paper states 3-fold CV but not how the folds are formed, and the official
ItalyPowerDemand training set has only 67 series.

Tuning: every (window, bits) candidate trains once on split 0 (seed 0, --tune-epochs epochs); the candidate with
the best mean validation accuracy over its last 5 epochs wins. Then every split x run trains for --epochs
epochs with that setting, runs differing in --seed. Reported: the final-epoch test accuracy of each, its mean
and standard deviation (population, over folds x runs).

Defaults are the paper's: r 0.5, p_r 0.5, gamma0 15 (fixed: --patience 0), nu 0.05, Ks = Ky = 1035, 50 epochs,
batch N/10, thermometer inputs expanded to 1035 by a fixed random +-1 matrix (--expand). A finished run (its
results.json exists) is not redone, so the script continues where an interrupted call stopped.

    python scripts/ucr_cv.py --dataset ucr:ItalyPowerDemand --out results/rnn/ItalyPowerDemand
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # runs from a plain checkout
from bep_gpu.cli.train import main as bep_train  # noqa: E402
from bep_gpu.data import load_dataset  # noqa: E402

PAPER_SETTINGS = ["--hidden", "1035", "--r", "0.5", "--p-r", "0.5", "--gamma0", "15", "--nu", "0.05",
                  "--batch-size", "0", "--expand", "1035", "--patience", "0"]


def stratified_folds(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold index per sample: each class shuffled, then dealt round-robin, so fold sizes per class differ by <= 1."""
    rng = np.random.default_rng([seed, 0x55435246])  # "UCRF"
    fold = np.empty(len(y), dtype=np.int64)
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        fold[members] = np.arange(len(members)) % k
    return fold


def write_folds(dataset: str, data_dir: str | None, k: int, seed: int, out: str) -> list[str]:
    ds = load_dataset(dataset, data_dir=data_dir, sequence=True)
    x = np.concatenate([ds.x_train, ds.x_test])
    y = np.concatenate([ds.y_train, ds.y_test])
    fold = stratified_folds(y, k, seed)
    os.makedirs(out, exist_ok=True)
    paths = []
    for i in range(k):
        path = os.path.join(out, f"split{i}.npz")
        np.savez(path, x_train=x[fold != i], y_train=y[fold != i], x_test=x[fold == i], y_test=y[fold == i])
        paths.append(path)
    return paths


def train(path: str, out: str, seed: int, epochs: int, window: int, bits: int, extra: list[str]) -> dict:
    """One bep-train rnn run (skipped when out already holds its results); its results.json and metrics."""
    if not os.path.exists(os.path.join(out, "results.json")):
        args = ["rnn", "--dataset", f"npz:{path}", "--out", out, "--seed", str(seed), "--epochs", str(epochs),
                "--window", str(window), "--encode", f"thermometer:{bits}", "--quiet"] + PAPER_SETTINGS + extra
        if bep_train(args) != 0:
            sys.exit(f"ucr_cv: bep-train {' '.join(args)} failed")
    with open(os.path.join(out, "results.json")) as f:
        res = json.load(f)
    with open(os.path.join(out, "metrics.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    res["val_last5"] = float(np.mean([float(r["val_acc"]) for r in rows[-5:]]))
    res["epoch_time_s"] = float(np.mean([float(r["epoch_time_s"]) for r in rows]))
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="ucr:ItalyPowerDemand")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default="results/rnn/ItalyPowerDemand")
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--fold-seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--windows", default="24,12", help="candidate window lengths (0 = whole series)")
    p.add_argument("--bits", default="8,16", help="candidate thermometer bit counts")
    p.add_argument("--tune-epochs", type=int, default=15)
    args, extra = p.parse_known_args(argv)  # anything else goes to bep-train (e.g. --backend cuda)

    splits = write_folds(args.dataset, args.data_dir, args.folds, args.fold_seed, os.path.join(args.out, "folds"))
    candidates = [(int(w), int(b)) for w in args.windows.split(",") for b in args.bits.split(",")]
    tuning = []
    for w, b in candidates:
        res = train(splits[0], os.path.join(args.out, "tune", f"w{w}_b{b}"), 0, args.tune_epochs, w, b, extra)
        tuning.append({"window": w, "bits": b, "val_last5": res["val_last5"], "epoch_time_s": res["epoch_time_s"]})
        print(f"tune window {w} bits {b}: validation {res['val_last5']:.4f}", flush=True)
    best = max(tuning, key=lambda t: t["val_last5"])  # first candidate on ties
    w, b = best["window"], best["bits"]

    runs = []
    for seed in range(args.runs):  # seed-major: a partial result already covers every fold
        for i, path in enumerate(splits):
            res = train(path, os.path.join(args.out, "cv", f"split{i}_seed{seed}"), seed, args.epochs, w, b, extra)
            runs.append({"split": i, "seed": seed, "test_accuracy": res["test_accuracy"],
                         "epoch_time_s": res["epoch_time_s"], "backend": res["backend"]})
            print(f"split {i} seed {seed}: test {res['test_accuracy']:.4f} ({res['epoch_time_s']:.2f} s/epoch)",
                  flush=True)
            acc = np.array([r["test_accuracy"] for r in runs])
            summary = {"dataset": args.dataset, "window": w, "bits": b, "mean": float(acc.mean()),
                       "std": float(acc.std()), "n_runs": len(runs), "complete": len(runs) == args.folds * args.runs,
                       "epochs": args.epochs, "epoch_time_s": float(np.mean([r["epoch_time_s"] for r in runs])),
                       "settings": PAPER_SETTINGS + extra, "tuning": tuning, "runs": runs}
            with open(os.path.join(args.out, "summary.json"), "w") as f:  # after every run: usable if stopped
                json.dump(summary, f, indent=2)
    print(f"{args.dataset}: {100 * acc.mean():.2f} +- {100 * acc.std():.2f} % over {len(runs)} runs "
          f"(window {w}, thermometer:{b})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
