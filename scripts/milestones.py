"""The group-size schedule that validation runs chose, as --gamma-milestones for a run without a validation split.

  python scripts/milestones.py results/mlp_wide/runs/L3_K1035_g45_th15_s*      ->  27,33,42

For each run, the epochs after which its gammas grew (read from the gammas column of metrics.csv: epoch e's row
holds the gammas it trained with). The k-th milestone is the median (rounded down) over the runs whose gammas
grew at least k times, kept only while more than half of the runs did, and at least one epoch after the one
before it (medians over different runs need not increase; bep-train takes increasing milestones only).
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys


def growth_epochs(run_dir: str) -> list[int]:
    """Epochs after which the run's gammas changed."""
    with open(os.path.join(run_dir, "metrics.csv"), newline="") as f:
        reader = csv.DictReader(f)
        if not {"epoch", "gammas"} <= set(reader.fieldnames or ()):
            raise ValueError(f"{run_dir}/metrics.csv has no epoch and gammas columns")
        rows = list(reader)
    return [int(prev["epoch"]) for prev, row in zip(rows, rows[1:]) if row["gammas"] != prev["gammas"]]


def milestones(runs: list[list[int]]) -> list[int]:
    out = []
    for k in range(max(map(len, runs), default=0)):
        reached = [r[k] for r in runs if len(r) > k]
        if 2 * len(reached) <= len(runs):
            break
        median = int(statistics.median(reached))
        out.append(max(median, out[-1] + 1) if out else median)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run folders (each with a metrics.csv)")
    args = p.parse_args(argv)
    missing = [r for r in args.runs if not os.path.isfile(os.path.join(r, "metrics.csv"))]
    if missing:
        print(f"error: no metrics.csv in {missing[0]}: pass bep-train run folders", file=sys.stderr)
        return 2
    try:
        runs = [growth_epochs(r) for r in args.runs]
    except ValueError as e:
        print(f"error: {e}: pass bep-train run folders", file=sys.stderr)
        return 2
    for r, g in zip(args.runs, runs):
        print(f"{os.path.basename(r)}: {','.join(map(str, g)) or 'no growth'}", file=sys.stderr)
    print(",".join(map(str, milestones(runs))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
