"""A trained checkpoint as a predictor: `bep_gpu.load(path)` -> Model, NumPy backend by default (no CuPy needed).

The network runs through the same task classes the trainer uses (MLPTask, RNNTask), so prediction here is the
trainer's prediction, bit for bit.
"""
from __future__ import annotations

import numpy as np

from . import checkpoint as ckpt
from .backends import get_backend
from .bits import n_words
from .config import TrainConfig
from .errors import UserError

OPS_NOTE = """\
Fwd ops: XNOR-popcount multiply-accumulates, K_out*K_in per use (one +-1 product added = one op).
Bwd ops, for a sample that triggers: target propagation sign(W^T (g*t)) through every matrix above the input
  (K_out*K_in masked products per use) plus the hidden-weight update (K_out*K_in +-2 int16 accumulations per
  use, dense as the backends compute it; only mask-selected units change)."""
RNN_NOTE = """\
Per use = per time step for the recurrent cell (hidden.xs, hidden.ss), once per sample for the readout. Per sample:
  the cell runs T steps forward; with horizon h (h = T by default) it is updated at h steps and passes targets
  back through W_ss^T h - 1 times (s_0 gets none)."""
CONV_NOTE = """\
Conv layers (shape C_out x k x k x C_in): one use per output position, H' x W' per sample; the padding (+1)
  counts as input. Every conv layer above the first passes targets to its input map."""


class Layer:
    """One matrix of the model, for the summary: shape, bytes, and how often each pass uses it per sample."""

    shape_text = None  # how the summary prints the shape, when not "out x in" (conv filters)

    def __init__(self, name: str, k_out: int, k_in: int, hidden: bool, fwd_uses, upd_uses, prop_uses):
        self.name, self.k_out, self.k_in = name, int(k_out), int(k_in)
        self.hidden = hidden  # has int16 hidden weights (the fixed prototypes do not)
        # uses per sample of the forward, the update and the target propagation; None where T is unknown
        self.fwd_uses, self.upd_uses, self.prop_uses = fwd_uses, upd_uses, prop_uses

    @property
    def macs(self) -> int:
        return self.k_out * self.k_in

    @property
    def packed_bytes(self) -> int:
        """Visible weights as the backends hold them: rows of uint64 words."""
        return self.k_out * n_words(self.k_in) * 8

    @property
    def hidden_bytes(self) -> int:
        return self.macs * 2 if self.hidden else 0

    @property
    def bwd_per_use(self) -> int:
        """Update plus, for a matrix that passes targets down, propagation: one time step / one sample."""
        return self.macs * (int(self.hidden) + int(self.prop_uses != 0))

    def per_sample(self) -> tuple[int | None, int | None]:
        if None in (self.fwd_uses, self.upd_uses, self.prop_uses):
            return None, None
        return self.macs * self.fwd_uses, self.macs * (self.upd_uses * int(self.hidden) + self.prop_uses)


class Model:
    """A checkpoint (MLP or RNN) ready to predict on raw features: its stored encoder, then the binary network."""

    def __init__(self, data: dict, path: str = "?", backend: str = "numpy"):
        from .trainer import Trainer, task_class

        self.path = path
        self.kind = str(data["kind"])
        self.config = TrainConfig.from_dict(data["config"])
        self.config.kind = self.kind
        self.trained_on = data["config"].get("dataset")  # None for a weights-only checkpoint
        # the trainer's own rebuild of the fitted encoder; a weights-only checkpoint (--init style) has none
        self.encoder = Trainer._encoder_from(data) if "encoder.spec" in data else None
        self.bk = get_backend(backend)
        Task = task_class(self.kind)
        hidden = Task.hidden_from_checkpoint(data)
        self.config.hidden = Task.widths_from(hidden)
        self.prototypes = np.asarray(data["prototypes"], dtype=np.int8)
        # the user's label values, one per prototype row (a weights-only checkpoint: 0..C-1)
        self.classes = np.asarray(data["classes"]) if "classes" in data else np.arange(len(self.prototypes))
        self.sizes = Task.sizes_from(hidden)
        self.n_inputs = Task.input_size(hidden)
        self.task = Task(self.bk, self.sizes, hidden, self.prototypes, self.config)
        self.hidden = {name: np.asarray(h) for name, h in self.task.hidden_arrays().items()}
        # Time steps per sample the RNN was trained on (config.json's n_steps, or its window); None if unknown.
        steps = (self.config.window or data["config"].get("n_steps")) if self.kind == "rnn" else None
        self.steps = int(steps) if steps else None

    @property
    def n_classes(self) -> int:
        return int(self.prototypes.shape[0])

    # --- prediction ------------------------------------------------------------------------------------------
    def encode(self, x) -> np.ndarray:
        """The stored encoder applied to raw features x -> int8 +-1. An MLP takes (N, F), or images (N, H, W[, C])
        flattened in C order; an RNN takes (N, T, F), or univariate series (N, T)."""
        if self.encoder is None:
            raise UserError(f"checkpoint {self.path} stores no encoder (weights only); "
                            "pass encoded +-1 inputs to predict_encoded")
        x = np.asarray(x)
        rnn = self.kind == "rnn"
        if self.kind == "conv":
            x = self._image_batch(x)
        elif x.ndim not in ((2, 3) if rnn else (2, 3, 4)):
            raise UserError(f"{self.kind} model: features must be "
                            f"{'(N, T, F) or (N, T)' if rnn else '(N, F) or images (N, H, W[, C])'}, "
                            f"got shape {x.shape}")
        elif rnn and x.ndim == 2:
            x = x[..., None]
        elif not rnn:
            x = x.reshape(len(x), -1)
        if x.dtype.kind not in "biuf":
            raise UserError(f"features must be numeric, not {x.dtype}")
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            raise UserError("features contain NaN or inf")
        if rnn and self.config.window:
            x = x[:, -self.config.window:]  # the model was trained on the last `window` steps
        return self.encoder.transform(x)

    def _image_batch(self, x) -> np.ndarray:
        """Images (N, H, W) or (N, H, W, C) of the trained size as (N, H, W, C)."""
        h, w = self.config.image_shape
        if x.ndim not in (3, 4) or x.shape[1:3] != (h, w):
            raise UserError(f"conv model: images must be (N, {h}, {w}) or (N, {h}, {w}, C), got shape {x.shape}")
        return x if x.ndim == 4 else x[..., None]

    def predict(self, x) -> np.ndarray:
        """The class labels (the training labels' values) for raw features x, encoded with the stored encoder."""
        return self.predict_encoded(self.encode(x))

    def decision_function(self, x) -> np.ndarray:
        """The integer logits (N, classes) int32 of the readout for raw features x; columns follow `classes`,
        predict is their argmax (lowest index on ties)."""
        words = self._packed(self.encode(x))
        batch = self.config.eval_batch
        out = [self.bk.to_numpy(self.task.logits(words[i:i + batch])) for i in range(0, len(words), batch)]
        return np.concatenate(out).astype(np.int32) if out else np.zeros((0, self.n_classes), dtype=np.int32)

    def predict_encoded(self, bits) -> np.ndarray:
        """Class labels for encoded inputs: +-1 values (x >= 0 counts as +1) with last axis the model's input
        width, or uint64 words already packed (docs/ALGORITHM.md, section 1)."""
        return self.classes[self.predict_packed(self._packed(bits))]

    def _packed(self, bits):
        bits = np.asarray(bits)
        packed = bits.dtype == np.uint64
        width = n_words(self.n_inputs) if packed else self.n_inputs
        want = {"rnn": 3, "conv": 4}.get(self.kind, 2)
        if self.kind == "conv" and bits.shape[1:3] != tuple(self.config.image_shape):
            raise UserError(f"conv model takes maps (N, {', '.join(map(str, self.config.image_shape))}, {width}), "
                            f"got shape {bits.shape}")
        if bits.ndim != want or bits.shape[-1] != width:
            what = f"{width} packed words" if packed else f"{self.n_inputs} inputs"
            raise UserError(f"{self.kind} model takes {what} per {'step' if want == 3 else 'sample'}, "
                            f"got shape {bits.shape}")
        return self.bk.asarray(bits) if packed else self.bk.pack(self.bk.asarray(bits))

    def predict_packed(self, words) -> np.ndarray:
        """Class indices (into `classes`) for packed backend arrays, in chunks of eval_batch samples."""
        batch = self.config.eval_batch
        out = [self.bk.to_numpy(self.task.predict(words[i:i + batch])) for i in range(0, len(words), batch)]
        return np.concatenate(out).astype(np.int64) if out else np.zeros(0, dtype=np.int64)

    def score(self, x, y) -> float:
        """Accuracy on raw features x against labels y (the training labels' values)."""
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(x):
            raise UserError(f"labels must be 1-D with one per sample: {len(x)} samples, labels of shape {y.shape}")
        if len(y) == 0:
            raise UserError("no samples to evaluate")
        return float((self.predict(x) == y).mean())

    evaluate = score

    # --- description -----------------------------------------------------------------------------------------
    def layers(self, steps: int | None = None) -> list[Layer]:
        """Every matrix in forward order, the fixed prototype readout last; steps: T for an RNN's uses."""
        c = self.n_classes
        if self.kind == "rnn":
            kx, ks, ky = self.sizes
            t = steps or self.steps
            h = None if t is None else min(self.config.horizon or t, t)
            expand = self.encoder.state().get("expand") if self.encoder is not None else None
            # --expand: a fixed +-1 matrix in front of the cell, applied to every step's encoded bits
            fixed = [] if expand is None else [Layer("encoder.expand", *expand.shape, False, t, 0, 0)]
            return fixed + [Layer("hidden.xs", ks, kx, True, t, h, 0),
                    Layer("hidden.ss", ks, ks, True, t, h, None if h is None else h - 1),
                    Layer("hidden.sy", ky, ks, True, 1, 1, 1), Layer("prototypes", c, ky, False, 1, 0, 0)]
        if self.kind == "conv":
            return self._conv_layers()
        k = self.sizes
        mats = [Layer(f"hidden.{i}", k[i + 1], k[i], True, 1, 1, int(i > 0)) for i in range(len(k) - 1)]
        return mats + [Layer("prototypes", c, k[-1], False, 1, 0, 0)]

    def _conv_layers(self) -> list[Layer]:
        """Conv layers as matrices C_out x k k C_in used once per output position, then dense layers and readout."""
        from .bep_conv import flat_size

        geoms, dense = self.task.geoms, self.task.dense_sizes
        out = []
        for i, g in enumerate(geoms):
            uses = g.h_out * g.w_out
            ly = Layer(f"hidden.{i}", g.c_out, g.fan_in, True, uses, uses, uses if i else 0)
            ly.shape_text = f"{g.c_out} x {g.k} x {g.k} x {g.c_in}" + (", pool 2x2" if g.pool > 1 else "")
            out.append(ly)
        widths = [flat_size(geoms)] + dense
        out += [Layer(f"hidden.{len(geoms) + i}", widths[i + 1], widths[i], True, 1, 1, 1) for i in range(len(dense))]
        return out + [Layer("prototypes", self.n_classes, widths[-1], False, 1, 0, 0)]

    def summary(self, steps: int | None = None) -> str:
        """A table per matrix: shape, packed and hidden bytes, bit-operations; totals; size vs float32; backend.

        steps: time steps T per sample for an RNN's per-sample counts (default: from the checkpoint's config).
        """
        rnn = self.kind == "rnn"
        layers = self.layers(steps)

        def num(v):
            return "?" if v is None else f"{v:,}"

        head = ["Layer", "Shape (out x in)", "Packed bytes", "Hidden int16 bytes"]
        head += (["Fwd ops/use", "Bwd ops/use"] if rnn else []) + ["Fwd ops/sample", "Bwd ops/sample"]
        rows = []
        for ly in layers:
            per_use = [f"{ly.macs:,}", f"{ly.bwd_per_use:,}"] if rnn else []
            rows.append([ly.name + ("" if ly.hidden else " (fixed)"), ly.shape_text or f"{ly.k_out} x {ly.k_in}",
                         f"{ly.packed_bytes:,}", f"{ly.hidden_bytes:,}"] + per_use + [num(v) for v in ly.per_sample()])
        packed = sum(ly.packed_bytes for ly in layers)
        hidden = sum(ly.hidden_bytes for ly in layers)
        f32 = sum(ly.macs * 4 for ly in layers)
        per_sample = [ly.per_sample() for ly in layers]
        totals = [None if any(p[i] is None for p in per_sample) else sum(p[i] for p in per_sample) for i in (0, 1)]
        total = ["Total", "", f"{packed:,}", f"{hidden:,}"] + (["", ""] if rnn else []) + [num(v) for v in totals]
        widths = [max(len(r[i]) for r in rows + [head, total]) for i in range(len(head))]

        def line(r):
            return "  ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths))).rstrip()

        rule = "-" * len(line(head))
        enc = self.encoder.spec if self.encoder is not None else "none stored"
        t = steps or self.steps
        inputs = (f"input map {' x '.join(map(str, self.config.image_shape))} x {self.n_inputs}"
                  if self.kind == "conv" else f"inputs per {'time step' if rnn else 'sample'}: {self.n_inputs}")
        out = [f"Model: {self.kind} {self.sizes} -> {self.n_classes} classes   ({self.path})",
               f"Encoder: {enc}; {inputs}"
               + (f"; T = {t if t else '? (pass steps)'}" if rnn else ""),
               rule, line(head), rule, *map(line, rows), rule, line(total), rule,
               f"Visible weights: {packed:,} bytes packed; float32 equivalent {f32:,} bytes; "
               f"compression {f32 / packed:.1f}x",
               f"Hidden (training) state: {hidden:,} bytes int16",
               f"Backend: {self.bk.name} ({self.bk.device})", OPS_NOTE]
        if rnn:
            out.append(RNN_NOTE)
        if self.kind == "conv":
            out.append(CONV_NOTE)
        return "\n".join(out)


def load(path, backend: str = "numpy") -> Model:
    """Load a bep-gpu checkpoint (model.npz, best.npz or checkpoint.npz, MLP or RNN), validated as a whole;
    UserError if it is unusable. Its predict returns the training labels' values."""
    return Model(ckpt.load_checkpoint(str(path)), str(path), backend)
