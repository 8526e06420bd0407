"""The recurrent network as a training task (same interface as MLPTask), and the paper's fixed input expansion."""
from __future__ import annotations

import numpy as np

from . import bep_rnn
from .backends.base import Backend
from .checkpoint import RNN_KEYS
from .data.encoders import Encoder
from .errors import UserError
from .mlp import MLPTask

NAMES = tuple(k[len("hidden."):] for k in RNN_KEYS)  # xs, ss, sy
_PREDICT_ROWS = 1 << 14  # time steps x samples per forward in predict: bounds the (T, B, Ks) int32 buffer
_EXPAND_STREAM = 0x45585041  # "EXPA": keeps the expansion's draws apart from init's and the splits'


class RNNTask(MLPTask):
    """H_xs, H_ss, H_sy on the backend; sizes = [Kx, Ks, Ky]; gammas = [cell, readout]."""

    kind = "rnn"

    def __init__(self, bk: Backend, sizes, hidden, prototypes, cfg):
        super().__init__(bk, sizes, hidden, prototypes, cfg)
        self.rules = bep_rnn.step_rules(self.sizes, cfg.r, cfg.nu, cfg.hidden_clip, cfg.freeze)
        self.horizon = int(cfg.horizon)
        self.shared_mask = cfg.rnn_mask == "shared"

    @staticmethod
    def shapes(n_in: int, cfg) -> list[tuple[int, int]]:
        ks = int(cfg.hidden[0])
        ky = int(cfg.hidden[1]) if len(cfg.hidden) > 1 else ks
        return [(ks, n_in), (ks, ks), (ky, ks)]

    @property
    def fan_ins(self) -> list[int]:
        """Kx, Ks, Ks: the fan-ins of H_xs, H_ss, H_sy (reinforcement layers 0, 1, 2)."""
        return [self.sizes[0], self.sizes[1], self.sizes[1]]

    def step(self, x, labels, gammas, thresholds, step: int):
        return bep_rnn.train_step(self.bk, self.hidden, self.sizes, self.prototypes, x, labels, gammas, self.rules,
                                  self.horizon, self.shared_mask, thresholds, self.seed, step, comm=self.comm)

    def predict(self, x):
        """Predictions for packed inputs (N, T, n_words(Kx)), in chunks of about _PREDICT_ROWS step-rows."""
        return self._chunked(bep_rnn.predict, x)

    def logits(self, x):
        return self._chunked(bep_rnn.logits, x)

    def _chunked(self, fn, x):
        weights = bep_rnn.visible_weights(self.bk, self.hidden)
        chunk = max(1, _PREDICT_ROWS // max(1, x.shape[1]))
        return self.bk.xp.concatenate([fn(self.bk, weights, self.sizes, self.prototypes, x[i:i + chunk])
                                       for i in range(0, x.shape[0], chunk)])

    def hidden_arrays(self) -> dict[str, np.ndarray]:
        return {name: self.bk.to_numpy(h) for name, h in zip(NAMES, self.hidden)}

    @staticmethod
    def hidden_from_checkpoint(data: dict) -> list[np.ndarray]:
        return [data[k] for k in RNN_KEYS]

    @staticmethod
    def sizes_from(hidden) -> list[int]:
        xs, _, sy = hidden
        return [int(xs.shape[1]), int(xs.shape[0]), int(sy.shape[0])]

    @staticmethod
    def widths_from(hidden) -> list[int]:
        """--hidden KS,KY of these matrices."""
        return [int(hidden[0].shape[0]), int(hidden[2].shape[0])]


class ExpandedEncoder(Encoder):
    """The paper's fixed +-1 expansion of the encoded inputs: per time step sign(E b), sign(0) = +1, for the
    inner encoder's bits b (D of them) and E a seeded random +-1 matrix (n x D) drawn at fit time.

    Without it a series of one feature gives the cell Kx = B inputs against Ks recurrent ones, so the input could
    barely move z_t. Computed once on the host; E is stored in the checkpoint (encoder.expand) so that resume and
    evaluation redo exactly the same inputs.
    """

    def __init__(self, inner: Encoder, n: int, seed: int = 0, matrix: np.ndarray | None = None):
        self.inner = inner
        self.spec = inner.spec
        self.n = int(n)
        self.seed = int(seed)
        self.matrix = None if matrix is None else np.asarray(matrix, dtype=np.int8)

    def fit(self, x_train: np.ndarray) -> "ExpandedEncoder":
        self.inner.fit(x_train)
        d = self.inner.n_out(np.asarray(x_train).shape[-1])
        rng = np.random.default_rng([self.seed, _EXPAND_STREAM])
        self.matrix = (rng.integers(0, 2, size=(self.n, d), dtype=np.int8) * np.int8(2) - np.int8(1))
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        b = self.inner.transform(x)
        flat = b.reshape(-1, b.shape[-1])
        e = self.matrix.T.astype(np.float32)
        out = np.empty((len(flat), self.n), dtype=np.int8)
        for i in range(0, len(flat), 1 << 15):  # float32 is exact here (|sum| <= D < 2^24); chunks bound memory
            out[i:i + (1 << 15)] = np.where(flat[i:i + (1 << 15)].astype(np.float32) @ e >= 0, 1, -1)
        return out.reshape(*b.shape[:-1], self.n)

    def n_out(self, n_features: int) -> int:
        return self.n

    def state(self) -> dict[str, np.ndarray]:
        return {**self.inner.state(), "expand": self.matrix.copy()}

    @classmethod
    def wrap(cls, inner: Encoder, state: dict) -> Encoder:
        """inner with the expansion a checkpoint's encoder state holds, or inner itself if it holds none."""
        m = state.get("expand")
        if m is None:
            return inner
        if m.ndim != 2 or not np.isin(m, (-1, 1)).all():
            raise UserError(f"checkpoint: encoder.expand must be a +-1 matrix, found shape {m.shape}")
        return cls(inner, m.shape[0], matrix=m)
