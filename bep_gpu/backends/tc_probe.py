"""The first-use layout probe of the b1 tensor-core kernels (CudaBackend._check_tensor_core): every family
against its CUDA-core twin on the device, because the mma fragment layout they rely on (kernels/mma_b1.cuh) follows
the PTX ISA but was never checked on hardware where it was written."""
from __future__ import annotations

import numpy as np

from .. import bits as _bits


def tensor_core_mismatches(bk) -> list[str]:
    """Names of the tensor-core kernel families that disagree with the CUDA-core kernels on bk's device (empty:
    all agree): the forward product with each epilogue, the two-product recurrence step, the gated transposed
    product and both update kernels, on probes covering every lane and register of the mma fragments, several K
    slabs, both copy widths (even and odd word counts) and edge tiles."""
    xp = bk.xp
    gen = np.random.default_rng(20261129)

    def rb(rows, n, p=0.5):
        return xp.asarray(_bits.pack_bits(gen.random((rows, n)) < p))

    def same(x, y):
        return x is None and y is None or bool((x == y).all())

    failed = []
    for m, n, k in ((80, 150, 1500), (130, 72, 700)):  # kw 24 (16-byte copies) and 11 (8-byte copies)
        a, b = rb(m, k), rb(n, k)
        if not same(bk._xnor_matmul(a, b, k, True, False)[0], bk._xnor_matmul(a, b, k, False, False)[0]):
            failed.append("xnor_matmul")
            break  # the plain product decides the layout; the others would only repeat it
        for f in ("sign", "gate"):
            got = bk._xnor_matmul(a, b, k, True, True, gate=k // 3 if f == "gate" else None)
            want = bk._xnor_matmul(a, b, k, False, True, gate=k // 3 if f == "gate" else None)
            if not all(same(x, y) for x, y in zip(got, want)):
                failed.append(f"xnor_matmul_{f}")
        add = xp.asarray(gen.integers(-k, k, size=(m, n)).astype(np.int32))
        got, want = add.copy(), add.copy()
        if not same(bk._xnor_matmul(a, b, k, True, True, out=got)[1],
                    bk._xnor_matmul(a, b, k, False, True, out=want)[1]) or not same(got, want):
            failed.append("xnor_matmul_sign_add")
        # A two-step recurrence of n units on k input bits (the second step reads the first one's signs).
        x, w_rec, s0 = rb(2 * m, k).reshape(2, m, -1), rb(n, n), rb(m, n)
        if not all(same(p, q) for p, q in zip(bk._sign_recurrence(x, b, k, w_rec, s0, n // 5, True),
                                              bk._sign_recurrence(x, b, k, w_rec, s0, n // 5, False))):
            failed.append("sign_recurrence")
        t, g = rb(m, k), rb(m, k, 0.3)
        if not same(bk._gated_product(t, g, b, True), bk._gated_product(t, g, b, False)):
            failed.append("gated_transposed_product")
        sel, tt, x = g, t, b  # batch-packed update operands: K = m, J = n rows of k samples
        h = xp.asarray(gen.integers(-30, 31, size=(m, n)).astype(np.int16))
        pops = bk._row_popcounts(tt, sel, sel)  # the counts update_operands makes in a step
        got, want = h.copy(), h.copy()
        extra = (np.int32(20),) + bk._reinforce_args((2**31, 1, 1, 3, 0, None))  # with a fused reinforcement
        bk._update_popcount("batch_update", got, sel, tt, x, pops, k, m, n, True, extra)
        bk._update_popcount("batch_update", want, sel, tt, x, None, k, m, n, False, extra)
        d_tc, d_cc = (xp.empty((m, n), dtype=xp.int32) for _ in range(2))
        bk._update_popcount("update_delta", d_tc, sel, tt, x, pops, k, m, n, True)
        bk._update_popcount("update_delta", d_cc, sel, tt, x, None, k, m, n, False)
        if not same(got, want) or not same(d_tc, d_cc):
            failed.append("batch_update / update_delta")
    return failed
