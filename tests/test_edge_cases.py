"""Edge cases built on purpose rather than left to random data: z = 0 in every fused epilogue (sign(0) = +1),
ties in every group select (lowest index wins), empty batches, evaluation in many chunks, the checkpoint files'
mode and every settings check. Primitives run on every backend of the `bk` fixture (NumPy, and the emulated
CUDA kernels with CUDA-core and tensor-core products)."""
import json
import os

import numpy as np
import pytest

import dense_reference as ref
from bep_gpu import bep_mlp, bep_rnn, bits, load
from bep_gpu import checkpoint as ckpt
from bep_gpu.backends.numpy_backend import NumpyBackend
from bep_gpu.cli.train import main as train_main
from bep_gpu.config import TrainConfig
from bep_gpu.errors import UserError
from bep_gpu.mlp import MLPTask, init_hidden
from bep_gpu.trainer import accuracy


def pm1(gen, *shape):
    return np.where(gen.random(shape) < 0.5, 1, -1).astype(np.int8)


def unpack(bk, words, n):
    return bits.unpack_bits(bk.to_numpy(words), n)


# --- z = 0 in every epilogue ------------------------------------------------------------------------------------
def zero_product_operands(m=70, n=67, k=130, seed=0):
    """+-1 a (m, k), b (n, k) with z = a b^T exactly 0 at many entries: b_j is row j % 35 of a with exactly k / 2
    signs flipped, and rows i and i + 35 of a are equal, so each column has two zeros at least."""
    gen = np.random.default_rng(seed)
    a = pm1(gen, m, k)
    a[35:] = a[:m - 35]
    b = np.empty((n, k), np.int8)
    for j in range(n):
        flip = np.ones(k, np.int8)
        flip[gen.permutation(k)[:k // 2]] = -1
        b[j] = a[j % 35] * flip
    z = ref.xnor_matmul(a, b)
    assert (z[np.arange(n) % 35, np.arange(n)] == 0).all() and (z == 0).mean() > 0.05
    return a, b, z


def test_sign_and_gate_epilogues_at_z_zero(bk):
    a, b, z = zero_product_operands()
    k = a.shape[1]
    got_z, signs = bk.xnor_matmul_sign(bits.pack_bits(a), bits.pack_bits(b), k)
    np.testing.assert_array_equal(bk.to_numpy(got_z), z)
    np.testing.assert_array_equal(unpack(bk, signs, z.shape[1]), np.where(z >= 0, 1, -1))  # sign(0) = +1
    for gate in (0, 2):  # |0| <= 0: a zero is gated even at threshold 0
        _, signs, gates = bk.xnor_matmul_sign(bits.pack_bits(a), bits.pack_bits(b), k, gate=gate)
        np.testing.assert_array_equal(unpack(bk, signs, z.shape[1]), np.where(z >= 0, 1, -1))
        np.testing.assert_array_equal(unpack(bk, gates, z.shape[1]), np.where(np.abs(z) <= gate, 1, -1))
    _, _, gates = bk.xnor_matmul_sign(bits.pack_bits(a), bits.pack_bits(b), k, gate=-1)
    assert (unpack(bk, gates, z.shape[1]) == -1).all()


def test_state_add_epilogue_at_z_zero(bk):
    """A recurrent step adds W_ss s to the input product: sums planted at -1, 0 and +1."""
    a, b, z = zero_product_operands(seed=1)
    offset = np.random.default_rng(2).integers(-1, 2, size=z.shape)
    add = (offset - z).astype(np.int32)  # add + z = offset
    got = bk.asarray(add.copy())
    out, signs = bk.xnor_matmul_sign(bits.pack_bits(a), bits.pack_bits(b), a.shape[1], add=got)
    np.testing.assert_array_equal(bk.to_numpy(out), offset)
    np.testing.assert_array_equal(unpack(bk, signs, z.shape[1]), np.where(offset >= 0, 1, -1))


def test_gated_product_and_pack_at_zero(bk):
    """sign(W^T (g * t)) with sums of exactly 0 (an even number of gated units that cancel) is +1."""
    gen = np.random.default_rng(3)
    n, k, j = 5, 100, 70
    t = pm1(gen, n, k)
    w = np.empty((k, j), np.int8)  # W (K, J): column c against t[c % n] cancels over the 40 gated units
    g = np.zeros((n, k), bool)
    g[:, :40] = True
    w[:] = pm1(gen, k, j)
    for c in range(j):
        signs = t[c % n, :40].copy()
        signs[gen.permutation(40)[:20]] *= -1
        w[:40, c] = signs  # w_c . t = 20 - 20 = 0 on the gated units
    want = ref.gated_transposed_product(t, g, w)
    sums = (t.astype(np.int64) * g) @ w.astype(np.int64)
    assert (sums[np.arange(j) % n, np.arange(j)] == 0).all()
    wt = bk.transpose_bits(bk.asarray(bits.pack_bits(w)), k, j)
    got = bk.gated_transposed_product(bk.asarray(bits.pack_bits(t)), bk.asarray(bits.pack_bits(g)), wt)
    np.testing.assert_array_equal(unpack(bk, got, j), want)
    assert unpack(bk, bk.pack(bk.asarray(np.zeros((2, 70), np.int32))), 70).min() == 1  # pack(0) = +1


# --- ties in every group select ---------------------------------------------------------------------------------
def test_group_select_ties_go_to_the_lowest_index(bk):
    score = np.array([[5, 2, 2, 7, 3, 3, 3, 3, 9, 1, 1, 1]], np.int32)
    cand = np.array([[1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1]], bool)
    sel = bk.group_select(bk.asarray(score), bk.asarray(bits.pack_bits(cand)), 4)
    assert np.flatnonzero(unpack(bk, sel, 12) > 0).tolist() == [1, 5, 10]
    # Groups of 65 straddle the words; every score equal: the first candidate of each group.
    gen = np.random.default_rng(4)
    cand = gen.random((3, 195)) < 0.2
    cand[:, [64, 129]] = True
    sel = bk.group_select(bk.asarray(np.full((3, 195), 4, np.int32)), bk.asarray(bits.pack_bits(cand)), 65)
    want = np.zeros((3, 195), bool)
    for r in range(3):
        for g0 in (0, 65, 130):
            first = np.flatnonzero(cand[r, g0:g0 + 65])
            want[r, g0 + first[0]] = True
    np.testing.assert_array_equal(unpack(bk, sel, 195) > 0, want)


def test_select_wrong_ties_in_abs_z(bk):
    """|z| ranks: -3 and +3 tie, the lower index wins; non-triggering rows select nothing."""
    z = np.array([[4, -3, 3, 1, -1, 0, 0, 7], [0, 0, 0, 0, 5, -5, 5, -5], [1, 1, 1, 1, 1, 1, 1, 1]], np.int32)
    wrong = np.array([[1, 1, 1, 0, 0, 1, 1, 0], [0, 1, 1, 0, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1]], bool)
    a = np.ones((3, 8), np.int8)
    t = np.where(wrong, -1, 1)
    rows = np.array([[~np.uint64(0)], [~np.uint64(0)], [np.uint64(0)]], np.uint64)
    sel = bk.select_wrong(bk.asarray(z), bk.asarray(bits.pack_bits(a)), bk.asarray(bits.pack_bits(t)),
                          bk.asarray(rows), 4)
    got = unpack(bk, sel, 8) > 0
    assert [np.flatnonzero(r).tolist() for r in got] == [[1, 5], [1, 5], []]


def test_shared_rnn_mask_ties(bk):
    """rnn_mask="shared": the unit wrong at the most steps, then the smallest summed |z_t|, then the lowest index."""
    # two target steps, one sample, Ks = 8, groups of 4
    wrong = np.array([[[0, 1, 1, 0, 1, 1, 0, 1]], [[1, 1, 1, 0, 1, 1, 1, 1]]], bool)  # counts 1 2 2 0 | 2 2 1 2
    z_abs = np.array([[[0, 2, 3, 1, 3, 2, 0, 1]], [[0, 3, 2, 0, 3, 2, 0, 3]]], np.int32)  # sums 0 5 5 1 | 6 4 0 4
    words = bk.asarray(bits.pack_bits(wrong))
    sel = bep_rnn.shared_selection(bk, words, bk.asarray(z_abs), 4, 3)
    got = unpack(bk, sel, 8) > 0
    assert [np.flatnonzero(r).tolist() for r in got] == [[1, 5], [1, 5]]  # the same selection at both steps


# --- empty batches -------------------------------------------------------------------------------------------------
def test_empty_mlp_batch_changes_nothing(bk):
    sizes = [70, 35, 10]
    hidden = [bk.asarray(h) for h in init_hidden([(35, 70), (10, 35)], 4.0, 1)]
    before = [bk.to_numpy(h).copy() for h in hidden]
    protos = bk.asarray(bits.pack_bits(pm1(np.random.default_rng(0), 3, 10)))
    rules = bep_mlp.StepRules.make(sizes, 0.75, 0.3, 100)
    counts = bep_mlp.train_step(bk, hidden, sizes, protos, bk.asarray(np.zeros((0, 2), np.uint64)),
                                bk.asarray(np.zeros(0, np.int64)), [5, 5], rules, [2**32, 2**32], 3, 0)
    assert bk.to_numpy(counts).tolist() == [0, 0]
    assert all(np.array_equal(bk.to_numpy(h), b) for h, b in zip(hidden, before))
    assert bk.to_numpy(bep_mlp.predict(bk, bep_mlp.visible_weights(bk, hidden), sizes, protos,
                                       bk.asarray(np.zeros((0, 2), np.uint64)))).shape == (0,)


@pytest.mark.parametrize("shared", [False, True])
def test_empty_rnn_batch_changes_nothing(bk, shared):
    kx, ks, ky = 20, 35, 35
    hidden = [bk.asarray(h) for h in init_hidden([(ks, kx), (ks, ks), (ky, ks)], 4.0, 1)]
    before = [bk.to_numpy(h).copy() for h in hidden]
    protos = bk.asarray(bits.pack_bits(pm1(np.random.default_rng(0), 3, ky)))
    rules = bep_rnn.step_rules([kx, ks, ky], 0.75, 0.3, 100)
    counts = bep_rnn.train_step(bk, hidden, [kx, ks, ky], protos, bk.asarray(np.zeros((0, 4, 1), np.uint64)),
                                bk.asarray(np.zeros(0, np.int64)), [7, 7], rules, 2, shared, [2**32] * 3, 3, 0)
    assert bk.to_numpy(counts).tolist() == [0, 0]
    assert all(np.array_equal(bk.to_numpy(h), b) for h, b in zip(hidden, before))


# --- evaluation in many chunks --------------------------------------------------------------------------------------
def test_accuracy_counts_every_eval_chunk():
    gen = np.random.default_rng(6)
    sizes = [40, 15]
    task = MLPTask(NumpyBackend(), sizes, init_hidden([(15, 40)], 4.0, 2), pm1(gen, 3, 15),
                   TrainConfig(hidden=[15]))
    x = bits.pack_bits(pm1(gen, 23, 40))
    pred = task.predict(x)
    y = pred.copy()
    y[:5] = (pred[:5] + 1) % 3  # the first chunk of 5 all wrong, the other 18 right
    for eval_batch in (1, 5, 7, 23, 1000):
        assert accuracy(task, (x, y), eval_batch) == 18 / 23, eval_batch
    y[20:] = (pred[20:] + 1) % 3  # and the last, short chunk (rows 20..22 of 23) wrong too
    assert accuracy(task, (x, y), 5) == 15 / 23


def test_model_predicts_in_many_chunks(tmp_path):
    """A run with --eval-batch far below every split: its reported accuracies are those of the whole splits."""
    gen = np.random.default_rng(7)
    protos = gen.choice([-1, 1], size=(3, 50))
    y = gen.integers(0, 3, size=130)
    x = protos[y] * np.where(gen.random((130, 50)) < 0.3, -1, 1)
    np.savez(tmp_path / "d.npz", x_train=x[:100], y_train=y[:100], x_test=x[100:], y_test=y[100:])
    out = tmp_path / "run"
    assert train_main(["mlp", "--dataset", f"npz:{tmp_path / 'd.npz'}", "--hidden", "15", "--gamma0", "5",
                       "--epochs", "2", "--eval-batch", "4", "--backend", "numpy", "--quiet", "--out", str(out)]) == 0
    model = load(out / "model.npz")
    assert model.config.eval_batch == 4
    whole = model.task.predict(model.bk.pack(model.encode(x[100:])))  # one pass over all 30 test rows
    np.testing.assert_array_equal(model.predict(x[100:]), whole)
    assert json.loads((out / "results.json").read_text())["test_accuracy"] == (whole == y[100:]).mean()


# --- checkpoint file mode -----------------------------------------------------------------------------------------
def test_checkpoint_files_get_the_mode_of_a_normal_file(tmp_path):
    """0666 less the umask (0644 under the usual 022), as open() would give: not mkstemp's 0600."""
    normal = tmp_path / "normal"
    normal.write_bytes(b"")
    want = os.stat(normal).st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert want == 0o666 & ~umask
    path = tmp_path / "checkpoint.npz"
    ckpt.save_checkpoint(str(path), "mlp", {}, np.ones((2, 3), np.int8), {"0": np.zeros((3, 4), np.int16)})
    assert os.stat(path).st_mode & 0o777 == want
    ckpt.atomic_write(str(tmp_path / "results.json"), lambda f: f.write(b"{}"))
    assert os.stat(tmp_path / "results.json").st_mode & 0o777 == want


# --- every settings check -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("change, flag", [
    ({"kind": "cnn"}, "model kind"), ({"hidden": []}, "--hidden"), ({"hidden": [10, 0]}, "--hidden"),
    ({"kind": "rnn", "hidden": [10, 10, 10]}, "KS or KS,KY"), ({"epochs": -1}, "--epochs"),
    ({"batch_size": 0}, "--batch-size"), ({"kind": "rnn", "batch_size": -1}, "--batch-size"),
    ({"val_fraction": 1.0}, "--val-fraction"), ({"val_fraction": -0.1}, "--val-fraction"),
    ({"r": -0.5}, "--r"), ({"nu": -0.1}, "--nu"), ({"p_r": -1.0}, "--p-r"), ({"init_std": -1.0}, "--init-std"),
    ({"patience": -1}, "--patience"), ({"hidden_clip": 0}, "--hidden-clip"), ({"hidden_clip": 32768}, "--hidden-clip"),
    ({"stability": "x"}, "--stability"), ({"rnn_mask": "x"}, "--rnn-mask"), ({"max_train": 0}, "--max-train"),
    ({"horizon": -1}, "--horizon"), ({"window": -1}, "--window"), ({"expand": -1}, "--expand"),
    ({"kind": "rnn", "stability": "hidden"}, "--stability hidden"), ({"eval_batch": 0}, "--eval-batch"),
    ({"distributed": "gloo"}, "--distributed"), ({"dist_timeout": 0.0}, "--dist-timeout"),
    ({"dist_timeout": float("nan")}, "--dist-timeout"), ({"gamma0": 4}, "--gamma0 4 does not divide"),
    ({"gamma0": 0}, "--gamma0 0 does not divide"),
])
def test_every_settings_check(change, flag):
    cfg = TrainConfig(**{"hidden": [10], "gamma0": 5, **change})
    with pytest.raises(UserError, match=flag.replace("-", r"\-").replace("+", r"\+")):
        cfg.check()


def test_the_settings_checks_accept_their_bounds():
    for change in ({"val_fraction": 0.0}, {"r": 0.0, "nu": 0.0, "p_r": 0.0}, {"hidden_clip": 1},
                   {"hidden_clip": 32767}, {"eval_batch": 1}, {"dist_timeout": 0.001}, {"patience": 0}):
        TrainConfig(**{"hidden": [10], "gamma0": 5, **change}).check()


@pytest.mark.parametrize("args", [["--hidden-clip", "40000"], ["--eval-batch", "0"], ["--dist-timeout", "0"],
                                  ["--val-fraction", "1"], ["--r", "-1"], ["--nu", "-0.5"], ["--p-r", "-2"]])
def test_settings_errors_from_the_command_line(args, tmp_path, capsys):
    out = tmp_path / "out"
    assert train_main(["mlp", "--hidden", "10", "--gamma0", "5", "--backend", "numpy", "--quiet", "--out", str(out)]
                      + args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bep-train: error:") and args[0] in err[0], err
    assert not out.exists()
