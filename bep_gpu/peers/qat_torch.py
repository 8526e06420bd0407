"""Quantization-aware training (QAT) baseline for BEP: what practitioners use instead (Larq + Adam style).

Binary weights and activations in the forward pass; latent fp32 weights, the straight-through estimator and Adam
in the backward pass. The architectures match BEP's (docs/ALGORITHM.md sections 2, 7, 9): no biases, sign(0) = +1, the
same fixed +-1 prototype readout, s_0 = +1 for the RNN. `--bn` adds BatchNorm1d before every sign.

    python -m bep_gpu.peers.qat_torch mlp --dataset prototypes --hidden 525,525 --epochs 50 --bn --out DIR

Needs PyTorch (the optional extra `[baselines]`: pip install 'bep-gpu[baselines]').
Only stable torch APIs are used, so torch 2.11+ on CUDA and 2.13 on CPU behave alike.

Choices, and why:
- Activation STE is Larq's `ste_sign`: forward sign, gradient 1 where |x| <= 1 else 0. Without BN the integer
  pre-activations are mostly far outside [-1, 1], so few units pass gradient: that is the baseline as practitioners
  would run it, and the reason it needs BN.
- Weights: sign of latent fp32 weights (Glorot-uniform init, Larq's default), clipped to [-1, 1] after every Adam
  step (Larq's `weight_clip`).
- Readout `prototypes` (default): logits = P a_L with BEP's fixed prototypes, so the baseline differs from BEP only
  in how it trains. Cross-entropy on logits * `logit_scale`, default 1/sqrt(K_L): P a_L is in [-K_L, K_L] and a
  random a_L gives logits of size ~sqrt(K_L), so the scale keeps the softmax out of saturation at every width.
  Readout `linear`: a trainable binary (sign of latent) K_L -> C layer, same scale, still fully binary at inference.
- Data: bep_gpu's loaders and encoders, the default encoding of bep-train, and its fixed +-1 input expansion
  (`--expand`, the paper's RNN inputs). The validation split is default_rng(seed).permutation of the training set.
- BN (on by default): the stronger baseline, and how binary networks are trained in practice; at inference it
  amounts to a per-unit threshold, which BEP's networks do not have.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

STATE_BYTES_PER_WEIGHT = 16  # fp32 latent weight 4 + Adam m 4 + Adam v 4 (12 of state) + its gradient 4


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""


# ----------------------------------------------------------------------------------------------------------- model

class _SignSTE(torch.autograd.Function):
    """Forward sign with sign(0) = +1; backward passes the gradient where |x| <= 1 (Larq's ste_sign)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x.abs() <= 1)  # a bool mask: 1 byte per unit instead of keeping x
        return (x >= 0).to(x.dtype) * 2 - 1

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        return grad * inside.to(grad.dtype)


def sign_ste(x: torch.Tensor) -> torch.Tensor:
    return _SignSTE.apply(x)


class BinaryLinear(nn.Module):
    """y = sign(W_latent) a, no bias; W_latent is clipped to [-1, 1] by `clip_latent_` after each step."""

    def __init__(self, k_in: int, k_out: int):
        super().__init__()
        bound = math.sqrt(6.0 / (k_in + k_out))  # Glorot uniform, Larq's default kernel initializer
        self.weight = nn.Parameter(torch.empty(k_out, k_in).uniform_(-bound, bound))

    def binary_weight(self) -> torch.Tensor:
        return sign_ste(self.weight)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return F.linear(a, self.binary_weight())


class _Readout(nn.Module):
    """Scaled logits from the last binary layer: fixed prototypes P (C, K_L) or a trainable binary layer."""

    def __init__(self, kind: str, prototypes: np.ndarray, logit_scale: float):
        super().__init__()
        self.logit_scale = logit_scale
        if kind == "prototypes":
            self.register_buffer("prototypes", torch.as_tensor(prototypes, dtype=torch.float32))
            self.linear = None
        else:
            self.linear = BinaryLinear(prototypes.shape[1], prototypes.shape[0])

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        logits = self.linear(a) if self.linear is not None else F.linear(a, self.prototypes.to(a.dtype))
        return logits * self.logit_scale


class QATMLP(nn.Module):
    """a_l = sign(BN?(sign(W_l) a_{l-1})), logits = readout(a_L)."""

    def __init__(self, k_in, hidden, prototypes, *, bn, readout, logit_scale):
        super().__init__()
        widths = [k_in, *hidden]
        self.layers = nn.ModuleList(BinaryLinear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm1d(k) for k in hidden) if bn else None
        self.readout = _Readout(readout, prototypes, logit_scale)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            z = layer(a)
            if self.norms is not None:
                z = self.norms[i](z)
            a = sign_ste(z)
        return self.readout(a)


class QATRNN(nn.Module):
    """s_t = sign(BN?(W_xs a_t + W_ss s_{t-1})), s_0 = +1; s_y = sign(BN?(W_sy s_T)); logits = readout(s_y).

    Trained by backpropagation through time with the STE. One BatchNorm1d serves all time steps of the cell.
    """

    def __init__(self, k_in, ks, ky, prototypes, *, bn, readout, logit_scale):
        super().__init__()
        self.xs, self.ss, self.sy = BinaryLinear(k_in, ks), BinaryLinear(ks, ks), BinaryLinear(ks, ky)
        self.norm_s = nn.BatchNorm1d(ks) if bn else None
        self.norm_y = nn.BatchNorm1d(ky) if bn else None
        self.readout = _Readout(readout, prototypes, logit_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (N, T, Kx)
        zx = self.xs(x)  # the input part of every step in one matmul
        w_ss = self.ss.binary_weight()
        s = torch.ones(x.shape[0], w_ss.shape[0], dtype=zx.dtype, device=x.device)
        for t in range(x.shape[1]):
            z = zx[:, t] + F.linear(s, w_ss)
            if self.norm_s is not None:
                z = self.norm_s(z)
            s = sign_ste(z)
        zy = self.sy(s)
        if self.norm_y is not None:
            zy = self.norm_y(zy)
        return self.readout(sign_ste(zy))


def clip_latent_(model: nn.Module) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, BinaryLinear):
                m.weight.clamp_(-1.0, 1.0)


def binary_weight_count(model: nn.Module) -> int:
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, BinaryLinear))


def make_readout_prototypes(n_classes: int, k: int, seed: int) -> tuple[np.ndarray, str]:
    """BEP's prototypes (binary equiangular frame) when bep_gpu.prototypes exists, else seeded random +-1 rows."""
    try:
        from bep_gpu.prototypes import make_prototypes
    except ImportError:
        rows = np.where(np.random.default_rng(seed).random((n_classes, k)) < 0.5, -1, 1).astype(np.int8)
        return rows, "random"
    return np.asarray(make_prototypes(n_classes, k, seed), dtype=np.int8), "bep_gpu.prototypes.make_prototypes"


def build_model(kind, k_in, hidden, n_classes, *, bn, readout, logit_scale, seed):
    """Seeded model; `hidden` is the MLP widths, or [Ks, Ky] for the RNN. Returns (model, prototype source)."""
    torch.manual_seed(seed)
    k_last = hidden[-1]
    prototypes, source = make_readout_prototypes(n_classes, k_last, seed)
    scale = 1.0 / math.sqrt(k_last) if logit_scale is None else logit_scale
    if kind == "mlp":
        model = QATMLP(k_in, hidden, prototypes, bn=bn, readout=readout, logit_scale=scale)
    else:
        model = QATRNN(k_in, hidden[0], hidden[1], prototypes, bn=bn, readout=readout, logit_scale=scale)
    return model, source if readout == "prototypes" else "trained (linear readout)"


# -------------------------------------------------------------------------------------------------------- training

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_epoch(model, opt, x, y, batch_size, order, *, bf16, per_step=True):
    """One pass over x[order] (x int8 +-1 on the model's device). Returns loss, accuracy, time, per-step times.

    per_step=False: no device synchronisation between steps (and no per-step times), as an epoch runs when only
    its total time is wanted; on CUDA a sync per step keeps the host from queueing ahead."""
    device = x.device
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    step_times = []
    order = torch.as_tensor(order, device=device)
    _sync(device)
    t_epoch = time.perf_counter()
    for start in range(0, len(order), batch_size):
        t0 = time.perf_counter()
        idx = order[start:start + batch_size]
        xb, yb = x[idx].float(), y[idx]
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(xb)
        loss = F.cross_entropy(logits.float(), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        clip_latent_(model)
        with torch.no_grad():
            loss_sum += loss.detach() * len(idx)
            correct += (logits.argmax(1) == yb).sum()
        if per_step:
            _sync(device)
            step_times.append(time.perf_counter() - t0)
    _sync(device)
    elapsed = time.perf_counter() - t_epoch
    n = len(order)
    return loss_sum.item() / n, correct.item() / n, elapsed, step_times


@torch.no_grad()
def evaluate(model, x, y, *, bf16, batch_size=1000) -> float:
    """Accuracy in eval mode (BN uses running statistics); argmax takes the lowest index on ties, as BEP does."""
    if len(y) == 0:
        return float("nan")
    model.eval()
    correct = 0
    for start in range(0, len(y), batch_size):
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x[start:start + batch_size].float())
        correct += (logits.float().argmax(1) == y[start:start + batch_size]).sum().item()
    return correct / len(y)


def time_qat_step(kind: str, k_in: int, hidden, *, n_classes: int = 10, seq_len: int = 28, batch_size: int = 100,
                  n_samples: int = 10000, device: str = "cpu", bf16: bool = False, bn: bool = False,
                  readout: str = "prototypes", warmup: int = 3, seed: int = 0) -> dict:
    """Time QAT training on random +-1 data for a given shape, for the performance tables.

    kind "mlp": inputs (n_samples, k_in), hidden = MLP widths; kind "rnn": inputs (n_samples, seq_len, k_in),
    hidden = [Ks, Ky]. Runs `warmup` steps, then one epoch of n_samples. step_time_s is the median step of that
    epoch (each step synchronised on CUDA). peak_memory_bytes is torch.cuda.max_memory_allocated (None on CPU).
    """
    hidden = [int(k) for k in hidden]
    if kind not in ("mlp", "rnn") or (kind == "rnn" and len(hidden) != 2):
        raise ValueError("kind must be 'mlp' (hidden = widths) or 'rnn' (hidden = [Ks, Ky])")
    dev = torch.device(device)
    model, _ = build_model(kind, k_in, hidden, n_classes, bn=bn, readout=readout, logit_scale=None, seed=seed)
    model.to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    shape = (n_samples, k_in) if kind == "mlp" else (n_samples, seq_len, k_in)
    x = (torch.randint(0, 2, shape, generator=gen, dtype=torch.int8) * 2 - 1).to(dev)
    y = torch.randint(0, n_classes, (n_samples,), generator=gen).to(dev)
    train_epoch(model, opt, x, y, batch_size, np.arange(min(n_samples, warmup * batch_size)), bf16=bf16)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    _, _, epoch_time, steps = train_epoch(model, opt, x, y, batch_size, np.arange(n_samples), bf16=bf16)
    n_weights = binary_weight_count(model)
    return {
        "kind": kind, "k_in": k_in, "hidden": hidden, "seq_len": seq_len if kind == "rnn" else None,
        "n_classes": n_classes, "batch_size": batch_size, "n_samples": n_samples, "device": str(dev),
        "bf16": bf16, "bn": bn, "readout": readout,
        "step_time_s": float(np.median(steps)), "epoch_time_s": epoch_time, "samples_per_s": n_samples / epoch_time,
        "peak_memory_bytes": torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else None,
        "n_binary_weights": n_weights, "state_bytes_per_weight": STATE_BYTES_PER_WEIGHT,
        "training_state_bytes": n_weights * STATE_BYTES_PER_WEIGHT,
        "torch_version": torch.__version__,
    }


# ------------------------------------------------------------------------------------------------------------ data

def _split(n_total, val_fraction, max_train, seed):
    """Indices (train, val) of the training set: a seeded permutation, capped at max_train, val taken first."""
    perm = np.random.default_rng(seed).permutation(n_total)
    if max_train is not None:
        perm = perm[:max_train]
    n_val = int(round(val_fraction * len(perm)))
    if len(perm) - n_val < 1:
        raise UsageError(f"no training samples left after taking a validation fraction of {val_fraction}")
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def prepare_data(args):
    """Load, split and encode. Returns a dict of int8 +-1 arrays (x_*) and int64 labels (y_*) plus metadata."""
    from bep_gpu.data import load_dataset, make_encoder
    from bep_gpu.rnn import ExpandedEncoder  # the same fixed +-1 input expansion as BEP's --expand
    from bep_gpu.trainer import default_encoding  # the same default encoding as bep-train

    sequence = args.kind == "rnn"
    ds = load_dataset(args.dataset, data_dir=args.data_dir, data_seed=args.data_seed, sequence=sequence,
                      window=args.window)
    x_all, x_test = np.asarray(ds.x_train), np.asarray(ds.x_test)
    if sequence:
        if x_all.ndim == 2:  # a univariate series per row
            x_all, x_test = x_all[..., None], x_test[..., None]
        if x_all.ndim != 3:
            raise UsageError(f"rnn needs sequences shaped (N, T, F); dataset {args.dataset!r} gives {x_all.shape}")
    else:
        x_all, x_test = x_all.reshape(len(x_all), -1), x_test.reshape(len(x_test), -1)
    train_idx, val_idx = _split(len(x_all), args.val_fraction, args.max_train, args.seed)
    encode = args.encode or default_encoding(ds)
    encoder = make_encoder(encode, ds.image)
    if args.expand:
        encoder = ExpandedEncoder(encoder, args.expand, args.seed)
    n_feat = x_all.shape[-1]

    def flat(a):  # the encoder works per feature over rows; time steps are rows too
        return a.reshape(-1, n_feat)

    encoder.fit(flat(x_all[train_idx]))

    def enc(a):
        e = np.asarray(encoder.transform(flat(a)), dtype=np.int8)
        return e.reshape(a.shape[:-1] + (e.shape[-1],))

    y_all = np.asarray(ds.y_train, dtype=np.int64)
    return {
        "x_train": enc(x_all[train_idx]), "y_train": y_all[train_idx],
        "x_val": enc(x_all[val_idx]), "y_val": y_all[val_idx],
        "x_test": enc(x_test), "y_test": np.asarray(ds.y_test, dtype=np.int64),
        "n_classes": int(ds.n_classes), "encode": encode,
    }


# ------------------------------------------------------------------------------------------------------------- CLI

class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of argparse's usage block
        raise UsageError(message)


def _widths(text: str) -> list[int]:
    try:
        widths = [int(k) for k in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated widths like 525,525, got {text!r}") from None
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"widths must be positive integers, got {text!r}")
    return widths


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="qat_torch.py", description="QAT (latent weights + STE + Adam) baseline for BEP.")
    p.add_argument("kind", choices=["mlp", "rnn"])
    p.add_argument("--dataset", required=True, help="prototypes, fashion-mnist, digits, npz:PATH, ucr:NAME, ...")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--window", type=int, default=None, help="keep only the last WINDOW steps of a sequence")
    p.add_argument("--hidden", type=_widths, default=None,
                   help="mlp: widths (default 525,525); rnn: KS[,KY] (default 1035, KY = KS)")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--bn", action=argparse.BooleanOptionalAction, default=True,
                   help="BatchNorm1d before each sign (default on)")
    p.add_argument("--readout", choices=["prototypes", "linear"], default="prototypes")
    p.add_argument("--logit-scale", type=float, default=None, help="default 1/sqrt(K_L)")
    p.add_argument("--encode", default=None, help="sign|median|quantile:Q|thermometer:B (default as bep-train: "
                                                  "thermometer:8 for sequences, sign for +-1 data, else median)")
    p.add_argument("--expand", type=int, default=0, help="inputs sign(E b) through a fixed seeded +-1 matrix E to "
                                                         "this many bits, as bep-train --expand (0 = off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--max-train", type=int, default=None)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA only)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--quiet", action="store_true")
    return p


def _check(args) -> None:
    if args.hidden is None:
        args.hidden = [525, 525] if args.kind == "mlp" else [1035]
    if args.kind == "rnn":
        if len(args.hidden) > 2:
            raise UsageError(f"rnn takes --hidden KS[,KY], got {len(args.hidden)} widths")
        if len(args.hidden) == 1:
            args.hidden = [args.hidden[0], args.hidden[0]]
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    if not args.lr > 0:
        raise UsageError("--lr must be positive")
    if args.logit_scale is not None and not args.logit_scale > 0:
        raise UsageError("--logit-scale must be positive")
    if not 0 <= args.val_fraction < 1:
        raise UsageError("--val-fraction must be in [0, 1)")
    if args.max_train is not None and args.max_train < 1:
        raise UsageError("--max-train must be at least 1")
    if args.expand < 0:
        raise UsageError("--expand must be >= 0")
    if args.threads < 0:
        raise UsageError("--threads must be >= 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: this torch build sees no CUDA device")
    if args.bf16 and args.device != "cuda":
        raise UsageError("--bf16 needs --device cuda")


def run(args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    data = prepare_data(args)
    device = torch.device(args.device)
    model, proto_source = build_model(args.kind, data["x_train"].shape[-1], args.hidden, data["n_classes"],
                                      bn=args.bn, readout=args.readout, logit_scale=args.logit_scale,
                                      seed=args.seed)
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    t = {k: torch.as_tensor(v, device=device) for k, v in data.items() if k[:2] in ("x_", "y_")}
    n_train = len(data["y_train"])

    os.makedirs(args.out, exist_ok=True)
    config = {k: v for k, v in vars(args).items()}
    config.update(encode=data["encode"], k_in=int(data["x_train"].shape[-1]), n_classes=data["n_classes"],
                  n_train=n_train, n_val=len(data["y_val"]), n_test=len(data["y_test"]),
                  logit_scale=model.readout.logit_scale, prototypes=proto_source, optimizer="Adam",
                  ste="ste_sign (grad 1 where |x| <= 1)", latent_clip=1.0, init="glorot_uniform",
                  seq_len=int(data["x_train"].shape[1]) if args.kind == "rnn" else None,
                  n_binary_weights=binary_weight_count(model), torch_version=torch.__version__,
                  torch_threads=torch.get_num_threads(), backend="torch")
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)

    fields = ["epoch", "train_loss", "train_acc", "val_acc", "test_acc", "epoch_time_s", "samples_per_s"]
    rows, all_steps = [], []
    best_val, best_epoch = -1.0, None
    t_start = time.perf_counter()
    with open(os.path.join(args.out, "metrics.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for epoch in range(args.epochs):
            order = np.random.default_rng([args.seed, epoch]).permutation(n_train)
            loss, acc, elapsed, steps = train_epoch(model, opt, t["x_train"], t["y_train"], args.batch_size, order,
                                                    bf16=args.bf16)
            all_steps += steps
            val = evaluate(model, t["x_val"], t["y_val"], bf16=args.bf16)
            test = evaluate(model, t["x_test"], t["y_test"], bf16=args.bf16)
            row = {"epoch": epoch, "train_loss": round(loss, 6), "train_acc": round(acc, 6),
                   "val_acc": "" if math.isnan(val) else round(val, 6), "test_acc": round(test, 6),
                   "epoch_time_s": round(elapsed, 4), "samples_per_s": round(n_train / elapsed, 1)}
            writer.writerow(row)
            f.flush()
            rows.append(row)
            if not math.isnan(val) and val > best_val:
                best_val, best_epoch = val, epoch
            if not args.quiet:
                val_text = "-" if math.isnan(val) else f"{100 * val:.2f}%"
                print(f"epoch {epoch + 1}/{args.epochs} loss {loss:.4f} train {100 * acc:.2f}% val {val_text} "
                      f"test {100 * test:.2f}% {elapsed:.1f}s {n_train / elapsed:.0f} samples/s", flush=True)
    wall = time.perf_counter() - t_start
    train_time = sum(r["epoch_time_s"] for r in rows)
    results = {
        "test_accuracy": rows[-1]["test_acc"],
        "best_val_accuracy": best_val if best_epoch is not None else None,
        "best_val_epoch": best_epoch,
        "test_accuracy_at_best_val": rows[best_epoch]["test_acc"] if best_epoch is not None else None,
        "final_train_accuracy": rows[-1]["train_acc"],
        "epochs": args.epochs,
        "wall_time_s": round(wall, 3),
        "samples_per_s": round(n_train * args.epochs / train_time, 1),
        "step_time_s": float(np.median(all_steps)),
        "backend": "torch", "device": str(device), "torch_version": torch.__version__,
    }
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    return results


def main(argv=None) -> int:
    from bep_gpu.errors import UserError

    try:
        args = build_parser().parse_args(argv)
        _check(args)
        run(args)
    except (UsageError, UserError, FileNotFoundError) as e:
        print(f"qat_torch.py: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
