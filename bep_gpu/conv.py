"""The binary convnet as a training task (same interface as MLPTask): conv layers, dense layers, prototype readout.

The geometry comes from the config: `conv` ([C_out, k, stride, pad] per layer) and `image_shape` ([H, W], set
by the trainer from the data); channels and kernel sizes are also read from the hidden arrays, which must agree.
"""
from __future__ import annotations

import numpy as np

from . import bep_conv
from .backends.base import Backend
from .errors import UserError
from .mlp import MLPTask


def conv_specs(hidden, cfg) -> list[list[int]]:
    """[C_out, k, stride, pad(, pool)] of each conv array of hidden (stride, padding and pooling from cfg.conv);
    UserError when the arrays and --conv disagree."""
    convs = [h for h in hidden if h.ndim == 4]
    if len(convs) != len(cfg.conv) or any(h.ndim != 4 for h in hidden[:len(convs)]):
        raise UserError(f"the checkpoint holds {len(convs)} conv layers first, --conv gives {len(cfg.conv)}; "
                        "give one C:K:S:P per conv layer")
    out = []
    for i, (h, spec) in enumerate(zip(convs, cfg.conv)):
        if h.shape[1] != h.shape[2] or list(h.shape[:2]) != [int(v) for v in spec[:2]]:
            raise UserError(f"hidden.{i} has shape {h.shape}, --conv says {spec[0]} filters of {spec[1]}x{spec[1]}")
        out.append([int(h.shape[0]), int(h.shape[1])] + [int(v) for v in spec[2:]])
    return out


def geometries(cfg, c_in: int) -> list[bep_conv.ConvGeometry]:
    if not cfg.image_shape:
        raise UserError("conv model: the config gives no image_shape (H, W); train it with bep-train conv")
    try:
        return bep_conv.geometries(list(cfg.image_shape) + [c_in], cfg.conv)
    except ValueError as e:
        raise UserError(f"--conv: {e}") from None


class ConvTask(MLPTask):
    """hidden = conv arrays (C_out, k, k, C_in), then dense (K_out, K_in); sizes = [C_in, C_1, ..., K_L];
    gammas: one per trainable layer in forward order."""

    kind = "conv"

    def __init__(self, bk: Backend, sizes, hidden, prototypes, cfg):
        self.bk = bk
        self.sizes = [int(k) for k in sizes]
        self.geoms = geometries(cfg, self.sizes[0])
        n_conv = len(self.geoms)
        for i, (h, g) in enumerate(zip(hidden, self.geoms)):
            if h.shape != (g.c_out, g.k, g.k, g.c_in):
                raise UserError(f"hidden.{i} has shape {h.shape}, the conv layer needs {(g.c_out, g.k, g.k, g.c_in)}")
        dense = hidden[n_conv:]
        if not dense or any(h.ndim != 2 for h in dense):
            raise UserError("a conv net needs at least one dense layer after its conv layers (--hidden)")
        flat = bep_conv.flat_size(self.geoms)
        if dense[0].shape[1] != flat:
            g = self.geoms[-1]
            raise UserError(f"hidden.{n_conv} takes {dense[0].shape[1]} inputs, the last conv map gives "
                            f"{g.h_out}x{g.w_out}x{g.c_out} = {flat}; check --conv and the image size")
        self.dense_sizes = [int(h.shape[0]) for h in dense]
        self.hidden = [bk.asarray(h, dtype=bk.xp.int16) for h in hidden]
        self.prototypes_pm = np.asarray(prototypes, dtype=np.int8)
        self.prototypes = bk.pack(bk.asarray(self.prototypes_pm))
        self.rules = bep_conv.step_rules(self.geoms, self.dense_sizes, cfg.r, cfg.nu, cfg.hidden_clip, cfg.freeze,
                                         cfg.stability)
        self.tile = int(cfg.conv_tile)
        self.seed = cfg.seed

    @staticmethod
    def shapes(n_in: int, cfg) -> list[tuple[int, ...]]:
        geoms = geometries(cfg, n_in)
        widths = [bep_conv.flat_size(geoms)] + [int(k) for k in cfg.hidden]
        return ([(g.c_out, g.k, g.k, g.c_in) for g in geoms]
                + [(widths[i + 1], widths[i]) for i in range(len(widths) - 1)])

    @property
    def fan_ins(self) -> list[int]:
        """k k C_in of each conv layer, then the dense layers' K_in (reinforcement layer order)."""
        return bep_conv.fan_ins(self.geoms, self.dense_sizes)

    def step(self, x, labels, gammas, thresholds, step: int):
        return bep_conv.train_step(self.bk, self.hidden, self.geoms, self.dense_sizes, self.prototypes, x, labels,
                                   gammas, self.tile, self.rules, thresholds, self.seed, step, comm=self.comm)

    def predict(self, x):
        weights = bep_conv.visible_weights(self.bk, self.hidden)
        return bep_conv.predict(self.bk, weights, self.geoms, self.dense_sizes, self.prototypes, x)

    def logits(self, x):
        """The int32 readout (N, classes) for packed maps x."""
        weights = bep_conv.visible_weights(self.bk, self.hidden)
        return bep_conv.logits(self.bk, weights, self.geoms, self.dense_sizes, self.prototypes, x)

    @staticmethod
    def input_size(hidden) -> int:
        """Channels of the input map."""
        return int(hidden[0].shape[-1])

    @staticmethod
    def sizes_from(hidden) -> list[int]:
        return [int(hidden[0].shape[-1])] + [int(h.shape[0]) for h in hidden]

    @staticmethod
    def widths_from(hidden) -> list[int]:
        """--hidden: the dense layers' widths."""
        return [int(h.shape[0]) for h in hidden if h.ndim == 2]
