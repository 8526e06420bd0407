"""--freeze: the named weight matrices end exactly as they started, the others train, on every backend, in one
process and data-parallel; bad indices are one-line errors."""
import json

import numpy as np
import pytest

from bep_gpu import pack_bits
from bep_gpu.cli.train import main as train_main
from bep_gpu.config import TrainConfig
from bep_gpu.mlp import init_hidden
from bep_gpu.trainer import Trainer
from test_augment import KIND_SETTINGS, _dataset
from test_distributed import in_ranks, run_steps


def _train(kind, bk, out, freeze, **settings):
    settings = {"epochs": 2, **KIND_SETTINGS[kind], **settings}
    cfg = TrainConfig(kind=kind, dataset="bars", out=str(out), batch_size=10, quiet=True, backend="numpy",
                      encode="thermometer:2", freeze=freeze, p_r=2.0, **settings)
    trainer = Trainer(cfg, backend=bk, dataset=_dataset(kind))
    start = [bk.to_numpy(h).copy() for h in trainer.task.hidden]
    trainer.run()
    return start, np.load(out / "model.npz")


@pytest.mark.parametrize("kind, freeze, hidden", [("mlp", [0], [32, 16]), ("mlp", [1], [32, 16]), ("conv", [0], [16]),
                                                  ("conv", [1], [16])])
def test_frozen_matrices_keep_their_start_on_every_backend(kind, freeze, hidden, bk, tmp_path):
    from conftest import make_backend

    start, ref = _train(kind, make_backend("numpy"), tmp_path / "numpy", freeze, hidden=hidden)
    _, got = _train(kind, bk, tmp_path / "bk", freeze, hidden=hidden)
    assert len(start) == 2
    for i, h0 in enumerate(start):
        key = f"hidden.{i}"
        assert np.array_equal(ref[key], got[key]), key
        assert np.array_equal(ref[key], h0) == (i in freeze), key  # frozen: unchanged; the others trained
    assert np.array_equal(ref["train.state"], got["train.state"])


def test_data_parallel_freeze_equals_one_process():
    sizes, seed = [70, 20, 15], 4
    rng = np.random.default_rng(seed)
    batches = [(pack_bits(np.where(rng.random((12, 70)) < 0.5, 1, -1)), rng.integers(0, 4, 12)) for _ in range(4)]
    want = run_steps(sizes, "z", batches, seed, frozen=(1,))
    start = init_hidden([(20, 70), (15, 20)], 3.0, seed)
    assert np.array_equal(want[0][1], start[1]) and not np.array_equal(want[0][0], start[0])
    for got in in_ranks(3, lambda comm: run_steps(sizes, "z", batches, seed, comm, frozen=(1,))):
        for a, b in zip(got[0], want[0]):
            assert np.array_equal(a, b)
        assert got[1] == want[1]


def test_frozen_checkpoint_layers_stay_as_loaded(tmp_path):
    from bep_gpu.backends.numpy_backend import NumpyBackend

    _, first = _train("mlp", NumpyBackend(), tmp_path / "first", [])
    cfg = TrainConfig(kind="mlp", dataset="bars", out=str(tmp_path / "tuned"), epochs=1, batch_size=10, quiet=True,
                      backend="numpy", encode="thermometer:2", init=str(tmp_path / "first" / "model.npz"),
                      freeze=[0], gamma0=8)
    Trainer(cfg, backend=NumpyBackend(), dataset=_dataset("mlp")).run()
    tuned = np.load(tmp_path / "tuned" / "model.npz")
    assert np.array_equal(tuned["hidden.0"], first["hidden.0"])
    assert json.loads(str(tuned["config"]))["freeze"] == [0]


@pytest.mark.parametrize("flag, message", [
    ("2", "--freeze 2: the model has 2 weight matrices, hidden.0 to hidden.1"),
    ("0,0", "--freeze takes distinct layer indices >= 0"),
    ("-1", "--freeze takes distinct layer indices >= 0"),
    ("a", "--freeze takes comma-separated layer indices like 0,1, got 'a'"),
])
def test_bad_freeze_is_a_one_line_error(flag, message, tmp_path, capsys):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    x = np.where(rng.random((60, 20)) < 0.5, -1, 1)
    np.savez(tmp_path / "d.npz", x_train=x[:50], y_train=y[:50], x_test=x[50:], y_test=y[50:])
    args = ["mlp", "--dataset", f"npz:{tmp_path / 'd.npz'}", "--hidden", "10,10", "--gamma0", "5", "--epochs", "1",
            "--out", str(tmp_path / "out"), "--quiet", "--freeze", flag]
    assert train_main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "out" / "model.npz").exists()


@pytest.mark.parametrize("value", [[0.5], ["0"], [True], 0, [1, 1]])
def test_config_and_estimator_refuse_anything_but_distinct_indices(value):
    from bep_gpu.errors import UserError
    from bep_gpu.estimators import MLPClassifier

    with pytest.raises(UserError, match="--freeze takes distinct layer indices >= 0"):
        TrainConfig(freeze=value).check()
    if not isinstance(value, int):
        x, y = np.random.default_rng(0).normal(size=(40, 6)), np.arange(40) % 2
        with pytest.raises(ValueError, match="^freeze takes distinct layer indices"):  # the parameter, not the flag
            MLPClassifier(hidden=[10], gamma0=5, epochs=1, backend="numpy", freeze=value).fit(x, y)
