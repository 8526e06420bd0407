"""The real CUDA backend (CuPy + NVRTC) equals the NumPy backend bit for bit, at edge and at training-sized shapes.

Marked `gpu`: deselected by default, run with `python -m pytest -m gpu tests/test_gpu.py` on a machine with a
CUDA device (scripts/device_check.sh). Skipped when CuPy or a device is missing.
"""
import numpy as np
import pytest

from bep_gpu import bits
from bep_gpu.backends.numpy_backend import NumpyBackend

pytestmark = pytest.mark.gpu

NB = NumpyBackend()


def _cupy():
    try:
        import cupy
    except Exception as e:  # ImportError, or a broken CUDA install raising at import
        pytest.skip(f"CuPy not importable: {e}")
    try:
        if not cupy.is_available():
            pytest.skip("no CUDA device")
    except Exception as e:
        pytest.skip(f"CUDA runtime unusable: {e}")
    return cupy


@pytest.fixture(scope="module")
def gb():
    _cupy()
    from bep_gpu.backends.cuda_backend import CudaBackend

    return CudaBackend()


def rand_bits(gen, rows, n, p=0.5):
    return bits.pack_bits(np.where(gen.random((rows, n)) < p, 1, -1))


def same(bk, got, want):
    got = bk.to_numpy(got)
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, got.shape, want.dtype, want.shape)
    np.testing.assert_array_equal(got, want)


def test_kernels_load_without_spills(gb):
    """Every kernel compiles under NVRTC for this device and keeps its registers (no local memory)."""
    from bep_gpu.backends.cuda_backend import kernel_files
    from emu.emulator import kernel_signatures

    names = set()
    for name, text in kernel_files().items():
        if name.endswith(".cu"):
            names |= set(kernel_signatures(text))
    report = []
    for name in sorted(names):
        fn = gb._module.get_function(name)
        report.append(f"{name}: {fn.num_regs} regs, {fn.local_size_bytes} B local, {fn.shared_size_bytes} B smem")
        assert fn.local_size_bytes == 0, report[-1]
    print("\n".join(report))
    assert gb.device


SHAPES = [(1, 1, 1), (65, 63, 130), (1024, 525, 784), (1000, 10, 525), (300, 2048, 4097)]


@pytest.mark.parametrize("m,n,k", SHAPES)
def test_xnor_matmul(gb, m, n, k):
    gen = np.random.default_rng(m + n + k)
    a, b = rand_bits(gen, m, k), rand_bits(gen, n, k)
    same(gb, gb.xnor_matmul(gb.asarray(a), gb.asarray(b), k), NB.xnor_matmul(a, b, k))
    same(gb, gb.xnor_matmul(a, b, k), NB.xnor_matmul(a, b, k))  # host inputs are accepted too


# The b1 tensor-core kernel: its mma fragment layout (kernels/mma_b1.cuh) is checked here on real hardware for the
# first time (the emulator implements the same reading of the PTX ISA, so only a device can refute it).
TC_SHAPES = SHAPES + [(3, 2, 63), (17, 9, 200), (65, 63, 257), (64, 64, 512), (130, 129, 1100), (2048, 1024, 4352)]


@pytest.fixture(scope="module")
def gb_tc():
    _cupy()
    from bep_gpu.backends.cuda_backend import CudaBackend

    return CudaBackend(matmul="tensor_core")


def test_mma_b1_fragment_layout():
    """One mma.m16n8k256 b1 on the device with operands placed as kernels/mma_b1.cuh documents: checks the PTX
    fragment layout itself (the emulator implements the same reading of the PTX ISA)."""
    from mma_probe import PROBE_CU, probe_case

    cu = _cupy()
    if int(cu.cuda.Device().compute_capability) < 80:
        pytest.skip("b1 mma needs compute capability 8.0")
    kernels = PROBE_CU.parent.parent / "kernels"
    kernel = cu.RawModule(code=PROBE_CU.read_text(), options=(f"-I{kernels}",)).get_function("mma_layout_probe")
    for seed in range(3):
        a, b, want = probe_case(seed)
        d = cu.zeros((16, 8), cu.int32)
        kernel((1,), (32,), (cu.asarray(a), cu.asarray(b), d))
        got = cu.asnumpy(d)
        bad = np.argwhere(got != want)
        assert not bad.size, f"mma fragment layout differs at (row, col) {bad[:8].tolist()}:\n{got}\nwant\n{want}"


@pytest.mark.parametrize("m,n,k", TC_SHAPES)
def test_xnor_matmul_tensor_core(gb_tc, m, n, k):
    gen = np.random.default_rng(m + n + k + 1)
    a, b = rand_bits(gen, m, k), rand_bits(gen, n, k)
    same(gb_tc, gb_tc.xnor_matmul(gb_tc.asarray(a), gb_tc.asarray(b), k), NB.xnor_matmul(a, b, k))


@pytest.mark.parametrize("impl", ["cuda_core", "tensor_core"])
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (65, 63, 130), (1024, 525, 784), (300, 2048, 4097)])
def test_xnor_matmul_sign(gb, impl, m, n, k):
    gen = np.random.default_rng(m + n + k + 2)
    a, b = rand_bits(gen, m, k), rand_bits(gen, n, k)
    z, packed = gb.xnor_matmul_sign(gb.asarray(a), gb.asarray(b), k, impl=impl)
    z_np, packed_np = NB.xnor_matmul_sign(a, b, k)
    same(gb, z, z_np)
    same(gb, packed, packed_np)
    for gate in (-1, 0, k // 4, 2**40):
        out = gb.xnor_matmul_sign(gb.asarray(a), gb.asarray(b), k, gate=gate, impl=impl)
        for got, want in zip(out, NB.xnor_matmul_sign(a, b, k, gate=gate)):
            same(gb, got, want)
    add = gen.integers(-k - 2, k + 3, size=(m, n)).astype(np.int32)
    got = gb.asarray(add)
    z, packed = gb.xnor_matmul_sign(gb.asarray(a), gb.asarray(b), k, add=got, impl=impl)
    z_np, packed_np = NB.xnor_matmul_sign(a, b, k, add=add)
    same(gb, got, z_np)
    same(gb, packed, packed_np)


@pytest.mark.parametrize("dtype", [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint16, np.float16,
                                   np.float32, np.float64])
def test_pack(gb, dtype):
    gen = np.random.default_rng(1)
    x = gen.integers(-3, 3, size=(1024, 785)).astype(dtype)
    same(gb, gb.pack(gb.asarray(x)), NB.pack(x))


@pytest.mark.parametrize("threshold", [-1, 0, 7, 2**40])
def test_gate_pack(gb, threshold):
    z = np.random.default_rng(2).integers(-20, 21, size=(1024, 525)).astype(np.int32)
    z[0, 0] = np.iinfo(np.int32).min
    same(gb, gb.gate_pack(gb.asarray(z), threshold), NB.gate_pack(z, threshold))


@pytest.mark.parametrize("n_rows,n_cols", [(1, 1), (65, 257), (525, 784), (1024, 525), (3000, 70)])
def test_transpose_bits(gb, n_rows, n_cols):
    w = rand_bits(np.random.default_rng(n_rows), n_rows, n_cols)
    same(gb, gb.transpose_bits(gb.asarray(w), n_rows, n_cols), NB.transpose_bits(w, n_rows, n_cols))


@pytest.mark.parametrize("rows,n", [(1, 1), (65, 257), (525, 784), (4096, 4096), (3000, 70)])
def test_pack_both(gb, rows, n):
    """W and W^T of int16 hidden weights from one kernel."""
    h = np.random.default_rng(rows + n).integers(-3, 3, size=(rows, n)).astype(np.int16)
    w, wt = gb.pack_both(gb.asarray(h))
    same(gb, w, NB.pack(h))
    same(gb, wt, NB.pack(np.ascontiguousarray(h.T)))


@pytest.mark.parametrize("n,k,j", [(1, 1, 1), (1024, 525, 784), (100, 4097, 0), (5000, 65, 63)])
def test_update_operands(gb, n, k, j):
    """The update's three batch-packed operands and the tensor-core row counts (atomics) from one launch."""
    gen = np.random.default_rng(n + k + j)
    sel, t, x = bits.pack_bits(gen.random((n, k)) < 0.2), rand_bits(gen, n, k), rand_bits(gen, n, j)
    sel_t, t_t, x_t, pops = gb._update_operands(gb.asarray(sel), gb.asarray(t), gb.asarray(x), n, k, j, True)
    same(gb, sel_t, NB.transpose_bits(sel, n, k))
    same(gb, t_t, NB.transpose_bits(t, n, k))
    assert (x_t is None) == (j == 0)
    if j:
        same(gb, x_t, NB.transpose_bits(x, n, j))
    want_sel_t = NB.transpose_bits(sel, n, k)
    same(gb, pops, np.concatenate([bits.row_popcounts(want_sel_t & NB.transpose_bits(t, n, k)),
                                   bits.row_popcounts(want_sel_t)]))


@pytest.mark.parametrize("matmul", ["cuda_core", "tensor_core"])
@pytest.mark.parametrize("steps,n,kx,k", [(3, 100, 1875, 1875), (2, 1024, 4096, 4096), (4, 65, 63, 130)])
def test_sign_recurrence(gb, matmul, steps, n, kx, k):
    """Each recurrence step's two products, signs and gate bits from one kernel, at the paper's RNN shape, a large
    one and odd sizes."""
    gen = np.random.default_rng(steps + n + kx + k)
    x = rand_bits(gen, steps * n, kx).reshape(steps, n, bits.n_words(kx))
    w_in, w_rec, s0 = rand_bits(gen, k, kx), rand_bits(gen, k, k), rand_bits(gen, n, k)
    got = gb.variant(matmul=matmul).sign_recurrence(*(gb.asarray(v) for v in (x, w_in)), kx,
                                                    *(gb.asarray(v) for v in (w_rec, s0)), gate=k // 10)
    for g, w in zip(got, NB.sign_recurrence(x, w_in, kx, w_rec, s0, gate=k // 10)):
        same(gb, g, w)


@pytest.mark.parametrize("matmul", ["cuda_core", "tensor_core"])
@pytest.mark.parametrize("net", [0, 2])
def test_conv_steps_match_the_dense_reference(matmul, net):
    """Whole BEP-Conv steps (im2col, col2im_sign, gated_transposed_sum, conv_select_wrong and the products on
    each path) equal the independent dense implementation, as on NumPy (tests/test_conv.py)."""
    _cupy()
    from bep_gpu.backends.cuda_backend import CudaBackend
    from test_conv import NETS, check

    check(CudaBackend(matmul=matmul), NETS[net], seed=net)


@pytest.mark.parametrize("matmul", ["cuda_core", "tensor_core"])
@pytest.mark.parametrize("n,k,j", [(1, 1, 1), (65, 63, 130), (1024, 525, 784), (1024, 10, 525), (0, 5, 5),
                                   (1000, 4097, 3001)])
def test_gated_transposed_product(gb, n, k, j, matmul):
    gen = np.random.default_rng(n + k + j)
    t, wt = rand_bits(gen, n, k), rand_bits(gen, j, k)
    g = bits.pack_bits(gen.random((n, k)) < 0.3)
    got = gb.variant(matmul=matmul).gated_transposed_product(gb.asarray(t), gb.asarray(g), gb.asarray(wt))
    same(gb, got, NB.gated_transposed_product(t, g, wt))


@pytest.mark.parametrize("k,gamma", [(525, 1), (525, 5), (525, 21), (525, 105), (525, 525), (784, 49), (1024, 64)])
def test_group_select(gb, k, gamma):
    gen = np.random.default_rng(k + gamma)
    score = gen.integers(0, 30, size=(1024, k)).astype(np.int32)
    cand = bits.pack_bits(gen.random((1024, k)) < 0.2)
    same(gb, gb.group_select(gb.asarray(score), gb.asarray(cand), gamma), NB.group_select(score, cand, gamma))


@pytest.fixture(scope="module", params=[("popcount", "cuda_core"), ("popcount", "tensor_core"), ("sparse", "auto")],
                ids=["popcount", "popcount-tc", "sparse"])
def gb_update(request):
    """The CUDA backend with each form of the update kernels (batch_update.cu; popcount on both paths)."""
    _cupy()
    from bep_gpu.backends.cuda_backend import CudaBackend

    update, matmul = request.param
    return CudaBackend(update=update, matmul=matmul)


@pytest.mark.parametrize("n,k,j", [(0, 5, 7), (1, 1, 1), (1024, 525, 784), (1024, 10, 525), (5000, 65, 63),
                                   (300, 70000, 3), (4100, 1000, 1030)])
def test_batch_update(gb_update, n, k, j):
    gb = gb_update
    gen = np.random.default_rng(n + k + j)
    h = gen.integers(-32768, 32768, size=(k, j)).astype(np.int16)
    h.reshape(-1)[::3] = 32767
    sel = bits.pack_bits(gen.random((n, k)) < 0.3)
    t, x = rand_bits(gen, n, k), rand_bits(gen, n, j)
    h_ref = h.copy()
    NB.batch_update(h_ref, sel, t, x, 32767)
    hd = gb.asarray(h)
    gb.batch_update(hd, gb.asarray(sel), gb.asarray(t), gb.asarray(x), 32767)
    same(gb, hd, h_ref)


@pytest.mark.parametrize("n,k,j", [(1024, 525, 784), (100, 4096, 4096), (5000, 65, 63)])
@pytest.mark.parametrize("device_step", [False, True])
def test_batch_update_reinforce(gb_update, n, k, j, device_step):
    """The update with the reinforcement fired in its store equals batch_update then reinforce on NumPy."""
    gb = gb_update
    gen = np.random.default_rng(n + k + j)
    h = gen.integers(-40, 41, size=(k, j)).astype(np.int16)
    sel = bits.pack_bits(gen.random((n, k)) < 0.3)
    t, x = rand_bits(gen, n, k), rand_bits(gen, n, j)
    h_ref = h.copy()
    NB.batch_update(h_ref, sel, t, x, 40)
    NB.reinforce(h_ref, 2**30, 5, 1, 77, 1, 40)
    hd = gb.asarray(h)
    step = gb.asarray(np.array([77])) if device_step else 77
    gb.batch_update_reinforce(hd, gb.asarray(sel), gb.asarray(t), gb.asarray(x), 40, 2**30, 5, 1, step, 1)
    same(gb, hd, h_ref)


@pytest.mark.parametrize("n,k,j", [(0, 5, 7), (1024, 525, 784), (5000, 65, 63)])
def test_update_delta(gb_update, n, k, j):
    gb = gb_update
    from bep_gpu.backends.numpy_backend import unpack01, unpack_pm1

    gen = np.random.default_rng(n + k + j)
    sel = bits.pack_bits(gen.random((n, k)) < 0.3)
    t, x = rand_bits(gen, n, k), rand_bits(gen, n, j)
    want = ((unpack_pm1(t, k) * unpack01(sel, k)).T.astype(np.float64) @ unpack_pm1(x, j, np.float64)).astype(np.int32)
    same(gb, gb.update_delta(gb.asarray(sel), gb.asarray(t), gb.asarray(x), k, j), want)


@pytest.mark.parametrize("threshold", [0, 1, 2**20, 2**31, 2**32])
def test_reinforce(gb, threshold):
    gen = np.random.default_rng(threshold % 1000)
    h = gen.integers(-32768, 32768, size=(525, 784)).astype(np.int16)
    h.reshape(-1)[::11] = 0
    h_ref = h.copy()
    NB.reinforce(h_ref, threshold, 5, 1, 77, 1, 32767)
    hd = gb.asarray(h)
    gb.reinforce(hd, threshold, 5, 1, 77, 1, 32767)
    same(gb, hd, h_ref)
    cu = _cupy()
    hd = gb.asarray(h)
    gb.reinforce(hd, threshold, 5, 1, 77, 1, 32767, active=cu.zeros(1, cu.int64))
    same(gb, hd, h)


def test_counter_uniform(gb):
    for n in (0, 1, 10**6 + 3):
        same(gb, gb.counter_uniform(2**64 - 1, 1, 123, 2, n), NB.counter_uniform(2**64 - 1, 1, 123, 2, n))


@pytest.mark.parametrize("n,k,j", [(1, 1, 1), (65, 63, 130), (1024, 525, 784), (7, 3, 5000)])
def test_int_matmul(gb, n, k, j):
    gen = np.random.default_rng(n + k + j)
    x = rand_bits(gen, n, j)
    h = gen.integers(-32768, 32768, size=(k, j)).astype(np.int16)
    same(gb, gb.int_matmul(gb.asarray(x), gb.asarray(h)), NB.int_matmul(x, h))


@pytest.mark.parametrize("impl,update", [("cuda_core", "popcount"), ("tensor_core", "popcount"), ("cuda_core", "sparse")])
def test_bep_train_steps_match_numpy(impl, update):
    from bep_gpu import bep_mlp
    from bep_gpu.backends.cuda_backend import CudaBackend

    cu = _cupy()
    gb = CudaBackend(matmul=impl, update=update)
    gen = np.random.default_rng(3)
    sizes = [784, 525, 525]
    n_classes, batch = 10, 256
    rules = bep_mlp.StepRules.make(sizes, r=0.5, nu=0.3, clip=32767)
    thresholds = bep_mlp.reinforcement_thresholds(sizes, 0.5, 1.0)
    hidden0 = [gen.integers(-50, 51, size=(sizes[i + 1], sizes[i])).astype(np.int16) for i in range(2)]
    protos = bits.pack_bits(gen.choice([-1, 1], size=(n_classes, sizes[-1])))
    xs = [bits.pack_bits(gen.choice([-1, 1], size=(batch, sizes[0]))) for _ in range(3)]
    ys = [gen.integers(0, n_classes, size=batch) for _ in range(3)]
    h_np = [h.copy() for h in hidden0]
    h_cu = [cu.asarray(h) for h in hidden0]
    p_cu = cu.asarray(protos)
    for step in range(3):
        c_np = bep_mlp.train_step(NB, h_np, sizes, protos, xs[step], ys[step], [5, 5], rules, thresholds, 1, step)
        c_cu = bep_mlp.train_step(gb, h_cu, sizes, p_cu, cu.asarray(xs[step]), cu.asarray(ys[step]), [5, 5], rules,
                                  thresholds, 1, step)
        same(gb, c_cu, np.asarray(c_np))
    for a, b in zip(h_cu, h_np):
        same(gb, a, b)


@pytest.mark.parametrize("matmul", ["cuda_core", "tensor_core"])
@pytest.mark.parametrize("kind", ["mlp", "rnn"])
def test_cuda_graph_training_run_matches_numpy(tmp_path, monkeypatch, kind, matmul):
    """--cuda-graph (steps captured once per epoch, then replayed) trains to the same checkpoint as NumPy, over
    epochs whose last batch is short (run eagerly) and with the reinforcement keyed by the device step counter,
    on each path (BEP_XNOR_MATMUL picks the products' kernels)."""
    _cupy()
    from bep_gpu import backends

    monkeypatch.setenv("BEP_XNOR_MATMUL", matmul)
    monkeypatch.setattr(backends, "_cache", {})  # a backend made now, reading the variable
    from bep_gpu.config import TrainConfig
    from bep_gpu.trainer import Trainer

    rng = np.random.default_rng(9)
    shape = (300, 100) if kind == "mlp" else (300, 6, 20)
    y = rng.integers(0, 4, size=300)
    x = np.where(rng.random(shape) < 0.5, -1, 1) * np.where(y % 2, 1, -1).reshape((-1,) + (1,) * (len(shape) - 1))
    data = tmp_path / "data.npz"
    np.savez(data, x_train=x[:250], y_train=y[:250], x_test=x[250:], y_test=y[250:])
    hidden = [70, 70] if kind == "mlp" else [70]
    runs = {}
    for name, backend, graph in (("numpy", "numpy", False), ("graph", "cuda", True)):
        cfg = TrainConfig(kind=kind, dataset=f"npz:{data}", hidden=hidden, gamma0=7, epochs=3, batch_size=40,
                          patience=1, encode="sign", backend=backend, cuda_graph=graph, out=str(tmp_path / name),
                          quiet=True)
        Trainer(cfg).run()
        runs[name] = np.load(tmp_path / name / "model.npz")
    for key in [k for k in runs["numpy"].files if k.startswith("hidden.")] + ["train.state"]:
        assert np.array_equal(runs["numpy"][key], runs["graph"][key]), key


@pytest.mark.parametrize("graph", [False, True])
@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_augmented_training_matches_numpy(gb, tmp_path, kind, graph):
    """--augment moves the images with CuPy's indexing on the device: the same checkpoint as NumPy's, also when
    each epoch's fresh inputs are captured into a CUDA graph."""
    from test_augment import _train

    ref = _train(kind, NB, tmp_path / "numpy")
    got = _train(kind, gb, tmp_path / "gpu", cuda_graph=graph)
    for key in [k for k in ref.files if k.startswith("hidden.")] + ["prototypes", "train.state"]:
        assert np.array_equal(ref[key], got[key]), key


@pytest.mark.parametrize("n,c", [(1, 1), (100, 10), (20000, 10), (513, 100)])
def test_trigger(gb, n, c):
    gen = np.random.default_rng(n + c)
    logits = gen.integers(-6, 7, size=(n, c)).astype(np.int32)
    labels = gen.integers(0, c, size=n)
    for margin in (0, 4, 2**40):
        got = gb.trigger(gb.asarray(logits), gb.asarray(labels), margin)
        for g, w in zip(got, NB.trigger(logits, labels, margin)):
            same(gb, g, w)


@pytest.mark.parametrize("n,k,gamma", [(1, 1, 1), (1024, 525, 105), (300, 4096, 128), (100, 525, 5)])
def test_select_wrong(gb, n, k, gamma):
    gen = np.random.default_rng(n + k + gamma)
    z = gen.integers(-20, 21, size=(n, k)).astype(np.int32)
    a, t = rand_bits(gen, n, k), rand_bits(gen, n, k)
    row_mask = np.where(gen.random((n, 1)) < 0.7, ~np.uint64(0), np.uint64(0)).astype(np.uint64)
    got = gb.select_wrong(gb.asarray(z), gb.asarray(a), gb.asarray(t), gb.asarray(row_mask), gamma)
    same(gb, got, NB.group_select(np.abs(z), (a ^ t) & row_mask, gamma))
    if n % 4 == 0:  # row words shared by 4 stacked steps (the RNN's time-major rows)
        got = gb.select_wrong(gb.asarray(z), gb.asarray(a), gb.asarray(t), gb.asarray(row_mask[: n // 4]), gamma)
        same(gb, got, NB.select_wrong(z, a, t, row_mask[: n // 4], gamma))
