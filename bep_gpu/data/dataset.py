"""The Dataset container and the checks every loader's output passes."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UserError


@dataclass
class Dataset:
    """A train/test pair. x is (N, F), or (N, T, F) for sequences (T steps of F features), or (N, H, W, C) for
    images of C channels; y is int64 0..C-1.

    image=True means the features are pixels of one kind, so the median and thermometer encoders fit one set of
    thresholds over all of them instead of one per feature.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    image: bool

    @property
    def n_features(self) -> int:
        """Features per sample, or per time step for a sequence."""
        return int(self.x_train.shape[-1])

    @property
    def is_sequence(self) -> bool:
        return self.x_train.ndim == 3

    @property
    def n_steps(self) -> int | None:
        return int(self.x_train.shape[1]) if self.is_sequence else None


def validate_dataset(ds: Dataset) -> None:
    """Raise UserError (one line, prefixed with the dataset's name) unless ds is usable for training."""

    def fail(what: str) -> None:
        raise UserError(f"dataset {ds.name}: {what}")

    for split in ("train", "test"):
        x = getattr(ds, f"x_{split}")
        y = getattr(ds, f"y_{split}")
        if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
            fail(f"x_{split} and y_{split} must be NumPy arrays")
        if x.dtype.kind not in "biuf":
            fail(f"x_{split} must be numeric, not {x.dtype}")
        if x.ndim not in (2, 3, 4):
            fail(f"x_{split} must be (N, F) or (N, T, F), or images (N, H, W, C), not shape {x.shape}")
        if y.ndim != 1 or y.dtype.kind not in "iu":
            fail(f"y_{split} must be a 1-D integer array, not {y.dtype} of shape {y.shape}")
        if len(x) != len(y):
            fail(f"x_{split} has {len(x)} samples but y_{split} has {len(y)} labels")
        if len(x) == 0:
            fail(f"the {split} set is empty")
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            fail(f"x_{split} contains NaN or inf")
        if y.min() < 0 or y.max() >= ds.n_classes:
            fail(f"y_{split} has labels outside 0..{ds.n_classes - 1} (min {y.min()}, max {y.max()})")
    if ds.x_train.shape[1:] != ds.x_test.shape[1:]:
        fail(f"x_train samples have shape {ds.x_train.shape[1:]} but x_test samples {ds.x_test.shape[1:]}")
    if ds.x_train.shape[-1] == 0:
        fail("samples have no features")
    if len(np.unique(ds.y_train)) < 2:
        fail("the training set holds fewer than 2 classes")
