"""The Dataset container and the checks every loader's output passes."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UserError


@dataclass
class Dataset:
    """A train/test pair. x is (N, F), or (N, T, F) for sequences (T steps of F features), or (N, H, W, C) for
    images of C channels; y is int64 0..C-1, indices into `classes`, the original label values (sorted integers or
    strings; default 0..C-1). x_test and y_test may be None (data handed to an estimator's fit has no test split).

    image=True means the features are pixels of one kind, so the median and thermometer encoders fit one set of
    thresholds over all of them instead of one per feature. image_shape: (H, W, C) of images held flattened as
    (N, H*W*C), the MLP's view of them, for --augment (4-D x carries its own shape).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    image: bool
    classes: np.ndarray | None = None
    image_shape: tuple | None = None

    def __post_init__(self):
        if self.classes is None:
            self.classes = np.arange(self.n_classes)

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

    for split in ("train", "test") if ds.x_test is not None else ("train",):
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
    if ds.x_test is not None and ds.x_train.shape[1:] != ds.x_test.shape[1:]:
        fail(f"x_train samples have shape {ds.x_train.shape[1:]} but x_test samples {ds.x_test.shape[1:]}")
    if ds.x_train.shape[-1] == 0:
        fail("samples have no features")
    if len(np.unique(ds.y_train)) < 2:
        fail("the training set holds fewer than 2 classes")


def format_labels(values, limit: int = 8) -> str:
    values = [str(v) for v in values]
    return ", ".join(values[:limit]) + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def index_labels(where: str, y_train: np.ndarray, others: dict,
                 name: str = "y_train") -> tuple[np.ndarray, np.ndarray, dict]:
    """The classes are the sorted distinct training labels (integers or strings); returns them, the training
    labels as int64 indices into them, and each array of `others` (name -> labels) likewise. A label of
    `others` that no training sample carries is a UserError: the model could never predict it."""
    classes, y_idx = np.unique(check_labels(where, name, y_train), return_inverse=True)
    if len(y_idx) == 0:
        raise UserError(f"{where}: the train set is empty")
    if len(classes) < 2:
        raise UserError(f"{where}: the training set holds fewer than 2 classes (one class: {classes[0]})")
    return classes, y_idx.astype(np.int64), {k: labels_to_indices(where, k, y, classes) for k, y in others.items()}


def check_labels(where: str, name: str, y) -> np.ndarray:
    """y as a 1-D array of integer or string labels (integral floats become integers); UserError otherwise."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise UserError(f"{where}: {name} must be 1-D labels, not shape {y.shape}")
    if y.dtype.kind == "O":  # labels from Python lists of str or int (in-memory data only: npz refuses objects)
        kinds = {type(v) for v in y}
        if kinds <= {str} or kinds <= {int}:
            y = np.array(y.tolist())
    if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        y = y.astype(np.int64)  # integral floats are labels saved through a float array
    if y.dtype.kind == "b":
        y = y.astype(np.int64)
    if y.dtype.kind == "f":
        raise UserError(f"{where}: Unknown label type: continuous; {name} must hold integer class labels (or "
                        f"strings), not non-integral {y.dtype}")
    if y.dtype.kind not in "iuUS":
        raise UserError(f"{where}: Unknown label type: {name} must hold integer class labels (or strings), "
                        f"not {y.dtype}")
    return y.astype(np.int64) if y.dtype.kind in "iu" else y


def labels_to_indices(where: str, name: str, y, classes: np.ndarray) -> np.ndarray:
    """Labels y as int64 indices into classes (in any order); UserError naming the labels it lacks."""
    y = check_labels(where, name, y)
    index = {v.item(): i for i, v in enumerate(np.asarray(classes))}
    values, inverse = np.unique(y, return_inverse=True)
    unknown = [v for v in values if v.item() not in index]
    if unknown:
        raise UserError(f"{where}: {name} holds labels the training labels lack ({format_labels(unknown)}); "
                        f"the classes are {format_labels(classes)}")
    return np.array([index[v.item()] for v in values], dtype=np.int64)[inverse.reshape(-1)]
