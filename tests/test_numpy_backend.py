"""Each NumPy primitive against the dense +-1 integer reference, on random shapes (edge sizes included)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dense_reference as ref
from bep_gpu import get_backend, pack_bits, unpack_bits
from bep_gpu.backends.numpy_backend import NumpyBackend
from bep_gpu.bits import n_words

B = get_backend("numpy")
CLIP = 32767
dims = st.integers(1, 150)


def pm1(rng, *shape):
    return rng.choice(np.array([-1, 1], dtype=np.int8), size=shape)


@given(st.integers(0, 20), st.integers(0, 20), dims, st.integers(0, 2**32 - 1))
@settings(max_examples=60, deadline=None)
def test_xnor_matmul(m, n, k, seed):
    rng = np.random.default_rng(seed)
    a, b = pm1(rng, m, k), pm1(rng, n, k)
    z = B.xnor_matmul(pack_bits(a), pack_bits(b), k)
    assert z.dtype == np.int32 and z.shape == (m, n)
    assert np.array_equal(z, ref.xnor_matmul(a, b))


def test_xnor_matmul_k1_and_large_k():
    rng = np.random.default_rng(1)
    a, b = pm1(rng, 3, 1), pm1(rng, 2, 1)
    assert np.array_equal(B.xnor_matmul(pack_bits(a), pack_bits(b), 1), ref.xnor_matmul(a, b))
    k = (1 << 24) + 77  # past the exact float32 range: exercises the chunked sum
    a, b = pm1(rng, 2, k), pm1(rng, 1, k)
    assert np.array_equal(B.xnor_matmul(pack_bits(a), pack_bits(b), k), ref.xnor_matmul(a, b))


def test_xnor_matmul_rejects_mismatched_words():
    with pytest.raises(ValueError, match="xnor_matmul"):
        B.xnor_matmul(np.zeros((2, 2), np.uint64), np.zeros((2, 1), np.uint64), 100)


@given(st.integers(0, 12), dims, st.integers(0, 40), st.integers(0, 2**32 - 1))
@settings(max_examples=50, deadline=None)
def test_sign_pack_and_gate_pack(n, k, thr, seed):
    rng = np.random.default_rng(seed)
    z = rng.integers(-50, 51, size=(n, k)).astype(np.int32)
    assert np.array_equal(unpack_bits(B.pack(z), k), ref.sgn(z))
    assert np.array_equal(unpack_bits(B.gate_pack(z, thr), k) > 0, np.abs(z) <= thr)


@given(st.integers(0, 12), dims, dims, st.floats(0, 1), st.integers(0, 2**32 - 1))
@settings(max_examples=60, deadline=None)
def test_gated_transposed_product(n, k, j, gate_p, seed):
    rng = np.random.default_rng(seed)
    t, w = pm1(rng, n, k), pm1(rng, k, j)
    g = rng.random((n, k)) < gate_p
    wt = B.transpose_bits(pack_bits(w), k, j)
    out = B.gated_transposed_product(pack_bits(t), pack_bits(g), wt)
    assert out.shape == (n, n_words(j))
    assert np.array_equal(unpack_bits(out, j), ref.gated_transposed_product(t, g, w))


@given(st.integers(0, 8), st.sampled_from([1, 3, 5, 7, 35, 64, 65, 105]), st.integers(1, 4), st.integers(0, 2**32 - 1))
@settings(max_examples=60, deadline=None)
def test_group_select(n, gamma, groups, seed):
    rng = np.random.default_rng(seed)
    k = gamma * groups
    score = rng.integers(0, 6, size=(n, k)).astype(np.int32)  # many ties
    cand = rng.random((n, k)) < 0.3
    sel = B.group_select(score, pack_bits(cand), gamma)
    assert np.array_equal(unpack_bits(sel, k) > 0, ref.group_select(score, cand, gamma))


def test_group_select_rejects_non_divisor():
    with pytest.raises(ValueError, match="divide"):
        B.group_select(np.zeros((1, 10), np.int32), np.zeros((1, 1), np.uint64), 3)


@pytest.mark.parametrize("update", ["popcount", "sparse"])
@given(n=st.integers(0, 80), k=dims, j=dims, p=st.sampled_from([0.0, 0.05, 0.2, 1.0]), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=60, deadline=None)
def test_batch_update(update, n, k, j, p, seed):
    bk = NumpyBackend(update=update)
    rng = np.random.default_rng(seed)
    h = rng.integers(-100, 101, size=(k, j)).astype(np.int16)
    sel, t, x = rng.random((n, k)) < p, pm1(rng, n, k), pm1(rng, n, j)
    expect = ref.batch_update(h, sel, t, x, 90)  # small clip: the clip is exercised
    delta = bk.update_delta(pack_bits(sel), pack_bits(t), pack_bits(x), k, j)
    assert delta.dtype == np.int32 and np.array_equal(2 * delta + h, ref.batch_update(h, sel, t, x, 2**20))
    bk.batch_update(h, pack_bits(sel), pack_bits(t), pack_bits(x), 90)
    assert h.dtype == np.int16 and np.array_equal(h, expect)


def test_batch_update_saturates_at_int16_limits():
    h = np.array([[CLIP, -CLIP], [CLIP - 1, 0]], dtype=np.int16)
    ones = pack_bits(np.ones((3, 2), np.int8))
    B.batch_update(h, ones, ones, ones, CLIP)  # +6 everywhere
    assert h.tolist() == [[CLIP, -CLIP + 6], [CLIP, 6]]
    h2 = np.array([[-CLIP, CLIP]], dtype=np.int16)
    B.batch_update(h2, pack_bits(np.ones((3, 1), np.int8)), pack_bits(-np.ones((3, 1), np.int8)), ones, CLIP)
    assert h2.tolist() == [[-CLIP, CLIP - 6]]


@given(dims, dims, st.sampled_from([0, 1 << 29, 1 << 31, 2**32]), st.integers(0, 2**31), st.integers(0, 10**6))
@settings(max_examples=30, deadline=None)
def test_reinforce(k, j, thr, seed, step):
    rng = np.random.default_rng(seed)
    h = rng.integers(-6, 7, size=(k, j)).astype(np.int16)
    h[0, 0] = 0
    expect = ref.reinforce(h, thr, seed, 1, step, 3, 5)
    B.reinforce(h, thr, seed, 1, step, 3, 5)
    assert np.array_equal(h, expect)


def test_reinforce_edges():
    h = np.array([[0, 32767, -32767, 5, -5]], dtype=np.int16)
    B.reinforce(h, 2**32, 0, 1, 0, 0, CLIP)  # p = 1: every entry moves away from 0, zero goes to +2
    assert h.tolist() == [[2, 32767, -32767, 7, -7]]
    B.reinforce(h, 0, 0, 1, 0, 0, CLIP)  # p = 0: nothing moves
    assert h.tolist() == [[2, 32767, -32767, 7, -7]]


@given(st.integers(0, 10), dims, dims, st.integers(0, 2**32 - 1))
@settings(max_examples=30, deadline=None)
def test_int_matmul(n, k, j, seed):
    rng = np.random.default_rng(seed)
    x = pm1(rng, n, j)
    h = rng.integers(-CLIP, CLIP + 1, size=(k, j)).astype(np.int16)
    assert np.array_equal(B.int_matmul(pack_bits(x), h), x.astype(np.int64) @ h.T.astype(np.int64))
