"""bep_gpu.MLPClassifier / RNNClassifier: scikit-learn's estimator protocol, training in memory bit for bit as
bep-train does, the user's labels back from predict and from a saved file, and errors in Python's terms."""
import json
import os

import numpy as np
import pytest

import bep_gpu
from bep_gpu.cli.evaluate import main as eval_main
from bep_gpu.cli.train import main as train_main
from bep_gpu.estimators import NotFittedError, clone

SMALL = dict(hidden=(20,), gamma0=5, epochs=2, backend="numpy", proto_sweeps=2)


def _blobs(n, shape, labels, seed=0):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, len(labels), n)
    x = rng.normal(size=(n, *shape)) + 1.5 * codes.reshape(-1, *([1] * len(shape)))
    return x, np.asarray(labels)[codes]


def test_parameters_follow_the_protocol_without_sklearn():
    est = bep_gpu.MLPClassifier(hidden=(20, 10), gamma0=5)
    params = est.get_params()
    assert params["hidden"] == (20, 10) and params["gamma0"] == 5 and params["patience"] == 5
    assert params["quiet"] is True and params["out"] is None and "horizon" not in params
    assert est.set_params(epochs=3) is est and est.epochs == 3
    twin = clone(est)
    assert twin is not est and twin.get_params() == est.get_params()
    assert repr(est) == "MLPClassifier(hidden=(20, 10), epochs=3, gamma0=5)"
    rnn = bep_gpu.RNNClassifier()
    assert rnn.hidden == (1035,) and rnn.gamma0 == 15 and rnn.batch_size == 0 and rnn.horizon == 0
    with pytest.raises(TypeError, match="unexpected keyword arguments gamma"):
        bep_gpu.MLPClassifier(gamma=5)
    with pytest.raises(ValueError, match="invalid parameter 'gamma'"):
        est.set_params(gamma=5)
    with pytest.raises(ValueError, match="not fitted yet") as info:  # scikit-learn's class where installed
        est.predict(np.zeros((2, 3)))
    assert isinstance(info.value, AttributeError) and NotFittedError.__mro__[1:3] == (ValueError, AttributeError)


def test_fit_trains_in_memory_like_bep_train(tmp_path, monkeypatch):
    """Same settings, same data: the estimator's weights are bep-train's, bit for bit; no file is written."""
    x, y = _blobs(300, (6,), [3, 8, 9])
    x_test, y_test = _blobs(60, (6,), [3, 8, 9], seed=1)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x_test, y_test=y_test)
    assert train_main(["mlp", "--dataset", f"npz:{tmp_path / 'd.npz'}", "--hidden", "20", "--gamma0", "5",
                       "--epochs", "2", "--proto-sweeps", "2", "--backend", "numpy", "--quiet",
                       "--out", str(tmp_path / "run")]) == 0
    monkeypatch.chdir(tmp_path / "run")
    before = sorted(os.listdir("."))
    est = bep_gpu.MLPClassifier(**SMALL).fit(x, y)
    assert sorted(os.listdir(".")) == before  # in memory: no runs/ folder, no file
    saved = np.load(tmp_path / "run" / "model.npz")
    for name, h in est.model_.hidden.items():
        assert np.array_equal(h, saved[f"hidden.{name}"]), name
    assert est.classes_.tolist() == [3, 8, 9] and est.n_features_in_ == 6
    test_acc = json.loads((tmp_path / "run" / "results.json").read_text())["test_accuracy"]
    assert est.score(x_test, y_test) == test_acc
    logits = est.decision_function(x_test)
    assert logits.dtype == np.int32 and logits.shape == (60, 3)
    assert np.array_equal(est.classes_[np.argmax(logits, axis=1)], est.predict(x_test))


def test_string_labels_images_and_save(tmp_path, capsys):
    x, y = _blobs(200, (5, 5), ["ant", "bee"])
    est = bep_gpu.MLPClassifier(**SMALL).fit(x, y)
    pred = est.predict(x)
    assert set(pred) <= {"ant", "bee"} and est.n_features_in_ == 25 and est.model_.encoder.spec == "median"
    margin = est.decision_function(x)  # two classes: scikit-learn's one column, > 0 predicts classes_[1]
    assert margin.shape == (200,) and np.array_equal(np.where(margin > 0, "bee", "ant"), pred)
    est.save(tmp_path / "m.npz")
    loaded = bep_gpu.load(tmp_path / "m.npz")
    assert np.array_equal(loaded.predict(x), pred) and loaded.score(x, y) == est.score(x, y)
    np.savez(tmp_path / "d.npz", x_train=x.reshape(200, -1), y_train=y, x_test=x.reshape(200, -1), y_test=y)
    assert eval_main([str(tmp_path / "m.npz"), "--dataset", f"npz:{tmp_path / 'd.npz'}", "--backend", "numpy"]) == 0
    assert capsys.readouterr().out.startswith(f"test accuracy {est.score(x, y):.4f}")


def test_rnn_takes_univariate_series_and_a_window(tmp_path):
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 120)
    x = rng.normal(size=(120, 9)) + y[:, None]
    est = bep_gpu.RNNClassifier(hidden=(10,), gamma0=5, epochs=2, batch_size=12, window=4, backend="numpy",
                                proto_sweeps=2).fit(x, y)
    noisy = x.copy()
    noisy[:, :5] = 100.0  # outside the window
    assert np.array_equal(est.predict(noisy), est.predict(x))
    assert est.model_.kind == "rnn" and est.model_.n_inputs == 1035  # the default expansion
    assert est.model_.encoder.spec == "thermometer:16"
    est.save(tmp_path / "r.npz")
    assert np.array_equal(bep_gpu.load(tmp_path / "r.npz").predict(x[:, :, None]), est.predict(x))


def test_conv_classifier_trains_like_bep_train_conv(tmp_path):
    """ConvClassifier: images (N, H, W) and any labels in; the weights are bep-train conv's, bit for bit; predict,
    decision_function and a saved checkpoint agree."""
    x, y = _blobs(160, (6, 6), ["a", "b", "c"])
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x[:40], y_test=y[:40])
    assert train_main(["conv", "--dataset", f"npz:{tmp_path / 'd.npz'}", "--conv", "4:3:1:1", "--hidden", "6",
                       "--gamma0", "2,3", "--epochs", "2", "--proto-sweeps", "2", "--backend", "numpy", "--quiet",
                       "--out", str(tmp_path / "run")]) == 0
    est = bep_gpu.ConvClassifier(**{**SMALL, "conv": ((4, 3, 1, 1),), "hidden": (6,), "gamma0": (2, 3)}).fit(x, y)
    saved = np.load(tmp_path / "run" / "model.npz")
    for name, h in est.model_.hidden.items():
        assert np.array_equal(h, saved[f"hidden.{name}"]), name
    pred = est.predict(x)
    assert set(pred) <= {"a", "b", "c"}
    assert np.array_equal(est.classes_[np.argmax(est.decision_function(x), axis=1)], pred)
    est.save(tmp_path / "c.npz")
    assert np.array_equal(bep_gpu.load(tmp_path / "c.npz").predict(x[..., None]), pred)
    assert "conv" not in bep_gpu.MLPClassifier().get_params()  # kind-only parameters stay with their kind


def test_early_stop_keeps_the_best_model():
    x, y = _blobs(300, (6,), [0, 1, 2])
    est = bep_gpu.MLPClassifier(**{**SMALL, "epochs": 8, "early_stop": 1}).fit(x, y)
    best = est.results_["best_epoch"]
    at_best = bep_gpu.MLPClassifier(**{**SMALL, "epochs": best}).fit(x, y)
    for name, h in est.model_.hidden.items():
        assert np.array_equal(h, at_best.model_.hidden[name]), name


@pytest.mark.parametrize("params, fit_args, message", [
    (dict(gamma0=3), None, "gamma0 3 does not divide layer width 20"),
    (dict(batch_size=0), None, "batch_size must be positive"),
    (dict(early_stop=2, val_fraction=0), None, "early_stop needs a validation split: set val_fraction above 0"),
    ({}, "one class", "fewer than 2 classes"),
    ({}, "3-D labels", "y must be 1-D labels"),
    ({}, "NaN", "x contains NaN or inf"),
])
def test_errors_speak_python(params, fit_args, message):
    x, y = _blobs(50, (4,), [0, 1])
    if fit_args == "one class":
        y = np.zeros(50, int)
    elif fit_args == "3-D labels":
        y = y.reshape(50, 1, 1)
    elif fit_args == "NaN":
        x[0, 0] = np.nan
    with pytest.raises(ValueError) as info:
        bep_gpu.MLPClassifier(**{**SMALL, **params}).fit(x, y)
    assert message in str(info.value) and "--" not in str(info.value)


@pytest.mark.parametrize("kind", ["MLPClassifier", "RNNClassifier"])
def test_scikit_learn_estimator_checks(kind):
    checks = pytest.importorskip("sklearn.utils.estimator_checks")
    est = getattr(bep_gpu, kind)(hidden=(10,), gamma0=5, epochs=2, backend="numpy", proto_sweeps=2)
    failed = [(r["check_name"], str(r["exception"])[:200]) for r in checks.check_estimator(est, on_fail=None)
              if r["status"] == "failed"]
    assert failed == []
