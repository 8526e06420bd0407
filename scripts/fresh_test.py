"""Random Prototypes runs scored on a fresh, large test draw from the same class rows as their fixed test set.

  python scripts/fresh_test.py RUN... [--n 200000]

The fixed test set is 3,000 samples, shared by every run of a data seed: at about 60 % accuracy its sampling error
is about 0.9 points, and it is the same 0.9 for all seeds, so a mean over seeds does not average it out. Each RUN
(a bep-train run folder with model.npz, trained on prototypes) is scored on n new samples of the same generative
model (the data seed's class rows; a separate random stream), which gives the run's expected accuracy to about
0.1 points. Prints one line per run and the means, and writes RUN/fresh_test.json, which scripts/grid.py's
tables show as a "fresh test %" column.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grid  # noqa: E402

from bep_gpu.checkpoint import atomic_write  # noqa: E402

# A stream word no data or trainer stream uses, so the fresh draw shares no samples with the run's data.
FRESH_STREAM = 0x46524553  # "FRES"


def _checked(run_dir: str) -> tuple[str, int, float]:
    """(model path, data seed, fixed test accuracy) of a finished Random Prototypes run, or ValueError."""
    with open(os.path.join(run_dir, "config.json")) as f:
        cfg = json.load(f)
    if cfg.get("dataset") != "prototypes":
        raise ValueError(f"{run_dir} was trained on {cfg.get('dataset')!r}, not prototypes")
    model_path = os.path.join(run_dir, "model.npz")
    if not os.path.exists(model_path):
        raise ValueError(f"{run_dir} has no model.npz (run folders in git keep none: train it again)")
    with open(os.path.join(run_dir, "results.json")) as f:
        return model_path, int(cfg.get("data_seed", 0)), json.load(f)["test_accuracy"]


def fresh_accuracy(model_path: str, data_seed: int, n: int) -> tuple[float, float]:
    """(accuracy, its standard error) in % of a model on n fresh samples of its data seed's class rows."""
    import bep_gpu
    from bep_gpu.data.sources import draw_prototype_samples, prototype_rows

    protos, _ = prototype_rows(data_seed)
    x, y = draw_prototype_samples(protos, np.random.default_rng([data_seed, FRESH_STREAM]), n)
    acc = float(np.mean(bep_gpu.load(model_path).predict(x) == y))
    return 100 * acc, 100 * (acc * (1 - acc) / n) ** 0.5


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+")
    p.add_argument("--n", type=int, default=200_000, help="fresh samples per run (default: 200000)")
    args = p.parse_args(argv)
    if args.n <= 0:
        print("fresh_test.py: --n must be positive", file=sys.stderr)
        return 2
    try:  # every run checked before any is scored, so a bad one leaves no file written
        checked = [_checked(run) for run in args.runs]
    except (OSError, ValueError, KeyError) as e:
        print(f"fresh_test.py: {e}", file=sys.stderr)
        return 2
    fixed_all, fresh_all = [], []
    for run, (model_path, data_seed, fixed) in zip(args.runs, checked):
        fresh, err = fresh_accuracy(model_path, data_seed, args.n)
        fixed_all.append(100 * fixed)
        fresh_all.append(fresh)
        print(f"{os.path.basename(os.path.normpath(run))}: fixed test {100 * fixed:.2f}  fresh {fresh:.2f} +- "
              f"{err:.2f} (n = {args.n})")
        # the test accuracy it was made beside, so that grid.py drops it once the run holds another model
        record = {"n": args.n, "fresh_test_pct": round(fresh, 3), "stderr_pct": round(err, 3),
                  "stream": FRESH_STREAM, "test_accuracy": fixed}
        atomic_write(os.path.join(run, grid.FRESH_FILE), lambda f: f.write(json.dumps(record, indent=1).encode()))
    if len(args.runs) > 1:
        print(f"mean of {len(args.runs)}: fixed test {grid._mean(fixed_all)}  fresh {grid._mean(fresh_all)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
