"""How reachable are BEP's targets? A probe of a trained conv or MLP run, on its test images.

  python scripts/target_probe.py RUN [--samples 1000] [--nu NU]

For every trainable layer of the model.npz in RUN it computes, from the pre-update state as a training step does
(select_updates of bep_conv or bep_mlp, NumPy backend), the targets t of the layer's outputs and reports:
- wrong: the fraction of output units with a != t (a random layer: 0.5);
- class template: mean over units of |mean of t over a class's samples|, averaged over classes (1.0: t depends
  on the label only, not on the image; with a handful of samples per class it is near 1.0 anyway);
- median |z| of the layer's pre-activations, its gate floor(nu K) and the fraction of its units inside it (the
  units that send their target to the layer below; layer 0 has no gate);
- reachable: the agreement with t that the best linear map of the layer's own inputs reaches on held-out samples
  (least squares on the inputs of half the samples, a conv layer's im2col patches, sign of its output on the
  other half), by the signs of that fit (+-1 weights, as a binary layer has) and by the layer's current +-1
  weights, on the same half; only where the half gives at least twice as many rows as a unit has inputs (a
  dense layer on a whole image needs many samples).
--nu replaces the run's gate width, for every layer (the targets change; the model does not).
Writes RUN/target_probe.json (or a copy with the nu in its name) and prints it. RUN must still hold model.npz
(run folders in git keep none: train the run again with its command.txt).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from bep_gpu import bep_conv, bep_mlp, load
from bep_gpu.bits import unpack_bits
from bep_gpu.checkpoint import atomic_write
from bep_gpu.data.sources import load_dataset
from bep_gpu.errors import UserError


def _pm(words, n: int) -> np.ndarray:
    return unpack_bits(np.asarray(words), n).astype(np.float64)


def reachable(patches: np.ndarray, targets: np.ndarray, current: np.ndarray) -> tuple[float, float, float]:
    """Agreement with the targets on the held-out half of: the least-squares filters, their signs (+-1 filters,
    as a binary layer must have) and the current outputs. patches (samples, positions, fan-in), targets and
    current (samples, positions, channels), all +-1."""
    half = len(patches) // 2
    fit = np.linalg.lstsq(patches[:half].reshape(-1, patches.shape[-1]),
                          targets[:half].reshape(-1, targets.shape[-1]), rcond=None)[0]
    held = targets[half:].reshape(-1, targets.shape[-1])
    rows = patches[half:].reshape(-1, patches.shape[-1])
    agree = [float((np.where(rows @ w >= 0, 1, -1) == held).mean()) for w in (fit, np.where(fit >= 0, 1.0, -1.0))]
    return agree[0], agree[1], float((current[half:].reshape(held.shape) == held).mean())


def _targets(model, words, y, nu):
    """Per trainable layer: (width, packed targets, z, packed outputs, packed inputs, fan-in of one unit's
    input, conv). The pre-update state of a training step (select_updates); gammas do not change the targets."""
    cfg, task, bk = model.config, model.task, model.bk
    if model.kind == "conv":
        rules = task.rules if nu is None else bep_conv.step_rules(
            task.geoms, task.dense_sizes, cfg.r, nu, cfg.hidden_clip, cfg.freeze, cfg.stability)
        widths = [g.c_out for g in task.geoms] + list(task.dense_sizes)
        zs, outs, _, _ = bep_conv.forward(bk, bep_conv.visible_weights(bk, task.hidden), task.geoms,
                                          task.dense_sizes, words)
        _, updates = bep_conv.select_updates(bk, task.hidden, task.geoms, task.dense_sizes, task.prototypes, words,
                                             bk.asarray(y), widths, task.tile, rules)
        fans, convs = task.fan_ins, [l < len(task.geoms) for l in range(len(widths))]
    else:
        rules = task.rules if nu is None else bep_mlp.StepRules.make(
            task.sizes, cfg.r, nu, cfg.hidden_clip, cfg.stability, cfg.freeze)
        widths = task.sizes[1:]
        zs, acts = bep_mlp.forward(bk, bep_mlp.visible_weights(bk, task.hidden), task.sizes, words)
        outs = acts[1:]
        _, updates = bep_mlp.select_updates(bk, task.hidden, task.sizes, task.prototypes, words, bk.asarray(y),
                                            widths, rules)
        fans, convs = task.sizes[:-1], [False] * len(widths)
    return rules, [(w, u[1], bk.to_numpy(z), o, u[2], f, c)
                   for w, u, z, o, f, c in zip(widths, updates, zs, outs, fans, convs)]


def probe(run: str, samples: int, nu: float | None) -> dict:
    model = load(os.path.join(run, "model.npz"))
    if model.kind not in ("mlp", "conv"):
        raise UserError(f"{run} holds an {model.kind} model; the probe is for mlp and conv runs")
    cfg, task, bk = model.config, model.task, model.bk
    data = load_dataset(cfg.dataset, data_dir=cfg.data_dir, data_seed=cfg.data_seed, images=model.kind == "conv")
    x, labels = data.x_test[:samples], np.asarray(data.y_test[:samples])
    index = {c: i for i, c in enumerate(model.classes.tolist())}
    y = np.array([index[c] for c in labels.tolist()])
    words = model._packed(model.encode(x))
    rules, per_layer = _targets(model, words, y, nu)
    layers = []
    for l, (width, t_words, z, out_words, in_words, fan_in, conv) in enumerate(per_layer):
        t = _pm(t_words, width).reshape(len(x), -1, width)
        a = _pm(out_words, width).reshape(t.shape)
        template = np.mean([np.abs(t[y == c].mean(0)).mean() for c in np.unique(y)])
        row = {"layer": l, "kind": "conv" if conv else "dense",
               "median_abs_z": float(np.median(np.abs(z))), "gate": int(rules.gates[l]) if l else None,
               "gate_passed": round(float((np.abs(z) <= rules.gates[l]).mean()), 4) if l else None,
               "wrong": round(float((a != t).mean()), 4), "class_template": round(float(template), 4)}
        inputs = _pm(in_words, fan_in).reshape(len(x), -1, fan_in)
        if (len(x) // 2) * inputs.shape[1] >= 2 * fan_in:  # enough rows for a least-squares fit to mean something
            fit, signs, now = reachable(inputs, t, a)
            row.update(reachable_least_squares=round(fit, 4), reachable_sign_of_fit=round(signs, 4),
                       current_weights=round(now, 4))
        layers.append(row)
    acc = float((bk.to_numpy(task.predict(words)) == y).mean())
    return {"run": run, "kind": model.kind, "samples": len(x), "nu": cfg.nu if nu is None else nu,
            "test_accuracy_of_these": acc, "layers": layers}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run")
    p.add_argument("--samples", type=int, default=1000, help="test images probed (the first ones)")
    p.add_argument("--nu", type=float, help="gate width for the targets instead of the run's")
    args = p.parse_args(argv)
    if not os.path.isdir(args.run):
        p.error(f"run folder {args.run} does not exist")
    if not os.path.exists(os.path.join(args.run, "model.npz")):
        p.error(f"{args.run} has no model.npz (run folders in git keep none: train it again with its command.txt)")
    if args.samples < 2:
        p.error("--samples must be at least 2 (half fit, half held out)")
    if args.nu is not None and not args.nu >= 0:
        p.error(f"--nu must be >= 0, got {args.nu}")
    try:
        out = probe(args.run, args.samples, args.nu)
    except UserError as e:  # a checkpoint or dataset the user can fix: one line, not a traceback
        p.exit(1, f"error: {e}\n")
    name = "target_probe.json" if args.nu is None else f"target_probe_nu{args.nu:g}.json"
    text = json.dumps(out, indent=1) + "\n"
    atomic_write(os.path.join(args.run, name), lambda f: f.write(text.encode()))
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
