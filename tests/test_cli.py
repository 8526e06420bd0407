"""The commands from a user's side: bep-eval, --plot, the progress bar, and bad input, which always ends in one
line on stderr and a non-zero exit, with nothing half-written left behind."""
import json
import os
import sys

import numpy as np
import pytest

from bep_gpu import checkpoint as ckpt
from bep_gpu.cli.evaluate import main as eval_main
from bep_gpu.cli.train import main as train_main

TINY = ["--hidden", "10", "--gamma0", "5", "--epochs", "1", "--backend", "numpy", "--quiet"]


def _write(path, **arrays):
    np.savez(path, **arrays)
    return f"npz:{path}"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Small datasets: 'good' (tabular, 3 classes) and deliberately broken variants of it."""
    tmp = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 240)
    x = rng.normal(size=(240, 8)) + 0.8 * y[:, None]
    good = dict(x_train=x[:200], y_train=y[:200], x_test=x[200:], y_test=y[200:])
    nan, inf = x[:200].copy(), x[:200].copy()
    nan[3, 4], inf[5, 1] = np.nan, -np.inf
    d = {"good": _write(tmp / "good.npz", **good),
         "nan": _write(tmp / "nan.npz", **{**good, "x_train": nan}),
         "inf": _write(tmp / "inf.npz", **{**good, "x_train": inf}),
         "unseen_test_label": _write(tmp / "unseen.npz", **{**good, "y_test": np.where(y[200:] == 2, 7, y[200:])}),
         "one_class": _write(tmp / "one.npz", **{**good, "y_train": np.zeros(200, int)}),
         "empty": _write(tmp / "empty.npz", **{**good, "x_train": x[:0], "y_train": y[:0]}),
         "missing_arrays": _write(tmp / "miss.npz", x_train=x, y_train=y),
         "wide": _write(tmp / "wide.npz", **{**good, "x_train": np.hstack([x[:200]] * 2),
                                              "x_test": np.hstack([x[200:]] * 2)})}
    raw = (tmp / "good.npz").read_bytes()
    (tmp / "trunc.npz").write_bytes(raw[: len(raw) // 2])
    d["truncated"] = f"npz:{tmp / 'trunc.npz'}"
    d["absent"] = f"npz:{tmp / 'absent.npz'}"
    return d


@pytest.fixture(scope="module")
def model(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert train_main(["mlp", "--dataset", data["good"], "--hidden", "20", "--gamma0", "5", "--epochs", "2",
                       "--backend", "numpy", "--quiet", "--encode", "thermometer:2", "--out", str(out)]) == 0
    return out


def _as_rnn(arrays, ss_shape=(20, 20)):
    """The MLP checkpoint's arrays turned into a consistent RNN checkpoint (its first matrix as hidden.xs)."""
    config = json.loads(str(arrays["config"]))
    config.update(kind="rnn")
    config.pop("sizes")
    out = {k: v for k, v in arrays.items() if not k.startswith("hidden.")}
    out.update({"kind": np.array("rnn"), "config": np.array(json.dumps(config)), "hidden.xs": arrays["hidden.0"],
                "hidden.ss": np.zeros(ss_shape, np.int16), "hidden.sy": np.zeros((20, 20), np.int16)})
    return out


def _weights_only(arrays):
    return {**{k: v for k, v in arrays.items() if k in ("format", "version", "kind", "prototypes")
               or k.startswith("hidden.")}, "config": np.array("{}")}


def _one_line_error(capsys, prog):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"{prog}: error:"), err
    return err[0]


def _no_partial_files(directory):
    if os.path.isdir(directory):
        names = os.listdir(directory)
        assert "model.npz" not in names and not [n for n in names if n.startswith(ckpt.TEMP_PREFIX)], names


# --- bep-eval -----------------------------------------------------------------------------------------------
def test_eval_reproduces_the_run_and_writes_json(model, tmp_path, capsys):
    results = json.loads((model / "results.json").read_text())
    out = tmp_path / "eval.json"
    assert eval_main([str(model / "model.npz"), "--backend", "numpy", "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"test accuracy {results['test_accuracy']:.4f} on 40 samples")
    report = json.loads(out.read_text())
    assert report["accuracy"] == results["test_accuracy"] and report["n_samples"] == 40
    assert report["split"] == "test" and report["kind"] == "mlp" and report["backend"] == "numpy"
    assert eval_main([str(model / "model.npz"), "--backend", "numpy", "--split", "val", "--out", str(out)]) == 0
    capsys.readouterr()
    assert json.loads(out.read_text())["accuracy"] == results["val_accuracy"]
    assert eval_main([str(model / "model.npz"), "--backend", "numpy", "--split", "train"]) == 0
    assert "on 180 samples" in capsys.readouterr().out  # the run's own 90% training split


def test_eval_rnn(data, tmp_path, capsys):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 120)
    x = rng.normal(size=(120, 7, 2)) + 0.6 * y[:, None, None]
    seq = _write(tmp_path / "seq.npz", x_train=x[:90], y_train=y[:90], x_test=x[90:], y_test=y[90:])
    out = tmp_path / "rnn"
    assert train_main(["rnn", "--dataset", seq, "--hidden", "10", "--gamma0", "5", "--epochs", "1", "--batch-size",
                       "10", "--encode", "thermometer:2", "--backend", "numpy", "--quiet", "--out", str(out)]) == 0
    assert eval_main([str(out / "model.npz"), "--backend", "numpy", "--out", str(tmp_path / "e.json")]) == 0
    capsys.readouterr()
    acc = json.loads((tmp_path / "e.json").read_text())["accuracy"]
    assert acc == json.loads((out / "results.json").read_text())["test_accuracy"]
    assert eval_main([str(out / "model.npz"), "--backend", "numpy", "--dataset", data["good"]]) == 2
    assert "sequence" in _one_line_error(capsys, "bep-eval")


@pytest.mark.parametrize("case, message", [
    ("missing", "does not exist"),
    ("truncated", "truncated"),
    ("not_a_checkpoint", "not a bep-gpu checkpoint"),
    ("other_version", "version 2"),
    ("other_format", "format"),
    ("wide_dataset", "fitted on 8 features, the data has 16"),
    ("sequence_dataset", "expected (N, T, F)"),
    ("weights_only", "pass --dataset"),
    ("bad_out", "cannot write"),
    ("cuda", "--backend cuda"),
])
def test_eval_errors(case, message, model, data, tmp_path, capsys):
    path = model / "model.npz"
    arrays = dict(np.load(path))
    extra = []
    if case == "missing":
        path = tmp_path / "nope.npz"
    elif case == "truncated":
        path = tmp_path / "t.npz"
        path.write_bytes((model / "model.npz").read_bytes()[:2000])
    elif case == "not_a_checkpoint":
        path = tmp_path / "d.npz"
        np.savez(path, x=np.zeros(3))
    elif case in ("other_version", "other_format"):
        arrays.update({"version": np.array(2)} if case == "other_version" else {"format": np.array("keras")})
        path = tmp_path / "c.npz"
        np.savez(path, **arrays)
    elif case == "wide_dataset":
        extra = ["--dataset", data["wide"]]
    elif case == "sequence_dataset":
        path = tmp_path / "r.npz"
        np.savez(path, **_as_rnn(arrays))
    elif case == "weights_only":
        path = tmp_path / "w.npz"
        np.savez(path, **{k: arrays[k] for k in ("format", "version", "kind", "prototypes", "hidden.0")},
                 config="{}")
    elif case == "bad_out":
        (tmp_path / "file").write_text("x")
        extra = ["--out", str(tmp_path / "file" / "e.json")]
    backend = "cuda" if case == "cuda" else "numpy"
    if case == "cuda" and _cuda_usable():
        pytest.skip("a GPU is present")
    assert eval_main([str(path), "--backend", backend] + extra) == 2
    assert message in _one_line_error(capsys, "bep-eval")


def _cuda_usable():
    from bep_gpu.backends import cuda_unavailable_reason

    return cuda_unavailable_reason() is None


# --- bad input to bep-train -----------------------------------------------------------------------------------
@pytest.mark.parametrize("case, args, message", [
    ("missing dataset file", ["--dataset", "absent"], "does not exist"),
    ("truncated dataset file", ["--dataset", "truncated"], "not a valid .npz"),
    ("dataset lacking arrays", ["--dataset", "missing_arrays"], "lacks the arrays x_test, y_test"),
    ("NaN feature", ["--dataset", "nan"], "NaN or inf"),
    ("inf feature", ["--dataset", "inf"], "NaN or inf"),
    ("test label unseen in training", ["--dataset", "unseen_test_label"],
     "y_test holds labels the training labels lack (7); the classes are 0, 1, 2"),
    ("single class", ["--dataset", "one_class"], "fewer than 2 classes"),
    ("empty training set", ["--dataset", "empty"], "empty"),
    ("unknown dataset", ["--dataset", "mnist-but-wrong"], "unknown dataset"),
    ("batch size 0", ["--batch-size", "0"], "--batch-size must be positive"),
    ("gamma0 not dividing", ["--gamma0", "3"], "--gamma0 3 does not divide layer width 10"),
    ("unknown encoding", ["--encode", "fourier"], "unknown encoding"),
    ("augmenting tabular data", ["--augment", "shift:1"], "holds no images of known shape"),
    ("unknown augmentation", ["--augment", "rotate:5"], "'rotate:5' is not understood"),
    ("cuda without GPU", ["--backend", "cuda"], "--backend cuda"),
])
def test_train_bad_input(case, args, message, data, tmp_path, capsys):
    if case == "cuda without GPU" and _cuda_usable():
        pytest.skip("a GPU is present")
    args = [data.get(a, a) for a in args]
    out = tmp_path / "out"
    assert train_main(["mlp", "--dataset", data["good"], "--out", str(out)] + TINY + args) == 2
    assert message in _one_line_error(capsys, "bep-train")
    _no_partial_files(out)


def test_train_unwritable_output(data, tmp_path, capsys):
    (tmp_path / "file").write_text("x")  # tests run as root: only a path through a regular file is unwritable
    assert train_main(["mlp", "--dataset", data["good"], "--out", str(tmp_path / "file" / "sub")] + TINY) == 2
    assert "cannot create output directory" in _one_line_error(capsys, "bep-train")


@pytest.mark.parametrize("case, message", [
    ("missing", "does not exist"),
    ("truncated", "truncated"),
    ("other kind", "holds an rnn model, but an mlp model is needed"),
    ("other version", "version 7"),
    ("wrong input size", "checkpoint expects 12 inputs, but"),
    ("wrong class count", "checkpoint has 4 classes"),
    ("bad shapes", "do not chain"),
])
def test_train_bad_init_checkpoint(case, message, model, data, tmp_path, capsys):
    arrays = dict(np.load(model / "model.npz"))
    path = tmp_path / "init.npz"
    if case == "truncated":
        path.write_bytes((model / "model.npz").read_bytes()[:3000])
    elif case == "other kind":
        arrays = _as_rnn(arrays)
    elif case == "other version":
        arrays["version"] = np.array(7)
    elif case == "wrong input size":  # weights only (config {}), as --init accepts
        arrays = {**_weights_only(arrays), "hidden.0": np.zeros((20, 12), np.int16)}
    elif case == "wrong class count":
        arrays = {**_weights_only(arrays), "prototypes": np.ones((4, 20), np.int8)}
    elif case == "bad shapes":
        arrays = _as_rnn(arrays, ss_shape=(20, 19))
    if case not in ("missing", "truncated"):
        np.savez(path, **arrays)
    kind = "rnn" if case == "bad shapes" else "mlp"
    out = tmp_path / "out"
    assert train_main([kind, "--dataset", data["good"], "--init", str(path), "--out", str(out), "--encode",
                       "thermometer:2", "--gamma0", "5", "--epochs", "1", "--backend", "numpy", "--quiet"]) == 2
    assert message in _one_line_error(capsys, "bep-train")
    _no_partial_files(out)


def test_init_checks_gamma0_against_the_checkpoint_widths(model, data, tmp_path, capsys):
    """The checkpoint's widths (20) decide: gamma0 20 divides them though not the default --hidden 525,525, and
    gamma0 8 divides neither, which is reported against 20."""
    common = ["mlp", "--dataset", data["good"], "--init", str(model / "model.npz"), "--encode", "thermometer:2",
              "--epochs", "1", "--backend", "numpy", "--quiet"]
    assert train_main(common + ["--gamma0", "20", "--out", str(tmp_path / "ok")]) == 0
    assert np.load(tmp_path / "ok" / "model.npz")["hidden.0"].shape == (20, 16)
    capsys.readouterr()
    assert train_main(common + ["--gamma0", "8", "--out", str(tmp_path / "bad")]) == 2
    assert "--gamma0 8 does not divide layer width 20" in _one_line_error(capsys, "bep-train")


def test_results_without_a_validation_split_report_no_validation_figures(data, tmp_path):
    out = tmp_path / "run"
    assert train_main(["mlp", "--dataset", data["good"], "--val-fraction", "0", "--out", str(out), "--encode",
                       "thermometer:2"] + TINY) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["val_accuracy"] is None and results["best_val_accuracy"] is None
    assert results["test_accuracy_at_best_val"] is None and results["test_accuracy"] is not None


def test_initial_weights_respect_the_hidden_clip(data, tmp_path):
    out = tmp_path / "run"
    assert train_main(["mlp", "--dataset", data["good"], "--init-std", "500", "--hidden-clip", "100", "--epochs", "0",
                       "--out", str(out), "--encode", "thermometer:2", "--hidden", "10", "--gamma0", "5",
                       "--backend", "numpy", "--quiet"]) == 0
    h = np.load(out / "model.npz")["hidden.0"]
    assert np.abs(h).max() == 100


# --- int16 limits ---------------------------------------------------------------------------------------------
def test_hidden_weights_saturate_at_the_int16_limits(model, data, tmp_path):
    """Start every hidden weight at +-32767 (and -32768, below the clip) and train: updates and reinforcement
    must saturate at the clip bound, never wrap around."""
    arrays = dict(np.load(model / "model.npz"))
    rng = np.random.default_rng(3)
    start = np.where(rng.random(arrays["hidden.0"].shape) < 0.5, 32767, -32767).astype(np.int16)
    start[0, :4] = -32768
    arrays["hidden.0"] = start
    np.savez(tmp_path / "init.npz", **arrays)
    out = tmp_path / "out"
    # p_r 1000 makes every reinforcement draw fire (p = 1): every entry is pushed outward at every step
    assert train_main(["mlp", "--dataset", data["good"], "--init", str(tmp_path / "init.npz"), "--out", str(out),
                       "--encode", "thermometer:2", "--gamma0", "5", "--epochs", "1", "--batch-size", "40",
                       "--p-r", "1000", "--backend", "numpy", "--quiet"]) == 0
    h = np.load(out / "model.npz")["hidden.0"].astype(np.int32)
    steps = json.loads((out / "results.json").read_text())["steps"]
    assert h.min() >= -32767 and h.max() <= 32767
    assert np.array_equal(np.sign(h), np.sign(start))  # a wrap-around would flip the sign
    # a step moves an entry by at most 2 * batch inwards, and reinforcement pushes it back out by 2
    assert (np.abs(h) >= 32767 - steps * 2 * 40).all()
    assert (np.abs(h) == 32767).any()


# --- --plot and progress --------------------------------------------------------------------------------------
def test_plot_writes_a_png(data, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "out"
    assert train_main(["mlp", "--dataset", data["good"], "--out", str(out), "--plot"] + TINY) == 0
    assert (out / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_fails_before_training(data, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    out = tmp_path / "out"
    assert train_main(["mlp", "--dataset", data["good"], "--out", str(out), "--plot"] + TINY) == 2
    assert "pip install matplotlib" in _one_line_error(capsys, "bep-train")
    assert not (out / "metrics.csv").exists()


def test_progress_plain_lines_and_quiet(data, tmp_path, capsys):
    args = ["mlp", "--dataset", data["good"], "--hidden", "10", "--gamma0", "5", "--epochs", "2", "--backend",
            "numpy"]
    assert train_main(args + ["--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert "epoch 1/2: train " in err and "epoch 2/2: train " in err and "samples/s" in err
    assert train_main(args + ["--out", str(tmp_path / "b"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_progress_bar_postfix_on_a_terminal(data, tmp_path, capsys, monkeypatch):
    pytest.importorskip("tqdm")
    import shutil

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(shutil, "get_terminal_size", lambda *a, **k: os.terminal_size((120, 24)))  # room for all
    assert train_main(["mlp", "--dataset", data["good"], "--hidden", "10", "--gamma0", "5", "--epochs", "2",
                       "--backend", "numpy", "--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert "epoch 2/2" in err and "train=" in err and "trig=" in err and "samples/s=" in err
    assert "epoch 1/2: train" not in err  # the bar replaces the plain line


@pytest.mark.parametrize("columns", [80, 120])
def test_progress_bar_fits_the_terminal(columns, data, tmp_path, capsys, monkeypatch):
    pytest.importorskip("tqdm")
    import shutil

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(shutil, "get_terminal_size", lambda *a, **k: os.terminal_size((columns, 24)))
    assert train_main(["mlp", "--dataset", data["good"], "--hidden", "10", "--gamma0", "5", "--epochs", "2",
                       "--backend", "numpy", "--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    lines = [seg for line in err.splitlines() for seg in line.split("\r") if seg.startswith("epoch")]
    assert lines and max(len(seg) for seg in lines) <= columns, lines
    assert "train=" in lines[-1] and "100%" in lines[-1]
    if columns >= 120:
        assert "samples/s=" in lines[-1]


# --- the small things: --quiet, --version, help defaults, --max-train, plot, --config ---------------------------
def test_quiet_is_quiet_even_about_the_backend(data, tmp_path, capsys, monkeypatch):
    import bep_gpu.backends as backends

    args = ["mlp", "--dataset", data["good"], "--hidden", "10", "--gamma0", "5", "--epochs", "1", "--backend", "auto"]
    monkeypatch.setattr(backends, "_auto_said", False)
    monkeypatch.setattr(backends, "_cache", {})
    assert train_main(args + ["--out", str(tmp_path / "a"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(backends, "_auto_said", False)  # said once per process
    monkeypatch.setattr(backends, "_cache", {})
    assert train_main(args + ["--out", str(tmp_path / "b")]) == 0  # without --quiet the choice is said
    assert "backend auto: using" in capsys.readouterr().err


@pytest.mark.parametrize("module", ["train", "evaluate", "summary", "export", "bench"])
def test_every_command_has_version(module, capsys):
    import importlib

    import bep_gpu

    with pytest.raises(SystemExit) as info:
        importlib.import_module(f"bep_gpu.cli.{module}").main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip().endswith(f" {bep_gpu.__version__}")


def test_every_training_flag_says_its_default():
    import argparse

    from bep_gpu.cli.train import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for kind, parser in sub.choices.items():
        for action in parser._actions:
            if action.dest != "help":
                assert "(default: " in action.help, (kind, action.option_strings)


def test_max_train_is_counted_before_the_split(data, tmp_path, capsys):
    assert train_main(["mlp", "--dataset", data["good"], "--hidden", "10", "--gamma0", "5", "--epochs", "1",
                       "--backend", "numpy", "--max-train", "100", "--out", str(tmp_path / "a")]) == 0
    assert "(90 train + 10 validation samples, the first 100 of the training set;" in capsys.readouterr().err
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["n_train"] + config["n_val"] == 100


def test_plot_has_a_title_and_marks_the_best_epoch(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.axes import Axes

    from bep_gpu import plots

    (tmp_path / "m.csv").write_text("epoch,train_acc,val_acc,test_acc,triggered_frac\n1,0.5,0.6,0.5,0.9\n"
                                    "2,0.6,0.8,0.7,0.8\n3,0.7,0.8,0.7,0.7\n4,0.8,0.7,0.7,0.6\n")
    calls = {}
    for name in ("set_title", "axvline"):
        real = getattr(Axes, name)
        monkeypatch.setattr(Axes, name, lambda self, *a, _real=real, _name=name, **k: (
            calls.setdefault(_name, []).append((a, k)), _real(self, *a, **k))[1])
    plots.plot_metrics(str(tmp_path / "m.csv"), str(tmp_path / "p.png"), title="mlp [8, 10] on x")
    assert calls["set_title"][0][0] == ("mlp [8, 10] on x",)
    assert calls["axvline"][0][0] == (2.0,)  # the first epoch of the best validation accuracy
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_config_starts_a_run_from_a_saved_config(data, tmp_path, capsys):
    first = tmp_path / "first"
    assert train_main(["mlp", "--dataset", data["good"], "--out", str(first), "--encode", "thermometer:3",
                       "--seed", "4"] + TINY) == 0
    again = tmp_path / "again"
    assert train_main(["mlp", "--config", str(first / "config.json"), "--out", str(again)]) == 0
    a, b = np.load(first / "model.npz"), np.load(again / "model.npz")
    assert np.array_equal(a["hidden.0"], b["hidden.0"]) and str(a["encoder.spec"]) == "thermometer:3"
    longer = tmp_path / "longer"
    assert train_main(["mlp", "--config", str(first / "config.json"), "--epochs", "2", "--out", str(longer)]) == 0
    assert json.loads((longer / "results.json").read_text())["epochs"] == 2
    # its own folder holds a finished run: refused, as any run into it would be
    assert train_main(["mlp", "--config", str(first / "config.json")]) == 2
    assert "holds a finished run" in _one_line_error(capsys, "bep-train")
    assert train_main(["rnn", "--config", str(first / "config.json"), "--out", str(tmp_path / "r")]) == 2
    assert "is the config of an mlp run; use bep-train mlp" in _one_line_error(capsys, "bep-train")
    (tmp_path / "bad.json").write_text("{not json")
    assert train_main(["mlp", "--config", str(tmp_path / "bad.json")]) == 2
    assert "not JSON" in _one_line_error(capsys, "bep-train")
