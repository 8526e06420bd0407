"""Plot a run's learning curves: python scripts/plot_metrics.py RUN_DIR|metrics.csv [--out PNG].

Writes RUN_DIR/learning_curve.png by default (what `bep-train --plot` writes at the end of a run).
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # runs from a checkout too
from bep_gpu.cli.common import run_cli  # noqa: E402
from bep_gpu.plots import plot_metrics  # noqa: E402


def _main(argv) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a run directory (--out of bep-train) or its metrics.csv")
    p.add_argument("--out", help="PNG to write (default: learning_curve.png beside metrics.csv)")
    args = p.parse_args(argv)
    csv_path = os.path.join(args.run, "metrics.csv") if os.path.isdir(args.run) else args.run
    png = args.out or os.path.join(os.path.dirname(os.path.abspath(csv_path)), "learning_curve.png")
    print(plot_metrics(csv_path, png))


_main.prog = "plot_metrics.py"

if __name__ == "__main__":
    sys.exit(run_cli(_main))
