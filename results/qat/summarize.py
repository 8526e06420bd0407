"""Collect the QAT runs' config.json/results.json into summary.csv and print a Markdown table.

Usage (from the repository root): python results/qat/summarize.py RUNS_DIR
"""
import csv
import json
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# The paper's QAT figures (arXiv 2512.04189 v2), test accuracy in %, keyed by (dataset, hidden, bn).
PAPER = {
    **{("prototypes", f"{k},{k}", False): v for k, v in zip((35, 75, 135, 255, 525),
                                                             (31.16, 44.36, 50.59, 55.11, 59.28))},
    **{("prototypes", f"{k},{k}", True): v for k, v in zip((35, 75, 135, 255, 525),
                                                            (67.73, 71.83, 72.36, 73.55, 73.89))},
    ("ucr:ItalyPowerDemand", None, False): 83.18,
    ("ucr:ItalyPowerDemand", None, True): 96.23,
}
COLUMNS = ["run", "kind", "dataset", "hidden", "bn", "readout", "encode", "expand", "window", "lr", "logit_scale",
           "epochs", "batch_size", "seed", "n_train", "test_acc_final", "best_val_acc", "test_acc_at_best_val",
           "paper_qat", "epoch_time_s_median", "wall_time_s"]
# Runs that differ only in the seed are averaged in the second table.
GROUP = ["kind", "dataset", "hidden", "bn", "readout", "encode", "expand", "lr", "logit_scale", "epochs",
         "batch_size"]


def pct(x):
    return None if x is None else round(100 * x, 2)


def main(runs_dir):
    rows = []
    for name in sorted(os.listdir(runs_dir)):
        d = os.path.join(runs_dir, name)
        if not os.path.isfile(os.path.join(d, "results.json")):
            continue
        cfg = json.load(open(os.path.join(d, "config.json")))
        res = json.load(open(os.path.join(d, "results.json")))
        with open(os.path.join(d, "metrics.csv")) as f:
            times = [float(r["epoch_time_s"]) for r in csv.DictReader(f)]
        hidden = ",".join(map(str, cfg["hidden"]))
        paper = PAPER.get((cfg["dataset"], hidden, cfg["bn"]), PAPER.get((cfg["dataset"], None, cfg["bn"])))
        rows.append({
            "run": name, "kind": cfg["kind"], "dataset": cfg["dataset"], "hidden": hidden, "bn": cfg["bn"],
            "readout": cfg["readout"], "encode": cfg["encode"], "expand": cfg.get("expand", 0),
            "window": cfg.get("window"), "lr": cfg["lr"], "logit_scale": round(cfg["logit_scale"], 4),
            "epochs": cfg["epochs"], "batch_size": cfg["batch_size"], "seed": cfg["seed"], "n_train": cfg["n_train"],
            "test_acc_final": pct(res["test_accuracy"]), "best_val_acc": pct(res["best_val_accuracy"]),
            "test_acc_at_best_val": pct(res["test_accuracy_at_best_val"]), "paper_qat": paper,
            "epoch_time_s_median": round(statistics.median(times), 3), "wall_time_s": res["wall_time_s"],
        })
    rows.sort(key=lambda r: (r["dataset"], r["kind"], not r["bn"], int(r["hidden"].split(",")[0]), r["expand"],
                             r["logit_scale"], -r["lr"], r["seed"]))
    with open(os.path.join(HERE, "summary.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    print("| run | test % final | test % at best val | paper QAT % | s/epoch |")
    print("|---|---|---|---|---|")
    for r in rows:
        paper = "-" if r["paper_qat"] is None else r["paper_qat"]
        print(f"| {r['run']} | {r['test_acc_final']:.2f} | {r['test_acc_at_best_val']} | {paper} "
              f"| {r['epoch_time_s_median']} |")
    groups = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in GROUP), []).append(r)
    print("\n| model | dataset | K | BN | encode | expand | lr | logit scale | seeds | test % final, mean +- sd "
          "| paper QAT % |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for key, rs in groups.items():
        g = dict(zip(GROUP, key))
        accs = [r["test_acc_final"] for r in rs]
        sd = f" +- {statistics.stdev(accs):.2f}" if len(accs) > 1 else ""
        paper = "-" if rs[0]["paper_qat"] is None else rs[0]["paper_qat"]
        print(f"| {g['kind']} | {g['dataset']} | {g['hidden']} | {'yes' if g['bn'] else 'no'} | {g['encode']} "
              f"| {g['expand'] or '-'} | {g['lr']:g} | {g['logit_scale']:g} | {len(rs)} "
              f"| {statistics.mean(accs):.2f}{sd} | {paper} |")

if __name__ == "__main__":
    main(sys.argv[1])
