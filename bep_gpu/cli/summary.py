"""bep-summary CHECKPOINT: per-layer shapes, packed and hidden bytes, bit-operations, compression, backend."""
from __future__ import annotations

import argparse
import sys

from .common import StrictParser, add_version, run_cli


def build_parser() -> argparse.ArgumentParser:
    p = StrictParser(prog="bep-summary", description=__doc__)
    add_version(p)
    p.add_argument("checkpoint", help="a bep-gpu checkpoint (model.npz or checkpoint.npz)")
    p.add_argument("--backend", choices=["auto", "numpy", "cuda"], default="numpy",
                   help="backend to load the model on (default: numpy)")
    p.add_argument("--steps", type=int, default=None,
                   help="RNN: time steps T per sample for the per-sample counts (default: from the checkpoint)")
    return p


def _main(argv) -> None:
    args = build_parser().parse_args(argv)
    from ..errors import UserError
    from ..model import load

    if args.steps is not None and args.steps <= 0:
        raise UserError("--steps must be positive")
    print(load(args.checkpoint, backend=args.backend).summary(steps=args.steps))


_main.prog = "bep-summary"


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
