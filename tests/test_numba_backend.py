"""The numba backend equals the NumPy backend bit for bit: the very test bodies that hold the emulated CUDA
kernels to NumPy (tests/test_cuda_emulated.py, every primitive on shapes that straddle words, half-words, tiles
and groups, empty batches, every update form, the reinforcement RNG), run here with `cb` = the numba backend,
plus the numba backend's own tiling edges and whole trainings identical to NumPy."""
import inspect
import zlib

import numpy as np
import pytest

import test_cuda_emulated as _parity
from bep_gpu import bits
from bep_gpu.backends.numba_backend import NumbaBackend
from bep_gpu.backends.numba_simd import TILE_M, TILE_N
from bep_gpu.backends.numpy_backend import NumpyBackend
from bep_gpu.config import TrainConfig
from bep_gpu.trainer import Trainer

NB = NumpyBackend()
# Tests of CUDA-only machinery: the tensor-core kernels and their probe, the impl switch, the tensor-core row counts.
CUDA_ONLY = {"test_xnor_matmul_tc", "test_xnor_matmul_tc_ignores_padding_bits_and_extremes",
             "test_xnor_matmul_tc_property", "test_xnor_matmul_impl_selection", "test_row_popcounts",
             "test_update_operands"}


class NumbaUnderCudaTests(NumbaBackend):
    """The numba backend as the CUDA file's tests call it: they pick the CUDA product kernel (impl= or
    variant(matmul=)), a choice numba does not have, so every pick runs numba's one kernel on the test's shapes."""

    def variant(self, matmul=None, update=None):
        return NumbaUnderCudaTests(update=self.update if update is None else update)

    def xnor_matmul(self, a, b, k, impl=None):
        return super().xnor_matmul(a, b, k)

    def xnor_matmul_sign(self, a, b, k, gate=None, add=None, impl=None):
        return super().xnor_matmul_sign(a, b, k, gate=gate, add=add)


@pytest.fixture(scope="module")
def cb():
    return NumbaUnderCudaTests()


@pytest.fixture(scope="module", params=["popcount", "sparse", "auto"])
def ub(request):
    """The numba backend with each form of the update."""
    return NumbaBackend(update=request.param)


# Every parity test of the CUDA file that takes the backend under test (`cb` or `ub`) runs here on numba.
for _name, _test in vars(_parity).items():
    if (_name.startswith("test_") and _name not in CUDA_ONLY
            and {"cb", "ub"} & set(inspect.signature(_test).parameters)):
        globals()[_name] = _test
del _name, _test


def _bits(gen, rows, n, p=0.5):
    return bits.pack_bits(gen.random((rows, n)) < p)


def _same(x, y):
    assert x.dtype == y.dtype and x.shape == y.shape, (x.dtype, x.shape, y.dtype, y.shape)
    np.testing.assert_array_equal(x, y)


# Sizes around the GEMM tile (TILE_M rows, TILE_N columns = one sign byte), a task's 16 panels and words.
TILE_SHAPES = [(TILE_M - 1, TILE_N - 1, 1), (TILE_M + 1, TILE_N + 1, 65), (2 * TILE_M + 3, 16 * TILE_N + 1, 130),
               (1, 17 * TILE_N - 3, 640), (9, 63, 63), (5, 200, 0)]


@pytest.mark.parametrize("m,n,k", TILE_SHAPES)
@pytest.mark.parametrize("gate", [None, 0, 7])
def test_xnor_matmul_sign_tiles(cb, m, n, k, gate):
    gen = np.random.default_rng(zlib.crc32(f"{m},{n},{k},{gate}".encode()))
    a, b = _bits(gen, m, k), _bits(gen, n, k)
    for got, want in zip(cb.xnor_matmul_sign(a, b, k, gate=gate), NB.xnor_matmul_sign(a, b, k, gate=gate)):
        _same(got, want)


@pytest.mark.parametrize("m,n,k", TILE_SHAPES)
def test_xnor_matmul_sign_add_in_place_and_wrapping(cb, m, n, k):
    gen = np.random.default_rng(zlib.crc32(f"add{m},{n},{k}".encode()))
    a, b = _bits(gen, m, k), _bits(gen, n, k)
    add = gen.integers(-(2**31), 2**31, size=(m, n)).astype(np.int32)  # sums wrap at the int32 edges
    if add.size:
        add.reshape(-1)[::3] = -k  # z = 0 where the product is +k: sign +1
    got_add, want_add = add.copy(), add.copy()
    got = cb.xnor_matmul_sign(a, b, k, gate=3, add=got_add)
    want = NB.xnor_matmul_sign(a, b, k, gate=3, add=want_add)
    assert got[0] is got_add
    for g, w in zip(got, want):
        _same(g, w)
    strided = np.zeros((m, 2 * n), dtype=np.int32)[:, ::2]  # a non-contiguous add is written back
    strided[...] = add
    cb.xnor_matmul_sign(a, b, k, add=strided)
    _same(strided, want_add)


@pytest.mark.parametrize("update", ["popcount", "sparse"])
@pytest.mark.parametrize("n,k,j", [(TILE_M + 1, TILE_N + 1, 129), (64, 65, 16 * TILE_N + 3), (200, 3, 5)])
def test_update_forms_at_tile_edges(update, n, k, j):
    bk = NumbaBackend(update=update)
    gen = np.random.default_rng(zlib.crc32(f"{update}{n},{k},{j}".encode()))
    sel, t, x = _bits(gen, n, k, 0.3), _bits(gen, n, k), _bits(gen, n, j)
    _same(bk.update_delta(sel, t, x, k, j), NB.update_delta(sel, t, x, k, j))
    h = gen.integers(-20, 21, size=(k, j)).astype(np.int16)
    got, want = h.copy(), h.copy()
    bk.batch_update(got, sel, t, x, 11)
    NB.batch_update(want, sel, t, x, 11)
    _same(got, want)


def test_threads_do_not_change_the_integers(cb):
    """One thread and numba's default give the same integers (the parallel split is over independent outputs)."""
    import numba

    gen = np.random.default_rng(4)
    a, b = _bits(gen, 300, 700), _bits(gen, 600, 700)  # large enough for the parallel path
    many = cb.xnor_matmul(a, b, 700)
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        one = cb.xnor_matmul(a, b, 700)
    finally:
        numba.set_num_threads(before)
    _same(one, many)
    _same(many, NB.xnor_matmul(a, b, 700))


def _dataset(tmp_path, rnn: bool):
    rng = np.random.default_rng(11)
    if rnn:
        y = rng.integers(0, 3, size=130)
        x = np.where(rng.random((130, 5, 20)) < 0.5, -1, 1) * np.where(y % 2, 1, -1)[:, None, None]
    else:
        protos = rng.choice([-1, 1], size=(4, 100))
        y = rng.integers(0, 4, size=230)
        x = protos[y] * np.where(rng.random((230, 100)) < 0.3, -1, 1)
    path = tmp_path / "data.npz"
    n = 100 if rnn else 190
    np.savez(path, x_train=x[:n], y_train=y[:n], x_test=x[n:], y_test=y[n:])
    return f"npz:{path}"


@pytest.mark.parametrize("kind, hidden, gamma0, extra", [
    ("mlp", [35, 35], 7, {"stability": "z"}),
    ("mlp", [70], 35, {"stability": "hidden"}),
    ("mlp", [70], 35, {"stability": "flips"}),  # 100 inputs: an even fan-in
    ("rnn", [35], 7, {"encode": "sign"}),
    ("rnn", [35, 21], 7, {"encode": "sign", "rnn_mask": "shared", "horizon": 3}),
])
def test_training_identical_to_numpy(tmp_path, kind, hidden, gamma0, extra):
    """Whole runs (shuffling, a short last batch, reinforcement, the group-size schedule, evaluation) give
    NumPy's checkpoints and metrics on the numba backend."""
    common = dict(kind=kind, dataset=_dataset(tmp_path, kind == "rnn"), hidden=hidden, gamma0=gamma0, epochs=3,
                  batch_size=40, patience=1, quiet=True, **extra)
    runs = {}
    for name in ("numpy", "numba"):
        Trainer(TrainConfig(backend=name, out=str(tmp_path / name), **common)).run()
        runs[name] = np.load(tmp_path / name / "model.npz")
    keys = [k for k in runs["numpy"].files if k.startswith("hidden.")] + ["prototypes", "train.state"]
    for key in keys:
        assert np.array_equal(runs["numpy"][key], runs["numba"][key]), key
    metrics = [(tmp_path / name / "metrics.csv").read_text().splitlines() for name in ("numpy", "numba")]
    strip = [[",".join(row.split(",")[:7]) for row in m] for m in metrics]  # all but the timing columns
    assert strip[0] == strip[1]
