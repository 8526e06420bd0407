"""A whole training run gives identical checkpoints on the NumPy backend and on the CUDA backend's kernels
(executed on the CPU by the emulator in tests/emu; under -m gpu, test_gpu.py does the same on a device)."""
import numpy as np
import pytest

import emu
from bep_gpu.config import TrainConfig
from bep_gpu.trainer import Trainer
from conftest import needs_emulator

pytestmark = needs_emulator


@pytest.mark.parametrize("hidden, gamma0, stability", [([35, 35], 7, "z"), ([70], 35, "hidden")])
def test_training_run_identical_on_numpy_and_emulated_cuda(tmp_path, hidden, gamma0, stability):
    # A small dataset file keeps the emulated evaluation passes short.
    rng = np.random.default_rng(5)
    protos = rng.choice([-1, 1], size=(4, 100))
    y = rng.integers(0, 4, size=200)
    x = protos[y] * np.where(rng.random((200, 100)) < 0.3, -1, 1)
    data = tmp_path / "data.npz"
    np.savez(data, x_train=x[:160], y_train=y[:160], x_test=x[160:], y_test=y[160:])
    common = dict(dataset=f"npz:{data}", hidden=hidden, gamma0=gamma0, epochs=2, batch_size=50,
                  patience=1, stability=stability, quiet=True, eval_batch=4096)
    runs = {}
    # cuda-emu-graph: the --cuda-graph data flow (static batch buffers, device step counter, a short last batch
    # of 44 rows run eagerly), with the steps called directly where a GPU would replay the captured graph.
    for name, backend, graph in (("numpy", None, False), ("cuda-emu", emu.make_emulated_backend(), False),
                                 ("cuda-emu-graph", emu.make_emulated_backend(), True)):
        cfg = TrainConfig(backend="numpy", out=str(tmp_path / name), cuda_graph=graph, **common)
        Trainer(cfg, backend=backend).run()
        runs[name] = np.load(tmp_path / name / "model.npz")
    a = runs["numpy"]
    hidden_keys = [k for k in a.files if k.startswith("hidden.")]
    assert hidden_keys
    for name in ("cuda-emu", "cuda-emu-graph"):
        for key in hidden_keys + ["prototypes", "train.state"]:
            assert np.array_equal(a[key], runs[name][key]), (name, key)


def test_cuda_graph_needs_the_cuda_backend(tmp_path):
    from bep_gpu.errors import UserError

    cfg = TrainConfig(backend="numpy", out=str(tmp_path), cuda_graph=True, max_train=50, quiet=True)
    with pytest.raises(UserError, match="--cuda-graph replays steps on one GPU.*this run uses numpy"):
        Trainer(cfg)


def test_rnn_cuda_graph_data_flow_identical_to_numpy(tmp_path):
    """The --cuda-graph path of a BEP-TT run ((N, T, words) batch buffers, device step counter, short last batch)
    on the emulated kernels gives NumPy's checkpoint."""
    import json

    rng = np.random.default_rng(9)
    y = rng.integers(0, 4, size=150)
    x = np.where(rng.random((150, 4, 20)) < 0.5, -1, 1) * np.where(y % 2, 1, -1)[:, None, None]
    data = tmp_path / "data.npz"
    np.savez(data, x_train=x[:120], y_train=y[:120], x_test=x[120:], y_test=y[120:])
    runs = {}
    for name, backend, graph in (("numpy", None, False), ("graph", emu.make_emulated_backend(), True)):
        cfg = TrainConfig(kind="rnn", dataset=f"npz:{data}", hidden=[35], gamma0=7, epochs=2, batch_size=40,
                          patience=1, encode="sign", backend="numpy", cuda_graph=graph, out=str(tmp_path / name),
                          quiet=True)
        Trainer(cfg, backend=backend).run()
        runs[name] = np.load(tmp_path / name / "model.npz")
    assert json.loads(str(runs["numpy"]["train.state"]))["step"] == 6  # 108 rows: 2 full batches, a short one
    for key in [k for k in runs["numpy"].files if k.startswith("hidden.")] + ["train.state"]:
        assert np.array_equal(runs["numpy"][key], runs["graph"][key]), key


def test_resume_takes_this_launchs_cuda_graph(tmp_path):
    """--cuda-graph is how a run executes, not what it trains: a resumed run takes the flag of its own launch."""
    from bep_gpu.errors import UserError

    out = tmp_path / "run"
    Trainer(TrainConfig(backend="numpy", out=str(out), max_train=60, hidden=[35], gamma0=7, epochs=1,
                        quiet=True)).run()
    again = TrainConfig(backend="numpy", resume=str(out), epochs=2, cuda_graph=True, quiet=True)
    with pytest.raises(UserError, match="--cuda-graph"):
        Trainer(again)
    assert Trainer(TrainConfig(backend="numpy", resume=str(out), quiet=True)).cfg.cuda_graph is False
