"""A grid of bep-train settings in one folder: a settings search selected on validation accuracy, or a set of
runs reported on test (the wide MLPs, the RNN horizon study).

  python scripts/grid.py results/mlp_search/prototypes_L3_K35 [--jobs 2]
  python scripts/grid.py results/mlp_search/prototypes_L3_K35 --table-only
  python scripts/grid.py results/mlp_wide --only L3_K2075_g83_th7     (one setting, e.g. beside another job)

The folder holds grid.json: {"kind": "mlp"|"rnn"|"conv", "base": [bep-train flags of every run], "seeds": [...],
"settings": {name: [flags added to base] or {"flags": [...], "seeds": [...]} (seeds of that setting only)},
"show_test": false, "data_seed_is_seed": false}. Each setting runs once per seed into
runs/<name>_s<seed>/ (skipped when finished); grid.md and grid.csv list the settings by mean final validation
accuracy. A search (show_test false) shows no test accuracy, so nothing can be selected on it: confirm its winner
on test with fresh seeds (scripts/reproduce_mlp.py with the winner's flags after `--`). In a run set (show_test
true), runs that scripts/fresh_test.py scored on a fresh draw of Random Prototypes add a "fresh test %" column.
With "data_seed_is_seed" true every run also gets --data-seed SEED: a new Random Prototypes task (class rows,
train and test draws) per run, so the mean also averages over test draws, which one shared test set cannot.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shlex
import statistics
import subprocess
import sys

import run_folders


def settings(spec) -> list[tuple[str, list[str], list[int]]]:
    """(name, flags, seeds) of every setting in grid.json order."""
    out = []
    for name, value in spec["settings"].items():
        flags, seeds = (value["flags"], value["seeds"]) if isinstance(value, dict) else (value, spec["seeds"])
        out.append((name, list(flags), list(seeds)))
    return out


def run_one(folder, spec, name, flags, seed):
    out = os.path.join(folder, "runs", f"{name}_s{seed}")
    if os.path.exists(os.path.join(out, "results.json")):
        return f"{name}_s{seed}: cached"
    data_seed = ["--data-seed", str(seed)] if spec.get("data_seed_is_seed") else []
    cmd = [sys.executable, "-m", "bep_gpu", "train", spec.get("kind", "mlp"), *spec["base"], *flags,
           "--seed", str(seed), *data_seed, "--out", out, "--quiet", "--overwrite"]
    proc = subprocess.run(cmd)
    if proc.returncode:
        return f"{name}_s{seed}: FAILED (exit {proc.returncode})"
    with open(os.path.join(out, "command.txt"), "w") as f:
        f.write("bep-train " + " ".join(shlex.quote(c) for c in cmd[4:]) + "\n")
    return f"{name}_s{seed}: done"


def _mean(values):
    """'mean ± std' of the values; '' when there are none (e.g. runs without a validation split)."""
    if not values:
        return ""
    return f"{statistics.mean(values):.2f}" + (f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else "")


FRESH_FILE = "fresh_test.json"


def _fresh_cell(run_dirs) -> str:
    """Mean ± std of the runs' fresh-draw scores; a score made for an earlier model of the run (its test accuracy
    has changed since) does not count; '(k of n)' when not every run has one."""
    scores = []
    for run_dir in run_dirs:
        path = os.path.join(run_dir, FRESH_FILE)
        if os.path.exists(path):
            fresh, done = json.load(open(path)), json.load(open(os.path.join(run_dir, "results.json")))
            if fresh["test_accuracy"] == done["test_accuracy"]:
                scores.append(fresh["fresh_test_pct"])
    cell = _mean(scores)
    return cell + (f" ({len(scores)} of {len(run_dirs)})" if scores and len(scores) < len(run_dirs) else "")


def table(folder: str) -> dict[str, str]:
    """{path: text} of grid.md and grid.csv, from the finished runs."""
    spec = json.load(open(os.path.join(folder, "grid.json")))
    # scripts/fresh_test.py's scores of Random Prototypes runs on a fresh large draw, where it was run
    fresh = bool(glob.glob(os.path.join(folder, "runs", "*", FRESH_FILE)))
    rows = []
    for name, flags, seeds in settings(spec):
        res, run_dirs = [], []
        for seed in seeds:
            path = os.path.join(folder, "runs", f"{name}_s{seed}", "results.json")
            if os.path.exists(path):
                run_dirs.append(os.path.dirname(path))
                res.append((json.load(open(path)), json.load(open(os.path.join(os.path.dirname(path),
                                                                                "config.json")))))
        if not res:
            continue
        val = [100 * r["val_accuracy"] for r, _ in res if r.get("val_accuracy") is not None]
        row = {"setting": name, "flags (beside the base)": " ".join(flags) or "(base)", "seeds": len(res),
               "epochs": "/".join(sorted({str(r["epochs"]) for r, _ in res})),
               "val % final": _mean(val),
               "val % best epoch": _mean([100 * r["best_val_accuracy"] for r, _ in res
                                         if r.get("best_val_accuracy") is not None])}
        if spec.get("show_test"):
            row["test % final"] = _mean([100 * r["test_accuracy"] for r, _ in res])
            row["test % at best val"] = _mean([100 * r["test_accuracy_at_best_val"] for r, _ in res
                                               if r.get("test_accuracy_at_best_val") is not None])
            # chosen on test: what a paper reporting its best epoch would print (run_folders.best_test_epoch)
            row["test % best test epoch"] = _mean([v for v in map(run_folders.best_test_epoch, run_dirs)
                                                   if v is not None])
            if fresh:
                row["fresh test %"] = _fresh_cell(run_dirs)
            row["s/epoch"] = f"{statistics.mean(r['train_time_s'] / max(1, r['epochs']) for r, _ in res):.1f}"
        rows.append(row)
    # settings without a validation split (trained on every training sample) sort last
    rows.sort(key=lambda r: -float((r["val % final"] or "0").split()[0]))
    if not rows:
        return {os.path.join(folder, "grid.md"): f"No finished run in {folder}/runs yet.\n"}
    intro = (f"Generated by scripts/grid.py from {folder}/runs. Base: `bep-train {spec.get('kind', 'mlp')} "
             f"{' '.join(spec['base'])}`, seeds {', '.join(map(str, spec['seeds']))} (unless a setting names its own"
             f"{'; data seed = seed' if spec.get('data_seed_is_seed') else ''}); "
             "mean ± std over seeds, "
             "sorted by final validation accuracy.")
    return run_folders.table_texts(rows, intro, os.path.join(folder, "grid"))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--table-only", action="store_true")
    p.add_argument("--only", default="", help="comma-separated setting names to run (default: every setting)")
    args = p.parse_args(argv)
    spec = json.load(open(os.path.join(args.folder, "grid.json")))
    chosen = settings(spec)
    if args.only:
        names = args.only.split(",")
        unknown = sorted(set(names) - {n for n, _, _ in chosen})
        if unknown:
            p.error(f"--only: no setting {', '.join(unknown)} in {args.folder}/grid.json")
        chosen = [c for c in chosen if c[0] in names]
    if not args.table_only:
        grid = [(args.folder, spec, n, f, s) for n, f, seeds in chosen for s in seeds]
        run_folders.run_all(run_one, grid, args.jobs)
    run_folders.write_texts(table(args.folder))


if __name__ == "__main__":
    main()
