"""No silent fallbacks: a given --data-dir is the only place looked at, the classes are the training labels'
(any integers or strings, stored with the model), and a damaged checkpoint is refused by every command."""
import json

import numpy as np
import pytest

import bep_gpu
from bep_gpu import UserError
from bep_gpu.cli.evaluate import main as eval_main
from bep_gpu.cli.export import main as export_main
from bep_gpu.cli.summary import main as summary_main
from bep_gpu.cli.train import main as train_main
from bep_gpu.data import load_dataset

TINY = ["--gamma0", "5", "--epochs", "1", "--backend", "numpy", "--quiet", "--encode", "thermometer:2"]


def _npz(path, y_train, y_test, seed=0):
    rng = np.random.default_rng(seed)
    codes = np.unique(y_train, return_inverse=True)[1]
    x = rng.normal(size=(len(y_train), 6)) + codes[:, None]
    x_test = rng.normal(size=(len(y_test), 6))
    np.savez(path, x_train=x, y_train=y_train, x_test=x_test, y_test=y_test)
    return f"npz:{path}"


def _one_line(capsys, prog):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{prog}: error:"), err
    return err[0]


# --- --data-dir ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, message", [
    ("fashion-mnist", "Fashion-MNIST not found in --data-dir .* it holds no IDX files"),
    ("seq-fashion-mnist", "Fashion-MNIST not found in --data-dir .* it holds no IDX files"),
    ("ucr:ItalyPowerDemand", "holds no ItalyPowerDemand_TRAIN.ts/_TEST.ts pair"),
    ("digits", "holds no digits.csv.gz"),
])
def test_a_given_data_dir_is_the_only_place_looked_at(name, message, tmp_path):
    """Even where an installed copy exists (sktime's, scikit-learn's, Debian's), an empty --data-dir fails."""
    with pytest.raises(UserError, match=message):
        load_dataset(name, data_dir=str(tmp_path), sequence=name.startswith(("seq", "ucr")))
    with pytest.raises(UserError, match="is not a directory"):
        load_dataset(name, data_dir=str(tmp_path / "nonexistent"))


def test_data_dir_for_a_dataset_without_files_is_refused(tmp_path, capsys):
    assert train_main(["mlp", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o"), "--hidden", "10"]
                      + TINY) == 2
    assert "dataset prototypes reads no data directory" in _one_line(capsys, "bep-train")
    assert not (tmp_path / "o").exists()


# --- classes ---------------------------------------------------------------------------------------------------
def test_classes_are_the_training_labels(tmp_path, capsys):
    """Labels {0, 5, 10} give 3 classes, not 11; a test label outside them is an error, not a lower accuracy."""
    rng = np.random.default_rng(1)
    y = rng.choice([0, 5, 10], 150)
    data = _npz(tmp_path / "d.npz", y[:120], y[120:])
    out = tmp_path / "run"
    assert train_main(["mlp", "--dataset", data, "--hidden", "10", "--out", str(out)] + TINY) == 0
    assert json.loads((out / "config.json").read_text())["n_classes"] == 3
    model = bep_gpu.load(out / "model.npz")
    assert model.classes.tolist() == [0, 5, 10] and set(model.predict(rng.normal(size=(40, 6)))) <= {0, 5, 10}
    bad = _npz(tmp_path / "bad.npz", y[:120], np.where(y[120:] == 5, 7, y[120:]))
    assert train_main(["mlp", "--dataset", bad, "--hidden", "10", "--out", str(tmp_path / "b")] + TINY) == 2
    assert "y_test holds labels the training labels lack (7); the classes are 0, 5, 10" in _one_line(
        capsys, "bep-train")
    assert eval_main([str(out / "model.npz"), "--dataset", bad, "--backend", "numpy"]) == 2
    assert "lack (7)" in _one_line(capsys, "bep-eval")


def test_string_labels_round_trip_through_the_checkpoint(tmp_path, capsys):
    rng = np.random.default_rng(2)
    y = rng.choice(np.array(["cat", "dog", "emu"]), 150)
    data = _npz(tmp_path / "d.npz", y[:120], y[120:])
    out = tmp_path / "run"
    assert train_main(["mlp", "--dataset", data, "--hidden", "10", "--out", str(out)] + TINY) == 0
    model = bep_gpu.load(out / "model.npz")
    x_test = np.load(tmp_path / "d.npz")["x_test"]
    pred = model.predict(x_test)
    assert model.classes.tolist() == ["cat", "dog", "emu"] and pred.dtype.kind == "U"
    assert model.score(x_test, y[120:]) == json.loads((out / "results.json").read_text())["test_accuracy"]
    assert eval_main([str(out / "model.npz"), "--backend", "numpy"]) == 0
    capsys.readouterr()


def test_labels_map_to_the_init_checkpoints_classes(tmp_path):
    """--init on data whose labels are a subset, in another order: the checkpoint's classes decide."""
    rng = np.random.default_rng(3)
    y = rng.choice([2, 4, 6], 150)
    out = tmp_path / "a"
    assert train_main(["mlp", "--dataset", _npz(tmp_path / "a.npz", y[:120], y[120:]), "--hidden", "10",
                       "--out", str(out)] + TINY) == 0
    sub = np.where(y == 2, 6, y)  # only 4 and 6
    assert train_main(["mlp", "--dataset", _npz(tmp_path / "b.npz", sub[:120], sub[120:]), "--init",
                       str(out / "model.npz"), "--out", str(tmp_path / "b")] + TINY) == 0
    assert np.load(tmp_path / "b" / "model.npz")["classes"].tolist() == [2, 4, 6]


# --- checkpoints validated as a whole --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def three_layers(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("three")
    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, 150)
    data = _npz(tmp / "d.npz", y[:120], y[120:])
    assert train_main(["mlp", "--dataset", data, "--hidden", "10,10,10", "--out", str(tmp / "run")] + TINY) == 0
    return tmp / "run", data


def _damaged(run, tmp_path, case):
    arrays = dict(np.load(run / "model.npz"))
    if case == "a layer removed":
        del arrays["hidden.1"]
    elif case == "the last layer removed":
        del arrays["hidden.2"]
    elif case == "a first layer of the wrong width":
        arrays["hidden.0"] = arrays["hidden.0"][:, :-1]
    elif case == "an rnn array in an mlp":
        arrays["hidden.ss"] = np.zeros((10, 10), np.int16)
    elif case == "classes of the wrong length":
        arrays["classes"] = np.arange(4)
    path = tmp_path / "model.npz"
    np.savez(path, **arrays)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    np.savez(run_dir / "checkpoint.npz", **arrays)
    return path, run_dir


@pytest.mark.parametrize("case, message", [
    ("a layer removed", "lacks hidden.1"),
    ("the last layer removed", "config records layer sizes [12, 10, 10, 10], the arrays give [12, 10, 10]"),
    ("a first layer of the wrong width", "the arrays give [11, 10, 10, 10]"),
    ("an rnn array in an mlp", "holds unexpected arrays hidden.ss"),
    ("classes of the wrong length", "'classes' must list one integer or string label per prototype row"),
])
def test_every_command_refuses_a_damaged_checkpoint(case, message, three_layers, tmp_path, capsys):
    run, data = three_layers
    path, run_dir = _damaged(run, tmp_path, case)
    with pytest.raises(UserError, match="^checkpoint .*" + message.replace("[", r"\[").replace("(", r"\(")):
        bep_gpu.load(path)
    for prog, fn, argv in [("bep-eval", eval_main, [str(path), "--backend", "numpy"]),
                           ("bep-summary", summary_main, [str(path)]),
                           ("bep-export", export_main, [str(path), "--out", str(tmp_path / "exp")]),
                           ("bep-train", train_main, ["mlp", "--dataset", data, "--init", str(path), "--out",
                                                      str(tmp_path / "i")] + TINY),
                           ("bep-train", train_main, ["mlp", "--resume", str(run_dir), "--quiet"])]:
        assert fn(argv) == 2, prog
        assert message in _one_line(capsys, prog), prog
    assert not (tmp_path / "exp").exists() and not (tmp_path / "i").exists()
