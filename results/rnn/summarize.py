#!/usr/bin/env python3
"""results/rnn/summary.csv from finished runs: UCR CV directories (scripts/ucr_cv.py's summary.json) and single
bep-train rnn run directories (results.json, config.json, metrics.csv).

    python results/rnn/summarize.py LABEL=DIR [LABEL=DIR ...] > results/rnn/summary.csv
"""
import csv
import json
import os
import sys

# Paper (arXiv 2512.04189) BEP accuracies, percent, per dataset name.
PAPER = {"ucr:ItalyPowerDemand": 94.65, "seq-fashion-mnist": None}
COLUMNS = ["label", "dataset", "hidden", "expand", "encode", "window", "epochs", "batch_size", "nu", "patience",
           "n_train", "runs", "test_acc_mean", "test_acc_std", "paper", "epoch_time_s", "backend"]


def row(label: str, d: str) -> dict:
    if os.path.exists(os.path.join(d, "summary.json")):  # a UCR cross-validation
        with open(os.path.join(d, "summary.json")) as f:
            s = json.load(f)
        first = s["runs"][0]
        with open(os.path.join(d, "cv", f"split{first['split']}_seed{first['seed']}", "config.json")) as f:
            cfg = json.load(f)
        mean, std, runs, t = 100 * s["mean"], 100 * s["std"], s["n_runs"], s["epoch_time_s"]
        dataset, backend = s["dataset"], first["backend"]
    else:
        with open(os.path.join(d, "config.json")) as f:
            cfg = json.load(f)
        with open(os.path.join(d, "results.json")) as f:
            res = json.load(f)
        with open(os.path.join(d, "metrics.csv"), newline="") as f:
            times = [float(r["epoch_time_s"]) for r in csv.DictReader(f)]
        mean, std, runs, t = 100 * res["test_accuracy"], "", 1, sum(times) / len(times)
        dataset, backend = cfg["dataset"], res["backend"]
    return {"label": label, "dataset": dataset, "hidden": "/".join(map(str, cfg["hidden"])), "expand": cfg["expand"],
            "encode": cfg["encode"], "window": cfg["window"], "epochs": cfg["epochs"],
            "batch_size": cfg["batch_size"], "nu": cfg["nu"], "patience": cfg["patience"], "n_train": cfg["n_train"],
            "runs": runs, "test_acc_mean": f"{mean:.2f}", "test_acc_std": std if std == "" else f"{std:.2f}",
            "paper": PAPER.get(dataset) or "", "epoch_time_s": f"{t:.2f}", "backend": backend}


def main(argv) -> int:
    w = csv.DictWriter(sys.stdout, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for arg in argv:
        label, _, d = arg.partition("=")
        w.writerow(row(label, d))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
