"""QAT peer of BEP-Conv: the same binary convnet trained with latent fp32 weights, the STE and Adam.

Conv layers (sign of latent filters, no bias, padding value +1 as in BEP), optional BatchNorm2d before every sign,
flattening in (y, x, c) order, dense BinaryLinear layers (optional BatchNorm1d) and BEP's fixed prototype readout.
Everything else (STE, weight clip, logit scale, Adam) is qat_torch's, imported from it.

Probes of what bounds the binary nets: --pool (2x2 max-pooling of the signs after the named conv layers, an OR of
bits; BEP-Conv has no pooling layer), --float (the latent weights used as they are and ReLU in place of every
sign, zero padding, the weights still clipped to [-1, 1] by the shared training loop: a float convnet of the
same shape on the same encoded input bits) and --freeze-conv [L,...] (the filters of every conv layer, or of the
named ones, kept at their random start, as BEP's --freeze keeps them, while the conv layers' batch norm still
trains: what learning the filters is worth to the peer).

    python -m bep_gpu.peers.qat_conv --dataset fashion-mnist --conv 32:3:2:1,64:3:2:1 --hidden 256 --bn --out DIR

Needs PyTorch (the optional extra `[baselines]`).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .qat_torch import BinaryLinear, _Readout, evaluate, make_readout_prototypes, sign_ste, train_epoch


def layer_weight(layer: BinaryLinear, binary: bool) -> torch.Tensor:
    """sign(latent) with the STE, or (the --float probe) the latent weights themselves."""
    return layer.binary_weight() if binary else layer.weight


class BinaryConv2d(nn.Module):
    """sign(latent) k x k filters over NCHW maps padded with +1; latent clipped by clip_latent_ (BinaryLinear's).
    binary=False: the latent filters over zero padding (the --float probe)."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int, pad: int, binary: bool = True):
        super().__init__()
        self.inner = BinaryLinear(c_in * k * k, c_out)  # the latent weights, Glorot init and clip of qat_torch
        self.shape = (c_out, c_in, k, k)
        self.stride, self.pad, self.binary = stride, pad, binary

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        if self.pad:
            a = F.pad(a, (self.pad,) * 4, value=1.0 if self.binary else 0.0)
        return F.conv2d(a, layer_weight(self.inner, self.binary).view(self.shape), stride=self.stride)


class QATConv(nn.Module):
    """Inputs (N, H, W, C) +-1; a = sign(BN?(conv(a))) per conv layer (then 2x2 max-pooled after the layers in
    pool), then as qat_torch.QATMLP. binary=False: ReLU for sign and float weights (the --float probe)."""

    def __init__(self, image_shape, c_in, specs, hidden, prototypes, *, bn, logit_scale, pool=(), binary=True):
        super().__init__()
        convs, h, w, c = [], image_shape[0], image_shape[1], c_in
        for i, (c_out, k, s, p) in enumerate(specs):
            convs.append(BinaryConv2d(c, c_out, k, s, p, binary))
            h, w, c = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1, c_out
            if i in pool:
                h, w = h // 2, w // 2
            if h < 1 or w < 1:
                raise ValueError(f"conv layer {i} leaves a {h} x {w} map")
        self.convs, self.pool, self.binary = nn.ModuleList(convs), frozenset(pool), binary
        self.act = sign_ste if binary else F.relu
        widths = [h * w * c, *hidden]
        self.dense = nn.ModuleList(BinaryLinear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.conv_norms = nn.ModuleList(nn.BatchNorm2d(s[0]) for s in specs) if bn else None
        self.norms = nn.ModuleList(nn.BatchNorm1d(k) for k in hidden) if bn else None
        self.readout = _Readout("prototypes", prototypes, logit_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = x.permute(0, 3, 1, 2)
        for i, conv in enumerate(self.convs):
            z = conv(a)
            a = self.act(self.conv_norms[i](z) if self.conv_norms is not None else z)
            if i in self.pool:
                a = F.max_pool2d(a, 2)  # after the activation: of +-1 signs, the OR of their +1 bits
        a = a.permute(0, 2, 3, 1).flatten(1)  # (y, x, c) order, as BEP flattens
        for i, layer in enumerate(self.dense):
            z = F.linear(a, layer_weight(layer, self.binary))
            a = self.act(self.norms[i](z) if self.norms is not None else z)
        return self.readout(a)


def build(image_shape, c_in, specs, hidden, n_classes, *, bn, seed, pool=(), binary=True):
    torch.manual_seed(seed)
    prototypes, _ = make_readout_prototypes(n_classes, hidden[-1], seed)
    return QATConv(image_shape, c_in, specs, hidden, prototypes, bn=bn, logit_scale=1.0 / math.sqrt(hidden[-1]),
                   pool=pool, binary=binary)


def freeze_filters(model: QATConv, layers) -> None:
    """--freeze-conv: the filters of these conv layers stay at their random start; batch norm and the dense layers
    still train."""
    for i in layers:
        model.convs[i].inner.weight.requires_grad_(False)


def time_qat_conv_step(image_shape, c_in, specs, hidden, *, batch_size=100, n_samples=2000, bn=False,
                       device="cpu", seed=0) -> dict:
    """Median seconds of one QAT step (batch gather included) on random +-1 images, after a few warm-up steps."""
    dev = torch.device(device)
    model = build(image_shape, c_in, specs, hidden, 10, bn=bn, seed=seed).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randint(0, 2, (n_samples, *image_shape, c_in), generator=gen, dtype=torch.int8) * 2 - 1).to(dev)
    y = torch.randint(0, 10, (n_samples,), generator=gen).to(dev)
    train_epoch(model, opt, x, y, batch_size, np.arange(min(n_samples, 3 * batch_size)), bf16=False)
    _, _, epoch_time, steps = train_epoch(model, opt, x, y, batch_size, np.arange(n_samples), bf16=False)
    return {"step_time_s": float(np.median(steps)), "epoch_time_s": epoch_time, "samples_per_s": n_samples / epoch_time}


def parse_layers(spec: str, n_conv: int, flag: str) -> frozenset:
    """'0,1' -> {0, 1}: conv layer indices; UserError for anything else."""
    from bep_gpu.cli.common import parse_indices
    from bep_gpu.errors import UserError

    layers = parse_indices(spec, flag, "conv layer indices like 0,1")
    if not all(0 <= i < n_conv for i in layers) or len(set(layers)) != len(layers):
        raise UserError(f"{flag} {spec!r}: give distinct conv layer indices 0..{n_conv - 1}, comma-separated")
    return frozenset(layers)


def _raise(message: str):
    from bep_gpu.errors import UserError

    raise UserError(message)


def main(argv=None) -> int:
    from bep_gpu.cli.train import parse_conv, parse_widths
    from bep_gpu.config import TrainConfig, check_conv
    from bep_gpu.data import load_dataset, make_encoder
    from bep_gpu.errors import UserError

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--conv", default="32:3:2:1,64:3:2:1")
    ap.add_argument("--hidden", default="256")
    ap.add_argument("--encode", default="median")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--max-train", type=int, default=None)
    ap.add_argument("--bn", action="store_true", help="BatchNorm before every sign (every ReLU with --float)")
    ap.add_argument("--pool", default="", help="2x2 max-pooling after these conv layers, e.g. 0,1 (0-based)")
    ap.add_argument("--float", action="store_true",
                    help="float weights and ReLU: a float net of this shape on these bits")
    ap.add_argument("--freeze-conv", nargs="?", const="all", default="",
                    help="keep the filters of every conv layer (or of these, e.g. 0) at their random start")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    if args.threads < 0:
        print("qat_conv: error: --threads must be >= 0 (0: torch's default)", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        specs, hidden = parse_conv(args.conv), parse_widths(args.hidden)
        check_conv(TrainConfig(kind="conv", conv=specs), _raise)
        if min(hidden) < 1 or args.epochs < 1 or args.batch_size < 1:
            raise UserError("--hidden widths, --epochs and --batch-size must be positive")
        n_conv = len(specs)
        pool = parse_layers(args.pool, n_conv, "--pool")
        frozen = (frozenset(range(n_conv)) if args.freeze_conv == "all"
                  else parse_layers(args.freeze_conv, n_conv, "--freeze-conv"))
        ds = load_dataset(args.dataset, data_dir=args.data_dir, images=True)
    except UserError as e:
        print(f"qat_conv: error: {e}", file=sys.stderr)
        return 2
    x_train, y_train = ds.x_train[:args.max_train], ds.y_train[:args.max_train]
    enc = make_encoder(args.encode, True).fit(x_train)  # fitted once on the training images, as bep-train does
    xt, xe = (torch.as_tensor(enc.transform(x)) for x in (x_train, ds.x_test))
    yt, ye = torch.as_tensor(y_train), torch.as_tensor(ds.y_test)
    try:
        model = build(x_train.shape[1:3], xt.shape[-1], specs, hidden, ds.n_classes, bn=args.bn, seed=args.seed,
                      pool=pool, binary=not args.float)
    except ValueError as e:
        pooled = f" with --pool {args.pool}" if pool else ""
        print(f"qat_conv: error: --conv {args.conv}{pooled} does not fit the images: {e}", file=sys.stderr)
        return 2
    freeze_filters(model, frozen)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    os.makedirs(args.out, exist_ok=True)
    rows, t0 = [], time.perf_counter()
    for epoch in range(args.epochs):
        order = np.random.default_rng([args.seed, epoch]).permutation(len(yt))
        loss, train_acc, seconds, _ = train_epoch(model, opt, xt, yt, args.batch_size, order, bf16=False,
                                                  per_step=False)
        rows.append({"epoch": epoch + 1, "loss": loss, "train_acc": train_acc, "epoch_time_s": seconds,
                     "test_acc": evaluate(model, xe, ye, bf16=False)})
        print(json.dumps(rows[-1]), flush=True)
    result = {"test_accuracy": rows[-1]["test_acc"], "epochs": rows, "bn": args.bn, "pool": sorted(pool),
              "float": args.float, "freeze_conv": sorted(frozen), "seed": args.seed, "lr": args.lr,
              "batch_size": args.batch_size, "conv": specs, "hidden": hidden, "encode": args.encode, "n_train": len(yt),
              "wall_time_s": time.perf_counter() - t0, "torch_version": torch.__version__,
              "torch_threads": torch.get_num_threads()}
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
