"""Estimators in scikit-learn's shape: MLPClassifier, RNNClassifier and ConvClassifier train with BEP from Python,
in memory.

The keyword arguments are the training settings, named as in TrainConfig (docs/CLI.md lists them beside their
flags); __init__ only stores them, so get_params, set_params and clone work with or without scikit-learn. fit
validates, trains (no files unless `out` is given) and sets the fitted attributes ending in `_`. A new model kind
is a subclass that names its kind, its defaults and how its input arrays map to the trainer's:

    class ConvClassifier(BEPClassifier):
        kind = "conv"
        __init__ = make_init("conv", CONV_DEFAULTS)
        input_shapes = "images (N, H, W[, C])"
        def as_trainer_input(self, x): ...
"""
from __future__ import annotations

import contextlib
import inspect
import re
import warnings
from dataclasses import fields

import numpy as np

from . import checkpoint as ckpt
from .config import CONV_DEFAULTS, RNN_DEFAULTS, TrainConfig
from .data.dataset import Dataset, index_labels
from .errors import UserError


class NotFittedError(ValueError, AttributeError):
    """predict (or another method that needs a model) called before fit; scikit-learn's exception has these bases."""


def _sklearn(name: str, fallback):
    """scikit-learn's exception or warning class `name` when it is installed (so that its checks recognise
    ours), else fallback; imported only when one is raised."""
    try:
        from sklearn import exceptions
    except ImportError:
        return fallback
    return getattr(exceptions, name)


# TrainConfig fields that are not estimator parameters: where data, checkpoints and processes come from.
NOT_PARAMETERS = {"kind", "dataset", "data_dir", "data_seed", "init", "resume", "max_train", "plot", "overwrite",
                  "distributed", "dist_timeout", "image_shape"}
# Parameters only some kinds take: name -> those kinds.
KIND_ONLY = {**dict.fromkeys(("horizon", "rnn_mask", "window", "expand"), ("rnn",)),
             **dict.fromkeys(("conv", "conv_tile"), ("conv",)), "augment": ("mlp", "conv")}
# Estimators default to silence (scikit-learn's verbose=0) and to training in memory.
ESTIMATOR_DEFAULTS = {"quiet": True, "out": None}


def parameters(kind: str, defaults: dict) -> dict:
    """name -> default of an estimator of this kind: TrainConfig's fields and defaults, overridden by defaults."""
    cfg = TrainConfig(kind=kind, **{**defaults, **ESTIMATOR_DEFAULTS})
    out = {}
    for f in fields(TrainConfig):
        if f.name in NOT_PARAMETERS or kind not in KIND_ONLY.get(f.name, (kind,)):
            continue
        value = getattr(cfg, f.name)
        # immutable defaults (conv layers: a tuple of tuples)
        out[f.name] = tuple(tuple(v) if isinstance(v, list) else v for v in value) if isinstance(value, list) else value
    return out


def make_init(kind: str, defaults: dict):
    """An __init__ taking the parameters of `kind` as keyword arguments and storing them unchanged; its
    signature lists them, which is what scikit-learn's get_params reads."""
    params = parameters(kind, defaults)

    def __init__(self, **kwargs):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected keyword arguments {', '.join(unknown)}; "
                            f"parameters: {', '.join(params)}")
        for name, default in params.items():
            setattr(self, name, kwargs.get(name, default))

    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    __init__.__signature__ = inspect.Signature(
        [self_param] + [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=v) for n, v in params.items()])
    return __init__


def python_message(message: str, names) -> str:
    """A trainer message with its CLI flags (--gamma0, --batch-size) as the estimator's parameter names."""
    def name(m):
        if m.group(1) == "no-shuffle":
            return "shuffle=False"
        field = m.group(1).replace("-", "_")
        return field if field in names else m.group(0)

    return re.sub(r"--([a-z][a-z0-9-]*)", name, message)


class BEPClassifier:
    """What MLPClassifier and RNNClassifier share: parameters, fit in memory, prediction in the user's labels."""

    kind = "mlp"
    input_shapes = "(N, F)"
    _estimator_type = "classifier"

    # --- parameters (scikit-learn's BaseEstimator protocol, without depending on it) -----------------------------
    @classmethod
    def _get_param_names(cls) -> list[str]:
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict:
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params):
        valid = self._get_param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"invalid parameter {name!r} for {type(self).__name__}; parameters: "
                                 f"{', '.join(valid)}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = inspect.signature(type(self).__init__).parameters
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if v != defaults[k].default]
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_tags__(self):
        from sklearn.utils import ClassifierTags, Tags, TargetTags

        return Tags(estimator_type="classifier", target_tags=TargetTags(required=True),
                    classifier_tags=ClassifierTags(poor_score=True))

    # --- input ---------------------------------------------------------------------------------------------------
    def _check_ndim(self, x: np.ndarray, dims) -> None:
        if x.ndim not in dims:
            raise ValueError(f"{type(self).__name__}: x must be {self.input_shapes}, got shape {x.shape}")

    def as_trainer_input(self, x: np.ndarray) -> tuple[np.ndarray, bool]:
        """x as the trainer takes it, and whether its features are pixels of one kind (image encoders)."""
        self._check_ndim(x, (2, 3, 4))
        return x.reshape(len(x), -1), x.ndim > 2

    def _check_x(self, x) -> np.ndarray:
        name = type(self).__name__
        if hasattr(x, "tocsr"):
            raise TypeError(f"{name}: sparse input is not supported; pass a dense array (x.toarray())")
        x = np.asarray(x)
        if x.dtype.kind == "O":
            try:
                x = x.astype(np.float64)
            except (TypeError, ValueError) as e:  # NumPy's TypeError: "argument must be a string or a number"
                raise type(e)(f"{name}: x must be numeric: {e}") from None
        if x.dtype.kind == "c":
            raise ValueError(f"{name}: Complex data not supported; x must be real")
        if x.dtype.kind not in "biuf":
            raise ValueError(f"{name}: x must be numeric, not {x.dtype}")
        if x.ndim < 2:
            raise ValueError(f"{name}: x must be {self.input_shapes}, got shape {x.shape}; Reshape your data "
                             "(x[:, None] for one feature, x[None] for one sample)")
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            raise ValueError(f"{name}: x contains NaN or inf")
        if 0 in x.shape[1:]:
            raise ValueError(f"{name}: x has 0 feature(s) (shape={x.shape}) while a minimum of 1 is required.")
        if len(x) == 0:
            raise ValueError(f"{name}: x has 0 sample(s) (shape={x.shape}) while a minimum of 1 is required.")
        return x

    # --- fit and predict -----------------------------------------------------------------------------------------
    def _config(self) -> TrainConfig:
        params = self.get_params()
        params["hidden"] = np.atleast_1d(params["hidden"]).tolist()  # plain ints: config.json is JSON
        for name in ("freeze", "gamma_milestones"):  # lists, checked (not rounded) by TrainConfig
            params[name] = np.atleast_1d(params[name]).tolist()
        if np.ndim(params["gamma0"]):  # one per layer (mlp, conv); TrainConfig refuses it elsewhere
            params["gamma0"] = np.asarray(params["gamma0"]).tolist()
        return TrainConfig(kind=self.kind, dataset=None, **params)

    @contextlib.contextmanager
    def _python_errors(self):
        try:
            yield
        except UserError as e:
            raise UserError(python_message(str(e), self._get_param_names())) from None

    def fit(self, x, y):
        """Train on x with labels y (any integers or strings: the classes are their distinct values); returns self."""
        from .model import Model
        from .trainer import Trainer

        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        x = self._check_x(x)
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            warnings.warn("A column-vector y was passed when a 1d array was expected; y.ravel() is used",
                          _sklearn("DataConversionWarning", UserWarning), stacklevel=2)
            y = y.ravel()
        if len(y) != len(x):
            raise ValueError(f"{type(self).__name__}: x has {len(x)} samples but y has {len(y)} labels")
        with self._python_errors():
            classes, y_index, _ = index_labels(type(self).__name__, y, {}, name="y")
            features, image = self.as_trainer_input(x)
            flat_image = image and features.ndim == 2  # the MLP's view of images; --augment needs their shape
            data = Dataset(f"fit(x of shape {x.shape})", features, y_index, None, None, len(classes), image,
                           classes, image_shape=(*x.shape[1:3], x.shape[3] if x.ndim == 4 else 1) if flat_image
                           else None)
            trainer = Trainer(self._config(), dataset=data)
            self.results_ = trainer.run()
        # with early stopping, the model of the best validation epoch (best.npz on disk)
        arrays = trainer.best if self.early_stop and trainer.best is not None else trainer.checkpoint_arrays()
        self._arrays = arrays
        self.model_ = Model(ckpt.check_checkpoint(dict(arrays), "fit"), "fit", trainer.bk.name)
        self.classes_ = classes
        self.n_features_in_ = int(np.prod(x.shape[1:]))  # values per sample (pixels x channels, steps x features)
        return self

    def _fitted(self):
        if not hasattr(self, "model_"):
            raise _sklearn("NotFittedError", NotFittedError)(
                f"this {type(self).__name__} is not fitted yet; call fit(x, y) first")
        return self.model_

    def _x(self, x):
        x = self._check_x(x)
        n_features = int(np.prod(x.shape[1:]))
        if n_features != self.n_features_in_:
            raise ValueError(f"X has {n_features} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input")
        return self.as_trainer_input(x)[0]

    def predict(self, x) -> np.ndarray:
        """The predicted labels (values of the y given to fit)."""
        model = self._fitted()
        with self._python_errors():
            return model.predict(self._x(x))

    def decision_function(self, x) -> np.ndarray:
        """The integer logits (N, n_classes) int32; columns follow classes_, predict is their argmax. With two
        classes, scikit-learn's convention: one column, logit of classes_[1] minus that of classes_[0] (> 0
        predicts classes_[1]; a tie predicts classes_[0], the lowest index, as the argmax does)."""
        model = self._fitted()
        with self._python_errors():
            logits = model.decision_function(self._x(x))
        return logits[:, 1] - logits[:, 0] if logits.shape[1] == 2 else logits

    def score(self, x, y, sample_weight=None) -> float:
        """Accuracy of predict(x) against y (weighted by sample_weight if given)."""
        pred = self.predict(x)
        return float(np.average(pred == np.asarray(y), weights=sample_weight))

    def save(self, path) -> None:
        """Write the fitted model as a checkpoint: bep_gpu.load(path), bep-eval --dataset, bep-export read it."""
        self._fitted()
        ckpt.write_checkpoint(str(path), self._arrays)


class MLPClassifier(BEPClassifier):
    """A binary MLP trained with BEP. x: (N, F), or images (N, H, W[, C]) (flattened; the median encoder then
    fits one threshold over all pixels). gamma0: one group size, or one per layer."""

    kind = "mlp"
    input_shapes = "(N, F) or images (N, H, W[, C])"
    __init__ = make_init("mlp", {"hidden": [525, 525]})


class RNNClassifier(BEPClassifier):
    """A binary recurrent network trained with BEP through time. x: series (N, T, F), or univariate (N, T)."""

    kind = "rnn"
    input_shapes = "series (N, T, F) or univariate series (N, T)"
    __init__ = make_init("rnn", RNN_DEFAULTS)

    def as_trainer_input(self, x):
        self._check_ndim(x, (2, 3))
        x = x[..., None] if x.ndim == 2 else x
        if self.window and not 1 <= self.window <= x.shape[1]:
            raise ValueError(f"{type(self).__name__}: window must be between 1 and the series length "
                             f"{x.shape[1]}, not {self.window}")
        return x, False


class ConvClassifier(BEPClassifier):
    """A fully binary convnet trained with BEP (conv layers, dense layers, prototype readout; docs/CONV.md).
    x: images (N, H, W) or (N, H, W, C); conv: (channels, kernel, stride, padding[, pool]) per conv layer (pool 2:
    2 x 2 majority pooling of its output); gamma0: one group size, or one per trainable layer."""

    kind = "conv"
    input_shapes = "images (N, H, W) or (N, H, W, C)"
    __init__ = make_init("conv", CONV_DEFAULTS)

    def as_trainer_input(self, x):
        self._check_ndim(x, (3, 4))
        return (x[..., None] if x.ndim == 3 else x), True

    def _config(self) -> TrainConfig:
        cfg = super()._config()
        cfg.conv = [list(layer) for layer in cfg.conv]
        return cfg


def clone(estimator):
    """A new unfitted estimator with the same parameters (scikit-learn's clone does the same)."""
    return type(estimator)(**estimator.get_params())
