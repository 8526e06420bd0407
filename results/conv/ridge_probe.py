"""Probe (float, not part of BEP): how far a least-squares readout goes on the frozen random conv features.

  python results/conv/ridge_probe.py --channels 128,256 [--seed 0] [--lambdas 3e3,1e4,3e4,1e5]

With frozen random filters the BEP convnet is a BEP MLP head on fixed binary features (RESULTS.md, BEP-Conv). This
asks whether a better head could lift it: it computes the features of the frozen layers (3 x 3, stride 2, padding
+1, the +-1 signs of the seed's initial hidden weights, as `bep-train conv --freeze` keeps them) on thermometer:2
inputs, fits a ridge regression (float64 normal equations, one-hot +-1 targets, a bias) on the training split
for each penalty, and prints its validation and test accuracy (pick the penalty on validation). Memory: the
Gram matrix is (F + 1)^2 float64 (F = 7 * 7 * last channels): 1.3 GB at 256 channels, 5 GB at 512.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from bep_gpu.data import load_dataset, make_encoder
from bep_gpu.mlp import init_hidden
from bep_gpu.trainer import split_validation

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from imprint_probe import forward  # noqa: E402  (the same sign(conv) the imprint probe uses)

CHUNK = 1000


def features(x: np.ndarray, enc, filters: list[np.ndarray]) -> np.ndarray:
    """(n, F + 1) float64: the last frozen layer's +-1 outputs in (y, x, c) order, then a constant 1 (the bias)."""
    a = enc.transform(x).reshape(len(x), 28, 28, -1).astype(np.int8)
    for f in filters:
        a = forward(a, f)
    return np.concatenate([a.reshape(len(a), -1), np.ones((len(a), 1), np.int8)], axis=1).astype(np.float64)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--channels", default="128,256")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--lambdas", default="3e3,1e4,3e4,1e5")
    args = p.parse_args(argv)
    channels = [int(c) for c in args.channels.split(",")]
    lambdas = [float(v) for v in args.lambdas.split(",")]

    ds = load_dataset("fashion-mnist", images=True)
    tr, va = split_validation(len(ds.x_train), args.val_fraction, args.seed)
    enc = make_encoder("thermometer:2", True).fit(ds.x_train[tr])
    side = 28
    for _ in channels:
        side = (side - 1) // 2 + 1
    shapes = [(c, 3, 3, ci) for c, ci in zip(channels, [2] + channels[:-1])] + [(1, side * side * channels[-1])]
    hidden = init_hidden(shapes, 8.0, args.seed)
    filters = [np.where(h >= 0, 1, -1).astype(np.int8) for h in hidden[:-1]]

    t0 = time.time()
    n_feat = side * side * channels[-1] + 1
    gram, rhs = np.zeros((n_feat, n_feat)), np.zeros((n_feat, 10))
    for i in range(0, len(tr), CHUNK):
        f = features(ds.x_train[tr[i:i + CHUNK]], enc, filters)
        gram += f.T @ f
        rhs += f.T @ (np.eye(10)[ds.y_train[tr[i:i + CHUNK]]] * 2 - 1)
    print(f"Gram matrix of {len(tr)} images x {n_feat} features: {time.time() - t0:.0f} s", flush=True)
    f_val = np.concatenate([features(ds.x_train[va[i:i + CHUNK]], enc, filters) for i in range(0, len(va), CHUNK)])
    f_test = np.concatenate([features(ds.x_test[i:i + CHUNK], enc, filters) for i in range(0, len(ds.x_test), CHUNK)])
    for lam in lambdas:
        w = np.linalg.solve(gram + lam * np.eye(n_feat), rhs)
        val = np.mean((f_val @ w).argmax(1) == ds.y_train[va])
        test = np.mean((f_test @ w).argmax(1) == ds.y_test)
        print(f"channels {args.channels} lambda {lam:g}: val {100 * val:.2f} % test {100 * test:.2f} % "
              f"({time.time() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
