"""Input encodings of docs/ALGORITHM.md section 6: real-valued features -> int8 +-1 inputs, fitted on training data only.

Specs: "sign", "median", "quantile:Q", "thermometer:B". For sequences (N, T, F) every time step is encoded alike, giving
(N, T, F*B); the thresholds are fitted over all steps and samples. Thermometer output is feature-major: feature
f's B bits are contiguous, bit i being x > q_i with q_i the training quantile i/(B+1) (np.quantile's default,
linear method). With image=True one set of quantiles is fitted over all pixels (stored repeated per feature);
otherwise each feature gets its own. "median" is exactly "thermometer:1" under another name, and "quantile:Q" is
one bit at the training quantile Q instead of 1/2 (on images whose median pixel is the background the median bit
is the silhouette, and a higher quantile splits the ink instead).
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ..errors import UserError

SPECS_HELP = "sign, median, quantile:Q (0 < Q < 1) or thermometer:B (B a positive integer)"


class Encoder(ABC):
    """Maps x (N, F) or (N, T, F) to int8 +-1 of shape (N, n_out(F)) or (N, T, n_out(F))."""

    spec: str

    @abstractmethod
    def fit(self, x_train: np.ndarray) -> "Encoder":
        """Fit on the training inputs; returns self."""

    @abstractmethod
    def transform(self, x: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def n_out(self, n_features: int) -> int: ...

    @abstractmethod
    def state(self) -> dict[str, np.ndarray]:
        """Fitted arrays for the checkpoint (keys without prefix); from_state(spec, state()) rebuilds self."""

    @classmethod
    def from_state(cls, spec: str, state: dict[str, np.ndarray]) -> "Encoder":
        """The fitted encoder a checkpoint stored as its spec string and state() arrays."""
        enc = make_encoder(spec, image=False)
        if isinstance(enc, SignEncoder):
            return enc
        q = state.get("thresholds")
        if q is None or q.ndim != 2 or q.shape[1] != enc.bits or q.dtype.kind != "f":
            shape = None if q is None else q.shape
            raise UserError(f"encoder {spec}: stored thresholds have shape {shape}, expected (features, {enc.bits})")
        enc.thresholds = np.array(q, dtype=np.float64)
        return enc


class SignEncoder(Encoder):
    """x >= 0 -> +1, else -1 (for data already in +-1, or centred data). Nothing to fit."""

    spec = "sign"

    def fit(self, x_train: np.ndarray) -> "SignEncoder":
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x) >= 0).view(np.int8) * np.int8(2) - np.int8(1)

    def n_out(self, n_features: int) -> int:
        return n_features

    def state(self) -> dict[str, np.ndarray]:
        return {}


class ThermometerEncoder(Encoder):
    """B bits per feature at the training quantiles `levels` (default i/(B+1)); B = 1 is the median encoder."""

    def __init__(self, bits: int, image: bool, spec: str | None = None, levels: tuple[float, ...] | None = None):
        self.bits = bits
        self.image = image
        self.spec = spec or f"thermometer:{bits}"
        self.levels = np.arange(1, bits + 1) / (bits + 1) if levels is None else np.asarray(levels, np.float64)
        self.thresholds: np.ndarray | None = None  # (F, B) float64

    def fit(self, x_train: np.ndarray) -> "ThermometerEncoder":
        x = np.asarray(x_train)
        flat = x.reshape(-1, x.shape[-1])
        levels = self.levels
        if self.image:
            q = np.quantile(flat, levels)
            self.thresholds = np.tile(q, (flat.shape[1], 1))
        else:
            self.thresholds = np.ascontiguousarray(np.quantile(flat, levels, axis=0).T)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        if self.thresholds is None:
            raise RuntimeError("fit() the encoder before transform()")
        x = np.asarray(x)
        n_features = self.thresholds.shape[0]
        if x.shape[-1] != n_features:
            raise UserError(f"encoder {self.spec} was fitted on {n_features} features, the data has {x.shape[-1]}")
        above = x[..., None] > self.thresholds
        out = above.view(np.int8) * np.int8(2) - np.int8(1)
        return out.reshape(*x.shape[:-1], n_features * self.bits)

    def n_out(self, n_features: int) -> int:
        return n_features * self.bits

    def state(self) -> dict[str, np.ndarray]:
        if self.thresholds is None:
            raise RuntimeError("fit() the encoder before state()")
        return {"thresholds": self.thresholds.copy()}


def _parse_spec(spec: str) -> tuple[str, float]:
    """("sign", 1) | ("median", 1) | ("quantile", Q) | ("thermometer", B); UserError for anything else."""
    if not isinstance(spec, str):
        raise UserError(f"encoding must be a string ({SPECS_HELP}), not {spec!r}")
    if spec in ("sign", "median"):
        return spec, 1
    kind, sep, arg = spec.partition(":")
    if kind == "quantile" and sep:
        try:
            q = float(arg)
        except ValueError:
            q = 0.0
        if 0.0 < q < 1.0:
            return kind, q
        raise UserError(f"encoding {spec!r}: the quantile Q must be a number strictly between 0 and 1, "
                        "e.g. quantile:0.7")
    if kind == "thermometer" and sep:
        try:
            bits = int(arg)
        except ValueError:
            bits = 0
        if bits >= 1:
            return kind, bits
        raise UserError(f"encoding {spec!r}: the bit count B must be a positive integer, e.g. thermometer:8")
    raise UserError(f"unknown encoding {spec!r}; use {SPECS_HELP}")


def make_encoder(spec: str, image: bool) -> Encoder:
    """An unfitted encoder for spec; image=True fits one global threshold set over all features."""
    kind, arg = _parse_spec(spec)
    if kind == "sign":
        return SignEncoder()
    if kind == "quantile":
        return ThermometerEncoder(1, image, spec=f"quantile:{arg:g}", levels=(arg,))
    bits = int(arg)
    return ThermometerEncoder(bits, image, spec="median" if kind == "median" else f"thermometer:{bits}")
