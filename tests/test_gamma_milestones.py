"""--gamma-milestones: a fixed group-size schedule (every gamma grows after each listed epoch, whatever the scores),
for runs without a validation split; resumable; bad values are one-line errors."""
import csv
import json

import numpy as np
import pytest

from bep_gpu.cli.train import main as train_main
from bep_gpu.config import TrainConfig


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from conftest import prototypes_npz

    dataset = prototypes_npz(tmp_path_factory.mktemp("data") / "d.npz", 4, 60, 300, 100, 0.3)
    return ["mlp", "--dataset", dataset, "--hidden", "24,24", "--gamma0", "2", "--backend", "numpy",
            "--quiet", "--val-fraction", "0"]


def _gammas(out):
    with open(out / "metrics.csv", newline="") as f:
        return [r["gammas"] for r in csv.DictReader(f)]


def test_gammas_grow_after_each_milestone(data, tmp_path):
    # divisors of 24: 1 2 3 4 6 8 12 24; epoch e's row holds the gammas it trained with
    assert train_main(data + ["--epochs", "5", "--gamma-milestones", "1,3", "--out", str(tmp_path / "a")]) == 0
    assert _gammas(tmp_path / "a") == ["2/2", "3/3", "3/3", "4/4", "4/4"]
    assert json.load(open(tmp_path / "a" / "config.json"))["gamma_milestones"] == [1, 3]
    # the milestones replace the patience rule, even when that rule is off
    assert train_main(data + ["--epochs", "3", "--patience", "0", "--gamma-milestones", "2",
                              "--out", str(tmp_path / "b")]) == 0
    assert _gammas(tmp_path / "b") == ["2/2", "2/2", "3/3"]


def test_extended_run_keeps_the_milestones(data, tmp_path):
    flags = ["--gamma-milestones", "2,3"]
    assert train_main(data + flags + ["--epochs", "4", "--out", str(tmp_path / "full")]) == 0
    assert train_main(data + flags + ["--epochs", "2", "--out", str(tmp_path / "cut")]) == 0
    assert train_main(["mlp", "--resume", str(tmp_path / "cut"), "--epochs", "4", "--quiet"]) == 0
    a, b = np.load(tmp_path / "full" / "model.npz"), np.load(tmp_path / "cut" / "model.npz")
    for key in ("hidden.0", "hidden.1", "train.state"):
        assert np.array_equal(a[key], b[key]), key
    assert _gammas(tmp_path / "cut") == _gammas(tmp_path / "full") == ["2/2", "2/2", "3/3", "4/4"]


@pytest.mark.parametrize("flag", ["0", "3,2", "2,2", "-1"])
def test_bad_milestones_are_a_one_line_error(flag, data, tmp_path, capsys):
    assert train_main(data + ["--epochs", "1", "--gamma-milestones", flag, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--gamma-milestones takes increasing epoch counts >= 1" in err[0], err
    assert not (tmp_path / "o" / "model.npz").exists()


def test_non_integer_milestones_are_refused(data, tmp_path, capsys):
    assert train_main(data + ["--epochs", "1", "--gamma-milestones", "a", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--gamma-milestones takes comma-separated epochs like 20,30, got 'a'" in err[0], err
    with pytest.raises(Exception, match="--gamma-milestones takes increasing"):
        TrainConfig(gamma_milestones=[1.5]).check()


def test_estimator_takes_milestones():
    from bep_gpu.estimators import MLPClassifier

    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(80, 6)), np.arange(80) % 2
    est = MLPClassifier(hidden=[8], gamma0=2, epochs=2, backend="numpy", gamma_milestones=[1]).fit(x, y)
    assert json.loads(str(est._arrays["train.state"]))["gammas"] == [4]  # 8's divisor after 2, from epoch 2 on
    with pytest.raises(ValueError, match="^gamma_milestones takes increasing epoch counts"):
        MLPClassifier(hidden=[8], gamma0=2, epochs=1, backend="numpy", gamma_milestones=[0]).fit(x, y)
