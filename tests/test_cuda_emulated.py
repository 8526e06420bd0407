"""The CUDA backend, with its kernels run by the CPU emulator (tests/emu), equals the NumPy backend bit for bit.

Shapes straddle every boundary of the kernels: one bit, word (64) and half-word (32) edges, the 64-row tiles,
the 512-bit K slabs of the popcount GEMMs, the 256-column transpose tiles and groups that straddle words.
"""
import shutil
import textwrap
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bep_gpu import bits
from bep_gpu.backends.numpy_backend import NumpyBackend

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="the CUDA emulator needs g++")

NB = NumpyBackend()


@pytest.fixture(scope="module")
def cb():
    from emu import make_emulated_backend

    return make_emulated_backend()


def rand_bits(gen, rows, n, p=0.5):
    return bits.pack_bits(np.where(gen.random((rows, n)) < p, 1, -1))


def same(x, y):
    assert x.dtype == y.dtype and x.shape == y.shape, (x.dtype, x.shape, y.dtype, y.shape)
    np.testing.assert_array_equal(x, y)


# --- pack / gate_pack -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint32,
                                   np.float16, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (3, 63), (2, 64), (5, 65), (2, 3, 130), (0, 7), (4, 0), (200,)])
def test_pack(cb, dtype, shape):
    gen = np.random.default_rng(zlib.crc32(f"{np.dtype(dtype).str}{shape}".encode()))
    if np.dtype(dtype).kind == "f":
        x = gen.normal(size=shape).astype(dtype)
        flat = x.reshape(-1)
        flat[::7] = 0.0
        flat[1::7] = -0.0
        flat[2::11] = np.nan
    elif dtype is np.bool_:
        x = gen.random(shape) < 0.5
    else:
        info = np.iinfo(dtype)
        x = gen.integers(max(info.min, -3), min(info.max, 3), size=shape, endpoint=True).astype(dtype)
        flat = x.reshape(-1)
        flat[::5] = info.min
        flat[1::5] = info.max
    same(cb.pack(x), NB.pack(x))


@pytest.mark.parametrize("threshold", [-1, 0, 3, 2**40])
def test_gate_pack(cb, threshold):
    gen = np.random.default_rng(threshold % 1000)
    z = gen.integers(-6, 7, size=(9, 131)).astype(np.int32)
    z[0, :4] = [np.iinfo(np.int32).min, np.iinfo(np.int32).max, -(2**31) + 1, 0]
    same(cb.gate_pack(z, threshold), NB.gate_pack(z, threshold))


def test_dtypes_outside_the_contract_are_rejected(cb):
    with pytest.raises(TypeError):  # np.abs(int8(-128)) wraps; widening first would not
        cb.gate_pack(np.array([[-128]], np.int8), 100)
    with pytest.raises(TypeError):
        cb.batch_update(np.zeros((2, 2), np.int32), np.zeros((1, 1), np.uint64), np.zeros((1, 1), np.uint64),
                        np.zeros((1, 1), np.uint64), 10)
    with pytest.raises(TypeError):
        cb.reinforce(np.zeros((2, 2), np.int32), 2**31, 0, 1, 0, 0, 10)


@pytest.mark.parametrize("shape", [(1, 1), (63, 65), (64, 64), (65, 129), (130, 7), (3, 300), (0, 5), (5, 0)])
@pytest.mark.parametrize("dtype", [np.int16, np.int8])
def test_pack_both(cb, shape, dtype):
    """W and W^T in one pass equal pack(x) and pack(x.T), with int16 extremes and zeros (sign +1)."""
    gen = np.random.default_rng(zlib.crc32(f"{np.dtype(dtype).str}{shape}".encode()))
    info = np.iinfo(dtype)
    x = gen.integers(-3, 4, size=shape).astype(dtype)
    x.reshape(-1)[::5] = info.min
    x.reshape(-1)[1::7] = info.max
    w, wt = cb.pack_both(x)
    same(w, NB.pack(x))
    same(wt, NB.pack(np.ascontiguousarray(x.T)))


# --- transpose ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_rows,n_cols", [(1, 1), (63, 65), (64, 64), (65, 257), (130, 300), (0, 5), (5, 0), (3, 600)])
def test_transpose_bits(cb, n_rows, n_cols):
    w = rand_bits(np.random.default_rng(n_rows * 1000 + n_cols), n_rows, n_cols)
    same(cb.transpose_bits(w, n_rows, n_cols), NB.transpose_bits(w, n_rows, n_cols))


@pytest.mark.parametrize("n,k,j", [(1, 1, 1), (63, 65, 300), (64, 257, 64), (130, 600, 5), (200, 70, 0)])
@pytest.mark.parametrize("counts", [False, True])
def test_update_operands(cb, n, k, j, counts):
    """The update's batch-packed operands of one launch equal three transposes, and its row counts (the
    tensor-core form's) equal popc(tT & selT) then popc(selT); J = 0 (the sparse form) transposes no x."""
    gen = np.random.default_rng(n * 1000 + k + j)
    sel, t, x = rand_bits(gen, n, k, 0.2), rand_bits(gen, n, k), rand_bits(gen, n, j)
    sel_t, t_t, x_t, pops = cb._update_operands(sel, t, x, n, k, j, counts)
    same(sel_t, NB.transpose_bits(sel, n, k))
    same(t_t, NB.transpose_bits(t, n, k))
    if j:
        same(x_t, NB.transpose_bits(x, n, j))
    else:
        assert x_t is None
    if counts:
        same(pops, np.concatenate([bits.row_popcounts(sel_t & t_t), bits.row_popcounts(sel_t)]))
    else:
        assert pops is None


def test_transpose_bits_rejects_wrong_shape(cb):
    with pytest.raises(ValueError):
        cb.transpose_bits(np.zeros((3, 2), np.uint64), 3, 64)


# --- xnor_matmul ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (1, 1, 63), (3, 2, 64), (65, 63, 65), (64, 64, 512), (2, 129, 513),
                                   (130, 5, 1100), (0, 4, 10), (4, 0, 10), (3, 2, 0)])
def test_xnor_matmul(cb, m, n, k):
    gen = np.random.default_rng(m * 7919 + n * 31 + k)
    a, b = rand_bits(gen, m, k), rand_bits(gen, n, k)
    same(cb.xnor_matmul(a, b, k, impl="cuda_core"), NB.xnor_matmul(a, b, k))


def test_xnor_matmul_extremes(cb):
    k = 200
    ones = bits.pack_bits(np.ones((2, k)))
    minus = bits.pack_bits(-np.ones((3, k)))
    for impl in ("cuda_core", "tensor_core"):
        same(cb.xnor_matmul(ones, minus, k, impl=impl), np.full((2, 3), -k, np.int32))
        same(cb.xnor_matmul(ones, ones, k, impl=impl), np.full((2, 2), k, np.int32))


@pytest.mark.parametrize("k", [1, 63, 65, 600])
def test_xnor_matmul_ignores_padding_bits(cb, k):
    """As NumPy's unpack does, even when a caller leaves padding bits set."""
    gen = np.random.default_rng(k)
    a, b = rand_bits(gen, 5, k), rand_bits(gen, 70, k)
    if k % 64:
        a[:, -1] |= ~np.uint64((1 << (k % 64)) - 1)
        b[::2, -1] |= np.uint64(1) << np.uint64(63)
    same(cb.xnor_matmul(a, b, k, impl="cuda_core"), NB.xnor_matmul(a, b, k))


@settings(max_examples=12, deadline=None)
@given(m=st.integers(1, 70), n=st.integers(1, 70), k=st.integers(1, 700), seed=st.integers(0, 2**32 - 1))
def test_xnor_matmul_property(cb, m, n, k, seed):
    gen = np.random.default_rng(seed)
    a, b = rand_bits(gen, m, k), rand_bits(gen, n, k)
    same(cb.xnor_matmul(a, b, k, impl="cuda_core"), NB.xnor_matmul(a, b, k))


# --- tensor-core kernels (b1 mma, ldmatrix and cp.async emulated) and the fused epilogues -----------------------
# Shapes: K = 1, K off the 64- and 256-bit boundaries, a last slab with all-padding k-steps, odd word counts
# (8-byte copies) and even ones (16-byte copies), and M, N edge tiles of the block tiles and of the 16 x 8 mma
# tiles; TC_LONG: K over more slabs of 1024 bits than the 3-stage ring has stages, more than one block each way.
TC_SHAPES = [(1, 1, 1), (3, 2, 63), (17, 9, 200), (65, 63, 257), (64, 64, 512), (2, 129, 513), (70, 5, 1100),
             (33, 70, 320)]
TC_LONG = [(130, 150, 3300), (70, 200, 4031), (129, 3, 2049)]


@pytest.mark.parametrize("m,n,k", TC_SHAPES + TC_LONG + [(0, 4, 10), (4, 0, 10), (3, 2, 0)])
def test_xnor_matmul_tc(cb, m, n, k):
    gen = np.random.default_rng(m * 7919 + n * 31 + k + 1)
    a, b = rand_bits(gen, m, k), rand_bits(gen, n, k)
    same(cb.xnor_matmul(a, b, k, impl="tensor_core"), NB.xnor_matmul(a, b, k))


@pytest.mark.parametrize("k", [1, 65, 600])
def test_xnor_matmul_tc_ignores_padding_bits_and_extremes(cb, k):
    gen = np.random.default_rng(k)
    a, b = rand_bits(gen, 5, k), rand_bits(gen, 70, k)
    a[0], b[1] = bits.pack_bits(np.ones((1, k))), bits.pack_bits(-np.ones((1, k)))  # z = -k and popc(a) = k
    want = NB.xnor_matmul(a, b, k)
    if k % 64:
        a[:, -1] |= ~np.uint64((1 << (k % 64)) - 1)
        b[::2, -1] |= np.uint64(1) << np.uint64(63)
    same(cb.xnor_matmul(a, b, k, impl="tensor_core"), want)


@settings(max_examples=6, deadline=None)
@given(m=st.integers(1, 70), n=st.integers(1, 70), k=st.integers(1, 700), seed=st.integers(0, 2**32 - 1))
def test_xnor_matmul_tc_property(cb, m, n, k, seed):
    gen = np.random.default_rng(seed)
    a, b = rand_bits(gen, m, k), rand_bits(gen, n, k)
    same(cb.xnor_matmul(a, b, k, impl="tensor_core"), NB.xnor_matmul(a, b, k))


@pytest.mark.parametrize("impl", ["cuda_core", "tensor_core"])
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (65, 63, 130), (2, 129, 513), (0, 3, 5), (3, 0, 5), (4, 70, 0)])
def test_xnor_matmul_sign(cb, impl, m, n, k):
    """The fused epilogue equals the generic composition (xnor_matmul, then pack) of Backend, z included."""
    gen = np.random.default_rng(m * 31 + n * 7 + k)
    a, b = rand_bits(gen, m, k), rand_bits(gen, n, k)
    z, packed = cb.xnor_matmul_sign(a, b, k, impl=impl)
    z_np, packed_np = NB.xnor_matmul_sign(a, b, k)
    same(z, z_np)
    same(packed, packed_np)
    # With add the product is added in place (int32 wrapping near the extremes), and the signs are of the sum.
    add = gen.integers(-(2**31), 2**31, size=(m, n), dtype=np.int64).astype(np.int32)
    add[::2] = gen.integers(-k - 2, k + 3, size=add[::2].shape)  # sums near 0: both signs
    got, want = add.copy(), add.copy()
    z, packed = cb.xnor_matmul_sign(a, b, k, add=got, impl=impl)
    z_np, packed_np = NB.xnor_matmul_sign(a, b, k, add=want)
    assert z is got and z_np is want
    same(got, want)
    same(packed, packed_np)
    strided = np.zeros((m, 2 * n), np.int32)[:, ::2]  # not contiguous: computed in a copy, written back
    strided[...] = add
    cb.xnor_matmul_sign(a, b, k, add=strided, impl=impl)
    same(np.ascontiguousarray(strided), want)
    # With a gate threshold the same kernel also packs |z| <= gate (thresholds below 0, at 0, inside, beyond int32).
    for gate in (-5, 0, k // 3, k, 2**40):
        z, packed, gates = cb.xnor_matmul_sign(a, b, k, gate=gate, impl=impl)
        z_np, packed_np, gates_np = NB.xnor_matmul_sign(a, b, k, gate=gate)
        same(z, z_np)
        same(packed, packed_np)
        same(gates, gates_np)


def test_emulated_mma_matches_the_documented_layout():
    """The emulator's m16n8k256 b1 mma, fed by the layout of kernels/mma_b1.cuh, is A AND-popc B^T plus C."""
    from emu import EmuModule
    from mma_probe import PROBE_CU, probe_case

    probe = EmuModule([PROBE_CU]).get_function("mma_layout_probe")
    for seed in range(3):
        a, b, want = probe_case(seed)
        d = np.zeros((16, 8), np.int32)
        probe((1,), (32,), (a, b, d))
        same(d, want)


def test_xnor_matmul_impl_selection(cb):
    from bep_gpu.backends.cuda_backend import CudaBackend
    from emu import emulated_module

    with pytest.raises(ValueError, match="impl"):
        cb.xnor_matmul(np.zeros((1, 1), np.uint64), np.zeros((1, 1), np.uint64), 1, impl="tensor")
    tc = CudaBackend(module=emulated_module(), xp=np, matmul="tensor_core")
    a = rand_bits(np.random.default_rng(0), 3, 100)
    same(tc.xnor_matmul(a, a, 100), NB.xnor_matmul(a, a, 100))
    assert tc._tensor_core_ok  # the first-use probe ran and agreed


def test_tensor_core_probe_rejects_a_wrong_layout(monkeypatch):
    """A device whose mma fragments differ from mma_b1.cuh must fail loudly, not return wrong products."""
    from bep_gpu.backends.cuda_backend import CudaBackend
    from emu import emulated_module

    tc = CudaBackend(module=emulated_module(), xp=np, matmul="tensor_core")
    real = tc._xnor_matmul

    def wrong(a, b, k, tensor_core, sign, gate=None):
        z, p, g = real(a, b, k, tensor_core, sign, gate)
        if tensor_core:
            z = z.copy()
            z[[0, 1]] = z[[1, 0]]  # e.g. rows g and g + 8 swapped
        return z, p, g

    monkeypatch.setattr(tc, "_xnor_matmul", wrong)
    with pytest.raises(RuntimeError, match="fragment layout"):
        tc.xnor_matmul(np.zeros((1, 1), np.uint64), np.zeros((1, 1), np.uint64), 1)
    assert not tc._tensor_core_ok


def test_tensor_core_probe_checks_the_recurrence_step(monkeypatch):
    """A wrong tensor-core recurrence kernel (e.g. the second product's staging) is named by the probe."""
    from bep_gpu.backends.cuda_backend import CudaBackend
    from bep_gpu.backends.tc_probe import tensor_core_mismatches
    from emu import emulated_module

    tc = CudaBackend(module=emulated_module(), xp=np, matmul="tensor_core")
    real = tc._sign_recurrence

    def wrong(x, w_in, k_in, w_rec, s0, gate, tensor_core):
        out = real(x, w_in, k_in, w_rec, s0, gate, tensor_core)
        if tensor_core:
            out[0][-1, 0, 0] += 2
        return out

    monkeypatch.setattr(tc, "_sign_recurrence", wrong)
    assert tensor_core_mismatches(tc) == ["sign_recurrence", "sign_recurrence"]


def test_auto_runs_cuda_cores_with_a_warning_when_the_probe_refuses(monkeypatch):
    """'auto' never trains on a refused layout: one warning, the CUDA-core kernels, and 'tensor_core' then raises."""
    from bep_gpu.backends.cuda_backend import CudaBackend
    from emu import CountingModule

    def refuse(self):
        self._tensor_core_ok = False
        raise RuntimeError("fragment layout is wrong here")

    monkeypatch.setattr(CudaBackend, "_check_tensor_core", refuse)
    module = CountingModule()
    bk = CudaBackend(module=module, xp=np, matmul="auto")
    a = rand_bits(np.random.default_rng(1), 5, 70)
    with pytest.warns(RuntimeWarning, match="CUDA-core kernels run instead"):
        same(bk.xnor_matmul(a, a, 70), NB.xnor_matmul(a, a, 70))
    same(bk.gated_transposed_product(a, a, a), NB.gated_transposed_product(a, a, a))  # no second warning or probe
    assert not any(name.endswith("_tc") for name in module.launches)
    with pytest.raises(RuntimeError, match="refused"):
        bk.xnor_matmul(a, a, 70, impl="tensor_core")


@pytest.mark.parametrize("steps,n,kx,k", [(1, 1, 1, 1), (3, 5, 70, 63), (2, 65, 129, 130), (2, 33, 1100, 1030),
                                           (3, 0, 10, 7), (0, 4, 9, 5)])
@pytest.mark.parametrize("matmul", ["cuda_core", "tensor_core"])
@pytest.mark.parametrize("gate", [None, 6])
def test_sign_recurrence(cb, steps, n, kx, k, matmul, gate):
    """Each step's two products, signs and gate bits from one kernel equal the composed version (all input
    products at once, then the state products added), over several K slabs, both copy widths, edge tiles,
    padding bits left set in the inputs, an empty batch and no steps."""
    gen = np.random.default_rng(steps * 1000 + n * 31 + kx + k)
    x = rand_bits(gen, steps * n, kx).reshape(steps, n, bits.n_words(kx))
    w_in, w_rec, s0 = rand_bits(gen, k, kx), rand_bits(gen, k, k), rand_bits(gen, n, k)
    if kx % 64 and x.size:
        x[..., -1] |= ~np.uint64((1 << (kx % 64)) - 1)
    got = cb.variant(matmul=matmul).sign_recurrence(x, w_in, kx, w_rec, s0, gate=gate)
    want = NB.sign_recurrence(x, w_in, kx, w_rec, s0, gate=gate)
    assert len(got) == len(want) == (2 if gate is None else 3)
    for g, w in zip(got, want):
        same(g, w)


def test_sign_recurrence_rejects_mismatched_operands(cb):
    x, w = np.zeros((2, 3, 1), np.uint64), np.zeros((5, 1), np.uint64)
    with pytest.raises(ValueError, match="sign_recurrence"):
        cb.sign_recurrence(x, w, 10, w, np.zeros((4, 1), np.uint64))


# --- gated_transposed_product ---------------------------------------------------------------------------------
@pytest.mark.parametrize("n,k,j", [(1, 1, 1), (3, 63, 64), (65, 65, 63), (64, 600, 130), (2, 5, 200), (0, 10, 10),
                                   (4, 10, 0), (3, 0, 5), (130, 3300, 150), (70, 4031, 129)])
@pytest.mark.parametrize("gate_p", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("matmul", ["cuda_core", "tensor_core"])
def test_gated_transposed_product(cb, n, k, j, gate_p, matmul):
    gen = np.random.default_rng(n * 1000003 + k * 1009 + j)
    t, wt = rand_bits(gen, n, k), rand_bits(gen, j, k)
    g = bits.pack_bits(gen.random((n, k)) < gate_p)  # bool: True -> bit 1, padding 0
    same(cb.variant(matmul=matmul).gated_transposed_product(t, g, wt), NB.gated_transposed_product(t, g, wt))


# --- group_select ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k,gamma", [(120, 1), (120, 2), (120, 3), (120, 5), (120, 8), (120, 24), (120, 40),
                                     (120, 60), (120, 120), (192, 64), (192, 96), (525, 105), (525, 525), (70, 35)])
def test_group_select(cb, k, gamma):
    gen = np.random.default_rng(k * 1000 + gamma)
    n = 6
    score = gen.integers(0, 4, size=(n, k)).astype(np.int32)  # many ties
    score[1] = gen.integers(0, 2**31 - 1, size=k)
    score[2] = np.iinfo(np.int32).max
    p = np.array([0.5, 0.05, 0.5, 0.0, 1.0, 0.01])[:, None]
    cand = bits.pack_bits(gen.random((n, k)) < p)
    same(cb.group_select(score, cand, gamma), NB.group_select(score, cand, gamma))


def test_group_select_negative_scores_and_empty(cb):
    gen = np.random.default_rng(5)
    score = gen.integers(-(2**31), 2**31, size=(3, 96), dtype=np.int64).astype(np.int32)
    cand = rand_bits(gen, 3, 96)
    same(cb.group_select(score, cand, 12), NB.group_select(score, cand, 12))
    empty = np.zeros((0, 96), np.int32)
    same(cb.group_select(empty, np.zeros((0, 2), np.uint64), 12), NB.group_select(empty, np.zeros((0, 2), np.uint64), 12))
    with pytest.raises(ValueError):
        cb.group_select(score, cand, 7)


@pytest.mark.parametrize("n,k,gamma", [(1, 1, 1), (7, 70, 7), (4, 120, 40), (65, 525, 105), (3, 192, 64),
                                       (2, 96, 96), (0, 10, 5)])
def test_select_wrong(cb, n, k, gamma):
    """The fused mask kernel equals group_select(|z|, (a ^ t) & row_mask): value ties, int32 extremes (|min|
    wraps as in NumPy), rows that do not trigger."""
    gen = np.random.default_rng(n * 13 + k + gamma)
    z = gen.integers(-3, 4, size=(n, k)).astype(np.int32)
    z[:1, 3:4] = np.iinfo(np.int32).min  # a few extremes: most groups rank small values of both signs
    z[-1:, -1:] = np.iinfo(np.int32).max
    a, t = rand_bits(gen, n, k), rand_bits(gen, n, k)
    row_mask = np.where(gen.random((n, 1)) < 0.7, ~np.uint64(0), np.uint64(0)).astype(np.uint64)
    want = NB.group_select(np.abs(z), (a ^ t) & row_mask, gamma)
    same(cb.select_wrong(z, a, t, row_mask, gamma), want)
    same(NB.select_wrong(z, a, t, row_mask, gamma), want)
    with pytest.raises(ValueError):
        cb.select_wrong(z, a, t, np.zeros((n, 2), np.uint64), gamma)
    # Row words shared by the stacked steps of a recurrent step: 3 steps of n samples, row r takes word r % n.
    z3, a3, t3 = np.concatenate([z] * 3), rand_bits(gen, 3 * n, k), rand_bits(gen, 3 * n, k)
    want3 = NB.group_select(np.abs(z3), (a3 ^ t3) & np.tile(row_mask, (3, 1)), gamma)
    same(cb.select_wrong(z3, a3, t3, row_mask, gamma), want3)
    same(NB.select_wrong(z3, a3, t3, row_mask, gamma), want3)


@settings(max_examples=10, deadline=None)
@given(n=st.integers(1, 5), groups=st.integers(1, 6), gamma=st.integers(1, 80), seed=st.integers(0, 2**32 - 1))
def test_group_select_property(cb, n, groups, gamma, seed):
    gen = np.random.default_rng(seed)
    k = groups * gamma
    score = gen.integers(0, 8, size=(n, k)).astype(np.int32)
    cand = bits.pack_bits(gen.random((n, k)) < gen.random())
    same(cb.group_select(score, cand, gamma), NB.group_select(score, cand, gamma))


# --- batch_update ---------------------------------------------------------------------------------------------
def _hidden(gen, k, j):
    h = gen.integers(-32768, 32768, size=(k, j)).astype(np.int16)
    flat = h.reshape(-1)
    flat[::3] = 32767
    flat[1::3] = -32768
    flat[2::6] = 32766
    return h


@pytest.fixture(scope="module", params=[("popcount", "cuda_core"), ("popcount", "tensor_core"), ("sparse", "auto")],
                ids=["popcount", "popcount-tc", "sparse"])
def ub(request):
    """The emulated CUDA backend with each form of the update kernels (batch_update.cu)."""
    from bep_gpu.backends.cuda_backend import CudaBackend
    from emu import emulated_module

    update, matmul = request.param
    return CudaBackend(module=emulated_module(), xp=np, update=update, matmul=matmul)


@pytest.mark.parametrize("n,k,j", [(0, 5, 7), (1, 1, 1), (3, 63, 65), (65, 64, 64), (130, 70, 129), (700, 9, 3),
                                   (40, 3, 300), (3300, 70, 150)])
@pytest.mark.parametrize("clip", [32767, 5])
def test_batch_update(ub, n, k, j, clip):
    gen = np.random.default_rng(n * 100003 + k * 101 + j + clip)
    h = _hidden(gen, k, j)
    h[0, 0] = 0
    sel = bits.pack_bits(gen.random((n, k)) < 0.4)
    t, x = rand_bits(gen, n, k), rand_bits(gen, n, j)
    h_ref = h.copy()
    NB.batch_update(h_ref, sel, t, x, clip)
    ub.batch_update(h, sel, t, x, clip)
    same(h, h_ref)


@pytest.mark.parametrize("n,k,j", [(0, 5, 7), (3, 63, 65), (130, 70, 129), (40, 3, 300)])
@pytest.mark.parametrize("threshold,active", [(2**31, None), (2**32, np.array([1])), (2**31, np.array([0])),
                                              (0, None), (-5, None)])
@pytest.mark.parametrize("device_step", [False, True])
def test_batch_update_reinforce(ub, n, k, j, threshold, active, device_step):
    """The update with its reinforcement fired in the same store equals batch_update then reinforce: host and
    device steps, an inactive step, thresholds that fire always or never, clips the reinforcement hits, and no
    samples (then the clip and the reinforce kernel)."""
    gen = np.random.default_rng(n * 7 + k * 101 + j + threshold % 97)
    h = _hidden(gen, k, j)
    h.reshape(-1)[::11] = 0
    h.reshape(-1)[1::13] = 9  # 9 + 2 passes the clip of 10
    sel = bits.pack_bits(gen.random((n, k)) < 0.4)
    t, x = rand_bits(gen, n, k), rand_bits(gen, n, j)
    step, layer, clip = 2**40 + 3, 2, 10
    h_ref = h.copy()
    NB.batch_update(h_ref, sel, t, x, clip)
    NB.reinforce(h_ref, threshold, 99, 1, step, layer, clip, active=active)
    ub.batch_update_reinforce(h, sel, t, x, clip, threshold, 99, 1, np.array([step]) if device_step else step, layer,
                              active=active)
    same(h, h_ref)


def test_batch_update_large_delta_single_clip(ub):
    """Every sample pushes the same way: the int32 sum exceeds int16 before the one clip."""
    n, k, j = 500, 3, 5
    h = np.full((k, j), 32000, np.int16)
    sel = bits.pack_bits(np.ones((n, k), bool))
    t = bits.pack_bits(np.ones((n, k)))
    x = bits.pack_bits(np.ones((n, j)))  # every sample adds +2: 32000 + 1000 only fits the int32 sum
    h_ref = h.copy()
    NB.batch_update(h_ref, sel, t, x, 32767)
    ub.batch_update(h, sel, t, x, 32767)
    same(h, h_ref)
    assert (h == 32767).all()


def test_batch_update_non_contiguous_h(ub):
    gen = np.random.default_rng(11)
    base = _hidden(gen, 40, 30)
    h = base.T  # a view: updated in place through a copy and a write-back
    h_ref = h.copy()
    sel, t, x = (bits.pack_bits(gen.random((9, 30)) < 0.5), rand_bits(gen, 9, 30), rand_bits(gen, 9, 40))
    NB.batch_update(h_ref, sel, t, x, 32767)
    ub.batch_update(h, sel, t, x, 32767)
    same(base.T, h_ref)


@pytest.mark.parametrize("n,k,j", [(0, 5, 7), (1, 1, 1), (65, 63, 130), (130, 70, 64), (4031, 130, 129)])
def test_update_delta(ub, n, k, j):
    """batch_update's int32 sum alone (for data-parallel all-reduce), into a new array or a given `out`."""
    from bep_gpu.backends.numpy_backend import unpack01, unpack_pm1

    gen = np.random.default_rng(n + 10 * k + 1000 * j)
    sel = bits.pack_bits(gen.random((n, k)) < 0.5)
    t, x = rand_bits(gen, n, k), rand_bits(gen, n, j)
    want = ((unpack_pm1(t, k) * unpack01(sel, k)).T @ unpack_pm1(x, j)).astype(np.int32)
    same(ub.update_delta(sel, t, x, k, j), want)
    buf = np.full(2 * k * j + 3, 7, np.int32)
    view = buf[3:3 + k * j].reshape(k, j)
    assert ub.update_delta(sel, t, x, k, j, out=view) is view
    same(view, want)
    strided = np.zeros((k, 2 * j), np.int32)[:, ::2]
    ub.update_delta(sel, t, x, k, j, out=strided)
    same(strided, want)


def test_sparse_update_strides_over_rows_beyond_the_grid(monkeypatch):
    """More rows than grid rows: each block of the sparse kernels walks several rows (k += gridDim.y)."""
    from bep_gpu.backends import cuda_backend
    from emu import emulated_module

    monkeypatch.setattr(cuda_backend, "MAX_GRID_Y", 3)
    sb = cuda_backend.CudaBackend(module=emulated_module(), xp=np, update="sparse")
    gen = np.random.default_rng(5)
    n, k, j = 70, 11, 300
    h = _hidden(gen, k, j)
    sel = bits.pack_bits(gen.random((n, k)) < 0.3)
    t, x = rand_bits(gen, n, k), rand_bits(gen, n, j)
    same(sb.update_delta(sel, t, x, k, j), NB.update_delta(sel, t, x, k, j))
    h_ref = h.copy()
    NB.batch_update(h_ref, sel, t, x, 100)
    sb.batch_update(h, sel, t, x, 100)
    same(h, h_ref)


def test_update_impl_selection(monkeypatch):
    from bep_gpu.backends.cuda_backend import CudaBackend
    from emu import emulated_module

    with pytest.raises(ValueError, match="update impl must be one of"):
        CudaBackend(module=emulated_module(), xp=np, update="scatter")
    monkeypatch.setenv("BEP_UPDATE", "sparse")
    assert CudaBackend(module=emulated_module(), xp=np).update == "sparse"
    assert CudaBackend(module=emulated_module(), xp=np, update="popcount").update == "popcount"


# --- reinforce / counter_uniform -------------------------------------------------------------------------------
@pytest.mark.parametrize("threshold", [0, 1, 2**31, 2**32 - 1, 2**32, 2**32 + 7])
@pytest.mark.parametrize("clip", [32767, 9])
def test_reinforce(cb, threshold, clip):
    gen = np.random.default_rng(threshold % 9973 + clip)
    h = _hidden(gen, 37, 29)
    h.reshape(-1)[5::13] = 0
    h_ref = h.copy()
    args = (threshold, 2**64 - 1, 1, 12345, 2, clip)
    NB.reinforce(h_ref, *args)
    cb.reinforce(h, *args)
    same(h, h_ref)
    # The same draw with the step held in a device array (reinforce_at_step, what a CUDA graph replays).
    h2 = _hidden(gen, 37, 29)
    h2_ref = h2.copy()
    NB.reinforce(h2_ref, threshold, 2**64 - 1, 1, 2**40 + 3, 2, clip)
    cb.reinforce(h2, threshold, 2**64 - 1, 1, np.array([2**40 + 3], np.int64), 2, clip)
    same(h2, h2_ref)


def test_reinforce_non_contiguous_h(cb):
    """h a transposed view: both backends update it in place, by its row-major flat index."""
    base = _hidden(np.random.default_rng(4), 6, 4)
    base_ref = base.copy()
    NB.reinforce(base_ref.T, 2**31, 3, 1, 5, 0, 32767)
    cb.reinforce(base.T, 2**31, 3, 1, 5, 0, 32767)
    same(base, base_ref)
    assert (base != _hidden(np.random.default_rng(4), 6, 4)).any()


def test_int_matmul_refuses_widths_that_overflow_int32(cb):
    h, x = np.zeros((1, 65536), np.int16), np.zeros((1, 1024), np.uint64)
    for bk in (NB, cb):
        with pytest.raises(ValueError, match="overflow"):
            bk.int_matmul(x, h)


@pytest.mark.parametrize("active", [None, np.array([0]), np.array([3]), np.array([False]), np.array([1, 0], np.int32),
                                    np.array([0.0]), np.array([0.5])])
def test_reinforce_active_flag(cb, active):
    h = _hidden(np.random.default_rng(1), 20, 20)
    h_ref = h.copy()
    NB.reinforce(h_ref, 2**31, 7, 1, 3, 0, 32767, active=active)
    cb.reinforce(h, 2**31, 7, 1, 3, 0, 32767, active=active)
    same(h, h_ref)


@pytest.mark.parametrize("n", [0, 1, 1000, 70000])
def test_counter_uniform(cb, n):
    for key in [(0, 0, 0, 0), (2**64 - 1, 1, 2**40, 3)]:
        same(cb.counter_uniform(*key, n), NB.counter_uniform(*key, n))


# --- int_matmul ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,k,j", [(1, 1, 1), (3, 2, 63), (65, 64, 64), (64, 65, 65), (2, 130, 200), (0, 3, 5),
                                   (3, 0, 5), (3, 4, 0)])
def test_int_matmul(cb, n, k, j):
    gen = np.random.default_rng(n * 7 + k * 131 + j)
    x = rand_bits(gen, n, j)
    h = _hidden(gen, k, j)
    same(cb.int_matmul(x, h), NB.int_matmul(x, h))


def test_int_matmul_extremes(cb):
    j = 1000
    x = bits.pack_bits(-np.ones((2, j)))
    h = np.full((3, j), -32768, np.int16)
    same(cb.int_matmul(x, h), np.full((2, 3), 32768 * j, np.int32))


# --- one BEP step end to end ------------------------------------------------------------------------------------
def test_bep_train_step_matches_numpy(cb):
    from bep_gpu import bep_mlp

    gen = np.random.default_rng(3)
    sizes = [100, 70, 65]
    n_classes, batch = 4, 33
    rules = bep_mlp.StepRules.make(sizes, r=0.5, nu=0.5, clip=40)
    thresholds = bep_mlp.reinforcement_thresholds(sizes, 0.5, 1.0)
    hidden0 = [gen.integers(-40, 41, size=(sizes[i + 1], sizes[i])).astype(np.int16) for i in range(2)]
    protos = bits.pack_bits(gen.choice([-1, 1], size=(n_classes, sizes[-1])))
    results = []
    for bk in (NB, cb):
        hidden = [h.copy() for h in hidden0]
        counts = []
        for step in range(2):
            x = bits.pack_bits(np.random.default_rng(step).choice([-1, 1], size=(batch, sizes[0])))
            labels = np.random.default_rng(step + 10).integers(0, n_classes, size=batch)
            c = bep_mlp.train_step(bk, hidden, sizes, protos, x, labels, [5, 13], rules, thresholds, 9, step)
            counts.append(bk.to_numpy(c))
        results.append((hidden, counts))
    for h_np, h_cu in zip(results[0][0], results[1][0]):
        same(h_cu, h_np)
    same(np.array(results[1][1]), np.array(results[0][1]))


# --- the emulator itself: it must catch the bugs a GPU would hide or punish -------------------------------------
_PROBE = textwrap.dedent(
    """
    #include "bep_common.cuh"
    // NumPy mirror: none (emulator self-test)
    extern "C" __global__ void probe(const int* in, unsigned* ballots, int* shuffled, int* out, int n) {
        const int lane = threadIdx.x & 31;
        const unsigned b = __ballot_sync(0xffffffffu, in[threadIdx.x] > 0);
        if (lane == 0) ballots[threadIdx.x >> 5] = b;
        shuffled[threadIdx.x] = __shfl_xor_sync(0xffffffffu, in[threadIdx.x], 5)
            + 1000 * __shfl_down_sync(0xffffffffu, in[threadIdx.x], 3, 8);
        if (threadIdx.x == 0) out[n] = 1;  // out of bounds when n == len(out)
    }
    """
)


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    from emu import EmuModule

    src = tmp_path_factory.mktemp("probe") / "probe.cu"
    src.write_text(_PROBE)
    return EmuModule([src]).get_function("probe")


def test_emulator_warp_intrinsics(probe):
    vals = np.random.default_rng(0).integers(-5, 5, size=64).astype(np.int32)
    ballots = np.zeros(2, np.uint32)
    shuffled = np.zeros(64, np.int32)
    out = np.zeros(4, np.int32)
    probe((1,), (64,), (vals, ballots, shuffled, out, np.int32(0)))
    lane = np.arange(64) % 32
    warp_base = np.arange(64) - lane
    expect_ballot = [sum(int(vals[w * 32 + l] > 0) << l for l in range(32)) for w in range(2)]
    np.testing.assert_array_equal(ballots, expect_ballot)
    down = np.where(lane % 8 + 3 < 8, np.arange(64) + 3, np.arange(64))
    np.testing.assert_array_equal(shuffled, vals[warp_base + (lane ^ 5)] + 1000 * vals[down])
    assert out[0] == 1


def test_emulator_rejects_what_the_gpu_would_misread(probe):
    a = np.zeros(64, np.int32)
    args = [a, np.zeros(2, np.uint32), np.zeros(64, np.int32), np.zeros(4, np.int32)]
    with pytest.raises(TypeError):  # Python int: CuPy would pass 8 bytes for a 4-byte parameter
        probe((1,), (64,), (*args, 0))
    with pytest.raises(TypeError):
        probe((1,), (64,), (*args, np.int64(0)))
    with pytest.raises(TypeError):
        probe((1,), (64,), (a.astype(np.int64), *args[1:], np.int32(0)))
    with pytest.raises(ValueError):
        probe((1,), (64,), (np.zeros(128, np.int32)[::2], *args[1:], np.int32(0)))
    with pytest.raises(RuntimeError, match="write outside"):
        probe((1,), (64,), (*args, np.int32(4)))


def test_emulator_build_errors_are_reported(tmp_path):
    from emu import EmuModule

    bad = tmp_path / "bad.cu"
    bad.write_text('extern "C" __global__ void broken(int* p) { p[0] = undefined_name; }\n')
    with pytest.raises(RuntimeError, match="emulator build failed"):
        EmuModule([bad])


# --- trigger -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,c", [(0, 10), (1, 1), (5, 2), (70, 10), (33, 45), (300, 3)])
@pytest.mark.parametrize("margin", [0, 3, 2**40, -5])
def test_trigger(cb, n, c, margin):
    """Counts and row words equal the array version; ties in the argmax and between the label and another class
    (small value range), one class, no rows, and margins that trigger every row or none."""
    gen = np.random.default_rng(n * 31 + c + margin % 97)
    logits = gen.integers(-4, 5, size=(n, c)).astype(np.int32)
    labels = gen.integers(0, c, size=n)
    counts, rows = cb.trigger(logits, labels, margin)
    want_counts, want_rows = NB.trigger(logits, labels, margin)
    same(counts, want_counts)
    same(rows, want_rows)
    extreme = np.where(gen.random((n, c)) < 0.5, np.iinfo(np.int32).min, np.iinfo(np.int32).max).astype(np.int32)
    for got, want in zip(cb.trigger(extreme, labels, margin), NB.trigger(extreme, labels, margin)):
        same(got, want)


def _counted_backend(matmul):
    """A CudaBackend on a launch-counting emulated module, the tensor-core layout probe already run (its launches
    are not the step's), and the kernel-name suffix of its products."""
    from bep_gpu.backends.cuda_backend import CudaBackend
    from emu import CountingModule

    module = CountingModule()
    bk = CudaBackend(module=module, xp=np, matmul=matmul, update="popcount")
    assert bk._tensor_cores() == (matmul == "tensor_core")
    module.launches.clear()
    return bk, module, "_tc" if matmul == "tensor_core" else ""


@pytest.mark.parametrize("matmul", ["cuda_core", "tensor_core"])
def test_mlp_step_kernel_launches(matmul):
    """A step's raw kernels, by name: fused forward (signs, and gates for the layer above), one-kernel trigger and
    masks; with tensor cores every product (forward, targets, update) runs on them. A new launch in the step (or a
    fused kernel falling back to array code) shows up here first."""
    from collections import Counter

    from bep_gpu import bep_mlp

    bk, module, tc = _counted_backend(matmul)
    gen = np.random.default_rng(2)
    sizes = [100, 70, 70]
    hidden = [gen.integers(-20, 21, size=(sizes[i + 1], sizes[i])).astype(np.int16) for i in range(2)]
    rules = bep_mlp.StepRules.make(sizes, 0.75, 0.2, 32767)
    protos = rand_bits(gen, 4, sizes[-1])
    x, y = rand_bits(gen, 30, sizes[0]), gen.integers(0, 4, size=30)
    bep_mlp.train_step(bk, hidden, sizes, protos, x, y, [7, 7], rules, [2**20, 2**20], 0, 0)
    # W_1^T is packed with W_1 (pack_both), each update's batch-packed operands come from one launch
    # (update_operands, which with tensor cores also counts their rows), the reinforcement fires in the update's
    # store; the four other tensor-core products count their operands' rows in row_popcounts.cu. 13 launches on
    # CUDA cores, 17 with tensor cores.
    assert module.launches == Counter({"pack_i16": 1, "pack_both_i16": 1, "xnor_matmul_sign" + tc: 1,
                                       "xnor_matmul_sign_gate" + tc: 1, "xnor_matmul" + tc: 1, "trigger": 1,
                                       "gated_transposed_product" + tc: 1, "select_wrong": 2, "update_operands": 2,
                                       "batch_update" + tc: 2, **({"row_popcounts": 4} if tc else {})})
    assert sum(module.launches.values()) == (17 if tc else 13)


@pytest.mark.parametrize("matmul", ["cuda_core", "tensor_core"])
def test_rnn_step_kernel_launches(matmul):
    """A BEP-TT step's raw kernels: one fused kernel per time step of the recurrence (z_t = W_xs a_t + W_ss
    s_{t-1}, signs and gate bits packed), the readout with its signs and gate bits in one kernel, one trigger,
    fused masks."""
    from collections import Counter

    from bep_gpu import bep_rnn

    bk, module, tc = _counted_backend(matmul)
    gen = np.random.default_rng(2)
    kx, ks, ky, steps, batch = 20, 70, 70, 6, 30
    hidden = [gen.integers(-20, 21, size=s).astype(np.int16) for s in [(ks, kx), (ks, ks), (ky, ks)]]
    rules = bep_rnn.step_rules([kx, ks, ky], 0.5, 0.05, 32767)
    x = bits.pack_bits(gen.choice([-1, 1], size=(batch, steps, kx)))
    bep_rnn.train_step(bk, hidden, [kx, ks, ky], rand_bits(gen, 4, ky), x, gen.integers(0, 4, size=batch), [7, 7],
                       rules, 0, False, [2**20] * 3, 0, 0)
    # W_ss^T and W_sy^T are packed with W_ss and W_sy; each step of the recurrence is one kernel (both products,
    # signs and gate bits; with tensor cores plus its row counts, row_popcounts_pair); each update's batch-packed
    # operands come from one launch.
    assert module.launches == Counter({"pack_i16": 1, "pack_both_i16": 2, "pack_i8": 1, "xnor_matmul" + tc: 1,
                                       "xnor_matmul2_sign_gate" + tc: steps, "xnor_matmul_sign_gate" + tc: 1,
                                       "trigger": 1, "gated_transposed_product" + tc: steps, "select_wrong": 2,
                                       "update_operands": 3, "batch_update" + tc: 3,
                                       **({"row_popcounts": 2 + steps, "row_popcounts_pair": steps} if tc else {})})
    assert sum(module.launches.values()) == (15 + 2 * steps) + (2 + 2 * steps if tc else 0)


@pytest.mark.parametrize("matmul", ["cuda_core", "tensor_core"])
def test_conv_step_kernel_launches(matmul):
    """A BEP-Conv step (two conv layers, one dense, the readout): W^T packed with W, one launch of batch-packed
    update operands per layer, the conv products on the same three product kernels as the MLP."""
    from collections import Counter

    from bep_gpu.bep_mlp import reinforcement_thresholds
    from test_conv import NETS, batches, make_task

    bk, module, tc = _counted_backend(matmul)
    net = NETS[0]
    task = make_task(bk, net, 0)[0]
    x, y = batches(net, 0, sizes=(5,))[0]
    module.launches.clear()
    task.step(bits.pack_bits(x), y, net[5], reinforcement_thresholds(task.fan_ins, 2.0, 0.5), 0)
    assert module.launches == Counter({"pack_i16": 1, "pack_both_i16": 2, "im2col_bits": 3, "xnor_matmul_sign" + tc: 1,
                                       "xnor_matmul_sign_gate" + tc: 2, "xnor_matmul" + tc: 1, "trigger": 1,
                                       "gated_transposed_sum": 2, "col2im_sign": 2, "conv_select_wrong": 2,
                                       "select_wrong": 1, "update_operands": 3, "batch_update" + tc: 3,
                                       **({"row_popcounts": 4} if tc else {})})
    assert sum(module.launches.values()) == (28 if tc else 24)


@pytest.mark.parametrize("rows_x,rows_z,k", [(1, 1, 1), (70, 3, 63), (5, 130, 2049), (0, 4, 64), (33, 0, 700)])
def test_row_popcounts(cb, rows_x, rows_z, k):
    """The tensor-core epilogues' row counts: popc(x & y) per row of x, then popc(z), bits past k ignored even
    when set."""
    gen = np.random.default_rng(rows_x * 31 + rows_z + k)
    x, y, z = rand_bits(gen, rows_x, k), rand_bits(gen, rows_x, k), rand_bits(gen, rows_z, k)
    if k % 64:
        x[:, -1] |= ~np.uint64((1 << (k % 64)) - 1)
        y[:, -1] |= ~np.uint64((1 << (k % 64)) - 1)
        z[:, -1] |= ~np.uint64((1 << (k % 64)) - 1)
    want = np.concatenate([bits.row_popcounts(x & y, k), bits.row_popcounts(z, k)])
    same(cb._row_popcounts(x, y, z, k), want)
    same(cb._row_popcounts(z, z, x, None), np.concatenate([bits.row_popcounts(z), bits.row_popcounts(x)]))
