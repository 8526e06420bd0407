import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bep_gpu
from bep_gpu.bits import n_words


@given(st.integers(0, 5), st.integers(1, 200), st.integers(0, 2**32 - 1))
@settings(max_examples=60, deadline=None)
def test_pack_unpack_round_trip_and_padding(rows, n, seed):
    x = np.random.default_rng(seed).choice(np.array([-1, 1], dtype=np.int8), size=(rows, n))
    w = bep_gpu.pack_bits(x)
    assert w.dtype == np.uint64 and w.shape == (rows, n_words(n))
    assert np.array_equal(bep_gpu.unpack_bits(w, n), x)
    if n % 64:
        assert not (w[:, -1] >> np.uint64(n % 64)).any(), "padding bits must be zero"


def test_bit_positions_follow_the_spec():
    x = -np.ones(130, dtype=np.int8)
    x[[0, 5, 64, 129]] = 1
    w = bep_gpu.pack_bits(x)
    assert w.tolist() == [(1 << 0) | (1 << 5), 1 << 0, 1 << 1]
    # sign(0) = +1; uint32 view keeps the same bit order (low half first)
    assert bep_gpu.pack_bits(np.array([0, -3, 7])).tolist() == [0b101]
    assert w.view(np.uint32).tolist()[:2] == [(1 << 0) | (1 << 5), 0]


@given(st.integers(0, 70), st.integers(1, 140), st.integers(0, 2**32 - 1))
@settings(max_examples=40, deadline=None)
def test_transpose_bits(rows, cols, seed):
    x = np.random.default_rng(seed).choice(np.array([-1, 1], dtype=np.int8), size=(rows, cols))
    t = bep_gpu.transpose_bits(bep_gpu.pack_bits(x), rows, cols)
    assert t.shape == (cols, n_words(rows))
    assert np.array_equal(bep_gpu.unpack_bits(t, rows), x.T)


def test_unpack_rejects_wrong_word_count():
    with pytest.raises(ValueError, match="words"):
        bep_gpu.unpack_bits(np.zeros((2, 3), np.uint64), 64)
