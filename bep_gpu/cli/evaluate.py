"""bep-eval CHECKPOINT: accuracy of a saved model (MLP or RNN) on its dataset, or on another one given."""
from __future__ import annotations

import argparse
import json
import sys
import time

from .common import StrictParser, add_version, run_cli

SPLITS = ("test", "train", "val")


def build_parser() -> argparse.ArgumentParser:
    p = StrictParser(prog="bep-eval", description=__doc__)
    add_version(p)
    p.add_argument("checkpoint", help="a bep-gpu checkpoint (model.npz or checkpoint.npz)")
    p.add_argument("--dataset", help="dataset to evaluate on (default: the one the checkpoint was trained on)")
    p.add_argument("--data-dir", help="folder with the dataset's files (default: the checkpoint's)")
    p.add_argument("--backend", choices=["auto", "numpy", "cuda"], default="auto", help="(default: auto)")
    p.add_argument("--split", choices=SPLITS, default="test",
                   help="test set, or the training run's own train / validation samples (same seed and "
                        "--max-train as the run) (default: test)")
    p.add_argument("--eval-batch", type=int, default=None, help="samples per evaluation chunk")
    p.add_argument("--out", help="also write the result to this JSON file")
    return p


def evaluate(checkpoint: str, dataset: str | None = None, data_dir: str | None = None, backend: str = "auto",
             split: str = "test", eval_batch: int | None = None) -> dict:
    """Accuracy of checkpoint on a split of its dataset (or of `dataset`), with the checkpoint's encoder."""
    from ..errors import UserError
    from ..model import load
    from ..trainer import Prepared, accuracy

    model = load(checkpoint, backend=backend)
    cfg = model.config
    if dataset:
        cfg.dataset, cfg.data_dir = dataset, None  # the run's --data-dir was for its own dataset
    elif model.trained_on is None:
        raise UserError(f"checkpoint {checkpoint} does not say which dataset it was trained on; pass --dataset")
    if data_dir:
        cfg.data_dir = data_dir
    if eval_batch is not None:
        if eval_batch <= 0:
            raise UserError("--eval-batch must be positive")
        cfg.eval_batch = eval_batch
    t0 = time.perf_counter()
    # The trainer's own loading, split and encoding; with the stored encoder (refitted only for a weights-only
    # checkpoint, as --init does).
    trained_shape = cfg.image_shape
    # Labels are mapped to the model's classes: one the model does not know is an error.
    data = Prepared(cfg, model.bk, model.encoder, model.classes)
    if model.kind == "conv" and cfg.image_shape != trained_shape:
        raise UserError(f"{cfg.dataset} has images of {cfg.image_shape[0]}x{cfg.image_shape[1]}, the model was "
                        f"trained on {trained_shape[0]}x{trained_shape[1]}")
    if data.n_in != model.n_inputs:
        raise UserError(f"{cfg.dataset} encoded with {cfg.encode} gives {data.n_in} inputs per "
                        f"{'step' if model.kind == 'rnn' else 'sample'}, the model takes {model.n_inputs}")
    samples = {"test": data.test, "train": data.train, "val": data.val}[split]
    if samples is None:
        raise UserError("the run held out no validation split (--val-fraction 0); use --split test or train")
    acc = accuracy(model.task, samples, cfg.eval_batch)
    model.bk.synchronize()
    seconds = time.perf_counter() - t0
    return {"checkpoint": checkpoint, "kind": model.kind, "dataset": cfg.dataset, "split": split,
            "accuracy": acc, "n_samples": int(len(samples[1])), "encoder": data.encoder.spec,
            "backend": model.bk.name, "device": model.bk.device, "wall_time_s": seconds}


def _main(argv) -> None:
    args = build_parser().parse_args(argv)
    result = evaluate(args.checkpoint, args.dataset, args.data_dir, args.backend, args.split, args.eval_batch)
    print(f"{result['split']} accuracy {result['accuracy']:.4f} on {result['n_samples']} samples of "
          f"{result['dataset']} ({result['kind']}, backend {result['backend']})")
    if args.out:
        from ..checkpoint import atomic_write

        text = json.dumps(result, indent=2, sort_keys=True) + "\n"
        atomic_write(args.out, lambda f: f.write(text.encode()))


_main.prog = "bep-eval"


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
