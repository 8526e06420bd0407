"""Conv primitives (im2col, col2im_sign, gated_transposed_sum, conv_select_wrong): the NumPy backend against the
independent dense conv reference, and the CUDA kernels (run by the CPU emulator) against NumPy, bit for bit.

Shapes: C not a multiple of 64 (and above it), stride 1 and 2, padding 0, 1 and 2, k = 1, 3, 5, tiles that do
not divide the map (edge tiles), q = 0 and q larger than the map, empty batches."""
import numpy as np
import pytest

import conv_reference as ref
from bep_gpu import bits
from bep_gpu.backends.numpy_backend import NumpyBackend
from conftest import needs_emulator

NB = NumpyBackend()
# (N, H, W, C_in, C_out, k, stride, pad)
SHAPES = [(2, 7, 6, 70, 5, 3, 2, 1), (3, 5, 5, 3, 4, 1, 1, 0), (1, 9, 8, 65, 66, 5, 1, 2), (2, 6, 7, 1, 8, 3, 1, 1),
          (1, 8, 8, 130, 3, 5, 2, 0), (0, 5, 5, 3, 4, 3, 1, 1)]


def case(shape):
    n, h, w, c, o, k, s, p = shape
    gen = np.random.default_rng(abs(hash(shape)) % 2**32)
    a = gen.choice([-1, 1], size=(n, h, w, c))
    wts = gen.choice([-1, 1], size=(o, k, k, c))
    ho, wo = ref.out_size(h, k, s, p), ref.out_size(w, k, s, p)
    return gen, a, wts, ho, wo


def forward(bk, a, wts, s, p):
    n, _, _, c = a.shape
    o, k = wts.shape[:2]
    cols = bk.im2col(bk.asarray(bits.pack_bits(a)), c, k, k, s, p)
    z = bk.xnor_matmul(cols.reshape(-1, cols.shape[-1]), bk.asarray(bits.pack_bits(wts.reshape(o, -1))), k * k * c)
    return cols, bk.to_numpy(z)


def targets(bk, wts, t, g, h, w, s, p):
    o, k, _, c = wts.shape
    n, ho, wo = t.shape[:3]
    wt = bk.transpose_bits(bk.asarray(bits.pack_bits(wts.reshape(o, -1))), o, k * k * c)
    sums = bk.gated_transposed_sum(bk.asarray(bits.pack_bits(t.reshape(-1, o))),
                                   bk.asarray(bits.pack_bits(g.reshape(-1, o))), wt)
    return bk.to_numpy(sums), bk.to_numpy(bk.col2im_sign(sums.reshape(n, ho, wo, k * k * c), h, w, c, k, k, s, p))


def masks(bk, z, a, t, trig, ho, wo, q, gamma):
    o = z.shape[-1]
    row_mask = (np.uint64(0) - trig.astype(np.uint64))[:, None]
    words = [bk.asarray(bits.pack_bits(v.reshape(-1, o))) for v in (a, t)]
    sel = bk.conv_select_wrong(bk.asarray(z.reshape(-1, o).astype(np.int32)), *words, bk.asarray(row_mask), ho, wo, q,
                               gamma)
    return bk.to_numpy(sel)


def mask_case(gen, n, ho, wo, o):
    z = gen.integers(-3, 4, size=(n, ho, wo, o))  # few values: many ties
    return z, gen.choice([-1, 1], size=z.shape), gen.choice([-1, 1], size=z.shape), gen.random(n) < 0.7


@pytest.mark.parametrize("shape", SHAPES)
def test_numpy_conv_primitives_match_the_dense_reference(shape):
    n, h, w, c, o, k, s, p = shape
    gen, a, wts, ho, wo = case(shape)
    cols, z = forward(NB, a, wts, s, p)
    assert cols.shape == (n, ho, wo, bits.n_words(k * k * c))
    np.testing.assert_array_equal(z.reshape(n, ho, wo, o), ref.conv_z(a, wts, s, p))
    t, g = gen.choice([-1, 1], size=(n, ho, wo, o)), gen.random((n, ho, wo, o)) < 0.6
    _, t_in = targets(NB, wts, t, g, h, w, s, p)
    np.testing.assert_array_equal(bits.unpack_bits(t_in, c), ref.input_targets(wts, t * g, h, w, s, p))
    for q in (0, 1, 2, 3, 100):
        for gamma in [d for d in range(1, o + 1) if o % d == 0][:3]:
            zz, aa, tt, trig = mask_case(gen, n, ho, wo, o)
            want = ref.tile_mask((aa != tt) & trig[:, None, None, None], np.abs(zz), q, gamma)
            got = bits.unpack_bits(masks(NB, zz, aa, tt, trig, ho, wo, q, gamma), o).reshape(zz.shape) > 0
            np.testing.assert_array_equal(got, want > 0, err_msg=f"q={q} gamma={gamma}")


def test_gated_transposed_sum_signs_are_gated_transposed_product():
    gen = np.random.default_rng(3)
    t, g, wt = (bits.pack_bits(gen.choice([-1, 1], size=shape)) for shape in [(5, 130), (5, 130), (77, 130)])
    g = bits.pack_bits(bits.unpack_bits(g, 130) > 0)
    np.testing.assert_array_equal(bits.pack_bits(NB.gated_transposed_sum(t, g, wt) >= 0),
                                  NB.gated_transposed_product(t, g, wt))


@pytest.mark.parametrize("bad", [dict(kh=9), dict(stride=0), dict(c=65)])
def test_im2col_rejects_shapes_that_do_not_fit(bad):
    args = dict(c=3, kh=3, kw=3, stride=1, pad=0) | bad
    with pytest.raises(ValueError, match="im2col"):
        NB.im2col(np.zeros((1, 5, 5, 1), np.uint64), **args)


@pytest.fixture(scope="module", params=[pytest.param("cuda-emu", marks=needs_emulator), "numba"])
def cb(request):
    """The compiled backends: CUDA kernels run by the emulator, and the numba CPU kernels."""
    if request.param == "numba":
        from bep_gpu.backends.numba_backend import NumbaBackend

        return NumbaBackend()
    from emu import make_emulated_backend

    return make_emulated_backend()


@pytest.mark.parametrize("shape", SHAPES)
def test_conv_kernels_match_numpy(cb, shape):
    n, h, w, c, o, k, s, p = shape
    gen, a, wts, ho, wo = case(shape)
    for got, want in zip(forward(cb, a, wts, s, p), forward(NB, a, wts, s, p)):
        np.testing.assert_array_equal(cb.to_numpy(got), want)
    t, g = gen.choice([-1, 1], size=(n, ho, wo, o)), gen.random((n, ho, wo, o)) < 0.6
    for got, want in zip(targets(cb, wts, t, g, h, w, s, p), targets(NB, wts, t, g, h, w, s, p)):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    for q in (0, 2, 3):
        for gamma in [d for d in range(1, o + 1) if o % d == 0][:3]:
            zz, aa, tt, trig = mask_case(gen, n, ho, wo, o)
            np.testing.assert_array_equal(masks(cb, zz, aa, tt, trig, ho, wo, q, gamma),
                                          masks(NB, zz, aa, tt, trig, ho, wo, q, gamma), err_msg=f"q={q} {gamma}")
