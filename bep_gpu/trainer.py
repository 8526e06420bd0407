"""The epoch loop shared by every model kind: data, shuffling, schedule, E rule, checkpoints, result files."""
from __future__ import annotations

import csv
import json
import os
import time

import numpy as np

from . import checkpoint as ckpt
from .backends import get_backend
from .bep_mlp import reinforcement_thresholds
from .config import TrainConfig, next_divisor
from .data import Encoder, load_dataset, make_encoder, validate_dataset
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
    """Encoded, packed splits on the backend plus what the checkpoint needs to redo the encoding."""

    def __init__(self, cfg: TrainConfig, bk, encoder: Encoder | None = None):
        rnn = cfg.kind == "rnn"
        # load_dataset checks the window against the series length (one-line error).
        ds = load_dataset(cfg.dataset, data_dir=cfg.data_dir, data_seed=cfg.data_seed, sequence=rnn,
                          window=(cfg.window or None) if rnn else None, images=cfg.kind == "conv")
        if cfg.kind == "conv":
            cfg.image_shape = [int(v) for v in ds.x_train.shape[1:3]]
        validate_dataset(ds)
        if rnn and not ds.is_sequence:
            raise UserError(f"dataset {cfg.dataset} is not a sequence dataset: x must be (N, T, F) for rnn")
        if rnn and cfg.horizon > ds.n_steps:
            raise UserError(f"--horizon {cfg.horizon} exceeds the {ds.n_steps} steps of each series; use 0 for all")
        x_train, y_train, x_test = ds.x_train, ds.y_train, ds.x_test
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
        self.n_classes = ds.n_classes
        self.image = ds.image
        self.n_in = encoder.n_out(ds.n_features)
        self.n_steps = ds.n_steps if cfg.kind == "rnn" else None

        def put(x, y):
            return bk.pack(bk.asarray(encoder.transform(x))), bk.asarray(y.astype(np.int64))

        self.train = put(x_train[tr], y_train[tr])
        self.val = put(x_train[va], y_train[va]) if len(va) else None
        self.test = put(x_test, ds.y_test)
        self.n_train = len(tr)


def accuracy(task, split, eval_batch: int) -> float:
    if split is None:
        return float("nan")
    x, y = split
    xp = task.bk.xp
    correct = xp.zeros((), dtype=xp.int64)
    for i in range(0, len(y), eval_batch):
        correct += (task.predict(x[i:i + eval_batch]) == y[i:i + eval_batch]).sum()
    return int(correct) / max(1, len(y))


class Trainer:
    def __init__(self, cfg: TrainConfig, backend=None):
        """backend: a Backend object to use instead of cfg.backend (tests pass the emulated CUDA backend)."""
        self.resume_data = None
        if cfg.resume:
            cfg = self._resume_config(cfg)
        cfg.check(widths=not cfg.init)  # --init's widths come from its checkpoint, checked once loaded
        self.cfg = cfg
        self.comm = make_communicator(cfg.distributed, cfg.dist_timeout)
        if self.comm.rank:  # rank 0 alone logs and writes files (docs/DISTRIBUTED.md)
            cfg.quiet = True
        if backend is None and cfg.backend in ("auto", "cuda"):
            bind_gpu(self.comm)  # before the backend allocates on the default device
        set_threads(cfg.threads)
        self.bk = backend if backend is not None else get_backend(cfg.backend, quiet=cfg.quiet)
        if cfg.cuda_graph and (self.bk.name != "cuda" or self.comm.size > 1):
            raise UserError("--cuda-graph replays steps on one GPU: use it with --backend cuda in one process"
                            + (f" (this run uses {self.bk.name})" if self.bk.name != "cuda" else ""))
        if self.comm.rank == 0:
            try:
                os.makedirs(cfg.out, exist_ok=True)
            except OSError as e:
                raise UserError(f"cannot create output directory {cfg.out} ({e.strerror}); choose another --out") from None
            if not os.access(cfg.out, os.W_OK):
                raise UserError(f"output directory {cfg.out} is not writable; choose another --out")
            ckpt.remove_stale_temps(cfg.out)
        if cfg.plot:
            from .plots import require_matplotlib

            require_matplotlib()  # before training, not after it
        init_data = ckpt.load_checkpoint(cfg.init, kind=cfg.kind) if cfg.init else None
        encoder = None
        if self.resume_data is not None:
            encoder = self._encoder_from(self.resume_data)
        self.data = Prepared(cfg, self.bk, encoder)
        if cfg.batch_size == 0:  # a tenth of the training set (the paper's RNN batch), recorded in config.json
            cfg.batch_size = max(1, self.data.n_train // 10)
        Task = task_class(cfg.kind)
        source = self.resume_data if self.resume_data is not None else init_data
        if source is not None:
            hidden = Task.hidden_from_checkpoint(source)
            prototypes = source["prototypes"]
            if Task.input_size(hidden) != self.data.n_in:
                raise UserError(f"checkpoint expects {Task.input_size(hidden)} inputs, but {cfg.dataset} encoded "
                                f"with {cfg.encode} gives {self.data.n_in}; use the same --encode and dataset")
            if prototypes.shape[0] != self.data.n_classes:
                raise UserError(f"checkpoint has {prototypes.shape[0]} classes, {cfg.dataset} has {self.data.n_classes}")
            if cfg.kind == "conv":  # channels and kernels from the arrays, stride and padding from --conv
                from .conv import conv_specs

                cfg.conv = conv_specs(hidden, cfg)
            cfg.hidden = Task.widths_from(hidden)
        else:
            hidden = init_hidden(Task.shapes(self.data.n_in, cfg), cfg.init_std, cfg.seed, cfg.hidden_clip)
            width = Task.shapes(self.data.n_in, cfg)[-1][0]
            prototypes = make_prototypes(self.data.n_classes, width, cfg.seed, cfg.proto_alpha, cfg.proto_sweeps)
        self.task = Task(self.bk, self._sizes(Task, hidden), hidden, prototypes, cfg)
        if self.comm.size > 1:
            if not hasattr(self.task, "comm"):  # a task declares `comm` when its step can be data-parallel
                raise UserError(f"--distributed: {cfg.kind} training has no data-parallel step; run one process")
            self.task.comm = self.comm
        cfg.check()  # widths may come from a checkpoint
        if cfg.stability == "hidden" and max(self.task.fan_ins) > 65535:
            raise UserError(f"--stability hidden sums |H . a| in int32, exact up to 65535 inputs per layer; the "
                            f"widest layer has {max(self.task.fan_ins)}: use --stability z")
        self.state = {"epoch": 0, "step": 0, "error_rate": 1.0, "best_val": -1.0, "bad_epochs": 0,
                      "gammas": cfg.initial_gammas()}
        if self.resume_data is not None:
            self.state = json.loads(str(self.resume_data["train.state"]))

    @staticmethod
    def _sizes(Task, hidden):
        return Task.sizes_from(hidden)

    def _resume_config(self, cfg: TrainConfig) -> TrainConfig:
        path = os.path.join(cfg.resume, CHECKPOINT_NAME)
        if not os.path.exists(path):
            raise UserError(f"--resume {cfg.resume}: no {CHECKPOINT_NAME} there (the run wrote none yet)")
        data = ckpt.load_checkpoint(path)
        if "train.state" not in data or "encoder.spec" not in data:
            raise UserError(f"--resume {cfg.resume}: {path} holds no training state (a weights-only checkpoint?); "
                            "start from it with --init instead")
        saved = TrainConfig.from_dict(data["config"])
        saved.resume, saved.out, saved.quiet, saved.plot = cfg.resume, cfg.resume, cfg.quiet, cfg.plot or saved.plot
        saved.backend = cfg.backend if cfg.backend != "auto" else saved.backend
        saved.threads = cfg.threads  # how to run, not what to train
        saved.init = None
        saved.distributed, saved.dist_timeout = cfg.distributed, cfg.dist_timeout  # this launch's, not the saved
        saved.cuda_graph = cfg.cuda_graph  # how to run, not what to train: same integers either way
        self.resume_data = data
        return saved

    @staticmethod
    def _encoder_from(data) -> Encoder:
        state = {k[len("encoder."):]: v for k, v in data.items() if k.startswith("encoder.") and k != "encoder.spec"}
        from .rnn import ExpandedEncoder

        return ExpandedEncoder.wrap(Encoder.from_state(str(data["encoder.spec"]), state), state)

    # --- files -----------------------------------------------------------------------------------------------
    def _path(self, name):
        return os.path.join(self.cfg.out, name)

    def _write_json(self, name, obj):
        if self.comm.rank:
            return
        text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
        ckpt.atomic_write(self._path(name), lambda f: f.write(text.encode()))

    def _config_dict(self):
        d = self.cfg.to_dict()
        d.update(backend_used=self.bk.name, device=self.bk.device, n_inputs=self.data.n_in,
                 n_classes=self.data.n_classes, n_train=self.data.n_train,
                 sizes=list(self.task.sizes), n_steps=self.data.n_steps)
        d["processes"] = self.comm.size
        return d

    def save(self, name: str) -> None:
        if self.comm.rank:
            return
        extra = {"encoder.spec": np.array(self.data.encoder.spec),
                 "train.state": np.array(json.dumps(self.state))}
        extra.update({f"encoder.{k}": v for k, v in self.data.encoder.state().items()})
        ckpt.save_checkpoint(self._path(name), self.cfg.kind, self._config_dict(), self.task.prototypes_pm,
                             self.task.hidden_arrays(), extra)

    def _metrics_rows(self):
        path = self._path("metrics.csv")
        if self.resume_data is None or not os.path.exists(path):
            return []
        with open(path, newline="") as f:
            return [r for r in csv.DictReader(f)][: self.state["epoch"]]

    # --- the loop --------------------------------------------------------------------------------------------
    def run(self) -> dict:
        cfg, bk, task, st, comm = self.cfg, self.bk, self.task, self.state, self.comm
        xp = bk.xp
        if comm.size > 1:  # replicas must start equal to stay equal
            settings = {k: v for k, v in cfg.to_dict().items() if k != "quiet"}
            arrays = [bk.to_numpy(a) for a in self.data.train] + list(task.hidden_arrays().values())
            comm.check_identical(fingerprint([settings, st], arrays + [task.prototypes_pm]),
                                 "settings, training data or starting weights")
        self._write_json("config.json", self._config_dict())
        rows = self._metrics_rows()
        x_all, y_all = self.data.train
        n = self.data.n_train
        t_start = time.perf_counter()
        train_time, epochs_run = 0.0, 0  # this process's share (a resumed run did earlier epochs elsewhere)
        log(f"training {cfg.kind} {task.sizes} on {cfg.dataset} ({n} train samples, encoder {cfg.encode}) "
            f"with backend {bk.name} ({bk.device})", cfg.quiet)
        while st["epoch"] < cfg.epochs:
            epoch = st["epoch"]
            t0 = time.perf_counter()
            with nvtx_range("data"):
                order = (np.random.default_rng([int(cfg.seed), int(epoch)]).permutation(n) if cfg.shuffle
                         else np.arange(n))
                order = bk.asarray(order)
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
            self._schedule(val_acc if self.data.val is not None else 1 - wrong / n, test_acc)
            st["epoch"] = epoch + 1
            self._write_metrics(rows)
            self.save(CHECKPOINT_NAME)
            bar.finish(f"epoch {epoch + 1}/{cfg.epochs}: train {1 - wrong / n:.4f} triggered {triggered / n:.3f} "
                       f"val {val_acc:.4f} test {test_acc:.4f} gammas {st['gammas']} ({epoch_time:.2f} s, "
                       f"{n / epoch_time:.0f} samples/s)",
                       {"train": f"{1 - wrong / n:.4f}", "trig": f"{triggered / n:.3f}", "val": f"{val_acc:.4f}",
                        "test": f"{test_acc:.4f}", "samples/s": f"{n / epoch_time:.0f}"})
        self.save("model.npz")
        test_acc = accuracy(task, self.data.test, cfg.eval_batch)
        results = {"test_accuracy": test_acc,
                   "val_accuracy": accuracy(task, self.data.val, cfg.eval_batch) if self.data.val else None,
                   # without a validation split the schedule scores training accuracy: not a validation figure
                   "best_val_accuracy": st["best_val"] if st["best_val"] >= 0 and self.data.val else None,
                   "test_accuracy_at_best_val": st.get("test_at_best") if self.data.val else None,
                   "epochs": st["epoch"], "steps": st["step"], "wall_time_s": time.perf_counter() - t_start,
                   "train_time_s": train_time, "samples_per_s": (n * epochs_run / train_time) if train_time else None,
                   "backend": bk.name, "device": bk.device, "kind": cfg.kind, "sizes": list(task.sizes),
                   "processes": comm.size}
        self._write_json("results.json", results)
        if cfg.plot and comm.rank == 0:
            from .plots import plot_metrics

            plot_metrics(self._path("metrics.csv"), self._path("learning_curve.png"))
        log(f"test accuracy {test_acc:.4f}; results in {cfg.out}", cfg.quiet)
        return results

    def _schedule(self, score: float, test_acc: float) -> None:
        """Group-size schedule (section 5): after `patience` epochs without improvement, every gamma grows."""
        st, cfg = self.state, self.cfg
        if score > st["best_val"]:
            st["best_val"], st["test_at_best"], st["bad_epochs"] = score, test_acc, 0
            return
        st["bad_epochs"] += 1
        if cfg.patience and st["bad_epochs"] >= cfg.patience:
            st["gammas"] = [next_divisor(w, g) for w, g in zip(cfg.group_widths(), st["gammas"])]
            st["bad_epochs"] = 0

    def _write_metrics(self, rows) -> None:
        if self.comm.rank:
            return
        def write(f):
            import io

            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=METRICS_COLUMNS)
            w.writeheader()
            w.writerows(rows)
            f.write(buf.getvalue().encode())

        ckpt.atomic_write(self._path("metrics.csv"), write)


def train(cfg: TrainConfig) -> dict:
    return Trainer(cfg).run()
