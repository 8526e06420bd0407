"""--resume: a run killed (SIGKILL) or interrupted (Ctrl-C) and resumed ends bit for bit where an uninterrupted
run with the same seed ends; checkpoints are never half-written."""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from bep_gpu import checkpoint as ckpt
from bep_gpu.cli.train import main as train_main
from bep_gpu.progress import EpochProgress

# Small enough to be quick, long enough (6 epochs) to be killed in the middle; patience 1 makes the group-size
# schedule move, so the resumed run must carry the gammas and the schedule counters too.
ARGS = ["--hidden", "35,35", "--gamma0", "7", "--epochs", "6", "--patience", "1", "--backend", "numpy", "--quiet"]
# hidden weights, prototypes, encoder and the training state (step counter, E, gammas, best_val, ...)
COMPARED = ("hidden.0", "hidden.1", "prototypes", "encoder.spec", "train.state")


@pytest.fixture(scope="module")
def args(tmp_path_factory):
    """ARGS on a Random-Prototypes-like npz (2000 train samples)."""
    from conftest import prototypes_npz

    return ["--dataset", prototypes_npz(tmp_path_factory.mktemp("data") / "protos.npz", 10, 1000, 2000, 500, 0.4)] + ARGS


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, args):
    out = tmp_path_factory.mktemp("full")
    assert train_main(["mlp", "--out", str(out)] + args) == 0
    return out


def _same_model(a_dir, b_dir):
    a, b = np.load(a_dir / "model.npz"), np.load(b_dir / "model.npz")
    for key in COMPARED:
        assert np.array_equal(a[key], b[key]), key
    assert json.loads(str(b["train.state"]))["epoch"] == 6


def _metrics(run_dir):
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    # timings differ between runs; everything else must not
    return [{k: v for k, v in r.items() if k not in ("epoch_time_s", "samples_per_s")} for r in rows]


def _epoch_done(path):
    try:
        with np.load(path) as z:
            return json.loads(str(z["train.state"]))["epoch"]
    except (OSError, ValueError, KeyError):
        return 0  # not written yet


def test_sigkilled_run_resumes_bit_for_bit(uninterrupted, args, tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "bep_gpu", "train", "mlp", "--out", str(out)] + args,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _epoch_done(out / "checkpoint.npz") < 1:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no checkpoint after 120 s"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = _epoch_done(out / "checkpoint.npz")
    assert not (out / "model.npz").exists() and killed_at < 6, "the run finished before the kill"
    assert train_main(["mlp", "--resume", str(out), "--quiet"]) == 0
    _same_model(uninterrupted, out)
    assert _metrics(out) == _metrics(uninterrupted)  # metrics.csv continues: one row per epoch, no duplicates
    assert not [p for p in os.listdir(out) if p.startswith(ckpt.TEMP_PREFIX)]
    results = json.loads((out / "results.json").read_text())
    assert results["epochs"] == 6 and results["test_accuracy"] == json.loads(
        (uninterrupted / "results.json").read_text())["test_accuracy"]


def test_ctrl_c_prints_one_line_and_resumes(uninterrupted, args, tmp_path, capsys, monkeypatch):
    out = tmp_path / "interrupted"
    advance = EpochProgress.advance
    calls = []

    def interrupt_in_epoch_3(self, n):  # Ctrl-C in the middle of the third epoch
        calls.append(n)
        if len(calls) == 2 * 90 + 40:
            raise KeyboardInterrupt
        advance(self, n)

    monkeypatch.setattr(EpochProgress, "advance", interrupt_in_epoch_3)
    assert train_main(["mlp", "--out", str(out)] + args) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"bep-train: interrupted; finished epochs are in {out / 'checkpoint.npz'}; "
                   f"continue with --resume {out}"]
    assert _epoch_done(out / "checkpoint.npz") == 2 and not (out / "model.npz").exists()
    monkeypatch.setattr(EpochProgress, "advance", advance)
    assert train_main(["mlp", "--resume", str(out), "--quiet"]) == 0
    _same_model(uninterrupted, out)
    assert _metrics(out) == _metrics(uninterrupted)


def test_ctrl_c_before_the_first_epoch(args, tmp_path, capsys, monkeypatch):
    def interrupt(self, n):
        raise KeyboardInterrupt

    monkeypatch.setattr(EpochProgress, "advance", interrupt)
    old = tmp_path / "o" / "checkpoint.npz"  # an earlier run's, in the same --out: not this run's progress
    old.parent.mkdir()
    old.write_bytes(b"")
    os.utime(old, (time.time() - 60, time.time() - 60))
    assert train_main(["mlp", "--out", str(tmp_path / "o"), "--overwrite"] + args) == 130
    assert capsys.readouterr().err.strip().splitlines() == ["bep-train: interrupted; no epoch finished, nothing to "
                                                            "resume"]


# Writes a checkpoint, then starts overwriting it and is SIGKILLed half-way through the new file's bytes.
KILL_MID_WRITE = """
import os, signal, sys
import numpy as np
from bep_gpu import checkpoint as ckpt
path = sys.argv[1]
ckpt.save_checkpoint(path, "mlp", {"round": 1}, np.ones((2, 3), np.int8), {"0": np.zeros((3, 4), np.int16)})
real_savez = np.savez
def savez_and_die(f, **arrays):
    real_savez(f, **arrays)
    f.truncate(f.tell() // 2)
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
np.savez = savez_and_die
ckpt.save_checkpoint(path, "mlp", {"round": 2}, np.ones((2, 3), np.int8), {"0": np.ones((3, 4), np.int16)})
"""


def test_kill_mid_write_leaves_the_previous_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.npz"
    proc = subprocess.run([sys.executable, "-c", KILL_MID_WRITE, str(path)], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    data = ckpt.load_checkpoint(str(path))  # intact: the half-written file never replaced it
    assert data["config"] == {"round": 1} and not data["hidden.0"].any()
    stale = [p for p in os.listdir(tmp_path) if p.startswith(ckpt.TEMP_PREFIX)]
    assert len(stale) == 1  # the killed writer's temporary file...
    ckpt.remove_stale_temps(str(tmp_path))  # ...which the next run in this directory removes
    assert os.listdir(tmp_path) == ["checkpoint.npz"]


def test_resume_refuses_what_it_cannot_continue(uninterrupted, tmp_path, capsys):
    weights_only = tmp_path / "w"
    weights_only.mkdir()
    full = np.load(uninterrupted / "model.npz")
    np.savez(weights_only / "checkpoint.npz", format="bep-gpu", version=1, kind="mlp", config="{}",
             prototypes=full["prototypes"], **{k: full[k] for k in ("hidden.0", "hidden.1")})
    truncated = tmp_path / "t"
    truncated.mkdir()
    (truncated / "checkpoint.npz").write_bytes((uninterrupted / "checkpoint.npz").read_bytes()[:1000])
    for run_dir, message in [(weights_only, "no training state"), (truncated, "truncated"),
                             (tmp_path / "none", "no checkpoint.npz")]:
        assert train_main(["mlp", "--resume", str(run_dir), "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


def test_rnn_interrupted_and_resumed_bit_for_bit(tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, 200)
    x = rng.normal(size=(200, 6, 2)) + 0.5 * y[:, None, None]
    np.savez(tmp_path / "s.npz", x_train=x[:160], y_train=y[:160], x_test=x[160:], y_test=y[160:])
    args = ["rnn", "--dataset", f"npz:{tmp_path / 's.npz'}", "--hidden", "20,10", "--gamma0", "5", "--epochs", "4",
            "--batch-size", "16", "--patience", "1", "--expand", "12", "--backend", "numpy", "--quiet"]
    assert train_main(args + ["--out", str(tmp_path / "full")]) == 0
    advance, calls = EpochProgress.advance, []

    def interrupt_in_epoch_2(self, n):
        calls.append(n)
        if len(calls) == 9 + 4:  # 144 training samples: 9 batches per epoch
            raise KeyboardInterrupt
        advance(self, n)

    monkeypatch.setattr(EpochProgress, "advance", interrupt_in_epoch_2)
    assert train_main(args + ["--out", str(tmp_path / "cut")]) == 130
    capsys.readouterr()
    monkeypatch.setattr(EpochProgress, "advance", advance)
    assert train_main(["rnn", "--resume", str(tmp_path / "cut"), "--quiet"]) == 0
    a, b = np.load(tmp_path / "full" / "model.npz"), np.load(tmp_path / "cut" / "model.npz")
    for key in ("hidden.xs", "hidden.ss", "hidden.sy", "prototypes", "encoder.expand", "train.state"):
        assert np.array_equal(a[key], b[key]), key
    assert _metrics(tmp_path / "cut") == _metrics(tmp_path / "full")


# --- extending a run, and what --resume may change ------------------------------------------------------------
def _with_epochs(args, n):
    i = args.index("--epochs")
    return args[:i + 1] + [str(n)] + args[i + 2:]


def test_a_finished_run_extends_bit_for_bit(uninterrupted, args, tmp_path, capsys):
    """3 epochs, then --resume --epochs 6: the same weights, metrics and best model as 6 epochs asked at once;
    the execution options of the second launch (--eval-batch, --quiet off) may differ."""
    out = tmp_path / "short"
    assert train_main(["mlp", "--out", str(out)] + _with_epochs(args, 3)) == 0
    assert json.loads((out / "results.json").read_text())["epochs"] == 3
    assert train_main(["mlp", "--resume", str(out), "--epochs", "6", "--eval-batch", "97"]) == 0
    assert "epoch 6/6" in capsys.readouterr().err
    _same_model(uninterrupted, out)
    assert _metrics(out) == _metrics(uninterrupted)
    for key in COMPARED:
        assert np.array_equal(np.load(out / "best.npz")[key], np.load(uninterrupted / "best.npz")[key]), key
    assert json.loads((out / "config.json").read_text())["epochs"] == 6
    # nothing left to do: said so, exit 0, the run unchanged
    assert train_main(["mlp", "--resume", str(out)]) == 0
    assert "nothing to train" in capsys.readouterr().err
    _same_model(uninterrupted, out)


@pytest.mark.parametrize("extra, message", [
    (["--hidden", "20,20"], "--hidden 20,20 differs from the run's 35,35 (its config.json)"),
    (["--r", "0.5"], "--r 0.5 differs from the run's 0.75"),
    (["--seed", "3"], "--seed 3 differs from the run's 0"),
    (["--gamma-patience", "2"], "--patience 2 differs from the run's 1"),
    (["--gamma-milestones", "3"], "--gamma-milestones 3 differs from the run's none"),
    (["--dataset", "prototypes"], "--dataset prototypes differs"),
    (["--epochs", "5"], "--epochs 5 is fewer than the 6 the run has done"),
    (["--out", "elsewhere"], "a resumed run writes into its own folder"),
])
def test_resume_refuses_a_changed_setting(extra, message, uninterrupted, capsys):
    before = (uninterrupted / "model.npz").read_bytes()
    assert train_main(["mlp", "--resume", str(uninterrupted), "--quiet"] + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert (uninterrupted / "model.npz").read_bytes() == before


def test_resume_accepts_the_same_settings_given_again(uninterrupted, args, capsys):
    assert train_main(["mlp", "--resume", str(uninterrupted), "--encode", "auto", "--plot"] + args) == 0
    capsys.readouterr()


def test_an_rnn_run_does_not_resume_as_mlp(tmp_path, capsys):
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 60)
    np.savez(tmp_path / "s.npz", x_train=rng.normal(size=(50, 4, 1)), y_train=y[:50],
             x_test=rng.normal(size=(10, 4, 1)), y_test=y[50:])
    out = tmp_path / "rnn"
    assert train_main(["rnn", "--dataset", f"npz:{tmp_path / 's.npz'}", "--hidden", "10", "--gamma0", "5",
                       "--epochs", "1", "--backend", "numpy", "--quiet", "--out", str(out)]) == 0
    assert train_main(["mlp", "--resume", str(out), "--epochs", "2"]) == 2
    assert capsys.readouterr().err.strip() == (f"bep-train: error: --resume {out} holds an rnn run; resume it "
                                               "with bep-train rnn")


# --- runs are not overwritten ---------------------------------------------------------------------------------
def test_a_finished_run_is_not_overwritten(uninterrupted, args, tmp_path, capsys):
    before = (uninterrupted / "model.npz").read_bytes()
    assert train_main(["mlp", "--out", str(uninterrupted)] + args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"bep-train: error: --out {uninterrupted} holds a finished run (model.npz); continue it with "
                   f"--resume {uninterrupted}, replace it with --overwrite, or choose another --out"]
    assert (uninterrupted / "model.npz").read_bytes() == before


def test_overwrite_replaces_every_file_of_the_old_run(args, tmp_path):
    out = tmp_path / "run"
    assert train_main(["mlp", "--out", str(out)] + _with_epochs(args, 2)) == 0
    (out / "learning_curve.png").write_bytes(b"an old plot")
    first = np.load(out / "model.npz")["hidden.0"]
    assert train_main(["mlp", "--out", str(out), "--overwrite", "--seed", "1"] + _with_epochs(args, 1)) == 0
    assert not (out / "learning_curve.png").exists()
    assert len(_metrics(out)) == 1 and not np.array_equal(np.load(out / "model.npz")["hidden.0"], first)


def test_a_failed_run_leaves_no_folder(args, tmp_path, monkeypatch):
    """Bad settings, a bad checkpoint, or an interruption before the first epoch ends: no --out folder."""
    out = tmp_path / "a" / "b"
    assert train_main(["mlp", "--out", str(out)] + args + ["--gamma0", "8"]) == 2
    assert train_main(["mlp", "--out", str(out), "--init", str(tmp_path / "none.npz")] + args) == 2

    def interrupt(self, n):
        raise KeyboardInterrupt

    monkeypatch.setattr(EpochProgress, "advance", interrupt)
    assert train_main(["mlp", "--out", str(out)] + args) == 130
    assert not (tmp_path / "a").exists() or not os.listdir(tmp_path / "a")
    assert not out.exists()


# --- early stopping and best.npz --------------------------------------------------------------------------------
def test_early_stop_and_best_model(args, tmp_path):
    """--early-stop 1 stops at the first epoch without a new best validation accuracy; best.npz is the model of
    the best epoch, bit for bit the model.npz of a run that asked for that many epochs."""
    full = tmp_path / "full"
    assert train_main(["mlp", "--out", str(full)] + _with_epochs(args, 6)) == 0
    val = [float(r["val_acc"]) for r in _metrics(full)]
    best, stop = 1, None
    for epoch in range(2, 7):
        if val[epoch - 1] > val[best - 1]:
            best = epoch
        elif stop is None:
            stop = epoch
            break
    early = tmp_path / "early"
    assert train_main(["mlp", "--out", str(early), "--early-stop", "1"] + _with_epochs(args, 6)) == 0
    results = json.loads((early / "results.json").read_text())
    assert results["epochs"] == (stop or 6) and results["stopped_early"] == (stop is not None)
    assert results["best_epoch"] == best
    at_best = tmp_path / "at_best"
    assert train_main(["mlp", "--out", str(at_best)] + _with_epochs(args, best)) == 0
    for key in ("hidden.0", "hidden.1"):
        assert np.array_equal(np.load(early / "best.npz")[key], np.load(at_best / "model.npz")[key]), key
    full_best = json.loads((full / "results.json").read_text())["best_epoch"]
    assert full_best == int(np.argmax(val)) + 1


def test_early_stop_needs_a_validation_split(args, tmp_path, capsys):
    assert train_main(["mlp", "--out", str(tmp_path / "o"), "--early-stop", "2", "--val-fraction", "0"] + args) == 2
    assert "--early-stop needs a validation split" in capsys.readouterr().err
