"""Experimental (not an option): conv filters imprinted from training patches instead of drawn at random.

  python results/conv/imprint_probe.py OUT.npz [--seed 0] [--channels 64,128] [--dense 256] [--images 2000]
  bep-train conv --init OUT.npz --conv 64:3:2:1,128:3:2:1 --gamma0 64,128,8 ... [--freeze 0,1]

BEP's conv updates are at best neutral (RESULTS.md, BEP-Conv), so the convnet is a BEP MLP on fixed binary
features, and random +-1 filters are what those features are. This writes an --init checkpoint whose conv filters
are the signs of patches seen in training images: layer 0 takes distinct non-constant 3 x 3 patches of the
median-encoded images, drawn in proportion to how often they occur; layer 1 takes random non-constant patches of
layer 0's output maps on the same images. Only bits are copied (no float enters the filters); the magnitudes
|H| = 1 + |round(N(0, 8^2))| and the dense layer are what a plain run of the seed draws. The images come from
the training split of --seed's validation split, so validation and test stay unseen. Layers are 3 x 3, stride 2,
padding 1 (+1 padding, as the trainer reads it).
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from bep_gpu.checkpoint import save_checkpoint
from bep_gpu.data import load_dataset, make_encoder
from bep_gpu.mlp import init_hidden
from bep_gpu.prototypes import make_prototypes
from bep_gpu.trainer import split_validation


def patches(a: np.ndarray) -> np.ndarray:
    """(n, H', W', 9 C) 3 x 3 stride-2 patches of +-1 maps a (n, H, W, C), padding +1, in (i, j, c) order."""
    n, h, w, c = a.shape
    p = np.ones((n, h + 2, w + 2, c), dtype=np.int8)
    p[:, 1:-1, 1:-1] = a
    ho, wo = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    cols = [p[:, i:i + 2 * ho:2, j:j + 2 * wo:2] for i in range(3) for j in range(3)]
    return np.concatenate(cols, axis=-1)


def forward(a: np.ndarray, filters: np.ndarray) -> np.ndarray:
    """sign(conv(a, filters)) with sign(0) = +1; filters (C_out, 3, 3, C_in) +-1."""
    x = patches(a).astype(np.int32)
    z = x @ filters.reshape(len(filters), -1).T.astype(np.int32)
    return np.where(z >= 0, 1, -1).astype(np.int8)


def imprint(a: np.ndarray, n_filters: int, rng, weighted: bool) -> np.ndarray:
    """n_filters distinct non-constant patches of a, as (n_filters, 3, 3, C) +-1."""
    x = patches(a).reshape(-1, 9 * a.shape[-1])
    x = x[np.abs(x.sum(axis=1)) < x.shape[1]]  # drop all +1 and all -1 patches
    uniq, counts = np.unique(x, axis=0, return_counts=True)
    if len(uniq) < n_filters:
        raise SystemExit(f"imprint_probe.py: only {len(uniq)} distinct patches for {n_filters} filters; "
                         "use more --images")
    pick = rng.choice(len(uniq), size=n_filters, replace=False, p=counts / counts.sum() if weighted else None)
    return uniq[pick].reshape(n_filters, 3, 3, a.shape[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--channels", default="64,128")
    p.add_argument("--dense", type=int, default=256)
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--init-std", type=float, default=8.0)
    p.add_argument("--val-fraction", type=float, default=0.1)
    args = p.parse_args(argv)
    channels = [int(c) for c in args.channels.split(",")]

    ds = load_dataset("fashion-mnist", images=True)
    tr, _ = split_validation(len(ds.x_train), args.val_fraction, args.seed)
    enc = make_encoder("median", True).fit(ds.x_train[tr])
    rng = np.random.default_rng([args.seed, 0x494D5052])  # "IMPR"
    a = enc.transform(ds.x_train[rng.choice(tr, size=args.images, replace=False)]).reshape(args.images, 28, 28, 1)
    a = a.astype(np.int8)

    filters = []
    for layer, c_out in enumerate(channels):
        f = imprint(a, c_out, rng, weighted=layer == 0)  # layer 0 has few distinct patches: favour common ones
        filters.append(f)
        a = forward(a, f)
        print(f"layer {layer}: {c_out} filters, output +1 share {np.mean(a > 0):.3f}", file=sys.stderr)

    h, w = a.shape[1:3]
    shapes = [(c, 3, 3, ci) for c, ci in zip(channels, [1] + channels[:-1])] + [(args.dense, h * w * channels[-1])]
    hidden = init_hidden(shapes, args.init_std, args.seed)
    for i, f in enumerate(filters):
        hidden[i] = (f * (1 + np.abs(hidden[i]))).astype(np.int16)
    protos = make_prototypes(10, args.dense, args.seed)
    save_checkpoint(args.out, "conv", {}, protos, {str(i): m for i, m in enumerate(hidden)},
                    {"classes": np.asarray(ds.classes)})
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
