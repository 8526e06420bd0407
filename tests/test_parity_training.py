"""A whole training run gives identical checkpoints on the NumPy backend and on the CUDA backend's kernels
(executed on the CPU by the emulator in tests/emu; under -m gpu, test_gpu.py does the same on a device)."""
import numpy as np
import pytest

from bep_gpu.config import TrainConfig
from bep_gpu.trainer import Trainer

emu = pytest.importorskip("emu")


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
    for name, backend in (("numpy", None), ("cuda-emu", emu.make_emulated_backend())):
        cfg = TrainConfig(backend="numpy", out=str(tmp_path / name), **common)
        Trainer(cfg, backend=backend).run()
        runs[name] = np.load(tmp_path / name / "model.npz")
    a, b = runs["numpy"], runs["cuda-emu"]
    hidden_keys = [k for k in a.files if k.startswith("hidden.")]
    assert hidden_keys
    for key in hidden_keys + ["prototypes", "train.state"]:
        assert np.array_equal(a[key], b[key]), key
