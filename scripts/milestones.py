"""The group-size schedule that validation runs chose, as --gamma-milestones for a run without a validation split.

  python scripts/milestones.py results/mlp_wide/runs/L3_K1035_g45_th15_s*      ->  27,33,42

For each run, the epochs after which its gammas grew (read from the gammas column of metrics.csv: epoch e's row
holds the gammas it trained with). The k-th milestone is the median (rounded down) over the runs whose gammas
grew at least k times, kept only while more than half of the runs did.
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
        rows = list(csv.DictReader(f))
    return [int(prev["epoch"]) for prev, row in zip(rows, rows[1:]) if row["gammas"] != prev["gammas"]]


def milestones(runs: list[list[int]]) -> list[int]:
    out = []
    for k in range(max(map(len, runs), default=0)):
        reached = [r[k] for r in runs if len(r) > k]
        if 2 * len(reached) <= len(runs):
            break
        out.append(int(statistics.median(reached)))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run folders (each with a metrics.csv)")
    args = p.parse_args(argv)
    missing = [r for r in args.runs if not os.path.isfile(os.path.join(r, "metrics.csv"))]
    if missing:
        print(f"error: no metrics.csv in {missing[0]}: pass bep-train run folders", file=sys.stderr)
        return 2
    runs = [growth_epochs(r) for r in args.runs]
    for r, g in zip(args.runs, runs):
        print(f"{os.path.basename(r)}: {','.join(map(str, g)) or 'no growth'}", file=sys.stderr)
    print(",".join(map(str, milestones(runs))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
