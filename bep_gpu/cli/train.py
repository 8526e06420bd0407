"""bep-train {mlp,rnn}: train a binary network with BEP and write config.json, metrics.csv, model.npz, results.json."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from ..config import CONV_DEFAULTS, RNN_DEFAULTS, TrainConfig
from ..data.augment import AUGMENT_HELP
from ..errors import UserError
from ..prototypes import FRAMES
from .common import StrictParser, add_version, parse_indices, parse_widths, run_cli

DEFAULTS = TrainConfig()
KINDS = ("mlp", "rnn", "conv")
# The conv flags take text: C:K:S:P layers, one gamma0 or one per layer.
CONV_FLAG_DEFAULTS = {**CONV_DEFAULTS, "gamma0": str(CONV_DEFAULTS["gamma0"]),
                      "conv": ",".join(":".join(map(str, layer)) for layer in CONV_DEFAULTS["conv"])}


def build_parser(suppress: bool = False) -> argparse.ArgumentParser:
    """The parser; suppress=True leaves out every default, so that parsing yields only what was given."""
    p = StrictParser(prog="bep-train", description=__doc__)
    add_version(p)
    sub = p.add_subparsers(dest="kind", required=True, parser_class=StrictParser)
    for kind in KINDS:
        s = sub.add_parser(kind, help="train a binary convnet" if kind == "conv" else f"train a binary {kind.upper()}")
        d = {"rnn": RNN_DEFAULTS, "conv": CONV_FLAG_DEFAULTS}.get(kind, {})

        def default(name, value):
            value = d.get(name, value)
            return argparse.SUPPRESS if suppress else ",".join(map(str, value)) if isinstance(value, list) else value

        def opt(name, typ, value, help_, *aliases):
            field = name.lstrip("-").replace("-", "_")
            s.add_argument(name, *aliases, type=typ, dest=field, default=default(field, value),
                           help=help_ + (" (default: none)" if value == "" else " (default: %(default)s)"))

        def choice(name, choices, value, help_):
            s.add_argument(name, choices=choices, default=default(name[2:].replace("-", "_"), value),
                           help=help_ + " (default: %(default)s)")

        def flag(name, help_):
            s.add_argument(name, action="store_true", default=default(name, False), help=help_ + " (default: off)")

        opt("--dataset", str, DEFAULTS.dataset, "prototypes, fashion-mnist, digits, seq-fashion-mnist, ucr:NAME or "
            "npz:PATH")
        opt("--data-dir", str, None, "folder with the dataset's files (IDX for fashion-mnist, .ts for ucr:, "
            "digits.csv.gz for digits); when given, the only place looked at; without it, the installed copies")
        opt("--data-seed", int, DEFAULTS.data_seed, "seed of generated data (prototypes) and of fixed splits")
        opt("--hidden", str, DEFAULTS.hidden, "layer widths, e.g. 525,525 (rnn: KS or KS,KY)")
        opt("--epochs", int, DEFAULTS.epochs, "epochs to train (with --resume: a larger value extends the run)")
        opt("--batch-size", int, DEFAULTS.batch_size,
            "mini-batch size" + (" (0: a tenth of the training set, at most 20)" if kind == "rnn" else ""))
        choice("--backend", ["auto", "numpy", "numba", "cuda"], DEFAULTS.backend, "where to compute, the same "
               "integers on each; auto picks cuda, then numba (compiled CPU kernels), then numpy")
        opt("--threads", int, DEFAULTS.threads, "CPU threads of the numba kernels and BLAS (0: the libraries' "
            "defaults)")
        opt("--seed", int, DEFAULTS.seed, "seed of init, prototypes, splits, shuffling and reinforcement")
        opt("--out", str, f"runs/{kind}", "output directory; one holding a run is refused without --resume or "
            "--overwrite")
        flag("--overwrite", "replace the run already in --out (its files are removed first)")
        opt("--r", float, DEFAULTS.r, "trigger margin as a fraction of the last width")
        opt("--nu", float, DEFAULTS.nu, "gate width as a fraction of the fan-in")
        # text for every kind: a list is parsed here and refused, where it must be, by the config in one line
        opt("--gamma0", str, str(DEFAULTS.gamma0), {
            "conv": "initial group size, one value or one per trainable layer (conv layers: a divisor of C_out)",
            "mlp": "initial group size, one value dividing every width or one per layer (e.g. 7,35,35)",
            "rnn": "initial group size; must divide every width"}[kind])
        opt("--p-r", float, DEFAULTS.p_r, "reinforcement scale")
        opt("--patience", int, DEFAULTS.patience, "group-size schedule, NOT early stopping (see --early-stop): "
            "epochs without validation improvement before every group size gamma grows; 0 = never",
            "--gamma-patience")
        opt("--gamma-milestones", str, "", "a fixed group-size schedule instead of --patience: every gamma grows "
            "after each of these epochs, e.g. 23,33,43 (PyTorch's MultiStepLR milestones; for runs without a "
            "validation split)")
        opt("--early-stop", int, DEFAULTS.early_stop, "stop after N epochs without validation improvement; the "
            "best epoch's model is best.npz either way; 0 = never")
        opt("--init-std", float, DEFAULTS.init_std, "std of the initial hidden weights")
        opt("--val-fraction", float, DEFAULTS.val_fraction, "held-out share of the training set")
        opt("--encode", str, DEFAULTS.encode, "sign, median, quantile:Q, thermometer:B or auto (sign for +-1 data, "
            "median for images, thermometer:8 for sequences)")
        if kind != "rnn":
            opt("--augment", str, DEFAULTS.augment, AUGMENT_HELP)
        s.add_argument("--no-shuffle", action="store_true", default=default("no_shuffle", False),
                       help="keep the data order fixed (default: shuffle every epoch)")
        opt("--init", str, None, "start from this checkpoint's weights and prototypes")
        opt("--resume", str, None, "continue (or, with a larger --epochs, extend) the run in this directory")
        opt("--config", str, None, "start a new run from the settings of this config.json (flags given override)")
        opt("--max-train", int, None, "use only the first N training samples, counted before the validation "
            "split; None: all")
        flag("--quiet", "no progress output")
        flag("--plot", "write learning_curve.png (needs matplotlib)")
        opt("--hidden-clip", int, DEFAULTS.hidden_clip, "bound C of the int16 hidden weights")
        opt("--freeze", str, "", "weight matrices kept as initialised (or as --init loaded them): no update, no "
            "reinforcement, targets still pass through; indices in forward order as the checkpoint's hidden.I, "
            "e.g. 0,1")
        choice("--stability", ["z", "flips", "hidden"], DEFAULTS.stability,
               "rank wrong units by |z|, by the input flips that would flip them (|z + 1| at an even fan-in, "
               "where sign(0) = +1) or by |H . a| (mlp only)")
        opt("--proto-alpha", float, DEFAULTS.proto_alpha, "variance weight of the prototype frame objective")
        opt("--proto-sweeps", int, DEFAULTS.proto_sweeps, "sweeps of the prototype frame search")
        choice("--proto-frame", list(FRAMES), DEFAULTS.proto_frame,
               "prototype search: greedy flips lowering sum + alpha * variance of the pair dots (the spec's), or "
               "balanced columns (the lowest sum) with swaps lowering their variance")
        opt("--eval-batch", int, DEFAULTS.eval_batch, "samples per evaluation chunk")
        choice("--distributed", ["auto", "none", "mpi", "nccl"], DEFAULTS.distributed,
               "data-parallel processes, bit-identical to one: mpi (host sums), nccl (GPU sums, unverified), "
               "none; auto = mpi when mpirun started several")
        opt("--dist-timeout", float, DEFAULTS.dist_timeout, "seconds to wait for the other processes before "
            "stopping the job")
        flag("--cuda-graph", "replay each full-batch step from a CUDA graph (one launch per step; --backend cuda, "
             "one process; same integers as without)")
        if kind == "rnn":
            opt("--horizon", int, DEFAULTS.horizon, "steps that receive targets, counted from the end (0 = all)")
            choice("--rnn-mask", ["step", "shared"], DEFAULTS.rnn_mask, "a mask per time step or one per sample")
            opt("--window", int, DEFAULTS.window, "keep only the last W steps of each series (0 = all)")
            opt("--expand", int, DEFAULTS.expand, "feed the encoded bits b of each step through a fixed seeded "
                "random +-1 matrix E (N x bits), giving N inputs sign(E b); E is stored in the checkpoint "
                "(paper: 1035; 0 = off)")
        if kind == "conv":
            opt("--conv", str, None, "conv layers in order, channels:kernel:stride:padding[:pool], pool 2 = 2 x 2 "
                "majority pooling of the layer's output signs (docs/CONV.md)")
            opt("--conv-tile", int, DEFAULTS.conv_tile, "mask tiles of Q x Q output positions per gamma channels "
                "(0: the whole map)")
    return p


def parse_conv(text: str) -> list[list[int]]:
    """C:K:S:P[:M][,C:K:S:P[:M]...] -> [[C, K, S, P(, M)], ...]; UserError for anything else."""
    try:
        specs = [[int(v) for v in layer.split(":")] for layer in text.split(",") if layer.strip()]
    except ValueError:
        specs = []
    if not specs or any(len(spec) not in (4, 5) for spec in specs):
        raise UserError("--conv takes channels:kernel:stride:padding[:pool] per layer, e.g. 32:3:1:1:2,64:3:2:1; "
                        f"got {text!r}")
    return specs


def parse_gammas(text: str) -> int | list[int]:
    try:
        values = [int(v) for v in str(text).split(",")]
    except ValueError:
        raise UserError(f"--gamma0 takes one integer or one per trainable layer (e.g. 7,35,35), got {text!r}") from None
    return values[0] if len(values) == 1 else values


def _settings(namespace) -> dict:
    """TrainConfig fields of a parsed namespace (--no-shuffle becomes shuffle, --hidden a list)."""
    values = {k: v for k, v in vars(namespace).items() if k in TrainConfig.__dataclass_fields__}
    if "hidden" in values:
        values["hidden"] = parse_widths(values["hidden"])
    if isinstance(values.get("freeze"), str):
        values["freeze"] = parse_indices(values["freeze"], "--freeze")
    if isinstance(values.get("gamma_milestones"), str):
        values["gamma_milestones"] = parse_indices(values["gamma_milestones"], "--gamma-milestones", "epochs like 20,30")
    if "no_shuffle" in vars(namespace):
        values["shuffle"] = not namespace.no_shuffle
    if isinstance(values.get("conv"), str):
        values["conv"] = parse_conv(values["conv"])
    if isinstance(values.get("gamma0"), str):
        values["gamma0"] = parse_gammas(values["gamma0"])
    return values


def _saved_settings(path: str, kind: str) -> dict:
    """The settings of a run's config.json (--config), without where that run lives."""
    try:
        with open(path) as f:
            saved = json.load(f)
    except OSError as e:
        raise UserError(f"--config {path}: cannot read it ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise UserError(f"--config {path}: not JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(saved, dict):
        raise UserError(f"--config {path}: expected a JSON object of settings (a run's config.json)")
    if saved.get("kind", kind) != kind:
        raise UserError(f"--config {path} is the config of an {saved['kind']} run; use bep-train {saved['kind']}")
    unknown = sorted(set(saved) - set(TrainConfig.__dataclass_fields__) - RUN_FACTS)
    if unknown:
        raise UserError(f"--config {path}: unknown settings {', '.join(unknown)}")
    return {k: v for k, v in saved.items() if k in TrainConfig.__dataclass_fields__ and k not in ("resume",)}


# What config.json records beside the settings (facts of that run, not settings): ignored by --config.
RUN_FACTS = {"backend_used", "device", "n_inputs", "n_classes", "n_train", "n_val", "sizes", "n_steps", "processes"}


def config_from_args(argv) -> tuple[TrainConfig, set]:
    """The run's settings and the names of those given on the command line (or by --config)."""
    args = build_parser().parse_args(argv)
    given = _settings(build_parser(suppress=True).parse_args(argv))
    values = _settings(args)
    if args.config:
        if args.resume:
            raise UserError("--config starts a new run; --resume continues one with its own settings: use one")
        given = {**_saved_settings(args.config, args.kind), **given}
        values.update(given)
    return TrainConfig(**values), set(given)


def _main(argv) -> None:
    cfg, given = config_from_args(argv)
    from ..trainer import CHECKPOINT_NAME, Trainer

    started = time.time()
    try:
        Trainer(cfg, given=given).run()
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
