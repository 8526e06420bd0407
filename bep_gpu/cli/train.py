"""bep-train {mlp,rnn,conv}: train a binary network with BEP; writes config.json, metrics.csv, model.npz, results.json."""
from __future__ import annotations

import argparse
import os
import sys
import time

from ..config import TrainConfig
from ..errors import UserError
from .common import StrictParser, parse_widths, run_cli

DEFAULTS = TrainConfig()
# The paper's UCR settings. patience 0: the paper gives the RNN a fixed gamma0 = 15, and with the schedule on, the
# group size climbed to Ks within 30 epochs on ItalyPowerDemand and the net collapsed to one class
# (results/rnn/RNN_RESULTS.md).
RNN_DEFAULTS = {"hidden": "1035", "r": 0.5, "nu": 0.05, "gamma0": 15, "p_r": 0.5, "dataset": "ucr:ItalyPowerDemand",
                "encode": "thermometer:8", "batch_size": 0, "patience": 0}
# A small binary convnet for Fashion-MNIST (docs/CONV.md): two stride-2 conv layers, one dense layer.
CONV_DEFAULTS = {"dataset": "fashion-mnist", "hidden": "256", "gamma0": "8"}


def build_parser() -> argparse.ArgumentParser:
    p = StrictParser(prog="bep-train", description=__doc__)
    sub = p.add_subparsers(dest="kind", required=True, parser_class=StrictParser)
    for kind in ("mlp", "rnn", "conv"):
        s = sub.add_parser(kind, help="train a binary convnet" if kind == "conv" else f"train a binary {kind.upper()}")
        d = {"rnn": RNN_DEFAULTS, "conv": CONV_DEFAULTS}.get(kind, {})

        def opt(name, typ, default, help_):
            s.add_argument(name, type=typ, default=d.get(name.lstrip("-").replace("-", "_"), default), help=help_)

        opt("--dataset", str, DEFAULTS.dataset, "prototypes, fashion-mnist, digits, seq-fashion-mnist, ucr:NAME or "
            "npz:PATH (default: %(default)s)")
        opt("--data-dir", str, None, "folder with the dataset's files (IDX for fashion-mnist, .ts for ucr:)")
        opt("--data-seed", int, DEFAULTS.data_seed, "seed of generated data (prototypes) and of fixed splits")
        opt("--hidden", str, ",".join(map(str, DEFAULTS.hidden)),
            "layer widths, e.g. 525,525 (rnn: KS or KS,KY) (default: %(default)s)")
        opt("--epochs", int, DEFAULTS.epochs, "(default: %(default)s)")
        opt("--batch-size", int, DEFAULTS.batch_size, "mini-batch size" + (" (0: a tenth of the training set)"
                                                                          if kind == "rnn" else " (default: %(default)s)"))
        s.add_argument("--backend", choices=["auto", "numpy", "numba", "cuda"], default="auto",
                       help="auto picks cuda, then numba (compiled CPU kernels), then numpy (default: auto)")
        opt("--threads", int, DEFAULTS.threads, "CPU threads of the numba kernels and BLAS (0: the libraries' "
            "defaults; default: %(default)s)")
        opt("--seed", int, DEFAULTS.seed, "seed of init, prototypes, splits, shuffling and reinforcement")
        opt("--out", str, f"runs/{kind}", "output directory (default: %(default)s)")
        opt("--r", float, DEFAULTS.r, "trigger margin as a fraction of the last width (default: %(default)s)")
        opt("--nu", float, DEFAULTS.nu, "gate width as a fraction of the fan-in (default: %(default)s)")
        if kind == "conv":
            opt("--gamma0", str, DEFAULTS.gamma0, "initial group size, one value or one per trainable layer "
                "(conv layers: a divisor of C_out) (default: %(default)s)")
        else:
            opt("--gamma0", int, DEFAULTS.gamma0, "initial group size; must divide every width (default: %(default)s)")
        opt("--p-r", float, DEFAULTS.p_r, "reinforcement scale (default: %(default)s)")
        opt("--patience", int, DEFAULTS.patience, "epochs without improvement before groups grow; 0 = never")
        opt("--init-std", float, DEFAULTS.init_std, "std of the initial hidden weights (default: %(default)s)")
        opt("--val-fraction", float, DEFAULTS.val_fraction, "held-out share of the training set (default: %(default)s)")
        opt("--encode", str, d.get("encode", DEFAULTS.encode), "sign, median, thermometer:B or auto")
        s.add_argument("--no-shuffle", action="store_true", help="keep the data order fixed")
        opt("--init", str, None, "start from this checkpoint's weights and prototypes")
        opt("--resume", str, None, "continue the interrupted run in this directory")
        opt("--max-train", int, None, "use only the first N training samples")
        s.add_argument("--quiet", action="store_true", help="no progress output")
        s.add_argument("--plot", action="store_true", help="write learning_curve.png (needs matplotlib)")
        opt("--hidden-clip", int, DEFAULTS.hidden_clip, "bound C of the int16 hidden weights")
        s.add_argument("--stability", choices=["z", "hidden"], default="z",
                       help="rank wrong units by |z| (default) or by |H . a|")
        opt("--proto-alpha", float, DEFAULTS.proto_alpha, "variance weight of the prototype frame objective")
        opt("--proto-sweeps", int, DEFAULTS.proto_sweeps, "sweeps of the prototype frame search")
        opt("--eval-batch", int, DEFAULTS.eval_batch, "samples per evaluation chunk")
        s.add_argument("--distributed", choices=["auto", "none", "mpi", "nccl"], default="auto",
                       help="data-parallel processes, bit-identical to one: mpi (host sums), nccl (GPU sums, "
                       "unverified), none; auto = mpi when mpirun started several (default: auto)")
        opt("--dist-timeout", float, DEFAULTS.dist_timeout, "seconds to wait for the other processes before "
            "stopping the job (default: %(default)s)")
        s.add_argument("--cuda-graph", action="store_true",
                       help="replay each full-batch step from a CUDA graph (one launch per step; --backend cuda, one "
                       "process; same integers as without)")
        if kind == "rnn":
            opt("--horizon", int, 0, "steps that receive targets, counted from the end (0 = all)")
            s.add_argument("--rnn-mask", choices=["step", "shared"], default="step",
                           help="a mask per time step (default) or one per sample")
            opt("--window", int, 0, "keep only the last W steps of each series (0 = all)")
            opt("--expand", int, 0, "feed the encoded bits b of each step through a fixed seeded random +-1 "
                "matrix E (N x bits), giving N inputs sign(E b); E is stored in the checkpoint (paper: 1035; "
                "0 = off)")
        if kind == "conv":
            opt("--conv", str, "32:3:2:1,64:3:2:1", "conv layers in order, channels:kernel:stride:padding "
                "(default: %(default)s)")
            opt("--conv-tile", int, 0, "mask tiles of Q x Q output positions per gamma channels (0: the whole map)")
    return p


def parse_conv(text: str) -> list[list[int]]:
    """C:K:S:P[,C:K:S:P...] -> [[C, K, S, P], ...]; UserError for anything else."""
    try:
        specs = [[int(v) for v in layer.split(":")] for layer in text.split(",") if layer.strip()]
    except ValueError:
        specs = []
    if not specs or any(len(spec) != 4 for spec in specs):
        raise UserError(f"--conv takes channels:kernel:stride:padding per layer, e.g. 32:3:1:1,64:3:2:1; got {text!r}")
    return specs


def parse_gammas(text: str) -> int | list[int]:
    try:
        values = [int(v) for v in str(text).split(",")]
    except ValueError:
        raise UserError(f"--gamma0 takes one integer or one per trainable layer (e.g. 8,8,16), got {text!r}") from None
    return values[0] if len(values) == 1 else values


def config_from_args(args) -> TrainConfig:
    values = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__}
    values["hidden"] = parse_widths(args.hidden)
    values["shuffle"] = not args.no_shuffle
    if args.kind == "conv":
        values["conv"] = parse_conv(args.conv)
        values["gamma0"] = parse_gammas(args.gamma0)
    return TrainConfig(**values)


def _main(argv) -> None:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    from ..trainer import CHECKPOINT_NAME, train

    started = time.time()
    try:
        train(cfg)
    except KeyboardInterrupt:
        run_dir = cfg.resume or cfg.out
        path = os.path.join(run_dir, CHECKPOINT_NAME)
        # a fresh run may share --out with an older run's checkpoint: only one written since the start counts
        if os.path.exists(path) and (cfg.resume or os.path.getmtime(path) >= started):
            raise KeyboardInterrupt(f"finished epochs are in {path}; "
                                    f"continue with --resume {run_dir}") from None
        raise KeyboardInterrupt("no epoch finished, nothing to resume") from None


_main.prog = "bep-train"


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
