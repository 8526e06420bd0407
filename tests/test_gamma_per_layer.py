"""--gamma0 with one group size per MLP layer: each layer starts at its own gamma and the schedule grows each to
its own width's next divisor; a wrong count or a non-divisor is a one-line error; the estimator takes a tuple."""
import csv
import json

import numpy as np
import pytest

from bep_gpu.cli.train import main as train_main


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from conftest import prototypes_npz

    dataset = prototypes_npz(tmp_path_factory.mktemp("data") / "d.npz", 4, 60, 300, 100, 0.3)
    return ["mlp", "--dataset", dataset, "--hidden", "24,20", "--backend", "numpy", "--quiet", "--val-fraction", "0"]


def test_each_layer_starts_at_its_own_gamma_and_grows_along_its_divisors(data, tmp_path):
    # divisors of 24: 1 2 3 4 6 8 12 24; of 20: 1 2 4 5 10 20
    out = tmp_path / "a"
    assert train_main(data + ["--gamma0", "3,10", "--epochs", "3", "--gamma-milestones", "1,2", "--out", str(out)]) == 0
    with open(out / "metrics.csv", newline="") as f:
        assert [r["gammas"] for r in csv.DictReader(f)] == ["3/10", "4/20", "6/20"]
    assert json.load(open(out / "config.json"))["gamma0"] == [3, 10]
    # one value still means every layer
    assert train_main(data + ["--gamma0", "4", "--epochs", "1", "--out", str(tmp_path / "b")]) == 0
    assert json.load(open(tmp_path / "b" / "config.json"))["gamma0"] == 4


@pytest.mark.parametrize("gamma0, message", [
    ("3,10,5", "--gamma0 takes one value or one per trainable layer, got [3, 10, 5] for 2 layers"),
    ("3,3", "--gamma0 3 does not divide layer width 20"),
    ("3,a", "--gamma0 takes one integer or one per trainable layer"),
])
def test_bad_per_layer_gammas_are_a_one_line_error(gamma0, message, data, tmp_path, capsys):
    assert train_main(data + ["--gamma0", gamma0, "--epochs", "1", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x" / "config.json").exists()


def test_rnn_keeps_one_gamma(tmp_path, capsys):
    assert train_main(["rnn", "--gamma0", "5,5", "--epochs", "1", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--gamma0 takes one value for rnn (its cell and readout share it)" in err and len(err.splitlines()) == 1


def test_estimator_takes_one_gamma_per_layer():
    from bep_gpu import MLPClassifier

    rng = np.random.default_rng(0)
    x, y = np.where(rng.random((80, 30)) < 0.5, -1.0, 1.0), rng.integers(0, 3, 80)
    clf = MLPClassifier(hidden=(12, 10), gamma0=(4, 5), epochs=1, backend="numpy", val_fraction=0)
    clf.fit(x, y)
    assert clf.predict(x).shape == (80,)
    with pytest.raises(ValueError, match="one per trainable layer"):
        MLPClassifier(hidden=(12, 10), gamma0=(4, 5, 2), epochs=1, backend="numpy").fit(x, y)
