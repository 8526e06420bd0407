"""The epoch loop shared by every model kind: data, shuffling, schedule, E rule, checkpoints, result files."""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import time

import numpy as np

from . import checkpoint as ckpt
from .backends import get_backend
from .bep_mlp import reinforcement_thresholds
from .config import TrainConfig, next_divisor
from .data import Encoder, load_dataset, make_encoder, validate_dataset
from .data.augment import Augment
from .data.dataset import labels_to_indices
from .distributed import bind_gpu, fingerprint, make_communicator, shard
from .errors import UserError
from .mlp import MLPTask, init_hidden
from .profiling import nvtx_range
from .progress import EpochProgress, log
from .step_graph import GraphedSteps
from .threads import set_threads
from .prototypes import make_prototypes

METRICS_COLUMNS = ["epoch", "step", "train_acc", "triggered_frac", "val_acc", "test_acc", "gammas",
                   "reinforce_p0", "epoch_time_s", "samples_per_s"]
CHECKPOINT_NAME = "checkpoint.npz"
BEST_NAME = "best.npz"
# Every file a run writes into --out; a folder holding FINISHED_FILES or CHECKPOINT_NAME holds a run.
RUN_FILES = ("config.json", "metrics.csv", CHECKPOINT_NAME, "model.npz", BEST_NAME, "results.json",
             "learning_curve.png")
FINISHED_FILES = ("model.npz", "results.json")
# How a launch runs, not what it trains (same integers either way): a resumed run takes this launch's values.
# `threads` belongs to the numba backend's launches.
EXECUTION_OPTIONS = ("backend", "threads", "cuda_graph", "quiet", "plot", "eval_batch", "distributed",
                     "dist_timeout", "overwrite")
# Settings whose given value means "resolve it": they match whatever the run resolved them to.
UNRESOLVED = {"encode": "auto", "batch_size": 0}
# --batch-size 0: a tenth of the training set (the paper's UCR batch) up to this many. N/10 alone leaves 10 steps an
# epoch however large the set (issue 15: on 2,000 series of a memory task, 10 epochs reached 57.8 % at N/10 and
# 99.4 % at 20); on ItalyPowerDemand (60 series) and JapaneseVowels (243), 20 does as well as N/10
# (results/rnn/RNN_RESULTS.md, "Defaults").
AUTO_BATCH_MAX = 20
SMALL_VALIDATION = 30  # fewer held-out samples than this: validation accuracy moves in steps of > 3 %


def task_class(kind: str):
    if kind == "rnn":
        from .rnn import RNNTask

        return RNNTask
    if kind == "conv":
        from .conv import ConvTask

        return ConvTask
    return MLPTask


def default_encoding(ds) -> str:
    if ds.is_sequence:
        return "thermometer:8"
    x = ds.x_train
    if ds.image and x.ndim < 4:  # conv images may be +-1 already
        return "median"
    return "sign" if np.isin(x, (-1, 1)).all() else "median"


def split_validation(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices): a seeded random `fraction` of the training set is held out."""
    perm = np.random.default_rng([int(seed), 3]).permutation(n)
    n_val = int(round(n * fraction))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


class Prepared:
    """Encoded, packed splits on the backend plus what the checkpoint needs to redo the encoding.

    classes: the label values of a model being continued or evaluated (its checkpoint's), to which the
    dataset's labels are mapped; dataset: a Dataset to use instead of loading cfg.dataset."""

    def __init__(self, cfg: TrainConfig, bk, encoder: Encoder | None = None, classes=None, dataset=None):
        rnn = cfg.kind == "rnn"
        # load_dataset checks the window against the series length (one-line error).
        ds = dataset if dataset is not None else load_dataset(
            cfg.dataset, data_dir=cfg.data_dir, data_seed=cfg.data_seed, sequence=rnn,
            window=(cfg.window or None) if rnn else None, images=cfg.kind == "conv")
        if dataset is not None and rnn and cfg.window:  # load_dataset cuts files' series; these are in memory
            ds = dataclasses.replace(ds, x_train=ds.x_train[:, -cfg.window:])
        if cfg.kind == "conv":
            cfg.image_shape = [int(v) for v in ds.x_train.shape[1:3]]
        validate_dataset(ds)
        if rnn and not ds.is_sequence:
            raise UserError(f"dataset {ds.name} is not a sequence dataset: x must be (N, T, F) for rnn")
        if rnn and cfg.horizon > ds.n_steps:
            raise UserError(f"--horizon {cfg.horizon} exceeds the {ds.n_steps} steps of each series; use 0 for all")
        self.name = ds.name
        self.classes = ds.classes if classes is None else np.asarray(classes)
        y_train, y_test = ds.y_train, ds.y_test
        if classes is not None:  # the model's label values decide, not this dataset's numbering
            y_train = labels_to_indices(ds.name, "y_train", ds.classes[y_train], self.classes)
            y_test = None if y_test is None else labels_to_indices(ds.name, "y_test", ds.classes[y_test],
                                                                    self.classes)
        x_train = ds.x_train
        # --max-train counts samples before the validation split: N = training + validation samples
        if cfg.max_train is not None:
            x_train, y_train = x_train[: cfg.max_train], y_train[: cfg.max_train]
        tr, va = split_validation(len(x_train), cfg.val_fraction, cfg.seed)
        if len(tr) == 0:
            raise UserError("no training samples left after the validation split; lower --val-fraction")
        if cfg.encode == "auto":
            cfg.encode = default_encoding(ds)
        if encoder is None:
            encoder = make_encoder(cfg.encode, ds.image)
            if cfg.expand:
                from .rnn import ExpandedEncoder

                encoder = ExpandedEncoder(encoder, cfg.expand, cfg.seed)
            encoder = encoder.fit(x_train[tr])
        self.encoder = encoder
        self.n_classes = len(self.classes)
        self.image = ds.image
        self.n_in = encoder.n_out(ds.n_features)
        self.n_steps = ds.n_steps if cfg.kind == "rnn" else None

        def put(x, y):
            return bk.pack(bk.asarray(encoder.transform(x))), bk.asarray(y.astype(np.int64))

        self.bk, self.seed = bk, cfg.seed
        self.augment = Augment.parse(cfg.augment)
        if self.augment:
            # The encoded +-1 pixels stay on the backend; each epoch packs a freshly moved copy of them.
            hwc = _image_geometry(ds, cfg.augment)
            encoded = bk.asarray(encoder.transform(x_train[tr]))
            self.pixels = encoded.reshape(len(tr), hwc[0], hwc[1], -1)
            background = encoder.transform(np.zeros((1,) + x_train.shape[1:], dtype=x_train.dtype))
            self.background = bk.asarray(background.reshape(hwc[0], hwc[1], -1)[0, 0])
            self.packed_shape = encoded.shape
            self.train = bk.pack(encoded), bk.asarray(y_train[tr].astype(np.int64))
        else:
            self.train = put(x_train[tr], y_train[tr])
        self.val = put(x_train[va], y_train[va]) if len(va) else None
        self.test = put(ds.x_test, y_test) if ds.x_test is not None else None
        self.n_train, self.n_val = len(tr), len(va)

    def train_inputs(self, epoch: int):
        """The packed training inputs of this epoch: moved and mirrored by --augment, else the fixed ones."""
        if not self.augment:
            return self.train[0]
        moved = self.augment.apply(self.bk.xp, self.pixels, self.background, self.seed, epoch)
        return self.bk.pack(moved.reshape(self.packed_shape))


def _image_geometry(ds, spec: str) -> tuple[int, int, int]:
    """(H, W, C) of the dataset's images; UserError for data that are not images."""
    if ds.x_train.ndim == 4:
        return tuple(int(v) for v in ds.x_train.shape[1:])
    if ds.image_shape is None or ds.x_train.ndim != 2:
        raise UserError(f"--augment {spec}: dataset {ds.name} holds no images of known shape; it needs "
                        "fashion-mnist, digits, or images (N, H, W[, C]) for a conv net or an estimator")
    return tuple(int(v) for v in ds.image_shape)


def accuracy(task, split, eval_batch: int) -> float:
    if split is None:
        return float("nan")
    x, y = split
    xp = task.bk.xp
    correct = xp.zeros((), dtype=xp.int64)
    for i in range(0, len(y), eval_batch):
        correct += (task.predict(x[i:i + eval_batch]) == y[i:i + eval_batch]).sum()
    return int(correct) / max(1, len(y))


def setting_flag(name: str) -> str:
    return "--no-shuffle" if name == "shuffle" else "--" + name.replace("_", "-")


def resume_config(cfg: TrainConfig, given=None) -> tuple[TrainConfig, dict]:
    """The saved run's config for `--resume cfg.resume`, with this launch's execution options and --epochs,
    and its checkpoint. given: the settings this launch set (None: those differing from the defaults); any of
    them, other than --epochs and the execution options, that differs from the run's is a UserError."""
    run_dir = cfg.resume
    path = os.path.join(run_dir, CHECKPOINT_NAME)
    if not os.path.exists(path):
        raise UserError(f"--resume {run_dir}: no {CHECKPOINT_NAME} there (the run wrote none yet)")
    data = ckpt.load_checkpoint(path)
    if "train.state" not in data or "encoder.spec" not in data:
        raise UserError(f"--resume {run_dir}: {path} holds no training state (a weights-only checkpoint?); "
                        "start from it with --init instead")
    saved = TrainConfig.from_dict(data["config"])
    done = json.loads(str(data["train.state"]))["epoch"]
    if cfg.kind != saved.kind:
        raise UserError(f"--resume {run_dir} holds an {saved.kind} run; resume it with bep-train {saved.kind}")
    defaults = TrainConfig(kind=cfg.kind)
    if given is None:
        given = [f.name for f in dataclasses.fields(TrainConfig) if getattr(cfg, f.name) != getattr(defaults, f.name)]
    for name in given:
        mine, theirs = getattr(cfg, name), getattr(saved, name)
        if name in EXECUTION_OPTIONS or name in ("kind", "resume", "epochs"):
            continue
        if name == "out":
            if os.path.abspath(mine) != os.path.abspath(run_dir):
                raise UserError(f"--out {mine}: a resumed run writes into its own folder {run_dir}; drop --out")
            continue
        if UNRESOLVED.get(name, object()) == mine or _same_setting(mine, theirs):
            continue
        raise UserError(f"--resume {run_dir}: {setting_flag(name)} {_show(mine)} differs from the run's "
                        f"{_show(theirs)} (its config.json); only --epochs and how it runs (--backend, "
                        "--cuda-graph, --quiet, --plot, ...) may change")
    if "epochs" in given:
        if cfg.epochs < done:
            raise UserError(f"--resume {run_dir}: --epochs {cfg.epochs} is fewer than the {done} the run has done")
        saved.epochs = cfg.epochs
    for name in EXECUTION_OPTIONS:
        if hasattr(cfg, name):
            setattr(saved, name, getattr(cfg, name))
    saved.plot = cfg.plot or saved.plot  # a run that plotted keeps its plot up to date
    saved.resume, saved.out, saved.init = run_dir, run_dir, None
    return saved, data


def _same_setting(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return [str(v) for v in a] == [str(v) for v in b]
    return a == b or (isinstance(a, (int, float)) and isinstance(b, (int, float)) and float(a) == float(b))


def _show(v) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(map(str, v)) or "none"
    return str(v)


def check_output_dir(cfg: TrainConfig) -> None:
    """UserError unless --out can hold this run: creatable and writable, and not holding another run (unless
    --overwrite). Creates nothing: a run that fails before training leaves no folder behind."""
    out = cfg.out
    if os.path.isdir(out) and not cfg.resume and not cfg.overwrite:
        held = [n for n in FINISHED_FILES + (CHECKPOINT_NAME,) if os.path.exists(os.path.join(out, n))]
        if held:
            state = "an unfinished run" if held == [CHECKPOINT_NAME] else "a finished run"
            raise UserError(f"--out {out} holds {state} ({held[0]}); continue it with --resume {out}, replace it "
                            "with --overwrite, or choose another --out")
    parent = os.path.abspath(out)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UserError(f"cannot create output directory {out} ({parent} is not a directory); choose another --out")
    if not os.access(parent, os.W_OK):
        raise UserError(f"output directory {out} is not writable; choose another --out")


class Trainer:
    def __init__(self, cfg: TrainConfig, backend=None, dataset=None, given=None):
        """backend: a Backend object to use instead of cfg.backend (tests pass the emulated CUDA backend);
        dataset: a Dataset to train on instead of loading cfg.dataset (the estimators' fit); given: the names
        of the settings the user set, for --resume (None: those that differ from the defaults).
        cfg.out None: train in memory, write no files (the estimators)."""
        self.resume_data = None
        if cfg.resume:
            cfg, self.resume_data = resume_config(cfg, given)
        cfg.check(widths=not cfg.init and self.resume_data is None)  # checkpoints' widths: checked once loaded
        self.cfg = cfg
        self.comm = make_communicator(cfg.distributed, cfg.dist_timeout)
        if self.comm.rank:  # rank 0 alone logs and writes files (docs/DISTRIBUTED.md)
            cfg.quiet = True
        self.writes = cfg.out is not None and self.comm.rank == 0
        if self.writes:
            check_output_dir(cfg)
        if backend is None and cfg.backend in ("auto", "cuda"):
            bind_gpu(self.comm)  # before the backend allocates on the default device
        set_threads(cfg.threads)
        self.bk = backend if backend is not None else get_backend(cfg.backend, quiet=cfg.quiet)
        if cfg.cuda_graph and (self.bk.name != "cuda" or self.comm.size > 1):
            raise UserError("--cuda-graph replays steps on one GPU: use it with --backend cuda in one process"
                            + (f" (this run uses {self.bk.name})" if self.bk.name != "cuda" else ""))
        if cfg.plot and self.writes:
            from .plots import require_matplotlib

            require_matplotlib()  # before training, not after it
        init_data = ckpt.load_checkpoint(cfg.init, kind=cfg.kind) if cfg.init else None
        source = self.resume_data if self.resume_data is not None else init_data
        encoder = self._encoder_from(self.resume_data) if self.resume_data is not None else None
        classes = source.get("classes") if source is not None else None
        self.data = Prepared(cfg, self.bk, encoder, classes, dataset)
        if cfg.early_stop and self.data.val is None:
            raise UserError("--early-stop needs a validation split: set --val-fraction above 0")
        if cfg.batch_size == 0:  # the paper's N/10, at most AUTO_BATCH_MAX, recorded in config.json
            cfg.batch_size = max(1, min(AUTO_BATCH_MAX, self.data.n_train // 10))
        Task = task_class(cfg.kind)
        if source is not None:
            hidden = Task.hidden_from_checkpoint(source)
            prototypes = source["prototypes"]
            if Task.input_size(hidden) != self.data.n_in:
                raise UserError(f"checkpoint expects {Task.input_size(hidden)} inputs, but {self.data.name} encoded "
                                f"with {cfg.encode} gives {self.data.n_in}; use the same --encode and dataset")
            if prototypes.shape[0] != self.data.n_classes:
                raise UserError(f"checkpoint has {prototypes.shape[0]} classes, {self.data.name} has "
                                f"{self.data.n_classes}")
            if cfg.kind == "conv":  # channels and kernels from the arrays, stride and padding from --conv
                from .conv import conv_specs

                cfg.conv = conv_specs(hidden, cfg)
            cfg.hidden = Task.widths_from(hidden)
        else:
            hidden = init_hidden(Task.shapes(self.data.n_in, cfg), cfg.init_std, cfg.seed, cfg.hidden_clip)
            width = Task.shapes(self.data.n_in, cfg)[-1][0]
            prototypes = make_prototypes(self.data.n_classes, width, cfg.seed, cfg.proto_alpha, cfg.proto_sweeps,
                                         cfg.proto_frame)
        if cfg.freeze and max(cfg.freeze) >= len(hidden):
            raise UserError(f"--freeze {','.join(map(str, cfg.freeze))}: the model has {len(hidden)} weight matrices, "
                            f"hidden.0 to hidden.{len(hidden) - 1}")
        self.task = Task(self.bk, self._sizes(Task, hidden), hidden, prototypes, cfg)
        if self.comm.size > 1:
            if not hasattr(self.task, "comm"):  # a task declares `comm` when its step can be data-parallel
                raise UserError(f"--distributed: {cfg.kind} training has no data-parallel step; run one process")
            self.task.comm = self.comm
        cfg.check()  # widths may come from a checkpoint
        if cfg.stability == "hidden" and max(self.task.fan_ins) > 65535:
            raise UserError(f"--stability hidden sums |H . a| in int32, exact up to 65535 inputs per layer; the "
                            f"widest layer has {max(self.task.fan_ins)}: use --stability z or flips")
        self.state = {"epoch": 0, "step": 0, "error_rate": 1.0, "best_val": -1.0, "bad_epochs": 0,
                      "gammas": cfg.initial_gammas(), "best_epoch": 0, "stopped_early": False}
        if self.resume_data is not None:
            self.state.update(json.loads(str(self.resume_data["train.state"])))
        self.best = None  # the checkpoint arrays at the best validation epoch (kept in memory too)

    @staticmethod
    def _sizes(Task, hidden):
        return Task.sizes_from(hidden)

    @staticmethod
    def _encoder_from(data) -> Encoder:
        state = {k[len("encoder."):]: v for k, v in data.items() if k.startswith("encoder.") and k != "encoder.spec"}
        from .rnn import ExpandedEncoder

        return ExpandedEncoder.wrap(Encoder.from_state(str(data["encoder.spec"]), state), state)

    # --- files ---------------------------------------------------------------------------------------------
    def _path(self, name):
        return os.path.join(self.cfg.out, name)

    def _write_json(self, name, obj):
        if not self.writes:
            return
        text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
        ckpt.atomic_write(self._path(name), lambda f: f.write(text.encode()))

    def _config_dict(self):
        d = self.cfg.to_dict()
        d.update(backend_used=self.bk.name, device=self.bk.device, n_inputs=self.data.n_in,
                 n_classes=self.data.n_classes, n_train=self.data.n_train, n_val=self.data.n_val,
                 sizes=list(self.task.sizes), n_steps=self.data.n_steps)
        d["processes"] = self.comm.size
        return d

    def checkpoint_arrays(self) -> dict:
        """What a checkpoint file holds (docs/CLI.md): weights, prototypes, classes, encoder, training state."""
        extra = {"encoder.spec": np.array(self.data.encoder.spec), "classes": np.asarray(self.data.classes),
                 "train.state": np.array(json.dumps(self.state))}
        extra.update({f"encoder.{k}": v for k, v in self.data.encoder.state().items()})
        return ckpt.checkpoint_arrays(self.cfg.kind, self._config_dict(), self.task.prototypes_pm,
                                      self.task.hidden_arrays(), extra)

    def save(self, name: str, arrays: dict | None = None) -> None:
        if self.writes:
            ckpt.write_checkpoint(self._path(name), arrays if arrays is not None else self.checkpoint_arrays())

    def _metrics_rows(self):
        path = self._path("metrics.csv")
        if self.resume_data is None or not os.path.exists(path):
            return []
        with open(path, newline="") as f:
            return [r for r in csv.DictReader(f)][: self.state["epoch"]]

    def _open_output(self) -> bool:
        """Create --out (True if this call created it); --overwrite removes the previous run's files first, so
        that none of them (an old plot, an old best.npz) is left beside the new ones."""
        if not self.writes:
            return False
        created = not os.path.isdir(self.cfg.out)
        try:
            os.makedirs(self.cfg.out, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create output directory {self.cfg.out} ({e.strerror}); choose another "
                            "--out") from None
        ckpt.remove_stale_temps(self.cfg.out)
        if self.resume_data is None:
            for name in RUN_FILES:
                if os.path.exists(self._path(name)):
                    os.unlink(self._path(name))
        return created

    def _drop_output(self) -> None:
        """A run that ends before finishing an epoch leaves no folder it created (its config.json alone)."""
        for name in ("config.json", "metrics.csv"):
            if os.path.exists(self._path(name)):
                os.unlink(self._path(name))
        try:
            os.rmdir(self.cfg.out)
        except OSError:
            pass  # not empty: something else lives there

    # --- the loop --------------------------------------------------------------------------------------------
    def run(self) -> dict:
        created = self._open_output()
        first_epoch = self.state["epoch"]
        try:
            return self._run()
        except BaseException:
            if created and self.state["epoch"] == first_epoch:
                self._drop_output()
            raise

    def _run(self) -> dict:
        cfg, bk, task, st, comm = self.cfg, self.bk, self.task, self.state, self.comm
        xp = bk.xp
        if comm.size > 1:  # replicas must start equal to stay equal
            settings = {k: v for k, v in cfg.to_dict().items() if k != "quiet"}
            arrays = [bk.to_numpy(a) for a in self.data.train] + list(task.hidden_arrays().values())
            comm.check_identical(fingerprint([settings, st], arrays + [task.prototypes_pm]),
                                 "settings, training data or starting weights")
        self._write_json("config.json", self._config_dict())
        rows = self._metrics_rows() if self.writes else []
        y_all = self.data.train[1]
        n = self.data.n_train
        t_start = time.perf_counter()
        train_time, epochs_run = 0.0, 0  # this process's share (a resumed run did earlier epochs elsewhere)
        counted = (f"{n} train + {self.data.n_val} validation samples"
                   + (f", the first {cfg.max_train} of the training set" if cfg.max_train is not None else ""))
        log(f"training {cfg.kind} {task.sizes} on {self.data.name} ({counted}; encoder {cfg.encode}) "
            f"with backend {bk.name} ({bk.device})", cfg.quiet)
        if 0 < self.data.n_val < SMALL_VALIDATION:
            log(f"note: the validation split holds only {self.data.n_val} samples (--val-fraction {cfg.val_fraction}"
                f"): its accuracy moves in steps of {100 / self.data.n_val:.0f} %; --val-fraction 0 trains on all",
                cfg.quiet)
        if st["epoch"] >= cfg.epochs or st["stopped_early"]:
            why = "stopped early" if st["stopped_early"] else f"has done its {st['epoch']} epochs"
            log(f"the run {why}: nothing to train (a larger --epochs extends it)", cfg.quiet)
        while st["epoch"] < cfg.epochs and not st["stopped_early"]:
            epoch = st["epoch"]
            t0 = time.perf_counter()
            with nvtx_range("data"):
                order = (np.random.default_rng([int(cfg.seed), int(epoch)]).permutation(n) if cfg.shuffle
                         else np.arange(n))
                order = bk.asarray(order)
                x_all = self.data.train_inputs(epoch)
            thresholds = reinforcement_thresholds(task.fan_ins, cfg.p_r, st["error_rate"])
            counts = xp.zeros(2, dtype=xp.int64)
            graphed = (GraphedSteps(bk, task, x_all, y_all, cfg.batch_size, st["gammas"], thresholds, st["step"],
                                    counts) if cfg.cuda_graph else None)
            bar = EpochProgress(n, epoch, cfg.epochs, cfg.quiet)
            try:
                for b0 in range(0, n, cfg.batch_size):
                    with nvtx_range("data"):
                        idx = order[b0:b0 + cfg.batch_size]
                    if graphed is not None and len(idx) == cfg.batch_size:
                        graphed(idx)
                    else:
                        if graphed is not None:
                            graphed.finish()  # a short last batch runs eagerly, after the replayed steps
                        with nvtx_range("data"):
                            lo, hi = shard(len(idx), comm.rank, comm.size)  # this process's rows of the batch
                            xb, yb = x_all[idx[lo:hi]], y_all[idx[lo:hi]]
                        counts += task.step(xb, yb, st["gammas"], thresholds, st["step"])  # whole-batch counts
                    st["step"] += 1
                    bar.advance(len(idx))
                if graphed is not None:
                    graphed.finish()
            except BaseException:
                bar.close()  # so that the interruption message starts on its own line
                raise
            comm.barrier()  # bounded wait for the step sums still queued (NCCL), before the unbounded sync
            bk.synchronize()
            epoch_time = time.perf_counter() - t0
            train_time += epoch_time
            epochs_run += 1
            wrong, triggered = (int(v) for v in bk.to_numpy(counts))
            val_acc = accuracy(task, self.data.val, cfg.eval_batch)
            test_acc = accuracy(task, self.data.test, cfg.eval_batch)
            st["error_rate"] = wrong / n
            rows.append({"epoch": epoch + 1, "step": st["step"], "train_acc": f"{1 - wrong / n:.6f}",
                         "triggered_frac": f"{triggered / n:.6f}", "val_acc": f"{val_acc:.6f}",
                         "test_acc": f"{test_acc:.6f}", "gammas": "/".join(map(str, st["gammas"])),
                         "reinforce_p0": f"{thresholds[0] / 2**32:.6g}", "epoch_time_s": f"{epoch_time:.4f}",
                         "samples_per_s": f"{n / epoch_time:.1f}"})
            improved = self._schedule(val_acc if self.data.val is not None else 1 - wrong / n, test_acc, epoch + 1)
            st["epoch"] = epoch + 1
            if improved and self.data.val is not None:
                st["best_epoch"] = st["epoch"]
            if cfg.early_stop and st["epoch"] - st["best_epoch"] >= cfg.early_stop:
                st["stopped_early"] = True
            self._write_metrics(rows)
            if improved and self.data.val is not None:
                self.best = self.checkpoint_arrays()
                self.save(BEST_NAME, self.best)  # before the checkpoint that records it as the best
            self.save(CHECKPOINT_NAME)
            bar.finish(f"epoch {epoch + 1}/{cfg.epochs}: train {1 - wrong / n:.4f} triggered {triggered / n:.3f} "
                       f"val {val_acc:.4f} test {test_acc:.4f} gammas {st['gammas']} ({epoch_time:.2f} s, "
                       f"{n / epoch_time:.0f} samples/s)",
                       {"train": f"{1 - wrong / n:.4f}", "trig": f"{triggered / n:.3f}", "val": f"{val_acc:.4f}",
                        "test": f"{test_acc:.4f}", "samples/s": f"{n / epoch_time:.0f}"})
            if st["stopped_early"]:
                log(f"early stop: no validation improvement for {cfg.early_stop} epochs; the best, epoch "
                    f"{st['best_epoch']} (val {st['best_val']:.4f}), is {BEST_NAME if self.writes else 'kept'}",
                    cfg.quiet)
        self.save("model.npz")
        test_acc = accuracy(task, self.data.test, cfg.eval_batch)
        results = {"test_accuracy": test_acc if self.data.test is not None else None,
                   "val_accuracy": accuracy(task, self.data.val, cfg.eval_batch) if self.data.val else None,
                   # without a validation split the schedule scores training accuracy: not a validation figure
                   "best_val_accuracy": st["best_val"] if st["best_val"] >= 0 and self.data.val else None,
                   "test_accuracy_at_best_val": st.get("test_at_best") if self.data.val else None,
                   "best_epoch": st["best_epoch"] if self.data.val else None, "stopped_early": st["stopped_early"],
                   "epochs": st["epoch"], "steps": st["step"], "wall_time_s": time.perf_counter() - t_start,
                   "train_time_s": train_time, "samples_per_s": (n * epochs_run / train_time) if train_time else None,
                   "backend": bk.name, "device": bk.device, "kind": cfg.kind, "sizes": list(task.sizes),
                   "processes": comm.size}
        self._write_json("results.json", results)
        if cfg.plot and self.writes:
            from .plots import plot_metrics

            plot_metrics(self._path("metrics.csv"), self._path("learning_curve.png"),
                         title=f"{cfg.kind} {task.sizes} on {self.data.name}")
        if self.writes:
            log(f"test accuracy {test_acc:.4f}; results in {cfg.out}", cfg.quiet)
        return results

    def _schedule(self, score: float, test_acc: float, epoch: int) -> bool:
        """Group-size schedule (docs/ALGORITHM.md, section 5) after `epoch` epochs: every gamma grows at each of
        the fixed gamma_milestones or, without them, after `patience` epochs without improvement. True when score
        is a new best."""
        st, cfg = self.state, self.cfg
        improved = score > st["best_val"]
        if improved:
            st["best_val"], st["test_at_best"], st["bad_epochs"] = score, test_acc, 0
        else:
            st["bad_epochs"] += 1
        if cfg.gamma_milestones:
            grow = epoch in cfg.gamma_milestones
        else:
            grow = cfg.patience and st["bad_epochs"] >= cfg.patience
        if grow:
            st["gammas"] = [next_divisor(w, g) for w, g in zip(cfg.group_widths(), st["gammas"])]
            st["bad_epochs"] = 0
        return improved

    def _write_metrics(self, rows) -> None:
        if not self.writes:
            return

        def write(f):
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=METRICS_COLUMNS)
            w.writeheader()
            w.writerows(rows)
            f.write(buf.getvalue().encode())

        ckpt.atomic_write(self._path("metrics.csv"), write)


def train(cfg: TrainConfig) -> dict:
    return Trainer(cfg).run()
