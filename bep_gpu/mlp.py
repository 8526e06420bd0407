"""The MLP as a training task: its state on the backend, one BEP step, prediction, checkpoint arrays."""
from __future__ import annotations

import numpy as np

from . import bep_mlp
from .backends.base import Backend


def init_hidden(shapes, init_std: float, seed: int, clip: int = 32767) -> list[np.ndarray]:
    """H = clip(round(N(0, s^2)), -C, C) per matrix, in order, from one seeded host generator."""
    rng = np.random.default_rng([int(seed), 7])
    return [np.clip(np.rint(rng.normal(0.0, init_std, size=s)), -clip, clip).astype(np.int16) for s in shapes]


class MLPTask:
    kind = "mlp"
    comm = None  # a data-parallel Communicator (set by the trainer when several processes train)

    def __init__(self, bk: Backend, sizes, hidden, prototypes, cfg):
        self.bk = bk
        self.sizes = [int(k) for k in sizes]
        self.hidden = [bk.asarray(h, dtype=bk.xp.int16) for h in hidden]
        self.prototypes_pm = np.asarray(prototypes, dtype=np.int8)
        self.prototypes = bk.pack(bk.asarray(self.prototypes_pm))
        self.rules = bep_mlp.StepRules.make(self.sizes, cfg.r, cfg.nu, cfg.hidden_clip, cfg.stability, cfg.freeze)
        self.seed = cfg.seed

    @staticmethod
    def shapes(n_in: int, cfg) -> list[tuple[int, int]]:
        sizes = [n_in] + [int(k) for k in cfg.hidden]
        return [(sizes[i + 1], sizes[i]) for i in range(len(sizes) - 1)]

    @property
    def fan_ins(self) -> list[int]:
        """Fan-in of each reinforced matrix, in reinforcement layer order."""
        return self.sizes[:-1]

    def step(self, x, labels, gammas, thresholds, step: int):
        return bep_mlp.train_step(self.bk, self.hidden, self.sizes, self.prototypes, x, labels, gammas,
                                  self.rules, thresholds, self.seed, step, comm=self.comm)

    def predict(self, x):
        weights = bep_mlp.visible_weights(self.bk, self.hidden)
        return bep_mlp.predict(self.bk, weights, self.sizes, self.prototypes, x)

    def logits(self, x):
        """The int32 readout (N, classes) for packed inputs x."""
        weights = bep_mlp.visible_weights(self.bk, self.hidden)
        return bep_mlp.logits(self.bk, weights, self.sizes, self.prototypes, x)

    def hidden_arrays(self) -> dict[str, np.ndarray]:
        return {str(i): self.bk.to_numpy(h) for i, h in enumerate(self.hidden)}

    @staticmethod
    def hidden_from_checkpoint(data: dict) -> list[np.ndarray]:
        from .checkpoint import mlp_hidden

        return mlp_hidden(data)

    @staticmethod
    def input_size(hidden: list[np.ndarray]) -> int:
        return int(hidden[0].shape[1])

    @staticmethod
    def sizes_from(hidden) -> list[int]:
        return [int(hidden[0].shape[1])] + [int(h.shape[0]) for h in hidden]

    @staticmethod
    def widths_from(hidden) -> list[int]:
        return [int(h.shape[0]) for h in hidden]
